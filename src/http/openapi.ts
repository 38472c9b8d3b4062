import type { OpenAPIHono } from "@hono/zod-openapi";
import { errorCodes } from "./contracts.js";
import { anyRouteErrors } from "./observe.js";
import { type AppEnv, securitySchemes } from "./route.js";

/*
 * /openapi.json (rendered by /docs: web/docs.js), generated from the route definitions that validate
 * requests, so the description cannot drift from what is served.
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
      {
        name: "gate",
        description:
          "Forward auth for a site that knows nothing of waitroom: the proxy's gate and the page's handover.",
      },
      { name: "rooms", description: "Rooms, for operators (admin key)." },
      { name: "operations", description: "Health, readiness, metrics and this description." },
    ],
  });
}
