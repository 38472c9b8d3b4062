import { EventSource } from "eventsource";
import { afterAll, beforeAll, expect } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { type HttpService, startHttp } from "../../src/http/server.js";
import { createLogger } from "../../src/log.js";
import { type Scheduler, startWorker } from "../../src/worker/index.js";
import type { TestDatabase } from "./database.js";

export const ADMIN_KEY = "admin-key-for-tests-0123456789";
export const SERVER_KEY = "server-key-for-tests-0123456789";

/**
 * Per-client limits of a test server: on, as in production, so every call goes through them, but
 * high, since a test file makes all its calls from one address. A test of the limits themselves
 * sets its own, or "" for the service's defaults; a load test sets WAITROOM_RATE_LIMITS=off.
 */
export const testLimits = {
  WAITROOM_RATE_LIMIT_JOIN: "100000/s",
  WAITROOM_RATE_LIMIT_HOLDER: "100000/s",
  WAITROOM_RATE_LIMIT_TICKET: "100000/s",
  WAITROOM_RATE_LIMIT_STREAM: "100000/s",
  WAITROOM_RATE_LIMIT_CHECK: "100000/s",
  WAITROOM_RATE_LIMIT_KEY_FAILURES: "100000/s",
};

/** Environment of a test server: fast stream timers, keys set, limits high, logs off. */
export const testEnvironment = (overrides: Record<string, string> = {}): Record<string, string> => ({
  PORT: "0",
  HOST: "127.0.0.1",
  WAITROOM_ADMIN_KEY: ADMIN_KEY,
  WAITROOM_SERVER_KEY: SERVER_KEY,
  WAITROOM_REFRESH_MS: "300",
  WAITROOM_PRESENCE_MS: "1000",
  WAITROOM_KEEPALIVE_MS: "5000",
  ...testLimits,
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
  ...overrides,
});

export type TestServer = HttpService & {
  /** fetch against the server; JSON bodies are serialised and typed as JSON. */
  request(
    path: string,
    init?: { method?: string; body?: unknown; token?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response>;
};

/** A real HTTP server (and, with `worker`, the real scheduler) on the test file's database, as the service's role. */
export function useTestServer(
  db: TestDatabase,
  options: { worker?: boolean; env?: Record<string, string> } = {},
): TestServer {
  const server = {} as TestServer;
  let scheduler: Scheduler | undefined;
  beforeAll(async () => {
    const config = loadConfig(testEnvironment(options.env));
    const log = createLogger(config.logLevel);
    const http = await startHttp({ databaseUrl: db.serviceUrl, config, log });
    if (options.worker) {
      scheduler = await startWorker({ databaseUrl: db.serviceUrl, log, concurrency: 4, sweepIntervalMs: 1000 });
    }
    Object.assign(server, http, {
      request: (path: string, init: Parameters<TestServer["request"]>[1] = {}) => {
        const headers: Record<string, string> = { ...init.headers };
        if (init.token) headers.authorization = `Bearer ${init.token}`;
        let body: string | undefined;
        if (init.body !== undefined) {
          body = typeof init.body === "string" ? init.body : JSON.stringify(init.body);
          headers["content-type"] ??= "application/json";
        }
        return fetch(`${http.url}${path}`, { method: init.method ?? "GET", headers, body, signal: init.signal });
      },
    });
  });
  afterAll(async () => {
    // Every error code answered during the file must be one /openapi.json documents for its route.
    const text = server.url ? await (await fetch(`${server.url}/metrics`)).text() : "";
    const undocumented = text.split("\n").filter((line) => line.startsWith("waitroom_http_undocumented_errors_total{"));
    await scheduler?.stop();
    await server.close?.();
    expect(undocumented).toEqual([]);
  });
  return server;
}

/** A sample of the server's /metrics; `series` may carry labels, e.g. 'waitroom_batch_size_count{kind="join"}'. */
export async function metric(server: TestServer, series: string): Promise<number> {
  const text = await (await server.request("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `) || l.startsWith(`${series}{`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

export type StreamMessage = { event: string; id: string; data: Record<string, unknown> };

const streamEvents = ["state", "admitted", "active", "draining", "ended", "superseded", "room"];

/** A real EventSource on a ticket's stream that records every named event and lets tests wait for one. */
export class StreamRecorder {
  readonly messages: StreamMessage[] = [];
  readonly source: EventSource;
  #waiters: Array<() => void> = [];

  constructor(url: string) {
    this.source = new EventSource(url);
    for (const event of streamEvents) {
      this.source.addEventListener(event, (message) => {
        this.messages.push({ event, id: message.lastEventId, data: JSON.parse(message.data) });
        for (const wake of this.#waiters.splice(0)) wake();
      });
    }
  }

  /** The first recorded message (from `from` on) that matches, waiting up to timeoutMs for it. */
  async next(match: (message: StreamMessage) => boolean, timeoutMs = 10_000, from = 0): Promise<StreamMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no matching stream message within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.source.close();
  }
}
