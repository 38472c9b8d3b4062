import type pg from "pg";
import { startBenchApp } from "./lib/app.js";
import { formatBytes, formatCount, formatMs, formatRatio, markdownTable, textTable } from "./lib/format.js";
import { runHttpLoad } from "./lib/http-load.js";
import { runInterleaved } from "./lib/interleave.js";
import { readNotes } from "./lib/notes.js";
import { runPgbench } from "./lib/pgbench.js";
import { withClient } from "./lib/server.js";
import {
  disableAutovacuum,
  RAW_INSERT_TABLE,
  type SqlWorkload,
  scriptFile,
  settle,
  statementOf,
} from "./lib/sql-workloads.js";
import { median, range, tpsRatiosByRound } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";
import { currentWalLsn, walBytesBetween } from "./lib/wal.js";

/*
 * Benchmark 2: joins through the real HTTP service (POST /v1/rooms/bench/tickets,
 * Hono on node:http, postgres.js pool) from a closed-loop load generator,
 * against the same run's raw single-row INSERT and SQL waitroom.join() through
 * pgbench at the same concurrency. What the HTTP layer costs on top of the SQL.
 */

/**
 * limited: the same join against a second service with per-client limits on, set so high that
 * nobody is over them (the load comes from one address): what the limits cost a join.
 * floor: the same service answering GET /healthz, no database: what HTTP alone costs here.
 */
const WORKLOADS = ["raw", "join", "http", "limited", "floor"] as const;
type Workload = (typeof WORKLOADS)[number];

/** The product target: the HTTP join reaches at least 0.3× the raw INSERT rate on the same box. */
const TARGET_HTTP_TO_RAW = 0.3;
/** The limits may cost a join at most 5 % of HTTP join throughput. */
const TARGET_LIMITED_TO_HTTP = 0.95;
/** Per-client limits on, each bucket far above what the load generator asks. */
const LIMITED_ENV = {
  WAITROOM_RATE_LIMITS: "on",
  WAITROOM_RATE_LIMIT_JOIN: "10000000/s",
  WAITROOM_RATE_LIMIT_HOLDER: "10000000/s",
  WAITROOM_RATE_LIMIT_TICKET: "10000000/s",
  WAITROOM_RATE_LIMIT_STREAM: "10000000/s",
  WAITROOM_RATE_LIMIT_CHECK: "10000000/s",
  WAITROOM_RATE_LIMIT_KEY_FAILURES: "10000000/s",
};
/** Connections of the load generator, and pgbench clients: the same concurrency for all three. */
const CONCURRENCY = 8;
const PGBENCH_THREADS = 2;
const ROOM = "bench"; // the room bench/sql/join.sql joins
const JOIN_PATH = `/v1/rooms/${ROOM}/tickets`;
const FLOOR_PATH = "/healthz";

type Plan = { rounds: number; secondsPerRun: number; warmupSeconds: number; httpWarmupSeconds: number };
const PLANS: Record<Mode, Plan> = {
  // 4 workloads × 5 rounds × 6 s = 2 min of measurement, ≈ 3 min with warm-ups and maintenance between runs.
  full: { rounds: 5, secondsPerRun: 6, warmupSeconds: 2, httpWarmupSeconds: 1 },
  quick: { rounds: 2, secondsPerRun: 2, warmupSeconds: 0, httpWarmupSeconds: 0.5 },
};

type CpuPerRequest = {
  serverMs: number;
  postgresMs: number | null;
  loadGeneratorMs: number;
  machineBusyPercent: number | null;
};

type Measurement = {
  tps: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** null for the floor, which writes nothing. */
  walBytesPerTransaction: number | null;
  errors: number;
  /** HTTP runs only. */
  cpu: CpuPerRequest | null;
};

export type HttpWorkloadFigures = {
  what: string;
  medianTps: number;
  tpsMin: number;
  tpsMax: number;
  medianLatencyP50Ms: number;
  medianLatencyP99Ms: number;
  medianWalBytesPerTransaction: number | null;
  /** Median of per-round ratios to the raw INSERT of the same round. */
  vsRaw: { median: number; perRound: number[] };
  errors: number;
  rounds: Measurement[];
};

export type HttpJoinFigures = {
  concurrency: number;
  rounds: number;
  secondsPerRun: number;
  workloads: Record<Workload, HttpWorkloadFigures>;
  /** Medians of per-round ratios; limitedToHttp: the join with per-client limits on against off. */
  ratios: { httpToRaw: number; httpToSqlJoin: number; sqlJoinToRaw: number; limitedToHttp: number };
  /** Medians over rounds of CPU ms per HTTP join, by process. */
  cpu: CpuPerRequest;
  /** The same for the join with per-client limits on. */
  limitedCpu: CpuPerRequest;
  /** The same for GET /healthz. */
  floorCpu: CpuPerRequest;
  target: { httpToRaw: number; met: boolean; limitedToHttp: number; limitsMet: boolean };
};

async function ticketCount(control: pg.Client): Promise<number> {
  const { rows } = await control.query<{ count: string }>("select count(*) from waitroom.tickets");
  return Number(rows[0]?.count ?? 0);
}

async function measureAll(context: BenchContext, databaseUrl: string, control: pg.Client, plan: Plan) {
  const { server, pgbench, signal, say } = context;
  await disableAutovacuum(control);
  const postmasterPid = await server.postmasterPid();
  const app = await startBenchApp({ databaseUrl });
  const limitedApp = await startBenchApp({ databaseUrl, env: LIMITED_ENV }).catch(async (error: unknown) => {
    await app.stop();
    throw error;
  });
  try {
    let runNumber = 0;
    const sqlRun = async (workload: SqlWorkload, seconds: number): Promise<Measurement> => {
      const walStart = await currentWalLsn(control);
      const result = await runPgbench({
        pgbench,
        databaseUrl,
        scriptFile: scriptFile(workload),
        clients: CONCURRENCY,
        threads: PGBENCH_THREADS,
        seconds,
        workDir: server.workDir,
        label: `http-join-${workload}-${++runNumber}`,
        signal,
      });
      const walBytes = await walBytesBetween(control, walStart, await currentWalLsn(control));
      return {
        tps: result.tps,
        latencyP50Ms: result.latencyP50Ms,
        latencyP99Ms: result.latencyP99Ms,
        walBytesPerTransaction: walBytes / result.transactions,
        errors: result.failedTransactions,
        cpu: null,
      };
    };
    const httpRun = async (
      workload: "http" | "limited" | "floor",
      seconds: number,
      warmupSeconds: number,
    ): Promise<Measurement> => {
      const floor = workload === "floor";
      const ticketsBefore = await ticketCount(control);
      const walStart = await currentWalLsn(control);
      const result = await runHttpLoad({
        url: workload === "limited" ? limitedApp.url : app.url,
        path: floor ? FLOOR_PATH : JOIN_PATH,
        method: floor ? "GET" : "POST",
        expectStatus: floor ? 200 : 202,
        concurrency: CONCURRENCY,
        warmupSeconds,
        seconds,
        signal,
        postmasterPid,
      });
      const walBytes = await walBytesBetween(control, walStart, await currentWalLsn(control));
      // WAL over every join of the run, warm-up included: each one made exactly one ticket.
      const joins = (await ticketCount(control)) - ticketsBefore;
      return {
        tps: result.requestsPerSecond,
        latencyP50Ms: result.latencyP50Ms,
        latencyP99Ms: result.latencyP99Ms,
        walBytesPerTransaction: floor ? null : walBytes / Math.max(1, joins),
        errors: result.errors,
        cpu: {
          serverMs: result.serverCpuMsPerRequest,
          postgresMs: result.postgresCpuMsPerRequest,
          loadGeneratorMs: result.loadGeneratorCpuMsPerRequest,
          machineBusyPercent: result.machineBusyPercent,
        },
      };
    };
    const run = (workload: Workload, seconds: number, httpWarmupSeconds: number) =>
      workload === "raw" || workload === "join"
        ? sqlRun(workload, seconds)
        : httpRun(workload, seconds, httpWarmupSeconds);

    if (plan.warmupSeconds > 0) {
      for (const workload of WORKLOADS) {
        say(`warm-up   ${workload} (${plan.warmupSeconds} s, not counted)`);
        await run(workload, plan.warmupSeconds, 0);
      }
    }
    return await runInterleaved<Workload, Measurement>({
      workloads: WORKLOADS,
      rounds: plan.rounds,
      // http and limited swap places every other round: in a fixed order whatever the run before leaves
      // behind (pgbench's join: dirty buffers, autovacuum) would be charged to http every round.
      orderOf: (round) => (round % 2 === 1 ? WORKLOADS : ["raw", "join", "limited", "http", "floor"]),
      measure: async (workload) => {
        await settle(control);
        return run(workload, plan.secondsPerRun, plan.httpWarmupSeconds);
      },
      onResult: ({ workload, round, rounds, result }) =>
        say(
          `round ${round}/${rounds}  ${workload.padEnd(7)} ${formatCount(result.tps).padStart(7)} /s` +
            `  p50 ${formatMs(result.latencyP50Ms)}  p99 ${formatMs(result.latencyP99Ms)}` +
            (result.walBytesPerTransaction === null ? "" : `  ${formatBytes(result.walBytesPerTransaction)}/join`) +
            (result.errors > 0 ? `  ${result.errors} errors` : ""),
        ),
    });
  } finally {
    await limitedApp.stop();
    await app.stop();
  }
}

function summarise(what: string, rounds: Measurement[], rawRounds: Measurement[]): HttpWorkloadFigures {
  const tps = rounds.map((round) => round.tps);
  const { min, max } = range(tps);
  const perRound = tpsRatiosByRound(rounds, rawRounds);
  return {
    what,
    medianTps: median(tps),
    tpsMin: min,
    tpsMax: max,
    medianLatencyP50Ms: median(rounds.map((round) => round.latencyP50Ms)),
    medianLatencyP99Ms: median(rounds.map((round) => round.latencyP99Ms)),
    medianWalBytesPerTransaction: medianOf(rounds.map((round) => round.walBytesPerTransaction)),
    vsRaw: { median: median(perRound), perRound },
    errors: rounds.reduce((sum, round) => sum + round.errors, 0),
    rounds,
  };
}

function medianOf(values: (number | null)[]): number | null {
  const known = values.filter((value): value is number => value !== null);
  return known.length > 0 ? median(known) : null;
}

function medianCpu(rounds: Measurement[]): CpuPerRequest {
  const cpus = rounds.map((round) => round.cpu);
  return {
    serverMs: medianOf(cpus.map((cpu) => cpu?.serverMs ?? null)) ?? Number.NaN,
    postgresMs: medianOf(cpus.map((cpu) => cpu?.postgresMs ?? null)),
    loadGeneratorMs: medianOf(cpus.map((cpu) => cpu?.loadGeneratorMs ?? null)) ?? Number.NaN,
    machineBusyPercent: medianOf(cpus.map((cpu) => cpu?.machineBusyPercent ?? null)),
  };
}

const formatCpu = (ms: number | null) => (ms === null ? "n/a" : `${ms.toFixed(3)} ms`);
const formatPercent = (value: number | null) => (value === null ? "n/a" : `${Math.round(value)} %`);

function figureCells(w: HttpWorkloadFigures): string[] {
  return [
    formatCount(w.medianTps),
    formatRatio(w.vsRaw.median),
    formatMs(w.medianLatencyP50Ms),
    formatMs(w.medianLatencyP99Ms),
    w.medianWalBytesPerTransaction === null ? "—" : formatBytes(w.medianWalBytesPerTransaction),
    `${formatCount(w.tpsMin)}–${formatCount(w.tpsMax)}`,
  ];
}

function verdictLine(figures: HttpJoinFigures): string {
  const { ratios, target } = figures;
  return (
    `HTTP join/raw = ${formatRatio(ratios.httpToRaw)} (target ≥ ${formatRatio(target.httpToRaw)}: ` +
    `${target.met ? "met" : "NOT met"}), HTTP/SQL join = ${formatRatio(ratios.httpToSqlJoin)}; ` +
    `${limitsLine(figures)}`
  );
}

/** What the per-client limits cost: a percentage of HTTP join throughput (negative: the limited runs were faster). */
function limitsLine({ ratios, target }: HttpJoinFigures): string {
  const cost = Math.round((1 - ratios.limitedToHttp) * 1000) / 10;
  return (
    `limits on/off = ${formatRatio(ratios.limitedToHttp)} (${cost} % of throughput; target ≤ ` +
    `${Math.round((1 - target.limitedToHttp) * 100)} %: ${target.limitsMet ? "met" : "NOT met"})`
  );
}

function cpuLine(cpu: CpuPerRequest): string {
  return (
    `service ${formatCpu(cpu.serverMs)}, PostgreSQL ${formatCpu(cpu.postgresMs)}, ` +
    `load generator ${formatCpu(cpu.loadGeneratorMs)}; machine busy ${formatPercent(cpu.machineBusyPercent)}`
  );
}

function consoleReport(figures: HttpJoinFigures): string {
  const rows = WORKLOADS.map((workload) => [workload, ...figureCells(figures.workloads[workload])]);
  return [
    `HTTP join throughput — ${figures.concurrency} connections/clients, ${figures.rounds} rounds × ${figures.secondsPerRun} s, interleaved (medians)`,
    textTable(["workload", "per s", "vs raw", "p50", "p99", "WAL/join", "range"], rows),
    `CPU per HTTP join: ${cpuLine(figures.cpu)}`,
    `CPU per HTTP join, limits on: ${cpuLine(figures.limitedCpu)}`,
    `CPU per GET /healthz: ${cpuLine(figures.floorCpu)}`,
    verdictLine(figures),
  ].join("\n");
}

function reading(figures: HttpJoinFigures, mode: Mode): string {
  const { raw, join, http, floor } = figures.workloads;
  const { cpu, ratios } = figures;
  const paragraphs: string[] = [];
  const wal = (w: HttpWorkloadFigures) =>
    w.medianWalBytesPerTransaction === null ? "—" : formatBytes(w.medianWalBytesPerTransaction);
  paragraphs.push(
    `Through HTTP, a join ran at ${formatRatio(ratios.httpToRaw)} the rate of a plain INSERT (median ${formatCount(http.medianTps)} ` +
      `against ${formatCount(raw.medianTps)} per second) and ${formatRatio(ratios.httpToSqlJoin)} the rate of the same ` +
      `\`waitroom.join()\` called by pgbench (${formatCount(join.medianTps)} per second, itself ${formatRatio(ratios.sqlJoinToRaw)} of raw), ` +
      `so the target of ≥ ${formatRatio(figures.target.httpToRaw)} is ` +
      (figures.target.met
        ? "**met**."
        : `**not met**: it would take ≈ ${formatCount(raw.medianTps * figures.target.httpToRaw)} HTTP joins per second.`) +
      ` Median latency was ${formatMs(http.medianLatencyP50Ms)} (p99 ${formatMs(http.medianLatencyP99Ms)}) against ` +
      `${formatMs(join.medianLatencyP50Ms)} (p99 ${formatMs(join.medianLatencyP99Ms)}) for the SQL join. Each HTTP join wrote ` +
      `${wal(http)} of WAL, the SQL join ${wal(join)}: the database does the same work either way; the difference ` +
      "is the layer in front of it.",
  );
  const total = cpu.serverMs + (cpu.postgresMs ?? 0) + cpu.loadGeneratorMs;
  paragraphs.push(
    "The three parties share the machine's cores: per HTTP join the service (this Node process) used " +
      `${formatCpu(cpu.serverMs)} of CPU, PostgreSQL ${formatCpu(cpu.postgresMs)} and the load generator ` +
      `${formatCpu(cpu.loadGeneratorMs)}` +
      (cpu.postgresMs !== null ? ` (${formatCpu(total)} in all)` : "") +
      `, with the machine ${formatPercent(cpu.machineBusyPercent)} busy over the window. pgbench, the baselines' ` +
      "client, is a C program; the load generator is Node and takes a real share of the cores the service and " +
      "the database need, so the HTTP figure is a lower bound of what the service would do with its clients on " +
      `other machines. The floor, \`GET /healthz\` on the same service (no database), ran at ${formatCount(floor.medianTps)} ` +
      `per second with the service using ${formatCpu(figures.floorCpu.serverMs)} of CPU per request, against ` +
      `${formatCpu(cpu.serverMs)} per join: most of what the service spends on a join is not HTTP itself.`,
  );
  const perRound = range(http.vsRaw.perRound);
  const limitsPerRound = range(tpsRatiosByRound(figures.workloads.limited.rounds, http.rounds));
  const spread = (w: HttpWorkloadFigures) => Math.round(((w.tpsMax - w.tpsMin) / w.medianTps) * 100);
  paragraphs.push(
    `Noise: throughput moved between rounds by ${spread(raw)} % (raw), ${spread(join)} % (SQL join), ` +
      `${spread(http)} % (HTTP join), ${spread(figures.workloads.limited)} % (limits on) and ${spread(floor)} % (floor) ` +
      `of the median (max − min); HTTP/raw, round by round, ranged ${formatRatio(perRound.min)}–${formatRatio(perRound.max)}, ` +
      `and limits on/off ${formatRatio(limitsPerRound.min)}–${formatRatio(limitsPerRound.max)}.` +
      (mode === "quick" ? " This was a quick run (seconds per workload): a smoke check, not a measurement." : ""),
  );
  const failed = WORKLOADS.filter((workload) => figures.workloads[workload].errors > 0);
  if (failed.length > 0) {
    paragraphs.push(
      `**Errors** (failed transactions, or unexpected HTTP answers) were seen in: ${failed
        .map((workload) => `${workload} (${figures.workloads[workload].errors})`)
        .join(", ")}; throughput counts successes only.`,
    );
  }
  return paragraphs.join("\n\n");
}

async function markdownReport(figures: HttpJoinFigures, mode: Mode): Promise<string> {
  const summary = markdownTable(
    ["workload", "what", "median per s", "vs raw", "p50 latency", "p99 latency", "WAL / join", "per s min–max"],
    WORKLOADS.map((workload) => {
      const w = figures.workloads[workload];
      return [`**${workload}**`, w.what, ...figureCells(w)];
    }),
  );
  const at = (workload: Workload, index: number) => figures.workloads[workload].rounds[index] as Measurement;
  const perRound = markdownTable(
    [
      "round",
      "raw /s",
      "SQL join /s",
      "HTTP join /s",
      "limits on /s",
      "floor /s",
      "HTTP / raw",
      "HTTP / SQL join",
      "HTTP p99",
      "CPU / HTTP join: service · PostgreSQL · load generator",
      "machine busy",
    ],
    figures.workloads.http.rounds.map((http, index) => [
      String(index + 1),
      formatCount(at("raw", index).tps),
      formatCount(at("join", index).tps),
      formatCount(http.tps),
      formatCount(at("limited", index).tps),
      formatCount(at("floor", index).tps),
      formatRatio(http.tps / at("raw", index).tps),
      formatRatio(http.tps / at("join", index).tps),
      formatMs(http.latencyP99Ms),
      http.cpu
        ? `${formatCpu(http.cpu.serverMs)} · ${formatCpu(http.cpu.postgresMs)} · ${formatCpu(http.cpu.loadGeneratorMs)}`
        : "",
      formatPercent(http.cpu?.machineBusyPercent ?? null),
    ]),
  );
  const notes = await readNotes("http-join");
  return [
    "## 2. HTTP join throughput and latency",
    "",
    "The real HTTP service (`startHttp` from src/http/server.ts: Hono on node:http, the postgres.js pool of 10 " +
      "connections, the LISTEN connection and stream hub) runs inside the benchmark's Node process on the same " +
      `embedded PostgreSQL; no scheduler runs. A load generator in a separate Node process keeps ${figures.concurrency} ` +
      "keep-alive connections (node:http Agent) busy: each sends `POST /v1/rooms/bench/tickets` with an empty body " +
      "(an anonymous join, answered 202) as soon as its previous answer is read, for " +
      `${figures.secondsPerRun} s after a short warm-up; latency is from sending the request to reading the whole ` +
      "answer. The baselines are the raw INSERT and the SQL `waitroom.join('bench')` of section 1, run by " +
      `\`pgbench --client=${figures.concurrency} --jobs=${PGBENCH_THREADS}\` on the same database, and the floor: the same ` +
      "load generator against `GET /healthz` of the same service, which touches no database. The service runs with " +
      "per-client limits off (`WAITROOM_RATE_LIMITS=off`: all the load comes from one address); a second one in the " +
      "same process, on the same database, runs with them on and every bucket far above the load (" +
      "`WAITROOM_RATE_LIMIT_JOIN=10000000/s` and so on), so that **limits on** is the same join paying for the " +
      "limits with nobody over them. " +
      `${figures.rounds} rounds, interleaved (raw, SQL join, HTTP join, limits on, floor, raw, …), each run after ` +
      "`VACUUM (ANALYZE)` and `CHECKPOINT`, autovacuum off; figures are medians over rounds, ratios medians of " +
      "per-round ratios, p99 the median of each run's p99. CPU per request comes from /proc over the measured " +
      "window: this process (the service), PostgreSQL's processes, and the load generator's own " +
      "`process.cpuUsage()`. **The load generator, the service and PostgreSQL share the machine's 2 cores.**",
    "",
    `**HTTP join / raw INSERT = ${formatRatio(figures.ratios.httpToRaw)}** — target ≥ ${formatRatio(figures.target.httpToRaw)}: ` +
      `**${figures.target.met ? "met" : "not met"}**. HTTP join / SQL join = ${formatRatio(figures.ratios.httpToSqlJoin)}; ` +
      `SQL join / raw = ${formatRatio(figures.ratios.sqlJoinToRaw)} in this run.`,
    "",
    `**Per-client limits on / off = ${formatRatio(figures.ratios.limitedToHttp)}** (median of per-round ratios): ` +
      `${limitsLine(figures)}. The service's CPU per join: ${formatCpu(figures.limitedCpu.serverMs)} with the limits ` +
      `on, ${formatCpu(figures.cpu.serverMs)} without (medians over rounds).`,
    "",
    summary,
    "",
    "### Per round",
    "",
    perRound,
    "",
    "### Reading",
    "",
    reading(figures, mode),
    "",
    "### Why (notes: bench/notes/http-join.md)",
    "",
    notes,
  ].join("\n");
}

export const httpJoinBenchmark: Benchmark<HttpJoinFigures> = {
  id: "httpJoin",
  title: "HTTP join throughput and latency",
  async run(context): Promise<BenchReport<HttpJoinFigures>> {
    const plan = PLANS[context.mode];
    const databaseUrl = await context.server.createAppDatabase("bench_http_join");
    return withClient(databaseUrl, async (control) => {
      await control.query("select waitroom.create_room($1, 1000)", [ROOM]);
      await control.query(RAW_INSERT_TABLE);
      const rounds = await measureAll(context, databaseUrl, control, plan);
      const workloads: Record<Workload, HttpWorkloadFigures> = {
        raw: summarise(`pgbench: \`${await statementOf("raw")}\``, rounds.raw, rounds.raw),
        join: summarise(`pgbench: \`${await statementOf("join")}\``, rounds.join, rounds.raw),
        http: summarise(`\`POST ${JOIN_PATH}\``, rounds.http, rounds.raw),
        limited: summarise(
          `\`POST ${JOIN_PATH}\`, per-client limits on (nobody over them)`,
          rounds.limited,
          rounds.raw,
        ),
        floor: summarise(`\`GET ${FLOOR_PATH}\` (no database)`, rounds.floor, rounds.raw),
      };
      const perRoundHttpToJoin = tpsRatiosByRound(rounds.http, rounds.join);
      const httpToRaw = workloads.http.vsRaw.median;
      const limitedToHttp = median(tpsRatiosByRound(rounds.limited, rounds.http));
      const figures: HttpJoinFigures = {
        concurrency: CONCURRENCY,
        rounds: plan.rounds,
        secondsPerRun: plan.secondsPerRun,
        workloads,
        ratios: {
          httpToRaw,
          httpToSqlJoin: median(perRoundHttpToJoin),
          sqlJoinToRaw: workloads.join.vsRaw.median,
          limitedToHttp,
        },
        cpu: medianCpu(rounds.http),
        limitedCpu: medianCpu(rounds.limited),
        floorCpu: medianCpu(rounds.floor),
        target: {
          httpToRaw: TARGET_HTTP_TO_RAW,
          met: httpToRaw >= TARGET_HTTP_TO_RAW,
          limitedToHttp: TARGET_LIMITED_TO_HTTP,
          limitsMet: limitedToHttp >= TARGET_LIMITED_TO_HTTP,
        },
      };
      return { console: consoleReport(figures), markdown: await markdownReport(figures, context.mode), figures };
    });
  },
};
