import type pg from "pg";
import { type ExplainedStatement, explainNested, slowestInside } from "./lib/explain.js";
import { formatCount, formatMs, formatRatio, markdownTable, textTable } from "./lib/format.js";
import { readNotes } from "./lib/notes.js";
import { type PgbenchRun, runPgbench } from "./lib/pgbench.js";
import { FILL_BATCH, FILL_CONNECTIONS, fillQueue, timeAdmit, timed } from "./lib/queue-fill.js";
import { withClient } from "./lib/server.js";
import { disableAutovacuum, RAW_INSERT_TABLE, type SqlWorkload, scriptFile, settle } from "./lib/sql-workloads.js";
import { median, quantile, range } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";

/*
 * Benchmark 3: admission. (a) One waitroom.admit() letting 10,000 queued
 * tickets in at once, against a bare UPDATE + INSERT doing the same row work
 * without plpgsql. (b) The scheduler's tick (waitroom.tick: admit, then
 * schedule the next tick) admitting a fixed number into freed seats while the
 * queue behind is 10k, 100k and 1M deep, with join latency at each depth.
 */

/** Product targets. */
/** The opening rush's target (issue 11), the same figure bench/rush.ts reports. */
const TARGET_ADMIT_MS = 150;
const TARGET_JOIN_P99_MS = 20;
/** "Roughly flat": the median tick at the deepest queue within this factor of the one at the shallowest. */
const TARGET_TICK_GROWTH = 2;

const DEPTH_ROOM = "bench"; // the room bench/sql/join.sql joins
const CLIENTS = 8;
const THREADS = 2;
/** Rooms never let a queued ticket go idle during the run (fills take minutes), and offers never lapse. */
const ROOM_SETTINGS = { idle_seconds: 86_400, claim_seconds: 3_600 };

type Plan = {
  admitSize: number;
  admitRounds: number;
  depths: number[];
  ticksPerDepth: number;
  seatsPerTick: number;
  /**
   * Join latency at each depth: pgbench at this offered rate (well under what the machine sustains, so
   * that the figure is the join's own latency, not queueing), in runs of joinSeconds, alternating with
   * the raw INSERT at the same rate, latencyRounds times each.
   */
  joinRate: number;
  joinSeconds: number;
  latencyRounds: number;
  /** Bound on the time spent growing the queue; past it the deeper depths are skipped. */
  fillBudgetSeconds: number;
};
const PLANS: Record<Mode, Plan> = {
  full: {
    admitSize: 10_000,
    admitRounds: 5,
    depths: [10_000, 100_000, 1_000_000],
    ticksPerDepth: 15,
    seatsPerTick: 100,
    joinRate: 300,
    joinSeconds: 4,
    latencyRounds: 2,
    fillBudgetSeconds: 240,
  },
  quick: {
    admitSize: 10_000,
    admitRounds: 2,
    depths: [2_000, 10_000, 30_000],
    ticksPerDepth: 5,
    seatsPerTick: 100,
    joinRate: 200,
    joinSeconds: 2,
    latencyRounds: 1,
    fillBudgetSeconds: 60,
  },
};

/* The baseline of the bulk admission: the same rows picked, flipped and logged by one plain statement. */
const RAW_QUEUE_TABLES = `
  create table raw_queue (
    id          bigint primary key,
    room_id     text not null,
    seq         bigint not null,
    status      text not null default 'queued',
    admitted_at timestamptz
  );
  create index raw_queue_order on raw_queue (room_id, seq) where status = 'queued';
  create table raw_ledger (
    id         bigint generated always as identity primary key,
    ticket_id  bigint not null,
    type       text not null,
    created_at timestamptz not null default now()
  )`;
const RAW_ADMIT = `
  with picked as (
    select id from raw_queue
     where room_id = $1 and status = 'queued'
     order by seq
     limit $2
       for update skip locked
  ), done as (
    update raw_queue q set status = 'admitted', admitted_at = now()
      from picked where q.id = picked.id
    returning q.id
  )
  insert into raw_ledger (ticket_id, type) select id, 'admitted' from done`;

type AdmitRound = { admitMs: number; baselineMs: number; admitted: number; fillSeconds: number };

export type StatementShare = {
  text: string;
  /** Calls waitroom functions: its time includes theirs (listed separately). */
  wrapper: boolean;
  ms: number;
  buffers: number;
  widestScan: string | null;
};

export type DepthFigures = {
  depth: number;
  /** Queued tickets when the ticks ran (the target depth, unless the fill bound stopped short). */
  queued: number;
  tickMs: { median: number; p90: number; min: number; max: number; samples: number[] };
  admittedPerTick: number;
  /** Medians over the latency rounds. */
  join: { rate: number; tps: number; p50Ms: number; p99Ms: number };
  raw: { rate: number; tps: number; p50Ms: number; p99Ms: number };
  /** One more tick under auto_explain: its slowest statements. */
  explainedTickMs: number;
  slowest: StatementShare[];
};

export type AdmissionFigures = {
  admit: {
    size: number;
    rounds: AdmitRound[];
    medianMs: number;
    minMs: number;
    maxMs: number;
    baselineMedianMs: number;
    /** Median of per-round admit / baseline. */
    ratioToBaseline: number;
    explainedMs: number;
    slowest: StatementShare[];
    target: { ms: number; met: boolean };
  };
  fill: { joins: number; seconds: number; perSecond: number; budgetSeconds: number; stoppedShort: boolean };
  depths: DepthFigures[];
  ticks: { growth: number; target: { growth: number; met: boolean } };
  joinP99: { depth: number; ms: number; target: { ms: number; met: boolean } };
};

function shares(statements: ExplainedStatement[], count: number): StatementShare[] {
  return slowestInside(statements, count).map((statement) => ({
    text: statement.text.length > 160 ? `${statement.text.slice(0, 159)}…` : statement.text,
    wrapper: statement.wrapper,
    ms: statement.durationMs,
    buffers: statement.sharedHit + statement.sharedRead,
    widestScan: statement.widestScan
      ? `${statement.widestScan.node}: ${formatCount(statement.widestScan.rows)} rows` +
        (statement.widestScan.removed > 0 ? `, ${formatCount(statement.widestScan.removed)} filtered out` : "")
      : null,
  }));
}

async function queuedIn(control: pg.Client, room: string): Promise<number> {
  const { rows } = await control.query<{ count: string }>(
    "select count(*) from waitroom.tickets where room_id = $1 and status = 'queued'",
    [room],
  );
  return Number(rows[0]?.count ?? 0);
}

async function measureAdmit(context: BenchContext, databaseUrl: string, control: pg.Client, plan: Plan) {
  const { say, signal } = context;
  const rounds: AdmitRound[] = [];
  let explained: ExplainedStatement[] = [];
  let explainedMs = 0;
  for (let round = 1; round <= plan.admitRounds; round++) {
    const room = `admit-${round}`;
    await control.query("select waitroom.create_room($1, $2, $3)", [room, plan.admitSize, ROOM_SETTINGS]);
    const fill = await fillQueue(databaseUrl, room, plan.admitSize, Number.POSITIVE_INFINITY, signal);
    await control.query("insert into raw_queue (id, room_id, seq) select g, $1, g from generate_series(1, $2) g", [
      room,
      plan.admitSize,
    ]);
    await settle(control);
    // Alternate which goes first, so neither always runs right after the checkpoint.
    const runBaseline = () => timed(() => control.query(RAW_ADMIT, [room, plan.admitSize]));
    const runAdmit = () => timeAdmit(control, room);
    let baseline: Awaited<ReturnType<typeof runBaseline>>;
    let admit: Awaited<ReturnType<typeof runAdmit>>;
    if (round % 2 === 1) {
      baseline = await runBaseline();
      admit = await runAdmit();
    } else {
      admit = await runAdmit();
      baseline = await runBaseline();
    }
    const { admitted } = admit;
    rounds.push({ admitMs: admit.ms, baselineMs: baseline.ms, admitted, fillSeconds: fill.seconds });
    say(
      `round ${round}/${plan.admitRounds}  admit ${formatCount(admitted)} in ${formatMs(admit.ms)}` +
        `  (bare UPDATE + INSERT ${formatMs(baseline.ms)}; filled in ${fill.seconds.toFixed(1)} s)`,
    );
    if (round === plan.admitRounds) {
      // Once more, under auto_explain, to say where the time goes: a fresh room of the same size.
      const again = `admit-${round}-explained`;
      await control.query("select waitroom.create_room($1, $2, $3)", [again, plan.admitSize, ROOM_SETTINGS]);
      await fillQueue(databaseUrl, again, plan.admitSize, Number.POSITIVE_INFINITY, signal);
      await settle(control);
      const run = await timed(() => explainNested(control, "select count(*) from waitroom.admit($1)", [again]));
      explained = run.value;
      explainedMs = run.ms;
      await control.query("select waitroom.delete_room($1)", [again]);
    }
    await control.query("select waitroom.delete_room($1)", [room]);
    await control.query("truncate raw_queue, raw_ledger");
  }
  return { rounds, explained, explainedMs };
}

async function measureDepths(context: BenchContext, databaseUrl: string, control: pg.Client, plan: Plan) {
  const { say, signal, server, pgbench } = context;
  await control.query("select waitroom.create_room($1, $2, $3)", [DEPTH_ROOM, plan.seatsPerTick, ROOM_SETTINGS]);
  const fillDeadline = performance.now() + plan.fillBudgetSeconds * 1000;
  const fill = { joins: 0, seconds: 0, stoppedShort: false };
  const depths: DepthFigures[] = [];
  let runNumber = 0;

  const latency = async (workload: SqlWorkload, rate: number): Promise<PgbenchRun> => {
    await control.query("checkpoint");
    return runPgbench({
      pgbench,
      databaseUrl,
      scriptFile: scriptFile(workload),
      clients: CLIENTS,
      threads: THREADS,
      seconds: plan.joinSeconds,
      workDir: server.workDir,
      label: `admission-${workload}-${++runNumber}`,
      signal,
      rate,
    });
  };
  // Between ticks, untimed: the admitted leave (one UPDATE, what `leave` does to their rows, without
  // its ledger rows and wake-ups) and as many new tickets join, so every tick finds the same depth.
  const freeAndRefill = async () => {
    await control.query(
      `update waitroom.tickets set status = 'left', ended_at = now(), end_reason = 'left'
        where room_id = $1 and status = 'admitted'`,
      [DEPTH_ROOM],
    );
    await control.query("select count(*) from (select waitroom.join($1) from generate_series(1, $2)) joined", [
      DEPTH_ROOM,
      plan.seatsPerTick,
    ]);
  };
  const tick = async () => {
    const { ms, value } = await timed(() =>
      control.query<{ admitted: number }>("select waitroom.tick($1) as admitted", [DEPTH_ROOM]),
    );
    return { ms, admitted: Number(value.rows[0]?.admitted ?? 0) };
  };

  for (const depth of plan.depths) {
    const missing = depth - (await queuedIn(control, DEPTH_ROOM));
    if (missing > 0) {
      if (performance.now() >= fillDeadline) {
        fill.stoppedShort = true;
        say(`depth ${formatCount(depth)}: skipped, the fill bound of ${plan.fillBudgetSeconds} s is spent`);
        break;
      }
      const grown = await fillQueue(databaseUrl, DEPTH_ROOM, missing, fillDeadline, signal);
      fill.joins += grown.joined;
      fill.seconds += grown.seconds;
      if (grown.joined < missing) fill.stoppedShort = true;
      say(
        `depth ${formatCount(depth)}: ${formatCount(grown.joined)} joins in ${grown.seconds.toFixed(1)} s ` +
          `(${formatCount(grown.joined / grown.seconds)}/s)${grown.joined < missing ? ", stopped by the fill bound" : ""}`,
      );
    }
    const settling = await timed(() => settle(control));
    const queued = await queuedIn(control, DEPTH_ROOM);
    say(`depth ${formatCount(queued)} queued; vacuum + checkpoint ${(settling.ms / 1000).toFixed(1)} s`);

    // The first tick of the room fills its empty seats and is not counted; later depths start full.
    if (depths.length === 0) await tick();
    const samples: number[] = [];
    const admittedCounts: number[] = [];
    for (let i = 0; i < plan.ticksPerDepth; i++) {
      await freeAndRefill();
      const { ms, admitted } = await tick();
      samples.push(ms);
      admittedCounts.push(admitted);
    }
    await freeAndRefill();
    const explained = await timed(() => explainNested(control, "select waitroom.tick($1)", [DEPTH_ROOM]));

    // Join latency at this depth, against the raw INSERT at the same offered rate, interleaved.
    const runs: Record<"raw" | "join", PgbenchRun[]> = { raw: [], join: [] };
    for (let round = 0; round < plan.latencyRounds; round++) {
      runs.raw.push(await latency("raw", plan.joinRate));
      runs.join.push(await latency("join", plan.joinRate));
    }
    const summary = (of: PgbenchRun[]) => ({
      rate: plan.joinRate,
      tps: median(of.map((run) => run.tps)),
      p50Ms: median(of.map((run) => run.latencyP50Ms)),
      p99Ms: median(of.map((run) => run.latencyP99Ms)),
    });
    const raw = summary(runs.raw);
    const join = summary(runs.join);
    const { min, max } = range(samples);
    const figures: DepthFigures = {
      depth,
      queued,
      tickMs: { median: median(samples), p90: quantile(samples, 0.9), min, max, samples },
      admittedPerTick: median(admittedCounts),
      join,
      raw,
      explainedTickMs: explained.ms,
      slowest: shares(explained.value, 5),
    };
    depths.push(figures);
    say(
      `depth ${formatCount(queued)}: tick (admits ${figures.admittedPerTick}) median ${formatMs(figures.tickMs.median)}` +
        ` (${formatMs(min)}–${formatMs(max)}); join p99 ${formatMs(join.p99Ms)} at ${plan.joinRate}/s` +
        ` (raw INSERT p99 ${formatMs(raw.p99Ms)})`,
    );
  }
  return { depths, fill };
}

function consoleReport(figures: AdmissionFigures): string {
  const { admit } = figures;
  const rows = figures.depths.map((d) => [
    formatCount(d.queued),
    formatMs(d.tickMs.median),
    `${formatMs(d.tickMs.min)}–${formatMs(d.tickMs.max)}`,
    String(d.admittedPerTick),
    formatMs(d.join.p50Ms),
    formatMs(d.join.p99Ms),
    formatMs(d.raw.p99Ms),
  ]);
  return [
    `Admission — admit ${formatCount(admit.size)} queued tickets (median of ${admit.rounds.length}): ` +
      `${formatMs(admit.medianMs)} (target < ${admit.target.ms} ms: ${admit.target.met ? "met" : "NOT met"}); ` +
      `bare UPDATE + INSERT ${formatMs(admit.baselineMedianMs)}`,
    textTable(["queued", "tick median", "tick range", "admits", "join p50", "join p99", "raw p99"], rows),
    `tick growth ${formatRatio(figures.ticks.growth)} from the shallowest to the deepest queue (target ≤ ` +
      `${formatRatio(figures.ticks.target.growth)}: ${figures.ticks.target.met ? "met" : "NOT met"}); join p99 at ` +
      `${formatCount(figures.joinP99.depth)} = ${formatMs(figures.joinP99.ms)} (target < ${figures.joinP99.target.ms} ms: ` +
      `${figures.joinP99.target.met ? "met" : "NOT met"})`,
    `queue filled with ${formatCount(figures.fill.joins)} joins in ${figures.fill.seconds.toFixed(0)} s ` +
      `(${formatCount(figures.fill.perSecond)}/s)${figures.fill.stoppedShort ? ", stopped short by its bound" : ""}`,
  ].join("\n");
}

function statementTable(statements: StatementShare[]): string {
  return markdownTable(
    ["statement (inside the call)", "time", "buffers", "widest scan"],
    statements.map((s) => [
      // A | in SQL would end the table cell.
      `\`${(s.text.length > 72 ? `${s.text.slice(0, 71)}…` : s.text).replaceAll("|", "\\|")}\`` +
        (s.wrapper ? " (calls waitroom functions: includes their time)" : ""),
      formatMs(s.ms),
      formatCount(s.buffers),
      s.widestScan ?? "",
    ]),
  );
}

async function markdownReport(figures: AdmissionFigures, plan: Plan, mode: Mode): Promise<string> {
  const { admit, ticks, joinP99, fill } = figures;
  const admitRounds = markdownTable(
    ["round", "waitroom.admit", "bare UPDATE + INSERT", "admit / bare", "admitted", "queue filled in"],
    admit.rounds.map((round, index) => [
      String(index + 1),
      formatMs(round.admitMs),
      formatMs(round.baselineMs),
      formatRatio(round.admitMs / round.baselineMs),
      formatCount(round.admitted),
      `${round.fillSeconds.toFixed(1)} s`,
    ]),
  );
  const depthTable = markdownTable(
    [
      "queued",
      "tick median",
      "tick p90",
      "tick min–max",
      "admitted / tick",
      `join p50 (${formatCount(plan.joinRate)}/s)`,
      "join p99",
      "raw INSERT p99",
      "tick under auto_explain",
    ],
    figures.depths.map((d) => [
      formatCount(d.queued),
      formatMs(d.tickMs.median),
      formatMs(d.tickMs.p90),
      `${formatMs(d.tickMs.min)}–${formatMs(d.tickMs.max)}`,
      String(d.admittedPerTick),
      formatMs(d.join.p50Ms),
      formatMs(d.join.p99Ms),
      formatMs(d.raw.p99Ms),
      formatMs(d.explainedTickMs),
    ]),
  );
  const perDepthExplain = figures.depths.flatMap((d) => [
    "",
    `Queue of ${formatCount(d.queued)} (one tick, ${formatMs(d.explainedTickMs)} with auto_explain's instrumentation):`,
    "",
    statementTable(d.slowest),
  ]);
  const shallowest = figures.depths[0];
  const deepest = figures.depths.at(-1);
  const notes = await readNotes("admission");
  const quickNote = mode === "quick" ? " This was a quick run (small queues, few samples): a smoke check." : "";
  return [
    "## 3. Admission",
    "",
    `**Bulk admission.** ${admit.rounds.length} rounds; each creates a room of capacity ${formatCount(admit.size)}, ` +
      `queues ${formatCount(admit.size)} tickets through \`waitroom.join\` ` +
      "(`select waitroom.join(room) from generate_series(1, n)`), runs `VACUUM (ANALYZE)` and `CHECKPOINT`, then times " +
      "`select count(*) from waitroom.admit(room)` from the client: one transaction that offers every ticket a seat, " +
      "writes its ledger row and NOTIFYs the batch. The same-run baseline does the same row work with no plpgsql: " +
      `one statement picking ${formatCount(admit.size)} queued rows of a bare table (primary key, partial order index) ` +
      "in order, updating them and inserting a ledger row each (both orders alternate by round). The room is " +
      "deleted after its round.",
    "",
    `**admit of ${formatCount(admit.size)}: median ${formatMs(admit.medianMs)}** (${formatMs(admit.minMs)}–${formatMs(admit.maxMs)}) — ` +
      `target < ${admit.target.ms} ms: **${admit.target.met ? "met" : "not met"}**. Bare UPDATE + INSERT: ` +
      `${formatMs(admit.baselineMedianMs)}; admit / bare = ${formatRatio(admit.ratioToBaseline)} (median of rounds).`,
    "",
    admitRounds,
    "",
    `Where the time goes (one more admit of ${formatCount(admit.size)} under auto_explain, ` +
      `${formatMs(admit.explainedMs)} with its instrumentation; the slowest statements inside):`,
    "",
    statementTable(admit.slowest),
    "",
    `**Ticks at depth.** Room \`${DEPTH_ROOM}\` has ${plan.seatsPerTick} seats; its queue is grown to ` +
      `${plan.depths.map(formatCount).join(" / ")} tickets through \`waitroom.join\` in bulk ` +
      `(${FILL_CONNECTIONS} connections, ${formatCount(FILL_BATCH)} joins per statement; the fill is bounded to ` +
      `${plan.fillBudgetSeconds} s in all), then vacuumed. At each depth, ${plan.ticksPerDepth} ticks are timed ` +
      `from the client: before each, untimed, the ${plan.seatsPerTick} admitted tickets are marked left (one ` +
      `UPDATE) and ${plan.seatsPerTick} new ones join, so every \`select waitroom.tick('${DEPTH_ROOM}')\` admits ` +
      `${plan.seatsPerTick} into freed seats with the same queue behind them. Then one more tick runs under ` +
      "auto_explain (`log_analyze`, `log_buffers`, `log_nested_statements`: EXPLAIN (ANALYZE, BUFFERS) of every " +
      "statement inside the plpgsql functions), and pgbench measures join latency at that depth at a fixed offered " +
      `rate well below saturation (\`--rate=${plan.joinRate} --client=${CLIENTS}\`, ${plan.joinSeconds} s; latency ` +
      "counted from each transaction's scheduled start), alternating with the raw INSERT at the same rate, " +
      `${plan.latencyRounds} run${plan.latencyRounds === 1 ? "" : "s"} each (medians); these joins deepen the queue ` +
      "a little. Autovacuum is off, as in sections 1 and 2.",
    "",
    `**Tick cost from ${formatCount(shallowest?.queued ?? 0)} to ${formatCount(deepest?.queued ?? 0)} queued: ` +
      `${formatMs(shallowest?.tickMs.median ?? Number.NaN)} → ${formatMs(deepest?.tickMs.median ?? Number.NaN)} ` +
      `(${formatRatio(ticks.growth)})** — target roughly flat (≤ ${formatRatio(ticks.target.growth)}): ` +
      `**${ticks.target.met ? "met" : "not met"}**. **Join p99 at ${formatCount(joinP99.depth)} queued: ` +
      `${formatMs(joinP99.ms)}** — target < ${joinP99.target.ms} ms: **${joinP99.target.met ? "met" : "not met"}**.`,
    "",
    depthTable,
    "",
    `Filling the queue took ${fill.seconds.toFixed(0)} s for ${formatCount(fill.joins)} joins ` +
      `(${formatCount(fill.perSecond)} joins per second on ${FILL_CONNECTIONS} connections)` +
      (fill.stoppedShort
        ? `; **the fill bound of ${fill.budgetSeconds} s stopped it before the deepest queue**, which is reported at the depth reached.`
        : ".") +
      quickNote,
    "",
    "Where a tick's time goes, by depth (the slowest statements inside one tick; time includes auto_explain's " +
      "instrumentation; buffers are shared hits + reads):",
    ...perDepthExplain,
    "",
    "### Why (notes: bench/notes/admission.md)",
    "",
    notes,
  ].join("\n");
}

export const admissionBenchmark: Benchmark<AdmissionFigures> = {
  id: "admission",
  title: "Admission: bulk admit, tick cost and join latency at depth",
  async run(context): Promise<BenchReport<AdmissionFigures>> {
    const plan = PLANS[context.mode];
    const databaseUrl = await context.server.createAppDatabase("bench_admission");
    return withClient(databaseUrl, async (control) => {
      await control.query(RAW_QUEUE_TABLES);
      await control.query(RAW_INSERT_TABLE);
      await disableAutovacuum(control);
      const admitted = await measureAdmit(context, databaseUrl, control, plan);
      // The admit rooms are gone; their dead rows must not weigh on the depth runs.
      await settle(control);
      const { depths, fill } = await measureDepths(context, databaseUrl, control, plan);
      const admitMs = admitted.rounds.map((round) => round.admitMs);
      const { min, max } = range(admitMs);
      const admitMedian = median(admitMs);
      const first = depths[0];
      const last = depths.at(-1);
      if (!first || !last) throw new Error("no queue depth was measured");
      const growth = last.tickMs.median / first.tickMs.median;
      const figures: AdmissionFigures = {
        admit: {
          size: plan.admitSize,
          rounds: admitted.rounds,
          medianMs: admitMedian,
          minMs: min,
          maxMs: max,
          baselineMedianMs: median(admitted.rounds.map((round) => round.baselineMs)),
          ratioToBaseline: median(admitted.rounds.map((round) => round.admitMs / round.baselineMs)),
          explainedMs: admitted.explainedMs,
          slowest: shares(admitted.explained, 6),
          target: { ms: TARGET_ADMIT_MS, met: admitMedian < TARGET_ADMIT_MS },
        },
        fill: {
          joins: fill.joins,
          seconds: fill.seconds,
          perSecond: fill.joins / Math.max(fill.seconds, 0.001),
          budgetSeconds: plan.fillBudgetSeconds,
          stoppedShort: fill.stoppedShort,
        },
        depths,
        ticks: { growth, target: { growth: TARGET_TICK_GROWTH, met: growth <= TARGET_TICK_GROWTH } },
        joinP99: {
          depth: last.queued,
          ms: last.join.p99Ms,
          target: { ms: TARGET_JOIN_P99_MS, met: last.join.p99Ms < TARGET_JOIN_P99_MS },
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
