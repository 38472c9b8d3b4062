import type { BlockList } from "node:net";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { GateRoute, GateSettings } from "../../config/index.js";
import type { Sql } from "../../db/client.js";
import * as queue from "../../queue/index.js";
import { TokenError, type TokenIssuer } from "../../tokens/index.js";
import { gateHeaders, gateQuery, handoverRequest, handoverResponse, roomParams } from "../contracts.js";
import { ApiError, verdictCodes, verdictError } from "../errors.js";
import { fromTrustedProxy } from "../limits.js";
import { type AppEnv, defineRoute, type Router } from "../route.js";

/*
 * The gate: forward auth for a site that knows nothing about waitroom. The reverse proxy in front of
 * the site asks GET /v1/gate before every request; the answer rests on the admission cookie alone
 * (an admission token, verified against the cached signing keys: no database round trip). The
 * waiting-room page, served by the same proxy under /.waitroom/ so it is first-party on the site,
 * hands the admission over after each claim and heartbeat (POST …/handover sets the cookie).
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
    "Decides on the cookie alone: leaving, expiry and revocation are seen when the cookie is next renewed.",
  tags: ["gate"],
  request: { headers: gateHeaders, query: gateQuery },
  responses: {
    204: { description: "Admitted: let the request through." },
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

export type GateDeps = { sql: Sql; tokens: TokenIssuer; gate: GateSettings; trustedProxies: BlockList | undefined };

export function mountGate({ mount }: Router, { sql, tokens, gate, trustedProxies }: GateDeps): void {
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
    if (token !== undefined) {
      try {
        await tokens.verify(token, room);
        return c.body(null, 204);
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
      }
    }
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
    const lifetime = Math.floor((admission.expiresAt.getTime() - Date.now()) / 1000);
    if (next.handover === "cookie") setAdmissionCookie(c, room, request.admission_token, lifetime, gate.cookieSecure);
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
    deleteCookie(c, admissionCookie(c.req.valid("param").room), { path: "/", secure: gate.cookieSecure });
    return c.body(null, 204);
  });
}

function setAdmissionCookie(c: Context<AppEnv>, room: string, token: string, maxAge: number, secure: boolean): void {
  setCookie(c, admissionCookie(room), token, {
    httpOnly: true,
    secure,
    sameSite: "Lax",
    path: "/",
    maxAge: Math.max(0, maxAge),
  });
}
