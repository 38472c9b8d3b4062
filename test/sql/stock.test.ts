/*
 * Stock, quotas and the pool (issue 17) against the real server: races fired on distinct connections
 * and held behind a lock inside Postgres until all of them wait, so the contended statements really
 * run at the same time; clocks pinned with p_now on both sides of every horizon.
 */
import type postgres from "postgres";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import {
  admit,
  at,
  barrier,
  createRoom,
  holdLock,
  type Joined,
  join,
  verdict,
  waitForLockWaiters,
} from "../helpers/queue.js";

const db = useTestDatabase({ max: 80 });

type Reserved = postgres.ReservedSql;
type Ledger = {
  stock_available: number;
  stock_outstanding: number;
  added: number;
  reserved: number;
  returned: number;
  consumed: number;
  agrees: boolean;
};
type Settlement = { ok: boolean; code: string; room_id: string | null; outcome: string | null };

const reserve = (n: number): Promise<Reserved[]> => Promise.all(Array.from({ length: n }, () => db.sql.reserve()));

async function ledger(room: string): Promise<Ledger> {
  const [row] = await db.sql<Ledger[]>`
    select stock_available, stock_outstanding, added::int, reserved::int, returned::int, consumed::int, agrees
      from waitroom.stock_ledger where room_id = ${room}`;
  if (!row) throw new Error(`no stock_ledger row for ${room}`);
  return row;
}

/** stock = initial + added − consumed − reserved (outstanding), and the room's counters agree. */
function expectReconciled(l: Ledger): void {
  expect(l.agrees).toBe(true);
  expect(l.stock_available).toBe(l.added - l.consumed - l.stock_outstanding);
  expect(l.stock_outstanding).toBe(l.reserved - l.returned - l.consumed);
}

async function addStock(room: string, units: number, now = at(0)) {
  await db.sql`select waitroom.add_stock(${room}, ${units}, ${now})`;
}

async function settle(ticketId: string, outcome: "consumed" | "returned", now = at(1)): Promise<Settlement> {
  const [row] = await db.sql<Settlement[]>`select * from waitroom.settle(${ticketId}, ${outcome}, ${now})`;
  if (!row) throw new Error("settle answered no row");
  return row;
}

async function joinMany(room: string, n: number, now = at(0)): Promise<Joined[]> {
  return db.sql<Joined[]>`select * from waitroom.join_many(${room}, ${n}, null, null, ${now})`;
}

async function sqlState(call: Promise<unknown>): Promise<{ code: string; detail: string | undefined }> {
  try {
    await call;
  } catch (error) {
    const e = error as { code?: string; detail?: string };
    return { code: e.code ?? "none", detail: e.detail };
  }
  return { code: "no error", detail: undefined };
}

async function occupied(room: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    select count(*)::int as n from waitroom.tickets
     where room_id = ${room} and status in ('admitted', 'active', 'draining')`;
  return row?.n ?? 0;
}

describe("stock under contention", () => {
  it("50 concurrent admitters against a stock of 10 reserve 10 units, never an 11th; 50 claimers keep them", async () => {
    const room = await createRoom(db.sql, 100, { claim_seconds: 600 });
    await addStock(room, 10);
    const joined = await joinMany(room, 60);
    const conns = await reserve(50);
    // The gate holds the room's admission lock: every admit waits inside Postgres until all 50 do.
    const gate = holdLock(db.sql, (tx) => tx`select pg_advisory_xact_lock(2001, hashtext(${room}))`);
    let offers: string[][] = [];
    try {
      await gate.held;
      const start = barrier();
      const calls = conns.map(async (conn) => {
        await start.promise;
        const rows = await conn<{ ticket_id: string }[]>`select ticket_id from waitroom.admit(${room}, null, ${at(1)})`;
        return rows.map((r) => r.ticket_id);
      });
      start.open();
      expect(await waitForLockWaiters(db.sql, "waitroom.admit", 50)).toBe(50);
      gate.release();
      await gate.done;
      offers = await Promise.all(calls);
    } finally {
      gate.release();
      await gate.done.catch(() => {});
    }
    const offered = offers.flat();
    expect(offered).toHaveLength(10);
    expect(new Set(offered).size).toBe(10);

    // 50 claimers, five per offer, all inside claim's UPDATE at once.
    const tokens = new Map(joined.map((j) => [j.ticket_id, j.token]));
    const rowGate = holdLock(
      db.sql,
      (tx) => tx`select 1 from waitroom.tickets where id = any (${offered}::uuid[]) order by id for update`,
    );
    try {
      await rowGate.held;
      const start = barrier();
      const claims = conns.map(async (conn, i) => {
        await start.promise;
        const ticket = offered[i % 10] as string;
        const [v] = await conn<
          { ok: boolean }[]
        >`select * from waitroom.claim(${ticket}, ${tokens.get(ticket) ?? ""}, ${at(2)})`;
        return v?.ok;
      });
      start.open();
      expect(await waitForLockWaiters(db.sql, "waitroom.claim", 50)).toBe(50);
      rowGate.release();
      await rowGate.done;
      expect((await Promise.all(claims)).every(Boolean)).toBe(true);
      // Another wave finds nothing left: outstanding units are not sold out, and nobody is offered an 11th.
      const again = await Promise.all(conns.map((conn) => conn`select * from waitroom.admit(${room}, null, ${at(3)})`));
      expect(again.flat()).toHaveLength(0);
    } finally {
      rowGate.release();
      await rowGate.done.catch(() => {});
      for (const conn of conns) conn.release();
    }

    const l = await ledger(room);
    expect(l).toMatchObject({ stock_available: 0, stock_outstanding: 10, added: 10, reserved: 10, returned: 0 });
    expectReconciled(l);
    expect(await occupied(room)).toBeLessThanOrEqual(100);
    const [stats] = await db.sql`select sold_out, queued::int from waitroom.room_stats where room_id = ${room}`;
    expect(stats).toEqual({ sold_out: false, queued: 50 });
  });

  it("returns race with admissions: each returned unit is offered once, duplicate returns give nothing back", async () => {
    const room = await createRoom(db.sql, 100, { claim_seconds: 600 });
    await addStock(room, 10);
    const joined = await joinMany(room, 50);
    const first = await admit(db.sql, room, at(1));
    expect(first).toHaveLength(10);

    const conns = await reserve(50);
    // The gate holds the room row: every return's stock update waits behind it (a second return of the
    // same ticket waits on the first one's grant), while 30 admitters keep trying.
    const gate = holdLock(db.sql, (tx) => tx`select 1 from waitroom.rooms where id = ${room} for update`);
    let answers: Settlement[] = [];
    let offered: string[] = [];
    try {
      await gate.held;
      const start = barrier();
      const returns = conns.slice(0, 20).map(async (conn, i) => {
        await start.promise;
        const [row] = await conn<
          Settlement[]
        >`select * from waitroom.settle(${first[i % 10] as string}, 'returned', ${at(2)})`;
        return row as Settlement;
      });
      const admitters = conns.slice(20).map(async (conn) => {
        await start.promise;
        const got: string[] = [];
        for (let round = 0; round < 5; round++) {
          const rows = await conn<{ ticket_id: string }[]>`select ticket_id from waitroom.admit(${room}, 1, ${at(3)})`;
          got.push(...rows.map((r) => r.ticket_id));
        }
        return got;
      });
      start.open();
      expect(await waitForLockWaiters(db.sql, "waitroom.settle", 20)).toBe(20);
      gate.release();
      await gate.done;
      answers = await Promise.all(returns);
      offered = (await Promise.all(admitters)).flat();
    } finally {
      gate.release();
      await gate.done.catch(() => {});
      for (const conn of conns) conn.release();
    }
    expect(answers.filter((a) => a.ok)).toHaveLength(10);
    expect(answers.filter((a) => !a.ok).map((a) => a.code)).toEqual(Array(10).fill("already_returned"));
    // Whatever the admitters did not get yet is offered now: ten units came back, ten offers in all.
    offered.push(...(await admit(db.sql, room, at(4))));
    expect(offered).toHaveLength(10);
    expect(new Set(offered).size).toBe(10);
    expect(offered.some((id) => first.includes(id))).toBe(false);
    expect(await admit(db.sql, room, at(5))).toHaveLength(0);

    const l = await ledger(room);
    expect(l).toMatchObject({ stock_available: 0, stock_outstanding: 10, added: 10, reserved: 20, returned: 10 });
    expectReconciled(l);
    expect(joined).toHaveLength(50);
  });
});

describe("settle under contention", () => {
  it("30 settles of one admission, consumed and returned mixed: one decides it, every other answers what it became", async () => {
    const room = await createRoom(db.sql, 10, { claim_seconds: 600 });
    await addStock(room, 1);
    await joinMany(room, 1);
    const [offered] = await admit(db.sql, room, at(1));
    if (!offered) throw new Error("nothing was offered");

    const conns = await reserve(30);
    // The gate holds the grant's row: every settle waits on it before judging the grant.
    const gate = holdLock(db.sql, (tx) => tx`select 1 from waitroom.grants where ticket_id = ${offered} for update`);
    let answers: Settlement[] = [];
    try {
      await gate.held;
      const start = barrier();
      const settles = conns.map(async (conn, i) => {
        await start.promise;
        const outcome = i % 2 === 0 ? "consumed" : "returned";
        const [row] = await conn<Settlement[]>`select * from waitroom.settle(${offered}, ${outcome}, ${at(2)})`;
        return row as Settlement;
      });
      start.open();
      expect(await waitForLockWaiters(db.sql, "waitroom.settle", 30)).toBe(30);
      gate.release();
      await gate.done;
      answers = await Promise.all(settles);
    } finally {
      gate.release();
      await gate.done.catch(() => {});
      for (const conn of conns) conn.release();
    }
    const winners = answers.filter((a) => a.ok);
    expect(winners).toHaveLength(1);
    const outcome = winners[0]?.outcome;
    expect(answers.filter((a) => !a.ok).map((a) => [a.code, a.outcome, a.room_id])).toEqual(
      Array(29).fill([`already_${outcome}`, outcome, room]),
    );
    const l = await ledger(room);
    expect(outcome === "consumed" ? l.consumed : l.returned).toBe(1);
    expect(l.consumed + l.returned).toBe(1);
    expectReconciled(l);
  });
});

describe("sold out", () => {
  it("ends every queued ticket once with reason sold_out, refuses joins, and new stock reopens the room", async () => {
    const room = await createRoom(db.sql, 10, { claim_seconds: 60 });
    await addStock(room, 2);
    const tickets = await joinMany(room, 6);
    const offered = await admit(db.sql, room, at(1));
    expect(offered).toHaveLength(2);
    for (const id of offered) {
      const t = tickets.find((j) => j.ticket_id === id) as Joined;
      expect(await verdict(db.sql, "claim", t, at(2))).toMatchObject({ ok: true });
    }
    // Nothing left, but two units outstanding: they may come back, so the room is not sold out.
    expect(await admit(db.sql, room, at(3))).toHaveLength(0);
    expect((await db.sql`select sold_out from waitroom.room_stats where room_id = ${room}`)[0]).toEqual({
      sold_out: false,
    });

    expect(await settle(offered[0] as string, "consumed", at(4))).toMatchObject({ ok: true, outcome: "consumed" });
    expect(await settle(offered[0] as string, "consumed", at(4))).toMatchObject({
      ok: false,
      code: "already_consumed",
    });
    expect(await settle(offered[1] as string, "consumed", at(4))).toMatchObject({ ok: true });
    await admit(db.sql, room, at(5));
    await admit(db.sql, room, at(6));

    const ended = await db.sql<{ id: string; status: string; end_reason: string }[]>`
      select id, status, end_reason from waitroom.tickets where room_id = ${room} and not (id = any (${offered}::uuid[]))`;
    expect(ended).toHaveLength(4);
    expect(ended.every((t) => t.status === "ended" && t.end_reason === "sold_out")).toBe(true);
    const [events] = await db.sql<{ sold_out: number; ended: number; per_ticket: number }[]>`
      select count(*) filter (where type = 'room_sold_out')::int as sold_out,
             count(*) filter (where type = 'ended' and data ->> 'reason' = 'sold_out')::int as ended,
             (select max(n)::int from (select count(*) as n from waitroom.events
                                        where room_id = ${room} and type = 'ended' group by ticket_id) x) as per_ticket
        from waitroom.events where room_id = ${room}`;
    expect(events).toEqual({ sold_out: 1, ended: 4, per_ticket: 1 });
    // The room event comes before the tickets' ends.
    const order = await db.sql<{ type: string }[]>`
      select type from waitroom.events where room_id = ${room} and type in ('room_sold_out', 'ended') order by id`;
    expect(order[0]?.type).toBe("room_sold_out");

    expect((await sqlState(join(db.sql, room, { now: at(7) }))).code).toBe("WRSLD");
    expect((await sqlState(joinMany(room, 3, at(7)))).code).toBe("WRSLD");
    const [stats] =
      await db.sql`select sold_out, queued::int, stock_available from waitroom.room_stats where room_id = ${room}`;
    expect(stats).toEqual({ sold_out: true, queued: 0, stock_available: 0 });

    await addStock(room, 1, at(8));
    expect((await db.sql`select sold_out from waitroom.room_stats where room_id = ${room}`)[0]).toEqual({
      sold_out: false,
    });
    const comeback = await join(db.sql, room, { now: at(9) });
    expect(await admit(db.sql, room, at(10))).toEqual([comeback.ticket_id]);
    const types = await db.sql<{ type: string }[]>`
      select type from waitroom.events where room_id = ${room} and ticket_id is null order by id`;
    expect(types.map((t) => t.type)).toEqual([
      "room_created",
      "stock_added",
      "room_sold_out",
      "stock_added",
      "room_restocked",
    ]);
    expectReconciled(await ledger(room));
  });

  it("a lapsed offer and a leave before claiming give their unit back to the next in line", async () => {
    const room = await createRoom(db.sql, 10, { claim_seconds: 60 });
    await addStock(room, 1);
    const [a, b, c] = await joinMany(room, 3);
    expect(await admit(db.sql, room, at(1))).toEqual([a?.ticket_id]);
    expect(await admit(db.sql, room, at(2))).toEqual([]);
    // Past a's claim deadline: admission records the lapse first, and the unit goes to b.
    expect(await admit(db.sql, room, at(62))).toEqual([b?.ticket_id]);
    expect(await verdict(db.sql, "leave", b as Joined, at(63))).toMatchObject({ ok: true });
    expect(await admit(db.sql, room, at(64))).toEqual([c?.ticket_id]);
    const reasons = await db.sql<{ reason: string }[]>`
      select data ->> 'reason' as reason from waitroom.events where room_id = ${room} and type = 'returned' order by id`;
    expect(reasons.map((r) => r.reason)).toEqual(["claim_timeout", "left"]);
    const l = await ledger(room);
    expect(l).toMatchObject({ stock_available: 0, stock_outstanding: 1, reserved: 3, returned: 2 });
    expectReconciled(l);
    // A leave after claiming keeps the unit reserved until the trusted caller settles it.
    expect(await verdict(db.sql, "claim", c as Joined, at(65))).toMatchObject({ ok: true });
    expect(await verdict(db.sql, "leave", c as Joined, at(66))).toMatchObject({ ok: true });
    expect((await ledger(room)).stock_outstanding).toBe(1);
    expect(await settle(c?.ticket_id as string, "returned", at(67))).toMatchObject({ ok: true, outcome: "returned" });
    expect(await settle(c?.ticket_id as string, "consumed", at(67))).toMatchObject({
      ok: false,
      code: "already_returned",
    });
    expect(await settle(a?.ticket_id as string, "returned", at(67))).toMatchObject({
      ok: false,
      code: "already_returned",
    });
    expectReconciled(await ledger(room));
  });

  it("keeps a stock room's stock rows past retention, so the ledger still reconciles", async () => {
    const room = await createRoom(db.sql, 10, { retention_seconds: 3600, claim_seconds: 60 });
    await addStock(room, 3);
    const [a, b] = await joinMany(room, 2);
    expect(await admit(db.sql, room, at(1))).toHaveLength(2);
    expect(await verdict(db.sql, "claim", a as Joined, at(2))).toMatchObject({ ok: true });
    expect(await settle(a?.ticket_id as string, "consumed", at(3))).toMatchObject({ ok: true });
    // b's offer lapses at 61 s; two hours later everything else of the room is past retention.
    await db.sql`select waitroom.sweep(1000, ${room}, ${at(100)})`;
    await db.sql`select waitroom.sweep(1000, ${room}, ${at(7300)})`;
    const kept = await db.sql<{ type: string }[]>`
      select type from waitroom.events where room_id = ${room} and created_at < ${at(3700)} order by id`;
    expect(kept.map((e) => e.type)).toEqual(["stock_added", "reserved", "reserved", "consumed", "returned"]);
    const l = await ledger(room);
    expect(l).toMatchObject({ stock_available: 2, stock_outstanding: 0, added: 3, consumed: 1 });
    expectReconciled(l);
    expect(b).toBeDefined();
  });

  it("refuses bad units and outcomes, and answers not_granted for a ticket that took nothing", async () => {
    const room = await createRoom(db.sql, 10);
    expect((await sqlState(addStock(room, 0))).code).toBe("WR400");
    expect((await sqlState(addStock("no-such-room", 1))).code).toBe("WR404");
    const t = await join(db.sql, room);
    expect(await settle(t.ticket_id, "consumed")).toMatchObject({ ok: false, code: "not_granted" });
    expect((await sqlState(db.sql`select waitroom.settle(${t.ticket_id}, 'sold')`)).code).toBe("WR400");
    expect((await db.sql`select * from waitroom.stock(${room})`)[0]).toMatchObject({
      stock_available: null,
      sold_out: false,
    });
  });
});

describe("quotas per holder", () => {
  const tiers = { default: { limit: 2 }, pro: { limit: 3, priority: 5 } };

  /** Join, be admitted, claim and leave: one share used. */
  async function use(room: string, holder: string, seconds: number, tier: string | null = null): Promise<void> {
    const [t] = await db.sql<Joined[]>`select * from waitroom.join(${room}, ${holder}, 0, ${at(seconds)}, ${tier})`;
    expect(await admit(db.sql, room, at(seconds))).toEqual([t?.ticket_id]);
    expect(await verdict(db.sql, "claim", t as Joined, at(seconds))).toMatchObject({ ok: true });
    expect(await verdict(db.sql, "leave", t as Joined, at(seconds))).toMatchObject({ ok: true });
  }

  const joinAs = (room: string, holder: string, seconds: number, tier: string | null = null) =>
    db.sql<Joined[]>`select * from waitroom.join(${room}, ${holder}, 0, ${at(seconds)}, ${tier})`;

  it("refuses a join over quota with the time the next share comes back, on both sides of the horizon", async () => {
    const room = await createRoom(db.sql, 10, { quota_window_seconds: 3600, quota_tiers: tiers });
    await use(room, "ann", 10);
    await use(room, "ann", 20);
    const refused = await sqlState(joinAs(room, "ann", 30));
    expect(refused.code).toBe("WRQUO");
    expect(refused.detail).toBe(at(3610).toISOString().replace(".000Z", ".000000Z"));
    const [shares] = await db.sql`select * from waitroom.holder_shares(${room}, 'ann', null, ${at(30)})`;
    expect(shares).toMatchObject({ tier: "default", quota_limit: 2, used: 2, shares_left: 0, next_share_at: at(3610) });
    // One millisecond before the first share's window ends: still refused; at its end: admitted.
    expect((await sqlState(joinAs(room, "ann", 3609.999))).code).toBe("WRQUO");
    expect(await joinAs(room, "ann", 3610)).toHaveLength(1);
    const [after] =
      await db.sql`select used, shares_left from waitroom.holder_shares(${room}, 'ann', null, ${at(3610)})`;
    expect(after).toEqual({ used: 1, shares_left: 1 });
    // Another holder and another tier count apart; the tier maps to its priority.
    const [pro] = await joinAs(room, "bob", 30, "pro");
    expect((await db.sql`select priority, tier from waitroom.tickets where id = ${pro?.ticket_id ?? null}`)[0]).toEqual(
      {
        priority: 5,
        tier: "pro",
      },
    );
    expect((await sqlState(joinAs(room, "bob", 30, "gold"))).code).toBe("WR400");
  });

  it("a lapsed offer and a returned one give the share back", async () => {
    const room = await createRoom(db.sql, 10, { quota_window_seconds: 86400, quota_tiers: { default: { limit: 1 } } });
    const [t] = await joinAs(room, "cy", 0);
    expect(await admit(db.sql, room, at(1))).toEqual([t?.ticket_id]);
    expect((await sqlState(joinAs(room, "cy", 2))).code).toBe("no error"); // a re-join of the live ticket
    await db.sql`select waitroom.sweep(1000, ${room}, ${at(200)})`;
    const [again] = await joinAs(room, "cy", 201);
    expect(await admit(db.sql, room, at(202))).toEqual([again?.ticket_id]);
    expect(await settle(again?.ticket_id as string, "returned", at(203))).toMatchObject({ ok: true });
    const [shares] =
      await db.sql`select used, shares_left from waitroom.holder_shares(${room}, 'cy', null, ${at(203)})`;
    expect(shares).toEqual({ used: 0, shares_left: 1 });
  });

  it("re-joins and 30 parallel joins of one holder with one share left make one offer, then all are refused", async () => {
    const room = await createRoom(db.sql, 50, { quota_window_seconds: 86400, quota_tiers: { default: { limit: 2 } } });
    await use(room, "dee", 0);
    const conns = await reserve(30);
    const race = async (seconds: number) => {
      const start = barrier();
      const calls = conns.map(async (conn, i) => {
        await start.promise;
        const call =
          i % 2 === 0
            ? conn<Joined[]>`select * from waitroom.join(${room}, 'dee', 0, ${at(seconds)})`
            : conn<
                Joined[]
              >`select ticket_id, token, status from waitroom.join_many(${room}, 1, array['dee'], null, ${at(seconds)})`;
        return sqlState(call);
      });
      start.open();
      return Promise.all(calls);
    };
    try {
      const first = await race(10);
      expect(first.every((r) => r.code === "no error")).toBe(true);
      const [live] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from waitroom.tickets where room_id = ${room} and holder = 'dee'`;
      expect(live?.n).toBe(2); // the one used, and one queued however many joined
      expect(await admit(db.sql, room, at(11))).toHaveLength(1);
      // Re-joins of the live offer, while no share is left, are the same ticket.
      expect((await race(12)).every((r) => r.code === "no error")).toBe(true);
      expect(await admit(db.sql, room, at(13))).toHaveLength(0);
      await db.sql`select waitroom.sweep(1000, ${room}, ${at(1000)})`;
      // The offer lapsed, so its share came back: one more offer, and then nothing.
      expect((await race(1001)).every((r) => r.code === "no error")).toBe(true);
      expect(await admit(db.sql, room, at(1002))).toHaveLength(1);
      const [offer] = await db.sql<{ id: string }[]>`
        select id from waitroom.tickets where room_id = ${room} and holder = 'dee' and status = 'admitted'`;
      await settle(offer?.id as string, "consumed", at(1003));
      await db.sql`update waitroom.tickets set status = 'ended', ended_at = ${at(1004)}, end_reason = 'session_over' where id = ${offer?.id ?? null}`;
      const refused = await race(1005);
      expect(refused.map((r) => r.code)).toEqual(Array(30).fill("WRQUO"));
    } finally {
      for (const conn of conns) conn.release();
    }
    const [grants] = await db.sql<{ held: number }[]>`
      select count(*) filter (where outcome is distinct from 'returned')::int as held
        from waitroom.grants where room_id = ${room} and holder = 'dee'`;
    expect(grants?.held).toBe(2);
  });

  it("admission skips a holder over quota (its tier's limit lowered after it joined) until its window slides", async () => {
    const room = await createRoom(db.sql, 10, { quota_window_seconds: 100, quota_tiers: { default: { limit: 2 } } });
    await use(room, "eve", 0);
    const [t] = await joinAs(room, "eve", 1);
    await db.sql`select waitroom.configure_room(${room}, '{"quota_tiers": {"default": {"limit": 1}}}', ${at(2)})`;
    expect(await admit(db.sql, room, at(3))).toEqual([]);
    expect(await admit(db.sql, room, at(100))).toEqual([t?.ticket_id]);
  });

  it("refuses malformed tiers and time zones", async () => {
    for (const settings of [
      { quota_window_seconds: 60, quota_tiers: { pro: { limit: 1 } } },
      { quota_window_seconds: 60, quota_tiers: { default: { limit: -1 } } },
      { quota_window_seconds: 60, quota_tiers: { default: { limit: 1, extra: 1 } } },
      { quota_window_seconds: 60 },
      { time_zone: "Mars/Olympus" },
    ]) {
      expect((await sqlState(createRoom(db.sql, 1, settings))).code).toBe("WR400");
    }
  });
});

describe("the pool per day", () => {
  it("caps offers per day in the room's time zone; a leave before claiming gives its share back", async () => {
    const t0 = Date.parse("2030-01-01T22:30:00Z"); // 23:30 in Paris
    const time = (minutes: number) => new Date(t0 + minutes * 60_000);
    const room = await createRoom(db.sql, 10, {
      pool_per_day: 2,
      time_zone: "Europe/Paris",
      claim_seconds: 3600,
      idle_seconds: 86400,
    });
    const tickets = await joinMany(room, 5, time(0));
    const first = await admit(db.sql, room, time(1));
    expect(first).toHaveLength(2);
    expect(await admit(db.sql, room, time(2))).toHaveLength(0);
    const poolLeft = async () =>
      (
        await db.sql<
          { n: number }[]
        >`select waitroom._pool_left(r, ${time(2)}) as n from waitroom.rooms r where id = ${room}`
      )[0]?.n;
    expect(await poolLeft()).toBe(0);
    const leaving = tickets.find((t) => t.ticket_id === first[0]) as Joined;
    expect(await verdict(db.sql, "leave", leaving, time(3))).toMatchObject({ ok: true });
    expect(await admit(db.sql, room, time(4))).toHaveLength(1);
    // 23:59 in Paris: the day's pool is spent.
    expect(await admit(db.sql, room, time(29))).toHaveLength(0);
    // 00:01 in Paris (still January 1st in UTC): a new day.
    expect(await admit(db.sql, room, time(31))).toHaveLength(2);
    const periods = await db.sql<{ period: string; n: number }[]>`
      select period::text, count(*)::int as n from waitroom.grants where room_id = ${room} group by period order by period`;
    expect(periods).toEqual([
      { period: "2030-01-01", n: 3 },
      { period: "2030-01-02", n: 2 },
    ]);
  });

  it("shows no pool_left for a room without a pool, and the day's share left for one with", async () => {
    const plain = await createRoom(db.sql, 10);
    const pooled = await createRoom(db.sql, 10, { pool_per_day: 3, claim_seconds: 3600, idle_seconds: 86400 });
    // room_stats counts today's pool: the clock is the database's.
    const now = new Date();
    await joinMany(pooled, 1, now);
    expect(await admit(db.sql, pooled, now)).toHaveLength(1);
    const left = await db.sql<{ room_id: string; pool_left: number | null }[]>`
      select room_id, pool_left from waitroom.room_stats where room_id in (${plain}, ${pooled})`;
    expect(Object.fromEntries(left.map((row) => [row.room_id, row.pool_left]))).toEqual({
      [plain]: null,
      [pooled]: 2,
    });
  });
});
