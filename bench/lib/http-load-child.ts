import http from "node:http";
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
  /** Status every answer should have; others are counted as errors. */
  expectStatus: number;
  concurrency: number;
  warmupSeconds: number;
  seconds: number;
};

export type LoadResult = {
  requests: number;
  errors: number;
  elapsedMs: number;
  latencyP50Ms: number;
  latencyP90Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  /** This process's CPU (user + system) during the measured window. */
  cpuMs: number;
};

function request(agent: http.Agent, url: URL, method: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: { "content-length": "0" } }, (res) => {
      res.on("data", () => {});
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? "{}") as LoadArgs;
  const url = new URL(args.path, args.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: args.concurrency });
  const start = performance.now();
  const measureFrom = start + args.warmupSeconds * 1000;
  const measureUntil = measureFrom + args.seconds * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let reportedStart = false;

  const loop = async () => {
    for (;;) {
      const sent = performance.now();
      if (sent >= measureUntil) return;
      if (!reportedStart && sent >= measureFrom) {
        reportedStart = true;
        cpuAtStart = process.cpuUsage();
        process.stdout.write("measuring\n");
      }
      let ok = false;
      try {
        ok = (await request(agent, url, args.method)) === args.expectStatus;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const done = performance.now();
      // Counted: requests sent and answered inside the window.
      if (sent >= measureFrom && done <= measureUntil) {
        if (ok) latencies.push(done - sent);
        else errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, loop));
  const cpu = process.cpuUsage(cpuAtStart);
  process.stdout.write("done\n");
  agent.destroy();

  latencies.sort((a, b) => a - b);
  const at = (q: number) => (latencies.length > 0 ? quantileOfSorted(latencies, q) : Number.NaN);
  const result: LoadResult = {
    requests: latencies.length,
    errors,
    elapsedMs: measureUntil - measureFrom,
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
