import PgBoss from "pg-boss";
import { quantile } from "./stats.js";

/*
 * pg-boss as a developer would use it to enqueue a burst: its JS API,
 * `boss.insert(jobs)` (pg-boss 10: each job names its queue), one call per
 * batch, which pg-boss sends as one INSERT … SELECT over the jobs as JSON.
 * Closed loop, like pgbench: `callers` async callers in this process, each
 * sending its next batch as soon as the previous one is answered, on a pool
 * with a connection per caller.
 */

export type PgBossRun = {
  calls: number;
  /** Rows the calls inserted, counted in pgboss.job (not assumed from the batch size). */
  rows: number;
  elapsedMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  errors: number;
};

export type PgBossQueue = { boss: PgBoss; queue: string; stop(): Promise<void> };

/** pg-boss on the database (its schema created by start), no maintenance or cron, one queue. */
export async function startPgBoss(databaseUrl: string, queue: string, callers: number): Promise<PgBossQueue> {
  const boss = new PgBoss({ connectionString: databaseUrl, max: callers, supervise: false, schedule: false });
  boss.on("error", () => {});
  await boss.start();
  await boss.createQueue(queue);
  return {
    boss,
    queue,
    stop: () => boss.stop({ graceful: false, wait: true, close: true }),
  };
}

async function jobRows(boss: PgBoss, queue: string): Promise<number> {
  const db = boss.getDb();
  const { rows } = await db.executeSql("select count(*)::int as count from pgboss.job where name = $1", [queue]);
  return Number((rows[0] as { count: number } | undefined)?.count ?? 0);
}

export async function runPgBossInserts(options: {
  pgboss: PgBossQueue;
  batch: number;
  callers: number;
  seconds: number;
  signal: AbortSignal;
}): Promise<PgBossRun> {
  const { boss, queue } = options.pgboss;
  const jobs: PgBoss.JobInsert[] = Array.from({ length: options.batch }, () => ({ name: queue, data: {} }));
  const rowsBefore = await jobRows(boss, queue);
  const started = performance.now();
  const until = started + options.seconds * 1000;
  const latencies: number[] = [];
  let errors = 0;
  const caller = async () => {
    while (performance.now() < until && !options.signal.aborted) {
      const sent = performance.now();
      try {
        await boss.insert(jobs);
        latencies.push(performance.now() - sent);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: options.callers }, caller));
  const elapsedMs = performance.now() - started;
  options.signal.throwIfAborted();
  return {
    calls: latencies.length,
    rows: (await jobRows(boss, queue)) - rowsBefore,
    elapsedMs,
    latencyP50Ms: latencies.length > 0 ? quantile(latencies, 0.5) : Number.NaN,
    latencyP99Ms: latencies.length > 0 ? quantile(latencies, 0.99) : Number.NaN,
    errors,
  };
}
