import { readFile, writeFile } from "node:fs/promises";

/*
 * The kernel's TCP counters (/proc/net/netstat, machine-wide; null where
 * there is none). Read around a phase in which this run is the only one
 * opening thousands of connections, their deltas say whether connections
 * waited in or were dropped from a listen queue — which the clients only
 * see as slow connects (SYN retransmitted after 1 s, 3 s, 7 s, …) and resets.
 */

export const TCP_COUNTERS = [
  /** A connection completed its handshake but the listen (accept) queue was full. */
  "ListenOverflows",
  "ListenDrops",
  /** SYNs dropped, or answered with a cookie, because the SYN queue was full. */
  "TCPReqQFullDrop",
  "TCPReqQFullDoCookies",
  /** SYN and SYN-ACK retransmissions: a handshake that had to be retried. */
  "TCPSynRetrans",
  /** Resets sent: to a connection still in its handshake, and by a close with unread data. */
  "EmbryonicRsts",
  "TCPAbortOnData",
] as const;
export type TcpCounter = (typeof TCP_COUNTERS)[number];
export type TcpCounters = Record<TcpCounter, number>;

export async function tcpCounters(): Promise<TcpCounters | null> {
  const text = await readFile("/proc/net/netstat", "utf8").catch(() => null);
  const lines = text?.split("\n").filter((line) => line.startsWith("TcpExt:")) ?? [];
  const [names, values] = lines.map((line) => line.split(/\s+/).slice(1));
  if (!names || !values) return null;
  const counters = {} as TcpCounters;
  for (const counter of TCP_COUNTERS) {
    const at = names.indexOf(counter);
    counters[counter] = at >= 0 ? Number(values[at]) : 0;
  }
  return counters;
}

export function tcpCountersDelta(before: TcpCounters | null, after: TcpCounters | null): TcpCounters | null {
  if (!before || !after) return null;
  const delta = {} as TcpCounters;
  for (const counter of TCP_COUNTERS) delta[counter] = after[counter] - before[counter];
  return delta;
}

/** The kernel's caps on listen queues, before and after this run set them as docs/operations.md advises. */
export type ListenQueueLimits = { somaxconn: number | null; raisedFrom: number | null };

const SOMAXCONN = "/proc/sys/net/core/somaxconn";
const SYN_BACKLOG = "/proc/sys/net/ipv4/tcp_max_syn_backlog";
const RUSH_QUEUE = 65_535;

/**
 * An opening rush needs listen queues longer than the usual 4,096 (docs/operations.md, "Before an
 * opening rush"): raise them where this process may (root), as an operator would for the event, and
 * say so in the report; elsewhere leave them and report what they are.
 */
export async function prepareListenQueues(): Promise<ListenQueueLimits> {
  const read = async (path: string) => Number((await readFile(path, "utf8").catch(() => "")).trim()) || null;
  const before = await read(SOMAXCONN);
  if (before === null || before >= RUSH_QUEUE || process.getuid?.() !== 0)
    return { somaxconn: before, raisedFrom: null };
  try {
    await writeFile(SOMAXCONN, String(RUSH_QUEUE));
    await writeFile(SYN_BACKLOG, String(RUSH_QUEUE));
  } catch {
    return { somaxconn: before, raisedFrom: null };
  }
  return { somaxconn: await read(SOMAXCONN), raisedFrom: before };
}
