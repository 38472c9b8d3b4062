import { constants } from "node:fs";
import { access, readdir, readFile, rm } from "node:fs/promises";
import { userInfo } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { runProcess } from "./process.js";
import { quantileOfSorted } from "./stats.js";

export type Pgbench = {
  path: string;
  /** e.g. "pgbench (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" */
  version: string;
  /** True when this run had to install it. */
  installedNow: boolean;
};

export type PgbenchRun = {
  transactions: number;
  failedTransactions: number;
  /** As pgbench reports it: excluding connection time. */
  tps: number;
  latencyAverageMs: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  latencyP99Ms: number;
};

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** PGBENCH, then PATH, then Debian's versioned directories (pgbench may be installed but not on PATH). */
async function findPgbench(): Promise<string | undefined> {
  const explicit = process.env.PGBENCH;
  if (explicit) return (await isExecutable(explicit)) ? explicit : undefined;
  for (const dir of (process.env.PATH ?? "").split(delimiter).filter(Boolean)) {
    const candidate = join(dir, "pgbench");
    if (await isExecutable(candidate)) return candidate;
  }
  const versions = await readdir("/usr/lib/postgresql").catch(() => [] as string[]);
  for (const version of versions.sort((a, b) => Number(b) - Number(a))) {
    const candidate = join("/usr/lib/postgresql", version, "bin", "pgbench");
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

async function installPgbench(say: (line: string) => void, signal: AbortSignal): Promise<void> {
  if (userInfo().uid !== 0) {
    throw new Error("pgbench is not on PATH and installing it needs root: run `apt-get install -y postgresql-client`");
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const bounded = { timeoutMs: 300_000, signal, env };
  say("pgbench not found on PATH: installing it with `apt-get update && apt-get install -y postgresql-client`");
  try {
    await runProcess("apt-get", ["update"], bounded);
    await runProcess("apt-get", ["install", "-y", "postgresql-client"], bounded);
  } catch (error) {
    throw new Error(`could not install pgbench (postgresql-client): ${(error as Error).message}`, { cause: error });
  }
}

/** Locate pgbench, installing postgresql-client with apt-get when it is missing. */
export async function ensurePgbench(say: (line: string) => void, signal: AbortSignal): Promise<Pgbench> {
  let path = await findPgbench();
  const installedNow = path === undefined;
  if (!path) {
    await installPgbench(say, signal);
    path = await findPgbench();
    if (!path) {
      // Debian 12 and older ship pgbench in the server package, not in postgresql-client.
      throw new Error(
        "pgbench is still missing after installing postgresql-client. On Debian 12 and older it ships in the " +
          "server package (postgresql-15); install that, or point PGBENCH at a pgbench binary.",
      );
    }
  }
  const { stdout } = await runProcess(path, ["--version"], { timeoutMs: 10_000, signal });
  return { path, version: stdout.trim(), installedNow };
}

/** libpq environment variables keep the password out of the process list. */
function connectionEnvironment(databaseUrl: string): NodeJS.ProcessEnv {
  const url = new URL(databaseUrl);
  return {
    ...process.env,
    PGHOST: url.hostname,
    PGPORT: url.port || "5432",
    PGUSER: decodeURIComponent(url.username),
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: decodeURIComponent(url.pathname.slice(1)),
    PGCONNECT_TIMEOUT: "10",
  };
}

function reported(output: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(output);
  if (!match?.[1]) throw new Error(`pgbench output has no ${what}:\n${output}`);
  return Number(match[1]);
}

/*
 * pgbench only reports the average latency; the median comes from its
 * per-transaction log (-l), one file per thread: <prefix>.<pid>[.<thread>],
 * lines "client transaction latency_us script epoch_s epoch_us".
 */
async function loggedLatenciesMs(workDir: string, prefix: string): Promise<number[]> {
  const files = (await readdir(workDir)).filter((name) => name.startsWith(`${prefix}.`));
  const latencies: number[] = [];
  for (const file of files) {
    const text = await readFile(join(workDir, file), "utf8");
    for (const line of text.split("\n")) {
      const micros = Number(line.split(" ")[2]);
      if (Number.isFinite(micros) && line !== "") latencies.push(micros / 1000);
    }
    await rm(join(workDir, file));
  }
  return latencies.sort((a, b) => a - b);
}

export async function runPgbench(options: {
  pgbench: Pgbench;
  databaseUrl: string;
  scriptFile: string;
  clients: number;
  threads: number;
  seconds: number;
  /** Where the per-transaction logs go (read, then deleted). */
  workDir: string;
  /** Unique per run: names the log files. */
  label: string;
  signal: AbortSignal;
  /**
   * Offered load in transactions per second (--rate), spread over the clients; unset: as fast as
   * they go. With a rate, pgbench measures each latency from the transaction's scheduled start, so
   * time spent waiting behind a slow one counts too.
   */
  rate?: number;
}): Promise<PgbenchRun> {
  const args = [
    "--no-vacuum",
    `--client=${options.clients}`,
    `--jobs=${options.threads}`,
    `--time=${options.seconds}`,
    // pgbench runs in workDir: a relative script path would be looked up there.
    `--file=${resolve(options.scriptFile)}`,
    "--log",
    `--log-prefix=${options.label}`,
    ...(options.rate === undefined ? [] : [`--rate=${options.rate}`]),
  ];
  const { stdout } = await runProcess(options.pgbench.path, args, {
    // -T bounds the run itself; the margin covers connecting and finishing in-flight transactions.
    timeoutMs: (options.seconds + 60) * 1000,
    signal: options.signal,
    env: connectionEnvironment(options.databaseUrl),
    cwd: options.workDir,
  });
  const latencies = await loggedLatenciesMs(options.workDir, options.label);
  if (latencies.length === 0) throw new Error(`pgbench wrote no transaction log:\n${stdout}`);
  const failedMatch = /number of failed transactions: (\d+)/.exec(stdout);
  return {
    transactions: reported(stdout, /number of transactions actually processed: (\d+)/, "transaction count"),
    failedTransactions: failedMatch?.[1] ? Number(failedMatch[1]) : 0,
    tps: reported(
      stdout,
      /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/,
      "tps",
    ),
    latencyAverageMs: reported(stdout, /latency average = ([\d.]+) ms/, "average latency"),
    latencyP50Ms: quantileOfSorted(latencies, 0.5),
    latencyP95Ms: quantileOfSorted(latencies, 0.95),
    latencyP99Ms: quantileOfSorted(latencies, 0.99),
  };
}
