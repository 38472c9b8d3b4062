import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "./eventually.js";

/** Debian's nginx (`apt-get install -y nginx`, as .ci/run does); NGINX_PATH overrides. */
export function nginxPath(): string {
  const candidates = [
    process.env.NGINX_PATH,
    ...(process.env.PATH ?? "").split(":").map((dir) => join(dir, "nginx")),
    "/usr/sbin/nginx",
  ];
  const found = candidates.find((path): path is string => path !== undefined && path !== "" && existsSync(path));
  if (!found) {
    throw new Error(
      "nginx is missing: the gate's deployment tests need it. Install it with `apt-get install -y nginx` (as .ci/run does), or set NGINX_PATH.",
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

export type Nginx = { url: string; stop(): Promise<void>; errorLog(): Promise<string> };

/**
 * deploy/nginx-gate.conf as it is, with its ports pointed at the test's waitroom and origin, run by the real
 * nginx with deploy/nginx-gate-dev.conf: unprivileged, in a temporary prefix (its own pid and temp paths),
 * in the foreground, logging to stderr.
 */
export async function startGateNginx(options: { waitroomPort: number; originPort: number }): Promise<Nginx> {
  const prefix = await mkdtemp(join(tmpdir(), "waitroom-nginx-"));
  // Workers run as nobody when the tests run as root: they must reach the temp paths.
  await chmod(prefix, 0o777);
  const port = await freePort();
  const example = await readFile(new URL("../../deploy/nginx-gate.conf", import.meta.url), "utf8");
  const site = example
    .replace("server 127.0.0.1:8080;", `server 127.0.0.1:${options.waitroomPort};`)
    .replace("server 127.0.0.1:3000;", `server 127.0.0.1:${options.originPort};`)
    .replace("listen 8081;", `listen 127.0.0.1:${port};`);
  if (site === example) throw new Error("deploy/nginx-gate.conf no longer has the lines the test rewrites");
  // The README's way to run it: deploy/nginx-gate-dev.conf includes the site file beside it.
  await writeFile(join(prefix, "nginx-gate.conf"), site);
  await copyFile(new URL("../../deploy/nginx-gate-dev.conf", import.meta.url), join(prefix, "nginx.conf"));
  const child: ChildProcess = spawn(
    nginxPath(),
    ["-p", prefix, "-c", join(prefix, "nginx.conf"), "-g", "daemon off;"],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}: ${stderr}`);
    try {
      await fetch(`${url}/.waitroom/healthz`);
      return true;
    } catch {
      return false;
    }
  }, "nginx answers");
  return {
    url,
    errorLog: () => Promise.resolve(stderr),
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGQUIT");
        await exited;
      }
      await rm(prefix, { recursive: true, force: true });
    },
  };
}
