import type pg from "pg";
import { seededRandom } from "../test/helpers/random.js";
import { markdownTable, textTable } from "./lib/format.js";
import { readNotes } from "./lib/notes.js";
import { withClient } from "./lib/server.js";
import { median, quantile } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";

/*
 * Benchmark 6: how good is the ETA a waiting ticket is shown. Pure SQL on a
 * pinned clock (p_now): M tickets join at t0, then every `tickSeconds` of
 * simulated time waitroom.admit(room, k, now) admits k of them. Once the
 * five-minute rate window is full, at a random instant inside each tick cycle
 * the tickets standing at positions 10, 50 and 200 are read with
 * waitroom.positions(room, ids, now); each read is later compared with when
 * that ticket was actually admitted (its admitted_at).
 */

const TARGET_MEDIAN_ERROR = 0.15;
/** The rate window of waitroom.positions: observations start once it is full of admissions. */
const WARM_SECONDS = 300;
const OBSERVED_POSITIONS = [10, 50, 200] as const;

type Scenario = {
  name: string;
  describe: string;
  tickSeconds: number;
  /** Tickets admitted at a tick: fixed, or drawn uniformly in [min, max]. */
  perTick: { min: number; max: number };
};

const SCENARIOS: readonly Scenario[] = [
  {
    name: "steady",
    describe: "5 admitted every 2 s (150 / min)",
    tickSeconds: 2,
    perTick: { min: 5, max: 5 },
  },
  {
    name: "steady-fast",
    describe: "50 admitted every 5 s (600 / min)",
    tickSeconds: 5,
    perTick: { min: 50, max: 50 },
  },
  {
    name: "varying",
    describe: "1–9 admitted every 2 s, uniformly at random (mean 150 / min)",
    tickSeconds: 2,
    perTick: { min: 1, max: 9 },
  },
];

type Plan = { observedTicks: number };
const PLANS: Record<Mode, Plan> = {
  full: { observedTicks: 300 },
  quick: { observedTicks: 40 },
};

type Observation = {
  position: number;
  observedAt: number;
  eta: number | null;
  low: number | null;
  high: number | null;
  /** Seconds from the observation to the ticket's admission. */
  actual: number;
};

export type EtaPositionFigures = {
  position: number;
  observations: number;
  medianAbsError: number;
  p90AbsError: number;
  /** Median of (eta − actual) / actual: positive = ETA too long. */
  medianSignedError: number;
  inRange: number;
};

export type EtaScenarioFigures = {
  name: string;
  describe: string;
  tickSeconds: number;
  perTick: { min: number; max: number };
  tickets: number;
  observations: number;
  /** Observations without an ETA (no recent admission): none expected once warm. */
  withoutEta: number;
  medianAbsError: number;
  p90AbsError: number;
  medianSignedError: number;
  /** Share of observations whose actual wait fell inside [eta_low_seconds, eta_high_seconds]. */
  inRange: number;
  medianRangeWidthRatio: number;
  byPosition: EtaPositionFigures[];
  target: { medianAbsError: number; met: boolean };
};

export type EtaFigures = { scenarios: EtaScenarioFigures[]; target: { medianAbsError: number; met: boolean } };

const T0 = Date.parse("2030-01-01T00:00:00Z");
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

async function runScenario(
  client: pg.Client,
  scenario: Scenario,
  plan: Plan,
  seed: number,
): Promise<{ observations: Observation[]; tickets: number }> {
  const random = seededRandom(seed);
  const room = `eta-${scenario.name}`;
  const warmTicks = Math.ceil(WARM_SECONDS / scenario.tickSeconds);
  const maxPosition = Math.max(...OBSERVED_POSITIONS);
  // Enough tickets for the last observation at the deepest position to be admitted, with margin.
  const drainTicks = Math.ceil(maxPosition / scenario.perTick.min) + 5;
  const totalTicks = warmTicks + plan.observedTicks + drainTicks;
  const tickets = Math.ceil((warmTicks + plan.observedTicks) * ((scenario.perTick.min + scenario.perTick.max) / 2));
  const total = tickets + maxPosition + scenario.perTick.max * drainTicks;

  await client.query("select waitroom.create_room($1, $2, $3, $4)", [
    room,
    total,
    { mode: "open", idle_seconds: 86_400, claim_seconds: 86_400, session_seconds: 86_400 },
    at(0),
  ]);
  try {
    // join runs once per row (offset 0 keeps the planner from flattening the subquery); seq follows the series.
    const { rows: joined } = await client.query<{ ticket_id: string }>(
      `select (j).ticket_id::text as ticket_id
         from (select waitroom.join($1, null, 0, $2) as j from generate_series(1, $3::int) g order by g offset 0) s`,
      [room, at(0), total],
    );
    const { rows: order } = await client.query<{ id: string }>(
      "select id::text from waitroom.tickets where room_id = $1 order by seq",
      [room],
    );
    if (order.length !== joined.length) throw new Error("bulk join lost tickets");
    const ids = order.map((row) => row.id);

    let admittedSoFar = 0;
    const pending: Array<Omit<Observation, "actual"> & { ticket: string }> = [];
    for (let tick = 0; tick < totalTicks; tick++) {
      const now = tick * scenario.tickSeconds + 1; // first admission 1 s after the joins
      const k = scenario.perTick.min + Math.floor(random() * (scenario.perTick.max - scenario.perTick.min + 1));
      const { rows } = await client.query<{ n: number }>("select count(*)::int as n from waitroom.admit($1, $2, $3)", [
        room,
        k,
        at(now),
      ]);
      admittedSoFar += rows[0]?.n ?? 0;
      if (tick < warmTicks || tick >= warmTicks + plan.observedTicks) continue;
      // Somewhere inside the cycle before the next tick, as a client reading at any moment would.
      const observedAt = now + random() * scenario.tickSeconds;
      const asked = OBSERVED_POSITIONS.map((position) => ids[admittedSoFar + position - 1]).filter(
        (id): id is string => id !== undefined,
      );
      const { rows: read } = await client.query<{
        ticket_id: string;
        position: string | null;
        eta_seconds: number | null;
        eta_low_seconds: number | null;
        eta_high_seconds: number | null;
      }>(
        `select ticket_id::text, position, eta_seconds, eta_low_seconds, eta_high_seconds
           from waitroom.positions($1, $2::uuid[], $3)`,
        [room, asked, at(observedAt)],
      );
      for (const row of read) {
        if (row.position === null) continue;
        pending.push({
          ticket: row.ticket_id,
          position: Number(row.position),
          observedAt,
          eta: row.eta_seconds,
          low: row.eta_low_seconds,
          high: row.eta_high_seconds,
        });
      }
    }
    const { rows: admitted } = await client.query<{ id: string; at_s: number }>(
      "select id::text, extract(epoch from admitted_at) * 1000 as at_s from waitroom.tickets where room_id = $1 and admitted_at is not null",
      [room],
    );
    const admittedAt = new Map(admitted.map((row) => [row.id, (Number(row.at_s) - T0) / 1000]));
    const observations: Observation[] = [];
    for (const { ticket, ...observation } of pending) {
      const when = admittedAt.get(ticket);
      if (when === undefined) throw new Error(`ticket observed at position ${observation.position} was never admitted`);
      observations.push({ ...observation, actual: when - observation.observedAt });
    }
    return { observations, tickets: total };
  } finally {
    await client.query("select waitroom.delete_room($1)", [room]).catch(() => {});
  }
}

function summarise(observations: readonly Observation[]) {
  const withEta = observations.filter((o): o is Observation & { eta: number } => o.eta !== null);
  const relative = withEta.map((o) => (o.eta - o.actual) / o.actual);
  const absolute = relative.map(Math.abs);
  const inRange = observations.filter(
    (o) => o.low !== null && o.high !== null && o.actual >= o.low && o.actual <= o.high,
  ).length;
  const widths = withEta
    .filter((o) => o.low !== null && o.high !== null)
    .map((o) => ((o.high ?? 0) - (o.low ?? 0)) / o.actual);
  return {
    observations: observations.length,
    withoutEta: observations.length - withEta.length,
    medianAbsError: absolute.length > 0 ? median(absolute) : Number.NaN,
    p90AbsError: absolute.length > 0 ? quantile(absolute, 0.9) : Number.NaN,
    medianSignedError: relative.length > 0 ? median(relative) : Number.NaN,
    inRange: observations.length > 0 ? inRange / observations.length : 0,
    medianRangeWidthRatio: widths.length > 0 ? median(widths) : Number.NaN,
  };
}

const pct = (value: number) => (Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : "n/a");
const signedPct = (value: number) =>
  Number.isFinite(value) ? `${value >= 0 ? "+" : ""}${(value * 100).toFixed(1)}%` : "n/a";

function rows(figures: EtaFigures): string[][] {
  const out: string[][] = [];
  for (const s of figures.scenarios) {
    out.push([
      `${s.name} (all)`,
      String(s.observations),
      pct(s.medianAbsError),
      pct(s.p90AbsError),
      signedPct(s.medianSignedError),
      pct(s.inRange),
      pct(s.medianRangeWidthRatio),
    ]);
    for (const p of s.byPosition) {
      out.push([
        `${s.name} @ position ${p.position}`,
        String(p.observations),
        pct(p.medianAbsError),
        pct(p.p90AbsError),
        signedPct(p.medianSignedError),
        pct(p.inRange),
        "",
      ]);
    }
  }
  return out;
}

const HEADER = [
  "room",
  "observations",
  "median abs err",
  "p90 abs err",
  "median signed error",
  "actual wait in [low, high]",
  "range width / wait",
];

function consoleReport(figures: EtaFigures): string {
  const steady = figures.scenarios.filter((s) => s.perTick.min === s.perTick.max);
  return [
    "ETA accuracy (error relative to the actual wait)",
    textTable(HEADER, rows(figures)),
    `steady rooms' median |error|: ${steady.map((s) => `${s.name} ${pct(s.medianAbsError)}`).join(", ")} ` +
      `(target ≤ ${pct(TARGET_MEDIAN_ERROR)} in each: ${figures.target.met ? "met" : "NOT met"})`,
  ].join("\n");
}

async function markdownReport(figures: EtaFigures, plan: Plan, mode: Mode): Promise<string> {
  const notes = await readNotes("eta");
  const steady = figures.scenarios.filter((s) => s.perTick.min === s.perTick.max);
  const varying = figures.scenarios.filter((s) => s.perTick.min !== s.perTick.max);
  const worstSteady = Math.max(...steady.map((s) => s.medianAbsError));
  return [
    "## 6. ETA accuracy",
    "",
    "Pure SQL through one `pg` connection, on a pinned clock (every call gets `p_now`): a room with enough seats " +
      "that capacity never binds; M tickets join at t0 in one statement (`waitroom.join` over `generate_series`); " +
      "then every tick of simulated time `waitroom.admit(room, k, now)` admits the next k. Once the five-minute " +
      `rate window \`waitroom.positions\` estimates from is full (${WARM_SECONDS} s of simulated admissions), on each of ` +
      `${plan.observedTicks} ticks, at a uniformly random instant inside the cycle before the next tick, the tickets ` +
      `standing at positions ${OBSERVED_POSITIONS.join(", ")} are read with \`waitroom.positions(room, ids, now)\` ` +
      "(what a stream shows). Each read's `eta_seconds` is compared with that ticket's actual wait from the read to " +
      "its `admitted_at`: error = |eta − actual| / actual; the range check asks whether the actual wait fell inside " +
      "[`eta_low_seconds`, `eta_high_seconds`]. Rooms:",
    "",
    ...figures.scenarios.map(
      (s) => `- **${s.name}**: ${s.describe}; ${s.tickets.toLocaleString("en-US")} tickets, ${s.observations} reads.`,
    ),
    "",
    `**Median |error| in the steady rooms: ${steady.map((s) => `${s.name} ${pct(s.medianAbsError)}`).join(", ")}** — ` +
      `target ≤ ${pct(TARGET_MEDIAN_ERROR)}: **${figures.target.met ? "met" : "not met"}**` +
      (varying.length > 0
        ? `; in the varying room ${varying.map((s) => pct(s.medianAbsError)).join(", ")} (not a target, shown for honesty).`
        : ".") +
      (mode === "quick" ? " This was a quick run (few reads): a smoke check, not a measurement." : ""),
    "",
    markdownTable(HEADER, rows(figures)),
    "",
    `The worst steady room's median error is ${pct(worstSteady)}. "Median signed error" is (eta − actual) / actual: ` +
      'positive means the ETA promised a longer wait than happened. "Range width / wait" is the median of ' +
      "(eta_high − eta_low) / actual: how wide the stated range is for the precision it buys.",
    "",
    "### Why (notes: bench/notes/eta.md)",
    "",
    notes,
  ].join("\n");
}

export const etaBenchmark: Benchmark<EtaFigures> = {
  id: "eta",
  title: "ETA accuracy (simulated clock)",
  async run(context: BenchContext): Promise<BenchReport<EtaFigures>> {
    const plan = PLANS[context.mode];
    const databaseUrl = await context.server.createAppDatabase("bench_eta");
    const scenarios = await withClient(databaseUrl, async (client) => {
      const out: EtaScenarioFigures[] = [];
      for (const [index, scenario] of SCENARIOS.entries()) {
        context.signal.throwIfAborted();
        const started = Date.now();
        const { observations, tickets } = await runScenario(client, scenario, plan, 42 + index);
        const byPosition = OBSERVED_POSITIONS.map((position) => {
          const s = summarise(observations.filter((o) => o.position === position));
          return {
            position,
            observations: s.observations,
            medianAbsError: s.medianAbsError,
            p90AbsError: s.p90AbsError,
            medianSignedError: s.medianSignedError,
            inRange: s.inRange,
          };
        });
        const all = summarise(observations);
        out.push({
          name: scenario.name,
          describe: scenario.describe,
          tickSeconds: scenario.tickSeconds,
          perTick: scenario.perTick,
          tickets,
          ...all,
          byPosition,
          target: { medianAbsError: TARGET_MEDIAN_ERROR, met: all.medianAbsError <= TARGET_MEDIAN_ERROR },
        });
        context.say(
          `${scenario.name}: ${observations.length} reads, median |error| ${pct(all.medianAbsError)} (${Date.now() - started} ms)`,
        );
      }
      return out;
    });
    const steady = scenarios.filter((s) => s.perTick.min === s.perTick.max);
    const figures: EtaFigures = {
      scenarios,
      target: { medianAbsError: TARGET_MEDIAN_ERROR, met: steady.every((s) => s.target.met) },
    };
    return { console: consoleReport(figures), markdown: await markdownReport(figures, plan, context.mode), figures };
  },
};
