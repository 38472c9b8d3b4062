import type pg from "pg";
import { formatBytes, formatCount, formatMs, formatRatio, markdownTable, textTable } from "./lib/format.js";
import { runInterleaved } from "./lib/interleave.js";
import { readNotes } from "./lib/notes.js";
import { type PgbenchRun, runPgbench } from "./lib/pgbench.js";
import { withClient } from "./lib/server.js";
import {
  disableAutovacuum,
  RAW_INSERT_TABLE,
  SQL_WORKLOADS,
  type SqlWorkload,
  scriptFile,
  settle,
  statementOf,
} from "./lib/sql-workloads.js";
import { median, range, tpsRatiosByRound } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";
import { currentWalLsn, enableWalInspect, type WalRecordKind, walBytesBetween, walComposition } from "./lib/wal.js";

/*
 * Benchmark 1: how many waitroom.join() calls per second the database
 * sustains, measured against the cheapest durable write (a single-row
 * INSERT), against the floor under any join (its two rows inserted by one
 * plain statement) and against graphile-worker's add_job on the same server.
 * The ratio, not the absolute figure, is what carries across machines.
 */

const WORKLOADS = SQL_WORKLOADS;
type Workload = SqlWorkload;

/** The product target: a join may cost at most about 1.4 plain INSERTs. */
const TARGET_JOIN_TO_RAW = 0.7;
const CLIENTS = 8;
/** pgbench threads: one per core of the reference machine; more would only compete with the server. */
const THREADS = 2;

type Plan = { rounds: number; secondsPerRun: number; warmupSeconds: number };
const PLANS: Record<Mode, Plan> = {
  // 3 workloads × 7 rounds × 8 s ≈ 3 min of measurement. Seven rounds rather than five: on a
  // shared machine bursts of foreign load hit whole runs, and a median of seven shrugs off three.
  full: { rounds: 7, secondsPerRun: 8, warmupSeconds: 2 },
  quick: { rounds: 2, secondsPerRun: 2, warmupSeconds: 0 },
};

type Measurement = PgbenchRun & { walBytesPerTransaction: number };

/*
 * Throughput relative to the raw INSERT, as the median of per-round ratios:
 * each run is divided by the raw run of its own round, a minute apart at
 * most, which cancels slow drift that dividing the two medians would not.
 */
type VersusRaw = { median: number; perRound: number[]; ofMedians: number };

type WalShare = {
  kind: string;
  recordsPerTransaction: number;
  bytesPerTransaction: number;
  fullPageImageBytesPerTransaction: number;
};

export type WorkloadFigures = {
  statement: string;
  medianTps: number;
  tpsMin: number;
  tpsMax: number;
  medianLatencyP50Ms: number;
  medianLatencyP95Ms: number;
  medianWalBytesPerTransaction: number;
  vsRaw: VersusRaw;
  failedTransactions: number;
  rounds: Measurement[];
  /** From the last round; null when pg_walinspect is unavailable. */
  walComposition: WalShare[] | null;
};

export type JoinFigures = {
  clients: number;
  threads: number;
  rounds: number;
  secondsPerRun: number;
  warmupSeconds: number;
  ticketsAtEnd: number;
  workloads: Record<Workload, WorkloadFigures>;
  /** The headline ratios: medians of per-round ratios (see VersusRaw). */
  ratios: { joinToRaw: number; floorToRaw: number; joinToFloor: number; addJobToRaw: number };
  /** join / floor, round by round. */
  joinToFloorPerRound: number[];
  walRatios: { joinToRaw: number; addJobToRaw: number };
  target: { joinToRaw: number; met: boolean };
};

/** Shares of at least 3 % of the bytes are named; the rest is summed as "other". */
function perTransaction(kinds: readonly WalRecordKind[], transactions: number): WalShare[] {
  const total = kinds.reduce((sum, kind) => sum + kind.bytes, 0);
  const named = kinds.filter((kind) => kind.bytes >= total * 0.03);
  const rest = kinds.filter((kind) => kind.bytes < total * 0.03);
  const share = (kind: string, group: readonly WalRecordKind[]): WalShare => ({
    kind,
    recordsPerTransaction: group.reduce((sum, k) => sum + k.records, 0) / transactions,
    bytesPerTransaction: group.reduce((sum, k) => sum + k.bytes, 0) / transactions,
    fullPageImageBytesPerTransaction: group.reduce((sum, k) => sum + k.fullPageImageBytes, 0) / transactions,
  });
  const shares = named.map((kind) => share(kind.kind, [kind]));
  if (rest.length > 0) shares.push(share("other", rest));
  return shares;
}

function summarise(
  statement: string,
  rounds: Measurement[],
  rawRounds: Measurement[],
  composition: WalShare[] | null,
): WorkloadFigures {
  const tps = rounds.map((round) => round.tps);
  const { min, max } = range(tps);
  const perRound = tpsRatiosByRound(rounds, rawRounds);
  return {
    statement,
    medianTps: median(tps),
    tpsMin: min,
    tpsMax: max,
    medianLatencyP50Ms: median(rounds.map((round) => round.latencyP50Ms)),
    medianLatencyP95Ms: median(rounds.map((round) => round.latencyP95Ms)),
    medianWalBytesPerTransaction: median(rounds.map((round) => round.walBytesPerTransaction)),
    vsRaw: { median: median(perRound), perRound, ofMedians: median(tps) / median(rawRounds.map((round) => round.tps)) },
    failedTransactions: rounds.reduce((sum, round) => sum + round.failedTransactions, 0),
    rounds,
    walComposition: composition,
  };
}

async function measureAll(context: BenchContext, databaseUrl: string, control: pg.Client, plan: Plan) {
  const { server, pgbench, signal, say } = context;
  await disableAutovacuum(control);
  const walInspect = await enableWalInspect(control);
  if (!walInspect) say("pg_walinspect is not available: WAL composition will not be reported");
  let runNumber = 0;

  const run = (workload: Workload, seconds: number) =>
    runPgbench({
      pgbench,
      databaseUrl,
      scriptFile: scriptFile(workload),
      clients: CLIENTS,
      threads: THREADS,
      seconds,
      workDir: server.workDir,
      label: `join-${workload}-${++runNumber}`,
      signal,
    });

  if (plan.warmupSeconds > 0) {
    for (const workload of WORKLOADS) {
      say(`warm-up   ${workload} (${plan.warmupSeconds} s, not counted)`);
      await run(workload, plan.warmupSeconds);
    }
  }

  const compositions: Partial<Record<Workload, WalShare[]>> = {};
  const rounds = await runInterleaved<Workload, Measurement>({
    workloads: WORKLOADS,
    rounds: plan.rounds,
    measure: async (workload, round) => {
      await settle(control);
      const walStart = await currentWalLsn(control);
      const result = await run(workload, plan.secondsPerRun);
      const walEnd = await currentWalLsn(control);
      const walBytes = await walBytesBetween(control, walStart, walEnd);
      if (walInspect && round === plan.rounds) {
        compositions[workload] = perTransaction(await walComposition(control, walStart, walEnd), result.transactions);
      }
      return { ...result, walBytesPerTransaction: walBytes / result.transactions };
    },
    onResult: ({ workload, round, rounds, result }) =>
      say(
        `round ${round}/${rounds}  ${workload.padEnd(7)} ${formatCount(result.tps).padStart(7)} tps` +
          `  p50 ${formatMs(result.latencyP50Ms)}  ${formatBytes(result.walBytesPerTransaction)}/tx`,
      ),
  });
  return { rounds, compositions };
}

function verdictLine(figures: JoinFigures): string {
  const { ratios, target } = figures;
  return `join/raw = ${formatRatio(ratios.joinToRaw)} (target ≥ ${formatRatio(target.joinToRaw)}: ${target.met ? "met" : "NOT met"}), floor/raw = ${formatRatio(ratios.floorToRaw)}, join/floor = ${formatRatio(ratios.joinToFloor)}, add_job/raw = ${formatRatio(ratios.addJobToRaw)}`;
}

/** The per-workload figures both reports show: tps, ratio, latencies, WAL, spread. */
function figureCells(w: JoinFigures["workloads"][Workload]): string[] {
  return [
    formatCount(w.medianTps),
    formatRatio(w.vsRaw.median),
    formatMs(w.medianLatencyP50Ms),
    formatMs(w.medianLatencyP95Ms),
    formatBytes(w.medianWalBytesPerTransaction),
    `${formatCount(w.tpsMin)}–${formatCount(w.tpsMax)}`,
  ];
}

function consoleReport(figures: JoinFigures): string {
  const rows = WORKLOADS.map((workload) => [workload, ...figureCells(figures.workloads[workload])]);
  return [
    `SQL join throughput — pgbench ${figures.clients} clients, ${figures.rounds} rounds × ${figures.secondsPerRun} s, interleaved (medians)`,
    textTable(["workload", "tps", "vs raw", "p50", "p95", "WAL/tx", "tps range"], rows),
    verdictLine(figures),
  ].join("\n");
}

/** Max − min over the median, as a percentage: how much the shared machine moved the figure. */
function spreadPercent(w: WorkloadFigures): number {
  return Math.round(((w.tpsMax - w.tpsMin) / w.medianTps) * 100);
}

function reading(figures: JoinFigures, mode: Mode): string {
  const { raw, floor, join, add_job: addJob } = figures.workloads;
  const paragraphs: string[] = [];
  paragraphs.push(
    `\`waitroom.join()\` ran at ${formatRatio(join.vsRaw.median)} the rate of a plain INSERT (median ${formatCount(join.medianTps)} ` +
      `against ${formatCount(raw.medianTps)} tps; dividing those two medians gives ${formatRatio(join.vsRaw.ofMedians)}), so the ` +
      `target of ≥ ${formatRatio(figures.target.joinToRaw)} is ` +
      (figures.target.met
        ? "**met**."
        : `**not met**: it would take ≈ ${formatCount(raw.medianTps * figures.target.joinToRaw)} joins per second at this INSERT rate.`) +
      ` Each join wrote ${formatBytes(join.medianWalBytesPerTransaction)} of WAL against ${formatBytes(raw.medianWalBytesPerTransaction)} ` +
      `for the INSERT (${formatRatio(figures.walRatios.joinToRaw)}), and its median latency was ${formatMs(join.medianLatencyP50Ms)} ` +
      `against ${formatMs(raw.medianLatencyP50Ms)}.`,
  );
  paragraphs.push(
    `The floor — the two rows every join writes, its ticket and the ticket's ledger row, inserted by one plain ` +
      `statement with none of join's checks — ran at ${formatRatio(floor.vsRaw.median)} of the INSERT rate ` +
      `(${formatBytes(floor.medianWalBytesPerTransaction)} of WAL per transaction), and join at ` +
      `${formatRatio(figures.ratios.joinToFloor)} of the floor. ` +
      (floor.vsRaw.median < figures.target.joinToRaw
        ? "The floor itself is below the target on this machine: no join that writes those two rows can meet it here."
        : "The floor clears the target on this machine: the gap is join's own work."),
  );
  paragraphs.push(
    `For scale, graphile-worker's \`add_job\` (a plpgsql wrapper around \`add_jobs\`: an upsert of the task name, ` +
      `a job row with its indexes, and a NOTIFY on every call) ran at ${formatRatio(addJob.vsRaw.median)} of the INSERT rate ` +
      `with ${formatBytes(addJob.medianWalBytesPerTransaction)} of WAL per transaction.`,
  );
  const perRound = range(join.vsRaw.perRound);
  paragraphs.push(
    `Noise: throughput moved between rounds by ${spreadPercent(raw)} % (raw), ${spreadPercent(floor)} % (floor), ` +
      `${spreadPercent(join)} % (join) and ` +
      `${spreadPercent(addJob)} % (add_job) of the median (max − min); join/raw, round by round, ranged ` +
      `${formatRatio(perRound.min)}–${formatRatio(perRound.max)}. WAL per transaction barely moves between rounds: ` +
      "it is the steadier figure when comparing versions of `join()`." +
      (mode === "quick" ? " This was a quick run (seconds per workload): a smoke check, not a measurement." : ""),
  );
  const failed = WORKLOADS.filter((workload) => figures.workloads[workload].failedTransactions > 0);
  if (failed.length > 0) {
    paragraphs.push(`**Failed transactions** were reported for: ${failed.join(", ")}; the figures above exclude them.`);
  }
  return paragraphs.join("\n\n");
}

function compositionTable(figures: JoinFigures): string | undefined {
  const rows: string[][] = [];
  for (const workload of WORKLOADS) {
    for (const share of figures.workloads[workload].walComposition ?? []) {
      rows.push([
        workload,
        share.kind,
        share.recordsPerTransaction.toFixed(2),
        formatBytes(share.bytesPerTransaction),
        formatBytes(share.fullPageImageBytesPerTransaction),
      ]);
    }
  }
  if (rows.length === 0) return undefined;
  return markdownTable(
    ["workload", "WAL record type", "records / tx", "bytes / tx", "of which full-page images"],
    rows,
  );
}

async function markdownReport(figures: JoinFigures, mode: Mode): Promise<string> {
  const summary = markdownTable(
    ["workload", "statement", "median tps", "vs raw", "p50 latency", "p95 latency", "WAL / tx", "tps min–max"],
    WORKLOADS.map((workload) => {
      const w = figures.workloads[workload];
      return [`**${workload}**`, `\`${w.statement}\``, ...figureCells(w)];
    }),
  );
  const perRound = markdownTable(
    [
      "round",
      "raw tps",
      "floor tps",
      "join tps",
      "add_job tps",
      "floor / raw",
      "join / raw",
      "join / floor",
      "add_job / raw",
      "raw WAL / tx",
      "floor WAL / tx",
      "join WAL / tx",
    ],
    figures.workloads.raw.rounds.map((_, index) => {
      const at = (workload: Workload) => figures.workloads[workload].rounds[index] as Measurement;
      const ratio = (workload: Workload) => figures.workloads[workload].vsRaw.perRound[index] as number;
      return [
        String(index + 1),
        formatCount(at("raw").tps),
        formatCount(at("floor").tps),
        formatCount(at("join").tps),
        formatCount(at("add_job").tps),
        formatRatio(ratio("floor")),
        formatRatio(ratio("join")),
        formatRatio(figures.joinToFloorPerRound[index] as number),
        formatRatio(ratio("add_job")),
        formatBytes(at("raw").walBytesPerTransaction),
        formatBytes(at("floor").walBytesPerTransaction),
        formatBytes(at("join").walBytesPerTransaction),
      ];
    }),
  );
  const composition = compositionTable(figures);
  // The lead's explanation of the ratio: prose that survives regenerating BENCHMARKS.md.
  const notes = await readNotes("join");
  const warmup =
    figures.warmupSeconds > 0 ? `, after a ${figures.warmupSeconds} s warm-up per workload (not counted)` : "";

  return [
    "## 1. SQL join throughput",
    "",
    `Each workload is one statement run by \`pgbench --no-vacuum --client=${figures.clients} --jobs=${figures.threads} ` +
      `--time=${figures.secondsPerRun} --file=bench/sql/<workload>.sql --log\`, ${figures.rounds} rounds${warmup}, ` +
      "interleaved (raw, floor, join, add_job, raw, …) so drift on the shared machine hits all four alike. " +
      "Before every run: `VACUUM (ANALYZE)` then `CHECKPOINT` (autovacuum is off for the tables: vacuuming happens " +
      "between runs instead of being charged to whichever run it lands in). Figures are medians over rounds; ratios to raw " +
      "are medians of per-round ratios (each run against the raw run of its own round); latency percentiles come from " +
      "pgbench's per-transaction log; WAL per transaction is `pg_current_wal_lsn()` after the run minus before, over the " +
      "transactions pgbench counted.",
    "",
    "The database is set up as the app has it (migrations, `sql/`, graphile-worker schema). Room `bench` has capacity " +
      `1000 and nothing admits, so the queue only grows (${formatCount(figures.ticketsAtEnd)} tickets at the end); no ` +
      "graphile-worker runs, so jobs accumulate too.",
    "",
    `**join / raw INSERT = ${formatRatio(figures.ratios.joinToRaw)}** — target ≥ ${formatRatio(figures.target.joinToRaw)}: ` +
      `**${figures.target.met ? "met" : "not met"}**. The floor under it (its two rows, plain SQL) / raw INSERT = ` +
      `${formatRatio(figures.ratios.floorToRaw)}; join / floor = ${formatRatio(figures.ratios.joinToFloor)}. ` +
      `add_job / raw INSERT = ${formatRatio(figures.ratios.addJobToRaw)}.`,
    "",
    summary,
    "",
    "### Per round",
    "",
    perRound,
    ...(composition
      ? ["", "### WAL per transaction by record type (last round, from pg_walinspect)", "", composition]
      : []),
    "",
    "### Reading",
    "",
    reading(figures, mode),
    "",
    "### Why (notes: bench/notes/join.md)",
    "",
    notes,
  ].join("\n");
}

export const joinBenchmark: Benchmark<JoinFigures> = {
  id: "join",
  title: "SQL join throughput",
  async run(context): Promise<BenchReport<JoinFigures>> {
    const plan = PLANS[context.mode];
    const databaseUrl = await context.server.createAppDatabase("bench_join");
    return withClient(databaseUrl, async (control) => {
      await control.query("select waitroom.create_room('bench', 1000)");
      await control.query(RAW_INSERT_TABLE);
      const { rounds, compositions } = await measureAll(context, databaseUrl, control, plan);
      const tickets = await control.query<{ count: string }>("select count(*) from waitroom.tickets");

      const workloads = {} as Record<Workload, WorkloadFigures>;
      for (const workload of WORKLOADS) {
        const statement = await statementOf(workload);
        workloads[workload] = summarise(statement, rounds[workload], rounds.raw, compositions[workload] ?? null);
      }
      const joinToRaw = workloads.join.vsRaw.median;
      const joinToFloorPerRound = tpsRatiosByRound(rounds.join, rounds.floor);
      const figures: JoinFigures = {
        clients: CLIENTS,
        threads: THREADS,
        rounds: plan.rounds,
        secondsPerRun: plan.secondsPerRun,
        warmupSeconds: plan.warmupSeconds,
        ticketsAtEnd: Number(tickets.rows[0]?.count ?? 0),
        workloads,
        joinToFloorPerRound,
        ratios: {
          joinToRaw,
          floorToRaw: workloads.floor.vsRaw.median,
          joinToFloor: median(joinToFloorPerRound),
          addJobToRaw: workloads.add_job.vsRaw.median,
        },
        walRatios: {
          joinToRaw: workloads.join.medianWalBytesPerTransaction / workloads.raw.medianWalBytesPerTransaction,
          addJobToRaw: workloads.add_job.medianWalBytesPerTransaction / workloads.raw.medianWalBytesPerTransaction,
        },
        target: { joinToRaw: TARGET_JOIN_TO_RAW, met: joinToRaw >= TARGET_JOIN_TO_RAW },
      };
      return {
        console: consoleReport(figures),
        markdown: await markdownReport(figures, context.mode),
        figures,
      };
    });
  },
};
