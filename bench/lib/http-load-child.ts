import { writeFile } from "node:fs/promises";
import http from "node:http";
import { type Answer, request } from "./http-request.js";
import { quantileOfSorted } from "./stats.js";

/*
 * The HTTP load generator, run as its own process (bench/lib/http-load.ts
 * starts it) so that it does not share the service's event loop. Closed loop:
 * `concurrency` keep-alive connections, each sending its next request as soon
 * as the previous answer is read. Prints "measuring" when the warm-up ends,
 * "done" when the measured window closes, then one JSON line of results.
 */

export type LoadArgs = {
  url: string;
  path: string;
  method: string;
  /** Sent as `Content-Type: application/json`, as a browser's fetch sends a JSON body; none when unset. */
  jsonBody?: string;
  /** Status every answer should have; others are counted as errors. */
  expectStatus: number;
  concurrency: number;
  warmupSeconds: number;
  /** The measured window; with `requests`, the bound on the whole run. */
  seconds: number;
  /** Send exactly this many requests in all (no warm-up), then stop: a burst rather than a window. */
  requests?: number;
  /** Write the body of every answer with the expected status here, one per line (requires `requests`). */
  answersFile?: string;
};

export type LoadResult = {
  requests: number;
  errors: number;
  /** What the errors were: an unexpected status ("HTTP 503") or a transport error code ("ECONNRESET"). */
  errorKinds: Record<string, number>;
  elapsedMs: number;
  latencyP50Ms: number;
  latencyP90Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  /** This process's CPU (user + system) during the measured window. */
  cpuMs: number;
};

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? "{}") as LoadArgs;
  const burst = args.requests !== undefined;
  const url = new URL(args.path, args.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: args.concurrency });
  const start = performance.now();
  const measureFrom = burst ? start : start + args.warmupSeconds * 1000;
  const measureUntil = measureFrom + args.seconds * 1000;
  const latencies: number[] = [];
  const answers: string[] = [];
  const errorKinds: Record<string, number> = {};
  let errors = 0;
  let sentInAll = 0;
  let lastDone = measureFrom;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let reportedStart = false;
  const countError = (kind: string) => {
    errors++;
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  };

  const loop = async () => {
    for (;;) {
      const sent = performance.now();
      if (sent >= measureUntil || (burst && sentInAll >= (args.requests as number))) return;
      sentInAll++;
      if (!reportedStart && sent >= measureFrom) {
        reportedStart = true;
        cpuAtStart = process.cpuUsage();
        process.stdout.write("measuring\n");
      }
      let answer: Answer | undefined;
      let failure: string | undefined;
      try {
        answer = await request(agent, url, args, args.answersFile !== undefined);
      } catch (error) {
        failure = (error as NodeJS.ErrnoException).code ?? "transport error";
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const done = performance.now();
      // Counted: requests sent and answered inside the window (in a burst: all of them).
      if (sent >= measureFrom && (burst || done <= measureUntil)) {
        lastDone = Math.max(lastDone, done);
        if (answer?.status === args.expectStatus) {
          latencies.push(done - sent);
          if (answer.body !== null) answers.push(answer.body);
        } else {
          countError(failure ?? `HTTP ${answer?.status}`);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, loop));
  const cpu = process.cpuUsage(cpuAtStart);
  process.stdout.write("done\n");
  agent.destroy();
  if (args.answersFile !== undefined) await writeFile(args.answersFile, answers.map((a) => `${a}\n`).join(""));

  latencies.sort((a, b) => a - b);
  const at = (q: number) => (latencies.length > 0 ? quantileOfSorted(latencies, q) : Number.NaN);
  const result: LoadResult = {
    requests: latencies.length,
    errors,
    errorKinds,
    elapsedMs: burst ? lastDone - measureFrom : measureUntil - measureFrom,
    latencyP50Ms: at(0.5),
    latencyP90Ms: at(0.9),
    latencyP99Ms: at(0.99),
    latencyMaxMs: latencies.at(-1) ?? Number.NaN,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
