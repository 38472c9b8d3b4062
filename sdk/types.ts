/*
 * The wire shapes of the HTTP API (docs/http-api.md), written out by hand:
 * the SDK must not import zod or anything else from the server, so it can
 * be bundled for a browser. test/sdk/sdk.test.ts checks them against the
 * server's own contracts (src/http/contracts.ts).
 */

export type TicketStatus = "queued" | "admitted" | "active" | "draining" | "ended" | "expired" | "left";

/** Where a ticket stands: GET /v1/tickets/{id}, heartbeat, and every event's data. */
export type TicketState = {
  ticket_id: string;
  room_id: string;
  status: TicketStatus;
  /** 1 = next; null unless queued, and while the room's opening draw is to come (it gives every entrant its place). */
  position: number | null;
  /** Tickets queued in the room. */
  depth: number;
  /** true deep in a long queue, where the position is interpolated. */
  approximate: boolean;
  /** Estimated wait; null without a basis. */
  eta_seconds: number | null;
  /** The range the wait is expected in; null without a basis (the high end also after a minute that admitted nobody). */
  eta_low_seconds: number | null;
  eta_high_seconds: number | null;
  /** Claim deadline of an offer, end of an active seat, end of grace while draining (ISO 8601). */
  expires_at: string | null;
};

/** A holder's quota in a room with quota tiers (GET /v1/tickets/{id} `shares`). */
export type Shares = {
  tier: string;
  /** Admissions the tier allows per window. */
  quota_limit: number;
  window_seconds: number;
  /** Admissions in the window that were not returned. */
  used: number;
  shares_left: number;
  /** When the next share becomes available (ISO 8601); null while some are left. */
  next_share_at: string | null;
};

/** GET /v1/tickets/{id}: the state, and the holder's quota where the room has quotas. */
export type TicketAnswer = Flat<TicketState & { shares?: Shares | undefined }>;

/** One object type instead of an intersection (what editors show, and what the contract test compares). */
type Flat<T> = { [K in keyof T]: T[K] };

/** A room's stock (POST and GET /v1/rooms/{room}/stock, server key). */
export type StockLevel = {
  room_id: string;
  /** Units neither reserved nor consumed; null: the room has no stock. */
  stock_available: number | null;
  /** Units reserved by offers and not settled yet. */
  stock_outstanding: number;
  sold_out: boolean;
};

export type SettleOutcome = "consumed" | "returned";

/** POST /v1/tickets/{id}/settle (server key). */
export type SettleResponse = {
  ticket_id: string;
  room_id: string;
  outcome: SettleOutcome;
  stock_available: number | null;
};

export type JoinResponse = {
  ticket_id: string;
  /** Bearer token of the ticket: shown only once, keep it to resume the ticket later. */
  token: string;
  status: TicketStatus;
  position: number | null;
  depth: number;
  eta_seconds: number | null;
  events_url: string;
};

export type ClaimResponse = {
  ticket_id: string;
  status: TicketStatus;
  /** Ed25519-signed JWT for the protected app; short-lived: heartbeats hand out fresh ones. */
  admission_token: string;
  /** When admission_token expires (its exp): never after the seat. */
  admission_expires_at: string;
  /** When the seat ends (heartbeats may extend it). */
  expires_at: string;
};

/** A heartbeat's answer: the state and, while the ticket holds a seat, a fresh admission token. */
export type HeartbeatResponse = TicketState & { admission_token?: string; admission_expires_at?: string };

export type CheckResponse = {
  ok: true;
  status: TicketStatus;
  ticket_id: string;
  room_id: string;
  expires_at: string;
};

/** GET /v1/rooms/{room}/challenge: what a room's proof of work asks. */
export type ChallengeResponse = {
  challenge: string;
  /** Leading zero bits SHA-256("<challenge>:<nonce>") must have; 0: the room asks for none. */
  bits: number;
  expires_at: string;
};

export type ErrorCode =
  | "invalid_request"
  | "invalid_token"
  | "unauthorized"
  | "forbidden"
  /** POST /v1/check: the token or ticket is for another room than the one asked about. */
  | "wrong_room"
  /** A browser's join from a page of another origin than the service's own or an allowed one. */
  | "origin_not_allowed"
  /** The handover: the return URL's origin is neither the room's target_url's nor in its return_origins. */
  | "return_not_allowed"
  /** The gate (deny=unauthorized): the request carries no valid admission cookie; Location says where to queue. */
  | "admission_required"
  | "not_found"
  | "method_not_allowed"
  | "superseded"
  /** The room's queue holds its most tickets (max_queued): try again later. */
  | "room_full"
  /** The room asks anonymous joins for a proof of work (join() solves it by itself). */
  | "proof_required"
  /** The proof of work's challenge was not issued by the service, or the nonce does not solve it. */
  | "proof_invalid"
  /** The proof of work's challenge was used already: each solves one join. */
  | "proof_replayed"
  /** The proof of work's challenge expired before the join. */
  | "proof_expired"
  /** settle: the admission was settled before. */
  | "already_settled"
  /** settle: no admission of this ticket took stock or a share. */
  | "not_granted"
  | "draining"
  | "ended"
  | "expired"
  | "left"
  /** The room's stock is gone: nothing left and nothing that may come back. */
  | "sold_out"
  | "payload_too_large"
  | "unsupported_media_type"
  | "headers_too_large"
  | "not_admitted"
  | "not_claimed"
  /** Too many requests from this client: the answer's Retry-After says when to try again. */
  | "rate_limited"
  /** The holder has no share left in its tier: error.availableAt says when the next one comes back. */
  | "quota_exceeded"
  | "not_ready"
  | "room_closed"
  /** The database is unreachable or restarting: retry shortly. */
  | "unavailable"
  | "internal"
  /** The answer was not the API's error envelope (a proxy's error page, say). */
  | "unexpected_response";

/*
 * Stream events. Ledger events (admitted, active, draining, ended, room)
 * carry the id of their row in waitroom.events; `state` and `superseded`
 * never do, and neither does the `ended` a stream sends when it finds the
 * ticket already over (or deleted with its room).
 */
type Ledger<T extends string, D> = { type: T; id: string; data: D };

export type StateEvent = { type: "state"; id?: undefined; data: TicketState };
export type AdmittedEvent = Ledger<"admitted", TicketState & { status: "admitted" }>;
export type ActiveEvent = Ledger<"active", TicketState & { status: "active" }>;
export type DrainingEvent = Ledger<"draining", TicketState & { status: "draining" }>;
export type EndedEvent = {
  type: "ended";
  id?: string;
  /** status says how it ended (ended, expired, left); reason, when given, why (sold_out: the stock is gone). */
  data: TicketState & { status: "ended" | "expired" | "left"; reason?: string };
};
export type SupersededEvent = {
  type: "superseded";
  id?: undefined;
  data: Omit<TicketState, "status"> & { status: "superseded" };
};
export type RoomEvent = Ledger<
  "room",
  TicketState & {
    /** What changed: `event` is the ledger type, the rest its data (the new settings, health, …). */
    room: {
      event: "room_configured" | "room_deleted" | "room_health" | "room_sold_out" | "room_restocked" | (string & {});
      [key: string]: unknown;
    };
  }
>;

export type WaitroomEvent =
  | StateEvent
  | AdmittedEvent
  | ActiveEvent
  | DrainingEvent
  | EndedEvent
  | SupersededEvent
  | RoomEvent;

export type WaitroomEventType = WaitroomEvent["type"];
