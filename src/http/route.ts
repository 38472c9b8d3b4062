import type { HttpBindings } from "@hono/node-server";
import { createRoute, type Hook, OpenAPIHono, type RouteConfig, type RouteHandler } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import type { z } from "zod";
import type { LimitSettings, RateBucket } from "../config/index.js";
import { jsonBody } from "./body.js";
import { type ErrorCode, errorCodes, errorEnvelope } from "./contracts.js";
import { bearerOf, sameSecret, ticketTokenOf } from "./credentials.js";
import { ApiError, invalid, parse } from "./errors.js";
import { checkKey, checkOrigin, type Limiter } from "./limits.js";
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

/** Who may call a route: its `security`, one of these (none: anyone). */
export const callers: Record<"ticket" | "ticketOrQuery" | "admin" | "anyoneOrServer" | "server", Security> = {
  ticket: [{ ticketToken: [] }],
  /** The stream: EventSource cannot send headers. */
  ticketOrQuery: [{ ticketToken: [] }, { ticketTokenQuery: [] }],
  admin: [{ adminKey: [] }],
  /** Anyone; the server key unlocks more. */
  anyoneOrServer: [{}, { serverKey: [] }],
  /** The protected app's backend only. */
  server: [{ serverKey: [] }],
};

/** Whether a route's security lets anyone call (an empty requirement), or only the schemes it names. */
const anyoneMayCall = (security: Security) =>
  (security ?? []).some((requirement) => Object.keys(requirement).length === 0);

/** What a route does about hostile traffic, declared with it (and shown in /openapi.json). */
type Defences = {
  /** The token bucket a call draws from, per client address (docs/operations.md, "Hostile traffic"). */
  "x-rate-limit"?: RateBucket;
  /** A browser's call (Origin or Sec-Fetch-Site sent) must come from an allowed origin, unless the server key is presented. */
  "x-checks-origin"?: true;
};

/** Codes that follow from the shape of a definition, so no route has to remember them. */
function impliedErrors(config: Pick<RouteConfig, "request" | "security"> & Defences): ErrorCode[] {
  const codes: ErrorCode[] = [];
  if (config["x-rate-limit"]) codes.push("rate_limited");
  if (config["x-checks-origin"]) codes.push("origin_not_allowed");
  const { request } = config;
  if (request?.params || request?.query || request?.headers || request?.body) codes.push("invalid_request");
  if (request?.body) codes.push("unsupported_media_type");
  const schemes = new Set((config.security ?? []).flatMap((requirement) => Object.keys(requirement)));
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

const bearer = (c: Context) => bearerOf(c.req.header("authorization"));

export type Secrets = {
  /** Unset: the admin endpoints answer forbidden. */
  adminKey?: string | undefined;
  /** Unset: nobody may set holder or priority. */
  serverKey?: string | undefined;
};

/** The middleware that enforces a route's declared security; wrong keys are throttled by `limiter`. */
function guards(security: Security, secrets: Secrets, limiter: Limiter | undefined): MiddlewareHandler<AppEnv>[] {
  const schemes = new Set((security ?? []).flatMap((requirement) => Object.keys(requirement)));
  const checks: MiddlewareHandler<AppEnv>[] = [];
  if (schemes.has("adminKey")) {
    checks.push((c, next) => {
      const { adminKey } = secrets;
      if (!adminKey) throw new ApiError("forbidden", "the admin API is disabled: set WAITROOM_ADMIN_KEY");
      const key = bearer(c);
      const refusal = new ApiError("unauthorized", "the admin key is required");
      if (!key) throw refusal;
      checkKey(limiter, c, () => sameSecret(key, adminKey), refusal);
      return next();
    });
  }
  if (schemes.has("ticketToken")) {
    const inQuery = schemes.has("ticketTokenQuery");
    checks.push((c, next) => {
      c.set("ticketToken", ticketTokenOf(c.req.header("authorization"), inQuery ? c.req.query("token") : undefined));
      return next();
    });
  }
  if (schemes.has("serverKey")) {
    // Anyone may call; the server key, when presented, must be right.
    const serverOnly = !anyoneMayCall(security);
    checks.push((c, next) => {
      if (serverOnly && !secrets.serverKey) {
        throw new ApiError("forbidden", "the server-key routes are disabled: set WAITROOM_SERVER_KEY");
      }
      const key = bearer(c);
      const { serverKey } = secrets;
      if (key !== undefined) {
        const right = () => serverKey !== undefined && sameSecret(key, serverKey);
        checkKey(limiter, c, right, new ApiError("unauthorized", "the server key is wrong"));
      }
      const trusted = key !== undefined;
      if (!trusted && serverOnly) throw new ApiError("unauthorized", "the server key is required");
      c.set("trusted", trusted);
      return next();
    });
  }
  return checks;
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

/**
 * A call drawing from a route's bucket, by client address. The server key speaks for many users
 * from one address: its calls draw per holder instead (identified joins), or not at all.
 */
function rateLimit(bucket: RateBucket, limiter: Limiter): MiddlewareHandler<AppEnv> {
  return (c, next) => {
    if (!c.var.trusted) {
      limiter.take(bucket, limiter.address(c));
    } else {
      // Only join takes the server key, and its body names the holder (a route without a body: none).
      const holder = (c.req as unknown as { valid(target: "json"): { holder?: string } | undefined }).valid(
        "json",
      )?.holder;
      if (holder !== undefined) limiter.take("holder", holder);
    }
    return next();
  };
}

export type RouterOptions = NodeRouteOptions & {
  secrets: Secrets;
  limits: LimitSettings;
};

export function createRouter(options: RouterOptions): Router {
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
      const middleware: MiddlewareHandler<AppEnv>[] = [
        (c, next) => {
          c.set("errorCodes", codes);
          return next();
        },
        ...guards(route.security, options.secrets, options.limiter),
      ];
      // Before anything is read or counted: another site's page must not spend its visitors' limits.
      if (route["x-checks-origin"]) {
        middleware.push((c, next) => {
          if (!c.var.trusted) checkOrigin(c, options.limits);
          return next();
        });
      }
      // The body is validated with the definition's schema, but read by jsonBody, not zod-openapi.
      const { body, ...request } = route.request ?? {};
      const json = body?.content["application/json"];
      const schema = json && "schema" in json ? (json.schema as z.ZodType) : undefined;
      if (schema) {
        middleware.push(async (c, next) => {
          c.req.addValidatedData("json", parse(schema, await jsonBody(c, options.bodyLimitBytes), "body") as object);
          return next();
        });
      }
      // Last: a refused or invalid call costs no token.
      const bucket = route["x-rate-limit"];
      if (bucket && options.limiter) middleware.push(rateLimit(bucket, options.limiter));
      app.openAPIRegistry.registerPath(route);
      app.openapi({ ...route, request, middleware, hide: true }, handler);
    },
  };
}
