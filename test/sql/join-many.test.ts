/*
 * join_many: the set-based join. Each join of a batch means what waitroom.join
 * means, as if the batch's joins ran one after another in ordinal order; the
 * races at the end fire batches on distinct connections and hold them behind
 * a lock inside Postgres until all of them wait, as races.test.ts does.
 */
import { setTimeout as delay } from "node:timers/promises";
import type postgres from "postgres";
import { describe, expect, it } from "vitest";
import type { Sql } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";
import {
  admit,
  at,
  barrier,
  createRoom,
  eventTypes,
  first,
  holdLock,
  join,
  ticketRow,
  verdict,
  waitForLockWaiters,
} from "../helpers/queue.js";

const db = useTestDatabase({ max: 40 });

type Answer = {
  ordinal: number;
  ticket_id: string;
  token: string;
  status: string;
  position: number | null;
  depth: number;
};
type Batch = { holders?: (string | null)[]; priorities?: (number | null)[]; now?: Date };
type Reserved = postgres.ReservedSql;

const TEXT_OID = 25;
const INT4_OID = 23;

/** waitroom.join_many on `sql` (the pool or one reserved connection), answers in ordinal order. */
async function joinMany(sql: Sql | Reserved, room: string, count: number, batch: Batch = {}): Promise<Answer[]> {
  return sql<Answer[]>`
    select * from waitroom.join_many(${room}, ${count},
      ${batch.holders === undefined ? null : sql.array(batch.holders, TEXT_OID)}::text[],
      ${batch.priorities === undefined ? null : sql.array(batch.priorities, INT4_OID)}::integer[],
      ${batch.now ?? at(0)})`;
}

/** The answer of one ordinal, which the test expects to exist. */
function nth(answers: readonly Answer[], ordinal: number): Answer {
  const answer = answers.find((a) => a.ordinal === ordinal);
  if (!answer) throw new Error(`no answer for ordinal ${ordinal}`);
  return answer;
}

/** Everything a join can write: tickets, ledger, tally and how far each room's sequence has drawn. */
async function everything(): Promise<Record<string, string>> {
  return first(
    await db.sql<Record<string, string>[]>`
      select (select coalesce(string_agg(t::text, ' ' order by t.id), '') from waitroom.tickets t) as tickets,
             (select coalesce(string_agg(e::text, ' ' order by e.id), '') from waitroom.events e) as events,
             (select coalesce(string_agg(q::text, ' ' order by q.room_id, q.shard), '')
                from waitroom.queue_tally q) as tally,
             (select coalesce(string_agg(r.id || '=' || coalesce(pg_sequence_last_value(r.queue_seq)::text, 'none'),
                                         ' ' order by r.id), '')
                from waitroom.rooms r) as sequences`,
  );
}

async function depthAndQueued(room: string): Promise<{ depth: number; queued: number; dequeued: number }> {
  return first(
    await db.sql<{ depth: number; queued: number; dequeued: number }[]>`
      select waitroom._depth(${room}) as depth,
             (select count(*) from waitroom.tickets where room_id = ${room} and status = 'queued') as queued,
             (select sum(dequeued)::bigint from waitroom.queue_tally where room_id = ${room}) as dequeued`,
  );
}

async function code(answer: Answer, now = at(1)): Promise<string> {
  return (await verdict(db.sql, "check", answer, now)).code;
}

describe("join_many", () => {
  it("answers one row per join, in ordinal order, with tickets queued in that order", async () => {
    const room = await createRoom(db.sql, 1);
    const answers = await joinMany(db.sql, room, 5);
    expect(answers.map((a) => a.ordinal)).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(answers.map((a) => a.ticket_id)).size).toBe(5);
    expect(new Set(answers.map((a) => a.token)).size).toBe(5);
    // Exact for new tickets of a FIFO room: everyone queued before them, then their batch.
    expect(answers.map((a) => [a.status, a.position, a.depth])).toEqual([1, 2, 3, 4, 5].map((p) => ["queued", p, 5]));
    for (const a of answers) {
      expect(a.token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
      expect(await code(a)).toBe("queued");
      const [pos] = await db.sql`select "position" from waitroom.position(${a.ticket_id}, ${at(1)})`;
      expect(pos?.position).toBe(a.position);
    }
    const seqs = await db.sql<{ id: string }[]>`select id from waitroom.tickets where room_id = ${room} order by seq`;
    expect(seqs.map((r) => r.id)).toEqual(answers.map((a) => a.ticket_id));

    const ledger = await db.sql<{ ticket_id: string; type: string; data: unknown; created_at: Date }[]>`
      select ticket_id, type, data, created_at from waitroom.events where room_id = ${room} and ticket_id is not null
       order by id`;
    expect(ledger).toEqual(
      answers.map((a) => ({ ticket_id: a.ticket_id, type: "joined", data: { priority: 0 }, created_at: at(0) })),
    );
    const row = await ticketRow(db.sql, nth(answers, 3).ticket_id);
    expect(row).toMatchObject({ holder: null, instance: 1, priority: 0, queued_at: at(0), last_seen_at: at(0) });
    expect(await depthAndQueued(room)).toEqual({ depth: 5, queued: 5, dequeued: 0 });

    // A later batch queues behind it.
    const more = await joinMany(db.sql, room, 2, { now: at(2) });
    expect(more.map((a) => [a.position, a.depth])).toEqual([
      [6, 7],
      [7, 7],
    ]);
  });

  it("reads a null holder as anonymous and a null priority as 0, and admits by priority, then ordinal", async () => {
    const room = await createRoom(db.sql, 10);
    const answers = await joinMany(db.sql, room, 4, {
      holders: [null, "carol", null, "dave"],
      priorities: [null, 5, 5, null],
    });
    const rows = await db.sql<{ id: string; holder: string | null; priority: number }[]>`
      select id, holder, priority from waitroom.tickets where room_id = ${room}`;
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(answers.map((a) => byId.get(a.ticket_id))).toMatchObject([
      { holder: null, priority: 0 },
      { holder: "carol", priority: 5 },
      { holder: null, priority: 5 },
      { holder: "dave", priority: 0 },
    ]);
    expect(await admit(db.sql, room, at(1))).toEqual([2, 3, 1, 4].map((o) => nth(answers, o).ticket_id));
  });

  it("bounds each position from above and is exact where join is", async () => {
    const room = await createRoom(db.sql, 10, { mode: "paused" });
    await joinMany(db.sql, room, 3, { priorities: [0, 2, 0] });
    const answers = await joinMany(db.sql, room, 6, {
      holders: [null, "erin", null, null, "erin", null],
      priorities: [0, 3, 1, 0, 9, -1],
    });
    for (const a of answers) {
      const [exact] = await db.sql<{ position: number }[]>`
        select "position" from waitroom.position(${a.ticket_id}, ${at(1)})`;
      expect(a.position).toBeGreaterThanOrEqual(exact?.position ?? 0);
    }
    // The last join of the lowest priority has nobody queued behind it: its bound is depth.
    expect(nth(answers, 6)).toMatchObject({ position: 8, depth: 8 });
  });

  it("folds a holder's joins of one batch into one ticket whose last join holds the current token", async () => {
    const room = await createRoom(db.sql, 1);
    const answers = await joinMany(db.sql, room, 5, {
      holders: ["alice", null, "alice", "bob", "alice"],
      priorities: [1, 0, 7, 0, 9],
    });
    const alice = [1, 3, 5].map((o) => nth(answers, o));
    expect(new Set(alice.map((a) => a.ticket_id)).size).toBe(1);
    expect(new Set(alice.map((a) => a.token)).size).toBe(3);
    expect(await Promise.all(alice.map((a) => code(a)))).toEqual(["superseded", "superseded", "queued"]);

    // As if serial: the first join made the ticket (its priority, the first number), the others re-joined.
    const ticket = await ticketRow(db.sql, nth(answers, 1).ticket_id);
    expect(ticket).toMatchObject({ holder: "alice", instance: 3, priority: 1 });
    const order = await db.sql<{ id: string }[]>`select id from waitroom.tickets where room_id = ${room} order by seq`;
    expect(order.map((r) => r.id)).toEqual([1, 2, 4].map((o) => nth(answers, o).ticket_id));
    expect(await eventTypes(db.sql, nth(answers, 1).ticket_id)).toEqual(["joined", "rejoined", "rejoined"]);
    const data = await db.sql<{ data: unknown }[]>`
      select data from waitroom.events where ticket_id = ${nth(answers, 1).ticket_id} order by id`;
    expect(data.map((r) => r.data)).toEqual([
      { priority: 1 },
      { instance: 2, superseded_instance: 1 },
      { instance: 3, superseded_instance: 2 },
    ]);
    expect(new Set(answers.map((a) => a.depth))).toEqual(new Set([3]));
    expect(await depthAndQueued(room)).toEqual({ depth: 3, queued: 3, dequeued: 0 });
  });

  it("keeps the ticket of a holder already in the room: same place, status and priority, a new token", async () => {
    const room = await createRoom(db.sql, 1);
    const queued = await join(db.sql, room, { holder: "frank", priority: 2 });
    const offered = await join(db.sql, room, { holder: "gina" });
    await join(db.sql, room, { holder: "hugo" });
    // frank (priority 2) is offered the one seat; gina waits.
    expect(await admit(db.sql, room, at(1))).toEqual([queued.ticket_id]);
    const before = await ticketRow(db.sql, offered.ticket_id);

    const answers = await joinMany(db.sql, room, 3, {
      holders: ["gina", "frank", null],
      priorities: [-5, 0, 0],
      now: at(2),
    });
    expect(nth(answers, 1)).toMatchObject({ ticket_id: offered.ticket_id, status: "queued" });
    expect(nth(answers, 2)).toMatchObject({ ticket_id: queued.ticket_id, status: "admitted", position: null });
    const after = await ticketRow(db.sql, offered.ticket_id);
    expect(after).toMatchObject({ seq: before?.seq, priority: 0, instance: 2, last_seen_at: at(2) });
    expect(await code({ ...nth(answers, 1), token: offered.token }, at(3))).toBe("superseded");
    expect(await code(nth(answers, 1), at(3))).toBe("queued");
    expect(await verdict(db.sql, "claim", queued, at(3))).toMatchObject({ code: "superseded" });
    expect(await verdict(db.sql, "claim", nth(answers, 2), at(3))).toMatchObject({ ok: true, status: "active" });
    expect(await eventTypes(db.sql, offered.ticket_id)).toEqual(["joined", "rejoined"]);
    // Re-joins draw no number: depth is gina, hugo and the new anonymous ticket.
    expect(await depthAndQueued(room)).toEqual({ depth: 3, queued: 3, dequeued: 1 });
  });

  it("gives a holder whose ticket has ended a new ticket at the back", async () => {
    const room = await createRoom(db.sql, 1);
    const first = await join(db.sql, room, { holder: "ivy" });
    await join(db.sql, room);
    await verdict(db.sql, "leave", first, at(1));
    const [again] = await joinMany(db.sql, room, 1, { holders: ["ivy"], now: at(2) });
    expect(again?.ticket_id).not.toBe(first.ticket_id);
    expect(again).toMatchObject({ status: "queued", position: 2, depth: 2 });
  });

  it("admits at once in a passthrough room while seats are free, and announces none of it", async () => {
    const room = await createRoom(db.sql, 3, { mode: "passthrough" });
    const heard: string[] = [];
    const listener = await db.sql.listen("waitroom_events", (payload) => heard.push(payload));
    try {
      const answers = await joinMany(db.sql, room, 5, { holders: [null, "jack", null, null, "jack"] });
      expect(answers.map((a) => [a.status, a.position])).toEqual([
        ["admitted", null],
        ["admitted", null],
        ["admitted", null],
        ["queued", 1],
        ["admitted", null],
      ]);
      expect(answers.map((a) => a.depth)).toEqual([1, 1, 1, 1, 1]);
      expect(await code(nth(answers, 5))).toBe("not_claimed");
      expect(await code(nth(answers, 2))).toBe("superseded");
      const admitted = await db.sql<{ n: number }[]>`
        select count(*)::int as n from waitroom.events where room_id = ${room} and type = 'admitted'`;
      expect(admitted[0]?.n).toBe(3);
      // Notifications arrive in commit order: once this one is heard, anything join_many sent was too.
      await db.sql`select waitroom.configure_room(${room}, '{"capacity": 4}', ${at(1)})`;
      const deadline = Date.now() + 5_000;
      while (heard.length === 0 && Date.now() < deadline) await delay(5);
      expect(heard).toHaveLength(1);
      expect(heard[0]).toContain("room_configured");
    } finally {
      await listener.unlisten();
    }
  });

  it.each([
    ["an unknown room", { room: "no-such-room" }, "WR404", "does not exist"],
    ["a closed room", { mode: "closed" }, "WR503", "is closed"],
    ["no joins", { count: 0 }, "WR400", "p_count"],
    ["more joins than the cap", { count: 10_001 }, "WR400", "p_count must be between 1 and 10000"],
    ["a null count", { count: null }, "WR400", "p_count"],
    ["fewer holders than joins", { count: 3, holders: ["a", "b"] }, "WR400", "p_holders"],
    ["more priorities than joins", { count: 2, priorities: [1, 2, 3] }, "WR400", "p_priorities"],
    ["an empty holder at join 3", { count: 4, holders: ["a", null, "", "b"] }, "WR400", "join 3: holder"],
    ["a huge holder at join 2", { count: 2, holders: [null, "x".repeat(257)] }, "WR400", "join 2: holder"],
    ["a priority out of range at join 4", { count: 4, priorities: [0, 1, 2, 1001] }, "WR400", "join 4: priority"],
  ])(
    "refuses %s and writes nothing",
    async (_label, input: {
      room?: string;
      mode?: string;
      count?: number | null;
      holders?: string[] | (string | null)[];
      priorities?: number[];
    }, sqlstate, message) => {
      const room = await createRoom(db.sql, 2, { mode: "passthrough" });
      await joinMany(db.sql, room, 2, { holders: ["a", null] });
      if (input.mode)
        await db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ mode: input.mode })}, ${at(1)})`;
      const before = await everything();
      const count = input.count === undefined ? 4 : input.count;
      const call = db.sql`
        select * from waitroom.join_many(${input.room ?? room}, ${count},
          ${input.holders === undefined ? null : db.sql.array(input.holders, TEXT_OID)}::text[],
          ${input.priorities === undefined ? null : db.sql.array(input.priorities, INT4_OID)}::integer[],
          ${at(1)})`;
      await expect(call).rejects.toMatchObject({ code: sqlstate, message: expect.stringContaining(message) });
      expect(await everything()).toEqual(before);
    },
  );

  it("refuses a batch whose last join is invalid after checking the others: nothing of it is written", async () => {
    const room = await createRoom(db.sql, 5, { mode: "passthrough" });
    const before = await everything();
    const holders = [...Array.from({ length: 99 }, (_, i) => `user-${i}`), "y".repeat(300)];
    await expect(joinMany(db.sql, room, 100, { holders })).rejects.toMatchObject({
      code: "WR400",
      message: expect.stringContaining("join 100:"),
    });
    expect(await everything()).toEqual(before);
    // The same batch without the bad join goes through whole.
    const answers = await joinMany(db.sql, room, 99, { holders: holders.slice(0, 99) });
    expect(answers.filter((a) => a.status === "admitted")).toHaveLength(5);
    expect(await depthAndQueued(room)).toMatchObject({ depth: 94, queued: 94 });
  });
});

function errorText(error: unknown): string {
  const code = (error as { code?: string }).code ?? "";
  return `${code} ${error instanceof Error ? error.message : String(error)}`;
}

describe("join_many under contention", () => {
  it("batches sharing holders, in different orders, make one live ticket per holder and keep depth exact", async () => {
    const room = await createRoom(db.sql, 10, { mode: "paused" });
    const BATCHES = 12;
    const HOLDERS = 6;
    const conns = await Promise.all(Array.from({ length: BATCHES }, () => db.sql.reserve()));
    // Every batch joins every holder once (in its own rotated order, some twice) plus anonymous joins.
    const plans = conns.map((_, b) => {
      const holders: (string | null)[] = [];
      for (let h = 0; h < HOLDERS; h++) holders.push(`h${(h + b) % HOLDERS}`, null);
      if (b % 3 === 0) holders.push(`h${b % HOLDERS}`);
      return holders;
    });
    // The gate: a SHARE lock on tickets stops every batch at its first write, after each has read
    // that no holder has a live ticket yet; then all of them insert the same holders at once.
    const gate = holdLock(db.sql, (tx) => tx`lock table waitroom.tickets in share mode`);
    let results: Answer[][] = [];
    try {
      await gate.held;
      const start = barrier();
      const calls = conns.map(async (conn, b) => {
        await start.promise;
        const holders = plans[b] ?? [];
        return joinMany(conn, room, holders.length, { holders, now: at(1) });
      });
      start.open();
      expect(await waitForLockWaiters(db.sql, "waitroom.join_many", BATCHES)).toBe(BATCHES);
      gate.release();
      await gate.done;
      const settled = await Promise.allSettled(calls);
      expect(settled.filter((s) => s.status === "rejected").map((s) => errorText(s.reason))).toEqual([]);
      results = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    } finally {
      gate.release();
      await gate.done.catch(() => {});
      for (const conn of conns) conn.release();
    }

    const live = await db.sql<{ holder: string; id: string; instance: number }[]>`
      select holder, id, instance from waitroom.tickets
       where room_id = ${room} and holder is not null and status in ('queued', 'admitted', 'active', 'draining')
       order by holder`;
    expect(live.map((t) => t.holder)).toEqual(Array.from({ length: HOLDERS }, (_, h) => `h${h}`));
    const joinsOf = new Map<string, number>();
    for (const plan of plans) for (const h of plan) if (h) joinsOf.set(h, (joinsOf.get(h) ?? 0) + 1);
    for (const t of live) {
      expect(t.instance).toBe(joinsOf.get(t.holder));
      // Every answer for this holder names its one ticket; exactly one of their tokens is current.
      const answers = results.flatMap((rows, b) => rows.filter((a) => (plans[b] ?? [])[a.ordinal - 1] === t.holder));
      expect(answers).toHaveLength(joinsOf.get(t.holder) ?? -1);
      expect(new Set(answers.map((a) => a.ticket_id))).toEqual(new Set([t.id]));
      const codes = await Promise.all(answers.map((a) => code(a)));
      expect(codes.filter((c) => c === "queued")).toHaveLength(1);
      // The ledger tells the same story: one join, then re-joins with instances 2..n, each once.
      const ledger = await db.sql<{ type: string; instance: number | null }[]>`
        select type, (data ->> 'instance')::int as instance from waitroom.events where ticket_id = ${t.id}`;
      expect(ledger.filter((e) => e.type === "joined")).toHaveLength(1);
      expect(
        ledger
          .filter((e) => e.type === "rejoined")
          .map((e) => e.instance)
          .sort((x, y) => (x ?? 0) - (y ?? 0)),
      ).toEqual(Array.from({ length: (joinsOf.get(t.holder) ?? 1) - 1 }, (_, i) => i + 2));
    }

    // The batches really raced: every batch drew a number for each holder's first join (none was
    // live when they looked), and all but one per holder lost the insert: numbers that stand for
    // no ticket, which depth (counting tickets) never counted.
    const d = await depthAndQueued(room);
    const [drawn] = await db.sql<{ n: number }[]>`
      select pg_sequence_last_value(queue_seq)::int as n from waitroom.rooms where id = ${room}`;
    expect(drawn?.n).toBe(d.queued + (BATCHES - 1) * HOLDERS);
    expect(d.dequeued).toBe(0);
    expect(d.depth).toBe(d.queued);
    expect(d.queued).toBe(BATCHES * HOLDERS + HOLDERS);
  });

  it("numbers a holder's new ticket when the live one it saw ends while the batch waits for it", async () => {
    const room = await createRoom(db.sql, 1, { mode: "paused" });
    const old = await join(db.sql, room, { holder: "kim" });
    await join(db.sql, room);
    const conn = await db.sql.reserve();
    // kim leaves in a transaction still open: the batch sees her ticket live, waits for the
    // leave at the unique index, and then finds no live ticket to re-join.
    const leaving = holdLock(
      db.sql,
      (tx) => tx`select * from waitroom.leave(${old.ticket_id}, ${old.token}, ${at(1)})`,
    );
    try {
      await leaving.held;
      const batch = joinMany(conn, room, 2, { holders: ["kim", null], now: at(2) });
      expect(await waitForLockWaiters(db.sql, "waitroom.join_many", 1)).toBe(1);
      leaving.release();
      await leaving.done;
      const answers = await batch;
      const kim = nth(answers, 1);
      expect(kim.ticket_id).not.toBe(old.ticket_id);
      expect(await ticketRow(db.sql, kim.ticket_id)).toMatchObject({ holder: "kim", instance: 1, status: "queued" });
      expect(await eventTypes(db.sql, kim.ticket_id)).toEqual(["joined"]);
      // Behind every number the batch drew: the anonymous join (ordinal 2) is ahead of kim now.
      const order = await db.sql<{ id: string }[]>`
        select id from waitroom.tickets where room_id = ${room} and status = 'queued' order by seq`;
      expect(order.map((r) => r.id).slice(-2)).toEqual([nth(answers, 2).ticket_id, kim.ticket_id]);
      expect(answers.map((a) => [a.position, a.depth])).toEqual([
        [3, 3],
        [2, 3],
      ]);
      expect(await depthAndQueued(room)).toMatchObject({ depth: 3, queued: 3 });
    } finally {
      leaving.release();
      await leaving.done.catch(() => {});
      conn.release();
    }
  });

  it("never seats more than capacity while passthrough batches, admitters and leavers race", async () => {
    const capacity = 4;
    const room = await createRoom(db.sql, capacity, { mode: "passthrough", claim_seconds: 600 });
    const JOINERS = 4;
    const ADMITTERS = 4;
    const LEAVERS = 2;
    const conns = await Promise.all(Array.from({ length: JOINERS + ADMITTERS + LEAVERS + 1 }, () => db.sql.reserve()));
    const errors: string[] = [];
    // Every token handed out per ticket: under racing re-joins of a holder, the last answer
    // received need not hold the current token, so a leaver tries them all.
    const tokens = new Map<string, string[]>();
    const tally = { batches: 0, admittedByJoin: 0, admittedByAdmit: 0, leaves: 0, samples: 0 };
    let maxOccupied = 0;
    const start = barrier();
    const deadline = { at: 0 };
    const running = () => Date.now() < deadline.at;
    let next = 0;
    const take = (): Reserved => {
      const conn = conns[next++];
      if (!conn) throw new Error("not enough reserved connections");
      return conn;
    };

    const joiner = async (conn: Reserved, index: number) => {
      await start.promise;
      let i = 0;
      while (running()) {
        i++;
        // Anonymous joins and a few holders shared by all joiners (re-joins of seated ones too).
        const holders = Array.from({ length: 8 }, (_, k) => (k % 4 === 0 ? `u${(i + k + index) % 10}` : null));
        try {
          const answers = await joinMany(conn, room, holders.length, { holders, now: at(1) });
          tally.batches++;
          for (const a of answers) tokens.set(a.ticket_id, [a.token, ...(tokens.get(a.ticket_id) ?? [])]);
          tally.admittedByJoin += new Set(answers.filter((a) => a.status === "admitted").map((a) => a.ticket_id)).size;
        } catch (error) {
          errors.push(`join_many: ${errorText(error)}`);
        }
        if (tokens.size > 600) await delay(5);
      }
    };
    const admitter = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        try {
          const rows = await conn<
            { ticket_id: string }[]
          >`select ticket_id from waitroom.admit(${room}, null, ${at(1)})`;
          tally.admittedByAdmit += rows.length;
        } catch (error) {
          errors.push(`admit: ${errorText(error)}`);
        }
      }
    };
    // Frees a seat: any admitted ticket (a passthrough batch also admits tickets queued ahead of
    // its own, which only the ledger tells), left with whichever of its tokens is current.
    const leaver = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        try {
          const [seat] = await conn<{ id: string }[]>`
            select id from waitroom.tickets where room_id = ${room} and status = 'admitted' order by random() limit 1`;
          if (!seat) {
            await delay(1);
            continue;
          }
          for (const token of tokens.get(seat.id) ?? []) {
            const [v] = await conn<{ ok: boolean }[]>`select * from waitroom.leave(${seat.id}, ${token}, ${at(1)})`;
            if (v?.ok) {
              tally.leaves++;
              break;
            }
          }
        } catch (error) {
          errors.push(`leave: ${errorText(error)}`);
        }
      }
    };
    // One statement = one snapshot: the committed occupancy at an instant.
    const sampler = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        const [s] = await conn<{ occupied: number }[]>`
          select count(*)::int as occupied from waitroom.tickets
           where room_id = ${room} and status in ('admitted', 'active', 'draining')`;
        tally.samples++;
        maxOccupied = Math.max(maxOccupied, s?.occupied ?? 0);
      }
    };

    const loops: Promise<void>[] = [];
    try {
      for (let i = 0; i < JOINERS; i++) loops.push(joiner(take(), i));
      for (let i = 0; i < ADMITTERS; i++) loops.push(admitter(take()));
      for (let i = 0; i < LEAVERS; i++) loops.push(leaver(take()));
      loops.push(sampler(take()));
      deadline.at = Date.now() + 3_000;
      start.open();
      await Promise.all(loops);
    } finally {
      for (const conn of conns) conn.release();
    }

    expect(errors).toEqual([]);
    expect(tally.batches).toBeGreaterThan(50);
    expect(tally.leaves).toBeGreaterThan(2 * capacity);
    expect(tally.admittedByJoin).toBeGreaterThan(capacity);
    expect(tally.samples).toBeGreaterThan(100);
    expect(maxOccupied).toBeLessThanOrEqual(capacity);
    expect(maxOccupied).toBe(capacity);
    const [final] = await db.sql<{ occupied: number; twice: number; holders: number }[]>`
      select (select count(*)::int from waitroom.tickets
               where room_id = ${room} and status in ('admitted', 'active', 'draining')) as occupied,
             (select count(*)::int from (select ticket_id from waitroom.events
               where room_id = ${room} and type = 'admitted' group by ticket_id having count(*) > 1) x) as twice,
             (select count(*)::int from (select holder from waitroom.tickets
               where room_id = ${room} and holder is not null and status in ('queued', 'admitted', 'active', 'draining')
               group by holder having count(*) > 1) y) as holders`;
    expect(final).toMatchObject({ twice: 0, holders: 0 });
    expect(final?.occupied).toBeLessThanOrEqual(capacity);
    const d = await depthAndQueued(room);
    expect(d.depth).toBe(d.queued);
  });
});
