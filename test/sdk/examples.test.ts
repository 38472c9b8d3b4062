import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });

const root = fileURLToPath(new URL("../../", import.meta.url));

/** An example run the way docs/sdk.md says (tsx), with its output collected as it comes. */
class Example {
  readonly child: ChildProcess;
  output = "";
  readonly exited: Promise<number | null>;

  constructor(file: string, args: string[]) {
    this.child = spawn(process.execPath, ["--import", "tsx", `examples/${file}`, ...args], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WAITROOM_SERVER_KEY: undefined, WAITROOM_URL: undefined, WAITROOM_ROOM: undefined },
    });
    const collect = (chunk: Buffer) => {
      this.output += chunk.toString();
    };
    this.child.stdout?.on("data", collect);
    this.child.stderr?.on("data", collect);
    this.exited = new Promise((resolve) => this.child.once("exit", resolve));
  }

  /** The first match of pattern in the output, waiting for it. */
  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = this.output.match(pattern);
      if (match) return match;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(`no ${pattern} in the output of the example:\n${this.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

const running: Example[] = [];
afterEach(() => {
  for (const example of running.splice(0)) if (example.child.exitCode === null) example.child.kill("SIGKILL");
});
const start = (file: string, args: string[]) => {
  const example = new Example(file, args);
  running.push(example);
  return example;
};

describe("the examples", () => {
  it("a Node client waits, claims and leaves; the protected app lets its token in, and --check sees the leave", async () => {
    const room = uniqueRoomId();
    const created = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { capacity: 1, claim_seconds: 60 },
    });
    expect(created.status).toBe(201);
    const [ahead] = await db.sql<{ ticket_id: string; token: string }[]>`
      select ticket_id, token from waitroom.join(${room})`;

    const offline = start("protected-app.ts", ["--port", "0", "--url", server.url, "--room", room]);
    const online = start("protected-app.ts", ["--port", "0", "--url", server.url, "--room", room, "--check"]);
    const client = start("node-client.ts", [room, "--url", server.url, "--hold", "60"]);

    await client.waitFor(/position 1 of 1/);
    await db.sql`select waitroom.leave(${ahead?.ticket_id ?? ""}::uuid, ${ahead?.token ?? ""})`;
    const [, token] = await client.waitFor(/admission token: (\S+)/);
    await client.waitFor(/seat active until/);

    const [, offlineUrl] = await offline.waitFor(/on (http:\S+)/);
    const [, onlineUrl] = await online.waitFor(/on (http:\S+)/);
    const get = async (url: string | undefined, headers: Record<string, string> = {}) => {
      const response = await fetch(`${url}/`, { headers });
      return { status: response.status, text: await response.text() };
    };
    const bearer = { authorization: `Bearer ${token}` };
    expect(await get(offlineUrl, bearer)).toMatchObject({ status: 200, text: expect.stringMatching(/^welcome, /) });
    expect(await get(onlineUrl, bearer)).toMatchObject({ status: 200 });
    expect((await get(offlineUrl)).status).toBe(401);
    expect((await get(offlineUrl, { authorization: "Bearer not.a.jwt" })).status).toBe(401);
    const query = await fetch(`${offlineUrl}/?admission_token=${token}`);
    expect(query.status).toBe(200);

    // Ctrl-C: the client leaves and exits.
    client.child.kill("SIGINT");
    expect(await client.exited).toBe(0);
    expect(client.output).toMatch(/\nleft\n/);
    // Offline verification cannot see the leave before the token expires; /v1/check can.
    expect((await get(offlineUrl, bearer)).status).toBe(200);
    expect(await get(onlineUrl, bearer)).toEqual({ status: 403, text: "the seat is no longer valid: left\n" });

    const elsewhere = start("protected-app.ts", ["--port", "0", "--url", server.url, "--room", "another-room"]);
    const [, elsewhereUrl] = await elsewhere.waitFor(/on (http:\S+)/);
    expect(await get(elsewhereUrl, bearer)).toEqual({ status: 403, text: "this token is not for room another-room\n" });
    // --room is required: an app that accepted any room's token would let every queue's seats in.
    const roomless = start("protected-app.ts", ["--port", "0", "--url", server.url]);
    expect(await roomless.exited).toBe(2);
    expect(roomless.output).toMatch(/--room is required/);
  });
});
