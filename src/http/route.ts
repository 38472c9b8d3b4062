import type { HttpBindings } from "@hono/node-server";
import { createRoute, type Hook, OpenAPIHono, type RouteConfig, type RouteHandler } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { type ErrorCode, errorCodes, errorEnvelope } from "./contracts.js";
import { invalid } from "./errors.js";
import { anyoneMayCall, type Defences, guardOf, schemesOf } from "./guard.js";
import {
  type NodeDefinition,
  type NodeHandler,
  type NodeRoute,
  type NodeRouteOptions,
  nodeRoute,
} from "./node-route.js";

/*
 * One definition per route: what it takes, who may call it, what it answers and which error codes
 * it can give. mount() makes that definition the route: it validates the request, enforces the
 * declared security, types the handler, and registers it for /openapi.json.
 */

/** The app runs on @hono/node-server, which hands every request its Node objects. */
export type AppEnv = {
  Bindings: HttpBindings;
  Variables: {
    /** The ticket's bearer token, on routes secured by ticketToken. */
    ticketToken: string;
    /** The caller presented the server key (a join may then set holder and priority). */
    trusted: boolean;
    /** The error codes the matched route documents; any other answered code is counted as undocumented. */
    errorCodes: readonly ErrorCode[];
  };
};

/** How callers prove who they are; routes name these in `security`, and mount() enforces them. */
export const securitySchemes = {
  ticketToken: { type: "http", scheme: "bearer", description: "The ticket's token, as join returned it." },
  ticketTokenQuery: {
    type: "apiKey",
    in: "query",
    name: "token",
    description: "The ticket's token in the query string, for EventSource (which cannot send headers).",
  },
  adminKey: { type: "http", scheme: "bearer", description: "WAITROOM_ADMIN_KEY." },
  serverKey: { type: "http", scheme: "bearer", description: "WAITROOM_SERVER_KEY (the protected app's backend)." },
} as const;

type Security = RouteConfig["security"];

/** A security requirement: every scheme it names. */
type Requirement<Scheme extends keyof typeof securitySchemes> = { [S in Scheme]: string[] };

/**
 * Who may call a route: its `security`, one of these (none: anyone). Each has its own type, so a
 * handler on Node's request knows whether it is handed a ticket's token (node-route.ts).
 */
export const callers = {
  ticket: [{ ticketToken: [] }] as Requirement<"ticketToken">[],
  /** The stream: EventSource cannot send headers. */
  ticketOrQuery: [{ ticketToken: [] }, { ticketTokenQuery: [] }] as (
    | Requirement<"ticketToken">
    | Requirement<"ticketTokenQuery">
  )[],
  admin: [{ adminKey: [] }] as Requirement<"adminKey">[],
  /** Anyone; the server key unlocks more. */
  anyoneOrServer: [{}, { serverKey: [] }] as (Requirement<never> | Requirement<"serverKey">)[],
  /** The protected app's backend only. */
  server: [{ serverKey: [] }] as Requirement<"serverKey">[],
} satisfies Record<string, Security>;

/** Codes that follow from the shape of a definition, so no route has to remember them. */
function impliedErrors(config: Pick<RouteConfig, "request" | "security"> & Defences): ErrorCode[] {
  const codes: ErrorCode[] = [];
  if (config["x-rate-limit"]) codes.push("rate_limited");
  if (config["x-checks-origin"]) codes.push("origin_not_allowed");
  const { request } = config;
  if (request?.params || request?.query || request?.headers || request?.body) codes.push("invalid_request");
  if (request?.body) codes.push("unsupported_media_type");
  const schemes = schemesOf(config.security);
  // A wrong key is throttled per client address: rate_limited once it has failed too often.
  if (schemes.has("adminKey")) codes.push("unauthorized", "forbidden", "rate_limited");
  // A missing token is unauthorized; one no ticket could have is not_found, like a wrong one.
  if (schemes.has("ticketToken")) codes.push("unauthorized", "not_found");
  if (schemes.has("serverKey")) codes.push("unauthorized", "rate_limited");
  // A route for the server key alone is off (forbidden) while WAITROOM_SERVER_KEY is unset.
  if (schemes.has("serverKey") && !anyoneMayCall(config.security)) codes.push("forbidden");
  return codes;
}

function errorResponses(codes: readonly ErrorCode[]): RouteConfig["responses"] {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(errorCodes[code], [...(byStatus.get(errorCodes[code]) ?? []), code]);
  return Object.fromEntries(
    [...byStatus].map(([status, grouped]) => [
      String(status),
      { description: grouped.join(", "), content: { "application/json": { schema: errorEnvelope } } },
    ]),
  );
}

type Definition = RouteConfig & Defences & { errors: readonly ErrorCode[] };
type ErrorCodes = { "x-error-codes": readonly ErrorCode[] };
/** A defined route: its definition, with every error code it can answer. */
export type Route = RouteConfig & Defences & ErrorCodes;

/**
 * A route definition. `errors` lists the codes its handler gives; the codes implied by its shape
 * (invalid_request for any input, unsupported_media_type for a body, what its security can refuse)
 * are added, and all of them are documented as x-error-codes and as error responses.
 */
export function defineRoute<D extends Definition>({ errors, ...config }: D): Omit<D, "errors"> & ErrorCodes {
  const codes = [...new Set([...errors, ...impliedErrors(config)])].sort();
  return createRoute({
    ...config,
    responses: { ...config.responses, ...errorResponses(codes) },
    "x-error-codes": codes,
  }) as unknown as Omit<D, "errors"> & ErrorCodes;
}

const validationTargets: Record<string, string> = { param: "path", query: "query", header: "headers", json: "body" };

/** zod-openapi's validation failures answer the error envelope like every other bad input. */
export const defaultHook: Hook<unknown, AppEnv, string, undefined> = (result) => {
  if (!result.success) throw invalid(result.error, validationTargets[result.target] ?? result.target);
};

export type Router = {
  app: OpenAPIHono<AppEnv>;
  /** Serve a route by its definition. */
  mount<R extends Route>(route: R, handler: RouteHandler<R, AppEnv>): void;
  /** Serve a route by its definition on Node's request, ahead of the framework (node-route.ts). */
  mountOnNode<D extends NodeDefinition>(route: D, handler: NodeHandler<D>): void;
  /** What mountOnNode served, for the server to try before the framework. */
  nodeRoutes: readonly NodeRoute[];
};

export function createRouter(options: NodeRouteOptions): Router {
  const app = new OpenAPIHono<AppEnv>({ defaultHook });
  const nodeRoutes: NodeRoute[] = [];
  return {
    app,
    nodeRoutes,
    mountOnNode(route, handler) {
      app.openAPIRegistry.registerPath(route);
      nodeRoutes.push(nodeRoute(route, options, handler));
    },
    mount(route, handler) {
      const codes = route["x-error-codes"];
      const guard = guardOf(route, options);
      const middleware: MiddlewareHandler<AppEnv>[] = [
        (c, next) => {
          c.set("errorCodes", codes);
          const { ticketToken, trusted } = guard.credentials(c, () => c.req.query("token"));
          if (ticketToken !== undefined) c.set("ticketToken", ticketToken);
          c.set("trusted", trusted);
          return next();
        },
      ];
      // The body is validated with the definition's schema, but read by the guard, not zod-openapi.
      const { body, ...request } = route.request ?? {};
      if (body || route["x-rate-limit"]) {
        middleware.push(async (c, next) => {
          const validated = await guard.body(c.env.incoming);
          if (body) c.req.addValidatedData("json", validated as object);
          guard.rateLimit(c, c.var.trusted, validated);
          return next();
        });
      }
      app.openAPIRegistry.registerPath(route);
      app.openapi({ ...route, request, middleware, hide: true }, handler);
    },
  };
}
