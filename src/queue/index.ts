import { z } from "zod";
import type { Sql } from "../db/client.js";
import type { IdRange, LedgerEvent } from "../events/codec.js";
import { type RoomListing, type RoomPageSettings, type RoomSettings, type RoomWithStats, roomOf } from "./rooms.js";

export type { Room, RoomPageSettings, RoomSettings, RoomStats, RoomWithStats } from "./rooms.js";

/*
 * Typed calls of the SQL verbs in schema waitroom. No rules live here: each
 * function is one statement; the SQL decides.
 */

/**
 * The statuses a ticket can have, and those it never leaves, as the tickets table's constraints say
 * (tickets_status_known, tickets_end_iff_terminal); test/http/contracts.test.ts holds them to the table.
 */
export const ticketStatuses = ["queued", "admitted", "active", "draining", "ended", "expired", "left"] as const;
export type TicketStatus = (typeof ticketStatuses)[number];
export const terminalStatuses: ReadonlySet<string> = new Set<TicketStatus>(["ended", "expired", "left"]);

/** The answer of check, claim, heartbeat and leave: waitroom.verdict's attributes, as postgres.js reads them. */
export const verdictRow = z.object({
  ok: z.boolean(),
  code: z.string(),
  status: z.enum(ticketStatuses).nullable(),
  expires_at: z.date().nullable(),
});
export type Verdict = z.infer<typeof verdictRow>;

/** What a join answers: waitroom.join's columns (join_many's after its ordinal); test/sql/row-types.test.ts holds them. */
export const joinedRow = z.object({
  ticket_id: z.string(),
  token: z.string(),
  status: z.enum(ticketStatuses),
  position: z.int().nullable(),
  depth: z.int(),
});
export type Joined = z.infer<typeof joinedRow>;

/**
 * A ticket's state as a stream shows it: the attributes of waitroom.ticket_state (sql/00_types.sql) in
 * its order, as postgres.js reads them (bigint as number). It declares the type, and the HTTP contract
 * is made from it; rows are not parsed with it (a room-wide re-read returns thousands).
 * test/sql/row-types.test.ts holds its keys to the SQL type's, test/sql/ticket-states.test.ts parses
 * real rows of every status with it.
 */
export const ticketStateRow = z.object({
  ticket_id: z.string(),
  room_id: z.string(),
  status: z.enum(ticketStatuses),
  position: z
    .int()
    .nullable()
    .describe(
      "1 = next; null unless queued, and while the room's opening draw is to come (it gives every entrant its place).",
    ),
  depth: z.int().describe("Tickets queued in the room."),
  approximate: z.boolean().describe("true deep in a long queue, where the position is interpolated."),
  eta_seconds: z.int().nullable().describe("Estimated wait from the recent admission rate; null without a basis."),
  eta_low_seconds: z.int().nullable().describe("Low end of the range the wait is expected in; null without a basis."),
  eta_high_seconds: z
    .int()
    .nullable()
    .describe("High end of that range; null without a basis, or when a recent minute admitted nobody."),
  expires_at: z.date().nullable(),
  instance: z.int().describe("Incremented on every re-join; an admission token names the instance it was issued for."),
  end_reason: z
    .string()
    .nullable()
    .describe("Why an ended ticket ended (session_over, claim_timeout, idle, left, sold_out); null while it lives."),
});
export type TicketState = z.infer<typeof ticketStateRow>;

/** The verdict on a presented token, with the ticket's state when the token is its current one. */
export type TokenState = { code: string; state: TicketState | undefined };

export type JoinRequest = {
  holder?: string;
  priority?: number;
  tier?: string;
  /** Leading zero bits the join's verified proof of work showed (0: none); undefined: exempt (the server key). */
  proven?: number;
};

/** Many joins of one room in one statement (waitroom.join_many); answers in the order asked. */
export async function joinMany(sql: Sql, room: string, requests: readonly JoinRequest[]): Promise<Joined[]> {
  // Arrays only when some join sets them: the anonymous rush sends none.
  const holders = requests.some((r) => r.holder !== undefined) ? requests.map((r) => r.holder ?? null) : null;
  // A null element is join_many's own default (anonymous, priority 0): the default is not repeated here.
  const priorities = requests.some((r) => r.priority !== undefined) ? requests.map((r) => r.priority ?? null) : null;
  const tiers = requests.some((r) => r.tier !== undefined) ? requests.map((r) => r.tier ?? null) : null;
  const proofs = requests.flatMap((r) => (r.proven === undefined ? [] : [r.proven]));
  const rows = await sql<(Joined & { ordinal: number })[]>`
    select * from waitroom.join_many(${room}, ${requests.length},
      ${holders === null ? null : sql.array(holders as string[])}::text[],
      ${priorities === null ? null : sql.array(priorities as number[])}::integer[],
      null, ${tiers === null ? null : sql.array(tiers as string[])}::text[],
      ${proofs.length === 0 ? null : Math.min(...proofs)}::integer)`;
  const answers = new Array<Joined>(requests.length);
  for (const { ordinal, ...joined } of rows) answers[ordinal - 1] = joined;
  return answers;
}

/** A ticket id with the bearer token presented for it. */
export type PresentedToken = { ticketId: string; token: string };

/** The verdict on each (ticket, token) and, where the token is the ticket's current one, its state. */
export async function ticketStates(sql: Sql, presented: readonly PresentedToken[]): Promise<TokenState[]> {
  const rows = await sql<(TicketState & { ordinal: number; code: string })[]>`
    select s.ordinal, s.code, (s.state).* from waitroom.ticket_states(
      ${sql.array(presented.map((p) => p.ticketId))}::uuid[], ${sql.array(presented.map((p) => p.token))}::text[]) s`;
  return rows.map(({ ordinal: _ordinal, code, ...state }) => ({
    code,
    state: state.ticket_id === null ? undefined : state,
  }));
}

/** The answer of claim (waitroom.claim_result): the winner also learns what its admission token carries. */
export type Claimed =
  | {
      ok: true;
      code: "ok";
      status: TicketStatus;
      expires_at: Date;
      holder: string | null;
      room_id: string;
      instance: number;
    }
  | (Verdict & { ok: false; holder: null; room_id: null; instance: null });

export async function claim(sql: Sql, ticketId: string, token: string): Promise<Claimed> {
  const [row] = await sql<Claimed[]>`select * from waitroom.claim(${ticketId}, ${token})`;
  return row as Claimed;
}

/** Heartbeat and the state it left, in one round trip (waitroom.heartbeat_state); state only when code is ok. */
export async function heartbeat(
  sql: Sql,
  ticketId: string,
  token: string,
): Promise<TokenState & { holder: string | null }> {
  const [row] = await sql<(TicketState & { code: string; holder: string | null })[]>`
    select h.code, h.holder, (h.state).* from waitroom.heartbeat_state(${ticketId}, ${token}) h`;
  const { code, holder, ...state } = row as TicketState & { code: string; holder: string | null };
  return { code, holder, state: state.ticket_id === null ? undefined : state };
}

export async function leave(sql: Sql, ticketId: string, token: string): Promise<Verdict> {
  const [row] = await sql<Verdict[]>`select * from waitroom.leave(${ticketId}, ${token})`;
  return row as Verdict;
}

/** Revocation check of a verified admission token: its ticket and instance, and the key that signed it. */
export async function checkAdmission(
  sql: Sql,
  admission: { ticketId: string; instance: number; kid: string },
): Promise<Verdict> {
  const [row] = await sql<Verdict[]>`
    select * from waitroom.check_admission(${admission.ticketId}, ${admission.instance}, ${admission.kid})`;
  return row as Verdict;
}

/**
 * The gate's renewal of a verified admission token (waitroom.renew_admission): check_admission, then a
 * heartbeat for the seat (extending it where the room renews on heartbeat); ok carries what a fresh token says.
 */
export async function renewAdmission(
  sql: Sql,
  admission: { ticketId: string; instance: number; kid: string },
): Promise<Claimed> {
  const [row] = await sql<Claimed[]>`
    select * from waitroom.renew_admission(${admission.ticketId}, ${admission.instance}, ${admission.kid})`;
  return row as Claimed;
}

export async function positions(sql: Sql, room: string, ticketIds: readonly string[]): Promise<TicketState[]> {
  return sql<TicketState[]>`select * from waitroom.positions(${room}, ${sql.array(ticketIds as string[])}::uuid[])`;
}

export async function touch(sql: Sql, ticketIds: readonly string[]): Promise<number> {
  const [row] = await sql<{ touched: number }[]>`
    select waitroom.touch(${sql.array(ticketIds as string[])}::uuid[]) as touched`;
  return row?.touched ?? 0;
}

// Events are read as JSON, the shape NOTIFY delivers them in (see waitroom._publish).
export async function ticketEvents(sql: Sql, ticketId: string, afterId: number): Promise<LedgerEvent[]> {
  const rows = await sql<{ event: LedgerEvent }[]>`
    select to_jsonb(e) as event from waitroom.ticket_events(${ticketId}, ${afterId}) e`;
  return rows.map((row) => row.event);
}

/** Ledger event type → the SSE event streams show it as (waitroom.event_types); types not in it are not shown. */
export async function streamEventTypes(sql: Sql): Promise<ReadonlyMap<string, string>> {
  const rows = await sql<{ type: string; stream_event: string }[]>`
    select type, stream_event from waitroom.event_types() where stream_event is not null`;
  return new Map(rows.map((row) => [row.type, row.stream_event]));
}

/** The newest ledger id (0 for an empty ledger). */
export async function latestEventId(sql: Sql): Promise<number> {
  const [row] = await sql<{ id: string }[]>`select waitroom.latest_event_id()::text as id`;
  return Number(row?.id ?? 0);
}

export async function roomEvents(sql: Sql, rooms: readonly string[], since: Date): Promise<LedgerEvent[]> {
  const rows = await sql<{ event: LedgerEvent }[]>`
    select to_jsonb(e) as event from waitroom.room_events(${sql.array(rooms as string[])}, ${since}) e`;
  return rows.map((row) => row.event);
}

/**
 * The rows a compact notice names, as full-row messages carry them (waitroom.notice_events). One
 * JSON array, not a row each: at 10,000 rows that halves the read (≈ 45 ms instead of ≈ 95 ms).
 */
export async function noticeEvents(sql: Sql, ranges: readonly IdRange[]): Promise<LedgerEvent[]> {
  const firsts = ranges.map(([first]) => first);
  const lasts = ranges.map(([, last]) => last);
  const [row] = await sql<{ events: LedgerEvent[] }[]>`
    select coalesce(json_agg(e order by e.id), '[]') as events
      from waitroom.notice_events(${sql.array(firsts)}::bigint[], ${sql.array(lasts)}::bigint[]) e`;
  return row?.events ?? [];
}

/** Create the room or, if it exists, change it (waitroom.put_room); true when it was created. */
export async function putRoom(sql: Sql, room: string, settings: RoomSettings): Promise<boolean> {
  const [row] = await sql<{ created: boolean }[]>`select waitroom.put_room(${room}, ${sql.json(settings)}) as created`;
  return row?.created ?? false;
}

export async function configureRoom(sql: Sql, room: string, settings: RoomSettings): Promise<void> {
  await sql`select waitroom.configure_room(${room}, ${sql.json(settings)})`;
}

export async function deleteRoom(sql: Sql, room: string): Promise<void> {
  await sql`select waitroom.delete_room(${room})`;
}

/** Where an admitted visitor of the room goes: waitroom.continuation's attributes. */
export const continuationRow = z.object({
  url: z.string().nullable(),
  handover: z.enum(["cookie", "fragment"]),
  auto_continue: z.boolean(),
});
export type Continuation = z.infer<typeof continuationRow>;

/** waitroom.continue_to; WRRET for a return URL off the room's list. */
export async function continueTo(sql: Sql, room: string, returnUrl: string | undefined): Promise<Continuation> {
  const [row] = await sql<Continuation[]>`select * from waitroom.continue_to(${room}, ${returnUrl ?? null})`;
  if (!row) throw new Error("continue_to returned no row");
  return row;
}

/** Rooms with their live numbers (waitroom.list_rooms); one room when `room` is given. */
export async function listRooms(sql: Sql, room?: string): Promise<RoomWithStats[]> {
  const rows = await sql<RoomListing[]>`select * from waitroom.list_rooms(${room ?? null})`;
  return rows.map(roomOf);
}

/** The page settings of a room (waitroom.show_room_page); undefined for an unknown room. */
export async function showRoomPage(sql: Sql, room: string): Promise<RoomPageSettings | undefined> {
  const [found] = await sql<{ settings: RoomPageSettings }[]>`select settings from waitroom.show_room_page(${room})`;
  return found?.settings;
}

/** One minute of a room's ledger: waitroom.history's columns (test/sql/row-types.test.ts holds them). */
export const historyBucketRow = z.object({
  minute: z.date(),
  joined: z.int(),
  admitted: z.int(),
  left: z.int(),
  expired: z.int(),
  median_wait_ms: z.int().nullable(),
  p90_wait_ms: z.int().nullable(),
  depth: z.int(),
});
export type HistoryBucket = z.infer<typeof historyBucketRow>;

export async function history(sql: Sql, room: string, minutes: number, now?: Date): Promise<HistoryBucket[]> {
  return sql<HistoryBucket[]>`select * from waitroom.history(${room}, ${minutes}, ${now ?? null})`;
}

/** A room's stock: waitroom.stock_level's attributes (the HTTP contract is made from it). */
export const stockLevelRow = z.object({
  room_id: z.string(),
  stock_available: z.int().nullable().describe("Units neither reserved nor consumed; null: the room has no stock."),
  stock_outstanding: z.int().describe("Units reserved by offers and not settled yet."),
  sold_out: z.boolean(),
});
export type StockLevel = z.infer<typeof stockLevelRow>;

export async function addStock(sql: Sql, room: string, units: number): Promise<StockLevel> {
  const [row] = await sql<StockLevel[]>`select * from waitroom.add_stock(${room}, ${units})`;
  return row as StockLevel;
}

export async function stock(sql: Sql, room: string): Promise<StockLevel> {
  const [row] = await sql<StockLevel[]>`select * from waitroom.stock(${room})`;
  return row as StockLevel;
}

export const settleOutcomes = ["consumed", "returned"] as const;
export type SettleOutcome = (typeof settleOutcomes)[number];

/** The answer of settle: waitroom.settlement's attributes. */
export const settlementRow = z.object({
  ok: z.boolean(),
  code: z.enum(["ok", "not_granted", "already_consumed", "already_returned"]),
  room_id: z.string().nullable(),
  outcome: z.enum(settleOutcomes).nullable(),
  stock_available: z.int().nullable(),
});
export type Settlement = z.infer<typeof settlementRow>;

export async function settle(sql: Sql, ticketId: string, outcome: SettleOutcome): Promise<Settlement> {
  const [row] = await sql<Settlement[]>`select * from waitroom.settle(${ticketId}, ${outcome})`;
  return row as Settlement;
}

/**
 * A holder's quota in its room: the attributes of waitroom.shares in its order, as postgres.js reads them
 * (the HTTP contract is made from it; test/sql/row-types.test.ts holds its keys to the SQL type's).
 */
export const sharesRow = z.object({
  tier: z.string(),
  quota_limit: z.int().describe("Admissions the tier allows per window."),
  window_seconds: z.int(),
  used: z.int().describe("Admissions in the window that were not returned."),
  shares_left: z.int(),
  next_share_at: z.date().nullable(),
});
export type Shares = z.infer<typeof sharesRow>;

/** The quota of the ticket's holder, for its current token; undefined without quotas or holder. */
export async function ticketShares(sql: Sql, ticketId: string, token: string): Promise<Shares | undefined> {
  const [row] = await sql<Shares[]>`select * from waitroom.ticket_shares(${ticketId}, ${token})`;
  return row;
}

/** The key proof-of-work challenges are signed with (the same in every replica). */
export async function proofOfWorkSecret(sql: Sql): Promise<Buffer> {
  const [row] = await sql<{ secret: Buffer }[]>`select waitroom.proof_of_work_secret() as secret`;
  if (!row?.secret) throw new Error("waitroom.proof_of_work_secret() answered no key: is migration 0009 applied?");
  return row.secret;
}

/** The leading zero bits a room asks of anonymous joins (null: none); WR404 unknown room. */
export async function proofOfWorkBits(sql: Sql, room: string): Promise<number | null> {
  const [row] = await sql<{ bits: number | null }[]>`select waitroom.proof_of_work_bits(${room}) as bits`;
  return row?.bits ?? null;
}
