import { startBenchApp } from "./app.js";

/*
 * The real HTTP service (and, with {"worker": true}, the scheduler, as
 * `npm start` runs them) alone in a Node process, started with --expose-gc by
 * bench/lib/service-process.ts, so that its memory can be read apart from the
 * clients'. Speaks over the IPC channel: sends {type: "ready", url}; answers
 * {type: "memory"} with process.memoryUsage() after two full collections;
 * {type: "stop"} closes the service and exits.
 */

type Request = { type: "memory" } | { type: "stop" };

export type ServiceMemory = { rss: number; heapUsed: number; external: number; arrayBuffers: number };

export type ServiceOptions = { worker?: boolean };

const [databaseUrl, envJson, optionsJson] = process.argv.slice(2);
if (!databaseUrl || !process.send) {
  throw new Error("usage: sse-service-child.ts <database url> [env json] [options json] (with IPC)");
}

const send = (message: unknown) => process.send?.(message);

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

const options = optionsJson ? (JSON.parse(optionsJson) as ServiceOptions) : {};
const app = await startBenchApp({
  databaseUrl,
  worker: options.worker === true,
  env: envJson ? (JSON.parse(envJson) as Record<string, string>) : {},
});
process.on("message", (message: Request) => {
  if (message.type === "memory") {
    collect();
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
    send({ type: "memory", memory: { rss, heapUsed, external, arrayBuffers } satisfies ServiceMemory });
  } else if (message.type === "stop") {
    void app
      .stop()
      .catch(() => {})
      .finally(() => process.exit(0));
  }
});
// The parent gone means nobody will ask us to stop.
process.on("disconnect", () => process.exit(0));
send({ type: "ready", url: app.url });
