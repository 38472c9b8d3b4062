import { execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { painter, roomsTable } from "../../src/cli/rooms.js";
import type { RoomWithStats } from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/* The `waitroom` command as an operator types it: node bin/waitroom.js …, against a real service. */

const db = useTestDatabase();
const server = useTestServer(db);
const bin = join(import.meta.dirname, "..", "..", "bin", "waitroom.js");

type Run = { code: number; stdout: string; stderr: string };

function waitroom(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      {
        env: { PATH: process.env.PATH, WAITROOM_URL: server.url, WAITROOM_ADMIN_KEY: ADMIN_KEY, ...env },
        timeout: 30_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("waitroom rooms", () => {
  it("creates, lists, changes, pauses, resumes and deletes a room", async () => {
    const room = uniqueRoomId();
    const created = await waitroom(["rooms", "create", room, "--capacity", "3", "admit_per_minute=60"]);
    expect(created).toMatchObject({ code: 0, stderr: "" });
    expect(created.stdout).toMatch(new RegExp(`^created id=${room} capacity=3 admit_per_minute=60 `));

    const list = await waitroom(["rooms", "list"]);
    expect(list.code).toBe(0);
    const [header, ...lines] = list.stdout.trim().split("\n");
    expect(header).toMatch(
      /^room\s+mode\s+capacity\s+queued\s+admitted\s+active\s+free\s+per min\s+oldest wait\s+stock$/,
    );
    // No wait yet, and no stock.
    expect(lines.find((line) => line.startsWith(room))).toMatch(
      new RegExp(`^${room}\\s+open\\s+3\\s+0\\s+0\\s+0\\s+3\\s+0\\s+-\\s+-$`),
    );
    // Not a terminal: no colour codes.
    expect(list.stdout).not.toContain("\u001b[");

    expect((await waitroom(["rooms", "set", room, "capacity=5", "mode=paused"])).stdout).toMatch(
      /^updated .*capacity=5 .*mode=paused /,
    );
    const [row] = await db.sql`select capacity, mode from waitroom.rooms where id = ${room}`;
    expect(row).toEqual({ capacity: 5, mode: "paused" });
    const handover = await waitroom([
      "rooms",
      "set",
      room,
      "target_url=https://shop.example/",
      "return_origins=https://a.example,http://localhost:3000",
      "auto_continue=false",
    ]);
    expect(handover.stdout).toMatch(
      /target_url=https:\/\/shop\.example\/ return_origins=https:\/\/a\.example,http:\/\/localhost:3000 handover=cookie auto_continue=false(\s|$)/,
    );
    const [target] = await db.sql`select return_origins, auto_continue from waitroom.rooms where id = ${room}`;
    expect(target).toEqual({ return_origins: ["https://a.example", "http://localhost:3000"], auto_continue: false });
    expect(await waitroom(["rooms", "resume", room])).toMatchObject({ code: 0, stdout: `${room}: mode open\n` });
    expect(await waitroom(["rooms", "pause", room])).toMatchObject({ code: 0, stdout: `${room}: mode paused\n` });

    expect(await waitroom(["rooms", "delete", room])).toMatchObject({ code: 0, stdout: `${room}: deleted\n` });
    const again = await waitroom(["rooms", "delete", room]);
    expect(again).toMatchObject({ code: 1, stdout: "" });
    expect(again.stderr).toMatch(/^not_found: /);
  });

  it("shows one frame of top", async () => {
    const room = uniqueRoomId();
    await waitroom(["rooms", "create", room, "--capacity", "2"]);
    const top = await waitroom(["top", "--once"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^waitroom top — \d{4}-\d\d-\d\dT/);
    expect(top.stdout).toContain(room);
  });

  it("says how to quit a live top, and quits on Ctrl-C (SIGINT) with 0", async () => {
    const child = spawn(process.execPath, [bin, "top", "--interval", "200"], {
      env: { PATH: process.env.PATH, WAITROOM_URL: server.url, WAITROOM_ADMIN_KEY: ADMIN_KEY },
    });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      await expect.poll(() => stdout, { timeout: 20_000 }).toMatch(/^waitroom top — \S+ — Ctrl-C quits\n/);
    } finally {
      child.kill("SIGINT");
    }
    expect(await exited).toBe(0);
  });

  it.each([["--help"], ["-h"], ["help"], ["start", "--help"]])(
    "prints the usage and exits 0 on %j",
    async (...args) => {
      const run = await waitroom(args);
      expect(run).toMatchObject({ code: 0, stderr: "" });
      expect(run.stdout).toMatch(/^usage: waitroom <command>\n/);
      expect(run.stdout).toContain("Ctrl-C quits");
    },
  );

  it.each([
    [["rooms"], /rooms needs a command/],
    [["rooms", "frobnicate"], /unknown rooms command 'frobnicate'/],
    [["rooms", "create", "x"], /needs --capacity N/],
    [["rooms", "set", "x", "capacity"], /expected setting=value/],
    [["rooms", "create", "x", "--capacity", "1", "--colour"], /Unknown option '--colour'/],
    [["top", "--interval", "5"], /--interval must be at least 100/],
    [["nonsense"], /^usage: waitroom <command>/],
    [["toString"], /^usage: waitroom <command>/],
  ])("exits 2 with usage on %j", async (args, message) => {
    const run = await waitroom(args);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
  });

  it("exits 1 naming the service's reason", async () => {
    const invalid = await waitroom(["rooms", "create", "Bad Name", "--capacity", "1"]);
    expect(invalid).toMatchObject({ code: 1 });
    expect(invalid.stderr).toMatch(/^invalid_request: /);
    const wrongKey = await waitroom(["rooms", "list"], { WAITROOM_ADMIN_KEY: "not-the-admin-key-at-all" });
    expect(wrongKey).toMatchObject({ code: 1 });
    expect(wrongKey.stderr).toMatch(/^unauthorized: /);
    const nowhere = await waitroom(["rooms", "list"], { WAITROOM_URL: "http://127.0.0.1:9" });
    expect(nowhere).toMatchObject({ code: 1 });
    expect(nowhere.stderr).toMatch(/^unreachable: cannot reach http:\/\/127\.0\.0\.1:9/);
  });

  it("migrates a database", async () => {
    const run = await waitroom(["migrate"], { DATABASE_URL: db.url, LOG_LEVEL: "info" });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/"msg":"database (migrated|already up to date)"/);
  });
});

describe("the rooms table", () => {
  it("colours the mode on a terminal only", () => {
    const room = {
      id: "r",
      mode: "paused",
      capacity: 1,
      stats: {
        queued: 0,
        admitted: 0,
        active: 0,
        draining: 0,
        free_seats: 1,
        admitted_last_minute: 0,
        oldest_wait_seconds: null,
      },
    } as unknown as RoomWithStats;
    expect(roomsTable([room], painter({ write: () => {}, isTTY: true }, {}))).toContain("\u001b[33mpaused");
    expect(roomsTable([room], painter({ write: () => {}, isTTY: true }, { NO_COLOR: "1" }))).not.toContain("\u001b[");
  });
});

describe("waitroom keys", () => {
  it("rotates (stages), lists and revokes signing keys", async () => {
    // A claim's signature creates the first key.
    const room = uniqueRoomId("cli-keys");
    await db.sql`select waitroom.create_room(${room}, 1)`;
    const [ticket] = await db.sql<{ ticket_id: string; token: string }[]>`select * from waitroom.join(${room})`;
    await db.sql`select * from waitroom.admit(${room})`;
    const claimed = await fetch(`${server.url}/v1/tickets/${ticket?.ticket_id}/claim`, {
      method: "POST",
      headers: { authorization: `Bearer ${ticket?.token}` },
    });
    expect(claimed.status).toBe(200);

    const rotated = await waitroom(["keys", "rotate"]);
    expect(rotated).toMatchObject({ code: 0, stderr: "" });
    const [staged] = rotated.stdout.split(" ");
    expect(rotated.stdout).toMatch(/^[A-Za-z0-9_-]{43} +staged +published \S+ +signs from \S+\n$/);

    const list = await waitroom(["keys", "list"]);
    expect(list.code).toBe(0);
    const lines = list.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^${staged} +staged `));
    expect(lines[1]).toMatch(/ +current +published /);
    const current = lines[1]?.split(" ")[0] ?? "";

    const revoked = await waitroom(["keys", "revoke", current]);
    expect(revoked).toMatchObject({ code: 0, stderr: "" });
    expect(revoked.stdout).toMatch(new RegExp(`^${current} +revoked +published \\S+ +revoked \\S+\n$`));
    const jwks = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as {
      keys: Array<{ kid: string }>;
    };
    expect(jwks.keys.map((key) => key.kid)).toEqual([staged]);

    expect(await waitroom(["keys", "revoke", "A".repeat(43)])).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^not_found: /),
    });
    expect(await waitroom(["keys", "revoke"])).toMatchObject({ code: 2 });
  });
});
