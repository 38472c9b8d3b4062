/*
 * Races: the queue's rules under real concurrency against the real server.
 * Every test fires its callers on distinct connections and, where it can,
 * holds them behind a lock inside Postgres until all of them are waiting,
 * so the contended statement really runs at the same time in many backends.
 */
import { setTimeout as delay } from "node:timers/promises";
import type postgres from "postgres";
import { describe, expect, it } from "vitest";
import { createSql, type Sql } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";
import { barrier, holdLock, type Joined, type Verdict, waitForLockWaiters } from "../helpers/queue.js";
import { testRandom } from "../helpers/random.js";

const db = useTestDatabase({ max: 80 });

type Admitted = { ticket_id: string; holder: string | null; priority: number; claim_deadline: Date };
type Reserved = postgres.ReservedSql;

/** n connections of the pool, each held by one racer for the whole test. */
async function reserve(sql: Sql, n: number): Promise<Reserved[]> {
  return Promise.all(Array.from({ length: n }, () => sql.reserve()));
}

function releaseAll(conns: Reserved[]): void {
  for (const conn of conns) conn.release();
}

async function depthAndCount(room: string): Promise<{ depth: number; queued: number; statsQueued: number }> {
  const [row] = await db.sql<{ depth: number; queued: number; stats_queued: number }[]>`
    select waitroom._depth(${room}) as depth,
           (select count(*) from waitroom.tickets where room_id = ${room} and status = 'queued') as queued,
           (select queued from waitroom.room_stats where room_id = ${room}) as stats_queued`;
  if (!row) throw new Error("no row");
  return { depth: row.depth, queued: row.queued, statsQueued: row.stats_queued };
}

function errorText(kind: string, error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: string }).code;
    return `${kind}: ${code ?? ""} ${error.message}`;
  }
  return `${kind}: ${String(error)}`;
}

describe("claim under contention", () => {
  it("50 simultaneous claims of one offer by its token: one makes the seat, all 50 answer it, one active event", async () => {
    await db.sql`select waitroom.create_room('claim-race', 1, '{"claim_seconds": 60}')`;
    const [joined] = await db.sql<Joined[]>`select * from waitroom.join('claim-race', 'solo')`;
    if (!joined) throw new Error("join returned no row");
    const admitted = await db.sql<Admitted[]>`select * from waitroom.admit('claim-race')`;
    expect(admitted.map((a) => a.ticket_id)).toEqual([joined.ticket_id]);

    const conns = await reserve(db.sql, 50);
    // The gate: a transaction holding the ticket's row lock; every claim's UPDATE queues behind it.
    const gate = holdLock(db.sql, (tx) => tx`select 1 from waitroom.tickets where id = ${joined.ticket_id} for update`);
    try {
      await gate.held;
      const start = barrier();
      const claims = conns.map(async (conn) => {
        await start.promise;
        const [verdict] = await conn<Verdict[]>`select * from waitroom.claim(${joined.ticket_id}, ${joined.token})`;
        return verdict;
      });
      start.open();
      // All 50 are inside claim's UPDATE, blocked on the same row, before the gate opens.
      expect(await waitForLockWaiters(db.sql, "waitroom.claim", 50)).toBe(50);
      gate.release();
      await gate.done;
      const verdicts = await Promise.all(claims);

      // A claim is idempotent for the ticket's token: the ones that waited see the seat the first one made.
      const seats = new Set(verdicts.map((v) => `${v?.ok} ${v?.code} ${v?.status} ${v?.expires_at?.toISOString()}`));
      expect(seats.size).toBe(1);
      expect(verdicts[0]).toMatchObject({ ok: true, code: "ok", status: "active" });
      const [active] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from waitroom.events where ticket_id = ${joined.ticket_id} and type = 'active'`;
      expect(active?.n).toBe(1);
    } finally {
      gate.release();
      await gate.done.catch(() => {});
      releaseAll(conns);
    }

    const [ticket] = await db.sql<{ status: string; claimed_at: Date | null }[]>`
      select status, claimed_at from waitroom.tickets where id = ${joined.ticket_id}`;
    expect(ticket?.status).toBe("active");
    expect(ticket?.claimed_at).not.toBeNull();
    const events = await db.sql<{ type: string; n: number }[]>`
      select type, count(*)::int as n from waitroom.events
       where ticket_id = ${joined.ticket_id} group by type order by type`;
    expect(events).toEqual([
      { type: "active", n: 1 },
      { type: "admitted", n: 1 },
      { type: "joined", n: 1 },
    ]);
    const [check] = await db.sql<Verdict[]>`select * from waitroom.check(${joined.ticket_id}, ${joined.token})`;
    expect(check).toMatchObject({ ok: true, code: "ok", status: "active" });
  });
});

describe("a holder's verbs while its admission commits", () => {
  it("a claim and a heartbeat arriving during admit's transaction wait for it, then claim and record", async () => {
    // Regression (seen behind nginx in CI): a claim whose UPDATE began before admit committed found
    // no admitted row, then read the committed offer and answered not_claimed, a code claim must
    // never give; a heartbeat of the queued ticket re-checked its status against the one it first
    // read and answered not_claimed too.
    const room = "admit-commit";
    await db.sql`select waitroom.create_room(${room}, 2)`;
    const [claimer] = await db.sql<Joined[]>`select * from waitroom.join(${room}, 'claimer')`;
    const [beater] = await db.sql<Joined[]>`select * from waitroom.join(${room}, 'beater')`;
    if (!claimer || !beater) throw new Error("join returned no row");
    const admission = holdLock(db.sql, (tx) => tx`select * from waitroom.admit(${room})`);
    try {
      await admission.held;
      const claimed = db.sql<Verdict[]>`select * from waitroom.claim(${claimer.ticket_id}, ${claimer.token})`.execute();
      const beaten = db.sql<
        Verdict[]
      >`select * from waitroom.heartbeat(${beater.ticket_id}, ${beater.token})`.execute();
      expect(await waitForLockWaiters(db.sql, "waitroom.claim", 1)).toBe(1);
      expect(await waitForLockWaiters(db.sql, "waitroom.heartbeat", 1)).toBe(1);
      admission.release();
      await admission.done;
      expect((await claimed)[0]).toMatchObject({ ok: true, code: "ok", status: "active" });
      expect((await beaten)[0]).toMatchObject({ ok: true, code: "ok", status: "admitted" });
    } finally {
      admission.release();
      await admission.done.catch(() => {});
    }
  });
});

describe("capacity under a storm of every verb", () => {
  it("occupied seats never exceed capacity while admitters, joiners, claimers, leavers and sweep race", async () => {
    const random = testRandom(105);
    const room = "storm";
    const capacity = 5;
    await db.sql`select waitroom.create_room(${room}, ${capacity},
      '{"claim_seconds": 1, "session_seconds": 1, "grace_seconds": 0, "idle_seconds": 120}')`;

    type Known = { id: string; token: string };
    const tickets: Known[] = []; // every ticket ever handed out (latest token wins on re-join)
    const tokenOf = new Map<string, string>();
    const offers: string[] = []; // ticket ids returned by admit, not yet tried by a claimer
    const seated: string[] = []; // ticket ids admitted at some point: leavers aim here half the time
    const errors: string[] = [];
    const tally = {
      joins: 0,
      admitCalls: 0,
      admittedRows: 0,
      maxAdmittedPerCall: 0,
      claimsOk: 0,
      claimCodes: new Map<string, number>(),
      leavesOk: 0,
      sweeps: 0,
      samples: 0,
    };
    let maxOccupied = 0;
    let maxStatsOccupied = 0;

    const ADMITTERS = 8;
    const JOINERS = 4;
    const CLAIMERS = 4;
    const LEAVERS = 3;
    const conns = await reserve(db.sql, ADMITTERS + JOINERS + CLAIMERS + LEAVERS + 2);
    let next = 0;
    const take = (): Reserved => {
      const conn = conns[next++];
      if (!conn) throw new Error("not enough reserved connections");
      return conn;
    };

    const start = barrier();
    const deadline = { at: 0 };
    const running = () => Date.now() < deadline.at;

    const admitter = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        try {
          const rows = await conn<Admitted[]>`select * from waitroom.admit(${room})`;
          tally.admitCalls++;
          tally.admittedRows += rows.length;
          tally.maxAdmittedPerCall = Math.max(tally.maxAdmittedPerCall, rows.length);
          for (const r of rows) {
            offers.push(r.ticket_id);
            seated.push(r.ticket_id);
          }
        } catch (error) {
          errors.push(errorText("admit", error));
        }
      }
    };

    // Half the joiners are anonymous, half re-use a small pool of holders so
    // re-joins (and join/join races for one holder) happen all the time.
    const joiner = async (conn: Reserved, index: number) => {
      await start.promise;
      let i = 0;
      while (running()) {
        i++;
        const holder = index % 2 === 0 ? null : `user-${(i * 7 + index) % 12}`;
        try {
          const [j] = await conn<Joined[]>`select * from waitroom.join(${room}, ${holder})`;
          if (j) {
            tally.joins++;
            if (!tokenOf.has(j.ticket_id)) tickets.push({ id: j.ticket_id, token: j.token });
            tokenOf.set(j.ticket_id, j.token);
          }
        } catch (error) {
          errors.push(errorText("join", error));
        }
        if (tickets.length > 400) await delay(5); // keep the queue from growing without bound
      }
    };

    const claimer = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        const id = offers.shift();
        if (!id) {
          await delay(1);
          continue;
        }
        // Let about a quarter of the offers lapse so expiry frees seats too.
        if (random() < 0.25) continue;
        const token = tokenOf.get(id) ?? "";
        try {
          const [v] = await conn<Verdict[]>`select * from waitroom.claim(${id}, ${token})`;
          const code = v?.code ?? "none";
          tally.claimCodes.set(code, (tally.claimCodes.get(code) ?? 0) + 1);
          if (v?.ok) tally.claimsOk++;
        } catch (error) {
          errors.push(errorText("claim", error));
        }
      }
    };

    const leaver = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        const fromSeats = seated.length > 0 && random() < 0.5;
        const id = fromSeats
          ? seated.splice(Math.floor(random() * seated.length), 1)[0]
          : tickets[Math.floor(random() * tickets.length)]?.id;
        if (!id) {
          await delay(1);
          continue;
        }
        try {
          const [v] = await conn<Verdict[]>`select * from waitroom.leave(${id}, ${tokenOf.get(id) ?? ""})`;
          if (v?.ok) tally.leavesOk++;
        } catch (error) {
          errors.push(errorText("leave", error));
        }
        await delay(2);
      }
    };

    const sweeper = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        try {
          await conn`select * from waitroom.sweep()`;
          tally.sweeps++;
        } catch (error) {
          errors.push(errorText("sweep", error));
        }
      }
    };

    // One statement = one snapshot: the committed occupancy at an instant.
    const sampler = async (conn: Reserved) => {
      await start.promise;
      while (running()) {
        try {
          const [s] = await conn<{ occupied: number; stats_occupied: number }[]>`
            select (select count(*) from waitroom.tickets
                     where room_id = ${room} and status in ('admitted', 'active', 'draining')) as occupied,
                   (select admitted + active + draining from waitroom.room_stats where room_id = ${room}) as stats_occupied`;
          tally.samples++;
          maxOccupied = Math.max(maxOccupied, s?.occupied ?? 0);
          maxStatsOccupied = Math.max(maxStatsOccupied, s?.stats_occupied ?? 0);
        } catch (error) {
          errors.push(errorText("sample", error));
        }
      }
    };

    const loops: Promise<void>[] = [];
    try {
      for (let i = 0; i < ADMITTERS; i++) loops.push(admitter(take()));
      for (let i = 0; i < JOINERS; i++) loops.push(joiner(take(), i));
      for (let i = 0; i < CLAIMERS; i++) loops.push(claimer(take()));
      for (let i = 0; i < LEAVERS; i++) loops.push(leaver(take()));
      loops.push(sweeper(take()));
      loops.push(sampler(take()));
      deadline.at = Date.now() + 4_000;
      start.open();
      await Promise.all(loops);
    } finally {
      releaseAll(conns);
    }

    // The run did real work: many admissions, claims, leaves and turnover.
    expect(errors).toEqual([]);
    expect(tally.samples).toBeGreaterThan(100);
    expect(tally.joins).toBeGreaterThan(500);
    expect(tally.admittedRows).toBeGreaterThanOrEqual(20 * capacity);
    expect(tally.claimsOk).toBeGreaterThan(0);
    expect(tally.leavesOk).toBeGreaterThan(0);

    // The invariant: never more occupied seats than capacity, in any snapshot...
    expect(maxOccupied).toBeLessThanOrEqual(capacity);
    expect(maxStatsOccupied).toBeLessThanOrEqual(capacity);
    // ...and the room was actually full at some point, so the bound was tested at its edge.
    expect(maxOccupied).toBe(capacity);
    expect(tally.maxAdmittedPerCall).toBeLessThanOrEqual(capacity);

    // No ticket admitted twice; the ledger agrees with what admit returned.
    const twice = await db.sql<{ ticket_id: string; n: number }[]>`
      select ticket_id, count(*)::int as n from waitroom.events
       where room_id = ${room} and type = 'admitted'
       group by ticket_id having count(*) > 1`;
    expect(twice).toEqual([]);
    const [ledger] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from waitroom.events where room_id = ${room} and type = 'admitted'`;
    expect(ledger?.n).toBe(tally.admittedRows);
    const [activeEvents] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from waitroom.events where room_id = ${room} and type = 'active'`;
    expect(activeEvents?.n).toBe(tally.claimsOk);

    // One live ticket per holder survived the re-join races.
    const dupHolders = await db.sql`
      select holder from waitroom.tickets
       where room_id = ${room} and holder is not null and status in ('queued', 'admitted', 'active', 'draining')
       group by holder having count(*) > 1`;
    expect(dupHolders).toHaveLength(0);

    // O(1) depth bookkeeping is exact once everyone has stopped.
    const d = await depthAndCount(room);
    expect(d.depth).toBe(d.queued);
    expect(d.statsQueued).toBe(d.queued);
  });
});

describe("re-joins of one holder", () => {
  it("30 simultaneous joins of alice: one ticket, 30 distinct tokens, exactly one current", async () => {
    const room = "rejoin-race";
    await db.sql`select waitroom.create_room(${room}, 10, '{"mode": "paused"}')`;
    for (let i = 0; i < 5; i++) await db.sql`select * from waitroom.join(${room})`;

    const conns = await reserve(db.sql, 30);
    // The gate: a SHARE lock on tickets stops every join at its first write, so
    // all 30 then look for alice's live ticket at once, find none, and race to insert it.
    const gate = holdLock(db.sql, (tx) => tx`lock table waitroom.tickets in share mode`);
    let answers: Joined[] = [];
    try {
      await gate.held;
      const start = barrier();
      const joins = conns.map(async (conn) => {
        await start.promise;
        const [row] = await conn<Joined[]>`select * from waitroom.join(${room}, 'alice')`;
        if (!row) throw new Error("join returned no row");
        return row;
      });
      start.open();
      expect(await waitForLockWaiters(db.sql, "waitroom.join", 30)).toBe(30);
      gate.release();
      await gate.done;
      answers = await Promise.all(joins);
    } finally {
      gate.release();
      await gate.done.catch(() => {});
      releaseAll(conns);
    }

    expect(answers).toHaveLength(30);
    const ids = new Set(answers.map((a) => a.ticket_id));
    expect(ids.size).toBe(1);
    const ticketId = answers[0]?.ticket_id ?? "";
    expect(new Set(answers.map((a) => a.token)).size).toBe(30);
    for (const a of answers) expect(a.status).toBe("queued");

    const rows = await db.sql<{ id: string; status: string; instance: number }[]>`
      select id, status, instance from waitroom.tickets where room_id = ${room} and holder = 'alice'`;
    expect(rows).toEqual([{ id: ticketId, status: "queued", instance: 30 }]);

    // Exactly one token is current; the 8 replaced last are superseded, older ones unknown.
    const codes = await Promise.all(
      answers.map(async (a) => {
        const [v] = await db.sql<Verdict[]>`select * from waitroom.check(${a.ticket_id}, ${a.token})`;
        return v?.code ?? "none";
      }),
    );
    const count = (code: string) => codes.filter((c) => c === code).length;
    expect(count("queued")).toBe(1);
    expect(count("superseded")).toBe(8);
    expect(count("unknown")).toBe(21);

    // The ledger: one join, 29 re-joins with instances 2..30, each exactly once.
    const events = await db.sql<{ type: string; instance: number | null }[]>`
      select type, (data ->> 'instance')::int as instance from waitroom.events
       where ticket_id = ${ticketId} order by id`;
    expect(events.filter((e) => e.type === "joined")).toHaveLength(1);
    const instances = events
      .filter((e) => e.type === "rejoined")
      .map((e) => e.instance ?? 0)
      .sort((a, b) => a - b);
    expect(instances).toEqual(Array.from({ length: 29 }, (_, i) => i + 2));

    // Depth: the 5 anonymous tickets plus alice, despite the numbers the losers drew.
    const d = await depthAndCount(room);
    expect(d).toEqual({ depth: 6, queued: 6, statsQueued: 6 });
  });
});

describe("admit_per_minute under concurrent admitters", () => {
  it("8 parallel admits at one pinned instant admit exactly the per-minute budget", async () => {
    const room = "rate-race";
    const t0 = new Date("2030-01-01T12:00:00Z");
    const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
    await db.sql`select waitroom.create_room(${room}, 1000, '{"admit_per_minute": 7, "claim_seconds": 600}', ${t0})`;
    const queued: string[] = [];
    for (let i = 0; i < 40; i++) {
      const [j] = await db.sql<Joined[]>`select * from waitroom.join(${room}, null, 0, ${t0})`;
      if (j) queued.push(j.ticket_id);
    }

    const extra = createSql(db.url, { max: 8 });
    const wave = async (now: Date): Promise<string[]> => {
      const conns = await reserve(extra, 8);
      try {
        const start = barrier();
        const calls = conns.map(async (conn) => {
          await start.promise;
          return conn<Admitted[]>`select * from waitroom.admit(${room}, null, ${now})`;
        });
        start.open();
        const results = await Promise.all(calls);
        return results.flatMap((rows) => rows.map((r) => r.ticket_id));
      } finally {
        releaseAll(conns);
      }
    };
    try {
      const first = await wave(at(1));
      expect(first).toHaveLength(7);
      // In order: the first seven to join, each once.
      expect([...first].sort()).toEqual(queued.slice(0, 7).sort());

      // Still inside the same minute: nothing more.
      expect(await wave(at(30))).toHaveLength(0);
      expect(await wave(at(60.5))).toHaveLength(0);

      // A minute after the first admissions the budget is whole again, and only that.
      const later = await wave(at(61));
      expect(later).toHaveLength(7);
      expect([...later].sort()).toEqual(queued.slice(7, 14).sort());
    } finally {
      await extra.end({ timeout: 5 });
    }

    const [n] = await db.sql<{ admitted: number; queued: number; depth: number }[]>`
      select (select count(*) from waitroom.tickets where room_id = ${room} and status = 'admitted') as admitted,
             (select count(*) from waitroom.tickets where room_id = ${room} and status = 'queued') as queued,
             waitroom._depth(${room}) as depth`;
    expect(n).toEqual({ admitted: 14, queued: 26, depth: 26 });
  });

  it("an admitter whose transaction began before another's admission still respects the budget", async () => {
    // Real clock, as the HTTP layer and the scheduler call it. Transaction A
    // starts (its now() is fixed), B admits the whole budget and commits, then
    // A reaches the room lock: within the same real second the room must not
    // admit more than admit_per_minute.
    const room = "rate-clock";
    await db.sql`select waitroom.create_room(${room}, 1000, '{"admit_per_minute": 7}')`;
    for (let i = 0; i < 30; i++) await db.sql`select * from waitroom.join(${room})`;

    let first: Admitted[] = [];
    let second: Admitted[] = [];
    await db.sql.begin(async (a) => {
      await a`select now()`;
      first = await db.sql<Admitted[]>`select * from waitroom.admit(${room})`;
      second = await a<Admitted[]>`select * from waitroom.admit(${room})`;
    });
    expect(first).toHaveLength(7);
    expect(second).toHaveLength(0);
    const [row] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from waitroom.events where room_id = ${room} and type = 'admitted'`;
    expect(row?.n).toBe(7);
  });
});

describe("lock order between a join that lost a same-holder race and admit", () => {
  it("neither deadlocks: the loser re-joins the winner's ticket while admit offers it a seat", async () => {
    // White-box orchestration of a natural race (regression: it deadlocked).
    // A join that lost the insert race for its holder once recorded its drawn
    // number in queue_tally (shard = backend pid % 16), and had to do so only
    // after updating the winner's ticket row, because admit locks queued
    // ticket rows first and its own queue_tally shard second. Now that depth
    // counts tickets, the loser touches no shard at all. A third transaction
    // holding the shard row lines the two up deterministically.
    const room = "lock-order";
    await db.sql`select waitroom.create_room(${room}, 10)`;
    const conns = await reserve(db.sql, 19);
    try {
      const pids = await Promise.all(
        conns.map(async (c) => (await c<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]?.pid ?? -1),
      );
      // Pigeonhole: 17 backends, 16 shards.
      let pair: [number, number] | undefined;
      for (let i = 0; i < pids.length && !pair; i++) {
        for (let j = i + 1; j < pids.length && !pair; j++) {
          if ((pids[i] ?? -1) % 16 === (pids[j] ?? -2) % 16) pair = [i, j];
        }
      }
      if (!pair) throw new Error("no two backends share a shard");
      const others = conns.filter((_, k) => k !== pair?.[0] && k !== pair?.[1]);
      const loser = conns[pair[0]];
      const admitter = conns[pair[1]];
      const winner = others[0];
      const gate = others[1];
      if (!loser || !admitter || !winner || !gate) throw new Error("connections missing");
      const loserPid = pids[pair[0]] ?? -1;
      const admitterPid = pids[pair[1]] ?? -1;
      const shard = loserPid % 16;
      const [winnerPid] = await winner<{ pid: number }[]>`select pg_backend_pid() as pid`;

      const blockedBy = async (pid: number, by: number | undefined) => {
        const deadline = Date.now() + 5_000;
        for (;;) {
          const [row] = await db.sql<{ blocked: boolean }[]>`
            select ${by ?? -1}::int = any (pg_blocking_pids(${pid}::int)) as blocked`;
          if (row?.blocked || Date.now() > deadline) return row?.blocked ?? false;
          await delay(5);
        }
      };
      const outcome = <T>(p: Promise<T>) =>
        p.then(
          (value) => ({ value, error: undefined }),
          (error: unknown) => ({ value: undefined, error: errorText("call", error) }),
        );

      await gate`begin`;
      await gate`select 1 from waitroom.queue_tally where room_id = ${room} and shard = ${shard} for update`;
      await winner`begin`;
      await winner`select * from waitroom.join(${room}, 'bob')`;
      // The loser finds no live ticket for bob and waits on the winner's insert.
      const lost = outcome(loser<Joined[]>`select * from waitroom.join(${room}, 'bob')`);
      expect(await blockedBy(loserPid, winnerPid?.pid)).toBe(true);
      await winner`commit`;
      // The loser re-joins the winner's ticket and counts nothing (its drawn number stands for no
      // ticket, and depth counts tickets): it finishes while the gate still holds its shard.
      const joinResult = await lost;
      // Admit locks bob's queued ticket, then wants the same shard.
      const offered = outcome(admitter<Admitted[]>`select * from waitroom.admit(${room})`);
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline) {
        const [row] = await db.sql<{ n: number }[]>`select cardinality(pg_blocking_pids(${admitterPid}::int)) as n`;
        if ((row?.n ?? 0) > 0) break;
        await delay(5);
      }
      await gate`commit`;
      const admitResult = await offered;

      expect(joinResult.error).toBeUndefined();
      expect(admitResult.error).toBeUndefined();
      // Admit skips a ticket another transaction holds (SKIP LOCKED): bob is
      // offered by that call or by the next one, exactly once.
      const later = await db.sql<Admitted[]>`select * from waitroom.admit(${room})`;
      const offers = [...(admitResult.value ?? []), ...later];
      expect(offers.map((r) => r.holder)).toEqual(["bob"]);
      expect(joinResult.value?.[0]?.ticket_id).toBe(offers[0]?.ticket_id);
    } finally {
      // Only matters when an assertion above failed mid-way: end every open transaction at once.
      await Promise.all(conns.map((c) => c`rollback`.catch(() => {})));
      releaseAll(conns);
    }
    const d = await depthAndCount(room);
    expect(d).toEqual({ depth: 0, queued: 0, statsQueued: 0 });
  });
});
