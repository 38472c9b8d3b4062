import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ClientsArgs, ClientsReport } from "./sse-clients-child.js";

/*
 * The parent side of bench/lib/sse-clients-child.ts: the streams of a tickets
 * file split over several client processes, opened at one instant, and their
 * reports gathered into one.
 */

const CHILD = fileURLToPath(new URL("./sse-clients-child.ts", import.meta.url));

/*
 * Each client process connects from a loopback address of its own (all of 127/8 is loopback on
 * Linux), never reused within a run, and picked at random between runs. Linux hands connect() its
 * ephemeral ports even ones first (ip_local_port_range 32768–60999 has ≈ 14,000) and tries the odd
 * ones only after scanning every even one: from one address, each connection past ≈ 14,000 to the
 * same service scanned them all, and the kernel took 36 % of both cores during an opening of 19,000
 * streams against 11 % for 10,000. Reusing an address whose ports still hold the last run's TIME_WAIT
 * sockets (60 s) cost as much again. A real rush comes from as many addresses as it has clients.
 */
const sourceNetwork = 1 + Math.floor(Math.random() * 250);
let nextSourceAddress = 0;
function sourceAddress(): string {
  const address = `127.${sourceNetwork}.${Math.floor(nextSourceAddress / 250)}.${(nextSourceAddress % 250) + 1}`;
  nextSourceAddress++;
  return address;
}

export type StreamClients = {
  /** The client processes, for reading their CPU from /proc. */
  pids: number[];
  /** Open every stream at wall-clock instant `at` (epoch ms); settles once each has its first state or failed. */
  open(at: number, timeoutMs: number): Promise<boolean>;
  /** Settles once every open stream has seen a change, or false after timeoutMs. */
  settled(timeoutMs: number): Promise<boolean>;
  report(): Promise<ClientsReport>;
  close(): Promise<void>;
};

type Message = { type: "ready" | "opened" | "settled" } | { type: "report"; report: ClientsReport };

export async function startStreamClients(options: {
  url: string;
  ticketsFile: string;
  tickets: number;
  /** Streams per client process at most. */
  perProcess: number;
  openTimeoutMs: number;
  signal: AbortSignal;
}): Promise<StreamClients> {
  const processes = Math.max(1, Math.ceil(options.tickets / options.perProcess));
  const share = Math.ceil(options.tickets / processes);
  const children: ChildProcess[] = [];
  const seen = new Map<ChildProcess, Set<string>>();
  const reports = new Map<ChildProcess, ClientsReport>();
  const waiters: Array<() => void> = [];
  const wake = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  const exited: string[] = [];
  for (let index = 0; index < processes; index++) {
    const args: ClientsArgs = {
      url: options.url,
      ticketsFile: options.ticketsFile,
      from: index * share,
      to: Math.min(options.tickets, (index + 1) * share),
      openTimeoutMs: options.openTimeoutMs,
      localAddress: sourceAddress(),
    };
    const child = fork(CHILD, [JSON.stringify(args)], {
      execArgv: ["--import", import.meta.resolve("tsx")],
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      signal: options.signal,
      killSignal: "SIGKILL",
    });
    child.on("error", () => {});
    seen.set(child, new Set());
    child.on("message", (message: Message) => {
      seen.get(child)?.add(message.type);
      if (message.type === "report") reports.set(child, message.report);
      wake();
    });
    child.once("exit", (code, signal) => {
      exited.push(`client process exited (${signal ?? code})`);
      wake();
    });
    children.push(child);
  }
  /** Until every child has said `type`, a child died, or the time is up. */
  const all = async (type: string, timeoutMs: number): Promise<boolean> => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (children.every((child) => seen.get(child)?.has(type))) return true;
      if (exited.length > 0) throw new Error(exited[0]);
      options.signal.throwIfAborted();
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1_000));
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  const close = async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const gone = new Promise((resolve) => child.once("exit", resolve));
        child.send({ type: "close" });
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await gone;
        clearTimeout(timer);
      }),
    );
  };
  try {
    if (!(await all("ready", 60_000))) throw new Error("stream client processes did not start within 60 s");
  } catch (error) {
    await close();
    throw error;
  }
  return {
    pids: children.map((child) => child.pid as number),
    async open(at, timeoutMs) {
      for (const child of children) child.send({ type: "open", at });
      return all("opened", at - Date.now() + timeoutMs);
    },
    settled: (timeoutMs) => all("settled", timeoutMs),
    async report() {
      reports.clear();
      for (const child of children) {
        seen.get(child)?.delete("report");
        child.send({ type: "report" });
      }
      if (!(await all("report", 30_000))) throw new Error("stream client processes did not report within 30 s");
      return mergeReports(children.map((child) => reports.get(child) as ClientsReport));
    },
    close,
  };
}

function mergeReports(reports: readonly ClientsReport[]): ClientsReport {
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [kind, count] of Object.entries(from)) into[kind] = (into[kind] ?? 0) + count;
    return into;
  };
  return {
    streams: reports.reduce((sum, r) => sum + r.streams, 0),
    lateMs: Math.max(...reports.map((r) => r.lateMs)),
    issueMs: Math.max(...reports.map((r) => r.issueMs)),
    connectMs: reports.flatMap((r) => r.connectMs),
    firstStateMs: reports.flatMap((r) => r.firstStateMs),
    changedAt: reports.flatMap((r) => r.changedAt),
    failures: reports.reduce((into, r) => add(into, r.failures), {}),
    failed: reports.flatMap((r) => r.failed),
    endedAfterOpen: reports.reduce((into, r) => add(into, r.endedAfterOpen), {}),
  };
}
