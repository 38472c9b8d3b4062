import type { OpenAPIHono } from "@hono/zod-openapi";
import { errorCodes } from "./contracts.js";
import { type AppEnv, anyRouteErrors, securitySchemes } from "./route.js";

/*
 * /openapi.json and /docs, generated from the route definitions that validate requests, so the
 * description cannot drift from what is served.
 */

export type OpenApiDocument = ReturnType<OpenAPIHono<AppEnv>["getOpenAPI31Document"]>;

export function openApiDocument(app: OpenAPIHono<AppEnv>): OpenApiDocument {
  for (const [name, scheme] of Object.entries(securitySchemes)) {
    app.openAPIRegistry.registerComponent("securitySchemes", name, scheme);
  }
  return app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "waitroom",
      version: "1",
      description:
        "A Postgres-native waiting room: a fair admission queue whose rules live in SQL.\n\n" +
        'Every error is `{"error": {"code", "message"}}`. Each operation lists its codes as `x-error-codes`; ' +
        `any operation may also answer ${anyRouteErrors.map((code) => `\`${code}\` (${errorCodes[code]})`).join(", ")}. ` +
        "Codes and statuses: " +
        Object.entries(errorCodes)
          .map(([code, status]) => `\`${code}\` ${status}`)
          .join(", "),
    },
    tags: [
      { name: "tickets", description: "A visitor's place in a queue, from join to leave." },
      { name: "admission", description: "Admission tokens, for the protected app." },
      { name: "rooms", description: "Rooms, for operators (admin key)." },
      { name: "operations", description: "Health, readiness, metrics and this description." },
    ],
  });
}

type Operation = { summary?: string; security?: Array<Record<string, string[]>>; "x-error-codes"?: string[] };

const escapeHtml = (text: string) =>
  text.replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch] ?? ch);

/** Who may call an operation, from its security requirements. */
const callers = (operation: Operation) =>
  (operation.security ?? [{}]).map((requirement) => Object.keys(requirement).join(" + ") || "anyone").join(" or ");

/** A plain page listing the routes; the full description is /openapi.json. No scripts, no CDN. */
export function docsPage(document: OpenApiDocument): string {
  const rows = Object.entries(document.paths ?? {})
    .flatMap(([path, item]) =>
      Object.entries(item as Record<string, Operation>).map(
        ([method, operation]) =>
          `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td>` +
          `<td>${callers(operation)}</td><td>${escapeHtml(operation.summary ?? "")}</td>` +
          `<td>${(operation["x-error-codes"] ?? []).map((code) => `<code>${code}</code>`).join(" ")}</td></tr>`,
      ),
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>waitroom API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:70rem}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}table{border-collapse:collapse}</style>
</head><body>
<h1>waitroom API v1</h1>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Errors: <code>{"error": {"code", "message"}}</code>.</p>
<table><thead><tr><th>method</th><th>path</th><th>who may call</th><th>what</th><th>error codes</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>`;
}
