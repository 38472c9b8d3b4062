import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { formatCount, formatMs, markdownTable, textTable } from "./lib/format.js";
import { runLoadChild, type WindowCpu } from "./lib/http-load.js";
import type { LifecycleLoadArgs, LifecycleLoadResult } from "./lib/lifecycle-load-child.js";
import {
  busyAutovacuum,
  mib,
  OVERDUE_AFTER_S,
  RETENTION_S,
  sampleTables,
  type TablesSample,
  totalBytes,
} from "./lib/lifecycle-tables.js";
import { startServiceProcess } from "./lib/service-process.js";
import type { Quantiles } from "./lib/stats.js";
import type { BenchContext, Mode } from "./lib/types.js";

/*
 * Benchmark 8, over HTTP: what the full path sustains. The real service and
 * its scheduler in one process (as `npm start` runs them), a load generator in
 * another (bench/lib/lifecycle-load-child.ts) offering whole lifecycles at
 * stepped rates — join, the event stream until admitted, claim, leave — and
 * the sweeps running. Finished rows are aged by the benchmark's own connection
 * so that they pass retention OVERDUE_AFTER_S after they finish, as the
 * set-based phase stamps them: the purge runs at the load's rate and the
 * tables must stay bounded.
 */

const ROOM = "http-life";
/**
 * Seats far above what the load occupies and no admit_per_minute: the scheduler admits everyone queued at each
 * tick. With tick_ms 250 the room ticks every 250–500 ms (the next tick is due tick_ms later and found by the
 * scheduler's 250 ms poll), and at once when a leave wakes it.
 */
const ROOM_SETTINGS = { tick_ms: 250, retention_seconds: RETENTION_S };
const CAPACITY = 100_000;
const SERVICE_ENV = { WAITROOM_RATE_LIMITS: "off" };
/**
 * Sustained: achieved ≥ 95 % of offered, no error, and p99 join → admitted within this bound. The room's cadence
 * puts every admission within ≈ 500 ms of the join while the path keeps up; the bound allows as much again.
 */
export const ADMITTED_P99_BOUND_MS = 1_000;
const ACHIEVED_SHARE = 0.95;
const AGE_EVERY_MS = 1_000;
const SETTLE_TIMEOUT_MS = 60_000;
const CHILD = fileURLToPath(new URL("./lib/lifecycle-load-child.ts", import.meta.url));

type Plan = {
  /** Offered lifecycles per second, step by step; the steps stop after the first one not sustained. */
  rates: number[];
  warmupSeconds: number;
  seconds: number;
  drainSeconds: number;
  sampleMs: number;
};
const PLANS: Record<Mode, Plan> = {
  full: { rates: [25, 50, 100, 200, 400, 800], warmupSeconds: 3, seconds: 15, drainSeconds: 10, sampleMs: 2_000 },
  quick: {
    rates: [25, 50],
    warmupSeconds: 1,
    seconds: 3,
    drainSeconds: 5,
    sampleMs: 1_000,
  },
};

/** Calls of a SQL function and its time in PostgreSQL (ms, wall clock), from pg_stat_user_functions. */
type FunctionTime = { calls: number; ms: number; selfMs: number };

/** What the load generator measured, as it reported it (its visitors, latencies and errors). */
type GeneratorFigures = Omit<LifecycleLoadResult, "offered" | "seconds" | "cpuMs">;

export type HttpLifecycleStep = GeneratorFigures & {
  offeredPerSecond: number;
  /** Visitors that actually arrived in the window, per second (below the offered rate when the generator lagged). */
  arrivedPerSecond: number;
  achievedPerSecond: number;
  /** CPU ms per completed lifecycle in the window. */
  cpuPerLifecycle: { serviceMs: number; postgresMs: number | null; loadGeneratorMs: number };
  /** The benchmark's own connection (sampling, ageing), per lifecycle: not counted in postgresMs. */
  benchConnectionMsPerLifecycle: number | null;
  machineBusyPercent: number | null;
  /** The scheduler's SQL over the whole step (warm-up and drain included), per second of it. */
  tick: FunctionTime & { msPerSecond: number };
  sweep: FunctionTime & { msPerSecond: number };
  /** Most overdue at once within two sweep intervals' worth of lifecycles (rows become due between sweeps). */
  sweepKeptUp: boolean;
  /** Most rows at once, and most overdue, over the step's samples; the last sample. */
  maxTickets: number;
  maxEvents: number;
  maxOverdueTickets: number;
  maxOverdueEvents: number;
  last: TablesSample;
  sustained: boolean;
  /** Why not, when not: the criteria it missed. */
  missed: string[];
};

/** Where PostgreSQL's time went over the whole run: the schema's functions by their own time, per lifecycle. */
export type FunctionShare = { name: string; callsPerLifecycle: number; selfMsPerLifecycle: number; share: number };

export type HttpLifecyclesFigures = {
  room: { capacity: number; tickMs: number };
  admittedP99BoundMs: number;
  steps: HttpLifecycleStep[];
  /** The highest offered rate sustained; null when not even the first step was. */
  sustainedPerSecond: number | null;
  /** After the last step: until nothing was overdue (null: not within 60 s). */
  settledMs: number | null;
  sweepIntervalMs: number;
  /** Lifecycles through over the whole run (warm-up and drain included), which the function times are divided by. */
  lifecycles: number;
  functions: FunctionShare[];
};

/** Every function of the schema that ran, by name (the schema has no overloads of the verbs the path calls). */
async function functionTimes(control: pg.Client): Promise<Map<string, FunctionTime>> {
  const { rows } = await control.query<{ name: string; calls: string; ms: number; self_ms: number }>(
    `select p.proname as name, sum(s.calls) as calls, sum(s.total_time) as ms, sum(s.self_time) as self_ms
       from pg_stat_user_functions s join pg_proc p on p.oid = s.funcid
      where p.pronamespace = 'waitroom'::regnamespace
      group by p.proname`,
  );
  return new Map(rows.map((r) => [r.name, { calls: Number(r.calls), ms: Number(r.ms), selfMs: Number(r.self_ms) }]));
}

function functionDelta(
  before: Map<string, FunctionTime>,
  after: Map<string, FunctionTime>,
  name: string,
): FunctionTime {
  const b = before.get(name) ?? { calls: 0, ms: 0, selfMs: 0 };
  const a = after.get(name) ?? b;
  return { calls: a.calls - b.calls, ms: a.ms - b.ms, selfMs: a.selfMs - b.selfMs };
}

/**
 * Stamp the lifecycles finished since the last call (and their ledger rows) RETENTION_S − OVERDUE_AFTER_S
 * seconds back: they pass retention OVERDUE_AFTER_S after they finished. Rows stamped already are older than
 * half the retention and are left alone.
 */
const AGE_FINISHED = `
  with aged as (
    update waitroom.tickets set ended_at = ended_at - make_interval(secs => $2)
     where room_id = $1 and ended_at > now() - make_interval(secs => $3)
    returning id
  )
  update waitroom.events e set created_at = e.created_at - make_interval(secs => $2)
    from aged where e.ticket_id = aged.id and e.room_id = $1 and e.created_at > now() - make_interval(secs => $3)`;

function missedCriteria(step: Omit<HttpLifecycleStep, "sustained" | "missed">): string[] {
  const missed: string[] = [];
  if (step.achievedPerSecond < ACHIEVED_SHARE * step.offeredPerSecond) {
    missed.push(`achieved ${Math.round((100 * step.achievedPerSecond) / step.offeredPerSecond)} % of offered`);
  }
  if (!(step.joinToAdmitted.p99 <= ADMITTED_P99_BOUND_MS)) {
    missed.push(`p99 join → admitted ${ms0(step.joinToAdmitted.p99)}`);
  }
  if (step.errors > 0) missed.push(`${step.errors} errors`);
  return missed;
}

/** The functions of the path, by their own time in PostgreSQL over the run: the top ones. */
const TOP_FUNCTIONS = 10;

export async function runHttpLifecycles(
  context: BenchContext,
  sweepIntervalMs: number,
): Promise<HttpLifecyclesFigures> {
  const { server, signal, say } = context;
  const plan = PLANS[context.mode];
  const databaseUrl = await server.createAppDatabase("bench_lifecycles_http");
  const control = new pg.Client({ connectionString: databaseUrl });
  await control.connect();
  const steps: HttpLifecycleStep[] = [];
  let settledMs: number | null = null;
  let functions: FunctionShare[] = [];
  let totalLifecycles = 0;
  try {
    // Counts calls of the SQL functions (the scheduler's tick and sweep among them) and their time in the
    // service's sessions, which start after this.
    await control.query(
      `alter database ${pg.escapeIdentifier(new URL(databaseUrl).pathname.slice(1))} set track_functions = 'all'`,
    );
    await control.query("select waitroom.create_room($1, $2, $3)", [ROOM, CAPACITY, ROOM_SETTINGS]);
    await busyAutovacuum(control, true);
    const controlPid = (await control.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]?.pid;
    const postmasterPid = await server.postmasterPid();
    const functionsAtStart = await functionTimes(control);
    const service = await startServiceProcess({
      databaseUrl,
      env: SERVICE_ENV,
      service: { worker: true },
      signal,
    });
    try {
      const startedAt = performance.now();
      let lifecycles = 0;
      for (const perSecond of plan.rates) {
        const step = await runStep(context, plan, perSecond, sweepIntervalMs, {
          control,
          servicePid: service.pid,
          serviceUrl: service.url,
          postmasterPid,
          controlPid,
          startedAt,
          lifecyclesSoFar: () => lifecycles,
        });
        lifecycles += step.finished;
        steps.push(step);
        say(
          `lifecycles over HTTP at ${perSecond}/s: ${formatCount(step.achievedPerSecond)}/s achieved, ` +
            `join p99 ${formatMs(step.join.p99)}, join → admitted p99 ${formatMs(step.joinToAdmitted.p99)}, ` +
            `claim p99 ${formatMs(step.claim.p99)}, leave p99 ${formatMs(step.leave.p99)}, ${step.errors} errors` +
            (step.errors > 0 ? ` ${JSON.stringify(step.errorKinds)}` : "") +
            `; CPU ms/lifecycle service ${cpu(step.cpuPerLifecycle.serviceMs)}, PostgreSQL ` +
            `${cpu(step.cpuPerLifecycle.postgresMs)}, generator ${cpu(step.cpuPerLifecycle.loadGeneratorMs)}` +
            `; ${step.sustained ? "sustained" : `NOT sustained (${step.missed.join(", ")})`}`,
        );
        if (!step.sustained) break;
      }
      const stoppedAt = performance.now();
      while (performance.now() - stoppedAt < SETTLE_TIMEOUT_MS) {
        await control.query(AGE_FINISHED, [ROOM, RETENTION_S - OVERDUE_AFTER_S, RETENTION_S / 2]);
        const now = await sampleTables(control, startedAt, lifecycles);
        if (
          now.overdueTickets === 0 &&
          now.overdueEvents === 0 &&
          performance.now() - stoppedAt > OVERDUE_AFTER_S * 1000
        ) {
          settledMs = performance.now() - stoppedAt;
          break;
        }
        await delay(200);
      }
      const functionsAtEnd = await functionTimes(control);
      const deltas = [...functionsAtEnd.keys()].map((name) => ({
        name,
        ...functionDelta(functionsAtStart, functionsAtEnd, name),
      }));
      const allSelfMs = deltas.reduce((sum, f) => sum + f.selfMs, 0);
      functions = deltas
        .sort((a, b) => b.selfMs - a.selfMs)
        .slice(0, TOP_FUNCTIONS)
        .map((f) => ({
          name: f.name,
          callsPerLifecycle: f.calls / Math.max(1, lifecycles),
          selfMsPerLifecycle: f.selfMs / Math.max(1, lifecycles),
          share: f.selfMs / allSelfMs,
        }));
      totalLifecycles = lifecycles;
    } finally {
      await service.stop();
    }
  } finally {
    await busyAutovacuum(control, false).catch(() => {});
    await control.end();
  }
  const sustained = steps.filter((step) => step.sustained).map((step) => step.offeredPerSecond);
  return {
    room: { capacity: CAPACITY, tickMs: ROOM_SETTINGS.tick_ms },
    admittedP99BoundMs: ADMITTED_P99_BOUND_MS,
    steps,
    sustainedPerSecond: sustained.length > 0 ? Math.max(...sustained) : null,
    settledMs,
    sweepIntervalMs,
    lifecycles: totalLifecycles,
    functions,
  };
}

type StepSetup = {
  control: pg.Client;
  servicePid: number;
  serviceUrl: string;
  postmasterPid: number | null;
  controlPid: number | undefined;
  startedAt: number;
  lifecyclesSoFar: () => number;
};

async function runStep(
  context: BenchContext,
  plan: Plan,
  perSecond: number,
  sweepIntervalMs: number,
  setup: StepSetup,
): Promise<HttpLifecycleStep> {
  const { control } = setup;
  const functionsBefore = await functionTimes(control);
  const stepStarted = performance.now();
  const samples: TablesSample[] = [];
  const running = new AbortController();
  // Ageing and sampling share the benchmark's one connection: its CPU is set apart from PostgreSQL's per lifecycle.
  const upkeep = (async () => {
    let sampledAt = 0;
    while (!running.signal.aborted) {
      await control.query(AGE_FINISHED, [ROOM, RETENTION_S - OVERDUE_AFTER_S, RETENTION_S / 2]);
      if (performance.now() - sampledAt >= plan.sampleMs) {
        sampledAt = performance.now();
        samples.push(await sampleTables(control, setup.startedAt, setup.lifecyclesSoFar()));
      }
      await delay(AGE_EVERY_MS, undefined, { signal: running.signal }).catch(() => {});
    }
  })();
  let load: { result: LifecycleLoadResult; cpu: WindowCpu };
  try {
    const args: LifecycleLoadArgs = {
      url: setup.serviceUrl,
      room: ROOM,
      perSecond,
      warmupSeconds: plan.warmupSeconds,
      seconds: plan.seconds,
      drainSeconds: plan.drainSeconds,
      admissionTimeoutMs: 30_000,
      maxSockets: 256,
    };
    load = await runLoadChild<LifecycleLoadResult>({
      script: CHILD,
      args,
      timeoutMs: (plan.warmupSeconds + plan.seconds + plan.drainSeconds + 60) * 1000,
      signal: context.signal,
      postmasterPid: setup.postmasterPid,
      servicePid: setup.servicePid,
      excludePostgresPids: setup.controlPid === undefined ? [] : [setup.controlPid],
    });
  } finally {
    running.abort();
    await upkeep;
  }
  samples.push(await sampleTables(control, setup.startedAt, setup.lifecyclesSoFar() + load.result.completed));
  const stepSeconds = (performance.now() - stepStarted) / 1000;
  const functionsAfter = await functionTimes(control);
  const { result, cpu: windowCpu } = load;
  const per = (ms: number) => ms / Math.max(1, result.completed);
  const scheduler = (name: "tick" | "sweep") => {
    const delta = functionDelta(functionsBefore, functionsAfter, name);
    return { ...delta, msPerSecond: delta.ms / stepSeconds };
  };
  const maxOverdueTickets = Math.max(...samples.map((s) => s.overdueTickets));
  const step: Omit<HttpLifecycleStep, "sustained" | "missed"> = {
    offeredPerSecond: perSecond,
    arrivedPerSecond: result.offered / result.seconds,
    achievedPerSecond: result.completed / result.seconds,
    completed: result.completed,
    finished: result.finished,
    join: result.join,
    joinToAdmitted: result.joinToAdmitted,
    claim: result.claim,
    leave: result.leave,
    lifecycle: result.lifecycle,
    errors: result.errors,
    errorKinds: result.errorKinds,
    maxArrivalLagMs: result.maxArrivalLagMs,
    cpuPerLifecycle: {
      serviceMs: per(windowCpu.serviceMs),
      postgresMs: windowCpu.postgresMs === null ? null : per(windowCpu.postgresMs),
      loadGeneratorMs: per(windowCpu.loadGeneratorMs),
    },
    benchConnectionMsPerLifecycle: windowCpu.excludedPostgresMs === null ? null : per(windowCpu.excludedPostgresMs),
    machineBusyPercent: windowCpu.machineBusyPercent,
    tick: scheduler("tick"),
    sweep: scheduler("sweep"),
    maxTickets: Math.max(...samples.map((s) => s.tickets)),
    maxEvents: Math.max(...samples.map((s) => s.events)),
    maxOverdueTickets,
    sweepKeptUp: maxOverdueTickets <= (2 * perSecond * sweepIntervalMs) / 1000,
    maxOverdueEvents: Math.max(...samples.map((s) => s.overdueEvents)),
    last: samples.at(-1) as TablesSample,
  };
  const missed = missedCriteria(step);
  return { ...step, sustained: missed.length === 0, missed };
}

const cpu = (ms: number | null) => (ms === null ? "n/a" : ms.toFixed(2));
const ms0 = (value: number) => (Number.isFinite(value) ? formatMs(value) : "—");
const p50p99 = (q: Quantiles) => `${ms0(q.p50)} / ${ms0(q.p99)}`;

const STEP_HEADER = [
  "offered/s",
  "achieved/s",
  "join p50/p99",
  "join → admitted p50/p99",
  "claim p50/p99",
  "leave p50/p99",
  "errors",
  "CPU ms/lifecycle: service / PostgreSQL / generator",
  "machine busy",
  "ticks, sweeps (SQL ms/s)",
  "rows: tickets / events (most overdue)",
  "tables + indexes",
  "sustained",
];

function stepRows(figures: HttpLifecyclesFigures, bold: (text: string) => string): string[][] {
  return figures.steps.map((s) => [
    formatCount(s.offeredPerSecond),
    formatCount(s.achievedPerSecond),
    p50p99(s.join),
    p50p99(s.joinToAdmitted),
    p50p99(s.claim),
    p50p99(s.leave),
    s.errors === 0 ? "0" : `${s.errors} ${JSON.stringify(s.errorKinds)}`,
    `${cpu(s.cpuPerLifecycle.serviceMs)} / ${cpu(s.cpuPerLifecycle.postgresMs)} / ${cpu(s.cpuPerLifecycle.loadGeneratorMs)}`,
    s.machineBusyPercent === null ? "n/a" : `${Math.round(s.machineBusyPercent)} %`,
    `${s.tick.calls} (${Math.round(s.tick.msPerSecond)}), ${s.sweep.calls} (${Math.round(s.sweep.msPerSecond)})`,
    `${formatCount(s.maxTickets)} / ${formatCount(s.maxEvents)} (${formatCount(s.maxOverdueTickets)} / ` +
      `${formatCount(s.maxOverdueEvents)})${s.sweepKeptUp ? "" : ` ${bold("sweep behind")}`}`,
    mib(totalBytes(s.last)),
    s.sustained ? "yes" : `${bold("no")}: ${s.missed.join(", ")}`,
  ]);
}

const FUNCTION_HEADER = ["function", "calls per lifecycle", "own time per lifecycle", "share of the schema's time"];

function functionRows(figures: HttpLifecyclesFigures): string[][] {
  return figures.functions.map((f) => [
    `\`waitroom.${f.name}\``,
    f.callsPerLifecycle.toFixed(2),
    formatMs(f.selfMsPerLifecycle),
    `${(f.share * 100).toFixed(1)} %`,
  ]);
}

function verdict(figures: HttpLifecyclesFigures): string {
  const settled = figures.settledMs === null ? "not within 60 s" : `${formatMs(figures.settledMs)}`;
  const behind = figures.steps.filter((s) => !s.sweepKeptUp).map((s) => formatCount(s.offeredPerSecond));
  return (
    `highest rate sustained over HTTP: ${figures.sustainedPerSecond === null ? "none of the steps" : `${formatCount(figures.sustainedPerSecond)} lifecycles/s`} ` +
    `(achieved ≥ ${ACHIEVED_SHARE * 100} % of offered, 0 errors, p99 join → admitted ≤ ${formatMs(figures.admittedP99BoundMs)}); ` +
    `sweeps kept up ${behind.length === 0 ? "in every step" : `except at ${behind.join(", ")}/s`}, nothing overdue ${settled} after the last step`
  );
}

export function httpLifecyclesConsole(figures: HttpLifecyclesFigures): string {
  return [
    `Lifecycles over HTTP — ${verdict(figures)}`,
    textTable(
      STEP_HEADER,
      stepRows(figures, (text) => text.toUpperCase()),
    ),
    `PostgreSQL's time by function over ${formatCount(figures.lifecycles)} lifecycles:`,
    textTable(
      FUNCTION_HEADER,
      functionRows(figures).map((row) => row.map((cell) => cell.replaceAll("`", ""))),
    ),
  ].join("\n");
}

export function httpLifecyclesMarkdown(figures: HttpLifecyclesFigures, mode: Mode): string {
  const p = PLANS[mode];
  return [
    "### Over HTTP: what the full path sustains",
    "",
    "The real service and its scheduler in one process (as `npm start` runs them, `WAITROOM_RATE_LIMITS=off`), " +
      "a load generator in another (bench/lib/lifecycle-load-child.ts) offering lifecycles at a fixed rate (open " +
      "loop: a visitor arrives every 1/rate s whether or not the earlier ones are through). Each visitor does what " +
      "the waiting-room page and the SDK do: `POST /v1/rooms/{room}/tickets` with `{}`, opens its `events_url` " +
      "stream and reads it until it says admitted, closes it, `POST …/claim`, `DELETE /v1/tickets/{id}`. The room " +
      `has ${formatCount(figures.room.capacity)} seats, no \`admit_per_minute\` and \`tick_ms\` ${figures.room.tickMs} ` +
      "(a tick every 250–500 ms: the next one is due `tick_ms` later and found by the scheduler's 250 ms poll; " +
      "sooner when a leave wakes the room), so every tick admits everyone waiting. Steps of " +
      `${p.seconds} s (after ${p.warmupSeconds} s of warm-up) at ${p.rates.map(formatCount).join(", ")} per second, ` +
      "stopping after the first step not sustained. Achieved: leaves answered in the window, per second. " +
      "Join → admitted runs from the join's answer to the admission read on the stream. CPU per lifecycle is " +
      "over the measured window, from /proc; PostgreSQL's leaves out the benchmark's own connection, which ages " +
      `finished rows by the retention (as the set-based phase stamps them: due ${OVERDUE_AFTER_S} s after they ` +
      "finish) and samples the tables. Ticks and sweeps: calls of `waitroom.tick` and `waitroom.sweep` in the " +
      "step and their time in PostgreSQL per second. Rows: the most at once in the step's samples, and the most " +
      "overdue (past retention, not purged yet); the sweep is behind when more than two sweep intervals' " +
      `lifecycles (interval ${figures.sweepIntervalMs} ms) were overdue at once.`,
    "",
    `**${verdict(figures)}.**${mode === "quick" ? " This was a quick run: a smoke check, not a measurement." : ""}`,
    "",
    markdownTable(
      STEP_HEADER,
      stepRows(figures, (text) => `**${text}**`),
    ),
    "",
    `Where PostgreSQL's time went, over the whole run (${formatCount(figures.lifecycles)} lifecycles, warm-ups ` +
      "and drains included): the schema's functions by their own time (`pg_stat_user_functions` with " +
      "`track_functions = all`; wall clock in the backend, waits included, not CPU), the top " +
      `${TOP_FUNCTIONS}:`,
    "",
    markdownTable(FUNCTION_HEADER, functionRows(figures)),
  ].join("\n");
}
