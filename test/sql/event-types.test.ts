import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { streamEventTypes } from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";

/*
 * waitroom.event_types is the one list of ledger row types: what is announced
 * and replayed (waitroom._announced) and what streams show (the hub reads it
 * at start). A verb that writes a type the list lacks would be announced by
 * default and never shown; this keeps the list and the verbs together.
 */

const db = useTestDatabase();

/** The types the verbs hand to waitroom._log: row(room, ticket, '<type>', data) in sql/. */
async function typesWritten(): Promise<Set<string>> {
  const dir = new URL("../../sql/", import.meta.url);
  const written = new Set<string>();
  for (const file of (await readdir(dir)).filter((name) => name.endsWith(".sql"))) {
    const text = await readFile(new URL(file, dir), "utf8");
    for (const match of text.matchAll(/\brow\([^,()]+, [^,()]+, '([a-z_]+)'/g)) if (match[1]) written.add(match[1]);
  }
  return written;
}

describe("waitroom.event_types", () => {
  it("lists exactly the types of ledger row the verbs write", async () => {
    const written = await typesWritten();
    // Joins, admissions, seats, ends, rooms, the draw, stock: the scan found the verbs' rows.
    expect(written.size).toBeGreaterThanOrEqual(19);
    const listed = new Set(
      (await db.sql<{ type: string }[]>`select type from waitroom.event_types()`).map((r) => r.type),
    );
    expect([...written].filter((type) => !listed.has(type))).toEqual([]);
    expect([...listed].filter((type) => !written.has(type))).toEqual([]);
  });

  it("announces no join, and everything streams show", async () => {
    const [row] = await db.sql<{ joined: boolean; rejoined: boolean; admitted: boolean; unlisted: boolean }[]>`
      select waitroom._announced('joined') as joined, waitroom._announced('rejoined') as rejoined,
             waitroom._announced('admitted') as admitted, waitroom._announced('some_future_type') as unlisted`;
    expect(row).toEqual({ joined: false, rejoined: false, admitted: true, unlisted: true });
    const shown = await db.sql<{ type: string }[]>`
      select type from waitroom.event_types() where stream_event is not null and not announced`;
    expect(shown).toEqual([]);
  });

  it("gives the service, as its role, the SSE event of each type streams show", async () => {
    const names = await streamEventTypes(db.serviceSql);
    expect(Object.fromEntries(names)).toEqual({
      admitted: "admitted",
      active: "active",
      draining: "draining",
      ended: "ended",
      expired: "ended",
      left: "ended",
      room_configured: "room",
      room_deleted: "room",
      room_health: "room",
      room_sold_out: "room",
      room_restocked: "room",
    });
  });
});
