import { createHash, timingSafeEqual } from "node:crypto";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Sql } from "../db/client.js";
import { formatSse, type Hub, RETRY_MS, ticketView } from "../events/hub.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import * as queue from "../queue/index.js";
import { TokenError, type TokenIssuer } from "../tokens/index.js";
import {
  checkRequest,
  historyQuery,
  joinRequest,
  type Route,
  roomParams,
  roomSettings,
  routes,
  ticketParams,
} from "./contracts.js";
import { ApiError, fromDatabaseError, parse, verdictError } from "./errors.js";
import { docsPage, openApiDocument } from "./openapi.js";
import { mountPages } from "./pages/index.js";
import { sseHeaders, sseStream } from "./sse.js";

export type AppDeps = {
  sql: Sql;
  hub: Hub;
  tokens: TokenIssuer;
  metrics: Metrics;
  log: Logger;
  /** The LISTEN connection, for /readyz. */
  listener: { readonly connected: boolean };
  settings: {
    /** Unset: the admin endpoints answer forbidden. */
    adminKey?: string | undefined;
    /** Unset: nobody may set holder or priority. */
    serverKey?: string | undefined;
    bodyLimitBytes: number;
    streamBufferBytes: number;
  };
};

/** Compare secrets in constant time (hashed first, so lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHash("sha256").update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function bearer(c: Context): string | undefined {
  const header = c.req.header("authorization");
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) throw new ApiError("unauthorized", "Authorization must be 'Bearer <token>'");
  return match[1];
}

/** The ticket's bearer token; EventSource cannot send headers, so the stream also takes ?token=. */
function ticketToken(c: Context, allowQuery = false): string {
  const token = bearer(c) ?? (allowQuery ? c.req.query("token") : undefined);
  if (!token) throw new ApiError("unauthorized", "the ticket's token is required (Authorization: Bearer <token>)");
  // No ticket has such a token (and PostgreSQL text cannot even hold a NUL).
  if (token.length > 256 || token.includes("\u0000"))
    throw new ApiError("not_found", "no ticket with this id and token");
  return token;
}

/** The JSON body, {} when empty; anything but a JSON object is invalid_request. */
/** HTTP/1.1 delimits every body by Content-Length or Transfer-Encoding: without either there is none. */
function hasBody(c: Context): boolean {
  const length = c.req.header("content-length");
  return c.req.header("transfer-encoding") !== undefined || (length !== undefined && length !== "0");
}

async function jsonBody(c: Context): Promise<unknown> {
  if (!hasBody(c)) return {};
  const text = await c.req.text();
  if (text.trim() === "") return {};
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new ApiError("unsupported_media_type", "the body must be JSON (Content-Type: application/json)");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("invalid_request", "the body is not valid JSON");
  }
}

function lastEventId(c: Context): number | undefined {
  const value = c.req.header("last-event-id") ?? c.req.query("lastEventId");
  if (value === undefined || value === "") return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new ApiError("invalid_request", "Last-Event-ID must be an event id");
  return Number(value);
}

/** /v1/rooms/{room} → a pattern matching any concrete path of that route. */
const routePattern = (path: string) => new RegExp(`^${path.replace(/\{[^}]+\}/g, "[^/]+")}$`);
const knownPaths = routes.map((route: Route) => ({
  pattern: routePattern(route.path),
  // Hono answers HEAD wherever it answers GET.
  methods: route.method === "get" ? ["GET", "HEAD"] : [route.method.toUpperCase()],
}));

/** The HTTP application; everything it needs comes in through deps. */
export function createApp(deps: AppDeps): Hono {
  const { sql, hub, tokens, metrics, log, listener, settings } = deps;
  const app = new Hono();

  const fail = (c: Context, error: ApiError) => {
    metrics.errors.inc({ code: error.code });
    if (error.code === "unavailable") c.header("retry-after", "2");
    return c.json({ error: { code: error.code, message: error.message } }, error.status);
  };

  const requireAdmin = (c: Context) => {
    if (!settings.adminKey) throw new ApiError("forbidden", "the admin API is disabled: set WAITROOM_ADMIN_KEY");
    const key = bearer(c);
    if (!key || !sameSecret(key, settings.adminKey)) throw new ApiError("unauthorized", "the admin key is required");
  };

  // One log line per request, without the query string: the stream's ?token= must stay out of logs.
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    const route = c.req.routePath;
    metrics.requests.inc({ method: c.req.method, route, status: c.res.status });
    log.debug(
      { method: c.req.method, route, status: c.res.status, ms: Math.round(performance.now() - started) },
      "request",
    );
  });
  const limitBody = bodyLimit({
    maxSize: settings.bodyLimitBytes,
    onError: (c) => {
      // The rest of the body is never read: close, or the client may see a reset instead of this answer.
      c.header("connection", "close");
      return fail(c, new ApiError("payload_too_large", `the body exceeds ${settings.bodyLimitBytes} bytes`));
    },
  });
  // Only requests that carry a body go through the limit: it builds the request's body stream, which
  // doubled the service's CPU per anonymous join (see bench/notes/http-join.md).
  app.use((c, next) => (hasBody(c) ? limitBody(c, next) : next()));

  app.post("/v1/rooms/:room/tickets", async (c) => {
    const { room } = parse(roomParams, c.req.param(), "path");
    const key = bearer(c);
    const trusted = key !== undefined && settings.serverKey !== undefined && sameSecret(key, settings.serverKey);
    if (key !== undefined && !trusted) throw new ApiError("unauthorized", "the server key is wrong");
    const body = parse(joinRequest, await jsonBody(c), "body");
    if (!trusted && (body.holder !== undefined || body.priority !== undefined)) {
      throw new ApiError("forbidden", "holder and priority may only be set with the server key");
    }
    const joined = await queue.join(sql, room, body);
    metrics.joins.inc();
    return c.json(
      {
        ...joined,
        // join answers in O(1); the stream's first state carries the estimate.
        eta_seconds: null,
        events_url: `/v1/tickets/${joined.ticket_id}/events`,
      },
      202,
    );
  });

  /** Verify the ticket's token; the ticket's state unless the token is unknown or superseded. */
  const ticketState = async (c: Context, allowQueryToken = false) => {
    const { id } = parse(ticketParams, c.req.param(), "path");
    const token = ticketToken(c, allowQueryToken);
    const { code, state } = await queue.tokenState(sql, id, token);
    if (!state) throw verdictError(code);
    return { id, token, state };
  };

  app.get("/v1/tickets/:id", async (c) => {
    const { state } = await ticketState(c);
    return c.json(ticketView(state));
  });

  app.get("/v1/tickets/:id/events", async (c) => {
    const resumeAfter = lastEventId(c);
    const { state } = await ticketState(c, true);
    // 204 tells EventSource to stop reconnecting: the ticket is over and the client has seen how it ended.
    const over = () => c.body(null, 204);
    if (queue.terminalStatuses.has(state.status) && resumeAfter === undefined) return over();
    let unsubscribe: (() => void) | null = null;
    const { body, client } = sseStream(settings.streamBufferBytes, () => unsubscribe?.());
    client.write(formatSse({ retry: RETRY_MS }));
    unsubscribe = await hub.open(state, client, resumeAfter);
    return unsubscribe ? new Response(body, { headers: sseHeaders }) : over();
  });

  app.post("/v1/tickets/:id/claim", async (c) => {
    const { id } = parse(ticketParams, c.req.param(), "path");
    const claimed = await queue.claim(sql, id, ticketToken(c));
    if (!claimed.ok || !claimed.expires_at) throw verdictError(claimed.code);
    const { token } = await tokens.sign({
      holder: claimed.holder,
      room: claimed.room_id,
      ticketId: id,
      instance: claimed.instance,
      expiresAt: claimed.expires_at,
    });
    metrics.claims.inc();
    return c.json({ ticket_id: id, status: claimed.status, admission_token: token, expires_at: claimed.expires_at });
  });

  app.post("/v1/tickets/:id/heartbeat", async (c) => {
    const { id } = parse(ticketParams, c.req.param(), "path");
    const token = ticketToken(c);
    const verdict = await queue.heartbeat(sql, id, token);
    if (!verdict.ok) throw verdictError(verdict.code);
    const { state } = await queue.tokenState(sql, id, token);
    if (!state) throw verdictError("unknown");
    return c.json(ticketView(state));
  });

  app.delete("/v1/tickets/:id", async (c) => {
    const { id } = parse(ticketParams, c.req.param(), "path");
    const verdict = await queue.leave(sql, id, ticketToken(c));
    if (!verdict.ok) throw verdictError(verdict.code);
    return c.body(null, 204);
  });

  app.post("/v1/check", async (c) => {
    const body = parse(checkRequest, await jsonBody(c), "body");
    if ("admission_token" in body) {
      const admission = await tokens.verify(body.admission_token);
      const verdict = await queue.checkAdmission(sql, admission.ticketId, admission.instance);
      if (!verdict.ok) throw verdictError(verdict.code);
      return c.json({
        ok: true,
        status: verdict.status,
        ticket_id: admission.ticketId,
        room_id: admission.room,
        expires_at: verdict.expires_at,
      });
    }
    const { code, state } = await queue.tokenState(sql, body.ticket_id, body.token);
    if (code !== "ok" || !state) throw verdictError(code);
    return c.json({
      ok: true,
      status: state.status,
      ticket_id: state.ticket_id,
      room_id: state.room_id,
      expires_at: state.expires_at,
    });
  });

  app.get("/.well-known/jwks.json", async (c) => {
    c.header("cache-control", "public, max-age=300");
    return c.json(await tokens.jwks());
  });

  const oneRoom = async (room: string) => {
    const [found] = await queue.listRooms(sql, room);
    if (!found) throw new ApiError("not_found", `room '${room}' does not exist`);
    return found;
  };

  app.get("/v1/rooms", async (c) => {
    requireAdmin(c);
    return c.json({ rooms: await queue.listRooms(sql) });
  });

  app.get("/v1/rooms/:room", async (c) => {
    requireAdmin(c);
    const { room } = parse(roomParams, c.req.param(), "path");
    return c.json(await oneRoom(room));
  });

  app.put("/v1/rooms/:room", async (c) => {
    requireAdmin(c);
    const { room } = parse(roomParams, c.req.param(), "path");
    const changes = parse(roomSettings, await jsonBody(c), "room settings");
    const [existing] = await queue.listRooms(sql, room);
    if (existing) {
      await queue.configureRoom(sql, room, changes);
      return c.json(await oneRoom(room));
    }
    if (changes.capacity === undefined) throw new ApiError("invalid_request", "capacity is required to create a room");
    try {
      await queue.createRoom(sql, room, changes);
    } catch (error) {
      // Created by a concurrent PUT meanwhile: apply ours as a change.
      if ((error as { code?: string }).code !== "WR409") throw error;
      await queue.configureRoom(sql, room, changes);
      return c.json(await oneRoom(room));
    }
    return c.json(await oneRoom(room), 201);
  });

  app.delete("/v1/rooms/:room", async (c) => {
    requireAdmin(c);
    const { room } = parse(roomParams, c.req.param(), "path");
    await queue.deleteRoom(sql, room);
    return c.body(null, 204);
  });

  app.get("/v1/rooms/:room/history", async (c) => {
    requireAdmin(c);
    const { room } = parse(roomParams, c.req.param(), "path");
    const { minutes } = parse(historyQuery, c.req.query(), "query");
    const rows = await queue.history(sql, room, minutes);
    return c.json({
      room_id: room,
      minutes,
      buckets: rows.map((row) => ({ ...row, minute: new Date(row.minute).toISOString() })),
    });
  });

  for (const [action, mode] of [
    ["pause", "paused"],
    ["resume", "open"],
  ] as const) {
    app.post(`/v1/rooms/:room/${action}`, async (c) => {
      requireAdmin(c);
      const { room } = parse(roomParams, c.req.param(), "path");
      await queue.configureRoom(sql, room, { mode });
      return c.json(await oneRoom(room));
    });
  }

  app.post("/v1/keys/rotate", async (c) => {
    requireAdmin(c);
    return c.json({ kid: await tokens.rotate() });
  });

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    if (!listener.connected) throw new ApiError("not_ready", "the LISTEN connection is not established");
    try {
      await sql`select 1`;
    } catch {
      throw new ApiError("not_ready", "the database is unreachable");
    }
    return c.json({ status: "ready" });
  });
  app.get("/metrics", async (c) => {
    c.header("content-type", metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });
  app.get("/openapi.json", (c) => c.json(openApiDocument()));
  app.get("/docs", (c) => c.html(docsPage()));
  // The waiting-room page and the admin dashboard (HTML + vanilla ES modules, no build step).
  mountPages(app);

  app.notFound((c) => {
    const path = c.req.path;
    const allowed = knownPaths.filter(({ pattern }) => pattern.test(path)).flatMap(({ methods }) => methods);
    if (allowed.length > 0) {
      // A 405 must say what is allowed (RFC 9110, 15.5.6).
      c.header("allow", allowed.join(", "));
      return fail(c, new ApiError("method_not_allowed", `${c.req.method} is not allowed on ${path}`));
    }
    return fail(c, new ApiError("not_found", `no route ${c.req.method} ${path}`));
  });

  app.onError((error, c) => {
    if (error instanceof ApiError) return fail(c, error);
    if (error instanceof TokenError) return fail(c, new ApiError(error.code, error.message));
    const mapped = fromDatabaseError(error);
    if (mapped) return fail(c, mapped);
    log.error({ err: error, method: c.req.method, route: c.req.routePath }, "request failed");
    return fail(c, new ApiError("internal", "internal error"));
  });

  return app;
}
