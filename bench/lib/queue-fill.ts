import { readFile } from "node:fs/promises";
import pg from "pg";

/*
 * Queues filled in bulk and admissions timed from the client: shared by the
 * admission benchmark and the rush, so that "admit of 10,000" is one
 * measurement wherever it is reported.
 */

/** Connections filling the queue at once: one per core of the reference machine. */
export const FILL_CONNECTIONS = 2;
export const FILL_BATCH = 20_000;

const seconds = (since: number) => (performance.now() - since) / 1000;

export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

/**
 * `count` joins of `room` through waitroom.join, in batches of one `insert … select`-style statement
 * (`select waitroom.join(room) from generate_series(1, n)`), on FILL_CONNECTIONS connections at once.
 * Stops early, between batches, once `deadline` (performance.now() ms) has passed.
 */
export async function fillQueue(
  databaseUrl: string,
  room: string,
  count: number,
  deadline: number,
  signal: AbortSignal,
): Promise<{ joined: number; seconds: number }> {
  const started = performance.now();
  let left = count;
  let joined = 0;
  const worker = async () => {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      while (left > 0 && !signal.aborted && performance.now() < deadline) {
        const batch = Math.min(FILL_BATCH, left);
        left -= batch;
        await client.query("select count(*) from (select waitroom.join($1) from generate_series(1, $2)) joined", [
          room,
          batch,
        ]);
        joined += batch;
      }
    } finally {
      await client.end();
    }
  };
  await Promise.all(Array.from({ length: Math.min(FILL_CONNECTIONS, Math.ceil(count / FILL_BATCH)) }, worker));
  signal.throwIfAborted();
  return { joined, seconds: seconds(started) };
}

/** One `waitroom.admit(room)` (as many as the room has seats for), timed from the client. */
export async function timeAdmit(control: pg.Client, room: string): Promise<{ ms: number; admitted: number }> {
  const { ms, value } = await timed(() =>
    control.query<{ count: string }>("select count(*) from waitroom.admit($1)", [room]),
  );
  return { ms, admitted: Number(value.rows[0]?.count ?? 0) };
}

const ADMIT_FLOOR = readFile(new URL("../sql/admit_floor.sql", import.meta.url), "utf8");

/**
 * The floor under `timeAdmit`: the rows an admission of `count` writes, by one plain statement on waitroom's
 * own tables (bench/sql/admit_floor.sql), timed from the client.
 */
export async function timeAdmitFloor(
  control: pg.Client,
  room: string,
  count: number,
): Promise<{ ms: number; admitted: number }> {
  const sql = await ADMIT_FLOOR;
  const { ms, value } = await timed(() => control.query(sql, [room, count]));
  return { ms, admitted: value.rowCount ?? 0 };
}
