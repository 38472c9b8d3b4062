import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "./eventually.js";

/** A Debian-packaged binary the deployment tests run (`apt-get install -y <name>`, as .ci/run does); `override` names it instead. */
export function binaryPath(name: string, override: string | undefined, packaged: string): string {
  const candidates = [override, ...(process.env.PATH ?? "").split(":").map((dir) => join(dir, name)), packaged];
  const found = candidates.find((path): path is string => path !== undefined && path !== "" && existsSync(path));
  if (!found) {
    throw new Error(
      `${name} is missing: the gate's deployment tests need it. Install it with \`apt-get install -y ${name}\` (as .ci/run does).`,
    );
  }
  return found;
}

/** A port free right now on the loopback. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A proxy in front of the test's waitroom and origin, listening at url. */
export type RunningProxy = { url: string; stop(): Promise<void>; errorLog(): Promise<string> };

/** A temporary directory the proxy's workers (nobody, when the tests run as root) may write in. */
export async function proxyPrefix(name: string): Promise<string> {
  const prefix = await mkdtemp(join(tmpdir(), `waitroom-${name}-`));
  await chmod(prefix, 0o777);
  return prefix;
}

/**
 * Run the proxy in the foreground (stderr kept as its error log) until it serves waitroom's /healthz
 * at url/.waitroom/healthz; stop() ends it with `stopSignal` and removes the prefix.
 */
export async function runProxy(options: {
  binary: string;
  args: string[];
  env?: Record<string, string>;
  url: string;
  prefix: string;
  stopSignal: NodeJS.Signals;
}): Promise<RunningProxy> {
  const child: ChildProcess = spawn(options.binary, options.args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...options.env },
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`${options.binary} exited ${child.exitCode}: ${stderr}`);
    try {
      return (await fetch(`${options.url}/.waitroom/healthz`)).ok;
    } catch {
      return false;
    }
  }, `${options.binary} answers`);
  return {
    url: options.url,
    errorLog: () => Promise.resolve(stderr),
    async stop() {
      if (child.exitCode === null) {
        child.kill(options.stopSignal);
        await exited;
      }
      await rm(options.prefix, { recursive: true, force: true });
    },
  };
}
