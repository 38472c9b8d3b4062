import type { BlockList } from "node:net";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { GateRoute, GateSettings } from "../../config/index.js";
import type { Sql } from "../../db/client.js";
import type { Logger } from "../../log.js";
import type { Metrics } from "../../metrics.js";
import * as queue from "../../queue/index.js";
import { type SignedAdmission, TokenError, type TokenIssuer, type VerifiedAdmission } from "../../tokens/index.js";
import { gateHeaders, gateQuery, handoverRequest, handoverResponse, roomParams } from "../contracts.js";
import { ApiError, verdictCodes, verdictError } from "../errors.js";
import { fromTrustedProxy } from "../limits.js";
import { type AppEnv, defineRoute, type Router } from "../route.js";

/*
 * The gate: forward auth for a site that knows nothing about waitroom. The reverse proxy in front of
 * the site asks GET /v1/gate before every request. A young admission cookie (a token with less than
 * half its life spent) is let through on its signature alone, against the cached signing keys: no
 * database round trip. An older one is renewed: one call checks the seat and heartbeats it, and the
 * answer carries a fresh cookie, so the cookie slides while the visitor uses the site; a seat that is
 * over clears it. The waiting-room page, served by the same proxy under /.waitroom/ so it is
 * first-party on the site, hands the admission over after each claim and heartbeat (POST …/handover).
 */

/** Where the proxy serves the service on the protected site: the page, the API and the handover. */
export const GATE_PREFIX = "/.waitroom";

/** The admission cookie of a room; room ids are valid cookie names as they are. */
export const admissionCookie = (room: string) => `waitroom_${room}`;

export const gateRoute = defineRoute({
  method: "get",
  path: "/v1/gate",
  summary: "Forward auth: may this request reach the protected site?",
  description:
    "For reverse proxies (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth), before every request to " +
    "the protected site. The room is the one WAITROOM_GATES maps the forwarded host and path to. 204 when the " +
    "request's admission cookie holds a valid admission token for that room; otherwise a refusal whose Location " +
    `is the room's page on the site (${GATE_PREFIX}/rooms/{room}) with the original URL as its return parameter. ` +
    "A token with less than half its life (exp − iat) spent passes on its signature alone, with no database round " +
    "trip. An older one is renewed: the seat is checked and heartbeated (extended where the room has " +
    "renew_on_heartbeat) and the 204 sets a fresh cookie; a seat left, superseded, ended or revoked clears the " +
    "cookie and is refused like a missing one. So a seat's end is seen at most half a token's lifetime late. " +
    "If the database fails or takes longer than WAITROOM_GATE_RENEWAL_TIMEOUT_MS, the still-valid token passes.",
  tags: ["gate"],
  request: { headers: gateHeaders, query: gateQuery },
  responses: {
    204: {
      description: "Admitted: let the request through (with a renewed admission cookie once the token is half spent).",
      headers: { "set-cookie": { schema: { type: "string" } } },
    },
    302: {
      description: "Not admitted (deny=redirect): Location is the room's page, with the URL to return to.",
      headers: { location: { schema: { type: "string" } } },
    },
  },
  errors: ["admission_required", "not_found", "forbidden"],
});

export const handoverRoute = defineRoute({
  method: "post",
  path: "/v1/rooms/{room}/handover",
  summary: "Hand a claimed seat over to the protected site",
  description:
    "The page calls it after each claim and heartbeat with the fresh admission token. Checks the seat in the " +
    "database (a left, superseded or ended seat is refused) and answers where to continue: the `return` URL if its " +
    "origin is the room's target_url's or one of its return_origins (else return_not_allowed), or the target_url. " +
    "With handover cookie it sets the gate's admission cookie (HttpOnly, SameSite=Lax, Secure unless " +
    "WAITROOM_GATE_COOKIE_SECURE=false, Path=/, until the token's exp) for the host the page was served from; " +
    "with fragment the continue URL carries the token as #waitroom_token=….",
  tags: ["gate"],
  request: {
    params: roomParams,
    body: { content: { "application/json": { schema: handoverRequest } }, required: true },
  },
  responses: {
    200: { description: "Where to continue.", content: { "application/json": { schema: handoverResponse } } },
  },
  "x-rate-limit": "ticket",
  errors: [...verdictCodes, "wrong_room", "return_not_allowed"],
});

export const endHandoverRoute = defineRoute({
  method: "delete",
  path: "/v1/rooms/{room}/handover",
  summary: "Take the admission cookie back",
  description: "The page calls it when the visitor gives up the seat: the gate refuses the next request at once.",
  tags: ["gate"],
  request: { params: roomParams },
  responses: { 204: { description: "The cookie is cleared." } },
  errors: [],
});

/** The room guarding a host and path: the entry for the host (and port, if it names one) with the longest path. */
export function guardingRoom(routes: readonly GateRoute[], hostHeader: string, uri: string): string | undefined {
  const [host = "", port] = hostHeader.toLowerCase().split(":");
  const path = uri.split("?")[0] ?? "/";
  let best: GateRoute | undefined;
  for (const route of routes) {
    if (route.host !== host || (route.port !== undefined && route.port !== port)) continue;
    const within =
      route.path === "/" ||
      path === route.path ||
      path.startsWith(route.path.endsWith("/") ? route.path : `${route.path}/`);
    if (within && (!best || route.path.length > best.path.length)) best = route;
  }
  return best?.room;
}

export type GateDeps = {
  sql: Sql;
  tokens: TokenIssuer;
  gate: GateSettings;
  trustedProxies: BlockList | undefined;
  metrics: Metrics;
  log: Logger;
};

/**
 * A token is renewed once half the time from its iat to its exp has passed: a visitor active at least
 * once per half-life keeps a valid cookie, the database sees at most about one renewal per visitor per
 * half-life, and a seat's end is seen at most half a lifetime (60 s by default) late. One without iat
 * (never ours) is always checked.
 */
const dueForRenewal = ({ issuedAt, expiresAt }: VerifiedAdmission) =>
  issuedAt === undefined || Date.now() >= (issuedAt.getTime() + expiresAt.getTime()) / 2;

/** What renewing a verified token came to; the visitor is let through unless the seat is gone. */
type Renewal =
  | { outcome: "renewed"; signed: SignedAdmission }
  | { outcome: "gone" }
  | { outcome: "failed"; error: unknown }
  | { outcome: "timed_out" };

export function mountGate({ mount }: Router, { sql, tokens, gate, trustedProxies, metrics, log }: GateDeps): void {
  /** The seat checked and heartbeated, and a fresh token signed for it; never rejects. */
  const renew = async (room: string, admission: VerifiedAdmission): Promise<Renewal> => {
    try {
      const seat = await queue.renewAdmission(sql, admission);
      if (!seat.ok) return { outcome: "gone" };
      const signed = await tokens.sign({
        holder: seat.holder,
        room,
        ticketId: admission.ticketId,
        instance: seat.instance,
        expiresAt: seat.expires_at,
      });
      return { outcome: "renewed", signed };
    } catch (error) {
      return { outcome: "failed", error };
    }
  };

  /** renew, or timed_out once the gate has waited renewalTimeoutMs (the call finishes unheard). */
  const renewWithin = async (room: string, admission: VerifiedAdmission): Promise<Renewal> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Renewal>((resolve) => {
      timer = setTimeout(() => resolve({ outcome: "timed_out" }), gate.renewalTimeoutMs);
    });
    try {
      return await Promise.race([renew(room, admission), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  /** Whether the token in the cookie admits the request; sets the renewed cookie, or clears one whose seat is over. */
  const admits = async (c: Context<AppEnv>, room: string, token: string): Promise<boolean> => {
    let admission: VerifiedAdmission;
    try {
      admission = await tokens.verify(token, room);
    } catch (error) {
      if (error instanceof TokenError) return false;
      throw error;
    }
    if (!dueForRenewal(admission)) return true;
    const renewal = await renewWithin(room, admission);
    metrics.gateRenewals.inc({ outcome: renewal.outcome });
    switch (renewal.outcome) {
      case "renewed":
        setAdmissionCookie(c, room, renewal.signed, gate.cookieSecure);
        return true;
      case "gone":
        clearAdmissionCookie(c, room, gate.cookieSecure);
        return false;
      case "failed":
        // Failing open for a token that is still valid: the database being down must not lock out
        // visitors already admitted; their seat's end is then seen when the token expires.
        log.warn({ err: renewal.error, room }, "gate: renewing an admission failed; its still-valid token passes");
        return true;
      case "timed_out":
        log.warn({ room, timeoutMs: gate.renewalTimeoutMs }, "gate: renewing an admission timed out; its token passes");
        return true;
    }
  };

  mount(gateRoute, async (c) => {
    // The forwarded headers describe the proxy's request: with proxies configured, only theirs are believed.
    if (trustedProxies && !fromTrustedProxy(c, trustedProxies)) {
      throw new ApiError("forbidden", "the gate answers only the proxies of WAITROOM_TRUSTED_PROXIES");
    }
    const headers = c.req.valid("header");
    const host = headers["x-forwarded-host"];
    const uri = headers["x-forwarded-uri"];
    const room = guardingRoom(gate.routes, host, uri);
    if (!room) throw new ApiError("not_found", `WAITROOM_GATES maps no room to ${host}${uri.split("?")[0]}`);
    const token = getCookie(c, admissionCookie(room));
    if (token !== undefined && (await admits(c, room, token))) return c.body(null, 204);
    const original = `${headers["x-forwarded-proto"] ?? "https"}://${host}${uri}`;
    const location = `${GATE_PREFIX}/rooms/${room}?${new URLSearchParams({ return: original })}`;
    c.header("location", location);
    c.header("cache-control", "no-store");
    if (c.req.valid("query").deny === "redirect") return c.body(null, 302);
    throw new ApiError("admission_required", `no valid admission for room '${room}': go to ${location}`);
  });

  mount(handoverRoute, async (c) => {
    const { room } = c.req.valid("param");
    const request = c.req.valid("json");
    const admission = await tokens.verify(request.admission_token, room);
    const verdict = await queue.checkAdmission(sql, admission);
    if (!verdict.ok) throw verdictError(verdict.code);
    const next = await queue.continueTo(sql, room, request.return);
    if (next.handover === "cookie") {
      setAdmissionCookie(
        c,
        room,
        { token: request.admission_token, expiresAt: admission.expiresAt },
        gate.cookieSecure,
      );
    }
    const continueUrl =
      next.url === null || next.handover === "cookie"
        ? next.url
        : `${next.url}#${new URLSearchParams({ waitroom_token: request.admission_token })}`;
    return c.json(
      {
        continue_url: continueUrl,
        handover: next.handover,
        auto_continue: next.auto_continue,
        admission_expires_at: admission.expiresAt.toISOString(),
      },
      200,
    );
  });

  mount(endHandoverRoute, (c) => {
    clearAdmissionCookie(c, c.req.valid("param").room, gate.cookieSecure);
    return c.body(null, 204);
  });
}

/** The gate's cookie for the room, holding the token until its exp (the handover's and the gate's renewal's). */
function setAdmissionCookie(
  c: Context<AppEnv>,
  room: string,
  admission: { token: string; expiresAt: Date },
  secure: boolean,
): void {
  setCookie(c, admissionCookie(room), admission.token, {
    httpOnly: true,
    secure,
    sameSite: "Lax",
    path: "/",
    maxAge: Math.max(0, Math.floor((admission.expiresAt.getTime() - Date.now()) / 1000)),
  });
}

function clearAdmissionCookie(c: Context<AppEnv>, room: string, secure: boolean): void {
  deleteCookie(c, admissionCookie(room), { path: "/", secure });
}
