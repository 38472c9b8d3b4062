import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
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
 * nginx unprivileged in a temporary prefix (its own pid, logs and temp paths), in the foreground.
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
  await writeFile(join(prefix, "gate.conf"), site);
  await writeFile(
    join(prefix, "nginx.conf"),
    `worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  include ${prefix}/gate.conf;
}
`,
  );
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
    errorLog: () => readFile(join(prefix, "error.log"), "utf8").catch(() => ""),
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGQUIT");
        await exited;
      }
      await rm(prefix, { recursive: true, force: true });
    },
  };
}
