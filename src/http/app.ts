import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { GateSettings, LimitSettings, MetricsSettings } from "../config/index.js";
import type { Sql } from "../db/client.js";
import type { Hub } from "../events/hub.js";
import type { RoomsFeed } from "../events/rooms-feed.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { GroupedQueue } from "../queue/grouped.js";
import type { TokenIssuer } from "../tokens/index.js";
import { tooLarge } from "./body.js";
import { ApiError, asApiError, errorAnswer } from "./errors.js";
import type { Secrets } from "./guard.js";
import type { Limiter } from "./limits.js";
import type { NodeRoute } from "./node-route.js";
import { countError, countRequest } from "./observe.js";
import { type OpenApiDocument, openApiDocument } from "./openapi.js";
import { mountPages } from "./pages.js";
import type { ProofOfWork } from "./proof-of-work.js";
import { type AppEnv, createRouter, defaultHook, type Router } from "./route.js";
import { mountChecks } from "./routes/checks.js";
import { mountGate } from "./routes/gate.js";
import { mountOps } from "./routes/ops.js";
import { mountRooms } from "./routes/rooms.js";
import { mountStock } from "./routes/stock.js";
import { mountTickets } from "./routes/tickets.js";

export type { AppEnv } from "./route.js";

export type AppDeps = {
  sql: Sql;
  /** Joins and ticket reads, grouped with those arriving at the same moment. */
  grouped: GroupedQueue;
  hub: Hub;
  /** The rooms, streamed to the operators' dashboards. */
  rooms: RoomsFeed;
  tokens: TokenIssuer;
  metrics: Metrics;
  log: Logger;
  /** The LISTEN connection, for /readyz. */
  listener: { readonly connected: boolean };
  /**
   * The per-client limits (absent: off). One set of buckets for every router and the metrics port:
   * a client's calls count together whatever route they take.
   */
  limiter: Limiter | undefined;
  /** Hands out and verifies the challenges of rooms with proof of work. */
  proofOfWork: ProofOfWork;
  settings: Secrets & {
    bodyLimitBytes: number;
    streamBufferBytes: number;
    jwksMaxAgeSeconds: number;
    limits: LimitSettings;
    metrics: MetricsSettings;
    gate: GateSettings;
  };
};

/** /v1/rooms/{room} → a pattern matching any concrete path of that route. */
const routePattern = (path: string) => new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`);

/** The methods each documented path answers, for 405s. */
function allowedMethods(document: OpenApiDocument) {
  return Object.entries(document.paths ?? {}).map(([path, item]) => {
    // Hono answers HEAD wherever it answers GET.
    const methods = Object.keys(item ?? {}).flatMap((method) =>
      method === "get" ? ["GET", "HEAD"] : [method.toUpperCase()],
    );
    return { pattern: routePattern(path), methods };
  });
}

/** The HTTP application, and the routes it serves on Node's request ahead of the framework (node-route.ts). */
export type HttpApp = { app: OpenAPIHono<AppEnv>; nodeRoutes: readonly NodeRoute[] };

/** The HTTP application: the routers of each concern, the pages, and what every request shares. */
export function createApp(deps: AppDeps): HttpApp {
  const { sql, grouped, hub, rooms, tokens, metrics, log, listener, limiter, proofOfWork, settings } = deps;
  const app = new OpenAPIHono<AppEnv>({ defaultHook });

  const fail = (c: Context<AppEnv>, error: ApiError) => {
    countError({ metrics, log }, error, c.req.routePath, c.get("errorCodes"));
    const answer = errorAnswer(error);
    return c.body(answer.body, answer.status, answer.headers);
  };

  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    countRequest({ metrics, log }, { method: c.req.method, route: c.req.routePath, status: c.res.status, started });
  });
  // A declared length over the limit is refused before anything is read, on every route; a chunked
  // body is counted as it is read.
  app.use((c, next) => {
    if (Number(c.req.header("content-length") ?? 0) > settings.bodyLimitBytes) throw tooLarge(settings.bodyLimitBytes);
    return next();
  });

  let document: OpenApiDocument | undefined;
  const describe = () => {
    document ??= openApiDocument(app);
    return document;
  };
  const options = {
    metrics,
    log,
    secrets: settings,
    bodyLimitBytes: settings.bodyLimitBytes,
    limits: settings.limits,
    limiter,
  };
  const nodeRoutes: NodeRoute[] = [];
  /** Each concern is its own router; all share the root's middleware, errors and description. */
  const serve = (mount: (router: Router) => void) => {
    const router = createRouter(options);
    mount(router);
    app.route("/", router.app);
    nodeRoutes.push(...router.nodeRoutes);
  };
  serve((router) =>
    mountTickets(router, {
      sql,
      grouped,
      hub,
      tokens,
      metrics,
      proofOfWork,
      streamBufferBytes: settings.streamBufferBytes,
    }),
  );
  serve((router) => mountChecks(router, { sql, grouped, tokens, jwksMaxAgeSeconds: settings.jwksMaxAgeSeconds }));
  serve((router) =>
    mountGate(router, {
      sql,
      tokens,
      gate: settings.gate,
      trustedProxies: settings.limits.trustedProxies,
      metrics,
      log,
    }),
  );
  serve((router) => mountRooms(router, { sql, rooms, streamBufferBytes: settings.streamBufferBytes }));
  serve((router) => mountStock(router, { sql }));
  serve((router) =>
    mountOps(router, { sql, metrics, listener, document: describe, metricsAccess: settings.metrics, limiter }),
  );
  // The landing page, the waiting-room page, the admin dashboard and the API reference (/docs).
  mountPages(app, { sql });

  const known = allowedMethods(describe());
  app.notFound((c) => {
    const path = c.req.path;
    const allowed = known.filter(({ pattern }) => pattern.test(path)).flatMap(({ methods }) => methods);
    if (allowed.length > 0) {
      // A 405 must say what is allowed (RFC 9110, 15.5.6).
      c.header("allow", allowed.join(", "));
      return fail(c, new ApiError("method_not_allowed", `${c.req.method} is not allowed on ${path}`));
    }
    return fail(c, new ApiError("not_found", `no route ${c.req.method} ${path}`));
  });

  app.onError((error, c) => fail(c, asApiError(error, log, { method: c.req.method, route: c.req.routePath })));

  return { app, nodeRoutes };
}
