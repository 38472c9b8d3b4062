import { rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { createClient } from "../sdk/index.js";
import { formatCount, formatMs, markdownTable, textTable } from "./lib/format.js";
import { runHttpLoad } from "./lib/http-load.js";
import { readNotes } from "./lib/notes.js";
import { startServiceProcess } from "./lib/service-process.js";
import { startStreamClients } from "./lib/sse-clients.js";
import type { ServiceMemory } from "./lib/sse-service-child.js";
import { quantiles } from "./lib/stats.js";
import type { BenchContext, Benchmark, BenchReport, Mode } from "./lib/types.js";

/*
 * The soak: the service (with its scheduler) alone in a process for minutes, holding thousands of
 * open streams in one room while visitors of another go through whole lifecycles over HTTP with the
 * SDK — join, follow the stream, be admitted, claim, heartbeat, leave — and the sweeps run. What it
 * reports is what drifts: the service's memory after warm-up, the tables and their indexes, and
 * errors. Not in the default run (`npm run bench -- --only soak`): it takes over ten minutes.
 */

type Plan = {
  /** Measured after warm-up. */
  seconds: number;
  warmupSeconds: number;
  sampleEverySeconds: number;
  /** Open streams held the whole time (the descriptor limit is 20,000 per process here). */
  streams: number;
  /** Seats of the lifecycle room, and the visitors cycling through it (the rest wait in its queue). */
  capacity: number;
  visitors: number;
};

const PLANS: Record<Mode, Plan> = {
  full: { seconds: 600, warmupSeconds: 60, sampleEverySeconds: 30, streams: 5_000, capacity: 40, visitors: 80 },
  quick: { seconds: 20, warmupSeconds: 5, sampleEverySeconds: 5, streams: 200, capacity: 5, visitors: 10 },
};

const WATCH_ROOM = "soak-watch";
const CYCLE_ROOM = "soak-cycle";
/** Streams per client process (each stream is a descriptor there too). */
const STREAMS_PER_CLIENT_PROCESS = 2_500;
const SERVICE_ENV = { WAITROOM_RATE_LIMITS: "off" };
/** The service's memory may grow this much after warm-up and still count as flat. */
const FLAT_WITHIN = 0.1;

type Sample = {
  atSeconds: number;
  memory: ServiceMemory;
  /** Bytes of heap, and of index, of the two tables that grow with traffic. */
  tickets: { table: number; indexes: number };
  events: { table: number; indexes: number };
  lifecycles: number;
};

export type SoakFigures = {
  seconds: number;
  streams: number;
  streamsEnded: number;
  lifecycles: number;
  lifecyclesPerSecond: number;
  errors: number;
  errorKinds: Record<string, number>;
  leaveToNextAdmittedMs: { p50: number; p99: number; samples: number };
  memory: { start: ServiceMemory; end: ServiceMemory; rssGrowth: number; heapGrowth: number; flat: boolean };
  samples: Sample[];
};

async function relationSizes(control: pg.Client): Promise<Pick<Sample, "tickets" | "events">> {
  const { rows } = await control.query<{ name: string; table: string; indexes: string }>(
    `select c.relname as name, pg_table_size(c.oid) as table, pg_indexes_size(c.oid) as indexes
       from pg_class c where c.oid in ('waitroom.tickets'::regclass, 'waitroom.events'::regclass)`,
  );
  const size = (name: string) => {
    const row = rows.find((r) => r.name === name);
    return { table: Number(row?.table ?? 0), indexes: Number(row?.indexes ?? 0) };
  };
  return { tickets: size("tickets"), events: size("events") };
}

/** Lifecycles completed: tickets of the cycle room that left after being seated. */
async function lifecyclesSince(control: pg.Client, since: Date): Promise<number> {
  const { rows } = await control.query<{ n: number }>(
    `select count(*)::int as n from waitroom.events
      where room_id = $1 and type = 'left' and created_at >= $2 and data->>'from' = 'active'`,
    [CYCLE_ROOM, since],
  );
  return rows[0]?.n ?? 0;
}

/** From each seat given up to the next admission in the room, from the ledger's own clock. */
async function leaveToNextAdmitted(control: pg.Client, since: Date): Promise<number[]> {
  const { rows } = await control.query<{ ms: number }>(
    `select extract(epoch from next.at - l.created_at) * 1000 as ms
       from waitroom.events l
       cross join lateral (
         select a.created_at as at from waitroom.events a
          where a.room_id = l.room_id and a.type = 'admitted' and a.id > l.id
          order by a.id limit 1) next
      where l.room_id = $1 and l.type = 'left' and l.created_at >= $2 and l.data->>'from' = 'active'`,
    [CYCLE_ROOM, since],
  );
  return rows.map((row) => Number(row.ms));
}

const errorKind = (error: unknown) =>
  (error as { code?: string }).code ?? (error instanceof Error ? error.message.slice(0, 80) : String(error));

/** One visitor, again and again until `stop`: join, wait on the stream, claim, heartbeat, leave. */
async function visit(baseUrl: string, stop: AbortSignal, errors: Map<string, number>): Promise<void> {
  const client = createClient({ baseUrl });
  const count = (error: unknown) => {
    // Requests cut short by the end of the run are not errors.
    if (stop.aborted) return;
    const kind = errorKind(error);
    errors.set(kind, (errors.get(kind) ?? 0) + 1);
  };
  while (!stop.aborted) {
    // A signal per lifecycle: fetch keeps a listener on the signal of every request it made until the
    // request is collected, and thousands would pile up on one long-lived signal.
    const cycle = new AbortController();
    const cut = () => cycle.abort();
    stop.addEventListener("abort", cut, { once: true });
    try {
      const ticket = await client.join(CYCLE_ROOM, { signal: cycle.signal });
      let seated: Promise<void> = Promise.resolve();
      const end = await ticket.subscribe(
        (event) => {
          // Seated: prove presence once, then give the seat to the next in line; the stream then ends.
          if (event.type !== "active") return;
          seated = ticket
            .heartbeat(cycle.signal)
            .then(() => ticket.leave(cycle.signal))
            .catch(count);
        },
        { autoClaim: true, signal: cycle.signal, onError: count },
      );
      await seated;
      if (end.reason !== "ended" && end.reason !== "aborted") count(new Error(`stream ended: ${end.reason}`));
    } catch (error) {
      if (stop.aborted) return;
      count(error);
      await sleep(100);
    } finally {
      stop.removeEventListener("abort", cut);
    }
  }
}

async function run(context: BenchContext): Promise<BenchReport<SoakFigures>> {
  const { server, signal, say, mode } = context;
  const plan = PLANS[mode];
  const databaseUrl = await server.createAppDatabase("bench_soak");
  const control = new pg.Client({ connectionString: databaseUrl });
  await control.connect();
  const ticketsFile = join(server.workDir, "soak.tickets");
  const service = await startServiceProcess({ databaseUrl, env: SERVICE_ENV, service: { worker: true }, signal });
  let clients: Awaited<ReturnType<typeof startStreamClients>> | undefined;
  const stopVisitors = new AbortController();
  const visitors: Promise<void>[] = [];
  try {
    // Nobody is admitted from the watched room: its streams stay open, and present, the whole run.
    await control.query("select waitroom.create_room($1, 0, '{}')", [WATCH_ROOM]);
    await control.query("select waitroom.create_room($1, $2, $3)", [
      CYCLE_ROOM,
      plan.capacity,
      { claim_seconds: 30, session_seconds: 120, tick_ms: 200, retention_seconds: 3600 },
    ]);
    const joins = await runHttpLoad({
      url: service.url,
      path: `/v1/rooms/${WATCH_ROOM}/tickets`,
      method: "POST",
      jsonBody: "{}",
      expectStatus: 202,
      concurrency: 32,
      warmupSeconds: 0,
      seconds: 120,
      requests: plan.streams,
      answersFile: ticketsFile,
      signal,
      postmasterPid: await server.postmasterPid(),
      servicePid: service.pid,
    });
    clients = await startStreamClients({
      url: service.url,
      ticketsFile,
      tickets: joins.requests,
      perProcess: STREAMS_PER_CLIENT_PROCESS,
      openTimeoutMs: 60_000,
      signal,
    });
    await clients.open(Date.now() + 1_000, 70_000);
    say(
      `soak: ${formatCount(joins.requests)} streams open; ${plan.visitors} visitors cycle through ${plan.capacity} seats`,
    );

    const errors = new Map<string, number>();
    for (let i = 0; i < plan.visitors; i++) visitors.push(visit(service.url, stopVisitors.signal, errors));
    await sleep(plan.warmupSeconds * 1000, undefined, { signal });
    errors.clear();

    const startedAt = new Date();
    const samples: Sample[] = [];
    const sample = async () => {
      const atSeconds = (Date.now() - startedAt.getTime()) / 1000;
      const [memory, sizes, lifecycles] = await Promise.all([
        service.memory(),
        relationSizes(control),
        lifecyclesSince(control, startedAt),
      ]);
      samples.push({ atSeconds, memory, ...sizes, lifecycles });
      say(
        `soak ${Math.round(atSeconds)} s: rss ${formatBytes(memory.rss)}, heap ${formatBytes(memory.heapUsed)}, ` +
          `${formatCount(lifecycles)} lifecycles, events ${formatBytes(sizes.events.table + sizes.events.indexes)}`,
      );
    };
    await sample();
    while (Date.now() - startedAt.getTime() < plan.seconds * 1000) {
      await sleep(plan.sampleEverySeconds * 1000, undefined, { signal });
      await sample();
    }
    const seconds = (Date.now() - startedAt.getTime()) / 1000;
    stopVisitors.abort();
    await Promise.all(visitors);
    const report = await clients.report();
    const gaps = await leaveToNextAdmitted(control, startedAt);
    const first = samples[0] as Sample;
    const last = samples.at(-1) as Sample;
    const rssGrowth = last.memory.rss / first.memory.rss - 1;
    const heapGrowth = last.memory.heapUsed / first.memory.heapUsed - 1;
    const gapQuantiles = quantiles(gaps);
    const figures: SoakFigures = {
      seconds,
      streams: report.firstStateMs.length,
      streamsEnded: Object.values(report.endedAfterOpen).reduce((sum, n) => sum + n, 0),
      lifecycles: last.lifecycles,
      lifecyclesPerSecond: last.lifecycles / seconds,
      errors: [...errors.values()].reduce((sum, n) => sum + n, 0),
      errorKinds: Object.fromEntries(errors),
      leaveToNextAdmittedMs: { p50: gapQuantiles.p50, p99: gapQuantiles.p99, samples: gaps.length },
      memory: {
        start: first.memory,
        end: last.memory,
        rssGrowth,
        heapGrowth,
        flat: rssGrowth <= FLAT_WITHIN && heapGrowth <= FLAT_WITHIN,
      },
      samples,
    };
    return { console: renderConsole(figures), markdown: await renderMarkdown(figures, plan), figures };
  } finally {
    stopVisitors.abort();
    await Promise.allSettled(visitors);
    await clients?.close();
    await service.stop();
    await control.end();
    await rm(ticketsFile, { force: true });
  }
}

const formatBytes = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MiB`;
const percent = (value: number) => `${value >= 0 ? "+" : ""}${(value * 100).toFixed(1)} %`;

function summaryRows(f: SoakFigures): string[][] {
  return [
    ["measured", `${Math.round(f.seconds)} s after warm-up`],
    ["open streams held", `${formatCount(f.streams)} (ended without being closed: ${f.streamsEnded})`],
    [
      "lifecycles (join → admitted → claim → heartbeat → leave)",
      `${formatCount(f.lifecycles)}, ${f.lifecyclesPerSecond.toFixed(1)} / s`,
    ],
    ["errors", f.errors === 0 ? "0" : `${f.errors} (${JSON.stringify(f.errorKinds)})`],
    [
      "leave → next admitted",
      `p50 ${formatMs(f.leaveToNextAdmittedMs.p50)}, p99 ${formatMs(f.leaveToNextAdmittedMs.p99)} (${formatCount(f.leaveToNextAdmittedMs.samples)} seats)`,
    ],
    [
      "service RSS",
      `${formatBytes(f.memory.start.rss)} → ${formatBytes(f.memory.end.rss)} (${percent(f.memory.rssGrowth)})`,
    ],
    [
      "service heap used",
      `${formatBytes(f.memory.start.heapUsed)} → ${formatBytes(f.memory.end.heapUsed)} (${percent(f.memory.heapGrowth)})`,
    ],
    ["memory flat within 10 % after warm-up", f.memory.flat ? "yes" : "**no**"],
  ];
}

function sampleRows(f: SoakFigures): string[][] {
  return f.samples.map((s) => [
    `${Math.round(s.atSeconds)} s`,
    formatBytes(s.memory.rss),
    formatBytes(s.memory.heapUsed),
    formatBytes(s.tickets.table),
    formatBytes(s.tickets.indexes),
    formatBytes(s.events.table),
    formatBytes(s.events.indexes),
    formatCount(s.lifecycles),
  ]);
}

const SAMPLE_HEADER = ["at", "RSS", "heap", "tickets", "tickets idx", "events", "events idx", "lifecycles"];

function renderConsole(f: SoakFigures): string {
  return ["Soak", textTable(["", ""], summaryRows(f)), textTable(SAMPLE_HEADER, sampleRows(f))].join("\n");
}

async function renderMarkdown(f: SoakFigures, plan: Plan): Promise<string> {
  return [
    "## 9. Soak: streams held, lifecycles, sweeps, for ten minutes",
    "",
    `${formatCount(plan.streams)} streams held open in one room while ${plan.visitors} visitors go through ` +
      `whole lifecycles in another of ${plan.capacity} seats, with the SDK over HTTP; the scheduler admits ` +
      "and sweeps as it does in production. Run by `npm run bench -- --only soak` (not part of the default run).",
    "",
    markdownTable(["", ""], summaryRows(f)),
    "",
    "Over time (service memory after two full collections; table and index sizes of the tables that grow):",
    "",
    markdownTable(SAMPLE_HEADER, sampleRows(f)),
    "",
    await readNotes("soak"),
  ].join("\n");
}

export const soakBenchmark: Benchmark<SoakFigures> = {
  id: "soak",
  title: "Soak: streams, lifecycles and sweeps over minutes",
  run,
};
