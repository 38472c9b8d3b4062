import { z } from "zod";
import { type Auth, errorCodes, errorEnvelope, type Route, routes } from "./contracts.js";

/*
 * /openapi.json (rendered by /docs, in pages/), generated from the route table and zod contracts
 * in contracts.ts, so the description cannot drift from what is validated.
 */

const schema = (type: z.ZodType) => z.toJSONSchema(type, { io: "input", unrepresentable: "any" });

const security: Record<Auth, Array<Record<string, string[]>> | undefined> = {
  none: undefined,
  ticket: [{ ticketToken: [] }],
  admin: [{ adminKey: [] }],
  // Anyone may join; the server key only unlocks holder and priority.
  server: [{}, { serverKey: [] }],
};

function parameters(route: Route) {
  const shape = route.params?.shape ?? {};
  return Object.entries(shape).map(([name, type]) => ({
    name,
    in: "path",
    required: true,
    schema: schema(type as z.ZodType),
  }));
}

function operation(route: Route) {
  const responses: Record<string, unknown> = {};
  const { response } = route;
  if (response) {
    const contentType = response.contentType ?? "application/json";
    responses[String(response.status)] = {
      description: response.description,
      ...(response.schema || response.contentType
        ? { content: { [contentType]: response.schema ? { schema: schema(response.schema) } : {} } }
        : {}),
    };
  }
  for (const code of route.errors) {
    const status = String(errorCodes[code]);
    const existing = responses[status] as { description: string } | undefined;
    responses[status] = {
      description: existing ? `${existing.description}, ${code}` : code,
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
    };
  }
  return {
    summary: route.summary,
    ...(security[route.auth] ? { security: security[route.auth] } : {}),
    parameters: parameters(route),
    ...(route.body
      ? { requestBody: { required: false, content: { "application/json": { schema: schema(route.body) } } } }
      : {}),
    responses,
  };
}

let document: unknown;

export function openApiDocument(): unknown {
  if (document) return document;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = paths[route.path] ?? {};
    path[route.method] = operation(route);
    paths[route.path] = path;
  }
  document = {
    openapi: "3.1.0",
    info: {
      title: "waitroom",
      version: "1",
      description:
        'A Postgres-native waiting room. Errors are {"error": {"code", "message"}}; codes and statuses: ' +
        Object.entries(errorCodes)
          .map(([code, status]) => `${code} ${status}`)
          .join(", "),
    },
    paths,
    components: {
      schemas: { Error: schema(errorEnvelope) },
      securitySchemes: {
        ticketToken: { type: "http", scheme: "bearer", description: "The token join returned." },
        adminKey: { type: "http", scheme: "bearer", description: "WAITROOM_ADMIN_KEY." },
        serverKey: { type: "http", scheme: "bearer", description: "WAITROOM_SERVER_KEY." },
      },
    },
  };
  return document;
}
