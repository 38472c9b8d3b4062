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
 * Closed-loop HTTP load from a separate Node process against a service running in this one (or in the
 * process `servicePid`). CPU is sampled when the child reports that its warm-up is over and again when
 * its window closes.
 */
export async function runHttpLoad(
  args: LoadArgs & { signal: AbortSignal; postmasterPid: number | null; servicePid?: number },
): Promise<HttpLoadRun> {
  const { signal, postmasterPid, servicePid, ...loadArgs } = args;
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), CHILD, JSON.stringify(loadArgs)], {
    stdio: ["ignore", "pipe", "pipe"],
    signal,
    timeout: (loadArgs.warmupSeconds + loadArgs.seconds + 60) * 1000,
    killSignal: "SIGKILL",
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code));
  });

  type Snapshot = {
    serverMs: number;
    postgres: Map<number, number> | null;
    machine: Awaited<ReturnType<typeof machineCpu>>;
  };
  const snapshot = async (): Promise<Snapshot> => ({
    serverMs: await serviceCpuMs(servicePid),
    postgres: postmasterPid === null ? null : await childrenCpuMs(postmasterPid),
    machine: await machineCpu(),
  });
  let before: Snapshot | undefined;
  let after: Snapshot | undefined;
  let result: LoadResult | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === "measuring") before = await snapshot();
    else if (line === "done") after = await snapshot();
    else if (line.startsWith("{")) result = JSON.parse(line) as LoadResult;
  }
  const code = await exited;
  if (code !== 0 || !result || !before || !after) {
    throw new Error(`HTTP load generator failed (exit ${code}):\n${stderr.trim().split("\n").slice(-15).join("\n")}`);
  }
  const serverCpuMs = after.serverMs - before.serverMs;
  const perRequest = (ms: number) => ms / Math.max(1, result.requests);
  const postgresMs = before.postgres && after.postgres ? childrenCpuDeltaMs(before.postgres, after.postgres) : null;
  const machine =
    before.machine && after.machine
      ? (100 * (after.machine.busyMs - before.machine.busyMs)) / (after.machine.totalMs - before.machine.totalMs)
      : null;
  return {
    ...result,
    requestsPerSecond: result.requests / (result.elapsedMs / 1000),
    serverCpuMsPerRequest: perRequest(serverCpuMs),
    postgresCpuMsPerRequest: postgresMs === null ? null : perRequest(postgresMs),
    loadGeneratorCpuMsPerRequest: perRequest(result.cpuMs),
    machineBusyPercent: machine,
  };
}
