import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { makeWorkerUtils, type WorkerUtils } from "graphile-worker";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { createTaskList, type SchedulerActivity, type TaskHelpers } from "../../src/worker/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { first, type Joined, uniqueRoomId } from "../helpers/queue.js";

/*
 * The scheduler's tasks called directly, as graphile-worker would call them, on a real database:
 * what each one asks of SQL, and what it schedules. test/worker/scheduler.test.ts runs them in
 * real schedulers.
 */

const db = useTestDatabase();
let pool: pg.Pool;
let utils: WorkerUtils;
let helpers: TaskHelpers;
let upstream: Server;
let upstreamStatus = 200;

beforeAll(async () => {
  // The tasks run as the scheduler does: as the service's role.
  pool = new pg.Pool({ connectionString: db.serviceUrl, max: 2 });
  utils = await makeWorkerUtils({ pgPool: pool });
  helpers = {
    query: (text, values) => pool.query(text, values),
    addJob: (identifier, payload, spec) => utils.addJob(identifier, payload, spec),
  };
  upstream = createServer((_request, response) => response.writeHead(upstreamStatus).end());
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
});
afterAll(async () => {
  await new Promise((resolve) => upstream.close(resolve));
  await utils.release();
  await pool.end();
});

const activity = (): SchedulerActivity => ({ admitJobs: 0, admitted: 0, sweeps: 0, healthProbes: 0 });

async function roomWithQueue(capacity: number, queued: number, settings: Record<string, unknown> = {}) {
  const room = uniqueRoomId("tasks");
  // Paused while joining, so only the task under test admits.
  await db.sql`select waitroom.create_room(${room}, ${capacity}, ${db.sql.json({ ...settings, mode: "paused" } as never)})`;
  const tickets: Joined[] = [];
  for (let i = 0; i < queued; i++) tickets.push(first(await db.sql<Joined[]>`select * from waitroom.join(${room})`));
  await db.sql`select waitroom.configure_room(${room}, '{"mode": "open"}')`;
  return { room, tickets };
}

const statuses = async (room: string) =>
  (await db.sql<{ status: string }[]>`select status from waitroom.tickets where room_id = ${room} order by seq`).map(
    (row) => row.status,
  );

describe("the scheduler's tasks", () => {
  const log = createLogger("silent");

  it("admit runs one tick of its room: capacity-many offers, counted", async () => {
    const { room } = await roomWithQueue(2, 3);
    const counted = activity();
    await createTaskList({ sweepIntervalMs: 1000, log }, counted).admit({ room }, helpers);
    expect(await statuses(room)).toEqual(["admitted", "admitted", "queued"]);
    expect(counted).toMatchObject({ admitJobs: 1, admitted: 2, healthProbes: 0 });
  });

  it("admit, run before a room opens, waits until opens_at and makes the draw then", async () => {
    const room = uniqueRoomId("tasks");
    // Opening in 450 ms by the database's clock: within the opening lead (500 ms), as a poll finds the tick.
    await db.sql`select waitroom.create_room(${room}, 2, '{}')`;
    const [{ opens_at: opensAt } = { opens_at: new Date(0) }] = await db.sql<{ opens_at: Date }[]>`
      select (waitroom.configure_room(${room}, jsonb_build_object('opens_at', now() + interval '450 ms'))).opens_at`;
    for (let i = 0; i < 3; i++) await db.sql`select * from waitroom.join(${room})`;
    const [{ wait } = { wait: null }] = await db.sql`select waitroom.opening_wait(${room}) as wait`;
    expect(wait, "the room opens within the lead").not.toBeNull();

    const counted = activity();
    await createTaskList({ sweepIntervalMs: 1000, log }, counted).admit({ room }, helpers);
    expect((await statuses(room)).sort()).toEqual(["admitted", "admitted", "queued"]);
    const [drawn] = await db.sql<{ shuffled_at: Date }[]>`select shuffled_at from waitroom.rooms where id = ${room}`;
    expect(drawn?.shuffled_at.getTime()).toBeGreaterThanOrEqual(opensAt.getTime());
    expect(counted).toMatchObject({ admitJobs: 1, admitted: 2 });
  });

  it("admit refuses a payload without a room, and admits nothing", async () => {
    const { room } = await roomWithQueue(1, 1);
    const tasks = createTaskList({ sweepIntervalMs: 1000, log });
    for (const payload of [{}, { room: "" }, { room: 5 }, null]) {
      await expect(tasks.admit(payload, helpers), JSON.stringify(payload)).rejects.toThrow();
    }
    expect(await statuses(room)).toEqual(["queued"]);
  });

  it("admit probes a room's upstream first and admits only while it answers 2xx", async () => {
    const { port } = upstream.address() as AddressInfo;
    const { room } = await roomWithQueue(1, 1, { health_url: `http://127.0.0.1:${port}/health` });
    const counted = activity();
    const tasks = createTaskList({ sweepIntervalMs: 1000, log }, counted);
    upstreamStatus = 503;
    await tasks.admit({ room }, helpers);
    expect(await statuses(room)).toEqual(["queued"]);
    const [health] = await db.sql`select healthy, health_detail from waitroom.rooms where id = ${room}`;
    expect(health).toEqual({ healthy: false, health_detail: "HTTP 503" });
    // A probe is due again only a second later (health_due): make it due now.
    await db.sql`update waitroom.rooms set health_checked_at = health_checked_at - interval '1 minute' where id = ${room}`;
    upstreamStatus = 200;
    await tasks.admit({ room }, helpers);
    expect(await statuses(room)).toEqual(["admitted"]);
    expect(counted).toMatchObject({ admitJobs: 2, admitted: 1, healthProbes: 2 });
  });

  it("sweep runs waitroom.sweep and schedules the next sweep one interval later, under one job key", async () => {
    const counted = activity();
    const tasks = createTaskList({ sweepIntervalMs: 60_000, log }, counted);
    const before = Date.now();
    await tasks.sweep({}, helpers);
    await tasks.sweep({}, helpers);
    const jobs = await db.sql<{ run_at: Date }[]>`
      select run_at from graphile_worker.jobs where task_identifier = 'sweep' and key = 'sweep'`;
    // The second sweep kept the first's run_at (preserve_run_at): one chain, not two.
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.run_at.getTime()).toBeGreaterThanOrEqual(before + 60_000 - 1000);
    expect(counted.sweeps).toBe(2);
  });

  it("sweep runs again at once while its batch was full, and one interval later once it was not", async () => {
    const room = uniqueRoomId("backlog");
    await db.sql`select waitroom.create_room(${room}, 0, '{"idle_seconds": 60}')`;
    // 1,001 tickets idle for an hour: one more than a sweep's batch.
    await db.sql`select count(*) from waitroom.join_many(${room}, 1001, null, null, now() - interval '1 hour')`;
    const tasks = createTaskList({ sweepIntervalMs: 3_600_000, log }, activity());
    const pending = async () =>
      first(
        await db.sql<{ id: string; run_at: Date; now: Date }[]>`
          select id, run_at, now() as now from graphile_worker.jobs where task_identifier = 'sweep' and key = 'sweep'`,
      );
    const expired = async () =>
      first(
        await db.sql<{ n: number }[]>`
          select count(*)::int as n from waitroom.tickets where room_id = ${room} and status = 'expired'`,
      ).n;

    await tasks.sweep({}, helpers);
    expect(await expired()).toBe(1000);
    const again = await pending();
    expect(again.run_at.getTime()).toBeLessThanOrEqual(again.now.getTime());

    // The worker runs that job: the sweep below is it.
    await utils.completeJobs([again.id]);
    await tasks.sweep({}, helpers);
    expect(await expired()).toBe(1001);
    const later = await pending();
    expect(later.run_at.getTime()).toBeGreaterThan(later.now.getTime() + 3_600_000 - 60_000);
  });
});
