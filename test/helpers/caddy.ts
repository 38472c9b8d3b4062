import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { binaryPath, freePort, proxyPrefix, type RunningProxy, runProxy } from "./proxy.js";

/**
 * deploy/Caddyfile.gate as it is, with its site address a plain-HTTP loopback port and its upstreams the
 * test's waitroom and origin, run by Debian's caddy in the foreground: no admin endpoint, its data and
 * config directories in a temporary prefix.
 */
export async function startGateCaddy(options: { waitroomPort: number; originPort: number }): Promise<RunningProxy> {
  const prefix = await proxyPrefix("caddy");
  const port = await freePort();
  const example = await readFile(new URL("../../deploy/Caddyfile.gate", import.meta.url), "utf8");
  const site = example
    .replace("shop.example.com {", `http://127.0.0.1:${port} {`)
    .replaceAll("127.0.0.1:8080", `127.0.0.1:${options.waitroomPort}`)
    .replaceAll("127.0.0.1:3000", `127.0.0.1:${options.originPort}`);
  if (site === example || site.includes("shop.example.com {")) {
    throw new Error("deploy/Caddyfile.gate no longer has the lines the test rewrites");
  }
  const config = join(prefix, "Caddyfile");
  await writeFile(config, `{\n\tadmin off\n}\n${site}`);
  return runProxy({
    binary: binaryPath("caddy", process.env.CADDY_PATH, "/usr/bin/caddy"),
    args: ["run", "--adapter", "caddyfile", "--config", config],
    env: { XDG_DATA_HOME: join(prefix, "data"), XDG_CONFIG_HOME: join(prefix, "config"), HOME: prefix },
    url: `http://127.0.0.1:${port}`,
    prefix,
    stopSignal: "SIGTERM",
  });
}
