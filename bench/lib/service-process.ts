import { type ChildProcess, fork } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { ServiceMemory, ServiceOptions } from "./sse-service-child.js";

/*
 * The real service alone in a child Node process (bench/lib/sse-service-child.ts,
 * with --expose-gc), so that its memory and CPU are its own and not the
 * clients'. Benchmarks that hold many streams or drive it from other processes
 * start it through here.
 */

const CHILD = fileURLToPath(new URL("./sse-service-child.ts", import.meta.url));

export type ServiceProcess = {
  url: string;
  /** For reading its CPU and descriptors from /proc. */
  pid: number;
  /** process.memoryUsage() after two full collections. */
  memory(): Promise<ServiceMemory>;
  stop(): Promise<void>;
};

export async function startServiceProcess(options: {
  databaseUrl: string;
  /** Environment variables as the service reads them (loadConfig), also set in the child's environment. */
  env?: Record<string, string>;
  service?: ServiceOptions;
  /** More Node flags, e.g. --cpu-prof. */
  execArgv?: string[];
  signal: AbortSignal;
}): Promise<ServiceProcess> {
  const env = options.env ?? {};
  const child: ChildProcess = fork(
    CHILD,
    [options.databaseUrl, JSON.stringify(env), JSON.stringify(options.service ?? {})],
    {
      execArgv: ["--import", import.meta.resolve("tsx"), "--expose-gc", ...(options.execArgv ?? [])],
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      signal: options.signal,
      killSignal: "SIGKILL",
    },
  );
  child.on("error", () => {});
  const next = <T>(type: string) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (message: { type: string } & Record<string, unknown>) => {
        if (message.type !== type) return;
        child.off("message", onMessage);
        child.off("exit", onExit);
        resolve(message as T);
      };
      const onExit = (code: number | null) => {
        child.off("message", onMessage);
        reject(new Error(`service process exited (${code}) before '${type}'`));
      };
      child.on("message", onMessage);
      child.once("exit", onExit);
    });
  const { url } = await next<{ url: string }>("ready");
  return {
    url,
    pid: child.pid as number,
    async memory() {
      const answer = next<{ memory: ServiceMemory }>("memory");
      child.send({ type: "memory" });
      return (await answer).memory;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.send({ type: "stop" });
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** How many descriptors a process holds now; null when /proc does not say. */
export async function openDescriptors(pid: number): Promise<number | null> {
  const entries = await readdir(`/proc/${pid}/fd`).catch(() => null);
  return entries ? entries.length : null;
}

/** The soft open-files limit of this process (children inherit it); null when /proc does not say. */
export async function descriptorLimit(): Promise<number | null> {
  const limits = await readFile("/proc/self/limits", "utf8").catch(() => "");
  const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.split(/\s{2,}/)[1];
  return soft && /^\d+$/.test(soft) ? Number(soft) : null;
}
