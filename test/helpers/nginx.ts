import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { binaryPath, freePort, proxyPrefix, type RunningProxy, runProxy } from "./proxy.js";

export type Nginx = RunningProxy;

/**
 * deploy/nginx-gate.conf as it is, with its ports pointed at the test's waitroom and origin, run by the real
 * nginx with deploy/nginx-gate-dev.conf: unprivileged, in a temporary prefix (its own pid and temp paths),
 * in the foreground, logging to stderr.
 */
export async function startGateNginx(options: { waitroomPort: number; originPort: number }): Promise<Nginx> {
  const prefix = await proxyPrefix("nginx");
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
  return runProxy({
    binary: binaryPath("nginx", process.env.NGINX_PATH, "/usr/sbin/nginx"),
    args: ["-p", prefix, "-c", join(prefix, "nginx.conf"), "-g", "daemon off;"],
    url: `http://127.0.0.1:${port}`,
    prefix,
    stopSignal: "SIGQUIT",
  });
}
