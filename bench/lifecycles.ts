import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { loadConfig } from "../src/config/index.js";
import { startWorker } from "../src/worker/index.js";
import { formatCount, formatMs, formatRatio, markdownTable, textTable } from "./lib/format.js";
import {
  busyAutovacuum,
  mib,
  OVERDUE_AFTER_S,
  RETENTION_S,
  sampleTables,
  type TablesSample,
  totalBytes,
} from "./lib/lifecycle-tables.js";
import { readNotes } from "./lib/notes.js";
import { withClient } from "./lib/server.js";
import { median } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";
import {
  type HttpLifecyclesFigures,
  httpLifecyclesConsole,
  httpLifecyclesMarkdown,
  runHttpLifecycles,
} from "./lifecycles-http.js";

/*
 * Benchmark 8: does maintenance keep up with traffic? Complete ticket
 * lifecycles (join → admit → claim → leave, then purged after retention) are
 * driven set-based in SQL (bench/sql/lifecycles.sql), so that what is
 * measured is the sweeps, not a round trip per ticket.
 * - capacity: a backlog of finished lifecycles past retention, purged by
 *   back-to-back waitroom.sweep() calls (what the scheduler does while a batch
 *   is full), against the baseline of a bare DELETE of the same rows;
 * - sustained: the real scheduler (graphile-worker, default sweep interval)
 *   runs while two connections drive TARGET lifecycles per second, stamped
 *   so that their rows pass retention OVERDUE_AFTER_S seconds after they are
 *   written; sampled: rows overdue (past retention, not purged yet), table
 *   and index sizes.
 */

const TARGET_PER_SECOND = 1_000;
const BATCH = 100;
const DRIVERS = 2;
const SETTLE_TIMEOUT_MS = 60_000;

type Plan = { backlog: number; capacityRounds: number; sustainSeconds: number; sampleMs: number };
const PLANS: Record<Mode, Plan> = {
  full: { backlog: 20_000, capacityRounds: 3, sustainSeconds: 90, sampleMs: 5_000 },
  quick: { backlog: 2_000, capacityRounds: 1, sustainSeconds: 8, sampleMs: 1_000 },
};

type Sample = TablesSample;

type CapacityRound = { sweepMs: number; sweepCalls: number; bareMs: number; fillPerSecond: number };

export type LifecyclesFigures = {
  capacity: {
    backlog: number;
    rounds: CapacityRound[];
    /** Lifecycles purged per second by back-to-back sweeps (median). */
    sweepPerSecond: number;
    /** The same rows deleted by bare DELETEs, per second (median). */
    barePerSecond: number;
    /** Unthrottled rate of the driver alone (median of the backlog fills): the box's ceiling for this load. */
    driverPerSecond: number;
  };
  sustained: {
    seconds: number;
    sweepIntervalMs: number;
    lifecycles: number;
    perSecond: number;
    sweeps: number;
    samples: Sample[];
    /** Most rows overdue at once in the second half of the load. */
    maxOverdueTickets: number;
    maxOverdueEvents: number;
    /** After the load stopped: until nothing was overdue. */
    settledMs: number | null;
    /** Total size (tables + indexes) at the end against half-way through the load. */
    sizeGrowthSecondHalf: number;
  };
  target: { perSecond: number; met: boolean };
  /** The same lifecycles through the real service over HTTP: reported apart, no target. */
  http: HttpLifecyclesFigures;
};

const driverSql = fileURLToPath(new URL("./sql/lifecycles.sql", import.meta.url));

const stamp = `now() - make_interval(secs => ${RETENTION_S - OVERDUE_AFTER_S})`;

async function createRoom(control: pg.Client, room: string): Promise<void> {
  await control.query("select waitroom.create_room($1, 1000000, $2)", [room, { retention_seconds: RETENTION_S }]);
}

async function fillBacklog(control: pg.Client, room: string, count: number): Promise<number> {
  const started = performance.now();
  for (let done = 0; done < count; done += BATCH) {
    await control.query(`select bench_lifecycles($1, $2, now() - interval '2 hours')`, [room, BATCH]);
  }
  return count / ((performance.now() - started) / 1000);
}

async function capacityRound(context: BenchContext, control: pg.Client, round: number, plan: Plan) {
  const swept = `drain-${round}`;
  await createRoom(control, swept);
  const fillPerSecond = await fillBacklog(control, swept, plan.backlog);
  await control.query("vacuum analyze waitroom.tickets, waitroom.events");
  let sweepCalls = 0;
  let started = performance.now();
  for (;;) {
    context.signal.throwIfAborted();
    const { rows } = await control.query<{ batch_full: boolean }>("select * from waitroom.sweep()");
    sweepCalls += 1;
    if (!rows[0]?.batch_full) break;
  }
  const sweepMs = performance.now() - started;

  const bare = `bare-${round}`;
  await createRoom(control, bare);
  await fillBacklog(control, bare, plan.backlog);
  await control.query("vacuum analyze waitroom.tickets, waitroom.events");
  started = performance.now();
  await control.query("begin");
  await control.query("delete from waitroom.tickets where room_id = $1", [bare]);
  await control.query("delete from waitroom.events where room_id = $1", [bare]);
  await control.query("commit");
  const bareMs = performance.now() - started;
  context.say(
    `capacity round ${round}: ${formatCount(plan.backlog)} lifecycles purged by ${sweepCalls} sweeps in ` +
      `${formatMs(sweepMs)} (bare DELETE ${formatMs(bareMs)}); driver ${formatCount(fillPerSecond)}/s`,
  );
  return { sweepMs, sweepCalls, bareMs, fillPerSecond };
}

async function sustained(context: BenchContext, databaseUrl: string, control: pg.Client, plan: Plan) {
  const config = loadConfig({});
  await busyAutovacuum(control, true);
  const scheduler = await startWorker({
    databaseUrl,
    log: context.log,
    concurrency: config.workerConcurrency,
    sweepIntervalMs: config.sweepIntervalMs,
  });
  let sweeps = 0;
  scheduler.events.on("job:complete", ({ job }) => {
    if (job.task_identifier === "sweep") sweeps += 1;
  });
  const samples: Sample[] = [];
  let lifecycles = 0;
  let settledMs: number | null = null;
  try {
    const periodMs = (BATCH * DRIVERS * 1000) / TARGET_PER_SECOND;
    const rooms = Array.from({ length: DRIVERS }, (_, index) => `life-${index}`);
    for (const room of rooms) await createRoom(control, room);
    const startedAt = performance.now();
    const endAt = startedAt + plan.sustainSeconds * 1000;
    const drive = async (room: string, index: number) => {
      await withClient(databaseUrl, async (client) => {
        // Each driver keeps its own schedule; a late batch runs at once, so the rate catches up.
        for (let batch = 0; ; batch++) {
          const due = startedAt + batch * periodMs + (index * periodMs) / DRIVERS;
          if (due >= endAt) return;
          context.signal.throwIfAborted();
          const wait = due - performance.now();
          if (wait > 0) await delay(wait);
          await client.query(`select bench_lifecycles($1, $2, ${stamp})`, [room, BATCH]);
          lifecycles += BATCH;
        }
      });
    };
    const sampling = (async () => {
      while (performance.now() < endAt) {
        samples.push(await sampleTables(control, startedAt, lifecycles));
        await delay(Math.min(plan.sampleMs, Math.max(0, endAt - performance.now())));
      }
    })();
    await Promise.all([...rooms.map((room, index) => drive(room, index)), sampling]);
    const elapsedS = (performance.now() - startedAt) / 1000;
    samples.push(await sampleTables(control, startedAt, lifecycles));
    context.say(`sustained: ${formatCount(lifecycles)} lifecycles in ${elapsedS.toFixed(1)} s, ${sweeps} sweeps`);

    const stoppedAt = performance.now();
    while (performance.now() - stoppedAt < SETTLE_TIMEOUT_MS) {
      const now = await sampleTables(control, startedAt, lifecycles);
      if (now.overdueTickets === 0 && now.overdueEvents === 0) {
        settledMs = performance.now() - stoppedAt;
        break;
      }
      await delay(200);
    }
    const secondHalf = samples.filter((s) => s.atSeconds >= plan.sustainSeconds / 2);
    const halfWay = secondHalf[0] ?? samples[0];
    const last = samples.at(-1);
    return {
      seconds: elapsedS,
      sweepIntervalMs: config.sweepIntervalMs,
      lifecycles,
      perSecond: lifecycles / elapsedS,
      sweeps,
      samples,
      maxOverdueTickets: Math.max(0, ...secondHalf.map((s) => s.overdueTickets)),
      maxOverdueEvents: Math.max(0, ...secondHalf.map((s) => s.overdueEvents)),
      settledMs,
      sizeGrowthSecondHalf: halfWay && last ? totalBytes(last) / totalBytes(halfWay) : 1,
    };
  } finally {
    await scheduler.stop();
    await busyAutovacuum(control, false);
  }
}

function sampleRows(samples: readonly Sample[]): string[][] {
  // At most about a dozen rows: the first, the last and evenly spaced ones between.
  const step = Math.max(1, Math.ceil(samples.length / 12));
  const picked = samples.filter((_, index) => index % step === 0 || index === samples.length - 1);
  return picked.map((s) => [
    `${s.atSeconds.toFixed(0)} s`,
    formatCount(s.lifecycles),
    formatCount(s.tickets),
    formatCount(s.events),
    formatCount(s.overdueTickets),
    formatCount(s.overdueEvents),
    `${mib(s.ticketsTableBytes)} + ${mib(s.ticketsIndexBytes)}`,
    `${mib(s.eventsTableBytes)} + ${mib(s.eventsIndexBytes)}`,
    String(s.autovacuums),
  ]);
}

const SAMPLE_HEADER = [
  "at",
  "lifecycles",
  "tickets",
  "events",
  "overdue tickets",
  "overdue events",
  "tickets table + indexes",
  "events table + indexes",
  "autovacuums",
];

function keptUp(figures: LifecyclesFigures): string {
  const { sustained: s } = figures;
  return (
    `overdue at most ${formatCount(s.maxOverdueTickets)} tickets and ${formatCount(s.maxOverdueEvents)} events in the ` +
    `second half; nothing overdue ${s.settledMs === null ? "not within 60 s" : `${formatMs(s.settledMs)}`} after the load stopped`
  );
}

function consoleReport(figures: LifecyclesFigures): string {
  const { capacity: c, sustained: s } = figures;
  return [
    `Lifecycles — sweeps purge a backlog of ${formatCount(c.backlog)} at ${formatCount(c.sweepPerSecond)}/s ` +
      `(bare DELETE ${formatCount(c.barePerSecond)}/s, ${formatRatio(c.barePerSecond / c.sweepPerSecond)} faster); ` +
      `driver alone ${formatCount(c.driverPerSecond)}/s`,
    `sustained ${formatCount(s.perSecond)} lifecycles/s for ${s.seconds.toFixed(0)} s with the scheduler ` +
      `(${s.sweeps} sweeps, interval ${s.sweepIntervalMs} ms): ${keptUp(figures)}`,
    textTable(SAMPLE_HEADER, sampleRows(s.samples)),
    `size at the end / half-way: ${formatRatio(s.sizeGrowthSecondHalf)}; target ≥ ${formatCount(figures.target.perSecond)} ` +
      `lifecycles/s kept up with: ${figures.target.met ? "met" : "NOT met"}`,
    httpLifecyclesConsole(figures.http),
  ].join("\n");
}

async function markdownReport(figures: LifecyclesFigures, plan: Plan, mode: Mode): Promise<string> {
  const { capacity: c, sustained: s } = figures;
  const capacityTable = markdownTable(
    ["round", "sweeps (calls)", "sweeps: lifecycles/s", "bare DELETE", "bare: lifecycles/s", "driver alone"],
    c.rounds.map((r, index) => [
      String(index + 1),
      `${formatMs(r.sweepMs)} (${r.sweepCalls})`,
      formatCount(c.backlog / (r.sweepMs / 1000)),
      formatMs(r.bareMs),
      formatCount(c.backlog / (r.bareMs / 1000)),
      `${formatCount(r.fillPerSecond)}/s`,
    ]),
  );
  const notes = await readNotes("lifecycles");
  return [
    "## 8. Sustained lifecycles: maintenance keeps up with traffic",
    "",
    "Complete ticket lifecycles — `join_many` and `admit` (the real verbs), then claim and leave written set-based " +
      "as `claim` and `leave` write them (an active seat, then left; their ledger rows; one wake per batch), in " +
      `batches of ${BATCH} per transaction (bench/sql/lifecycles.sql) — and the sweeps that expire and purge them. ` +
      `Rooms keep finished tickets and events ${RETENTION_S} s (the least allowed), so a lifecycle is 1 ticket and ` +
      `4 ledger rows to purge. **Capacity:** a backlog of ${formatCount(c.backlog)} lifecycles stamped two hours ` +
      "ago is purged by back-to-back `waitroom.sweep()` calls (1,000 rows of each kind per call, as the scheduler " +
      "runs them while a batch is full); the baseline, measured in the same round, is a bare `DELETE` of an " +
      `identical backlog by room (tickets, then events, one transaction). **Sustained:** ${DRIVERS} connections drive ` +
      `${formatCount(TARGET_PER_SECOND)} lifecycles/s for ${plan.sustainSeconds} s while the real scheduler ` +
      `(graphile-worker, default sweep interval ${s.sweepIntervalMs} ms) runs; the lifecycles are stamped so ` +
      `their rows pass retention ${OVERDUE_AFTER_S} s after they are written, so the purge runs at the load's rate. ` +
      "Overdue = past the room's retention and not purged yet.",
    "",
    `**Sustained ${formatCount(s.perSecond)} lifecycles/s** (target ≥ ${formatCount(TARGET_PER_SECOND)}/s with ` +
      `maintenance keeping up): **${figures.target.met ? "met" : "not met"}** — ${keptUp(figures)}. ` +
      `Sweeps alone purge ${formatCount(c.sweepPerSecond)} lifecycles/s (a bare DELETE ` +
      `${formatCount(c.barePerSecond)}/s).` +
      (mode === "quick" ? " This was a quick run: a smoke check, not a measurement." : ""),
    "",
    capacityTable,
    "",
    `Sustained load, sampled every ${plan.sampleMs / 1000} s (${s.sweeps} sweeps ran; tables and indexes by ` +
      `\`pg_table_size\` / \`pg_indexes_size\`; total at the end ${formatRatio(s.sizeGrowthSecondHalf)} of half-way):`,
    "",
    markdownTable(SAMPLE_HEADER, sampleRows(s.samples)),
    "",
    httpLifecyclesMarkdown(figures.http, mode),
    "",
    "### Why (notes: bench/notes/lifecycles.md)",
    "",
    notes,
  ].join("\n");
}

export const lifecyclesBenchmark: Benchmark<LifecyclesFigures> = {
  id: "lifecycles",
  title: "Sustained lifecycles with the sweeps running",
  async run(context): Promise<BenchReport<LifecyclesFigures>> {
    const plan = PLANS[context.mode];
    const databaseUrl = await context.server.createAppDatabase("bench_lifecycles");
    return withClient(databaseUrl, async (control) => {
      await control.query(await readFile(driverSql, "utf8"));
      const rounds: CapacityRound[] = [];
      for (let round = 1; round <= plan.capacityRounds; round++) {
        rounds.push(await capacityRound(context, control, round, plan));
      }
      await control.query("vacuum analyze waitroom.tickets, waitroom.events");
      const load = await sustained(context, databaseUrl, control, plan);
      const http = await runHttpLifecycles(context, load.sweepIntervalMs);
      // Kept up: never more overdue than two sweep intervals' lifecycles (rows become due between sweeps, one
      // interval apart), and all purged soon after the load stopped.
      const intervalWorth = (2 * TARGET_PER_SECOND * load.sweepIntervalMs) / 1000;
      const figures: LifecyclesFigures = {
        capacity: {
          backlog: plan.backlog,
          rounds,
          sweepPerSecond: median(rounds.map((r) => plan.backlog / (r.sweepMs / 1000))),
          barePerSecond: median(rounds.map((r) => plan.backlog / (r.bareMs / 1000))),
          driverPerSecond: median(rounds.map((r) => r.fillPerSecond)),
        },
        sustained: load,
        http,
        target: {
          perSecond: TARGET_PER_SECOND,
          met:
            load.perSecond >= TARGET_PER_SECOND * 0.99 &&
            load.maxOverdueTickets <= intervalWorth &&
            load.settledMs !== null,
        },
      };
      return {
        console: consoleReport(figures),
        markdown: await markdownReport(figures, plan, context.mode),
        figures,
      };
    });
  },
};
