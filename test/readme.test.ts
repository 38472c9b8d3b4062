import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../src/db/embedded.js";
import { killLaunched, startServing, terminate } from "./helpers/app-process.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventually } from "./helpers/eventually.js";

/*
 * The README's quick start, run as a reader runs it: the first block's admin key starts the service
 * (`start`, on this file's database), then every later `sh` block of the section is pasted, in order,
 * into one bash, as into a second terminal. Only the address differs: localhost:8080 becomes this
 * test's port. Between blocks the test waits for what the README says happens next, nothing longer.
 */

const root = join(import.meta.dirname, "..");
const readme = readFileSync(join(root, "README.md"), "utf8");

function quickStartBlocks(): string[] {
  const section = readme.slice(
    readme.indexOf("## Quick start"),
    readme.indexOf("\n## ", readme.indexOf("## Quick start")),
  );
  const story = section.slice(0, section.indexOf("### ")); // the story ends where the next subsection starts
  return [...story.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1] as string);
}

/** The JSON answers among a block's output; B's stream, running in the background, may print between them. */
const answers = (output: string) =>
  output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));

const db = useTestDatabase();
afterAll(() => killLaunched());

/** One bash fed block by block; resolves each block once bash has run it. */
function terminal(env: NodeJS.ProcessEnv) {
  const bash = spawn("bash", [], { cwd: root, env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  bash.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  bash.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => bash.once("exit", (code) => resolve(code)));
  let pasted = 0;
  return {
    output: () => stdout,
    errors: () => stderr,
    /** Pastes a block and resolves with what it printed (background jobs may add to it later). */
    async paste(block: string): Promise<string> {
      const marker = `@@block ${++pasted} done@@`;
      const from = stdout.length;
      bash.stdin.write(`${block}\necho '${marker}'\n`);
      await eventually(() => stdout.includes(marker), `block ${pasted} ran:\n${block}`, 30_000);
      return stdout.slice(from, stdout.indexOf(marker));
    },
    close: () => {
      bash.stdin.end();
      return exited;
    },
  };
}

describe("the README's quick start", { timeout: 90_000 }, () => {
  it("runs as written: a room of one, two joins, B's place falls, A claims, is checked and leaves, B is admitted", async () => {
    const [first, ...story] = quickStartBlocks();
    expect(first).toContain("npm start");
    const adminKey = /export WAITROOM_ADMIN_KEY=(\S+)/.exec(first ?? "")?.[1] as string;
    expect(adminKey.length).toBeGreaterThanOrEqual(16);
    expect(story).toHaveLength(8);

    const port = await freePort();
    const service = await startServing(
      {
        DATABASE_URL: db.serviceUrl,
        PORT: String(port),
        HOST: "127.0.0.1",
        WAITROOM_ADMIN_KEY: adminKey,
        LOG_LEVEL: "warn",
      },
      port,
    );
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const shell = terminal(env);
    const [setup, createRoom, joinTwice, watch, claim, check, leave, stopWatching] = story.map((block) =>
      block.replaceAll("localhost:8080", `127.0.0.1:${port}`),
    ) as string[];

    expect(await shell.paste(setup as string)).toBe("");

    expect(answers(await shell.paste(createRoom as string))).toMatchObject([
      {
        id: "demo",
        capacity: 1,
        claim_seconds: 60,
        mode: "open",
      },
    ]);

    const [a, b] = answers(await shell.paste(joinTwice as string));
    expect(a).toMatchObject({ status: "queued", position: 1 });
    // Second in line, or first if the scheduler already offered A the seat in between.
    expect(b).toMatchObject({ status: "queued", position: expect.any(Number) });
    expect([1, 2]).toContain(b.position);

    await shell.paste(watch as string);
    // B's stream: its place, which falls to 1 once A is offered the seat.
    const bStates = () =>
      [...shell.output().matchAll(/event: state\ndata: (.*)\n/g)].map((match) => JSON.parse(match[1] as string));
    await eventually(() => bStates().some((state) => state.position === 1), "B's position is 1");
    expect(bStates()[0]).toMatchObject({ ticket_id: b.ticket_id, status: "queued" });
    const positions = bStates().map((state) => state.position);
    expect(positions[0]).toBeLessThanOrEqual(b.position); // A may have been offered the seat before the stream opened
    expect(positions).toEqual([...positions].sort((x, y) => y - x)); // it only ever falls

    const [offer, claimed] = answers(await shell.paste(claim as string));
    expect(offer).toMatchObject({ ticket_id: a.ticket_id, status: "admitted", expires_at: expect.any(String) });
    expect(claimed).toMatchObject({ ticket_id: a.ticket_id, status: "active", admission_token: expect.any(String) });

    expect(answers(await shell.paste(check as string))).toMatchObject([
      { ok: true, status: "active", ticket_id: a.ticket_id },
    ]);

    expect((await shell.paste(leave as string)).split("\n")).toContain("204");
    await eventually(() => /event: admitted\nid: \d+\ndata: .*/.test(shell.output()), "B is admitted");
    const admitted = JSON.parse(/event: admitted\nid: \d+\ndata: (.*)\n/.exec(shell.output())?.[1] as string);
    expect(admitted).toMatchObject({ ticket_id: b.ticket_id, status: "admitted" });

    await shell.paste(stopWatching as string);
    expect(await shell.close()).toBe(0);
    // bash may report the watcher it was told to kill ("… Terminated curl …"); nothing else belongs on stderr.
    expect(
      shell
        .errors()
        .split("\n")
        .filter((line) => line !== "" && !/\bTerminated\b/.test(line)),
    ).toEqual([]);
    expect(await terminate(service)).toMatchObject({ code: 0 });
  });
});
