import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import type postgres from "postgres";
import type { Sql } from "../../src/db/client.js";

/** A fixed clock origin: every time-dependent verb gets p_now = T0 + seconds. */
const T0 = Date.parse("2030-01-01T00:00:00Z");
export const at = (seconds: number): Date => new Date(T0 + seconds * 1000);

export const uniqueRoomId = (prefix = "room"): string => `${prefix}-${randomBytes(4).toString("hex")}`;

export type { Joined, Verdict } from "../../src/queue/index.js";

import type { Joined, Verdict } from "../../src/queue/index.js";

export async function createRoom(sql: Sql, capacity: number, settings: Record<string, unknown> = {}): Promise<string> {
  const id = uniqueRoomId();
  await sql`select waitroom.create_room(${id}, ${capacity}, ${sql.json(settings as never)}, ${at(0)})`;
  return id;
}

export async function join(
  sql: Sql,
  room: string,
  options: { holder?: string; priority?: number; now?: Date } = {},
): Promise<Joined> {
  const [row] = await sql<Joined[]>`
    select * from waitroom.join(${room}, ${options.holder ?? null}, ${options.priority ?? 0}, ${options.now ?? at(0)})`;
  if (!row) throw new Error("join returned no row");
  return row;
}

export async function admit(sql: Sql, room: string, now: Date, max: number | null = null): Promise<string[]> {
  const rows = await sql<{ ticket_id: string }[]>`select ticket_id from waitroom.admit(${room}, ${max}, ${now})`;
  return rows.map((row) => row.ticket_id);
}

type SeatVerb = "claim" | "heartbeat" | "leave" | "check";

/** Call one of the verbs that answer with a verdict (ok, code, status, expires_at). */
export async function verdict(
  sql: Sql,
  verb: SeatVerb,
  ticket: Joined | { ticket_id: string; token: string },
  now: Date,
) {
  const [row] = await sql<Verdict[]>`
    select * from ${sql(`waitroom.${verb}`)}(${ticket.ticket_id}::uuid, ${ticket.token}, ${now})`;
  if (!row) throw new Error(`${verb} returned no row`);
  return row;
}

export async function ticketRow(sql: Sql, ticketId: string) {
  const [row] = await sql`select * from waitroom.tickets where id = ${ticketId}`;
  return row;
}

export async function eventTypes(sql: Sql, ticketId: string): Promise<string[]> {
  const rows = await sql<
    { type: string }[]
  >`select type from waitroom.events where ticket_id = ${ticketId} order by id`;
  return rows.map((row) => row.type);
}

/** The first row of a result, which the test expects to exist. */
export function first<T>(rows: readonly T[]): T {
  const row = rows[0];
  if (row === undefined) throw new Error("expected at least one row");
  return row;
}

/** Backends of this database blocked on a heavyweight lock while running a statement that mentions `needle`. */
async function lockWaiters(sql: Sql, needle: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n
      from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid()
       and wait_event_type = 'Lock' and position(${needle} in query) > 0`;
  return row?.n ?? 0;
}

/** Poll (bounded) until `want` backends wait on a lock in a statement mentioning `needle`; returns the last count. */
export async function waitForLockWaiters(sql: Sql, needle: string, want: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let seen = await lockWaiters(sql, needle);
  while (seen < want && Date.now() < deadline) {
    await delay(10);
    seen = await lockWaiters(sql, needle);
  }
  return seen;
}

/** A promise plus the function that resolves it: every racer awaits `promise`, the test calls `open`. */
export function barrier(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** A transaction holding whatever `take` locks until `release` is called. */
export function holdLock(
  sql: Sql,
  take: (tx: postgres.TransactionSql) => Promise<unknown>,
): { held: Promise<void>; release: () => void; done: Promise<unknown> } {
  const held = barrier();
  const released = barrier();
  const done = sql.begin(async (tx) => {
    await take(tx);
    held.open();
    await released.promise;
  });
  done.catch(() => held.open());
  return { held: held.promise, release: released.open, done };
}
