import { readdir, readFile } from "node:fs/promises";

/*
 * Where the CPU went during a measured window, from /proc (Linux only; the
 * figures are null elsewhere). On a 2-core machine the load generator, the
 * service and PostgreSQL share the same cores, so each one's CPU time per
 * request says more than throughput alone.
 */

/** Clock ticks per second of /proc's CPU counters (USER_HZ, 100 on every Linux build in practice). */
const TICKS_PER_SECOND = 100;

/** busyMs includes kernelMs: system, irq and softirq time, where loopback TCP's work for both ends is done. */
export type MachineCpu = { busyMs: number; kernelMs: number; totalMs: number };

/** All cores together since boot, from the first line of /proc/stat. */
export async function machineCpu(): Promise<MachineCpu | null> {
  const text = await readFile("/proc/stat", "utf8").catch(() => null);
  const fields = text?.split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number);
  if (!fields || fields.length < 5 || fields.some((value) => !Number.isFinite(value))) return null;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
  const busy = user + nice + system + irq + softirq + steal;
  const toMs = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
  return { busyMs: toMs(busy), kernelMs: toMs(system + irq + softirq), totalMs: toMs(busy + idle + iowait) };
}

/** CPU time (user + system) of one process, in ms, and its parent's pid. */
export async function processCpuMs(pid: number): Promise<{ parent: number; ms: number } | null> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (!text) return null;
  // The command name may contain spaces and parentheses: fields are counted after its closing one.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const parent = Number(rest[1]);
  const ticks = Number(rest[11]) + Number(rest[12]);
  return Number.isFinite(ticks) ? { parent, ms: (ticks * 1000) / TICKS_PER_SECOND } : null;
}

/** CPU ms of every live child of `parentPid` (PostgreSQL's backends and auxiliary processes), by pid. */
export async function childrenCpuMs(parentPid: number): Promise<Map<number, number>> {
  const result = new Map<number, number>();
  const entries = await readdir("/proc").catch(() => [] as string[]);
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const cpu = await processCpuMs(Number(entry));
    if (cpu && cpu.parent === parentPid) result.set(Number(entry), cpu.ms);
  }
  return result;
}

/**
 * CPU the children spent between two snapshots. A process born in between counts whole (all its
 * time is in the window); one that exited in between is missed, so measure over persistent
 * connections (a connection pool), not over clients that connect and leave.
 */
export function childrenCpuDeltaMs(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}
