import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { childrenCpuDeltaMs, childrenCpuMs, machineCpu, processCpuMs } from "./cpu.js";
import type { LoadArgs, LoadResult } from "./http-load-child.js";

const CHILD = fileURLToPath(new URL("./http-load-child.ts", import.meta.url));

async function serviceCpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  }
  return (await processCpuMs(pid))?.ms ?? Number.NaN;
}

/** CPU ms spent during a load child's measured window, by party. */
export type WindowCpu = {
  /** The service under test (NaN when /proc does not say). */
  serviceMs: number;
  /** PostgreSQL's processes, less `excludePostgresPids`; null when /proc or the postmaster pid is unavailable. */
  postgresMs: number | null;
  /** The excluded backends (the benchmark's own connections); null as postgresMs. */
  excludedPostgresMs: number | null;
  loadGeneratorMs: number;
  /** Share of all cores busy during the window, whoever used them (the machine is shared). */
  machineBusyPercent: number | null;
};

/**
 * Run a load generator (a script in its own Node process, given its arguments as JSON) that prints
 * "measuring" when its warm-up ends, "done" when its measured window closes, and finally one JSON line
 * of results with its own CPU in the window as `cpuMs`. The service's, PostgreSQL's and the machine's
 * CPU are sampled at those two lines.
 */
export async function runLoadChild<Result extends { cpuMs: number }>(options: {
  script: string;
  args: unknown;
  timeoutMs: number;
  signal: AbortSignal;
  postmasterPid: number | null;
  /** The service's process; this one when unset. */
  servicePid?: number;
  /** PostgreSQL backends whose CPU is not the load's (the benchmark's sampling connection). */
  excludePostgresPids?: readonly number[];
}): Promise<{ result: Result; cpu: WindowCpu }> {
  const { signal, postmasterPid, servicePid } = options;
  const child = spawn(
    process.execPath,
    ["--import", import.meta.resolve("tsx"), options.script, JSON.stringify(options.args)],
    { stdio: ["ignore", "pipe", "pipe"], signal, timeout: options.timeoutMs, killSignal: "SIGKILL" },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code));
  });

  type Snapshot = {
    serviceMs: number;
    postgres: Map<number, number> | null;
    machine: Awaited<ReturnType<typeof machineCpu>>;
  };
  const snapshot = async (): Promise<Snapshot> => ({
    serviceMs: await serviceCpuMs(servicePid),
    postgres: postmasterPid === null ? null : await childrenCpuMs(postmasterPid),
    machine: await machineCpu(),
  });
  let before: Snapshot | undefined;
  let after: Snapshot | undefined;
  let result: Result | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === "measuring") before = await snapshot();
    else if (line === "done") after = await snapshot();
    else if (line.startsWith("{")) result = JSON.parse(line) as Result;
  }
  const code = await exited;
  if (code !== 0 || !result || !before || !after) {
    throw new Error(`load generator failed (exit ${code}):\n${stderr.trim().split("\n").slice(-15).join("\n")}`);
  }
  let postgresMs: number | null = null;
  let excludedPostgresMs: number | null = null;
  if (before.postgres && after.postgres) {
    const excluded = new Set(options.excludePostgresPids ?? []);
    const keep = (map: Map<number, number>, wanted: boolean) =>
      new Map([...map].filter(([pid]) => excluded.has(pid) === wanted));
    postgresMs = childrenCpuDeltaMs(keep(before.postgres, false), keep(after.postgres, false));
    excludedPostgresMs = childrenCpuDeltaMs(keep(before.postgres, true), keep(after.postgres, true));
  }
  const machineBusyPercent =
    before.machine && after.machine
      ? (100 * (after.machine.busyMs - before.machine.busyMs)) / (after.machine.totalMs - before.machine.totalMs)
      : null;
  return {
    result,
    cpu: {
      serviceMs: after.serviceMs - before.serviceMs,
      postgresMs,
      excludedPostgresMs,
      loadGeneratorMs: result.cpuMs,
      machineBusyPercent,
    },
  };
}

export type HttpLoadRun = LoadResult & {
  requestsPerSecond: number;
  /** The service under test during the measured window; CPU ms per request (NaN when /proc does not say). */
  serverCpuMsPerRequest: number;
  /** PostgreSQL's processes; null when /proc or the postmaster pid is unavailable. */
  postgresCpuMsPerRequest: number | null;
  loadGeneratorCpuMsPerRequest: number;
  /** Share of all cores busy during the window, whoever used them (the machine is shared). */
  machineBusyPercent: number | null;
};

/**
 * Closed-loop HTTP load from a separate Node process (bench/lib/http-load-child.ts) against a service
 * running in this one (or in the process `servicePid`).
 */
export async function runHttpLoad(
  args: LoadArgs & { signal: AbortSignal; postmasterPid: number | null; servicePid?: number },
): Promise<HttpLoadRun> {
  const { signal, postmasterPid, servicePid, ...loadArgs } = args;
  const { result, cpu } = await runLoadChild<LoadResult>({
    script: CHILD,
    args: loadArgs,
    timeoutMs: (loadArgs.warmupSeconds + loadArgs.seconds + 60) * 1000,
    signal,
    postmasterPid,
    servicePid,
  });
  const perRequest = (ms: number) => ms / Math.max(1, result.requests);
  return {
    ...result,
    requestsPerSecond: result.requests / (result.elapsedMs / 1000),
    serverCpuMsPerRequest: perRequest(cpu.serviceMs),
    postgresCpuMsPerRequest: cpu.postgresMs === null ? null : perRequest(cpu.postgresMs),
    loadGeneratorCpuMsPerRequest: perRequest(cpu.loadGeneratorMs),
    machineBusyPercent: cpu.machineBusyPercent,
  };
}
