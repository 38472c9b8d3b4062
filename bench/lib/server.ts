import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { withClient } from "../../src/db/client.js";
import { freePort, startEmbeddedPostgres } from "../../src/db/embedded.js";
import { migrate } from "../../src/db/migrate.js";
import type { Logger } from "../../src/log.js";

/** A durable PostgreSQL of the benchmarks' own, in a fresh temporary directory removed on stop. */
export type BenchServer = {
  /** Superuser URL of the maintenance database. */
  serverUrl: string;
  /** Where the cluster lives (reported: the filesystem decides what fsync costs). */
  dataDir: string;
  /** Scratch space for the benchmarks (pgbench logs). */
  workDir: string;
  /** A fresh database set up as the app has it: waitroom schema and graphile_worker schema. */
  createAppDatabase(name: string): Promise<string>;
  /** The postmaster's pid (its children are the server's processes); null if unreadable. */
  postmasterPid(): Promise<number | null>;
  stop(): Promise<void>;
};

const SHUTDOWN_GRACE_MS = 30_000;

/** A short-lived connection; statements are bounded so a stuck server cannot hang the run. */
export { withClient };

function databaseUrl(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The fast shutdown normally takes a second; if it hangs, kill the postmaster so nothing outlives the run. */
async function stopWithin(stop: () => Promise<void>, pgData: string, say: (line: string) => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), SHUTDOWN_GRACE_MS);
  });
  const outcome = await Promise.race([stop().then(() => "stopped" as const), timedOut]);
  clearTimeout(timer);
  if (outcome === "stopped") return;
  const pid = Number((await readFile(join(pgData, "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0]);
  if (Number.isInteger(pid) && pid > 0) {
    say(`PostgreSQL did not stop within ${SHUTDOWN_GRACE_MS / 1000} s: killing pid ${pid}`);
    process.kill(pid, "SIGKILL");
  }
}

export async function startBenchServer(log: Logger, say: (line: string) => void): Promise<BenchServer> {
  const root = await mkdtemp(join(tmpdir(), "waitroom-bench-"));
  // The server runs as the postgres user when we are root: it must be able to enter the directory.
  await chmod(root, 0o711);
  const dataDir = join(root, "data");
  const workDir = join(root, "work");
  await mkdir(workDir);
  const removeRoot = () => rm(root, { recursive: true, force: true });

  let server: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
  try {
    // durable: fsync and synchronous_commit on, as in production.
    server = await startEmbeddedPostgres({ dataDir, port: await freePort(), durable: true, maxConnections: 100, log });
  } catch (error) {
    await removeRoot();
    throw error;
  }
  const started = server;

  return {
    serverUrl: started.url,
    dataDir,
    workDir,
    async createAppDatabase(name) {
      const unique = `${name}_${randomBytes(3).toString("hex")}`;
      await withClient(started.url, (client) => client.query(`create database ${pg.escapeIdentifier(unique)}`));
      const url = databaseUrl(started.url, unique);
      await migrate(url, log); // installs graphile-worker's schema too
      return url;
    },
    async postmasterPid() {
      const pid = Number(
        (await readFile(join(dataDir, "pg", "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0],
      );
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    },
    async stop() {
      try {
        await stopWithin(() => started.stop(), join(dataDir, "pg"), say);
      } finally {
        await removeRoot();
      }
    },
  };
}
