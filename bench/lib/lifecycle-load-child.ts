import http from "node:http";
import { openEventStream } from "./event-stream-socket.js";
import { request } from "./http-request.js";
import { type Quantiles, quantiles } from "./stats.js";

/*
 * Whole ticket lifecycles over HTTP at an offered rate (open loop: a new
 * visitor arrives every 1/rate s whether or not the earlier ones are done,
 * as people do), from a process of its own (bench/lifecycles-http.ts starts
 * it through bench/lib/http-load.ts). Each visitor does what the waiting-room
 * page and the SDK do:
 *   POST /v1/rooms/{room}/tickets ({} as JSON) → 202 ticket and token;
 *   GET its events_url, the event stream, until it says the ticket is admitted
 *   (an `admitted` event, or a first `state` already admitted), then closes it;
 *   POST /v1/tickets/{id}/claim → 200; DELETE /v1/tickets/{id} → 204.
 * Prints "measuring" when the warm-up ends and "done" when the measured window
 * closes; then stops arriving, lets the visitors in flight finish (at most
 * drainSeconds) and prints one JSON line of results.
 */

export type LifecycleLoadArgs = {
  url: string;
  room: string;
  perSecond: number;
  warmupSeconds: number;
  seconds: number;
  drainSeconds: number;
  /** A visitor not admitted this long after its join was answered counts as an error ("admission timeout"). */
  admissionTimeoutMs: number;
  /** Keep-alive connections for the requests (the streams have their own). */
  maxSockets: number;
};

export type LifecycleLoadResult = {
  /** Visitors that arrived in the measured window. */
  offered: number;
  /** Lifecycles whose leave was answered inside the measured window. */
  completed: number;
  /** Lifecycles through, whenever they arrived and finished (warm-up and drain included). */
  finished: number;
  seconds: number;
  /** Of the visitors that arrived in the window and got through (ms): the join's answer; from it to the admission read on the stream; the claim's answer; the leave's. */
  join: Quantiles;
  joinToAdmitted: Quantiles;
  claim: Quantiles;
  leave: Quantiles;
  /** The whole lifecycle, arrival to the leave's answer. */
  lifecycle: Quantiles;
  /** Every failure of the run (warm-up and drain included), by step and kind: "join HTTP 503", "stream ECONNRESET", "unfinished", … */
  errors: number;
  errorKinds: Record<string, number>;
  /** How late, at worst, a visitor arrived after its due time: the generator's own lag. */
  maxArrivalLagMs: number;
  cpuMs: number;
};

type Timings = { join: number; joinToAdmitted: number; claim: number; leave: number; lifecycle: number };

class StepFailure extends Error {}

const args = JSON.parse(process.argv[2] ?? "{}") as LifecycleLoadArgs;
const base = new URL(args.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: args.maxSockets });

const errorKinds: Record<string, number> = {};
const countError = (kind: string) => {
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
};

async function send(step: string, path: string, method: string, expect: number, bearer?: string, jsonBody?: string) {
  try {
    const answer = await request(agent, new URL(path, base), { method, bearer, jsonBody }, step === "join");
    if (answer.status !== expect) throw new StepFailure(`${step} HTTP ${answer.status}`);
    return answer;
  } catch (error) {
    if (error instanceof StepFailure) throw error;
    throw new StepFailure(`${step} ${(error as NodeJS.ErrnoException).code ?? "transport error"}`);
  }
}

/** Resolves when the stream says the ticket is admitted; the stream is closed then. */
function admission(eventsPath: string, token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (failure?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.destroy();
      if (failure === undefined) resolve();
      else reject(new StepFailure(failure));
    };
    const timer = setTimeout(() => settle("admission timeout"), args.admissionTimeoutMs);
    const stream = openEventStream(
      { host: base.hostname, port: Number(base.port), path: `${eventsPath}?token=${encodeURIComponent(token)}` },
      {
        connected() {},
        message(block) {
          const event = /^event: (\S+)/m.exec(block)?.[1];
          if (event === "admitted") return settle();
          if (event === "state" && /"status":"admitted"/.test(block)) return settle();
          if (event === "ended" || event === "superseded") settle(`stream ${event} before admission`);
        },
        refused: (why) => settle(`stream ${why}`),
        ended: (why) => settle(`stream ${why} before admission`),
      },
    );
  });
}

async function lifecycle(): Promise<Timings> {
  const arrived = performance.now();
  const joinAnswer = await send("join", `/v1/rooms/${args.room}/tickets`, "POST", 202, undefined, "{}");
  const joined = performance.now();
  const ticket = JSON.parse(joinAnswer.body ?? "{}") as { ticket_id: string; token: string; events_url: string };
  await admission(ticket.events_url, ticket.token);
  const admitted = performance.now();
  await send("claim", `/v1/tickets/${ticket.ticket_id}/claim`, "POST", 200, ticket.token);
  const claimed = performance.now();
  await send("leave", `/v1/tickets/${ticket.ticket_id}`, "DELETE", 204, ticket.token);
  const left = performance.now();
  return {
    join: joined - arrived,
    joinToAdmitted: admitted - joined,
    claim: claimed - admitted,
    leave: left - claimed,
    lifecycle: left - arrived,
  };
}

async function main(): Promise<void> {
  const start = performance.now();
  const measureFrom = start + args.warmupSeconds * 1000;
  const measureUntil = measureFrom + args.seconds * 1000;
  const measured: Timings[] = [];
  const inFlight = new Set<Promise<void>>();
  let arrivals = 0;
  let offered = 0;
  let completed = 0;
  let finished = 0;
  let maxArrivalLagMs = 0;
  let cpuAtStart: NodeJS.CpuUsage | undefined;

  const arrive = (due: number) => {
    const inWindow = due >= measureFrom;
    if (inWindow) offered++;
    maxArrivalLagMs = Math.max(maxArrivalLagMs, performance.now() - due);
    const visit: Promise<void> = lifecycle().then(
      (timings) => {
        finished++;
        if (inWindow) measured.push(timings);
        const done = performance.now();
        if (done >= measureFrom && done <= measureUntil) completed++;
      },
      (error: unknown) => countError(error instanceof StepFailure ? error.message : String(error)),
    );
    inFlight.add(visit);
    void visit.finally(() => inFlight.delete(visit));
  };

  // Arrivals on a schedule of their own: a late timer lets the missed ones in at once, so the rate holds.
  const intervalMs = 1000 / args.perSecond;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (cpuAtStart === undefined && now >= measureFrom) {
        cpuAtStart = process.cpuUsage();
        process.stdout.write("measuring\n");
      }
      for (
        let due = start + arrivals * intervalMs;
        due <= now && due < measureUntil;
        due = start + arrivals * intervalMs
      ) {
        arrivals++;
        arrive(due);
      }
      if (now >= measureUntil) return resolve();
      setTimeout(tick, Math.min(5, Math.max(0, measureUntil - now)));
    };
    tick();
  });
  const cpu = process.cpuUsage(cpuAtStart);
  process.stdout.write("done\n");

  const drained = Promise.all([...inFlight]).then(() => true);
  const allFinished = await Promise.race([
    drained,
    new Promise<false>((resolve) => setTimeout(() => resolve(false), args.drainSeconds * 1000).unref()),
  ]);
  if (!allFinished) for (let i = 0; i < inFlight.size; i++) countError("unfinished");
  agent.destroy();

  const of = (key: keyof Timings) => quantiles(measured.map((timings) => timings[key]));
  const result: LifecycleLoadResult = {
    offered,
    completed,
    finished,
    seconds: args.seconds,
    join: of("join"),
    joinToAdmitted: of("joinToAdmitted"),
    claim: of("claim"),
    leave: of("leave"),
    lifecycle: of("lifecycle"),
    errors: Object.values(errorKinds).reduce((sum, n) => sum + n, 0),
    errorKinds,
    maxArrivalLagMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  // Streams and sockets of unfinished visitors would keep the process alive.
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
