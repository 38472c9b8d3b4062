import pg from "pg";
import { type BenchApp, startBenchApp } from "./lib/app.js";
import { formatMs, markdownTable, textTable } from "./lib/format.js";
import { readNotes } from "./lib/notes.js";
import { withClient } from "./lib/server.js";
import { SseReader } from "./lib/sse.js";
import { median, type Quantiles, quantiles } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";

/*
 * Benchmark 5: how long after the holder of the last seat leaves does the
 * next person in line hear that it is theirs. The real HTTP service and the
 * real scheduler (graphile-worker) run in this process; every queued ticket
 * holds an event stream open; the time runs from sending DELETE of the seated
 * ticket to the next ticket's stream delivering `event: admitted`.
 */

const TARGET_P99_MS = 100;
/** Pause between the claim and the leave: a person uses the seat a moment; it also lets the last fan-out settle. */
const THINK_MS = 50;
const EVENT_TIMEOUT_MS = 10_000;
/** NOTIFY → LISTEN round trips measured per round as the floor of the event path. */
const NOTIFY_SAMPLES = 50;

type Plan = { rounds: number; samplesPerRound: number; warmupPerRound: number };
const PLANS: Record<Mode, Plan> = {
  // 3 rooms × (70 + 3) leaves ≈ 220 samples, ~20 s.
  full: { rounds: 3, samplesPerRound: 70, warmupPerRound: 3 },
  quick: { rounds: 1, samplesPerRound: 15, warmupPerRound: 2 },
};

type Sample = {
  /** DELETE sent → `admitted` read from the next ticket's stream. */
  totalMs: number;
  /** DELETE sent → its 204 read. */
  deleteMs: number;
  /** Ledger timestamps split the total (null if the rows were not found). */
  toLeftMs: number | null;
  leftToAdmittedMs: number | null;
  admittedToClientMs: number | null;
};

export type LeaveAdmitFigures = {
  rounds: number;
  streamsPerRound: number;
  samples: number;
  latency: Quantiles;
  perRound: Array<{ samples: number; p50: number; p99: number; max: number }>;
  deleteAnswer: Quantiles;
  /** Medians of the three parts (ledger timestamps). */
  parts: { toLeftMs: number | null; leftToAdmittedMs: number | null; admittedToClientMs: number | null };
  notifyRoundTrip: Quantiles;
  /** Samples over the target, and the slowest one with its parts: where a tail comes from. */
  overTarget: number;
  slowest: Sample;
  target: { p99Ms: number; met: boolean };
};

type Ticket = { id: string; token: string; stream: SseReader };

/** Wall-clock milliseconds with sub-millisecond resolution, comparable with PostgreSQL's timestamps. */
const wallMs = (monotonic: number) => performance.timeOrigin + monotonic;

const medianOrNull = (values: (number | null)[]) => {
  const known = values.filter((value): value is number => value !== null);
  return known.length > 0 ? median(known) : null;
};

async function request(app: BenchApp, method: string, path: string, token?: string): Promise<Response> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(`${app.url}${path}`, { method, headers });
}

/** pg_notify from one connection until the other's LISTEN sees it: the floor under any event's delivery. */
async function notifyRoundTrips(databaseUrl: string, count: number): Promise<number[]> {
  const listener = new pg.Client({ connectionString: databaseUrl });
  const sender = new pg.Client({ connectionString: databaseUrl });
  await listener.connect();
  await sender.connect();
  try {
    await listener.query("listen bench_ping");
    const samples: number[] = [];
    for (let i = 0; i < count; i++) {
      const heard = new Promise<number>((resolve) => listener.once("notification", () => resolve(performance.now())));
      const sent = performance.now();
      await sender.query("select pg_notify('bench_ping', $1)", [String(i)]);
      samples.push((await heard) - sent);
    }
    return samples;
  } finally {
    await listener.end();
    await sender.end();
  }
}

async function runRound(
  context: BenchContext,
  app: BenchApp,
  control: pg.Client,
  room: string,
  plan: Plan,
  round: number,
): Promise<Sample[]> {
  const count = plan.warmupPerRound + plan.samplesPerRound + 1;
  // Paused while everyone joins and connects, so the first admission waits for all streams.
  await control.query("select waitroom.create_room($1, 1, $2)", [
    room,
    { mode: "paused", idle_seconds: 86_400, claim_seconds: 600, session_seconds: 3_600 },
  ]);
  const tickets: Ticket[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const response = await request(app, "POST", `/v1/rooms/${room}/tickets`);
      if (response.status !== 202) throw new Error(`join answered ${response.status}: ${await response.text()}`);
      const joined = (await response.json()) as { ticket_id: string; token: string; events_url: string };
      const stream = new SseReader(`${app.url}${joined.events_url}?token=${encodeURIComponent(joined.token)}`);
      tickets.push({ id: joined.ticket_id, token: joined.token, stream });
    }
    for (const ticket of tickets) await ticket.stream.next("state", EVENT_TIMEOUT_MS);
    await control.query('select waitroom.configure_room($1, \'{"mode": "open"}\')', [room]);
    await tickets[0]?.stream.next("admitted", EVENT_TIMEOUT_MS);

    const measured: Array<{ sent: number; deleteMs: number; arrived: number; leaving: Ticket; next: Ticket }> = [];
    for (let i = 0; i + 1 < tickets.length; i++) {
      context.signal.throwIfAborted();
      const leaving = tickets[i] as Ticket;
      const next = tickets[i + 1] as Ticket;
      const claim = await request(app, "POST", `/v1/tickets/${leaving.id}/claim`, leaving.token);
      if (claim.status !== 200) throw new Error(`claim answered ${claim.status}: ${await claim.text()}`);
      await claim.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, THINK_MS));
      const from = next.stream.messages.length;
      const sent = performance.now();
      const left = await request(app, "DELETE", `/v1/tickets/${leaving.id}`, leaving.token);
      const deleteMs = performance.now() - sent;
      if (left.status !== 204) throw new Error(`leave answered ${left.status}: ${await left.text()}`);
      const admitted = await next.stream.next("admitted", EVENT_TIMEOUT_MS, from);
      if (i >= plan.warmupPerRound) measured.push({ sent, deleteMs, arrived: admitted.at, leaving, next });
    }
    context.say(`round ${round}: ${measured.length} leaves measured on ${tickets.length} open streams`);

    // Split each sample at the ledger's timestamps: leave's transaction time, and admit's clock after its lock.
    const { rows } = await control.query<{ ticket_id: string; type: string; at_ms: number }>(
      `select ticket_id::text, type, extract(epoch from created_at) * 1000 as at_ms
         from waitroom.events where room_id = $1 and type in ('left', 'admitted')`,
      [room],
    );
    const stamp = new Map(rows.map((row) => [`${row.type}:${row.ticket_id}`, Number(row.at_ms)]));
    return measured.map(({ sent, deleteMs, arrived, leaving, next }) => {
      const leftAt = stamp.get(`left:${leaving.id}`);
      const admittedAt = stamp.get(`admitted:${next.id}`);
      return {
        totalMs: arrived - sent,
        deleteMs,
        toLeftMs: leftAt === undefined ? null : leftAt - wallMs(sent),
        leftToAdmittedMs: leftAt === undefined || admittedAt === undefined ? null : admittedAt - leftAt,
        admittedToClientMs: admittedAt === undefined ? null : wallMs(arrived) - admittedAt,
      };
    });
  } finally {
    for (const ticket of tickets) ticket.stream.close();
    await control.query("select waitroom.delete_room($1)", [room]).catch(() => {});
  }
}

function consoleReport(figures: LeaveAdmitFigures): string {
  const { latency, parts, notifyRoundTrip, deleteAnswer } = figures;
  return [
    `Leave → next admitted event — ${figures.samples} samples, ${figures.rounds} round(s) of ${figures.streamsPerRound} open streams`,
    textTable(
      ["measure", "p50", "p90", "p99", "max"],
      [
        ["DELETE → admitted", ...[latency.p50, latency.p90, latency.p99, latency.max].map(formatMs)],
        ["DELETE → 204", ...[deleteAnswer.p50, deleteAnswer.p90, deleteAnswer.p99, deleteAnswer.max].map(formatMs)],
        [
          "NOTIFY → LISTEN",
          ...[notifyRoundTrip.p50, notifyRoundTrip.p90, notifyRoundTrip.p99, notifyRoundTrip.max].map(formatMs),
        ],
      ],
    ),
    `median parts: request → leave ${fmt(parts.toLeftMs)}, leave → admit ${fmt(parts.leftToAdmittedMs)}, ` +
      `admit → client ${fmt(parts.admittedToClientMs)}`,
    `slowest ${formatMs(figures.slowest.totalMs)}: request → leave ${fmt(figures.slowest.toLeftMs)}, leave → admit ` +
      `${fmt(figures.slowest.leftToAdmittedMs)}, admit → client ${fmt(figures.slowest.admittedToClientMs)}; ` +
      `${figures.overTarget} of ${figures.samples} samples ≥ ${figures.target.p99Ms} ms`,
    `p99 = ${formatMs(latency.p99)} (target < ${figures.target.p99Ms} ms: ${figures.target.met ? "met" : "NOT met"})`,
  ].join("\n");
}

const fmt = (ms: number | null) => (ms === null ? "n/a" : formatMs(ms));

async function markdownReport(figures: LeaveAdmitFigures, plan: Plan, mode: Mode): Promise<string> {
  const { latency, parts, notifyRoundTrip, deleteAnswer } = figures;
  const row = (name: string, q: Quantiles) => [name, ...[q.p50, q.p90, q.p99, q.max].map(formatMs)];
  const summary = markdownTable(
    ["measure", "p50", "p90", "p99", "max"],
    [
      row("**DELETE sent → next ticket's `admitted` read**", latency),
      row("DELETE sent → its 204 read", deleteAnswer),
      row("baseline: `pg_notify` → LISTEN on another connection", notifyRoundTrip),
    ],
  );
  const perRound = markdownTable(
    ["round", "samples", "p50", "p99", "max"],
    figures.perRound.map((r, index) => [
      String(index + 1),
      String(r.samples),
      formatMs(r.p50),
      formatMs(r.p99),
      formatMs(r.max),
    ]),
  );
  const notes = await readNotes("leave-admit");
  return [
    "## 5. Leave → next client's `admitted` event",
    "",
    "The real HTTP service and the real scheduler (`startWorker`: graphile-worker, 4 concurrent jobs) run inside " +
      `the benchmark's Node process on the embedded PostgreSQL. Each of ${figures.rounds} round${figures.rounds === 1 ? "" : "s"} creates a room ` +
      `with 1 seat, paused; ${figures.streamsPerRound} tickets join over HTTP and each opens its event stream ` +
      "(`GET /v1/tickets/{id}/events`, read with fetch's streaming body, in this process too); then the room opens. " +
      "Repeatedly, the ticket holding the seat claims it, waits " +
      `${THINK_MS} ms, and leaves with \`DELETE /v1/tickets/{id}\`; the sample is the time from sending that ` +
      "DELETE to reading `event: admitted` on the next ticket's stream. In between, the leave's transaction wakes " +
      "the room's admission job, graphile-worker picks it up and runs `waitroom.tick`, whose NOTIFY reaches the " +
      "service's LISTEN connection, which writes the event to the stream (and re-reads every stream's position " +
      `with one query). The first ${plan.warmupPerRound} leaves of a round are not counted. The parts come from ` +
      "the ledger: the `left` row's time (the leave transaction's start) and the `admitted` row's time (admit's " +
      "clock after its lock), against the client's wall clock on the same machine. The baseline, measured in the " +
      `same rounds, is ${NOTIFY_SAMPLES} bare NOTIFY → LISTEN round trips between two connections: the floor under ` +
      "any event's delivery.",
    "",
    `**p99 = ${formatMs(latency.p99)}** over ${figures.samples} leaves (p50 ${formatMs(latency.p50)}) — target ` +
      `< ${figures.target.p99Ms} ms: **${figures.target.met ? "met" : "not met"}**.` +
      (mode === "quick" ? " This was a quick run (few samples): a smoke check, not a measurement." : ""),
    "",
    summary,
    "",
    `Median parts of a sample: request → leave's transaction ${fmt(parts.toLeftMs)}; leave → admission (commit, ` +
      `wake-up NOTIFY, graphile-worker picking the job, tick up to admit's lock) ${fmt(parts.leftToAdmittedMs)}; ` +
      `admission → event read by the client (admit's work and commit, NOTIFY, LISTEN, stream write) ${fmt(parts.admittedToClientMs)}.`,
    "",
    perRound,
    "",
    `${figures.overTarget} of ${figures.samples} samples took ${figures.target.p99Ms} ms or more. The slowest, ` +
      `${formatMs(figures.slowest.totalMs)}: request → leave ${fmt(figures.slowest.toLeftMs)}, leave → admission ` +
      `${fmt(figures.slowest.leftToAdmittedMs)}, admission → client ${fmt(figures.slowest.admittedToClientMs)} ` +
      `(its DELETE answered in ${formatMs(figures.slowest.deleteMs)}).`,
    "",
    "### Why (notes: bench/notes/leave-admit.md)",
    "",
    notes,
  ].join("\n");
}

export const leaveAdmitBenchmark: Benchmark<LeaveAdmitFigures> = {
  id: "leaveAdmit",
  title: "Leave → next admitted event latency",
  async run(context): Promise<BenchReport<LeaveAdmitFigures>> {
    const plan = PLANS[context.mode];
    const databaseUrl = await context.server.createAppDatabase("bench_leave");
    const app = await startBenchApp({ databaseUrl, worker: true });
    try {
      return await withClient(databaseUrl, async (control) => {
        const rounds: Sample[][] = [];
        const notify: number[] = [];
        for (let round = 1; round <= plan.rounds; round++) {
          notify.push(...(await notifyRoundTrips(databaseUrl, NOTIFY_SAMPLES)));
          rounds.push(await runRound(context, app, control, `leave-${round}`, plan, round));
        }
        const all = rounds.flat();
        const latency = quantiles(all.map((sample) => sample.totalMs));
        const figures: LeaveAdmitFigures = {
          rounds: plan.rounds,
          streamsPerRound: plan.warmupPerRound + plan.samplesPerRound + 1,
          samples: all.length,
          latency,
          perRound: rounds.map((samples) => {
            const q = quantiles(samples.map((sample) => sample.totalMs));
            return { samples: samples.length, p50: q.p50, p99: q.p99, max: q.max };
          }),
          deleteAnswer: quantiles(all.map((sample) => sample.deleteMs)),
          parts: {
            toLeftMs: medianOrNull(all.map((sample) => sample.toLeftMs)),
            leftToAdmittedMs: medianOrNull(all.map((sample) => sample.leftToAdmittedMs)),
            admittedToClientMs: medianOrNull(all.map((sample) => sample.admittedToClientMs)),
          },
          notifyRoundTrip: quantiles(notify),
          overTarget: all.filter((sample) => sample.totalMs >= TARGET_P99_MS).length,
          slowest: all.reduce((worst, sample) => (sample.totalMs > worst.totalMs ? sample : worst)),
          target: { p99Ms: TARGET_P99_MS, met: latency.p99 < TARGET_P99_MS },
        };
        return {
          console: consoleReport(figures),
          markdown: await markdownReport(figures, plan, context.mode),
          figures,
        };
      });
    } finally {
      await app.stop();
    }
  },
};
