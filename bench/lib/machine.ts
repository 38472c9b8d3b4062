import { readFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, release, totalmem, type } from "node:os";
import type { Pgbench } from "./pgbench.js";
import { withClient } from "./server.js";

export type Machine = {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  postgres: string;
  pgbench: string;
  /** Filesystem under the data directory: what an fsync costs depends on it. */
  dataFilesystem: string;
  /** Settings that decide durability and WAL volume. */
  serverSettings: Record<string, string>;
  /** 1-minute load average before the run: how busy the shared machine already was. */
  loadAverageBefore: number;
};

const REPORTED_SETTINGS = [
  "fsync",
  "synchronous_commit",
  "full_page_writes",
  "wal_compression",
  "shared_buffers",
  "max_wal_size",
] as const;

/** The mount holding path (longest matching mount point), as "ext4 (/dev/vda)". */
async function filesystemOf(path: string): Promise<string> {
  const mounts = await readFile("/proc/mounts", "utf8").catch(() => "");
  let best: { point: string; description: string } | undefined;
  for (const line of mounts.split("\n")) {
    const [device, point, fsType] = line.split(" ");
    if (!device || !point || !fsType) continue;
    const contains = path === point || path.startsWith(point.endsWith("/") ? point : `${point}/`);
    if (contains && (!best || point.length > best.point.length)) best = { point, description: `${fsType} (${device})` };
  }
  return best?.description ?? "unknown";
}

export async function describeMachine(options: {
  serverUrl: string;
  dataDir: string;
  pgbench: Pgbench;
  loadAverageBefore: number;
}): Promise<Machine> {
  const { postgres, settings } = await withClient(options.serverUrl, async (client) => {
    const version = await client.query<{ server_version: string }>("show server_version");
    const rows = await client.query<{ name: string; setting: string }>(
      "select name, current_setting(name) as setting from pg_settings where name = any($1) order by name",
      [REPORTED_SETTINGS],
    );
    return {
      postgres: version.rows[0]?.server_version ?? "unknown",
      settings: Object.fromEntries(rows.rows.map((row) => [row.name, row.setting])),
    };
  });
  return {
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${type()} ${release()}`,
    node: process.version,
    postgres,
    pgbench: options.pgbench.version,
    dataFilesystem: await filesystemOf(options.dataDir),
    serverSettings: settings,
    loadAverageBefore: options.loadAverageBefore,
  };
}

export function loadAverageNow(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}
