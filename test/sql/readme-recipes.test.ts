import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";

/*
 * The README's SQL recipes, as a DBA pastes them into psql: the block that creates the room first,
 * then every block in the README's order, in reverse, and in order again. Each must run without an
 * error whatever ran before it. \watch (which repeats forever) is left out; the query before it runs.
 */

const readme = readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8");
const section = readme.slice(readme.indexOf("## For DBAs: SQL recipes"), readme.indexOf("\n## Development"));
const blocks = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((match) =>
  (match[1] as string).replace(/^\\watch.*$/gm, ""),
);

const db = useTestDatabase();

function psql(sql: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      "psql",
      [db.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
      { timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(sql);
  });
}

describe("the README's SQL recipes", () => {
  it("list the functions a DBA calls with the pattern the README gives, without the internal helpers", async () => {
    const pattern = /`\\df\+ (waitroom\.\[\^_\]\*)`/.exec(section)?.[1] as string;
    expect(pattern).toBe("waitroom.[^_]*");
    const listed = await psql(`\\df ${pattern}`);
    expect(listed).toMatchObject({ code: 0, stderr: "" });
    const names = [...listed.stdout.matchAll(/^ waitroom \| (\S+)/gm)].map((match) => match[1]);
    expect(names).toEqual(expect.arrayContaining(["join", "admit", "claim", "configure_room", "sweep"]));
    expect(names.filter((name) => name?.startsWith("_"))).toEqual([]);
    const all = await psql("\\df waitroom.*");
    expect(all.stdout).toMatch(/^ waitroom \| _/m);
  });

  it("run in psql in any order, and again, once the room exists", async () => {
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    const [create, ...rest] = blocks as [string, ...string[]];
    expect(create).toContain("waitroom.create_room('launch'");

    const created = await psql(create);
    expect(created).toMatchObject({ code: 0, stderr: "" });
    expect(created.stdout).toMatch(/launch \| +100 \| +600 \| open/);
    const again = await psql(create);
    expect(again).toMatchObject({ code: 0, stderr: "" });
    expect(again.stdout).toMatch(/\(0 rows\)/);

    for (const block of [...rest, ...[...rest].reverse(), ...rest]) {
      const run = await psql(block);
      expect(run, block).toMatchObject({ code: 0 });
      expect(run.stderr, block).not.toMatch(/ERROR/);
    }

    // The seat recipe claims, checks and leaves: a claim that answers ok, a check that says ok.
    const seat = rest.find((block) => block.includes("waitroom.claim(")) as string;
    const run = await psql(seat);
    expect(run.stdout).toMatch(/^ ok +\|/m);
    const [{ count }] = (await db.sql`select count(*)::int as count from waitroom.tickets
      where room_id = 'launch' and status not in ('left', 'expired', 'ended')`) as [{ count: number }];
    expect(count).toBe(0);
  });
});
