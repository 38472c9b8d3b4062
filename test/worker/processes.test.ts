import { afterAll, describe, expect, it } from "vitest";
import { killLaunched, launch, messages, type Running, sleep, terminate } from "../helpers/app-process.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { type Joined, uniqueRoomId } from "../helpers/queue.js";
import { testRandom } from "../helpers/random.js";

/*
 * Three separate `waitroom worker` processes compete for one database's
 * jobs while this file churns: joins, claims, leaves and lapsing offers in
 * several small rooms. Correctness must come from the SQL, not from there
 * being one scheduler: nobody admitted twice, never more occupants than
 * seats, every room ticks, and every process did admission work.
 */

const db = useTestDatabase({ max: 20 });
afterAll(() => killLaunched());

const WORKERS = 3;
const CHURN_MS = 6_000;
const rooms = [
  { capacity: 1, tick_ms: 50 },
  { capacity: 2, tick_ms: 100 },
  { capacity: 3, tick_ms: 200 },
  { capacity: 2, tick_ms: 150 },
].map((room) => ({ ...room, id: uniqueRoomId("procs") }));

describe("competing worker processes", () => {
  it("admit nobody twice, never exceed capacity, and all do admission work", { timeout: 120_000 }, async () => {
    const random = testRandom(29);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const workers: Running[] = [];
    for (let i = 0; i < WORKERS; i++) {
      workers.push(
        launch({ DATABASE_URL: db.serviceUrl, LOG_LEVEL: "info", WAITROOM_SWEEP_INTERVAL_MS: "500" }, "worker"),
      );
    }
    await eventually(
      () => {
        const early = workers.find((worker) => worker.child.exitCode !== null);
        if (early) throw new Error(`a worker exited early:\n${early.stdout}\n${early.stderr}`);
        return workers.every((worker) => messages(worker).includes("scheduler running"));
      },
      "every worker process runs its scheduler",
      60_000,
    );

    for (const room of rooms) {
      const settings = { tick_ms: room.tick_ms, claim_seconds: 1, session_seconds: 1, grace_seconds: 0 };
      await db.sql`select waitroom.create_room(${room.id}, ${room.capacity}, ${db.sql.json(settings)})`;
    }
    const ids = rooms.map((room) => room.id);
    const capacity = new Map(rooms.map((room) => [room.id, room.capacity]));
    const tokens = new Map<string, string>();
    const deadline = Date.now() + CHURN_MS;
    const violations: string[] = [];
    const maxOccupied = new Map<string, number>();
    let samples = 0;

    const joiner = async () => {
      while (Date.now() < deadline) {
        const [ticket] = await db.sql<Joined[]>`select * from waitroom.join(${pick(ids)})`;
        if (ticket) tokens.set(ticket.ticket_id, ticket.token);
        await sleep(10 + random() * 20);
      }
    };
    // Offers are claimed, declined (leave) or left to lapse after claim_seconds;
    // seats are given up early sometimes, or run out after session_seconds.
    const claimer = async () => {
      while (Date.now() < deadline) {
        const offered = await db.sql<{ id: string; status: string }[]>`
          select id, status from waitroom.tickets
           where room_id = any(${ids}) and status in ('admitted', 'active') order by random() limit 5`;
        for (const { id, status } of offered) {
          const token = tokens.get(id);
          if (!token) continue;
          const dice = random();
          if (status === "admitted" && dice < 0.6) await db.sql`select * from waitroom.claim(${id}, ${token})`;
          else if (status === "admitted" && dice < 0.8) await db.sql`select * from waitroom.leave(${id}, ${token})`;
          else if (status === "active" && dice < 0.3) await db.sql`select * from waitroom.leave(${id}, ${token})`;
        }
        await sleep(15 + random() * 30);
      }
    };
    const leaver = async () => {
      while (Date.now() < deadline) {
        const [queued] = await db.sql<{ id: string }[]>`
          select id from waitroom.tickets where room_id = any(${ids}) and status = 'queued' order by random() limit 1`;
        const token = queued && tokens.get(queued.id);
        if (queued && token) await db.sql`select * from waitroom.leave(${queued.id}, ${token})`;
        await sleep(100 + random() * 100);
      }
    };
    const sampler = async () => {
      while (Date.now() < deadline) {
        const rows = await db.sql<{ room_id: string; occupied: number }[]>`
          select room_id, count(*)::int as occupied from waitroom.tickets
           where room_id = any(${ids}) and status in ('admitted', 'active', 'draining')
           group by room_id`;
        samples += 1;
        for (const { room_id, occupied } of rows) {
          maxOccupied.set(room_id, Math.max(maxOccupied.get(room_id) ?? 0, occupied));
          if (occupied > (capacity.get(room_id) ?? 0)) {
            violations.push(`${room_id}: ${occupied} occupied > capacity ${capacity.get(room_id)}`);
          }
        }
        await sleep(20);
      }
    };
    await Promise.all([joiner(), joiner(), claimer(), claimer(), leaver(), sampler()]);

    const exits = await Promise.all(workers.map((worker) => terminate(worker)));
    expect(
      exits.map((exit) => exit.code),
      "exit codes after SIGTERM",
    ).toEqual(workers.map(() => 0));

    expect(violations).toEqual([]);
    // About 6 s / (20 ms + a query): a few hundred when idle, fewer on a loaded machine.
    expect(samples, "samples taken").toBeGreaterThan(50);
    // Churn kept every room full at some point: the sampler looked at real contention.
    for (const room of rooms) expect(maxOccupied.get(room.id), `most occupied in ${room.id}`).toBe(room.capacity);

    const admissions = await db.sql<{ room_id: string; tickets: number; twice: number }[]>`
      select room_id, count(*)::int as tickets, count(*) filter (where n > 1)::int as twice
        from (select room_id, ticket_id, count(*) as n from waitroom.events
               where room_id = any(${ids}) and type = 'admitted' group by room_id, ticket_id) per_ticket
       group by room_id order by room_id`;
    expect(admissions.map((row) => row.room_id)).toEqual([...ids].sort());
    for (const row of admissions) {
      expect(row.twice, `tickets admitted twice in ${row.room_id}`).toBe(0);
      expect(row.tickets, `tickets admitted in ${row.room_id}`).toBeGreaterThan(capacity.get(row.room_id) ?? 0);
    }

    // Each process reports on stop what its scheduler ran: every one of them admitted.
    const activity = workers.map((worker) => worker.lines.find((line) => line.msg === "scheduler stopped"));
    for (const [i, report] of activity.entries()) {
      expect(report, `worker ${i} reported on stop`).toMatchObject({
        admitJobs: expect.any(Number),
        admitted: expect.any(Number),
      });
      expect(report?.admitJobs, `admit jobs run by worker ${i}`).toBeGreaterThan(0);
      expect(report?.admitted, `tickets admitted by worker ${i}`).toBeGreaterThan(0);
    }
    // Together they admitted exactly what the ledger holds (passthrough is off, nobody else admits).
    const total = activity.reduce((sum, report) => sum + Number(report?.admitted ?? 0), 0);
    expect(total, `admitted per worker: ${activity.map((report) => report?.admitted).join(", ")}`).toBe(
      admissions.reduce((sum, row) => sum + row.tickets, 0),
    );
  });
});
