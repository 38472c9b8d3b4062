// The API reference: Scalar's renderer (served by this service from its npm package, no CDN) reading
// the service's own OpenAPI document. Nothing leaves this origin: no web fonts, no telemetry, no AI agent.
window.Scalar.createApiReference("#reference", {
  url: "/openapi.json",
  withDefaultFonts: false,
  telemetry: false,
  showDeveloperTools: "never",
  agent: { disabled: true },
  mcp: { disabled: true },
  hideClientButton: true,
  operationTitleSource: "summary",
  // A small API: every operation listed at once, not folded under its tag.
  defaultOpenAllTags: true,
});
