import { setTimeout } from "node:timers/promises";
import { type JobHelpers, run, type WorkerEvents } from "graphile-worker";
import pg from "pg";
import { z } from "zod";
import { type Logger, workerLogger } from "../log.js";

/*
 * The scheduler. Every rule lives in SQL: these tasks only call it.
 * - admit: one tick of one room (waitroom.tick admits, then schedules the
 *   next tick). Jobs come from SQL: create_room, configure_room, leave and
 *   sweep wake a room; waitroom.tick re-arms itself every tick_ms. The tick
 *   of an opening comes half a second early (graphile-worker finds jobs due
 *   later by polling) and waits until opens_at (waitroom.opening_wait).
 * - sweep: waitroom.sweep every sweepIntervalMs (self-rescheduling), and from
 *   cron every minute in case that chain broke. A sweep whose batch was full
 *   (batch_full) runs again at once, so maintenance keeps up with traffic
 *   rather than with one batch per interval.
 * - rearm: cron every minute, gives any open room whose tick chain broke a tick.
 * A room with a health_url has its upstream probed (GET, 2 s timeout) before
 * the tick when waitroom.health_due says so (at most once a second per room,
 * across all processes); waitroom.set_health records the answer and admit
 * admits nobody until it is healthy.
 */

export type WorkerOptions = {
  databaseUrl: string;
  log: Logger;
  concurrency: number;
  sweepIntervalMs: number;
};

const admitPayload = z.object({ room: z.string().min(1) });

/** What this process's scheduler did since it started; logged when it stops. */
export type SchedulerActivity = { admitJobs: number; admitted: number; sweeps: number; healthProbes: number };
const noActivity = (): SchedulerActivity => ({ admitJobs: 0, admitted: 0, sweeps: 0, healthProbes: 0 });

export const HEALTH_TIMEOUT_MS = 2_000;

/** Error codes of an unreachable upstream, in words; never an address (the detail reaches event streams). */
const unreachable: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
};

/** GET the upstream's health URL: a 2xx answer within the timeout is healthy, anything else is not. */
export async function probeHealth(
  url: string,
  timeoutMs = HEALTH_TIMEOUT_MS,
): Promise<{ healthy: boolean; detail: string }> {
  try {
    const response = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { "user-agent": "waitroom-health-probe" },
    });
    await response.body?.cancel();
    return { healthy: response.status >= 200 && response.status < 300, detail: `HTTP ${response.status}` };
  } catch (error) {
    if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
      return { healthy: false, detail: `no answer within ${timeoutMs} ms` };
    }
    const cause = error instanceof Error ? (error.cause as { code?: string } | undefined) : undefined;
    return { healthy: false, detail: (cause?.code && unreachable[cause.code]) || "unreachable" };
  }
}

/** What the tasks use of graphile-worker's job helpers: a query on its pool, and adding a job. */
export type TaskHelpers = Pick<JobHelpers, "query" | "addJob">;
export type Tasks = Record<"admit" | "sweep" | "rearm", (payload: unknown, helpers: TaskHelpers) => Promise<void>>;

/** The scheduler's tasks, as graphile-worker runs them (and tests call them). */
export function createTaskList(
  { sweepIntervalMs, log }: Pick<WorkerOptions, "sweepIntervalMs" | "log">,
  activity: SchedulerActivity = noActivity(),
): Tasks {
  const admit: Tasks["admit"] = async (payload, helpers) => {
    const { room } = admitPayload.parse(payload);
    // One round trip for a tick with no probe due and no opening to wait for (nearly every tick).
    const first = await helpers.query<{ url: string | null; wait_ms: number | null; admitted: number | null }>(
      "select h.url, ceil(extract(epoch from w.wait) * 1000)::integer as wait_ms, " +
        "case when h.url is null and w.wait is null then waitroom.tick($1) end as admitted " +
        "from waitroom.health_due($1) as h(url), waitroom.opening_wait($1) as w(wait)",
      [room],
    );
    const url = first.rows[0]?.url;
    const waitMs = first.rows[0]?.wait_ms;
    let admitted = first.rows[0]?.admitted ?? 0;
    if (url) {
      const { healthy, detail } = await probeHealth(url);
      activity.healthProbes += 1;
      const set = await helpers.query<{ changed: boolean }>("select waitroom.set_health($1, $2, $3) as changed", [
        room,
        healthy,
        detail,
      ]);
      if (set.rows[0]?.changed) log.info({ room, healthy, detail }, "room health changed");
    }
    // The tick before an opening came early (waitroom._opening_lead): the draw starts at opens_at, not at the next poll.
    if (waitMs) await setTimeout(waitMs);
    if (url || waitMs) {
      const { rows } = await helpers.query<{ admitted: number }>("select waitroom.tick($1) as admitted", [room]);
      admitted = rows[0]?.admitted ?? 0;
    }
    activity.admitJobs += 1;
    activity.admitted += admitted;
    if (admitted > 0) log.debug({ room, admitted }, "admitted");
  };
  const sweep: Tasks["sweep"] = async (_payload, helpers) => {
    const { rows } = await helpers.query<{ batch_full: boolean }>("select * from waitroom.sweep()");
    activity.sweeps += 1;
    log.debug({ sweep: rows[0] }, "swept");
    // replace: a full batch moves the pending sweep (the cron's, or one a
    // concurrent sweep scheduled) to now; otherwise an earlier one stands.
    await helpers.addJob(
      "sweep",
      {},
      rows[0]?.batch_full
        ? { jobKey: "sweep", jobKeyMode: "replace", runAt: new Date() }
        : { jobKey: "sweep", jobKeyMode: "preserve_run_at", runAt: new Date(Date.now() + sweepIntervalMs) },
    );
  };
  const rearm: Tasks["rearm"] = async (_payload, helpers) => {
    await helpers.query("select waitroom.rearm()");
  };
  return { admit, sweep, rearm };
}

const crontab = ["* * * * * sweep ?jobKey=sweep&jobKeyMode=preserve_run_at", "* * * * * rearm ?jobKey=rearm"].join(
  "\n",
);

export type Scheduler = {
  /** graphile-worker's events (job:complete, …): what tests and metrics wait on instead of polling. */
  events: WorkerEvents;
  /** Let jobs in flight finish, then close the worker's connections. */
  stop(): Promise<void>;
};

/**
 * Jobs due now arrive by NOTIFY; a job due later (the next tick, the tick at a room's opens_at) is
 * found by polling. At 1 s, a room opening at opens_at drew up to a second late (100–490 ms in the
 * rush benchmark) and ticks of tick_ms 1000 came every 1–2 s; at 250 ms the poll is four cheap
 * indexed queries a second per worker process.
 */
const POLL_INTERVAL_MS = 250;

/** Start graphile-worker in this process. */
export async function startWorker(options: WorkerOptions): Promise<Scheduler> {
  // Our own pool, so that its connections are closed before the database is
  // stopped and a connection dropped by the server is logged, not fatal.
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.concurrency + 2 });
  const onError = (error: Error) => options.log.warn({ err: error }, "scheduler connection lost");
  pool.on("error", onError);
  pool.on("connect", (client) => client.on("error", onError));
  const activity = noActivity();
  try {
    const runner = await run({
      pgPool: pool,
      concurrency: options.concurrency,
      noHandleSignals: true,
      pollInterval: POLL_INTERVAL_MS,
      logger: workerLogger(options.log),
      taskList: createTaskList(options, activity),
      crontab,
    });
    // Start the sweep chain at once rather than at the first cron minute.
    await runner.addJob("sweep", {}, { jobKey: "sweep", jobKeyMode: "preserve_run_at" });
    await runner.addJob("rearm", {}, { jobKey: "rearm" });
    return {
      events: runner.events,
      async stop() {
        await runner.stop();
        await pool.end();
        options.log.info({ ...activity }, "scheduler stopped");
      },
    };
  } catch (error) {
    await pool.end();
    throw error;
  }
}
