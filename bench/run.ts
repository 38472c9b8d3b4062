import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createLogger } from "../src/log.js";
import { admissionBenchmark } from "./admission.js";
import { etaBenchmark } from "./eta.js";
import { httpJoinBenchmark } from "./http-join.js";
import { joinBenchmark } from "./join.js";
import { leaveAdmitBenchmark } from "./leave-admit.js";
import {
  readOptInSections,
  renderBenchmarksFile,
  spliceOptInSections,
  writeBenchmarksFile,
  writeOptInSection,
} from "./lib/benchmarks-file.js";
import { describeMachine, loadAverageNow } from "./lib/machine.js";
import { ensurePgbench } from "./lib/pgbench.js";
import { startBenchServer } from "./lib/server.js";
import type { BenchContext, Benchmark, Mode } from "./lib/types.js";
import { lifecyclesBenchmark } from "./lifecycles.js";
import { rushBenchmark } from "./rush.js";
import { soakBenchmark } from "./soak.js";
import { sseFanoutBenchmark } from "./sse-fanout.js";

/*
 * npm run bench [-- --quick] [-- --write | --no-write] [-- --only <id>[,<id>…]]
 *
 * Runs every benchmark against one durable embedded PostgreSQL of its own,
 * prints a table per benchmark on stdout (progress goes to stderr), ends with
 * one JSON line of all figures, and rewrites BENCHMARKS.md: always in full
 * mode, in quick mode only with --write. --only runs some benchmarks (for
 * working on one, or profiling it) and never writes the file — except the
 * opt-in ones (the soak), which run only when named: a full run of one keeps
 * its section in bench/results/<id>.md, which BENCHMARKS.md includes.
 */

/** In order of BENCHMARKS.md. */
const BENCHMARKS: readonly Benchmark[] = [
  joinBenchmark,
  httpJoinBenchmark,
  admissionBenchmark,
  sseFanoutBenchmark,
  leaveAdmitBenchmark,
  etaBenchmark,
  rushBenchmark,
  lifecyclesBenchmark,
];

/** Too long for the default run: only with --only <id>. Their last full-mode sections live in bench/results/. */
const OPT_IN: readonly Benchmark[] = [soakBenchmark];

/**
 * Hard bounds on the whole run, setup and teardown included, for a run that is stuck rather than slow. A
 * full run takes ≈ 15–16 min since the rush (≈ 3.5–4.5 min of it), plus ≈ 2.5–3 min for the set-based
 * lifecycles and at most ≈ 2.5 min for them over HTTP, ≈ 22 min on a quiet machine; a quick one ≈ 2–4 min,
 * and up to ≈ 6 on a loaded one (within bench/smoke.test.ts's 8).
 */
const DEADLINE_SECONDS: Record<Mode, number> = { full: 35 * 60, quick: 420 };

const BENCHMARKS_FILE = fileURLToPath(new URL("../BENCHMARKS.md", import.meta.url));

type Options = { mode: Mode; write: boolean; benchmarks: readonly Benchmark[] };

const USAGE =
  "usage: tsx bench/run.ts [--quick] [--write | --no-write] [--only <id>[,<id>…]]   (BENCH_QUICK=1 also selects quick mode)" +
  `\nbenchmark ids: ${BENCHMARKS.map((benchmark) => benchmark.id).join(", ")}; opt-in: ${OPT_IN.map((benchmark) => benchmark.id).join(", ")}`;

function parseOptions(args: readonly string[], env: NodeJS.ProcessEnv): Options {
  const known = new Set(["--quick", "--write", "--no-write"]);
  const rest = [...args];
  let only: string[] | undefined;
  const onlyAt = rest.findIndex((arg) => arg === "--only" || arg.startsWith("--only="));
  if (onlyAt >= 0) {
    const arg = rest[onlyAt] as string;
    const value = arg === "--only" ? rest[onlyAt + 1] : arg.slice("--only=".length);
    rest.splice(onlyAt, arg === "--only" ? 2 : 1);
    only = (value ?? "").split(",").filter(Boolean);
    const ids = new Set([...BENCHMARKS, ...OPT_IN].map((benchmark) => benchmark.id));
    const wrong = only.filter((id) => !ids.has(id));
    if (only.length === 0 || wrong.length > 0) throw new Error(`unknown benchmark ${wrong.join(", ")}\n${USAGE}`);
  }
  const unknown = rest.filter((arg) => !known.has(arg));
  if (unknown.length > 0) throw new Error(`unknown argument ${unknown.join(" ")}\n${USAGE}`);
  const quick = args.includes("--quick") || (env.BENCH_QUICK !== undefined && !["", "0"].includes(env.BENCH_QUICK));
  // BENCHMARKS.md has a section per benchmark: a partial run must not replace it.
  const write = only === undefined && (quick ? args.includes("--write") : !args.includes("--no-write"));
  const benchmarks =
    only === undefined ? BENCHMARKS : [...BENCHMARKS, ...OPT_IN].filter((benchmark) => only.includes(benchmark.id));
  return { mode: quick ? "quick" : "full", write, benchmarks };
}

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

function rejectWhenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2), process.env);
  const startedAt = new Date();
  const loadAverageBefore = loadAverageNow();
  const log = createLogger(process.env.LOG_LEVEL ?? "warn");

  const interrupted = new AbortController();
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    process.once(name, () => interrupted.abort(new Error(`interrupted by ${name}`)));
  }
  const deadline = DEADLINE_SECONDS[options.mode];
  // A timer, not AbortSignal.timeout: on Node 20 a timeout signal that only AbortSignal.any holds is
  // garbage-collected and never fires (a quick run went on for 353 s past its 260 s deadline).
  const overdue = new AbortController();
  setTimeout(
    () => overdue.abort(new Error(`benchmark run exceeded its ${deadline} s deadline`)),
    deadline * 1000,
  ).unref();
  const signal = AbortSignal.any([interrupted.signal, overdue.signal]);
  const aborted = rejectWhenAborted(signal);

  say(`waitroom benchmarks: ${options.mode} mode${options.write ? "" : " (BENCHMARKS.md left unchanged)"}`);
  const pgbench = await Promise.race([ensurePgbench(say, signal), aborted]);
  if (pgbench.installedNow) say(`installed ${pgbench.version} at ${pgbench.path}`);
  const starting = startBenchServer(log, say);
  const server = await Promise.race([starting, aborted]).catch(async (error: unknown) => {
    // Given up on while starting: the server may still come up, and must not outlive us.
    await Promise.race([starting.then((late) => late.stop()), delay(30_000)]).catch(() => {});
    throw error;
  });
  try {
    const suite = (async () => {
      const machine = await describeMachine({
        serverUrl: server.serverUrl,
        dataDir: server.dataDir,
        pgbench,
        loadAverageBefore,
      });
      const context: BenchContext = { mode: options.mode, server, pgbench, signal, log, say };
      const reports = [];
      for (const benchmark of options.benchmarks) {
        const started = Date.now();
        say(`— ${benchmark.title}`);
        reports.push({ benchmark, report: await benchmark.run(context) });
        say(`  (${benchmark.id}: ${Math.round((Date.now() - started) / 1000)} s)`);
      }
      return { machine, reports };
    })();
    // The race settles on the deadline even when the suite is stuck; stopping the server below then unblocks it.
    suite.catch(() => {});
    const { machine, reports } = await Promise.race([suite, aborted]);

    for (const { report } of reports) process.stdout.write(`\n${report.console}\n`);
    if (options.mode === "full") {
      for (const { benchmark, report } of reports.filter(({ benchmark }) => OPT_IN.includes(benchmark))) {
        await writeOptInSection(benchmark.id, report.markdown, startedAt);
        say(`wrote bench/results/${benchmark.id}.md`);
      }
    }
    if (options.write) {
      const content = renderBenchmarksFile({
        startedAt,
        mode: options.mode,
        durationSeconds: (Date.now() - startedAt.getTime()) / 1000,
        machine,
        sections: [...reports.map(({ report }) => report.markdown), ...(await readOptInSections(OPT_IN))],
      });
      await writeBenchmarksFile(BENCHMARKS_FILE, content);
      say(`wrote ${BENCHMARKS_FILE}`);
    } else if (reports.some(({ benchmark }) => OPT_IN.includes(benchmark)) && options.mode === "full") {
      await spliceOptInSections(BENCHMARKS_FILE, OPT_IN);
      say(`updated the opt-in sections of ${BENCHMARKS_FILE}`);
    }
    // Last line of stdout: every figure, for scripts and tests.
    const figures = Object.fromEntries(reports.map(({ benchmark, report }) => [benchmark.id, report.figures]));
    process.stdout.write(
      `\n${JSON.stringify({ waitroomBench: { mode: options.mode, machine, benchmarks: figures } })}\n`,
    );
  } finally {
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    say(`benchmark failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
