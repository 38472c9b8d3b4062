import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../src/db/embedded.js";
import { migrationNames } from "../src/db/migrate.js";
import {
  httpStatus,
  killLaunched,
  type LogLine,
  launch,
  messages,
  sleep,
  startServing,
  terminate,
} from "./helpers/app-process.js";
import { eventually } from "./helpers/eventually.js";

/*
 * The real `start` command, as an operator runs it (npm start) with
 * no DATABASE_URL, so it boots the embedded PostgreSQL in a data directory,
 * migrates and serves. Every process and directory made here is cleaned up in
 * afterAll, whatever happened.
 */

const dataDirs: string[] = [];

/** Under os.tmpdir() but not created: the app makes it, traversable by the postgres user. */
function newDataDir(): string {
  const dir = join(tmpdir(), `waitroom-start-${randomBytes(5).toString("hex")}`);
  dataDirs.push(dir);
  return dir;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(join(dataDir, "pg", "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
}

async function withDatabase<T>(dataDir: string, pgPort: number, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const password = readFileSync(join(dataDir, "password"), "utf8").trim();
  const client = new pg.Client({
    connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${pgPort}/waitroom`,
  });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The embedded server of dataDir is gone: port closed, no postmaster.pid, its process not running. */
async function expectDatabaseStopped(dataDir: string, pgPort: number, pid: number | undefined) {
  expect(await portOpen(pgPort)).toBe(false);
  expect(existsSync(join(dataDir, "pg", "postmaster.pid"))).toBe(false);
  if (pid !== undefined) expect(isAlive(pid)).toBe(false);
}

afterAll(async () => {
  killLaunched();
  for (const dir of dataDirs) {
    const pid = postmasterPid(dir);
    if (pid !== undefined && isAlive(pid)) {
      process.kill(pid, "SIGCONT");
      process.kill(pid, "SIGINT");
      await eventually(() => !isAlive(pid), `postgres ${pid} stops`, 15_000).catch(() => process.kill(pid, "SIGKILL"));
    }
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

describe("start", { timeout: 90_000 }, () => {
  const dataDir = newDataDir();
  let httpPort: number;
  let pgPort: number;
  let env: Record<string, string>;

  it("boots the embedded database in a new data directory, migrates and serves", async () => {
    [httpPort, pgPort] = [await freePort(), await freePort()];
    env = {
      WAITROOM_DATA_DIR: dataDir,
      PORT: String(httpPort),
      HOST: "127.0.0.1",
      WAITROOM_EMBEDDED_PG_PORT: String(pgPort),
      LOG_LEVEL: "info",
      WAITROOM_SHUTDOWN_TIMEOUT_MS: "4000",
    };
    expect(existsSync(dataDir)).toBe(false);
    const first = await startServing(env, httpPort);
    expect(messages(first)).toEqual(
      expect.arrayContaining([
        "initialising embedded PostgreSQL",
        "embedded PostgreSQL ready",
        "database migrated",
        "waitroom listening",
      ]),
    );

    await withDatabase(dataDir, pgPort, async (client) => {
      const migrations = await client.query("select name from public.waitroom_migrations order by id");
      expect(migrations.rows).toEqual((await migrationNames()).map((name) => ({ name })));
      const room = await client.query("select (waitroom.create_room('persisted', 3)).capacity");
      expect(room.rows).toEqual([{ capacity: 3 }]);
      const joined = await client.query("select status from waitroom.join('persisted', 'alice')");
      expect(joined.rows).toEqual([{ status: "queued" }]);
    });

    // SIGTERM while a keep-alive connection idles and another has sent half a request.
    const sockets: Socket[] = [];
    try {
      const idle = tcpConnect(httpPort, "127.0.0.1");
      sockets.push(idle);
      await new Promise<void>((resolve, reject) => {
        idle.once("error", reject);
        idle.write("GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n");
        idle.once("data", () => resolve());
      });
      const stalled = tcpConnect(httpPort, "127.0.0.1");
      sockets.push(stalled);
      stalled.on("error", () => {});
      await new Promise<void>((resolve) => stalled.once("connect", () => resolve()));
      stalled.write("GET /healthz HTTP/1.1\r\nHost: test\r\n");
      await sleep(200);

      const postgresPid = postmasterPid(dataDir);
      expect(postgresPid).toBeGreaterThan(0);
      const nodePid = first.lines.find((line) => line.msg === "waitroom listening")?.pid as number;
      const exit = await terminate(first);

      expect(exit).toMatchObject({ code: 0, signal: null });
      expect(exit.ms).toBeLessThan(15_000);
      const shutdown = messages(first).slice(messages(first).indexOf("shutting down"));
      expect(shutdown[0]).toBe("shutting down");
      expect(shutdown.at(-1)).toBe("stopped");
      // The stalled connection was cut after the drain period (half of the 4 s budget), not waited for.
      expect(shutdown).toContain("closing connections still open after the drain period");
      expect(isAlive(nodePid)).toBe(false);
      await expectDatabaseStopped(dataDir, pgPort, postgresPid);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  it("starts again on the same data directory: the data persists and migrate is a no-op", async () => {
    const second = await startServing(env, httpPort);
    expect(messages(second)).not.toContain("initialising embedded PostgreSQL");
    expect(messages(second)).toContain("database already up to date");
    const rooms = await withDatabase(dataDir, pgPort, (client) =>
      client.query(
        "select r.id, (select count(*)::int from waitroom.tickets t where t.room_id = r.id) as tickets from waitroom.rooms r",
      ),
    );
    expect(rooms.rows).toEqual([{ id: "persisted", tickets: 1 }]);
    // The service connects as the embedded database's least-privileged role, not as its superuser.
    const roles = await withDatabase(dataDir, pgPort, (client) =>
      client.query(
        `select distinct usename::text as role from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`,
      ),
    );
    expect(roles.rows).toEqual([{ role: "waitroom_service" }]);

    // Killed outright: no chance to stop its database, which is left running.
    const nodePid = second.lines.find((line) => line.msg === "waitroom listening")?.pid as number;
    const orphan = postmasterPid(dataDir) as number;
    expect(nodePid).toBeGreaterThan(0);
    process.kill(nodePid, "SIGKILL");
    const exit = await Promise.race([second.exited, sleep(10_000).then(() => "timeout")]);
    expect(exit).toEqual({ code: null, signal: "SIGKILL" });
    expect(isAlive(orphan)).toBe(true);
    expect(await portOpen(pgPort)).toBe(true);
    expect(await portOpen(httpPort)).toBe(false);
  });

  it("recovers after a kill: stops the orphaned database, starts, serves", async () => {
    const orphan = postmasterPid(dataDir) as number;
    const third = await startServing(env, httpPort);
    expect(third.lines).toContainEqual(
      expect.objectContaining({
        msg: "stopping an embedded PostgreSQL whose owner process is gone",
        pid: orphan,
      }),
    );
    expect(isAlive(orphan)).toBe(false);
    const postgresPid = postmasterPid(dataDir) as number;
    expect(postgresPid).not.toBe(orphan);
    const rooms = await withDatabase(dataDir, pgPort, (client) => client.query("select id from waitroom.rooms"));
    expect(rooms.rows).toEqual([{ id: "persisted" }]);

    const exit = await terminate(third, "SIGINT");
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(messages(third).at(-1)).toBe("stopped");
    await expectDatabaseStopped(dataDir, pgPort, postgresPid);
  });

  it("exits non-zero and stops its database when the HTTP port is taken", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(httpPort, "127.0.0.1", () => resolve()));
    try {
      const running = launch(env);
      const exit = await Promise.race([running.exited, sleep(30_000).then(() => "timeout")]);
      expect(exit).toEqual({ code: 1, signal: null });
      const fatal = running.lines.find((line) => line.msg === "start failed");
      expect(JSON.stringify(fatal)).toContain("EADDRINUSE");
      await expectDatabaseStopped(dataDir, pgPort, undefined);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("bounds the shutdown: exits 1 once WAITROOM_SHUTDOWN_TIMEOUT_MS has passed, the database told to stop", async () => {
    const running = await startServing({ ...env, WAITROOM_SHUTDOWN_TIMEOUT_MS: "1500" }, httpPort);
    const postgresPid = postmasterPid(dataDir) as number;
    // A database that does not answer its shutdown request (stopped, not killed: it keeps the request).
    process.kill(postgresPid, "SIGSTOP");
    try {
      const exit = await terminate(running);
      expect(exit).toMatchObject({ code: 1, signal: null });
      expect(exit.ms).toBeGreaterThanOrEqual(1_400);
      expect(exit.ms).toBeLessThan(10_000);
      expect(messages(running)).toContain("shutdown did not finish in time; exiting anyway");
      expect(messages(running)).not.toContain("stopped");
    } finally {
      process.kill(postgresPid, "SIGCONT");
    }
    // Resumed, it acts on the fast-shutdown request it was sent and goes away by itself.
    await eventually(() => !isAlive(postgresPid), "the embedded PostgreSQL stops", 15_000);
    await expectDatabaseStopped(dataDir, pgPort, postgresPid);
  });

  it("leaves alone a process that took over a stale postmaster.pid's pid", async () => {
    const bystander = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      const pid = bystander.pid as number;
      writeFileSync(join(dataDir, "pg", "postmaster.pid"), `${pid}\n${join(dataDir, "pg")}\n`);
      const running = await startServing(env, httpPort);
      expect(running.lines).toContainEqual(
        expect.objectContaining({ msg: expect.stringContaining("removing a stale postmaster.pid"), pid }),
      );
      expect(isAlive(pid)).toBe(true);
      const exit = await terminate(running);
      expect(exit).toMatchObject({ code: 0, signal: null });
    } finally {
      bystander.kill("SIGKILL");
    }
  });
});

describe("a second start on a data directory in use", { timeout: 90_000 }, () => {
  const dataDir = newDataDir();

  it("refuses in one line and exits 1, leaving the first process and its database serving", async () => {
    const [firstPort, secondPort, pgPort] = [await freePort(), await freePort(), await freePort()];
    const env = {
      WAITROOM_DATA_DIR: dataDir,
      HOST: "127.0.0.1",
      WAITROOM_EMBEDDED_PG_PORT: String(pgPort),
      LOG_LEVEL: "info",
    };
    const first = await startServing({ ...env, PORT: String(firstPort) }, firstPort);
    const postgresPid = postmasterPid(dataDir) as number;
    const firstPid = first.lines.find((line) => line.msg === "waitroom listening")?.pid as number;

    // Not a terminal: JSON lines only, no banner.
    expect(
      first.stdout
        .trim()
        .split("\n")
        .every((line) => line.startsWith('{"level":')),
    ).toBe(true);

    const second = launch({ ...env, PORT: String(secondPort) });
    const exit = await Promise.race([second.exited, sleep(30_000).then(() => "timeout")]);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(second.stderr.trim().split("\n")).toEqual([
      `start refused: the embedded PostgreSQL in ${join(dataDir, "pg")} (pid ${postgresPid}) is in use by process ${firstPid}: ` +
        "stop that one first, or give this one its own WAITROOM_DATA_DIR and WAITROOM_EMBEDDED_PG_PORT",
    ]);
    expect(messages(second)).not.toContain("embedded PostgreSQL ready");

    // The first never noticed: same database server, still answering, nothing logged above info.
    expect(postmasterPid(dataDir)).toBe(postgresPid);
    expect(isAlive(postgresPid)).toBe(true);
    expect(await httpStatus(`http://127.0.0.1:${firstPort}/readyz`)).toBe(200);
    expect(await withDatabase(dataDir, pgPort, (client) => client.query("select 1 as up"))).toMatchObject({
      rows: [{ up: 1 }],
    });
    expect(first.lines.filter((line) => line.level > 30)).toEqual([
      expect.objectContaining({ msg: expect.stringContaining("the admin API is disabled") }),
    ]);

    const stopped = await terminate(first);
    expect(stopped).toMatchObject({ code: 0, signal: null });
    await expectDatabaseStopped(dataDir, pgPort, postgresPid);
  });

  it("when the owner's database dies under it, every error is one short line with no pg objects", async () => {
    const [httpPort, pgPort] = [await freePort(), await freePort()];
    const running = await startServing(
      {
        WAITROOM_DATA_DIR: dataDir,
        HOST: "127.0.0.1",
        PORT: String(httpPort),
        WAITROOM_EMBEDDED_PG_PORT: String(pgPort),
      },
      httpPort,
    );
    // What the old second start did to a live database: a fast shutdown from outside.
    process.kill(postmasterPid(dataDir) as number, "SIGINT");
    const exit = await Promise.race([running.exited, sleep(30_000).then(() => "timeout")]);
    expect(exit).toEqual({ code: 1, signal: null });

    const problems = running.lines.filter((line) => line.level >= 40 && !String(line.msg).includes("admin API"));
    expect(problems.length).toBeGreaterThan(0);
    // The scheduler may still log its lost connection while it stops: the failure itself is one line among them.
    expect(problems.find((line) => line.msg === "start failed")).toMatchObject({
      msg: "start failed",
      err: { message: expect.stringMatching(/^embedded PostgreSQL \(pid \d+\) exited unexpectedly$/) },
    });
    for (const line of problems) {
      const error = (line.err ?? line.error) as Record<string, unknown> | undefined;
      if (error === undefined) continue;
      expect(Object.keys(error).sort()).toEqual(expect.arrayContaining(["message", "type"]));
      expect(error).not.toHaveProperty("stack");
      expect(error).not.toHaveProperty("client");
      for (const value of Object.values(error))
        expect(typeof value === "string" || typeof value === "number").toBe(true);
    }
    expect(running.stdout).not.toContain("_connectionCallback"); // a pg Client's internals
  });
});

describe("in a terminal", { timeout: 90_000 }, () => {
  it("prints a banner with where the service and its pages are, keeps the JSON logs, and stops on Ctrl-C", async () => {
    const dataDir = newDataDir();
    const [httpPort, pgPort] = [await freePort(), await freePort()];
    // script(1) runs the service on a pseudo-terminal, as a person's shell would; Ctrl-C is typed into it.
    const child = spawn("script", ["-qec", "exec node --import tsx src/main.ts start", "/dev/null"], {
      cwd: join(import.meta.dirname, ".."),
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        WAITROOM_DATA_DIR: dataDir,
        PORT: String(httpPort),
        WAITROOM_EMBEDDED_PG_PORT: String(pgPort),
        WAITROOM_ADMIN_KEY: "terminal-admin-key-0123456789",
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (output += text));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      await eventually(() => output.includes('"msg":"listening for events"'), "the service is up", 60_000);
    } finally {
      child.stdin.write("\u0003");
    }
    expect(await Promise.race([exited, sleep(30_000).then(() => "timeout")])).toBe(0);
    // The terminal echoes the Ctrl-C as ^C.
    const lines = output.replaceAll("\r", "").replaceAll("^C", "").split("\n");
    const banner = lines.filter((line) => !line.startsWith("{") && line.trim() !== "");
    expect(banner).toEqual([
      `  waitroom is running at http://localhost:${httpPort}`,
      `  waiting room   http://localhost:${httpPort}/rooms/<room>`,
      `  dashboard      http://localhost:${httpPort}/admin  (sign in with WAITROOM_ADMIN_KEY)`,
      `  API reference  http://localhost:${httpPort}/docs`,
      `  database       embedded PostgreSQL in ${dataDir}, on 127.0.0.1:${pgPort}`,
      "  scheduler      running in this process",
      "  Ctrl-C stops it. JSON logs follow.",
    ]);
    const logged = lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as LogLine);
    expect(logged.find((line) => line.msg === "waitroom listening")).toMatchObject({
      url: `http://localhost:${httpPort}`,
      bound: `http://0.0.0.0:${httpPort}`,
    });
    expect(logged.at(-1)?.msg).toBe("stopped");
  });
});

describe("a signal during start-up", { timeout: 90_000 }, () => {
  const dataDir = newDataDir();

  it.each([
    ["while initdb runs", "initialising embedded PostgreSQL"],
    ["once the database is up, before serving", "embedded PostgreSQL ready"],
  ])("%s stops everything and exits 0", async (_when, trigger) => {
    const [httpPort, pgPort] = [await freePort(), await freePort()];
    const running = launch({
      WAITROOM_DATA_DIR: dataDir,
      PORT: String(httpPort),
      HOST: "127.0.0.1",
      WAITROOM_EMBEDDED_PG_PORT: String(pgPort),
      LOG_LEVEL: "info",
    });
    await eventually(() => messages(running).includes(trigger), `"${trigger}" is logged`, 60_000);
    const postgresPid = postmasterPid(dataDir);
    const exit = await terminate(running);

    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(messages(running)).not.toContain("waitroom listening");
    expect(messages(running).at(-1)).toBe("stopped");
    await expectDatabaseStopped(dataDir, pgPort, postgresPid);
  });
});

describe("invalid configuration", () => {
  it("makes start exit non-zero with a message naming the variable, starting nothing", async () => {
    const dataDir = newDataDir();
    const running = launch({ WAITROOM_DATA_DIR: dataDir, PORT: "abc", LOG_LEVEL: "info" });
    const exit = await Promise.race([running.exited, sleep(30_000).then(() => "timeout")]);
    expect(exit).toEqual({ code: 1, signal: null });
    expect(running.stderr).toMatch(/invalid configuration/);
    expect(running.stderr).toMatch(/PORT: .*"abc"/);
    expect(running.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(existsSync(dataDir)).toBe(false);
  });
});
