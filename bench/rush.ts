import { rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { childrenCpuDeltaMs, childrenCpuMs, type MachineCpu, machineCpu, processCpuMs } from "./lib/cpu.js";
import { formatCount, formatMs, formatRatio, markdownTable, textTable } from "./lib/format.js";
import { type HttpLoadRun, runHttpLoad } from "./lib/http-load.js";
import { runInterleaved } from "./lib/interleave.js";
import { readNotes } from "./lib/notes.js";
import { runPgbench } from "./lib/pgbench.js";
import { runPgBossInserts, startPgBoss } from "./lib/pgboss-load.js";
import { fillQueue, timeAdmit, timeAdmitFloor, timed } from "./lib/queue-fill.js";
import { withClient } from "./lib/server.js";
import { descriptorLimit, openDescriptors, type ServiceProcess, startServiceProcess } from "./lib/service-process.js";
import {
  type BatchWorkload,
  disableAutovacuum,
  RAW_INSERT_TABLE,
  scriptFile,
  settle,
  statementOf,
} from "./lib/sql-workloads.js";
import { startStreamClients } from "./lib/sse-clients.js";
import type { ClientsReport } from "./lib/sse-clients-child.js";
import type { ServiceMemory } from "./lib/sse-service-child.js";
import { median, type Quantiles, quantiles, range, tpsRatiosByRound } from "./lib/stats.js";
import {
  type ListenQueueLimits,
  prepareListenQueues,
  type TcpCounters,
  tcpCounters,
  tcpCountersDelta,
} from "./lib/tcp-counters.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";

/*
 * Benchmark 7: the rush. A room opens at a set time; N people join at once
 * over HTTP, open their event streams at once, and the room opens and admits.
 * The real service (HTTP + scheduler, as `npm start` runs them) is alone in a
 * child process; the joins come from a load-generator process (64
 * connections, JSON bodies as a browser's fetch sends them), the streams from
 * client processes of their own (each stream is a descriptor on both sides).
 * Next to it, in the same run and interleaved: HTTP join throughput with a
 * JSON body against a raw INSERT, waitroom.join_many, graphile-worker's
 * add_jobs and pg-boss's insert (100 per call), and GET /healthz; then
 * admissions of 10,000 in one call.
 */

const TARGETS = {
  /** HTTP join (JSON body, 64 connections) / raw INSERT (pgbench, 8 clients), per second. */
  httpToRaw: 1.0,
  /** join_many(room, 100) rows per second / raw INSERT rows per second. */
  joinManyToRaw: 5,
  /** p99 of the first `state` after opening every stream at once: up to 10,000 streams, and beyond. */
  firstStateP99Ms: { upTo10k: 3_000, beyond: 6_000 },
  admitMs: 150,
  /** p99 from opens_at to every stream having seen the draw, at the largest size. */
  updateP99Ms: 1_000,
};

const PGBOSS_VERSION = (createRequire(import.meta.url)("pg-boss/package.json") as { version: string }).version;
const ROOM_SETTINGS = { idle_seconds: 86_400, claim_seconds: 3_600, session_seconds: 3_600 };
/** Descriptors a service holds besides its streams, with room to spare (see the notes). */
const DESCRIPTOR_MARGIN = 500;
const JOIN_CONNECTIONS = 64;
const PGBENCH_CLIENTS = 8;
const PGBENCH_THREADS = 2;
/** Callers of pg-boss's insert: as many as pgbench's clients. */
const PGBOSS_CALLERS = 8;
const BATCH = 100;
const THROUGHPUT_ROOM = "bench"; // the room bench/sql/join_many.sql joins
const JOIN_MANY = "waitroom.join_many(text, integer, text[], integer[], timestamptz, text[], integer)";
/** Per-client limits off (as startBenchApp has them by default): the load comes from one address. */
const SERVICE_ENV = { WAITROOM_RATE_LIMITS: "off" };
/** Streams per client process: well inside a process's descriptor limit. */
const STREAMS_PER_CLIENT_PROCESS = 5_000;
/** The instant every client process opens its streams, this far after the order is given. */
const OPEN_AHEAD_MS = 500;

type Plan = {
  /** "max": as many as the descriptor limit allows. */
  sizes: (number | "max")[];
  capacity: number;
  /** How long after the streams are open the room opens. */
  openingLeadMs: number;
  /** A stream without its first state this long after the opening order counts as failed. */
  openTimeoutMs: number;
  /** How long after opens_at a stream may take to see the draw before it counts as missed. */
  drawTimeoutMs: number;
  joinBoundSeconds: number;
  throughput: { rounds: number; secondsPerRun: number; warmupSeconds: number };
  admit: { size: number; rounds: number };
};
const PLANS: Record<Mode, Plan> = {
  // ≈ 4–5 min: two rushes (≈ 30–60 s each; the open and draw phases are bounded by their timeouts),
  // 7 workloads × 3 rounds × 5 s of throughput with maintenance between runs, 5 admissions of 10,000 and
  // 5 of their floor (a single round of either moved by 1.5× on this box).
  full: {
    sizes: [10_000, "max"],
    capacity: 1_000,
    openingLeadMs: 3_000,
    openTimeoutMs: 30_000,
    drawTimeoutMs: 15_000,
    joinBoundSeconds: 120,
    throughput: { rounds: 3, secondsPerRun: 5, warmupSeconds: 1 },
    admit: { size: 10_000, rounds: 5 },
  },
  quick: {
    sizes: [300],
    capacity: 100,
    openingLeadMs: 2_000,
    openTimeoutMs: 20_000,
    drawTimeoutMs: 10_000,
    joinBoundSeconds: 30,
    throughput: { rounds: 1, secondsPerRun: 1, warmupSeconds: 0 },
    admit: { size: 10_000, rounds: 1 },
  },
};

const WORKLOADS = ["raw", "join_many", "join_many_floor", "add_jobs", "pgboss", "http", "healthz"] as const;
type Workload = (typeof WORKLOADS)[number];

type CpuPerCall = { serviceMs: number; postgresMs: number | null; loadGeneratorMs: number };

/** CPU over a phase, in ms (all cores), and how busy the machine was, ours and everyone else's. */
type PhaseCpu = {
  serviceMs: number;
  postgresMs: number | null;
  clientsMs: number;
  busyPercent: number | null;
  /** Of all cores' time, how much the kernel took (system, irq, softirq: the connections' TCP work among it). */
  kernelPercent: number | null;
  /** Busy with processes that are not this run's: the shared machine's neighbours. */
  othersPercent: number | null;
};

type Throughput = {
  /** Rows per second (SQL and job queues) or requests per second (HTTP). */
  perSecond: number;
  callsPerSecond: number;
  /** Counted in the tables the calls write to, over the calls counted. */
  rowsPerCall: number | null;
  latencyP50Ms: number;
  latencyP99Ms: number;
  errors: number;
  errorKinds: Record<string, number>;
  cpu: CpuPerCall | null;
  /** join_many and its floor: PostgreSQL's CPU per ticket written, sampled while pgbench ran. */
  postgresMsPerRow: number | null;
};

export type RushWorkloadFigures = {
  what: string;
  /** False: the workload could not run here (join_many before it lands in sql/). */
  available: boolean;
  medianPerSecond: number;
  min: number;
  max: number;
  medianCallsPerSecond: number;
  rowsPerCall: number | null;
  medianLatencyP50Ms: number;
  medianLatencyP99Ms: number;
  vsRaw: { median: number; perRound: number[] };
  errors: number;
  rounds: (Throughput | null)[];
};

export type RushSizeFigures = {
  size: number;
  capacity: number;
  join: {
    joined: number;
    errors: number;
    errorKinds: Record<string, number>;
    seconds: number;
    perSecond: number;
    latencyP50Ms: number;
    latencyP99Ms: number;
    latencyMaxMs: number;
    cpu: CpuPerCall;
  };
  streams: {
    opened: number;
    clientProcesses: number;
    firstState: Quantiles;
    connect: Quantiles;
    /** How late the slowest client process began opening, and how long issuing its requests took. */
    lateMs: number;
    issueMs: number;
    failures: Record<string, number>;
    /** The same by why, with when they failed (from the opening order) and how many had a TCP connection. */
    failedBy: Array<{
      why: string;
      count: number;
      connected: number;
      firstMs: number;
      medianMs: number;
      lastMs: number;
    }>;
    endedAfterOpen: Record<string, number>;
    /** Service, PostgreSQL and stream clients' CPU over the opening, per stream opened. */
    serviceCpuMsPerStream: number;
    postgresCpuMsPerStream: number | null;
    clientsCpuMsPerStream: number;
    cpu: PhaseCpu;
    serviceDescriptors: number | null;
    /** The kernel's TCP counters over the opening (machine-wide; null without /proc). */
    tcp: TcpCounters | null;
  };
  memory: { before: ServiceMemory; after: ServiceMemory; rssPerStream: number; heapPerStream: number };
  opening: {
    /** From opens_at: the draw's transaction took the room (rooms.shuffled_at). */
    drawStartedMs: number | null;
    /** From opens_at to each stream's first sight of the draw (a moved state, or admitted). */
    update: Quantiles;
    /** The same from the draw's start: the part that is not the scheduler's wait. */
    updateFromDraw: Quantiles;
    /** From the draw's start to the first stream that saw it: the admitting transaction and its NOTIFY. */
    firstSeenFromDrawMs: number | null;
    /** The service's one position query for every ticket of the room, run alone afterwards (median of 3). */
    positionsQueryMs: number;
    /** From setting opens_at to every stream having seen the draw. */
    cpu: PhaseCpu;
    missed: number;
    /** Streams that showed a change before opens_at (none should). */
    movedEarly: number;
    admitted: number;
    /** When the draw had not started by the deadline: what its tick was doing then (null otherwise). */
    stall: string | null;
  } | null;
  errors: number;
};

export type RushFigures = {
  /** net.core.somaxconn during the run, and what it was before the run raised it (null: left as it was). */
  listenQueues: ListenQueueLimits;
  descriptorLimit: number | null;
  ceiling: number;
  workloads: Record<Workload, RushWorkloadFigures>;
  rounds: number;
  secondsPerRun: number;
  sizes: RushSizeFigures[];
  admit: {
    size: number;
    ms: number[];
    medianMs: number;
    admitted: number[];
    /** The same rows written by one plain statement on waitroom's tables (bench/sql/admit_floor.sql). */
    floorMs: number[];
    floorMedianMs: number;
    /** Median of per-round admit / floor. */
    toFloor: number;
  };
  /** What the HTTP join could reach here if it cost no more than its floors (null: a part was not measured). */
  httpJoinCeiling: HttpJoinCeiling | null;
  verdicts: Verdicts;
};

/**
 * The HTTP join's ceiling from this run's parts: every core busy, each join costing the service and the
 * load generator what a `/healthz` request costs them, and PostgreSQL what a ticket of join_many_floor
 * (100 a statement: cheaper per ticket than the service's smaller batches) costs it.
 */
type HttpJoinCeiling = {
  cores: number;
  serviceMs: number;
  loadGeneratorMs: number;
  postgresMsPerRow: number;
  perSecond: number;
  vsRaw: number;
};

type Verdict = { target: string; value: string; verdict: string; met: boolean | null };
type Verdicts = {
  httpToRaw: Verdict;
  joinManyToRaw: Verdict;
  firstState: Verdict[];
  admit: Verdict;
  update: Verdict;
};

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const formatLatency = (ms: number) => (Number.isNaN(ms) ? "—" : ms >= 1000 ? seconds(ms) : formatMs(ms));
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function kinds(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? "none" : entries.map(([kind, count]) => `${formatCount(count)} ${kind}`).join(", ");
}
const total = (counts: Record<string, number>) => Object.values(counts).reduce((sum, count) => sum + count, 0);

/** "met", or by how much it was missed, in the target's own unit; "not measured" when there is no figure. */
function atLeast(value: number, target: number, format: (v: number) => string): Verdict {
  const base = { target: `≥ ${format(target)}`, value: Number.isNaN(value) ? "—" : format(value) };
  if (Number.isNaN(value)) return { ...base, verdict: "not measured", met: null };
  return value >= target
    ? { ...base, verdict: "met", met: true }
    : { ...base, verdict: `missed by ${format(target - value)}`, met: false };
}
function below(value: number, target: number, format: (v: number) => string): Verdict {
  const base = { target: `< ${format(target)}`, value: Number.isNaN(value) ? "—" : format(value) };
  if (Number.isNaN(value)) return { ...base, verdict: "not measured", met: null };
  return value < target
    ? { ...base, verdict: "met", met: true }
    : { ...base, verdict: `missed by ${format(value - target)}`, met: false };
}

async function count(control: pg.Client, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await control.query<{ count: string }>(sql, params);
  return Number(rows[0]?.count ?? 0);
}

/* ------------------------------------------------------------------ throughput, interleaved */

// join_many and its floor write the same rows.
const THROUGHPUT_TICKETS = `select count(*) from waitroom.tickets where room_id = '${THROUGHPUT_ROOM}'`;
const ROWS_OF: Record<"raw" | BatchWorkload, string> = {
  raw: "select count(*) from raw_insert",
  join_many: THROUGHPUT_TICKETS,
  join_many_floor: THROUGHPUT_TICKETS,
  add_jobs:
    "select count(*) from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'noop'",
};

const DROP_NOOP_JOBS =
  "delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'noop'";

async function measureThroughput(
  context: BenchContext,
  databaseUrl: string,
  control: pg.Client,
  plan: Plan["throughput"],
): Promise<{ rounds: Record<Workload, (Throughput | null)[]>; joinManyAvailable: boolean }> {
  const { server, pgbench, signal, say } = context;
  const joinManyAvailable =
    (await count(control, "select count(*) from pg_proc where oid = to_regprocedure($1)", [JOIN_MANY])) > 0;
  if (!joinManyAvailable) say(`${JOIN_MANY} is not in sql/ yet: its workload is reported as not available`);
  await control.query("select waitroom.create_room($1, 1000, $2)", [
    THROUGHPUT_ROOM,
    // Nobody is admitted during the runs: joins only, as before an opening.
    { ...ROOM_SETTINGS, opens_at: new Date(Date.now() + 86_400_000).toISOString() },
  ]);
  await control.query(RAW_INSERT_TABLE);
  const pgboss = await startPgBoss(databaseUrl, "bench", PGBOSS_CALLERS);
  await disableAutovacuum(control);
  const postmasterPid = await server.postmasterPid();
  const service = await startServiceProcess({ databaseUrl, env: SERVICE_ENV, service: { worker: true }, signal });
  let runNumber = 0;
  try {
    const sqlRun = async (workload: "raw" | BatchWorkload, seconds: number): Promise<Throughput> => {
      const rowsBefore = await count(control, ROWS_OF[workload]);
      const sampling =
        workload === "join_many" || workload === "join_many_floor"
          ? postgresCpuPerLedgerRow(control, postmasterPid, seconds)
          : Promise.resolve(null);
      const result = await runPgbench({
        pgbench,
        databaseUrl,
        scriptFile: scriptFile(workload),
        clients: PGBENCH_CLIENTS,
        threads: PGBENCH_THREADS,
        seconds,
        workDir: server.workDir,
        label: `rush-${workload}-${++runNumber}`,
        signal,
      });
      const rowsPerCall = ((await count(control, ROWS_OF[workload])) - rowsBefore) / result.transactions;
      // No worker runs `noop`, and the service's graphile-worker scans every available job of a task it
      // does not know at each poll: left queued, the jobs cost PostgreSQL 0.3–0.5 of a core for the rest
      // of the phase (bench/notes/http-join.md), charged to whatever runs next.
      if (workload === "add_jobs") await control.query(DROP_NOOP_JOBS);
      return {
        perSecond: result.tps * rowsPerCall,
        callsPerSecond: result.tps,
        rowsPerCall,
        latencyP50Ms: result.latencyP50Ms,
        latencyP99Ms: result.latencyP99Ms,
        errors: result.failedTransactions,
        errorKinds: result.failedTransactions > 0 ? { "failed transactions": result.failedTransactions } : {},
        cpu: null,
        postgresMsPerRow: await sampling,
      };
    };
    const pgbossRun = async (seconds: number): Promise<Throughput> => {
      const result = await runPgBossInserts({ pgboss, batch: BATCH, callers: PGBOSS_CALLERS, seconds, signal });
      const callsPerSecond = result.calls / (result.elapsedMs / 1000);
      return {
        perSecond: result.rows / (result.elapsedMs / 1000),
        callsPerSecond,
        rowsPerCall: result.rows / Math.max(1, result.calls),
        latencyP50Ms: result.latencyP50Ms,
        latencyP99Ms: result.latencyP99Ms,
        errors: result.errors,
        errorKinds: result.errors > 0 ? { "failed calls": result.errors } : {},
        cpu: null,
        postgresMsPerRow: null,
      };
    };
    const httpRun = async (healthz: boolean, seconds: number, warmupSeconds: number): Promise<Throughput> => {
      const result = await runHttpLoad({
        url: service.url,
        path: healthz ? "/healthz" : `/v1/rooms/${THROUGHPUT_ROOM}/tickets`,
        method: healthz ? "GET" : "POST",
        ...(healthz ? {} : { jsonBody: "{}" }),
        expectStatus: healthz ? 200 : 202,
        concurrency: JOIN_CONNECTIONS,
        warmupSeconds,
        seconds,
        signal,
        postmasterPid,
        servicePid: service.pid,
      });
      return {
        perSecond: result.requestsPerSecond,
        callsPerSecond: result.requestsPerSecond,
        rowsPerCall: null,
        latencyP50Ms: result.latencyP50Ms,
        latencyP99Ms: result.latencyP99Ms,
        errors: result.errors,
        errorKinds: result.errorKinds,
        cpu: cpuPerCall(result),
        postgresMsPerRow: null,
      };
    };
    const run = (workload: Workload, seconds: number, warmupSeconds: number): Promise<Throughput | null> => {
      if (workload === "join_many" && !joinManyAvailable) return Promise.resolve(null);
      if (workload === "pgboss") return pgbossRun(seconds);
      if (workload === "http" || workload === "healthz") return httpRun(workload === "healthz", seconds, warmupSeconds);
      return sqlRun(workload, seconds);
    };
    if (plan.warmupSeconds > 0) {
      for (const workload of WORKLOADS) {
        say(`warm-up   ${workload} (${plan.warmupSeconds} s, not counted)`);
        await run(workload, plan.warmupSeconds, 0);
      }
    }
    const rounds = await runInterleaved<Workload, Throughput | null>({
      workloads: WORKLOADS,
      rounds: plan.rounds,
      measure: async (workload) => {
        await settle(control);
        return run(workload, plan.secondsPerRun, Math.min(1, plan.secondsPerRun / 2));
      },
      onResult: ({ workload, round, rounds, result }) =>
        say(
          `round ${round}/${rounds}  ${workload.padEnd(15)} ` +
            (result === null
              ? "not available"
              : `${formatCount(result.perSecond).padStart(8)} /s` +
                `  p50 ${formatMs(result.latencyP50Ms)}  p99 ${formatMs(result.latencyP99Ms)}` +
                (result.errors > 0 ? `  ${result.errors} errors (${kinds(result.errorKinds)})` : "")),
        ),
    });
    return { rounds, joinManyAvailable };
  } finally {
    await service.stop();
    await pgboss.stop();
  }
}

/**
 * PostgreSQL's CPU per ledger row written (one per ticket, for join_many and its floor) over the middle of
 * a pgbench run: its backends exit with it, so CPU read after it would miss theirs. Sampled from 1 s in
 * to 1 s before the end; null when the run is too short or the server's processes cannot be read.
 */
async function postgresCpuPerLedgerRow(
  control: pg.Client,
  postmasterPid: number | null,
  seconds: number,
): Promise<number | null> {
  if (postmasterPid === null || seconds < 3) return null;
  const lastId = () => count(control, "select coalesce(max(id), 0) as count from waitroom.events");
  await sleep(1000);
  const [idBefore, cpuBefore] = [await lastId(), await childrenCpuMs(postmasterPid)];
  await sleep((seconds - 2) * 1000);
  const cpuAfter = await childrenCpuMs(postmasterPid);
  const rows = (await lastId()) - idBefore;
  return rows > 0 ? childrenCpuDeltaMs(cpuBefore, cpuAfter) / rows : null;
}

/** The median over a workload's measured rounds of a figure some rounds have (null: none has it). */
function medianOfRounds(w: RushWorkloadFigures, get: (round: Throughput) => number | null): number | null {
  const values = w.rounds
    .map((round) => (round === null ? null : get(round)))
    .filter((value): value is number => value !== null && Number.isFinite(value));
  return values.length > 0 ? median(values) : null;
}

function httpJoinCeilingOf(workloads: Record<Workload, RushWorkloadFigures>): HttpJoinCeiling | null {
  const serviceMs = medianOfRounds(workloads.healthz, (round) => round.cpu?.serviceMs ?? null);
  const loadGeneratorMs = medianOfRounds(workloads.healthz, (round) => round.cpu?.loadGeneratorMs ?? null);
  const postgresMsPerRow = medianOfRounds(workloads.join_many_floor, (round) => round.postgresMsPerRow);
  if (serviceMs === null || loadGeneratorMs === null || postgresMsPerRow === null) return null;
  const cores = availableParallelism();
  const perSecond = (cores * 1000) / (serviceMs + loadGeneratorMs + postgresMsPerRow);
  return {
    cores,
    serviceMs,
    loadGeneratorMs,
    postgresMsPerRow,
    perSecond,
    vsRaw: perSecond / workloads.raw.medianPerSecond,
  };
}

function cpuPerCall(result: HttpLoadRun): CpuPerCall {
  return {
    serviceMs: result.serverCpuMsPerRequest,
    postgresMs: result.postgresCpuMsPerRequest,
    loadGeneratorMs: result.loadGeneratorCpuMsPerRequest,
  };
}

function summarise(what: string, rounds: (Throughput | null)[], rawRounds: (Throughput | null)[]): RushWorkloadFigures {
  const measured = rounds.filter((round): round is Throughput => round !== null);
  if (measured.length === 0) {
    return {
      what,
      available: false,
      medianPerSecond: Number.NaN,
      min: Number.NaN,
      max: Number.NaN,
      medianCallsPerSecond: Number.NaN,
      rowsPerCall: null,
      medianLatencyP50Ms: Number.NaN,
      medianLatencyP99Ms: Number.NaN,
      vsRaw: { median: Number.NaN, perRound: [] },
      errors: 0,
      rounds,
    };
  }
  const perSecond = measured.map((round) => round.perSecond);
  const { min, max } = range(perSecond);
  const perRound = tpsRatiosByRound(
    rounds.map((round) => ({ tps: round?.perSecond ?? Number.NaN })),
    rawRounds.map((round) => ({ tps: round?.perSecond ?? Number.NaN })),
  );
  const rowsPerCall = measured.map((round) => round.rowsPerCall).filter((rows): rows is number => rows !== null);
  return {
    what,
    available: true,
    medianPerSecond: median(perSecond),
    min,
    max,
    medianCallsPerSecond: median(measured.map((round) => round.callsPerSecond)),
    rowsPerCall: rowsPerCall.length > 0 ? median(rowsPerCall) : null,
    medianLatencyP50Ms: median(measured.map((round) => round.latencyP50Ms)),
    medianLatencyP99Ms: median(measured.map((round) => round.latencyP99Ms)),
    vsRaw: { median: median(perRound.filter((ratio) => !Number.isNaN(ratio))), perRound },
    errors: measured.reduce((sum, round) => sum + round.errors, 0),
    rounds,
  };
}

/* ------------------------------------------------------------------ the rush */

type CpuSnapshot = {
  serviceMs: number;
  postgres: Map<number, number> | null;
  clientsMs: number;
  benchmarkMs: number;
  machine: MachineCpu | null;
};

async function cpuNow(service: ServiceProcess, clientPids: readonly number[], postmasterPid: number | null) {
  const clients = await Promise.all(clientPids.map((pid) => processCpuMs(pid)));
  const own = process.cpuUsage();
  return {
    serviceMs: (await processCpuMs(service.pid))?.ms ?? Number.NaN,
    postgres: postmasterPid === null ? null : await childrenCpuMs(postmasterPid),
    clientsMs: clients.reduce((sum, cpu) => sum + (cpu?.ms ?? 0), 0),
    benchmarkMs: (own.user + own.system) / 1000,
    machine: await machineCpu(),
  } satisfies CpuSnapshot;
}

/** Who used the machine's cores over a phase: ours (service, PostgreSQL, clients, this process) and the rest. */
function cpuSplit(before: CpuSnapshot, after: CpuSnapshot): PhaseCpu {
  const serviceMs = after.serviceMs - before.serviceMs;
  const postgresMs = before.postgres && after.postgres ? childrenCpuDeltaMs(before.postgres, after.postgres) : null;
  const clientsMs = after.clientsMs - before.clientsMs;
  const ours = serviceMs + (postgresMs ?? 0) + clientsMs + (after.benchmarkMs - before.benchmarkMs);
  if (!before.machine || !after.machine)
    return { serviceMs, postgresMs, clientsMs, busyPercent: null, kernelPercent: null, othersPercent: null };
  const totalMs = after.machine.totalMs - before.machine.totalMs;
  const busyMs = after.machine.busyMs - before.machine.busyMs;
  return {
    serviceMs,
    postgresMs,
    clientsMs,
    busyPercent: (100 * busyMs) / totalMs,
    kernelPercent: (100 * (after.machine.kernelMs - before.machine.kernelMs)) / totalMs,
    othersPercent: Math.max(0, (100 * (busyMs - ours)) / totalMs),
  };
}

async function runRush(
  context: BenchContext,
  databaseUrl: string,
  control: pg.Client,
  size: number,
  plan: Plan,
): Promise<RushSizeFigures> {
  const { server, signal, say } = context;
  const room = `rush-${size}`;
  const ticketsFile = join(server.workDir, `${room}.tickets`);
  // Far ahead for now: the opening is brought to a few seconds ahead once every stream is open (see the notes).
  await control.query("select waitroom.create_room($1, $2, $3)", [
    room,
    plan.capacity,
    { ...ROOM_SETTINGS, opens_at: new Date(Date.now() + 3_600_000).toISOString() },
  ]);
  const postmasterPid = await server.postmasterPid();
  const profileDir = process.env.BENCH_RUSH_CPU_PROF;
  const service = await startServiceProcess({
    databaseUrl,
    env: SERVICE_ENV,
    service: { worker: true },
    execArgv: profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [],
    signal,
  });
  let clients: Awaited<ReturnType<typeof startStreamClients>> | undefined;
  try {
    // 1. Everyone joins at once: exactly `size` requests over 64 connections, answers kept for the streams.
    const joins = await runHttpLoad({
      url: service.url,
      path: `/v1/rooms/${room}/tickets`,
      method: "POST",
      jsonBody: "{}",
      expectStatus: 202,
      concurrency: JOIN_CONNECTIONS,
      warmupSeconds: 0,
      seconds: plan.joinBoundSeconds,
      requests: size,
      answersFile: ticketsFile,
      signal,
      postmasterPid,
      servicePid: service.pid,
    });
    const joinSeconds = joins.elapsedMs / 1000;
    say(
      `${formatCount(size)}: ${formatCount(joins.requests)} joins in ${joinSeconds.toFixed(1)} s ` +
        `(${formatCount(joins.requests / joinSeconds)}/s, p99 ${formatMs(joins.latencyP99Ms)}), ${joins.errors} errors`,
    );

    // Statistics, as autovacuum would have gathered them before an opening minutes after the joins: on a
    // tickets table that has none, the draw's plan is a nested loop that takes tens of seconds (see the notes).
    await control.query("analyze waitroom.tickets");

    // 2. Everyone opens a stream at once.
    const before = await service.memory();
    clients = await startStreamClients({
      url: service.url,
      ticketsFile,
      tickets: joins.requests,
      perProcess: STREAMS_PER_CLIENT_PROCESS,
      openTimeoutMs: plan.openTimeoutMs,
      signal,
    });
    const cpuBefore = await cpuNow(service, clients.pids, postmasterPid);
    const tcpBefore = await tcpCounters();
    const at = Date.now() + OPEN_AHEAD_MS;
    await clients.open(at, plan.openTimeoutMs + 10_000);
    const cpuAfter = await cpuNow(service, clients.pids, postmasterPid);
    const openingCpu = cpuSplit(cpuBefore, cpuAfter);
    const tcp = tcpCountersDelta(tcpBefore, await tcpCounters());
    const serviceDescriptors = await openDescriptors(service.pid);
    await sleep(500);
    const after = await service.memory();
    const opened = await clients.report();
    const openedCount = opened.firstStateMs.length;
    const firstState = quantiles(opened.firstStateMs);
    say(
      `${formatCount(size)}: ${formatCount(openedCount)} streams open, first state p50 ${formatLatency(firstState.p50)}, ` +
        `p99 ${formatLatency(firstState.p99)}, last ${formatLatency(firstState.max)}; failed: ${kinds(opened.failures)}` +
        (tcp
          ? `; listen-queue overflows ${formatCount(tcp.ListenOverflows)}, SYN retransmits ${formatCount(tcp.TCPSynRetrans)}`
          : "") +
        `; machine busy ${busy(openingCpu)}`,
    );

    // 3. The room opens a few seconds from now; the scheduler draws and admits at opens_at.
    let opening: RushSizeFigures["opening"] = null;
    let report: ClientsReport = opened;
    if (openedCount > 0) {
      const drawCpuBefore = await cpuNow(service, clients.pids, postmasterPid);
      const { rows } = await control.query<{ opens_at_ms: number }>(
        `select extract(epoch from (waitroom.configure_room($1, jsonb_build_object('opens_at',
                  now() + $2 * interval '1 millisecond'))).opens_at) * 1000 as opens_at_ms`,
        [room, plan.openingLeadMs],
      );
      const opensAtMs = Number(rows[0]?.opens_at_ms);
      const untilOpening = opensAtMs - Date.now();
      await clients.settled(untilOpening + plan.drawTimeoutMs);
      const drawCpu = cpuSplit(drawCpuBefore, await cpuNow(service, clients.pids, postmasterPid));
      report = await clients.report();
      const { rows: drawn } = await control.query<{ shuffled_ms: number | null; admitted: string }>(
        `select extract(epoch from r.shuffled_at) * 1000 as shuffled_ms,
                (select count(*) from waitroom.tickets t where t.room_id = r.id and t.status = 'admitted') as admitted
           from waitroom.rooms r where r.id = $1`,
        [room],
      );
      const shuffledMs = drawn[0]?.shuffled_ms === null ? null : Number(drawn[0]?.shuffled_ms);
      const stall = shuffledMs === null ? await tickStall(control, room, opensAtMs) : null;
      const seen = report.changedAt.filter((changedAt): changedAt is number => changedAt !== null);
      opening = {
        drawStartedMs: shuffledMs === null ? null : shuffledMs - opensAtMs,
        update: quantiles(seen.map((changedAt) => changedAt - opensAtMs)),
        updateFromDraw: quantiles(shuffledMs === null ? [] : seen.map((changedAt) => changedAt - shuffledMs)),
        firstSeenFromDrawMs: shuffledMs === null || seen.length === 0 ? null : Math.min(...seen) - shuffledMs,
        positionsQueryMs: await positionsQueryMs(control, room),
        cpu: drawCpu,
        missed: report.changedAt.length - seen.length - total(report.endedAfterOpen),
        movedEarly: seen.filter((changedAt) => changedAt < opensAtMs).length,
        admitted: Number(drawn[0]?.admitted ?? 0),
        stall,
      };
      say(
        `${formatCount(size)}: draw started ${opening.drawStartedMs === null ? "never" : `${formatMs(opening.drawStartedMs)} after opens_at`}; ` +
          `every stream saw it: p50 ${formatLatency(opening.update.p50)}, p99 ${formatLatency(opening.update.p99)}, ` +
          `last ${formatLatency(opening.update.max)} after opens_at; ${opening.missed} missed; machine busy ${busy(drawCpu)}` +
          (stall ? `; ${stall}` : ""),
      );
    }

    const streamErrors = total(report.failures) + total(report.endedAfterOpen);
    return {
      size,
      capacity: plan.capacity,
      join: {
        joined: joins.requests,
        errors: joins.errors,
        errorKinds: joins.errorKinds,
        seconds: joinSeconds,
        perSecond: joins.requests / joinSeconds,
        latencyP50Ms: joins.latencyP50Ms,
        latencyP99Ms: joins.latencyP99Ms,
        latencyMaxMs: joins.latencyMaxMs,
        cpu: cpuPerCall(joins),
      },
      streams: {
        opened: openedCount,
        clientProcesses: Math.ceil(joins.requests / STREAMS_PER_CLIENT_PROCESS),
        firstState,
        connect: quantiles(opened.connectMs.filter((ms) => !Number.isNaN(ms))),
        lateMs: opened.lateMs,
        issueMs: opened.issueMs,
        failures: report.failures,
        failedBy: failedBy(report),
        endedAfterOpen: report.endedAfterOpen,
        serviceCpuMsPerStream: openingCpu.serviceMs / Math.max(1, openedCount),
        postgresCpuMsPerStream:
          openingCpu.postgresMs === null ? null : openingCpu.postgresMs / Math.max(1, openedCount),
        clientsCpuMsPerStream: openingCpu.clientsMs / Math.max(1, openedCount),
        cpu: openingCpu,
        serviceDescriptors,
        tcp,
      },
      memory: {
        before,
        after,
        rssPerStream: (after.rss - before.rss) / Math.max(1, openedCount),
        heapPerStream: (after.heapUsed - before.heapUsed) / Math.max(1, openedCount),
      },
      opening,
      errors: joins.errors + streamErrors + (opening?.missed ?? 0) + (size - joins.requests - joins.errors),
    };
  } finally {
    await clients?.close();
    await service.stop();
    await control.query("select waitroom.delete_room($1)", [room]).catch(() => {});
    await rm(ticketsFile, { force: true });
  }
}

/** What one re-read of a room's streams costs the database: every ticket of the room in one query. */
async function positionsQueryMs(control: pg.Client, room: string): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const { ms } = await timed(() =>
      control.query(
        "select count(*) from waitroom.positions($1, array(select id from waitroom.tickets where room_id = $1))",
        [room],
      ),
    );
    runs.push(ms);
  }
  return median(runs);
}

/**
 * The room's admission tick, read when the draw has not started by the deadline: is the job due, taken
 * by a worker, and is its statement running in PostgreSQL (and waiting for what)? Facts for the report.
 */
async function tickStall(control: pg.Client, room: string, opensAtMs: number): Promise<string> {
  const { rows } = await control.query<{
    run_at_ms: number;
    locked_at_ms: number | null;
    attempts: number;
    last_error: string | null;
  }>(
    `select extract(epoch from j.run_at) * 1000 as run_at_ms, extract(epoch from j.locked_at) * 1000 as locked_at_ms,
            j.attempts, j.last_error
       from graphile_worker._private_jobs j
       join graphile_worker._private_tasks t on t.id = j.task_id
      where t.identifier = 'admit' and j.payload ->> 'room' = $1
      order by j.run_at`,
    [room],
  );
  const { rows: backends } = await control.query<{ state: string; wait: string | null; running_ms: number }>(
    `select state, wait_event_type || '/' || wait_event as wait,
            extract(epoch from clock_timestamp() - query_start) * 1000 as running_ms
       from pg_stat_activity
      where query like '%waitroom.tick%' and pid <> pg_backend_pid()`,
  );
  const after = (ms: number) => `${formatLatency(ms - opensAtMs)} after opens_at`;
  const jobs = rows.map(
    (job) =>
      `tick due ${after(Number(job.run_at_ms))}, ` +
      (job.locked_at_ms === null ? "not taken by a worker" : `taken ${after(Number(job.locked_at_ms))}`) +
      ` (attempt ${job.attempts}${job.last_error ? `, last error: ${job.last_error.slice(0, 80)}` : ""})`,
  );
  const statements = backends.map(
    (b) =>
      `its statement ${b.state} for ${formatLatency(Number(b.running_ms))}${b.wait ? `, waiting on ${b.wait}` : ""}`,
  );
  return [
    "draw not started by the deadline",
    ...(jobs.length > 0 ? jobs : ["no tick job found"]),
    ...(statements.length > 0 ? statements : ["no tick statement in pg_stat_activity"]),
  ].join("; ");
}

function failedBy(report: ClientsReport): RushSizeFigures["streams"]["failedBy"] {
  const byWhy = new Map<string, { atMs: number[]; connected: number }>();
  for (const failed of report.failed) {
    const entry = byWhy.get(failed.why) ?? { atMs: [], connected: 0 };
    entry.atMs.push(failed.atMs);
    if (failed.connected) entry.connected++;
    byWhy.set(failed.why, entry);
  }
  return [...byWhy].map(([why, { atMs, connected }]) => {
    const { min, max } = range(atMs);
    return { why, count: atMs.length, connected, firstMs: min, medianMs: median(atMs), lastMs: max };
  });
}

/* ------------------------------------------------------------------ admission of 10,000 */

async function measureAdmits(context: BenchContext, databaseUrl: string, control: pg.Client, plan: Plan["admit"]) {
  const ms: number[] = [];
  const admitted: number[] = [];
  const floorMs: number[] = [];
  // Each round times admit and its floor on a room of its own, in alternating order.
  const timeOne = async (kind: "admit" | "floor", round: number) => {
    const room = `rush-${kind}-${round}`;
    await control.query("select waitroom.create_room($1, $2, $3)", [room, plan.size, ROOM_SETTINGS]);
    await fillQueue(databaseUrl, room, plan.size, Number.POSITIVE_INFINITY, context.signal);
    await settle(control);
    const timed = kind === "admit" ? await timeAdmit(control, room) : await timeAdmitFloor(control, room, plan.size);
    context.say(`${kind} ${round}/${plan.rounds}: ${formatCount(timed.admitted)} in ${formatMs(timed.ms)}`);
    await control.query("select waitroom.delete_room($1)", [room]);
    if (kind === "floor") floorMs.push(timed.ms);
    else {
      ms.push(timed.ms);
      admitted.push(timed.admitted);
    }
  };
  for (let round = 1; round <= plan.rounds; round++) {
    for (const kind of round % 2 === 1 ? (["admit", "floor"] as const) : (["floor", "admit"] as const)) {
      await timeOne(kind, round);
    }
  }
  return {
    size: plan.size,
    ms,
    medianMs: median(ms),
    admitted,
    floorMs,
    floorMedianMs: median(floorMs),
    toFloor: median(ms.map((admitMs, index) => admitMs / (floorMs[index] as number))),
  };
}

/* ------------------------------------------------------------------ report */

function verdictsOf(figures: Omit<RushFigures, "verdicts">): Verdicts {
  const { workloads, sizes } = figures;
  const firstState = sizes.map((s) => {
    const target = s.size <= 10_000 ? TARGETS.firstStateP99Ms.upTo10k : TARGETS.firstStateP99Ms.beyond;
    const verdict = below(s.streams.firstState.p99, target, formatLatency);
    // Streams that never opened are later than any percentile of those that did.
    const never = s.size - s.streams.opened;
    return never > 0 ? { ...verdict, verdict: `missed: ${formatCount(never)} never opened`, met: false } : verdict;
  });
  const largest = sizes.at(-1);
  const update = (opening: NonNullable<RushSizeFigures["opening"]>): Verdict => {
    const verdict = below(opening.update.p99, TARGETS.updateP99Ms, formatLatency);
    if (opening.drawStartedMs === null) return { ...verdict, verdict: "missed: the draw did not start", met: false };
    if (opening.missed > 0)
      return { ...verdict, verdict: `missed: ${formatCount(opening.missed)} never saw it`, met: false };
    return verdict;
  };
  return {
    httpToRaw: figures.httpJoinCeiling
      ? beside(
          atLeast(workloads.http.vsRaw.median, TARGETS.httpToRaw, formatRatio),
          "ceiling from its floors",
          formatRatio(figures.httpJoinCeiling.vsRaw),
        )
      : atLeast(workloads.http.vsRaw.median, TARGETS.httpToRaw, formatRatio),
    joinManyToRaw: workloads.join_many.available
      ? beside(
          atLeast(workloads.join_many.vsRaw.median, TARGETS.joinManyToRaw, formatRatio),
          "its rows alone",
          formatRatio(workloads.join_many_floor.vsRaw.median),
        )
      : { target: `≥ ${formatRatio(TARGETS.joinManyToRaw)}`, value: "—", verdict: "not available", met: null },
    firstState,
    admit: beside(
      below(figures.admit.medianMs, TARGETS.admitMs, formatMs),
      "its rows alone",
      formatMs(figures.admit.floorMedianMs),
    ),
    update: largest?.opening
      ? update(largest.opening)
      : { target: `< ${formatLatency(TARGETS.updateP99Ms)}`, value: "—", verdict: "not measured", met: null },
  };
}

/** A measured value beside the floor under it in the same run (what its rows, or its parts, cost alone). */
const beside = (verdict: Verdict, floor: string, value: string): Verdict => ({
  ...verdict,
  value: `${verdict.value} (${floor}: ${value})`,
});

const verdictCell = (v: Verdict) => (v.met === false ? `**${v.verdict}**` : v.verdict);

function verdictRows(figures: RushFigures, show: (v: Verdict) => string = (v) => v.verdict): string[][] {
  const { verdicts: v, sizes } = figures;
  const row = (what: string, verdict: Verdict) => [what, verdict.target, verdict.value, show(verdict)];
  return [
    row(`HTTP join (JSON body, ${JOIN_CONNECTIONS} connections) / raw INSERT`, v.httpToRaw),
    row(`join_many(${BATCH}) rows / raw INSERT rows`, v.joinManyToRaw),
    ...sizes.map((s, index) =>
      row(`first state p99, ${formatCount(s.size)} streams at once`, v.firstState[index] as Verdict),
    ),
    row(`admit of ${formatCount(figures.admit.size)} in one call (median)`, v.admit),
    row(
      `opens_at → every stream saw the draw, p99 (${formatCount(sizes.at(-1)?.streams.opened ?? 0)} streams)`,
      v.update,
    ),
  ];
}

function throughputCells(w: RushWorkloadFigures): string[] {
  if (!w.available) return ["not available", "—", "—", "—", "—", "—", "—"];
  return [
    formatCount(w.medianPerSecond),
    formatRatio(w.vsRaw.median),
    formatCount(w.medianCallsPerSecond),
    w.rowsPerCall === null ? "—" : w.rowsPerCall.toFixed(w.rowsPerCall === Math.round(w.rowsPerCall) ? 0 : 2),
    formatMs(w.medianLatencyP50Ms),
    formatMs(w.medianLatencyP99Ms),
    `${formatCount(w.min)}–${formatCount(w.max)}`,
  ];
}

const THROUGHPUT_HEADER = [
  "workload",
  "rows or requests / s",
  "vs raw",
  "calls / s",
  "rows / call",
  "p50",
  "p99",
  "min–max",
];

function sizeRows(figures: RushFigures): string[][] {
  const raw = figures.workloads.raw.medianPerSecond;
  return figures.sizes.map((s) => [
    formatCount(s.size),
    formatCount(s.join.perSecond),
    formatRatio(s.join.perSecond / raw),
    formatLatency(s.join.latencyP99Ms),
    `${formatCount(s.streams.opened)} / ${formatCount(s.join.joined)}`,
    formatLatency(s.streams.firstState.p50),
    formatLatency(s.streams.firstState.p99),
    formatLatency(s.streams.firstState.max),
    s.opening ? formatLatency(s.opening.update.p50) : "—",
    s.opening ? formatLatency(s.opening.update.p99) : "—",
    s.opening ? formatLatency(s.opening.update.max) : "—",
    `${kb(s.memory.rssPerStream)} (${kb(s.memory.heapPerStream)})`,
    formatCount(s.errors),
  ]);
}

const SIZE_HEADER = [
  "streams",
  "joins / s",
  "vs raw",
  "join p99",
  "opened",
  "first state p50",
  "p99",
  "last",
  "draw seen p50",
  "p99",
  "last",
  "RSS (heap) / stream",
  "errors",
];

const roundsOf = (figures: RushFigures) =>
  `${figures.rounds} round${figures.rounds === 1 ? "" : "s"} × ${figures.secondsPerRun} s`;
const busy = (cpu: PhaseCpu) =>
  cpu.busyPercent === null || cpu.othersPercent === null || cpu.kernelPercent === null
    ? "n/a"
    : `${Math.round(cpu.busyPercent)} % (kernel ${Math.round(cpu.kernelPercent)} %, others ${Math.round(cpu.othersPercent)} %)`;
const ms3 = (ms: number | null) => (ms === null || Number.isNaN(ms) ? "n/a" : `${ms.toFixed(3)} ms`);

/** Where each size's time went: the join and open phases' CPU and the kernel's view of the connections. */
function openingTable(figures: RushFigures): string {
  return markdownTable(
    [
      "streams",
      "CPU / join: service · PostgreSQL · load generator",
      "client processes",
      "TCP connect p50 · p99 · last",
      "listen-queue overflows · SYN retransmits",
      "CPU / stream opened: service · PostgreSQL · clients",
      "service descriptors at the peak",
      "service RSS",
      "machine busy while opening",
    ],
    figures.sizes.map((s) => [
      formatCount(s.size),
      `${ms3(s.join.cpu.serviceMs)} · ${ms3(s.join.cpu.postgresMs)} · ${ms3(s.join.cpu.loadGeneratorMs)}`,
      String(s.streams.clientProcesses),
      `${formatLatency(s.streams.connect.p50)} · ${formatLatency(s.streams.connect.p99)} · ${formatLatency(s.streams.connect.max)}`,
      s.streams.tcp === null
        ? "n/a"
        : `${formatCount(s.streams.tcp.ListenOverflows)} · ${formatCount(s.streams.tcp.TCPSynRetrans)}`,
      `${ms3(s.streams.serviceCpuMsPerStream)} · ${ms3(s.streams.postgresCpuMsPerStream)} · ${ms3(s.streams.clientsCpuMsPerStream)}`,
      s.streams.serviceDescriptors === null ? "n/a" : formatCount(s.streams.serviceDescriptors),
      `${mb(s.memory.before.rss)} → ${mb(s.memory.after.rss)}`,
      busy(s.streams.cpu),
    ]),
  );
}

function drawTable(figures: RushFigures): string {
  return markdownTable(
    [
      "streams",
      "admitted",
      "draw started after opens_at",
      "draw → first stream saw it",
      "draw → seen p50 · p99 · last",
      "the position query alone",
      "machine busy from opens_at set to all seen",
    ],
    figures.sizes.map((s) => {
      const o = s.opening;
      if (!o) return [formatCount(s.size), "—", "—", "—", "—", "—", "—"];
      return [
        formatCount(s.size),
        formatCount(o.admitted),
        o.drawStartedMs === null ? "did not start" : formatLatency(o.drawStartedMs),
        o.firstSeenFromDrawMs === null ? "—" : formatLatency(o.firstSeenFromDrawMs),
        `${formatLatency(o.updateFromDraw.p50)} · ${formatLatency(o.updateFromDraw.p99)} · ${formatLatency(o.updateFromDraw.max)}`,
        formatLatency(o.positionsQueryMs),
        busy(o.cpu),
      ];
    }),
  );
}

function consoleReport(figures: RushFigures): string {
  return [
    `Rush — throughput (${roundsOf(figures)}, interleaved, medians; pgbench ${PGBENCH_CLIENTS} clients, HTTP ${JOIN_CONNECTIONS} connections)`,
    textTable(
      THROUGHPUT_HEADER,
      WORKLOADS.map((workload) => [workload, ...throughputCells(figures.workloads[workload])]),
    ),
    `Rush — N join, open their streams at once, the room opens (capacity ${formatCount(figures.sizes[0]?.capacity ?? 0)}); ` +
      `admit of ${formatCount(figures.admit.size)}: ${formatMs(figures.admit.medianMs)}`,
    textTable(SIZE_HEADER, sizeRows(figures)),
    textTable(["target", "wanted", "measured", "verdict"], verdictRows(figures)),
  ].join("\n");
}

function errorLines(figures: RushFigures, plan: Plan): string[] {
  const lines: string[] = [];
  for (const workload of WORKLOADS) {
    const w = figures.workloads[workload];
    if (w.errors > 0) {
      const all = w.rounds.reduce<Record<string, number>>((into, round) => {
        for (const [kind, n] of Object.entries(round?.errorKinds ?? {})) into[kind] = (into[kind] ?? 0) + n;
        return into;
      }, {});
      lines.push(`- throughput, ${workload}: ${kinds(all)}`);
    }
  }
  for (const s of figures.sizes) {
    const parts = [
      s.join.errors > 0 ? `joins: ${kinds(s.join.errorKinds)}` : null,
      s.streams.failedBy.length > 0
        ? `streams that never opened: ${s.streams.failedBy
            .map(
              (f) =>
                `${formatCount(f.count)} ${f.why} (${formatCount(f.connected)} of them after their TCP connection was ` +
                `established; ${formatLatency(f.firstMs)}–${formatLatency(f.lastMs)}, median ${formatLatency(f.medianMs)}, after the opening order)`,
            )
            .join(", ")}`
        : null,
      total(s.streams.endedAfterOpen) > 0 ? `streams ended by the service: ${kinds(s.streams.endedAfterOpen)}` : null,
      s.opening && s.opening.missed > 0
        ? `streams that did not see the draw within ${seconds(plan.drawTimeoutMs)}: ${formatCount(s.opening.missed)}`
        : null,
      s.opening === null ? "the opening was not measured (no stream opened)" : null,
      s.opening?.stall ?? null,
    ].filter((part): part is string => part !== null);
    if (parts.length > 0) lines.push(`- ${formatCount(s.size)} streams: ${parts.join("; ")}`);
  }
  return lines;
}

function ceilingLine(c: HttpJoinCeiling | null): string {
  if (c === null) return "The HTTP join's ceiling from its floors: not computed (a part was not measured).";
  return (
    `**The HTTP join's ceiling from its floors**: if each join cost the service and the load generator only what ` +
    `\`/healthz\` costs them (${ms3(c.serviceMs)} + ${ms3(c.loadGeneratorMs)}) and PostgreSQL only what a ticket of ` +
    `join_many_floor costs it (${ms3(c.postgresMsPerRow)}), ${c.cores} cores busy would answer ` +
    `${formatCount(c.perSecond)} joins/s: ${formatRatio(c.vsRaw)} the raw INSERT. An upper bound: the service's ` +
    "batches are smaller than 100, and a join's request has a body to read, a ticket to answer with and a statement " +
    "to send that `/healthz` has not."
  );
}

async function markdownReport(figures: RushFigures, plan: Plan, mode: Mode): Promise<string> {
  const notes = await readNotes("rush");
  const { workloads } = figures;
  const what = (workload: Workload) => workloads[workload].what;
  const joinManyToFloor = tpsRatiosByRound(
    workloads.join_many.rounds.map((round) => ({ tps: round?.perSecond ?? Number.NaN })),
    workloads.join_many_floor.rounds.map((round) => ({ tps: round?.perSecond ?? Number.NaN })),
  );
  const perRound = markdownTable(
    ["round", ...WORKLOADS.map((workload) => `${workload} / s`), "http / raw", "join_many / raw", "join_many / floor"],
    Array.from({ length: figures.rounds }, (_, index) => {
      const at = (workload: Workload) => workloads[workload].rounds[index];
      const ratio = (workload: Workload) => workloads[workload].vsRaw.perRound[index] ?? Number.NaN;
      return [
        String(index + 1),
        ...WORKLOADS.map((workload) => {
          const round = at(workload);
          return round ? formatCount(round.perSecond) : "not available";
        }),
        formatRatio(ratio("http")),
        workloads.join_many.available ? formatRatio(ratio("join_many")) : "not available",
        workloads.join_many.available ? formatRatio(joinManyToFloor[index] ?? Number.NaN) : "not available",
      ];
    }),
  );
  const cpu = (w: RushWorkloadFigures) => {
    const pick = (get: (c: CpuPerCall) => number | null) =>
      ms3(medianOfRounds(w, (round) => (round.cpu ? get(round.cpu) : null)));
    return `${pick((c) => c.serviceMs)} · ${pick((c) => c.postgresMs)} · ${pick((c) => c.loadGeneratorMs)}`;
  };
  // Not sampled in runs too short for it (quick mode): n/a.
  const perRow = (w: RushWorkloadFigures) => ms3(medianOfRounds(w, (round) => round.postgresMsPerRow));
  const errors = errorLines(figures, plan);
  const ceiling = figures.descriptorLimit === null ? "unknown" : formatCount(figures.descriptorLimit);
  return [
    "## 7. The rush: everyone joins, opens a stream, and the room opens",
    "",
    "The real service — HTTP and the scheduler in one Node process, as `npm start` runs them (`bench/lib/sse-service-child.ts` " +
      "with the worker, `--expose-gc`) — on the embedded PostgreSQL, started afresh for each size. A room with capacity " +
      `${formatCount(figures.sizes[0]?.capacity ?? plan.capacity)} and \`opens_at\` ahead. In order, each phase timed where it is seen:`,
    "",
    `1. **Join**: a load-generator process (\`bench/lib/http-load-child.ts\`) sends exactly N \`POST /v1/rooms/{room}/tickets\` ` +
      `with body \`{}\` and \`Content-Type: application/json\` (what a browser's fetch sends) over ${JOIN_CONNECTIONS} keep-alive ` +
      "connections, as fast as they are answered; joins/s = N / time from the first request to the last answer. Then " +
      "`ANALYZE waitroom.tickets`, as autovacuum would have done before an opening minutes later (without statistics " +
      "the draw's plan is a nested loop of tens of seconds: see the notes).",
    `2. **Open**: N event streams (\`GET /v1/tickets/{id}/events?token=…\`), split over client processes of at most ${formatCount(STREAMS_PER_CLIENT_PROCESS)} streams ` +
      "(`bench/lib/sse-clients-child.ts`; each stream is a descriptor there and in the service; each process connects " +
      "from a loopback address of its own, as clients of a real rush come from many: from one address, Linux scans its " +
      "whole range of even ephemeral ports for every connection past ≈ 14,000, see bench/lib/sse-clients.ts), all requested at one " +
      "wall-clock instant, each process issuing all of its requests in one synchronous loop (not paced). Per stream: time " +
      `from that instant to its TCP connection and to its first \`state\` read; a stream without one within ${seconds(plan.openTimeoutMs)} failed.`,
    `3. **Open the room**: \`opens_at\` is set ${seconds(plan.openingLeadMs)} ahead (\`configure_room\`, which streams see as one ` +
      "`room` event) and the scheduler's tick at `opens_at` makes the draw and admits. Per stream: time from `opens_at` to " +
      "its first sight of the draw — a `state` with another position or depth, or `admitted`. The draw's start is " +
      "`rooms.shuffled_at` (the admitting transaction's clock after it took the room).",
    "",
    `Listen queues: \`net.core.somaxconn\` ${figures.listenQueues.somaxconn ?? "unknown"}` +
      (figures.listenQueues.raisedFrom === null
        ? " (left as the machine had it)."
        : ` for this run, raised from ${figures.listenQueues.raisedFrom} (and \`tcp_max_syn_backlog\` with it) as ` +
          "docs/operations.md tells operators to before an opening: with the default, thousands of simultaneous " +
          "connects overflow the accept queue and wait 1, 3, 7 s for SYN retries."),
    "",
    "Memory per stream: the service's `process.memoryUsage()` after two full collections just before the streams open and " +
      "0.5 s after the last opened, delta / streams opened. Errors: answers other than 202 to a join, streams that never " +
      "read a first `state` (non-200 answer, reset, timeout), streams the service ended, and streams that did not see the " +
      `draw within ${seconds(plan.drawTimeoutMs)} of \`opens_at\`. Sizes: 10,000 and the largest that fits: the open-files limit ` +
      `here is ${ceiling} per process, so a service holding N streams needs N descriptors plus its database connections, ` +
      `listening socket, stdio/IPC and libuv's own; N = limit − ${DESCRIPTOR_MARGIN} rounded down to a thousand = ` +
      `${formatCount(figures.ceiling)} (the count it held at the peak is in the second table).`,
    "",
    `**Throughput next to it**, in the same database after the rushes, interleaved over ${roundsOf(figures)} (each run ` +
      "after `VACUUM (ANALYZE)` and `CHECKPOINT`, autovacuum off); figures are medians over rounds, ratios medians of " +
      "per-round ratios to the raw INSERT of the same round. The HTTP workloads go to one more service process of the " +
      "same kind (HTTP and scheduler); pg-boss is measured through its JS API because that is what a developer calls, " +
      "and its SQL is internal to it:",
    "",
    ...WORKLOADS.map((workload) => `- **${workload}**: ${what(workload)}`),
    "",
    markdownTable(
      THROUGHPUT_HEADER,
      WORKLOADS.map((workload) => [`**${workload}**`, ...throughputCells(workloads[workload])]),
    ),
    "",
    "Rows per call are counted in the tables written (tickets of the room, graphile-worker's jobs, pgboss.job), not " +
      "assumed from the batch. CPU per HTTP call (service · PostgreSQL · load generator, medians): " +
      `join ${cpu(workloads.http)}; \`/healthz\` ${cpu(workloads.healthz)}. PostgreSQL's CPU per ticket ` +
      `(sampled while pgbench ran, medians): join_many ${perRow(workloads.join_many)}, its floor ` +
      `${perRow(workloads.join_many_floor)}.`,
    "",
    ceilingLine(figures.httpJoinCeiling),
    "",
    "### Per round",
    "",
    perRound,
    "",
    "### The rush",
    "",
    markdownTable(SIZE_HEADER, sizeRows(figures)),
    "",
    `"vs raw" is the rush's join rate over the median raw INSERT rate of the throughput rounds (not the same moment). Where the time went:`,
    "",
    openingTable(figures),
    "",
    drawTable(figures),
    "",
    'Machine busy: all cores, from /proc; "kernel" is the part spent in the kernel (system, irq and softirq time: ' +
      "on loopback the TCP work of both ends of every connection is done there, charged to whichever process is on the " +
      "core, so the clients' and the service's CPU include some of each other's); \"others\" is what was not this run's " +
      "processes (service, PostgreSQL, clients, the benchmark), i.e. the shared machine's neighbours. " +
      "Descriptors and TCP counters are read just after the last stream opened; the counters are the kernel's, machine-wide, " +
      'over the opening (the clients see an overflow as a SYN retransmitted after 1 s, 3 s, 7 s, …). "The position query ' +
      "alone\" is `waitroom.positions` for every ticket of the room from the benchmark's connection after the draw (median of " +
      "3): the database's share of one room-wide re-read.",
    "",
    `**Admit of ${formatCount(figures.admit.size)} in one call**: median ${formatMs(figures.admit.medianMs)} over ` +
      `${figures.admit.ms.length} (${figures.admit.ms.map(formatMs).join(", ")}): a room of that capacity filled through ` +
      "`waitroom.join` in bulk, vacuumed, then `select count(*) from waitroom.admit(room)` timed from the client, the same " +
      "helper as section 3 (`bench/lib/queue-fill.ts`). Its floor in the same rounds (the order alternating): the rows " +
      `that admission writes, by one plain statement on waitroom's own tables (\`bench/sql/admit_floor.sql\`: the ` +
      "tickets picked in queue order and offered their seats, and their ledger rows with the data admit gives them), " +
      `median ${formatMs(figures.admit.floorMedianMs)} (${figures.admit.floorMs.map(formatMs).join(", ")}); ` +
      `admit / floor ${formatRatio(figures.admit.toFloor)} (median of rounds). Section 3's bare baseline writes ` +
      "narrower rows into tables with one index each.",
    "",
    "### Targets",
    "",
    markdownTable(["target", "wanted", "measured", "verdict"], verdictRows(figures, verdictCell)),
    "",
    errors.length === 0 ? "**Errors: 0** (joins, streams, draw)." : `**Errors** (should be 0):\n\n${errors.join("\n")}`,
    mode === "quick"
      ? "\nThis was a quick run (a few hundred streams, seconds per workload): a smoke check, not a measurement."
      : "",
    "",
    "### Why (notes: bench/notes/rush.md)",
    "",
    notes,
  ].join("\n");
}

export const rushBenchmark: Benchmark<RushFigures> = {
  id: "rush",
  title: "The rush: join, open streams, open the room",
  async run(context): Promise<BenchReport<RushFigures>> {
    const plan = PLANS[context.mode];
    const listenQueues = await prepareListenQueues();
    const limit = await descriptorLimit();
    const ceiling = limit === null ? 10_000 : Math.floor((limit - DESCRIPTOR_MARGIN) / 1000) * 1000 || 1000;
    const asked = process.env.BENCH_RUSH_SIZES?.split(",").map(Number);
    const wanted =
      asked?.length && asked.every((n) => Number.isInteger(n) && n > 0)
        ? asked
        : plan.sizes.map((size) => (size === "max" ? ceiling : size));
    const sizes = [...new Set(wanted.map((size) => Math.min(size, ceiling)))];
    const databaseUrl = await context.server.createAppDatabase("bench_rush");
    return withClient(databaseUrl, async (control) => {
      const rushes: RushSizeFigures[] = [];
      for (const size of sizes) {
        context.say(`rush of ${formatCount(size)}`);
        rushes.push(await runRush(context, databaseUrl, control, size, plan));
      }
      const admit = await measureAdmits(context, databaseUrl, control, plan.admit);
      const { rounds } = await measureThroughput(context, databaseUrl, control, plan.throughput);
      const statement = async (workload: "raw" | BatchWorkload) =>
        `pgbench, ${PGBENCH_CLIENTS} clients: \`${await statementOf(workload)}\``;
      const workloads: Record<Workload, RushWorkloadFigures> = {
        raw: summarise(await statement("raw"), rounds.raw, rounds.raw),
        join_many: summarise(
          `${await statement("join_many")}${rounds.join_many.every((round) => round === null) ? ` — not available: \`${JOIN_MANY}\` is not in sql/ yet` : ""}`,
          rounds.join_many,
          rounds.raw,
        ),
        join_many_floor: summarise(
          `${await statement("join_many_floor")} (the rows join_many(${BATCH}) writes, without join_many)`,
          rounds.join_many_floor,
          rounds.raw,
        ),
        add_jobs: summarise(await statement("add_jobs"), rounds.add_jobs, rounds.raw),
        pgboss: summarise(
          `pg-boss ${PGBOSS_VERSION}'s JS API, \`boss.insert(jobs)\` with ${BATCH} jobs \`{name: 'bench', data: {}}\` per call, ` +
            `${PGBOSS_CALLERS} concurrent callers in the benchmark's process (one INSERT … SELECT from the jobs as JSON per call)`,
          rounds.pgboss,
          rounds.raw,
        ),
        http: summarise(
          `\`POST /v1/rooms/${THROUGHPUT_ROOM}/tickets\` with body \`{}\` (\`Content-Type: application/json\`), ${JOIN_CONNECTIONS} keep-alive connections from a load-generator process (room opening tomorrow: joins only)`,
          rounds.http,
          rounds.raw,
        ),
        healthz: summarise(
          `\`GET /healthz\` (no database), ${JOIN_CONNECTIONS} connections: Node's and the framework's HTTP floor in this service`,
          rounds.healthz,
          rounds.raw,
        ),
      };
      const partial = {
        listenQueues,
        descriptorLimit: limit,
        ceiling,
        workloads,
        rounds: plan.throughput.rounds,
        secondsPerRun: plan.throughput.secondsPerRun,
        sizes: rushes,
        admit,
        httpJoinCeiling: httpJoinCeilingOf(workloads),
      };
      const figures: RushFigures = { ...partial, verdicts: verdictsOf(partial) };
      return { console: consoleReport(figures), markdown: await markdownReport(figures, plan, context.mode), figures };
    });
  },
};
