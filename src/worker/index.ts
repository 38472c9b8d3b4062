import { run, type Task, type TaskList } from "graphile-worker";
import pg from "pg";
import { z } from "zod";
import { type Logger, workerLogger } from "../log.js";

/*
 * The scheduler. Every rule lives in SQL: these tasks only call it.
 * - admit: one tick of one room (waitroom.tick admits, then schedules the
 *   next tick). Jobs come from SQL: create_room, configure_room, leave and
 *   sweep wake a room; waitroom.tick re-arms itself every tick_ms.
 * - sweep: waitroom.sweep every sweepIntervalMs (self-rescheduling), and from
 *   cron every minute in case that chain broke.
 * - rearm: cron every minute, gives any open room whose tick chain broke a tick.
 */

export type WorkerOptions = {
  databaseUrl: string;
  log: Logger;
  concurrency: number;
  sweepIntervalMs: number;
};

const admitPayload = z.object({ room: z.string().min(1) });

export function createTaskList({ sweepIntervalMs, log }: Pick<WorkerOptions, "sweepIntervalMs" | "log">): TaskList {
  const admit: Task = async (payload, helpers) => {
    const { room } = admitPayload.parse(payload);
    const { rows } = await helpers.query<{ admitted: number }>("select waitroom.tick($1) as admitted", [room]);
    const admitted = rows[0]?.admitted ?? 0;
    if (admitted > 0) log.debug({ room, admitted }, "admitted");
  };
  const sweep: Task = async (_payload, helpers) => {
    const { rows } = await helpers.query("select * from waitroom.sweep()");
    log.debug({ sweep: rows[0] }, "swept");
    await helpers.addJob(
      "sweep",
      {},
      { jobKey: "sweep", jobKeyMode: "preserve_run_at", runAt: new Date(Date.now() + sweepIntervalMs) },
    );
  };
  const rearm: Task = async (_payload, helpers) => {
    await helpers.query("select waitroom.rearm()");
  };
  return { admit, sweep, rearm };
}

const crontab = ["* * * * * sweep ?jobKey=sweep&jobKeyMode=preserve_run_at", "* * * * * rearm ?jobKey=rearm"].join(
  "\n",
);

export type Scheduler = {
  /** Let jobs in flight finish, then close the worker's connections. */
  stop(): Promise<void>;
};

/** Start graphile-worker in this process. */
export async function startWorker(options: WorkerOptions): Promise<Scheduler> {
  // Our own pool, so that its connections are closed before the database is
  // stopped and a connection dropped by the server is logged, not fatal.
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.concurrency + 2 });
  const onError = (error: Error) => options.log.warn({ err: error }, "scheduler connection lost");
  pool.on("error", onError);
  pool.on("connect", (client) => client.on("error", onError));
  try {
    const runner = await run({
      pgPool: pool,
      concurrency: options.concurrency,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: workerLogger(options.log),
      taskList: createTaskList(options),
      crontab,
    });
    // Start the sweep chain at once rather than at the first cron minute.
    await runner.addJob("sweep", {}, { jobKey: "sweep", jobKeyMode: "preserve_run_at" });
    await runner.addJob("rearm", {}, { jobKey: "rearm" });
    return {
      async stop() {
        await runner.stop();
        await pool.end();
      },
    };
  } catch (error) {
    await pool.end();
    throw error;
  }
}
