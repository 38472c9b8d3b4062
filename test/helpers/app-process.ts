import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { expect } from "vitest";
import { eventually } from "./eventually.js";

/*
 * The real app as an operator runs it (npm start): node --import tsx
 * src/main.ts <command>, in its own process group, with its JSON log lines
 * collected. killLaunched() in an afterAll reaches every process a test file
 * started, whatever happened. Not the tsx command: it relays a signal to its
 * child and SIGKILLs it when the child has not acknowledged within 30 ms,
 * which a loaded machine misses (exit 143 in the middle of a graceful stop).
 */

const root = join(import.meta.dirname, "..", "..");

export type LogLine = { level: number; msg: string; [key: string]: unknown };

export type Running = {
  child: ChildProcess;
  lines: LogLine[];
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

const launched: Running[] = [];

/** The environment of an operator's shell, minus anything that would change what the app does. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(DATABASE_URL|TEST_DATABASE_URL|PORT|HOST|LOG_LEVEL|WAITROOM_.*)$/.test(name)) delete env[name];
  }
  return env;
}

export function launch(env: Record<string, string>, command = "start"): Running {
  // Own process group, so cleanup reaches whatever the app starts.
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", command], {
    cwd: root,
    env: { ...baseEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const running: Running = {
    child,
    lines: [],
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))),
  };
  let partial = "";
  child.stdout?.setEncoding("utf8").on("data", (text: string) => {
    running.stdout += text;
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      try {
        running.lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    running.stderr += text;
  });
  launched.push(running);
  return running;
}

/** SIGKILL every process group launched by this file that is still running. */
export function killLaunched(): void {
  for (const running of launched) {
    const pid = running.child.pid;
    if (pid !== undefined && running.child.exitCode === null && running.child.signalCode === null) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {}
    }
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function httpStatus(url: string): Promise<number | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000), headers: { connection: "close" } });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return undefined;
  }
}

export const messages = (running: Running) => running.lines.map((line) => line.msg);

/** Starts and waits until /healthz and /readyz answer 200. */
export async function startServing(env: Record<string, string>, httpPort: number): Promise<Running> {
  const running = launch(env);
  let exited = false;
  void running.exited.then(() => {
    exited = true;
  });
  await eventually(
    async () => {
      if (exited) throw new Error(`start exited early:\n${running.stdout}\n${running.stderr}`);
      return (await httpStatus(`http://127.0.0.1:${httpPort}/healthz`)) === 200;
    },
    "/healthz answers 200",
    60_000,
  );
  await eventually(
    async () => (await httpStatus(`http://127.0.0.1:${httpPort}/readyz`)) === 200,
    "/readyz answers 200",
    10_000,
  );
  expect(await httpStatus(`http://127.0.0.1:${httpPort}/readyz`)).toBe(200);
  return running;
}

/** A signal to the app, as a supervisor would send it; resolves with the exit and how long it took. */
export async function terminate(running: Running, signal: NodeJS.Signals = "SIGTERM") {
  const started = Date.now();
  running.child.kill(signal);
  const timeout = sleep(20_000).then(() => "timeout" as const);
  const exit = await Promise.race([running.exited, timeout]);
  if (exit === "timeout") throw new Error(`the app did not exit within 20 s of ${signal}:\n${running.stdout}`);
  return { ...exit, ms: Date.now() - started };
}
