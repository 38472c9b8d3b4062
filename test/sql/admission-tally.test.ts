import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, first, join } from "../helpers/queue.js";

const db = useTestDatabase();

type Instant = { at: string; admitted: number };

/** The admission tally of a room, one entry per instant, oldest first. */
const tally = async (room: string): Promise<Instant[]> =>
  (
    await db.sql<{ at: Date; admitted: number }[]>`
      select admitted_at as at, admitted from waitroom.admission_tally where room_id = ${room} order by admitted_at`
  ).map((row) => ({ at: row.at.toISOString(), admitted: row.admitted }));

/** The same figures counted from the ledger's admitted rows: what the tally must always agree with. */
const fromLedger = async (room: string): Promise<Instant[]> =>
  (
    await db.sql<{ at: Date; admitted: number }[]>`
      select created_at as at, count(*)::int as admitted
        from waitroom.events where room_id = ${room} and type = 'admitted'
       group by created_at order by created_at`
  ).map((row) => ({ at: row.at.toISOString(), admitted: row.admitted }));

describe("the admission tally", () => {
  it("agrees with the ledger: one row per admission instant, admissions at one instant summed, none when nobody was admitted", async () => {
    const room = await createRoom(db.sql, 100, { idle_seconds: 3600, claim_seconds: 3600 });
    await db.sql`select waitroom.join(${room}, null, 0, ${at(0)}) from generate_series(1, 7)`;
    expect(await admit(db.sql, room, at(1), 2)).toHaveLength(2);
    // Two admissions at one (pinned) instant share its row.
    expect(await admit(db.sql, room, at(2), 1)).toHaveLength(1);
    expect(await admit(db.sql, room, at(2), 3)).toHaveLength(3);
    expect(await admit(db.sql, room, at(3), 0)).toHaveLength(0);
    expect(await admit(db.sql, room, at(4))).toHaveLength(1);
    expect(await admit(db.sql, room, at(5))).toHaveLength(0);
    const expected = [
      { at: at(1).toISOString(), admitted: 2 },
      { at: at(2).toISOString(), admitted: 4 },
      { at: at(4).toISOString(), admitted: 1 },
    ];
    expect(await fromLedger(room)).toEqual(expected);
    expect(await tally(room)).toEqual(expected);
  });

  it("counts the admissions of passthrough joins, one by one and in a batch", async () => {
    const room = await createRoom(db.sql, 10, { mode: "passthrough", idle_seconds: 3600 });
    await join(db.sql, room, { now: at(1) });
    await join(db.sql, room, { now: at(2) });
    await db.sql`select * from waitroom.join_many(${room}, 5, null, null, ${at(3)})`;
    const counted = await tally(room);
    expect(counted).toEqual(await fromLedger(room));
    expect(counted.map((instant) => instant.admitted)).toEqual([1, 1, 5]);
  });

  it("rate-limits from the tally across the one-minute horizon", async () => {
    const room = await createRoom(db.sql, 100, { admit_per_minute: 5, idle_seconds: 3600, claim_seconds: 3600 });
    await db.sql`select waitroom.join(${room}, null, 0, ${at(0)}) from generate_series(1, 20)`;
    expect(await admit(db.sql, room, at(10), 3)).toHaveLength(3);
    expect(await admit(db.sql, room, at(40))).toHaveLength(2);
    // At 70 s the admissions of 10 s are exactly one minute old: out of the window; those of 40 s are in.
    expect(await admit(db.sql, room, at(69.999))).toHaveLength(0);
    expect(await admit(db.sql, room, at(70))).toHaveLength(3);
    expect(await tally(room)).toEqual(await fromLedger(room));
  });

  it("gives room_stats the admissions of the last minute", async () => {
    const room = await createRoom(db.sql, 100, { idle_seconds: 86_400, claim_seconds: 86_400 });
    await db.sql`select waitroom.join(${room}) from generate_series(1, 6)`;
    // room_stats reads the real clock: one admission two minutes ago (a pinned clock), one now.
    await db.sql`select * from waitroom.admit(${room}, 2, now() - interval '2 minutes')`;
    await db.sql`select * from waitroom.admit(${room}, 3)`;
    const stats = first(
      await db.sql`select admitted_last_minute::int as n from waitroom.room_stats where room_id = ${room}`,
    );
    expect(stats.n).toBe(3);
  });

  it("is purged by the sweep with the ledger rows it counts, at the room's retention horizon", async () => {
    const room = await createRoom(db.sql, 100, {
      retention_seconds: 3600,
      idle_seconds: 86_400,
      claim_seconds: 86_400,
    });
    await db.sql`select waitroom.join(${room}, null, 0, ${at(0)}) from generate_series(1, 5)`;
    await admit(db.sql, room, at(10), 2);
    await admit(db.sql, room, at(20), 3);
    await db.sql`select * from waitroom.sweep(1000, ${room}, ${at(3610)})`;
    expect((await tally(room)).map((instant) => instant.admitted)).toEqual([2, 3]);
    await db.sql`select * from waitroom.sweep(1000, ${room}, ${at(3610.001)})`;
    expect(await tally(room)).toEqual([{ at: at(20).toISOString(), admitted: 3 }]);
    expect(await fromLedger(room)).toEqual(await tally(room));
    await db.sql`select * from waitroom.sweep(1000, ${room}, ${at(3620.001)})`;
    expect(await tally(room)).toEqual([]);
    expect(await fromLedger(room)).toEqual([]);
  });
});
