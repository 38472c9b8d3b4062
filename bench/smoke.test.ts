import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { AdmissionFigures } from "./admission.js";
import type { EtaFigures } from "./eta.js";
import type { HttpJoinFigures } from "./http-join.js";
import type { JoinFigures } from "./join.js";
import type { LeaveAdmitFigures } from "./leave-admit.js";
import type { LifecyclesFigures } from "./lifecycles.js";
import type { RushFigures } from "./rush.js";
import type { SseFanoutFigures } from "./sse-fanout.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const benchmarksFile = fileURLToPath(new URL("../BENCHMARKS.md", import.meta.url));
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url));

/** The quick run takes ~1.5 min alone; the margin is for a loaded CI machine. */
const RUN_TIMEOUT_MS = 480_000;

type BenchOutput = {
  waitroomBench: {
    mode: string;
    benchmarks: {
      join: JoinFigures;
      httpJoin: HttpJoinFigures;
      admission: AdmissionFigures;
      sseFanout: SseFanoutFigures;
      leaveAdmit: LeaveAdmitFigures;
      eta: EtaFigures;
      rush: RushFigures;
      lifecycles: LifecyclesFigures;
    };
  };
};
type Finished = { code: number | null; stdout: string; stderr: string };

function runQuickBench(): Promise<Finished> {
  return new Promise((resolve, reject) => {
    // BENCH_QUICK and LOG_LEVEL from the caller's shell must not change what is tested.
    const { BENCH_QUICK: _quick, LOG_LEVEL: _level, ...env } = process.env;
    const child = spawn(tsx, ["bench/run.ts", "--quick"], { cwd: root, env, timeout: RUN_TIMEOUT_MS });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function benchmarksFileContent(): Promise<string | undefined> {
  return readFile(benchmarksFile, "utf8").catch(() => undefined);
}

describe("bench/run.ts --quick", () => {
  it(
    "completes, reports figures for every benchmark and leaves BENCHMARKS.md alone",
    async () => {
      const before = await benchmarksFileContent();
      const { code, stdout, stderr } = await runQuickBench();
      expect(code, `exit code; stderr:\n${stderr}`).toBe(0);

      const lastLine = stdout.trim().split("\n").at(-1) ?? "";
      const output = JSON.parse(lastLine) as BenchOutput;
      expect(output.waitroomBench.mode).toBe("quick");
      const { join, httpJoin, admission, sseFanout, leaveAdmit, eta, rush, lifecycles } =
        output.waitroomBench.benchmarks;
      for (const workload of ["raw", "floor", "join", "add_job"] as const) {
        expect(join.workloads[workload].medianTps, workload).toBeGreaterThan(0);
        expect(join.workloads[workload].medianWalBytesPerTransaction, workload).toBeGreaterThan(0);
      }
      expect(join.ratios.joinToRaw).toBeGreaterThan(0);
      expect(join.ratios.joinToFloor).toBeGreaterThan(0);
      expect(stdout).toContain("join/raw =");

      for (const workload of ["raw", "join", "http", "limited", "floor"] as const) {
        expect(httpJoin.workloads[workload].medianTps, workload).toBeGreaterThan(0);
      }
      expect(httpJoin.ratios.httpToRaw).toBeGreaterThan(0);
      expect(httpJoin.ratios.limitedToHttp).toBeGreaterThan(0);
      expect(stdout).toContain("HTTP join/raw =");

      expect(admission.admit.medianMs).toBeGreaterThan(0);
      expect(admission.depths.length).toBeGreaterThan(0);
      for (const depth of admission.depths) expect(depth.tickMs.median, `depth ${depth.depth}`).toBeGreaterThan(0);

      expect(leaveAdmit.samples).toBeGreaterThan(0);
      expect(leaveAdmit.latency.p99).toBeGreaterThan(0);

      expect(sseFanout.sizes.length).toBeGreaterThan(0);
      for (const size of sseFanout.sizes) {
        expect(size.streams, "streams").toBeGreaterThan(0);
        expect(size.missed, "streams that missed an update").toBe(0);
        expect(size.update.p99, "update p99").toBeGreaterThan(0);
        expect(size.memory.after.rss, "service RSS").toBeGreaterThan(0);
        expect(size.positionQueriesPerChange, "position queries per change").toBeGreaterThanOrEqual(1);
      }

      expect(eta.scenarios.length).toBeGreaterThan(0);
      for (const scenario of eta.scenarios) {
        expect(scenario.observations, scenario.name).toBeGreaterThan(0);
        expect(Number.isFinite(scenario.medianAbsError), scenario.name).toBe(true);
      }

      for (const workload of [
        "raw",
        "join_many",
        "join_many_floor",
        "add_jobs",
        "pgboss",
        "http",
        "healthz",
      ] as const) {
        const figures = rush.workloads[workload];
        expect(figures.available, workload).toBe(true);
        expect(figures.medianPerSecond, workload).toBeGreaterThan(0);
        expect(figures.errors, `${workload} errors`).toBe(0);
      }
      expect(rush.workloads.add_jobs.rowsPerCall, "add_jobs rows per call").toBe(100);
      expect(rush.workloads.pgboss.rowsPerCall, "pg-boss rows per call").toBe(100);
      expect(rush.workloads.join_many_floor.rowsPerCall, "join_many floor rows per call").toBe(100);
      expect(rush.sizes.length).toBeGreaterThan(0);
      for (const size of rush.sizes) {
        expect(size.join.joined, "joins answered 202").toBe(size.size);
        expect(size.streams.opened, "streams with a first state").toBe(size.size);
        expect(size.streams.firstState.p99, "first state p99").toBeGreaterThan(0);
        expect(size.memory.after.rss, "service RSS").toBeGreaterThan(0);
        expect(size.opening?.admitted, "admitted at the opening").toBe(size.capacity);
        expect(size.opening?.update.p99, "draw seen p99").toBeGreaterThan(0);
        expect(size.opening?.missed, "streams that missed the draw").toBe(0);
        expect(size.errors, "errors").toBe(0);
      }
      expect(rush.admit.medianMs).toBeGreaterThan(0);
      expect(rush.admit.floorMs.length, "admit floor rounds").toBe(rush.admit.ms.length);
      expect(rush.admit.floorMedianMs, "admit floor").toBeGreaterThan(0);
      expect(stdout).toContain("Rush — N join");

      expect(lifecycles.capacity.sweepPerSecond, "sweep purge rate").toBeGreaterThan(0);
      expect(lifecycles.capacity.barePerSecond, "bare DELETE rate").toBeGreaterThan(0);
      expect(lifecycles.sustained.lifecycles, "lifecycles driven").toBeGreaterThan(0);
      expect(lifecycles.sustained.sweeps, "sweeps during the load").toBeGreaterThan(0);
      expect(lifecycles.sustained.samples.length, "samples").toBeGreaterThan(0);
      expect(stdout).toContain("Lifecycles — sweeps purge");

      const [firstHttpStep] = lifecycles.http.steps;
      expect(firstHttpStep?.completed, "lifecycles through over HTTP").toBeGreaterThan(0);
      for (const step of lifecycles.http.steps) {
        expect(step.errors, `errors at ${step.offeredPerSecond}/s: ${JSON.stringify(step.errorKinds)}`).toBe(0);
        expect(step.joinToAdmitted.p50, "join → admitted p50").toBeGreaterThan(0);
        expect(step.cpuPerLifecycle.serviceMs, "service CPU per lifecycle").toBeGreaterThan(0);
      }
      const httpSweeps = lifecycles.http.steps.reduce((sum, step) => sum + step.sweep.calls, 0);
      expect(httpSweeps, "sweeps during the HTTP steps").toBeGreaterThan(0);
      expect(lifecycles.http.functions.length, "PostgreSQL's time by function").toBeGreaterThan(0);
      expect(stdout).toContain("Lifecycles over HTTP —");

      expect(await benchmarksFileContent()).toBe(before);
    },
    RUN_TIMEOUT_MS + 20_000,
  );
});
