import { readFile } from "node:fs/promises";

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
