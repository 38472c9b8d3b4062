import { loadConfig } from "../../src/config/index.js";
import { type HttpService, startHttp } from "../../src/http/server.js";
import { createLogger } from "../../src/log.js";
import { type Scheduler, startWorker } from "../../src/worker/index.js";

/** The real HTTP service (and, with `worker`, the real scheduler) in this process, on a bench database. */
export type BenchApp = {
  /** http://127.0.0.1:<port> */
  url: string;
  http: HttpService;
  stop(): Promise<void>;
};

export async function startBenchApp(options: {
  databaseUrl: string;
  worker?: boolean;
  /** Environment variables as the service reads them (loadConfig); defaults are the service's own. */
  env?: Record<string, string>;
}): Promise<BenchApp> {
  const config = loadConfig({
    PORT: "0",
    HOST: "127.0.0.1",
    // Streams and keep-alive sockets are cut after this much draining on stop.
    WAITROOM_SHUTDOWN_TIMEOUT_MS: "2000",
    // The service logs JSON lines on stdout, where the results go: errors only, unless LOG_LEVEL asks for more.
    LOG_LEVEL: process.env.LOG_LEVEL ?? "error",
    // The load comes from one address: per-client limits would refuse nearly all of it.
    WAITROOM_RATE_LIMITS: "off",
    ...options.env,
  });
  const log = createLogger(config.logLevel);
  const http = await startHttp({ databaseUrl: options.databaseUrl, config, log });
  let scheduler: Scheduler | undefined;
  if (options.worker) {
    try {
      scheduler = await startWorker({
        databaseUrl: options.databaseUrl,
        log,
        concurrency: config.workerConcurrency,
        sweepIntervalMs: config.sweepIntervalMs,
      });
    } catch (error) {
      await http.close();
      throw error;
    }
  }
  return {
    url: http.url,
    http,
    async stop() {
      try {
        await scheduler?.stop();
      } finally {
        await http.close();
      }
    },
  };
}
