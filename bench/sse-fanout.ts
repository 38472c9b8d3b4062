import http from "node:http";
import type pg from "pg";
import { formatCount, formatMs, markdownTable, textTable } from "./lib/format.js";
import { readNotes } from "./lib/notes.js";
import { withClient } from "./lib/server.js";
import { descriptorLimit, startServiceProcess } from "./lib/service-process.js";
import type { ServiceMemory } from "./lib/sse-service-child.js";
import { median, type Quantiles, quantiles } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";

/*
 * Benchmark 4: N event streams open on one service process. The real HTTP
 * service runs alone in a child process (so its memory is its own); this
 * process holds the N streams over plain HTTP/1.1 (http.Agent, no socket
 * limit). Tickets are created in one statement. Measured: the service's
 * memory per stream (RSS and V8 heap, after full collections, before and
 * after opening the streams), the time from one admission in the room to
 * every other stream reading a `state` with its position one lower, and how
 * many position queries the service ran per such change (/metrics).
 */

const TARGET_BYTES_PER_STREAM = 30 * 1024;
const TARGET_P99_MS = 1000;
/** Opening the streams: this many at once. */
const OPEN_CONCURRENCY = 256;
const ROUND_TIMEOUT_MS = 30_000;
const OPEN_TIMEOUT_MS = 120_000;
/** Descriptors left for everything else (the service's database pool, the runner's own connections). */
const DESCRIPTOR_MARGIN = 500;
/** The periodic re-read (joins are not announced) is pushed out of the way: what is counted is the change's own. */
const SERVICE_ENV = { WAITROOM_REFRESH_MS: "60000" };

type Plan = { sizes: number[]; rounds: number; warmupRounds: number };
const PLANS: Record<Mode, Plan> = {
  // Opening costs the service O(position) per stream (see the notes), so N² in all: 7,000 keeps the run in its
  // deadline. BENCH_SSE_SIZES=1000,19000 (with --only sseFanout) runs other sizes.
  full: { sizes: [1_000, 3_000, 7_000], rounds: 5, warmupRounds: 1 },
  quick: { sizes: [200], rounds: 2, warmupRounds: 1 },
};

export type SseSizeFigures = {
  streams: number;
  openSeconds: number;
  memory: {
    before: ServiceMemory;
    after: ServiceMemory;
    rssPerStream: number;
    heapPerStream: number;
    externalPerStream: number;
  };
  /** Admission → each other stream's lowered position read, over all measured rounds' streams. */
  update: Quantiles;
  perRound: Array<{
    p50: number;
    p99: number;
    max: number;
    admitMs: number;
    positionQueries: number;
    /** After the round: streams the service held; streams it recycled and LISTEN reconnects during it. */
    streamsHeld: number;
    recycled: number;
    listenReconnects: number;
  }>;
  /** waitroom_position_queries_total delta per change, median over rounds. */
  positionQueriesPerChange: number;
  /** The same waitroom.positions query (all N tickets) run alone from the benchmark, median of 3. */
  positionsQueryMs: number;
  missed: number;
};

export type SseFanoutFigures = {
  sizes: SseSizeFigures[];
  descriptorLimit: number | null;
  ceiling: number;
  target: { bytesPerStream: number; p99Ms: number; memoryMet: boolean; latencyMet: boolean; queriesMet: boolean };
};

type Stream = {
  position: number;
  status: string;
  arrived: number | null;
  request: http.ClientRequest;
};

class Round {
  waiting = 0;
  done: (() => void) | null = null;
}

/** The service's counters and gauges a round reads from /metrics. */
const ROUND_METRICS = {
  positionQueries: "waitroom_position_queries_total",
  streams: "waitroom_sse_streams",
  recycled: "waitroom_sse_streams_recycled_total",
  listenReconnects: "waitroom_listen_reconnects_total",
} as const;
type RoundMetrics = Record<keyof typeof ROUND_METRICS, number>;

async function roundMetrics(url: string): Promise<RoundMetrics> {
  const lines = (await (await fetch(`${url}/metrics`)).text()).split("\n");
  const value = (name: string) => Number(lines.find((l) => l.startsWith(`${name} `))?.split(" ")[1] ?? Number.NaN);
  return {
    positionQueries: value(ROUND_METRICS.positionQueries),
    streams: value(ROUND_METRICS.streams),
    recycled: value(ROUND_METRICS.recycled),
    listenReconnects: value(ROUND_METRICS.listenReconnects),
  };
}

function openStream(
  agent: http.Agent,
  base: URL,
  ticket: { id: string; token: string },
  onState: (stream: Stream) => void,
): Promise<Stream> {
  return new Promise((resolve, reject) => {
    let opened = false;
    const request = http.get(
      {
        agent,
        host: base.hostname,
        port: base.port,
        path: `/v1/tickets/${ticket.id}/events?token=${encodeURIComponent(ticket.token)}`,
        headers: { accept: "text/event-stream" },
      },
      (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new Error(`event stream answered ${response.statusCode}`));
          return;
        }
        response.setEncoding("utf8");
        let buffer = "";
        response.on("data", (text: string) => {
          const at = performance.now();
          buffer += text;
          let end = buffer.indexOf("\n\n");
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf("\n\n");
            const event = /^event: (\w+)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (!event || !data) continue;
            const state = JSON.parse(data) as { status: string; position: number | null };
            if (event === "state") {
              const before = stream.position;
              stream.status = state.status;
              stream.position = state.position ?? Number.POSITIVE_INFINITY;
              if (!opened) {
                opened = true;
                resolve(stream);
              } else if (stream.position < before && stream.arrived === null) {
                stream.arrived = at;
                onState(stream);
              }
            } else {
              stream.status = state.status;
            }
          }
        });
        response.on("error", () => {});
      },
    );
    const stream: Stream = { position: Number.POSITIVE_INFINITY, status: "queued", arrived: null, request };
    request.on("error", (error) => {
      if (!opened) reject(error);
    });
    request.setTimeout(OPEN_TIMEOUT_MS, () => {
      if (!opened) request.destroy(new Error("event stream did not open in time"));
    });
  });
}

async function runSize(
  context: BenchContext,
  databaseUrl: string,
  control: pg.Client,
  size: number,
  plan: Plan,
): Promise<SseSizeFigures> {
  const room = `fanout-${size}`;
  const tickets = size;
  await control.query("select waitroom.create_room($1, $2, $3)", [
    room,
    tickets,
    { mode: "open", idle_seconds: 86_400, claim_seconds: 3_600, session_seconds: 3_600 },
  ]);
  // offset 0: the subquery is not flattened, so join runs once per row.
  const { rows } = await control.query<{ id: string; token: string }>(
    `select (j).ticket_id::text as id, (j).token
       from (select waitroom.join($1) as j from generate_series(1, $2::int) offset 0) s`,
    [room, tickets],
  );
  const service = await startServiceProcess({ databaseUrl, env: SERVICE_ENV, signal: context.signal });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  const streams: Stream[] = [];
  let round = new Round();
  const onState = () => {
    round.waiting--;
    if (round.waiting === 0) round.done?.();
  };
  try {
    const base = new URL(service.url);
    const before = await service.memory();
    const openStarted = performance.now();
    let nextTicket = 0;
    const opener = async () => {
      for (;;) {
        const ticket = rows[nextTicket++];
        if (!ticket) return;
        context.signal.throwIfAborted();
        streams.push(await openStream(agent, base, ticket, onState));
      }
    };
    await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, opener));
    const openSeconds = (performance.now() - openStarted) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = await service.memory();
    context.say(`${formatCount(size)} streams: opened in ${openSeconds.toFixed(1)} s`);
    // The service's one query per change, run alone from here: the database's share of an update.
    const queryMs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      await control.query("select count(*) from waitroom.positions($1, $2::uuid[])", [room, rows.map((r) => r.id)]);
      queryMs.push(performance.now() - started);
    }

    const measured: number[] = [];
    const perRound: SseSizeFigures["perRound"] = [];
    let missed = 0;
    for (let r = 0; r < plan.warmupRounds + plan.rounds; r++) {
      context.signal.throwIfAborted();
      // Everyone still queued except the head, whom the admission takes.
      const expecting = streams.filter((s) => s.status === "queued" && s.position > 1);
      for (const s of streams) s.arrived = null;
      round = new Round();
      round.waiting = expecting.length;
      const all = new Promise<void>((resolve) => {
        round.done = resolve;
      });
      const metricsBefore = await roundMetrics(service.url);
      const sent = performance.now();
      await control.query("select count(*) from waitroom.admit($1, 1)", [room]);
      const admitMs = performance.now() - sent;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, ROUND_TIMEOUT_MS)))]);
      clearTimeout(timer);
      // Late second re-reads (a change coalesced while one ran) are counted too.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const metricsAfter = await roundMetrics(service.url);
      const queries = metricsAfter.positionQueries - metricsBefore.positionQueries;
      const latencies = expecting.filter((s) => s.arrived !== null).map((s) => (s.arrived as number) - sent);
      const roundMissed = expecting.length - latencies.length;
      if (r < plan.warmupRounds) continue;
      missed += roundMissed;
      measured.push(...latencies);
      const q = quantiles(latencies.length > 0 ? latencies : [Number.NaN]);
      perRound.push({
        p50: q.p50,
        p99: q.p99,
        max: q.max,
        admitMs,
        positionQueries: queries,
        streamsHeld: metricsAfter.streams,
        recycled: metricsAfter.recycled - metricsBefore.recycled,
        listenReconnects: metricsAfter.listenReconnects - metricsBefore.listenReconnects,
      });
      context.say(
        `  round ${r - plan.warmupRounds + 1}: p50 ${formatMs(q.p50)}, p99 ${formatMs(q.p99)}, ` +
          `${queries} position quer${queries === 1 ? "y" : "ies"}, ${roundMissed} missed, ` +
          `${formatCount(metricsAfter.streams)} streams held`,
      );
    }
    return {
      streams: streams.length,
      openSeconds,
      memory: {
        before,
        after,
        rssPerStream: (after.rss - before.rss) / streams.length,
        heapPerStream: (after.heapUsed - before.heapUsed) / streams.length,
        externalPerStream: (after.external - before.external) / streams.length,
      },
      update: quantiles(measured.length > 0 ? measured : [Number.NaN]),
      perRound,
      positionQueriesPerChange: median(perRound.map((r) => r.positionQueries)),
      positionsQueryMs: median(queryMs),
      missed,
    };
  } finally {
    for (const stream of streams) stream.request.destroy();
    agent.destroy();
    await service.stop();
    await control.query("select waitroom.delete_room($1)", [room]).catch(() => {});
  }
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

function summaryRows(figures: SseFanoutFigures): string[][] {
  return figures.sizes.map((s) => [
    formatCount(s.streams),
    kb(s.memory.rssPerStream),
    kb(s.memory.heapPerStream),
    `${mb(s.memory.before.rss)} → ${mb(s.memory.after.rss)}`,
    formatMs(s.update.p50),
    formatMs(s.update.p99),
    formatMs(s.update.max),
    String(s.positionQueriesPerChange),
    formatMs(s.positionsQueryMs),
    String(s.missed),
    `${s.openSeconds.toFixed(1)} s`,
  ]);
}

const HEADER = [
  "streams",
  "RSS / stream",
  "heap / stream",
  "service RSS",
  "update p50",
  "update p99",
  "update max",
  "position queries / change",
  "that query alone",
  "missed",
  "open time",
];

function verdicts(figures: SseFanoutFigures): string {
  const t = figures.target;
  return (
    `memory ≤ ${kb(t.bytesPerStream)} / stream: ${t.memoryMet ? "met" : "NOT met"}; ` +
    `update p99 < ${t.p99Ms} ms: ${t.latencyMet ? "met" : "NOT met"}; ` +
    `position queries O(1) per change: ${t.queriesMet ? "met" : "NOT met"}`
  );
}

function consoleReport(figures: SseFanoutFigures): string {
  return [
    `SSE fan-out — streams on one service process (descriptor ceiling ${formatCount(figures.ceiling)})`,
    textTable(HEADER, summaryRows(figures)),
    verdicts(figures),
  ].join("\n");
}

async function markdownReport(figures: SseFanoutFigures, plan: Plan, mode: Mode): Promise<string> {
  const notes = await readNotes("sse-fanout");
  const largest = figures.sizes.at(-1);
  const perRound = markdownTable(
    [
      "streams",
      "round",
      "admit statement",
      "update p50",
      "update p99",
      "update max",
      "position queries",
      "streams held",
      "recycled",
      "LISTEN reconnects",
    ],
    figures.sizes.flatMap((s) =>
      s.perRound.map((r, index) => [
        formatCount(s.streams),
        String(index + 1),
        formatMs(r.admitMs),
        formatMs(r.p50),
        formatMs(r.p99),
        formatMs(r.max),
        String(r.positionQueries),
        formatCount(r.streamsHeld),
        String(r.recycled),
        String(r.listenReconnects),
      ]),
    ),
  );
  const t = figures.target;
  return [
    "## 4. SSE fan-out",
    "",
    "The real HTTP service (`startHttp`, as `bench/lib/app.ts` starts it, without the scheduler) runs alone in a " +
      "child Node process (`bench/lib/sse-service-child.ts`, `--expose-gc`) on the embedded PostgreSQL; the " +
      "benchmark's own process holds the streams. For each size N, one room is filled with N tickets " +
      "in one statement (`waitroom.join` over `generate_series`), then " +
      `one stream per ticket is opened (\`GET /v1/tickets/{id}/events\`, plain HTTP/1.1 through an \`http.Agent\` with no ` +
      `socket limit, ${OPEN_CONCURRENCY} opening at a time; a stream counts as open when its first \`state\` is read).`,
    "",
    "- **Memory per stream**: the service process's `process.memoryUsage()` after two forced full collections, " +
      "read just before the streams are opened and again 0.5 s after the last one opened; the RSS and V8-heap " +
      "deltas divided by N. RSS is what the process costs the machine (V8 heap, Node's and the sockets' buffers, " +
      "allocator slack); the kernel's socket memory is not in it.",
    "- **Room-wide update**: `waitroom.admit(room, 1)` from a separate connection admits the head of the queue, so " +
      "every other stream's position drops by one. The sample is, for each such stream, the time from sending the " +
      "admit to reading a `state` whose position is lower (the admit's NOTIFY → the service's LISTEN → one " +
      "`waitroom.positions` query for the room → N writes → N reads here, on this one client event loop). " +
      `${plan.warmupRounds} warm-up round then ${plan.rounds} measured rounds per size; p50/p99/max over all ` +
      "streams of the measured rounds.",
    "- **Queries per change**: the service's `waitroom_position_queries_total` (from `/metrics`) after the round " +
      "(plus 0.3 s) minus before it. The service's periodic re-read (`WAITROOM_REFRESH_MS`, 2 s by default, for " +
      "joins, which are not announced) is set to 60 s here so that the count is the change's own.",
    "",
    `Sizes: ${figures.sizes.map((s) => formatCount(s.streams)).join(", ")}. Ceiling on this box: the open-files ` +
      `limit is ${figures.descriptorLimit === null ? "unknown" : formatCount(figures.descriptorLimit)} per process (soft = hard; ` +
      "the runner cannot raise it), and every stream is a descriptor in both the service and the client, so at " +
      `most ${formatCount(figures.ceiling)} streams fit on one process here (the limit less ${DESCRIPTOR_MARGIN} for ` +
      "database connections and the rest). The full run stops below that because opening N streams costs the " +
      "service time quadratic in N (see the notes, which also give a separate run at the ceiling).",
    "",
    largest
      ? `**At ${formatCount(largest.streams)} streams: ${kb(largest.memory.rssPerStream)} RSS (${kb(largest.memory.heapPerStream)} heap) per stream — ` +
        `target ≤ ${kb(t.bytesPerStream)}: **${t.memoryMet ? "met" : "not met"}**; update p99 ${formatMs(largest.update.p99)} ` +
        `(p50 ${formatMs(largest.update.p50)}) — target < ${t.p99Ms} ms: **${t.latencyMet ? "met" : "not met"}**; ` +
        `${largest.positionQueriesPerChange} position quer${largest.positionQueriesPerChange === 1 ? "y" : "ies"} per change — ` +
        `target O(1): **${t.queriesMet ? "met" : "not met"}**.**` +
        (mode === "quick" ? " This was a quick run (few streams): a smoke check, not a measurement." : "")
      : "",
    "",
    markdownTable(HEADER, summaryRows(figures)),
    "",
    "Memory is judged at the largest size (at small N the fixed costs of the first streams weigh in); latency and " +
      'queries at every size. "That query alone" is the service\'s `waitroom.positions` query for all N tickets ' +
      "run from the benchmark's connection (median of 3): the database's share of an update. Missed = streams that did not read a lower " +
      `position within ${ROUND_TIMEOUT_MS / 1000} s of the admit.`,
    "",
    "### Per round",
    "",
    perRound,
    "",
    "### Why (notes: bench/notes/sse-fanout.md)",
    "",
    notes,
  ].join("\n");
}

export const sseFanoutBenchmark: Benchmark<SseFanoutFigures> = {
  id: "sseFanout",
  title: "SSE fan-out",
  async run(context): Promise<BenchReport<SseFanoutFigures>> {
    const plan = { ...PLANS[context.mode] };
    const asked = process.env.BENCH_SSE_SIZES?.split(",").map(Number);
    if (asked?.length && asked.every((n) => Number.isInteger(n) && n > 1)) plan.sizes = asked;
    const limit = await descriptorLimit();
    const ceiling =
      limit === null ? Math.max(...plan.sizes) : Math.floor((limit - DESCRIPTOR_MARGIN) / 1000) * 1000 || 1000;
    const sizes = [...new Set(plan.sizes.map((size) => Math.min(size, ceiling)))];
    const databaseUrl = await context.server.createAppDatabase("bench_sse");
    const results = await withClient(databaseUrl, async (control) => {
      const out: SseSizeFigures[] = [];
      for (const size of sizes) out.push(await runSize(context, databaseUrl, control, size, { ...plan }));
      return out;
    });
    const figures: SseFanoutFigures = {
      sizes: results,
      descriptorLimit: limit,
      ceiling,
      target: {
        bytesPerStream: TARGET_BYTES_PER_STREAM,
        p99Ms: TARGET_P99_MS,
        // Judged at the largest size: at small N the fixed costs of the first streams weigh in.
        memoryMet: (results.at(-1)?.memory.rssPerStream ?? Number.POSITIVE_INFINITY) <= TARGET_BYTES_PER_STREAM,
        latencyMet: results.every((s) => s.update.p99 < TARGET_P99_MS && s.missed === 0),
        queriesMet: results.every((s) => s.perRound.every((r) => r.positionQueries <= 2)),
      },
    };
    return { console: consoleReport(figures), markdown: await markdownReport(figures, plan, context.mode), figures };
  },
};
