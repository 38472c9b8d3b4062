import { readFile } from "node:fs/promises";
import { openEventStream } from "./event-stream-socket.js";

/*
 * Event-stream clients of the rush benchmark (bench/rush.ts), in a process of
 * their own: every stream is a descriptor here as well as in the service, and
 * a process may hold only so many, so the streams are split over several of
 * these. Each holds the tickets of lines [from, to) of the tickets file (one
 * join answer per line). Over the IPC channel:
 *
 *   → {type: "ready"}                 tickets read
 *   ← {type: "open", at}              at wall-clock instant `at` (epoch ms), open every stream at once
 *   → {type: "opened"}                every stream has read its first `state`, or failed
 *   → {type: "settled"}               every open stream has seen a change (see `changedAt`)
 *   ← {type: "report"}  → {type: "report", report: ClientsReport}
 *   ← {type: "close"}                 destroy the streams and exit
 *
 * Times are wall-clock epoch milliseconds (performance.timeOrigin + now), so
 * that the parent can compare them with PostgreSQL's clock (opens_at).
 */

export type ClientsArgs = {
  url: string;
  ticketsFile: string;
  from: number;
  to: number;
  /** A stream that has not read its first `state` this long after `at` counts as failed (and is closed). */
  openTimeoutMs: number;
  /** The loopback address this process connects from (see sse-clients.ts). */
  localAddress: string;
};

export type ClientsReport = {
  streams: number;
  /** How late this process started opening, after `at`, and how long issuing every request took. */
  lateMs: number;
  issueMs: number;
  /** Per opened stream, from `at`: TCP connection established, first `state` read. */
  connectMs: number[];
  firstStateMs: number[];
  /** Per opened stream: when it first saw a change (epoch ms), null if it never did. */
  changedAt: (number | null)[];
  /** Streams that never read a first `state`, by why ("HTTP 503", "ECONNRESET", "timeout", …). */
  failures: Record<string, number>;
  /** Each stream that never opened: why, when (from `at`), and whether its TCP connection had been established. */
  failed: Array<{ why: string; atMs: number; connected: boolean }>;
  /** Streams that ended after their first `state` without being closed by us, by why. */
  endedAfterOpen: Record<string, number>;
};

type Ticket = { ticket_id: string; token: string };

type Stream = {
  connection: { destroy(): void } | null;
  connectedAt: number | null;
  firstStateAt: number | null;
  /** Position and depth of the first `state`: a later `state` with others is a change. */
  position: unknown;
  depth: unknown;
  /** First `state` with another position or depth, or first named ticket event (admitted, ended, …). */
  changedAt: number | null;
  failure: string | null;
  failedAt: number | null;
  ended: string | null;
};

const args = JSON.parse(process.argv[2] ?? "{}") as ClientsArgs;
if (!process.send) throw new Error("sse-clients-child.ts runs with an IPC channel");
const send = (message: unknown) => process.send?.(message);
const wallClock = () => performance.timeOrigin + performance.now();

const lines = (await readFile(args.ticketsFile, "utf8")).split("\n").slice(args.from, args.to);
const tickets = lines.filter((line) => line !== "").map((line) => JSON.parse(line) as Ticket);
const streams: Stream[] = tickets.map(() => ({
  connection: null,
  connectedAt: null,
  firstStateAt: null,
  position: undefined,
  depth: undefined,
  changedAt: null,
  failure: null,
  failedAt: null,
  ended: null,
}));
const base = new URL(args.url);
let closing = false;
let unsettled = 0;
let opening = 0;
let openedSent = false;
let settledSent = false;
let at = 0;
let lateMs = 0;
let issueMs = 0;

function checkProgress(): void {
  if (!openedSent && opening === 0) {
    openedSent = true;
    send({ type: "opened" });
  }
  if (openedSent && !settledSent && unsettled === 0) {
    settledSent = true;
    send({ type: "settled" });
  }
}

function failed(stream: Stream, why: string): void {
  if (stream.firstStateAt !== null || stream.failure !== null) return;
  stream.failure = why;
  stream.failedAt = wallClock();
  opening--;
  stream.connection?.destroy();
  checkProgress();
}

function changed(stream: Stream, when: number): void {
  if (stream.changedAt !== null || stream.ended !== null) return;
  stream.changedAt = when;
  unsettled--;
  checkProgress();
}

function ended(stream: Stream, why: string): void {
  if (closing || stream.failure !== null) return;
  if (stream.firstStateAt === null) {
    failed(stream, why);
    return;
  }
  if (stream.ended !== null) return;
  stream.ended = why;
  if (stream.changedAt === null) unsettled--;
  checkProgress();
}

function onMessage(stream: Stream, block: string, when: number): void {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (data === "") return; // retry: lines and keep-alive comments
  if (event === "state") {
    const state = JSON.parse(data) as { position?: unknown; depth?: unknown };
    if (stream.firstStateAt === null) {
      stream.firstStateAt = when;
      stream.position = state.position;
      stream.depth = state.depth;
      opening--;
      unsettled++;
      checkProgress();
    } else if (state.position !== stream.position || state.depth !== stream.depth) {
      changed(stream, when);
    }
  } else if (event !== "room" && stream.firstStateAt !== null) {
    // admitted, active, ended, …: the ticket itself moved on. `room` events tell of settings.
    changed(stream, when);
  }
}

function open(stream: Stream, ticket: Ticket): void {
  stream.connection = openEventStream(
    {
      host: base.hostname,
      port: Number(base.port),
      path: `/v1/tickets/${ticket.ticket_id}/events?token=${encodeURIComponent(ticket.token)}`,
      localAddress: args.localAddress,
    },
    {
      connected: () => {
        stream.connectedAt = wallClock();
      },
      message: (block) => onMessage(stream, block, wallClock()),
      refused: (why) => failed(stream, why),
      ended: (why) => ended(stream, why),
    },
  );
}

function openAll(): void {
  lateMs = wallClock() - at;
  opening = streams.length;
  const started = wallClock();
  for (const [index, stream] of streams.entries()) open(stream, tickets[index] as Ticket);
  issueMs = wallClock() - started;
  setTimeout(
    () => {
      for (const stream of streams) failed(stream, "timeout");
    },
    Math.max(0, at + args.openTimeoutMs - wallClock()),
  ).unref();
  checkProgress();
}

function report(): ClientsReport {
  const opened = streams.filter((s) => s.firstStateAt !== null);
  const count = (kinds: (string | null)[]) => {
    const out: Record<string, number> = {};
    for (const kind of kinds) if (kind !== null) out[kind] = (out[kind] ?? 0) + 1;
    return out;
  };
  return {
    streams: streams.length,
    lateMs,
    issueMs,
    connectMs: opened.map((s) => (s.connectedAt ?? Number.NaN) - at),
    firstStateMs: opened.map((s) => (s.firstStateAt as number) - at),
    changedAt: opened.map((s) => s.changedAt),
    failures: count(streams.map((s) => s.failure)),
    failed: streams
      .filter((s) => s.failure !== null)
      .map((s) => ({ why: s.failure as string, atMs: (s.failedAt as number) - at, connected: s.connectedAt !== null })),
    endedAfterOpen: count(opened.map((s) => s.ended)),
  };
}

type Request = { type: "open"; at: number } | { type: "report" } | { type: "close" };

process.on("message", (message: Request) => {
  if (message.type === "open") {
    at = message.at;
    setTimeout(openAll, Math.max(0, at - wallClock()));
  } else if (message.type === "report") {
    send({ type: "report", report: report() });
  } else if (message.type === "close") {
    closing = true;
    for (const stream of streams) stream.connection?.destroy();
    process.exit(0);
  }
});
// The parent gone means nobody will ask us to close.
process.on("disconnect", () => process.exit(0));
send({ type: "ready" });
