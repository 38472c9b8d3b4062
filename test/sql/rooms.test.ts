import { describe, expect, it } from "vitest";
import { createSql } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";

const db = useTestDatabase();

describe("create_room", () => {
  it("creates a room with defaults and the given settings", async () => {
    const [room] =
      await db.sql`select * from waitroom.create_room('launch', 5, '{"claim_seconds": 30, "mode": "paused"}')`;
    expect(room).toMatchObject({ id: "launch", capacity: 5, claim_seconds: 30, mode: "paused", session_seconds: 600 });
    const [stats] = await db.sql`select * from waitroom.room_stats where room_id = 'launch'`;
    expect(stats).toMatchObject({ queued: 0, admitted: 0, active: 0, draining: 0, free_seats: 5 });
  });

  it("accepts any slug, even one that names a table of the schema (tally, tickets)", async () => {
    for (const id of ["tally", "tickets", "events"]) {
      const [room] = await db.sql`select id from waitroom.create_room(${id}, 1)`;
      expect(room?.id).toBe(id);
      const [joined] = await db.sql`select depth from waitroom.join(${id})`;
      expect(joined?.depth).toBe(1);
    }
  });

  it("lets exactly one of ten concurrent creations of one id win; the others get WR409", async () => {
    const clients = Array.from({ length: 10 }, () => createSql(db.url, { max: 1 }));
    try {
      const results = await Promise.allSettled(clients.map((sql) => sql`select waitroom.create_room('race', 1)`));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const codes = results.flatMap((r) => (r.status === "rejected" ? [(r.reason as { code?: string }).code] : []));
      expect(codes).toEqual(Array(9).fill("WR409"));
    } finally {
      await Promise.all(clients.map((sql) => sql.end()));
    }
  });

  it("refuses a duplicate id with WR409", async () => {
    await db.sql`select waitroom.create_room('dup', 1)`;
    await expect(db.sql`select waitroom.create_room('dup', 2)`).rejects.toMatchObject({ code: "WR409" });
  });

  it.each([
    ["bad id", "Not A Slug", 1, {}],
    ["negative capacity", "neg", -1, {}],
    ["unknown setting", "unknown", 1, { capacityy: 3 }],
    ["wrong type", "wrongtype", 1, { session_seconds: "soon" }],
    ["bad mode", "badmode", 1, { mode: "sometimes" }],
  ])("rejects %s with WR400 and creates nothing", async (_label, id, capacity, settings) => {
    await expect(
      db.sql`select waitroom.create_room(${id}, ${capacity}, ${db.sql.json(settings)})`,
    ).rejects.toMatchObject({ code: "WR400" });
    const rows = await db.sql`select 1 from waitroom.rooms where id = ${id}`;
    expect(rows).toHaveLength(0);
  });
});
