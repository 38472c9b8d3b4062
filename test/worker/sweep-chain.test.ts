import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { startWorker } from "../../src/worker/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { first, uniqueRoomId } from "../helpers/queue.js";

/*
 * The sweep chain under a backlog, in a real scheduler: with an interval of an hour, a backlog of
 * several batches is gone only if a full batch makes the next sweep run at once.
 */

const db = useTestDatabase();
const log = createLogger("warn");
const INTERVAL_MS = 3_600_000;

describe("the sweep chain", () => {
  it("drains a backlog of several batches in one interval, then waits an interval", { timeout: 60_000 }, async () => {
    const room = uniqueRoomId("backlog");
    // Paused: no admission tick expires anything, only sweeps do.
    await db.sql`select waitroom.create_room(${room}, 0, '{"idle_seconds": 60, "mode": "paused"}')`;
    // 2,500 tickets idle for an hour: two full batches of 1,000 and one of 500.
    await db.sql`select count(*) from waitroom.join_many(${room}, 2500, null, null, now() - interval '1 hour')`;
    const expired = async () =>
      first(
        await db.sql<{ n: number }[]>`
          select count(*)::int as n from waitroom.tickets where room_id = ${room} and status = 'expired'`,
      ).n;

    const scheduler = await startWorker({
      databaseUrl: db.serviceUrl,
      log,
      concurrency: 2,
      sweepIntervalMs: INTERVAL_MS,
    });
    try {
      // Each completed sweep is the signal to look; the chain starts when the scheduler does.
      let sweeps = 0;
      await new Promise<void>((resolve, reject) => {
        const onComplete = ({ job, error }: { job: { task_identifier: string }; error: unknown }) => {
          if (job.task_identifier !== "sweep") return;
          if (error) {
            scheduler.events.off("job:complete", onComplete);
            reject(error);
            return;
          }
          sweeps += 1;
          void expired().then((n) => {
            if (n < 2500) return;
            scheduler.events.off("job:complete", onComplete);
            resolve();
          }, reject);
        };
        scheduler.events.on("job:complete", onComplete);
      });
      expect(sweeps).toBeGreaterThanOrEqual(3);
      const { depth } = first(await db.sql<{ depth: number }[]>`select waitroom._depth(${room})::int as depth`);
      expect(depth).toBe(0);
      // The last batch was not full: the next sweep is an interval away.
      const next = first(
        await db.sql<{ run_at: Date; now: Date }[]>`
          select run_at, now() as now from graphile_worker.jobs where task_identifier = 'sweep' and key = 'sweep'`,
      );
      expect(next.run_at.getTime()).toBeGreaterThan(next.now.getTime() + INTERVAL_MS - 60_000);
    } finally {
      await scheduler.stop();
    }
  });
});
