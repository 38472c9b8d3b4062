import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { withClient } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, first, holdLock, type Joined, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

/** The draw as documented, computed here without the database: md5("<seed>:<ticket id>") ascending. */
const expectedDraw = (seed: number, ids: readonly string[]) =>
  [...ids]
    .map((id) => ({ id, key: createHash("md5").update(`${seed}:${id}`).digest("hex") }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1))
    .map((entry) => entry.id);

const queueOrder = async (sql: typeof db.sql, room: string) =>
  (
    await sql<{ ticket_id: string }[]>`
      select ticket_id from waitroom.queue where room_id = ${room} order by position`
  ).map((row) => row.ticket_id);

/** The order the queue holds, read off the tickets (before the draw the view shows join order, no position). */
const heldOrder = async (room: string) =>
  (
    await db.sql<{ id: string }[]>`
      select id from waitroom.tickets where room_id = ${room} and status = 'queued' order by priority desc, seq`
  ).map((row) => row.id);

const OPENS = 100;

/** A room opening at OPENS s with `before` tickets joined before it (at 1, 2, … s). */
async function scheduledRoom(before: number, settings: Record<string, unknown> = {}) {
  const room = await createRoom(db.sql, 1000, {
    opens_at: at(OPENS).toISOString(),
    idle_seconds: 3600,
    claim_seconds: 3600,
    ...settings,
  });
  const tickets: Joined[] = [];
  for (let i = 0; i < before; i++) tickets.push(await join(db.sql, room, { now: at(1 + i * 0.5) }));
  return { room, tickets, ids: tickets.map((ticket) => ticket.ticket_id) };
}

class RolledBack extends Error {}

/** The order the opening draw would give with this seed, in a transaction that is rolled back. */
async function drawWith(room: string, seed: number): Promise<string[]> {
  let order: string[] = [];
  try {
    await db.sql.begin(async (tx) => {
      await tx`select waitroom.configure_room(${room}, ${tx.json({ shuffle_seed: seed })}, ${at(50)})`;
      await tx`select * from waitroom.admit(${room}, 0, ${at(OPENS + 1)})`;
      order = await queueOrder(tx as unknown as typeof db.sql, room);
      throw new RolledBack();
    });
  } catch (error) {
    if (!(error instanceof RolledBack)) throw error;
  }
  return order;
}

type PlanNode = {
  "Actual Rows"?: number;
  "Actual Loops"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Join Filter"?: number;
  Plans?: PlanNode[];
};

/**
 * Rows that every plan node of every statement `query` ran (nested ones included, from auto_explain)
 * returned or filtered out, summed, and how many statements ran: the work a statement does, counted
 * instead of timed.
 */
async function workOf(query: string, params: unknown[]): Promise<{ rows: number; statements: number }> {
  return withClient(db.url, async (client) => {
    let rows = 0;
    let statements = 0;
    const count = (node: PlanNode) => {
      const loops = node["Actual Loops"] ?? 1;
      rows +=
        loops *
        ((node["Actual Rows"] ?? 0) +
          (node["Rows Removed by Filter"] ?? 0) +
          (node["Rows Removed by Join Filter"] ?? 0));
      for (const child of node.Plans ?? []) count(child);
    };
    client.on("notice", (notice: { message?: string }) => {
      const plan = /^duration: [\d.]+ ms\s+plan:\s*([\s\S]*)$/.exec(notice.message ?? "")?.[1];
      if (!plan) return;
      statements += 1;
      count((JSON.parse(plan) as { Plan: PlanNode }).Plan);
    });
    await client.query(`
      load 'auto_explain';
      set auto_explain.log_min_duration = 0;
      set auto_explain.log_analyze = on;
      set auto_explain.log_timing = off;
      set auto_explain.log_nested_statements = on;
      set auto_explain.log_format = json;
      set auto_explain.log_level = log;
      set client_min_messages = log`);
    await client.query(query, params);
    return { rows, statements };
  });
}

describe("opening draw", () => {
  it("orders the tickets joined before opens_at by the seed: same seed, same order; another seed, another", async () => {
    const { room, ids } = await scheduledRoom(20);
    // Each entrant took its drawn place as it joined, for the seed the room has; no position tells it.
    const { shuffle_seed } = first(await db.sql`select shuffle_seed from waitroom.rooms where id = ${room}`);
    expect(await heldOrder(room)).toEqual(expectedDraw(Number(shuffle_seed), ids));
    // Nor does the operators' view: join order, no position.
    const listed = await db.sql<{ ticket_id: string; position: number | null }[]>`
      select ticket_id, position from waitroom.queue where room_id = ${room}`;
    expect(listed).toEqual(ids.map((id) => ({ ticket_id: id, position: null })));
    for (const id of ids.slice(0, 3)) {
      expect(first(await db.sql`select * from waitroom.position(${id}, ${at(OPENS - 1)})`)).toMatchObject({
        status: "queued",
        position: null,
        approximate: false,
        eta_seconds: null,
      });
    }
    const draw42 = await drawWith(room, 42);
    const draw43 = await drawWith(room, 43);
    expect(draw42).toEqual(expectedDraw(42, ids));
    expect(draw43).toEqual(expectedDraw(43, ids));
    expect(await drawWith(room, 42)).toEqual(draw42);
    expect(draw43).not.toEqual(draw42);
    expect(draw42).not.toEqual(ids);
    expect([...draw42].sort()).toEqual([...ids].sort());
  });

  it("rewrites no entrant at the opening: each holds its drawn place from its join", async () => {
    const { room, ids } = await scheduledRoom(12, { shuffle_seed: 4242 });
    await join(db.sql, room, { holder: "held", now: at(40) });
    const versions = () =>
      db.sql<
        { id: string; xmin: string }[]
      >`select id, xmin::text from waitroom.tickets where room_id = ${room} order by id`;
    const before = await versions();
    expect(await admit(db.sql, room, at(OPENS), 0)).toEqual([]);
    expect(first(await db.sql`select shuffled_at from waitroom.rooms where id = ${room}`).shuffled_at).toEqual(
      at(OPENS),
    );
    expect(await versions()).toEqual(before);
    expect((await queueOrder(db.sql, room)).filter((id) => ids.includes(id))).toEqual(expectedDraw(4242, ids));
  });

  it("puts right what changed since the joins: opens_at moved, given late, or two places alike", async () => {
    // opens_at moved earlier: those who joined after the new one are not in the draw, and queue behind it.
    const moved = await scheduledRoom(6, { shuffle_seed: 5 });
    await db.sql`select waitroom.configure_room(${moved.room}, ${db.sql.json({ opens_at: at(2.1).toISOString() })}, ${at(2)})`;
    await admit(db.sql, moved.room, at(3), 0);
    // Joined at 1, 1.5 and 2 s: in the draw; at 2.5, 3 and 3.5 s: after it, in join order.
    expect(await queueOrder(db.sql, moved.room)).toEqual([
      ...expectedDraw(5, moved.ids.slice(0, 3)),
      ...moved.ids.slice(3),
    ]);

    // opens_at given while tickets waited: they had numbers of the sequence, and are drawn now.
    const late = await createRoom(db.sql, 1000, { idle_seconds: 3600, claim_seconds: 3600, mode: "paused" });
    const waiting = [];
    for (let i = 0; i < 6; i++) waiting.push((await join(db.sql, late, { now: at(1 + i) })).ticket_id);
    await db.sql`select waitroom.configure_room(${late}, ${db.sql.json({ mode: "open", opens_at: at(50).toISOString(), shuffle_seed: 8 })}, ${at(10)})`;
    await admit(db.sql, late, at(50), 0);
    expect(await queueOrder(db.sql, late)).toEqual(expectedDraw(8, waiting));

    // Two entrants holding one place (62-bit keys alike; forced here): the draw numbers them all anew.
    const alike = await scheduledRoom(5, { shuffle_seed: 9 });
    await db.sql`
      update waitroom.tickets set seq = (select min(seq) from waitroom.tickets where room_id = ${alike.room})
       where id = ${alike.ids[4] as string}`;
    await admit(db.sql, alike.room, at(OPENS), 0);
    expect(await queueOrder(db.sql, alike.room)).toEqual(expectedDraw(9, alike.ids));
    const audit = await db.sql<{ agrees: boolean }[]>`select agrees from waitroom.shuffle_audit(${alike.room})`;
    expect(audit.map((row) => row.agrees)).toEqual([true, true, true, true, true]);
  });

  it("keeps the drawn place of a join that committed after the draw: it joined before the opening", async () => {
    const { room, ids } = await scheduledRoom(6, { shuffle_seed: 77 });
    let late = "";
    const pending = holdLock(db.sql, async (tx) => {
      late = first(await tx`select ticket_id from waitroom.join(${room}, null, 0, ${at(OPENS - 1)})`).ticket_id;
    });
    await pending.held;
    expect(await admit(db.sql, room, at(OPENS), 0)).toEqual([]);
    pending.release();
    await pending.done;
    expect(await queueOrder(db.sql, room)).toEqual(expectedDraw(77, [...ids, late]));
    const audit = await db.sql<{ ticket_id: string; agrees: boolean }[]>`
      select ticket_id, agrees from waitroom.shuffle_audit(${room})`;
    expect(audit.map((row) => row.ticket_id)).toEqual(expectedDraw(77, [...ids, late]));
    expect(audit.every((row) => row.agrees)).toBe(true);
  });

  it("gives joins before the opening no position, and those after it one", async () => {
    const { room } = await scheduledRoom(3);
    const early = first(await db.sql`select * from waitroom.join(${room}, null, 0, ${at(60)})`);
    expect(early).toMatchObject({ status: "queued", position: null, depth: 4 });
    const batch = await db.sql`select * from waitroom.join_many(${room}, 2, null, null, ${at(61)})`;
    expect(batch.map((row) => [row.position, row.depth])).toEqual([
      [null, 6],
      [null, 6],
    ]);
    await admit(db.sql, room, at(OPENS), 0);
    const after = first(await db.sql`select * from waitroom.join(${room}, null, 0, ${at(OPENS + 1)})`);
    expect(after).toMatchObject({ status: "queued", position: 7, depth: 7 });
  });

  it("keeps tickets that join after opens_at behind the draw, in join order", async () => {
    const { room, ids } = await scheduledRoom(10, { shuffle_seed: 7 });
    const late: string[] = [];
    // The room is open from OPENS s; these join after it, before anyone is admitted.
    for (let i = 0; i < 5; i++) late.push((await join(db.sql, room, { now: at(OPENS + 1 + i) })).ticket_id);
    expect(await admit(db.sql, room, at(OPENS + 10), 0)).toEqual([]);
    expect(await queueOrder(db.sql, room)).toEqual([...expectedDraw(7, ids), ...late]);
  });

  it("admits in the order of the draw and records it once, with the seed revealed", async () => {
    const { room, ids } = await scheduledRoom(12, { shuffle_seed: 123456789 });
    const draw = expectedDraw(123456789, ids);
    expect(await admit(db.sql, room, at(OPENS - 1))).toEqual([]); // not open yet: no draw
    expect(first(await db.sql`select shuffled_at from waitroom.rooms where id = ${room}`).shuffled_at).toBeNull();

    expect(await admit(db.sql, room, at(OPENS), 4)).toEqual(draw.slice(0, 4));
    expect(await admit(db.sql, room, at(OPENS + 1), 3)).toEqual(draw.slice(4, 7));
    // Moving opens_at on after the draw does not draw again.
    await db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ opens_at: at(OPENS + 50).toISOString() })}, ${at(OPENS + 2)})`;
    expect(await admit(db.sql, room, at(OPENS + 60))).toEqual(draw.slice(7));

    const events = await db.sql<{ data: { seed: string; count: number }; created_at: Date }[]>`
      select data, created_at from waitroom.events where room_id = ${room} and type = 'room_shuffled'`;
    expect(events).toHaveLength(1);
    expect(first(events).data).toMatchObject({ seed: "123456789", count: 12 });
    expect(first(events).created_at).toEqual(at(OPENS));
    const [room_] = await db.sql`select shuffled_at from waitroom.rooms where id = ${room}`;
    expect(room_?.shuffled_at).toEqual(at(OPENS));
  });

  it("can be audited: stored and recomputed positions agree, and tampering shows", async () => {
    const { room, tickets, ids } = await scheduledRoom(15, { shuffle_seed: 99 });
    // Gone before the opening: not in the draw.
    await verdict(db.sql, "leave", tickets[3] as Joined, at(60));
    await admit(db.sql, room, at(OPENS), 2);
    type Audit = {
      ticket_id: string;
      status: string;
      stored_position: number;
      drawn_position: number;
      agrees: boolean;
    };
    const audit = () => db.sql<Audit[]>`select * from waitroom.shuffle_audit(${room})`;
    const rows = await audit();
    const entrants = ids.filter((_, i) => i !== 3);
    expect(rows.map((row) => row.ticket_id)).toEqual(expectedDraw(99, entrants));
    expect(rows.every((row) => row.agrees)).toBe(true);
    expect(rows.map((row) => row.stored_position)).toEqual(rows.map((_, i) => i + 1));
    expect(rows.filter((row) => row.status === "admitted")).toHaveLength(2);

    // Swap two queue numbers behind the audit's back: it no longer agrees for them.
    const [a, b] = rows.slice(5, 7).map((row) => row.ticket_id) as [string, string];
    await db.sql`
      update waitroom.tickets t set seq = o.seq
        from waitroom.tickets o
       where (t.id, o.id) in ((${a}::uuid, ${b}::uuid), (${b}::uuid, ${a}::uuid))`;
    const tampered = await audit();
    expect(tampered.filter((row) => !row.agrees).map((row) => row.ticket_id)).toEqual([b, a]);
  });

  it("keeps depth and positions exact, and priorities ahead", async () => {
    const { room, ids } = await scheduledRoom(8, { shuffle_seed: 5 });
    const vip = await join(db.sql, room, { holder: "vip", priority: 10, now: at(30) });
    const depth = async () =>
      Number(first(await db.sql`select queued from waitroom.room_stats where room_id = ${room}`).queued);
    expect(await depth()).toBe(9);
    await admit(db.sql, room, at(OPENS), 0);
    expect(await depth()).toBe(9);
    expect(await queueOrder(db.sql, room)).toEqual([
      vip.ticket_id,
      ...expectedDraw(5, [...ids, vip.ticket_id]).filter((id) => id !== vip.ticket_id),
    ]);
    const last = (await queueOrder(db.sql, room)).at(-1) as string;
    expect(first(await db.sql`select * from waitroom.position(${last}, ${at(OPENS)})`)).toMatchObject({
      position: 9,
      depth: 9,
    });
    expect(await admit(db.sql, room, at(OPENS + 1), 1)).toEqual([vip.ticket_id]);
    expect(await depth()).toBe(8);
  });

  /*
   * Found by the rush benchmark: with statistics taken before the joins (or none), the entrants were
   * estimated at one row and the draw paired queue numbers with drawn places in a nested loop that
   * re-read every entrant once per entrant (44 s for 10,000). Counted in rows, not in time.
   */
  it("draws in work proportional to the entrants, whatever the statistics say, and in statements independent of them", async () => {
    const entrants = 2000;
    const room = await createRoom(db.sql, 10, { opens_at: at(OPENS).toISOString(), idle_seconds: 3600 });
    await db.sql`analyze waitroom.tickets`; // before the joins: the room has no tickets yet
    await db.sql`select count(*) from (select waitroom.join(${room}, null, 0, ${at(1)}) from generate_series(1, ${entrants})) j`;
    const { rows, statements } = await workOf("select count(*) from waitroom.admit($1, 0, $2)", [room, at(OPENS)]);
    const audit = await db.sql<{ agrees: boolean }[]>`select agrees from waitroom.shuffle_audit(${room})`;
    expect(audit).toHaveLength(entrants);
    expect(audit.every((row) => row.agrees)).toBe(true);
    expect(rows).toBeLessThan(entrants * 50);
    // Each entrant's drawn place is checked inline: a helper run per entrant as a statement of its own
    // (a SQL function PostgreSQL could not inline) cost the check of 19,000 three times its time.
    expect(statements).toBeLessThan(entrants / 10);
  });

  it("draws nothing in a room without opens_at, and takes the seed as a setting", async () => {
    const plain = await createRoom(db.sql, 10, { idle_seconds: 3600 });
    const a = await join(db.sql, plain, { now: at(1) });
    const b = await join(db.sql, plain, { now: at(2) });
    expect(await admit(db.sql, plain, at(3))).toEqual([a.ticket_id, b.ticket_id]);
    expect(
      await db.sql`select 1 from waitroom.events where room_id = ${plain} and type = 'room_shuffled'`,
    ).toHaveLength(0);

    const seeds = await db.sql<{ shuffle_seed: string }[]>`
      select shuffle_seed from waitroom.rooms where id = any(${[plain, await createRoom(db.sql, 1)]})`;
    // Random and JSON-safe unless given.
    for (const { shuffle_seed } of seeds) expect(Math.abs(Number(shuffle_seed))).toBeLessThan(2 ** 53);
    expect(new Set(seeds.map((row) => row.shuffle_seed)).size).toBe(2);
    await expect(createRoom(db.sql, 1, { shuffle_seed: 2 ** 60 })).rejects.toMatchObject({ code: "WR400" });
  });

  it("hides a configured seed from the streams, and refuses a new seed after the draw", async () => {
    const { room } = await scheduledRoom(2);
    await db.sql`select waitroom.configure_room(${room}, '{"shuffle_seed": 31337}', ${at(10)})`;
    const [configured] = await db.sql<{ data: Record<string, unknown> }[]>`
      select data from waitroom.events where room_id = ${room} and type = 'room_configured'`;
    expect(configured?.data).toEqual({ shuffle_seed: "hidden until the draw" });
    const [created] = await db.sql<{ data: Record<string, unknown> }[]>`
      select data from waitroom.events where room_id = ${room} and type = 'room_created'`;
    expect(created?.data).not.toHaveProperty("shuffle_seed");
    // The settings the room was made with, no more (no state such as healthy or stock_available) and no fewer.
    const [settings] = await db.sql<{ names: string[] }[]>`
      select array_remove(waitroom._room_settings(), 'shuffle_seed') as names`;
    expect(Object.keys(created?.data ?? {}).sort()).toEqual([...(settings?.names ?? [])].sort());

    await admit(db.sql, room, at(OPENS));
    await expect(
      db.sql`select waitroom.configure_room(${room}, '{"shuffle_seed": 1}', ${at(OPENS + 1)})`,
    ).rejects.toMatchObject({ code: "WR400" });
    // Setting it to the value it has is no change.
    await db.sql`select waitroom.configure_room(${room}, '{"shuffle_seed": 31337}', ${at(OPENS + 1)})`;
  });
});

describe("the tick of the opening", () => {
  const nextTick = async (room: string) =>
    (await db.sql<{ run_at: Date }[]>`select run_at from graphile_worker.jobs where key = ${`admit:${room}`}`).map(
      (row) => row.run_at,
    );
  const tickAt = async (room: string, seconds: number) => {
    await db.sql`select graphile_worker.remove_job(${`admit:${room}`})`;
    await db.sql`select waitroom.tick(${room}, ${at(seconds)})`;
    return nextTick(room);
  };
  const waitAt = async (room: string, seconds: number) =>
    first(
      await db.sql<{ ms: number | null }[]>`
        select (extract(epoch from waitroom.opening_wait(${room}, ${at(seconds)})) * 1000)::float8 as ms`,
    ).ms;

  it("is due half a second before opens_at, and says how long is left to wait", async () => {
    const { room } = await scheduledRoom(1, { tick_ms: 5000 });
    // Long before: the next tick is the opening's, early by the lead; tick_ms later would be late.
    expect(await tickAt(room, 10)).toEqual([at(OPENS - 0.5)]);
    expect(await tickAt(room, OPENS - 3)).toEqual([at(OPENS - 0.5)]);
    // Within the lead, a tick run without waiting comes again 50 ms later, not at once.
    expect(await tickAt(room, OPENS - 0.3)).toEqual([at(OPENS - 0.25)]);
    expect(await tickAt(room, OPENS + 1)).toEqual([at(OPENS + 6)]);

    expect(await waitAt(room, OPENS - 0.6)).toBeNull();
    expect(await waitAt(room, OPENS - 0.5)).toBe(500);
    expect(await waitAt(room, OPENS - 0.2)).toBe(200);
    expect(await waitAt(room, OPENS)).toBeNull();
    await db.sql`select waitroom.configure_room(${room}, '{"mode": "paused"}', ${at(50)})`;
    expect(await waitAt(room, OPENS - 0.2)).toBeNull();
    expect(await waitAt(await createRoom(db.sql, 1), OPENS - 0.2)).toBeNull(); // no opens_at
  });
});
