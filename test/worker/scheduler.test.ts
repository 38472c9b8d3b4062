import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { type Scheduler, startWorker } from "../../src/worker/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { first, type Joined, uniqueRoomId } from "../helpers/queue.js";
import { testRandom } from "../helpers/random.js";

const db = useTestDatabase();
const log = createLogger("warn");
const runners: Scheduler[] = [];

beforeAll(async () => {
  // Two schedulers on one database, as two app processes would run them.
  for (let i = 0; i < 2; i++) {
    runners.push(await startWorker({ databaseUrl: db.serviceUrl, log, concurrency: 2, sweepIntervalMs: 200 }));
  }
});
afterAll(async () => {
  await Promise.all(runners.map((runner) => runner.stop()));
});

async function createRoom(capacity: number, settings: Record<string, unknown>) {
  const room = uniqueRoomId();
  await db.sql`select waitroom.create_room(${room}, ${capacity}, ${db.sql.json(settings as never)})`;
  return room;
}

const join = async (room: string) => first(await db.sql<Joined[]>`select * from waitroom.join(${room})`);

async function statusOf(ticketId: string): Promise<string> {
  const [row] = await db.sql<{ status: string }[]>`select status from waitroom.tickets where id = ${ticketId}`;
  return row?.status ?? "missing";
}

const once = (ticketId: string, status: string) => async () => (await statusOf(ticketId)) === status;

describe("scheduler", () => {
  it("admits on its own, tick after tick", async () => {
    const room = await createRoom(2, { tick_ms: 100, session_seconds: 600 });
    const tickets = [await join(room), await join(room), await join(room)];
    const [a, b, c] = tickets;
    if (!a || !b || !c) throw new Error("joins failed");
    await eventually(once(a.ticket_id, "admitted"), "a is admitted");
    await eventually(once(b.ticket_id, "admitted"), "b is admitted");
    expect(await statusOf(c.ticket_id)).toBe("queued");
  });

  it("sweeps on its own, one interval after another (graphile-worker's job events, not polling)", async () => {
    const [runner] = runners;
    if (!runner) throw new Error("no scheduler");
    const completed: unknown[] = [];
    const twoSweeps = new Promise<void>((resolve) => {
      const onComplete = ({ job, error }: { job: { task_identifier: string }; error: unknown }) => {
        if (job.task_identifier !== "sweep") return;
        completed.push(error ?? null);
        if (completed.length < 2) return;
        runner.events.off("job:complete", onComplete);
        resolve();
      };
      runner.events.on("job:complete", onComplete);
    });
    await twoSweeps;
    // Each sweep scheduled the next: two in a row on this scheduler, neither failed.
    expect(completed).toEqual([null, null]);
  });

  it("refills a seat freed by leave at once, not at the next tick (tick_ms = one minute)", async () => {
    const room = await createRoom(1, { tick_ms: 60_000, session_seconds: 600, mode: "paused" });
    const holder = await join(room);
    const next = await join(room);
    // Opening wakes the room: that tick admits the holder and schedules the next a minute on.
    await db.sql`select waitroom.configure_room(${room}, '{"mode": "open"}')`;
    await eventually(once(holder.ticket_id, "admitted"), "the holder is admitted");
    await db.sql`select * from waitroom.claim(${holder.ticket_id}, ${holder.token})`;
    const leftAt = Date.now();
    await db.sql`select * from waitroom.leave(${holder.ticket_id}, ${holder.token})`;
    await eventually(once(next.ticket_id, "admitted"), "the next ticket is admitted", 30_000);
    const latencyMs = Date.now() - leftAt;
    // Far below the one-minute tick: only the wake written by leave can explain it.
    expect(latencyMs).toBeLessThan(10_000);
  });

  it("sweeps lapsed offers on its own and hands the seat to the next ticket", async () => {
    const room = await createRoom(1, { tick_ms: 60_000, claim_seconds: 1, mode: "paused" });
    const sleeper = await join(room);
    const next = await join(room);
    await db.sql`select waitroom.configure_room(${room}, '{"mode": "open"}')`;
    await eventually(once(sleeper.ticket_id, "admitted"), "the sleeper is admitted");
    await eventually(once(sleeper.ticket_id, "expired"), "the sleeper's offer expires");
    await eventually(once(next.ticket_id, "admitted"), "the next ticket is admitted");
  });

  it("resumes a paused room when it is configured open again", async () => {
    const room = await createRoom(1, { tick_ms: 60_000, mode: "paused" });
    const ticket = await join(room);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await statusOf(ticket.ticket_id)).toBe("queued");
    await db.sql`select waitroom.configure_room(${room}, '{"mode": "open"}')`;
    await eventually(once(ticket.ticket_id, "admitted"), "the ticket is admitted");
  });

  it("opens on schedule with the opening draw: the first seats go to the first drawn", async () => {
    const opensAt = new Date(Date.now() + 1_500);
    const room = await createRoom(3, { tick_ms: 100, opens_at: opensAt.toISOString(), shuffle_seed: 11 });
    const tickets = [];
    for (let i = 0; i < 8; i++) tickets.push(await join(room));
    const admitted = await eventually(async () => {
      const rows = await db.sql<{ id: string; admitted_at: Date }[]>`
        select id, admitted_at from waitroom.tickets where room_id = ${room} and status = 'admitted'`;
      return rows.length === 3 ? rows : undefined;
    }, "three are admitted at the opening");
    for (const row of admitted) expect(row.admitted_at.getTime()).toBeGreaterThanOrEqual(opensAt.getTime());
    const audit = await db.sql<{ ticket_id: string; drawn_position: number; agrees: boolean }[]>`
      select ticket_id, drawn_position, agrees from waitroom.shuffle_audit(${room})`;
    expect(audit).toHaveLength(8);
    expect(audit.every((row) => row.agrees)).toBe(true);
    const drawnFirst = audit.filter((row) => row.drawn_position <= 3).map((row) => row.ticket_id);
    expect(admitted.map((row) => row.id).sort()).toEqual(drawnFirst.sort());
  });

  it("never admits a ticket twice nor exceeds capacity with two schedulers and churn", async () => {
    const random = testRandom(113);
    const capacity = 3;
    const room = await createRoom(capacity, { tick_ms: 50, claim_seconds: 1, session_seconds: 1, grace_seconds: 0 });
    const deadline = Date.now() + 3_000;
    let maxOccupied = 0;
    const joiner = (async () => {
      while (Date.now() < deadline) {
        const ticket = await join(room);
        if (random() < 0.5) {
          // Claim when offered, or leave: both free seats for the schedulers to refill.
          void eventually(once(ticket.ticket_id, "admitted"), "the ticket is admitted", 2_000)
            .then(() => db.sql`select * from waitroom.claim(${ticket.ticket_id}, ${ticket.token})`)
            .catch(() => {});
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const sampler = (async () => {
      while (Date.now() < deadline) {
        const [row] = await db.sql<{ occupied: number }[]>`
          select count(*)::int as occupied from waitroom.tickets
           where room_id = ${room} and status in ('admitted', 'active', 'draining')`;
        maxOccupied = Math.max(maxOccupied, row?.occupied ?? 0);
      }
    })();
    await Promise.all([joiner, sampler]);
    expect(maxOccupied).toBeLessThanOrEqual(capacity);
    expect(maxOccupied).toBe(capacity);
    const { admitted, twice } = first(
      await db.sql<{ admitted: number; twice: number }[]>`
      select count(*)::int as admitted, count(*) filter (where n > 1)::int as twice
        from (select ticket_id, count(*) as n from waitroom.events
               where room_id = ${room} and type = 'admitted' group by ticket_id) per_ticket`,
    );
    expect(twice).toBe(0);
    expect(admitted).toBeGreaterThan(capacity);
  });
});
