import type { IncomingMessage } from "node:http";
import type { HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { type Context, Hono } from "hono";
import type { MetricsSettings } from "../config/index.js";
import type { Sql } from "../db/client.js";
import { formatSse, type Hub, RETRY_MS, ticketView } from "../events/hub.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { GroupedQueue } from "../queue/grouped.js";
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
import { metricsHandler } from "./metrics-endpoint.js";
import { docsPage, openApiDocument } from "./openapi.js";
import { mountPages } from "./pages/index.js";
import { sameSecret } from "./secret.js";
import { sseHeaders, sseResponse } from "./sse.js";

export type AppDeps = {
  sql: Sql;
  /** Joins and ticket reads, grouped with those arriving at the same moment. */
  grouped: GroupedQueue;
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
    metrics: MetricsSettings;
  };
};

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

/** HTTP/1.1 delimits every body by Content-Length or Transfer-Encoding: without either there is none. */
function hasBody(c: Context): boolean {
  const length = c.req.header("content-length");
  return c.req.header("transfer-encoding") !== undefined || (length !== undefined && length !== "0");
}

const tooLarge = (limit: number) => new ApiError("payload_too_large", `the body exceeds ${limit} bytes`);

/**
 * The body as text, read straight from Node's request: building Hono's Web body stream to read
 * `{}` cost more than the join itself (bench/notes/http-join.md). Stops reading past `limit`.
 */
function readBody(incoming: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("error", onError);
      incoming.off("close", onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // The rest is never read: the answer closes the connection.
        stop();
        incoming.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks, size).toString("utf8"));
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    const onClose = () => {
      stop();
      reject(new ApiError("invalid_request", "the request body was cut short"));
    };
    incoming.on("data", onData);
    incoming.on("end", onEnd);
    incoming.on("error", onError);
    incoming.on("close", onClose);
  });
}

/** The app runs on @hono/node-server, which hands every request its Node objects. */
export type AppEnv = { Bindings: HttpBindings };

/** The JSON body, {} when empty; anything but JSON is unsupported_media_type or invalid_request. */
async function jsonBody(c: Context<AppEnv>, limit: number): Promise<unknown> {
  if (!hasBody(c)) return {};
  const text = await readBody(c.env.incoming, limit);
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
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { sql, grouped, hub, tokens, metrics, log, listener, settings } = deps;
  const app = new Hono<AppEnv>();
  const body = (c: Context<AppEnv>) => jsonBody(c, settings.bodyLimitBytes);

  const fail = (c: Context, error: ApiError) => {
    metrics.errors.inc({ code: error.code });
    if (error.code === "unavailable") c.header("retry-after", "2");
    // The rest of the body is never read: close, or the client may see a reset instead of this answer.
    if (error.code === "payload_too_large") c.header("connection", "close");
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
  // A declared length over the limit is refused before anything is read, on every route; a chunked
  // body is counted as it is read (jsonBody).
  app.use((c, next) => {
    if (Number(c.req.header("content-length") ?? 0) > settings.bodyLimitBytes) throw tooLarge(settings.bodyLimitBytes);
    return next();
  });

  app.post("/v1/rooms/:room/tickets", async (c) => {
    const { room } = parse(roomParams, c.req.param(), "path");
    const key = bearer(c);
    const trusted = key !== undefined && settings.serverKey !== undefined && sameSecret(key, settings.serverKey);
    if (key !== undefined && !trusted) throw new ApiError("unauthorized", "the server key is wrong");
    const request = parse(joinRequest, await body(c), "body");
    if (!trusted && (request.holder !== undefined || request.priority !== undefined)) {
      throw new ApiError("forbidden", "holder and priority may only be set with the server key");
    }
    const joined = await grouped.join(room, request);
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
  const ticketState = async (c: Context<AppEnv>) => {
    const { id } = parse(ticketParams, c.req.param(), "path");
    const token = ticketToken(c);
    const { code, state } = await grouped.tokenState({ ticketId: id, token });
    if (!state) throw verdictError(code);
    return { id, token, state };
  };

  app.get("/v1/tickets/:id", async (c) => {
    const { state } = await ticketState(c);
    return c.json(ticketView(state));
  });

  app.get("/v1/tickets/:id/events", async (c) => {
    const resumeAfter = lastEventId(c);
    const { id } = parse(ticketParams, c.req.param(), "path");
    const presented = { ticketId: id, token: ticketToken(c, true) };
    // 204 tells EventSource to stop reconnecting: the ticket is over and the client has seen how it ended.
    const over = () => c.body(null, 204);
    if (c.req.method === "HEAD") {
      // Hono answers HEAD with this handler and drops the body without cancelling it: open no stream.
      const { code, state } = await grouped.tokenState(presented);
      if (!state) throw verdictError(code);
      return queue.terminalStatuses.has(state.status) && resumeAfter === undefined
        ? over()
        : c.body(null, 200, sseHeaders);
    }
    let unsubscribe = () => {};
    const stream = sseResponse(c.env.outgoing, settings.streamBufferBytes, () => unsubscribe());
    stream.client.write(formatSse({ retry: RETRY_MS }));
    const opened = await hub.open(presented, stream.client, resumeAfter);
    if (opened.kind === "refused") throw verdictError(opened.code);
    if (opened.kind === "over") return over();
    unsubscribe = opened.unsubscribe;
    // A client that left while its stream was being opened is not kept subscribed.
    if (!stream.start()) unsubscribe();
    return RESPONSE_ALREADY_SENT;
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
    const { state } = await grouped.tokenState({ ticketId: id, token });
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
    const check = parse(checkRequest, await body(c), "body");
    if ("admission_token" in check) {
      const admission = await tokens.verify(check.admission_token, check.room);
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
    const { code, state } = await grouped.tokenState({ ticketId: check.ticket_id, token: check.token });
    if (code !== "ok" || !state) throw verdictError(code);
    if (state.room_id !== check.room) {
      throw new ApiError("wrong_room", `the ticket is in room '${state.room_id}', not '${check.room}'`);
    }
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
    const changes = parse(roomSettings, await body(c), "room settings");
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
  app.get("/metrics", metricsHandler(metrics, settings.metrics, false));
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
