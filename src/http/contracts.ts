import { z } from "@hono/zod-openapi";
import { settleOutcomes, sharesRow, stockLevelRow, ticketStateRow, ticketStatuses } from "../queue/index.js";
import { roomIdPattern, roomSettings, roomStats, shownSettings } from "../queue/rooms.js";
import { int32, text } from "../queue/values.js";

export { roomSettings };

/*
 * Every request and response shape of the HTTP API, in one place. The route
 * definitions in routes/ validate with these, type their handlers by them,
 * and /openapi.json is generated from the same definitions. The room settings
 * are declared with the rooms, in src/queue/rooms.ts.
 */

export const roomId = z
  .string()
  .regex(new RegExp(`^${roomIdPattern}$`), "a room id is 1 to 48 characters of a-z, 0-9, _ and -");
export const ticketId = z.uuid({ error: "a ticket id is a UUID" });
/** A ledger event id, as SSE carries it (empty: from the start). */
export const eventId = z.string().regex(/^\d{0,15}$/, "Last-Event-ID must be an event id");
export const roomParams = z.object({ room: roomId });
export const ticketParams = z.object({ id: ticketId });

/** A solved challenge of GET /v1/rooms/{room}/challenge. */
export const proofOfWork = z
  .strictObject({
    challenge: z.string().min(1).max(256).describe("The challenge, as GET /v1/rooms/{room}/challenge answered it."),
    nonce: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "a nonce is 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
      .describe('SHA-256 of "<challenge>:<nonce>" starts with the challenge\'s `bits` zero bits.'),
  })
  .describe("Required by a room with proof_of_work_bits for an anonymous join; ignored with the server key.");

export const joinRequest = z.strictObject({
  holder: text(256).optional().describe("Verified user id; only from a trusted caller."),
  priority: int32(-1000, 1000).optional().describe("Higher goes first; only from a trusted caller."),
  tier: text(64)
    .optional()
    .describe("Quota tier of the holder (a key of the room's quota_tiers); only from a trusted caller."),
  proof_of_work: proofOfWork.optional(),
});

export const challengeResponse = z.object({
  challenge: z.string().describe("Signed, single-use; valid until expires_at, for this room only."),
  bits: z.int().describe("Leading zero bits the solution's SHA-256 must have (0: the room asks for none)."),
  expires_at: z.iso.datetime(),
});

const status = z.enum(ticketStatuses);

/** What a client sees of a ticket's state (waitroom.ticket_state): all of it but the instance and end reason. */
export const ticketState = ticketStateRow.omit({ instance: true, end_reason: true }).extend({
  ticket_id: z.uuid(),
  room_id: roomId,
  expires_at: z.iso
    .datetime()
    .nullable()
    .describe("Claim deadline of an offer, end of an active seat, end of grace while draining."),
});

/** A holder's quota in its room (waitroom.shares), its time as JSON carries it. */
export const shares = sharesRow.extend({
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

/** A room with its settings (every one but shuffle_seed, hidden until the draw) and live numbers. */
export const room = z.object({
  id: roomId,
  ...shownSettings.shape,
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
  stats: roomStats,
});

export const stockLevel = stockLevelRow.extend({ room_id: roomId });

export const addStockRequest = z.strictObject({ units: int32(1, 1_000_000_000) });

export const settleRequest = z.strictObject({
  outcome: z
    .enum(settleOutcomes)
    .describe("consumed: the unit is sold (the shares stay used); returned: the work or payment failed."),
});

export const settleResponse = z.object({
  ticket_id: z.uuid(),
  room_id: roomId,
  outcome: z.enum(settleOutcomes),
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
  proof_invalid: 403,
  not_found: 404,
  method_not_allowed: 405,
  superseded: 409,
  room_full: 409,
  already_settled: 409,
  not_granted: 409,
  proof_replayed: 409,
  draining: 410,
  ended: 410,
  expired: 410,
  left: 410,
  sold_out: 410,
  proof_expired: 410,
  payload_too_large: 413,
  unsupported_media_type: 415,
  headers_too_large: 431,
  not_admitted: 428,
  not_claimed: 428,
  proof_required: 428,
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
  handover: shownSettings.shape.handover,
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
