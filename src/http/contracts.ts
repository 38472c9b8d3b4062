import { z } from "@hono/zod-openapi";

/*
 * Every request and response shape of the HTTP API, in one place. The route
 * definitions in routes/ validate with these, type their handlers by them,
 * and /openapi.json is generated from the same definitions.
 */

const int32 = (min: number, max = 2_147_483_647) => z.int().min(min).max(max);
/**
 * A string PostgreSQL stores as given: text cannot hold NUL, and a lone surrogate would be
 * stored as U+FFFD (so two different holders would become one).
 */
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((value) => !value.includes("\u0000") && !/\p{Cs}/u.test(value), "must be valid Unicode without NUL");

/** Whether the runtime knows the zone (PostgreSQL, which has the last word, checks it again). */
function knownTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export const roomId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,47}$/, "a room id is 1 to 48 characters of a-z, 0-9, _ and -");
export const ticketId = z.uuid({ error: "a ticket id is a UUID" });
/** A ledger event id, as SSE carries it (empty: from the start). */
export const eventId = z.string().regex(/^\d{0,15}$/, "Last-Event-ID must be an event id");
export const roomParams = z.object({ room: roomId });
export const ticketParams = z.object({ id: ticketId });

export const joinRequest = z.strictObject({
  holder: text(256).optional().describe("Verified user id; only from a trusted caller."),
  priority: int32(-1000, 1000).optional().describe("Higher goes first; only from a trusted caller."),
  tier: text(64)
    .optional()
    .describe("Quota tier of the holder (a key of the room's quota_tiers); only from a trusted caller."),
});

const status = z.enum(["queued", "admitted", "active", "draining", "ended", "expired", "left"]);

export const ticketState = z.object({
  ticket_id: z.uuid(),
  room_id: roomId,
  status,
  position: z.int().nullable().describe("1 = next; null unless queued."),
  depth: z.int().describe("Tickets queued in the room."),
  approximate: z.boolean().describe("true deep in a long queue, where the position is interpolated."),
  eta_seconds: z.int().nullable().describe("Estimated wait from the recent admission rate; null without a basis."),
  eta_low_seconds: z.int().nullable().describe("Low end of the range the wait is expected in; null without a basis."),
  eta_high_seconds: z
    .int()
    .nullable()
    .describe("High end of that range; null without a basis, or when a recent minute admitted nobody."),
  expires_at: z.iso
    .datetime()
    .nullable()
    .describe("Claim deadline of an offer, end of an active seat, end of grace while draining."),
});

/** A holder's quota in its room (waitroom.shares). */
export const shares = z.object({
  tier: z.string(),
  quota_limit: z.int().describe("Admissions the tier allows per window."),
  window_seconds: z.int(),
  used: z.int().describe("Admissions in the window that were not returned."),
  shares_left: z.int(),
  next_share_at: z.iso
    .datetime()
    .nullable()
    .describe("When the next share becomes available; null while some are left."),
});

/** GET /v1/tickets/{id}: the state, and the holder's quota where the room has quotas. */
export const ticketAnswer = ticketState.extend({
  shares: shares
    .optional()
    .describe("The holder's quota; only in a room with quota_tiers, for a ticket with a holder."),
});

export const joinResponse = z.object({
  ticket_id: z.uuid(),
  token: z.string().describe("Bearer token of the ticket; returned only here."),
  status,
  position: z.int().nullable(),
  depth: z.int(),
  eta_seconds: z.int().nullable(),
  events_url: z.string().describe("The ticket's event stream (text/event-stream)."),
});

const admissionToken = z
  .string()
  .describe(
    "Ed25519-signed JWT for the protected app: sub, room, tid, ins, exp; kid. Short-lived: see admission_expires_at.",
  );
const admissionExpiresAt = z.iso
  .datetime()
  .describe(
    "When admission_token expires (its exp): WAITROOM_ADMISSION_TOKEN_SECONDS after signing, or with the seat.",
  );

export const claimResponse = z.object({
  ticket_id: z.uuid(),
  status,
  admission_token: admissionToken,
  admission_expires_at: admissionExpiresAt,
  expires_at: z.iso.datetime().describe("When the seat ends (heartbeats may extend it)."),
});

/** A heartbeat's answer: the state, and for a held seat a fresh admission token. */
export const heartbeatResponse = ticketState.extend({
  admission_token: admissionToken.optional().describe("A fresh admission token, while the ticket holds a seat."),
  admission_expires_at: admissionExpiresAt.optional(),
});

export const kidParams = z.object({
  kid: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "a key id: 43 base64url characters"),
});

export const signingKey = z.object({
  kid: z.string(),
  state: z.enum(["staged", "current", "retired", "revoked"]),
  created_at: z.iso.datetime().describe("Published in the JWKS since."),
  activates_at: z.iso.datetime().describe("Signs from (staged: will sign from)."),
  retired_at: z.iso.datetime().nullable(),
  revoked_at: z.iso.datetime().nullable(),
});

/** `room` is the room the caller protects: a token or ticket of another room is refused (wrong_room). */
export const checkRequest = z.union([
  z.strictObject({ room: roomId, admission_token: z.string().min(1).max(4096) }),
  z.strictObject({ room: roomId, ticket_id: ticketId, token: text(256) }),
]);

export const checkResponse = z.object({
  ok: z.literal(true),
  status,
  ticket_id: z.uuid(),
  room_id: roomId,
  expires_at: z.iso.datetime(),
});

/** The languages the waiting-room page speaks (web/i18n.js has a catalogue for each). */
export const pageLanguages = ["en", "de", "es", "fr", "pt", "ja", "zh", "ar"] as const;

/** Text the page shows with textContent: characters, not markup; `lines` keeps line breaks. */
const pageText = (max: number, lines: boolean) =>
  text(max).refine(
    (value) => !(lines ? /(?!\n)\p{Cc}/u : /\p{Cc}/u).test(value),
    lines ? "must not contain control characters but line breaks" : "must not contain control characters",
  );
/** A URL whose origin goes into the page's CSP: a plain ASCII host, so nothing can be smuggled into the header. */
const pageUrl = (protocol: "https" | "https?", what: string) =>
  z
    .string()
    .max(2048)
    .regex(
      new RegExp(`^${protocol}://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/\\S*)?$`),
      `${what} must be an ${protocol === "https" ? "https" : "http(s)"} URL with a plain ASCII host (punycode for others)`,
    );
/** An origin as browsers write it in Origin: scheme://host[:port], lower case, no path. */
const origin = z
  .string()
  .max(300)
  .regex(
    /^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/,
    "an origin is scheme://host[:port] in lower case, like https://shop.example",
  );

const handover = z
  .enum(["cookie", "fragment"])
  .describe(
    "How the admission reaches the protected site: cookie (the gate's cookie) or fragment (#waitroom_token=… on the URL).",
  );

export const roomSettings = z.strictObject({
  capacity: int32(0).optional(),
  admit_per_minute: int32(1).nullable().optional(),
  session_seconds: int32(1).optional(),
  grace_seconds: int32(0).optional(),
  claim_seconds: int32(1).optional(),
  idle_seconds: int32(1).optional(),
  renew_on_heartbeat: z.boolean().optional(),
  mode: z.enum(["open", "paused", "passthrough", "closed"]).optional(),
  opens_at: z.iso.datetime({ offset: true }).nullable().optional(),
  tick_ms: int32(50, 60_000).optional(),
  retention_seconds: int32(3600).optional(),
  health_url: z
    .url({ protocol: /^https?$/, error: "health_url must be an http(s) URL" })
    .max(2048)
    .nullable()
    .optional()
    .describe("Upstream health check: admission pauses while it does not answer 2xx."),
  max_queued: int32(1)
    .nullable()
    .optional()
    .describe("Most tickets queued at once: a join beyond it is refused with room_full; null: no cap."),
  page_title: pageText(80, false).nullable().optional().describe("The waiting-room page's heading; null: the room id."),
  page_message: pageText(500, true).nullable().optional().describe("A message under the heading; null: none."),
  page_brand_color: z
    .string()
    .regex(/^#[0-9a-fA-F]{6}$/, "page_brand_color must be #rrggbb")
    .nullable()
    .optional()
    .describe("The page's accent colour, #rrggbb; its text is black or white, whichever contrasts more."),
  page_logo_url: pageUrl("https", "page_logo_url")
    .nullable()
    .optional()
    .describe("A logo for the page's header; the page's CSP allows images from its origin only."),
  page_admitted_text: pageText(200, true)
    .nullable()
    .optional()
    .describe("What the admitted screen says; null: the page's default, in the visitor's language."),
  page_help_url: pageUrl("https?", "page_help_url")
    .nullable()
    .optional()
    .describe("A link to the site's status or help page; null: none."),
  page_language: z
    .enum(pageLanguages)
    .nullable()
    .optional()
    .describe("The page's language when Accept-Language names none it speaks; null: en."),
  target_url: z
    .url({ protocol: /^https?$/, error: "target_url must be an http(s) URL" })
    .max(2048)
    .refine((url) => !url.includes("#"), "target_url must have no fragment (the handover may add one)")
    .refine((url) => !/^https?:\/\/[^/?]*@/.test(url), "target_url must have no user info")
    .nullable()
    .optional()
    .describe("The protected site: where the page's Continue leads once the seat is claimed."),
  return_origins: z
    .array(origin)
    .max(32)
    .optional()
    .describe("Origins besides target_url's that the page may send a visitor back to (the URL the gate sent it from)."),
  handover: handover.optional(),
  auto_continue: z
    .boolean()
    .optional()
    .describe("The page continues by itself once the seat is claimed (default true)."),
  shuffle_seed: z
    .int()
    .min(-9_007_199_254_740_991)
    .max(9_007_199_254_740_991)
    .optional()
    .describe("Seed of the opening draw (random unless given); fixed once the room has opened."),
  quota_window_seconds: int32(1)
    .nullable()
    .optional()
    .describe("Rolling window of the per-holder quotas (set with quota_tiers); null: no quotas."),
  quota_tiers: z
    .record(text(64), z.strictObject({ limit: int32(0, 999_999_999), priority: int32(-1000, 1000).optional() }))
    .refine((tiers) => "default" in tiers, 'quota_tiers needs a tier "default" (for joins without a tier)')
    .nullable()
    .optional()
    .describe(
      'Admissions per window by tier, e.g. {"default": {"limit": 3}, "pro": {"limit": 10, "priority": 5}}; needs "default".',
    ),
  pool_per_day: int32(0)
    .nullable()
    .optional()
    .describe("Most admissions per day (in time_zone), shared by all tiers; null: no pool."),
  time_zone: text(64)
    .refine(knownTimeZone, "time_zone must be an IANA time zone, e.g. Europe/Paris")
    .optional()
    .describe("IANA time zone whose days are the pool's periods (default UTC)."),
});

export const room = z.object({
  id: roomId,
  capacity: z.int(),
  admit_per_minute: z.int().nullable(),
  session_seconds: z.int(),
  grace_seconds: z.int(),
  claim_seconds: z.int(),
  idle_seconds: z.int(),
  renew_on_heartbeat: z.boolean(),
  mode: z.enum(["open", "paused", "passthrough", "closed"]),
  opens_at: z.iso.datetime().nullable(),
  tick_ms: z.int(),
  retention_seconds: z.int(),
  health_url: z.string().nullable(),
  max_queued: z.int().nullable(),
  page_title: z.string().nullable(),
  page_message: z.string().nullable(),
  page_brand_color: z.string().nullable(),
  page_logo_url: z.string().nullable(),
  page_admitted_text: z.string().nullable(),
  page_help_url: z.string().nullable(),
  page_language: z.string().nullable(),
  quota_window_seconds: z.int().nullable(),
  quota_tiers: z.record(z.string(), z.object({ limit: z.int(), priority: z.int().optional() })).nullable(),
  pool_per_day: z.int().nullable(),
  time_zone: z.string(),
  target_url: z.string().nullable(),
  return_origins: z.array(z.string()),
  handover,
  auto_continue: z.boolean(),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  stats: z.object({
    queued: z.int(),
    admitted: z.int(),
    active: z.int(),
    draining: z.int(),
    free_seats: z.int(),
    admitted_last_minute: z.int(),
    oldest_wait_seconds: z.number().nullable(),
    median_wait_seconds: z.number().nullable(),
    health: z.enum(["healthy", "unhealthy", "unknown"]).nullable(),
    stock_available: z.int().nullable(),
    stock_outstanding: z.int(),
    sold_out: z.boolean(),
    pool_left: z.int().nullable(),
  }),
});

export const stockLevel = z.object({
  room_id: roomId,
  stock_available: z.int().nullable().describe("Units neither reserved nor consumed; null: the room has no stock."),
  stock_outstanding: z.int().describe("Units reserved by offers and not settled yet."),
  sold_out: z.boolean(),
});

export const addStockRequest = z.strictObject({ units: int32(1, 1_000_000_000) });

export const settleRequest = z.strictObject({
  outcome: z
    .enum(["consumed", "returned"])
    .describe("consumed: the unit is sold (the shares stay used); returned: the work or payment failed."),
});

export const settleResponse = z.object({
  ticket_id: z.uuid(),
  room_id: roomId,
  outcome: z.enum(["consumed", "returned"]),
  stock_available: z.int().nullable(),
});

export const roomList = z.object({ rooms: z.array(room) });

export const historyQuery = z.object({
  minutes: z.coerce.number().pipe(int32(1, 1440)).default(60),
});

export const roomHistory = z.object({
  room_id: roomId,
  minutes: z.int(),
  buckets: z
    .array(
      z.object({
        minute: z.iso.datetime().describe("Start of the minute."),
        joined: z.int(),
        admitted: z.int(),
        left: z.int(),
        expired: z.int(),
        median_wait_ms: z.int().nullable().describe("Median wait of the minute's admissions; null without any."),
        p90_wait_ms: z.int().nullable(),
        depth: z.int().describe("Queue depth at the end of the minute (derived from the depth now)."),
      }),
    )
    .describe("One per minute, oldest first; the last is the current minute."),
});

export const errorCodes = {
  invalid_request: 400,
  invalid_token: 401,
  unauthorized: 401,
  forbidden: 403,
  wrong_room: 403,
  origin_not_allowed: 403,
  return_not_allowed: 400,
  admission_required: 401,
  not_found: 404,
  method_not_allowed: 405,
  superseded: 409,
  room_full: 409,
  already_settled: 409,
  not_granted: 409,
  draining: 410,
  ended: 410,
  expired: 410,
  left: 410,
  sold_out: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  headers_too_large: 431,
  not_admitted: 428,
  not_claimed: 428,
  rate_limited: 429,
  quota_exceeded: 429,
  not_ready: 503,
  room_closed: 503,
  unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof errorCodes;

export const errorEnvelope = z.object({
  error: z.object({
    code: z.enum(Object.keys(errorCodes) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    available_at: z.iso.datetime().optional().describe("quota_exceeded: when the holder's next share is available."),
  }),
});

/** The handover: a claimed seat's admission token, and the URL the gate sent the visitor from (if any). */
export const handoverRequest = z.strictObject({
  admission_token: z.string().min(1).max(4096),
  return: z
    .string()
    .min(1)
    .max(4096)
    .optional()
    .describe("The protected URL to go back to (the page's `return` query parameter)."),
});

export const handoverResponse = z.object({
  continue_url: z
    .string()
    .nullable()
    .describe("Where to go now (with #waitroom_token=… in fragment mode); null: the room has no target_url."),
  handover,
  auto_continue: z.boolean(),
  admission_expires_at: z.iso.datetime().describe("When the cookie (the token in it) lapses unless renewed."),
});

/** What the proxy tells the gate about the request it is deciding on. */
export const gateHeaders = z.object({
  "x-forwarded-host": z
    .string()
    .max(300)
    .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, "X-Forwarded-Host must be host[:port]")
    .describe("The protected site's host, as the browser asked for it."),
  "x-forwarded-uri": z
    .string()
    .max(8192)
    .regex(/^\/[^\s#]*$/, "X-Forwarded-Uri must be the request's path and query")
    .describe("The path and query the browser asked for."),
  "x-forwarded-proto": z.enum(["http", "https"]).optional().describe("The scheme the browser used (default https)."),
  cookie: z.string().max(16_384).optional(),
});

export const gateQuery = z.object({
  deny: z
    .enum(["redirect", "unauthorized"])
    .default("redirect")
    .describe(
      "How to refuse: redirect (302, for Caddy forward_auth and Traefik ForwardAuth) or unauthorized " +
        "(401 admission_required, for nginx auth_request with error_page); both carry Location.",
    ),
});
