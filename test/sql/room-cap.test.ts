/*
 * max_queued: a room's cap on the tickets queued at once. A join that would
 * queue more is refused with WRFUL and writes nothing; a live holder's re-join
 * takes no new place and is never refused.
 */
import { describe, expect, it } from "vitest";
import type { Sql } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";
import { at, createRoom, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

/** What a refused join must leave as it was. */
async function snapshot(sql: Sql, room: string) {
  const [row] = await sql<{ tickets: string; events: string; depth: string; last: string | null }[]>`
    select (select count(*) from waitroom.tickets where room_id = ${room}) as tickets,
           (select count(*) from waitroom.events where room_id = ${room}) as events,
           waitroom._depth(${room}) as depth,
           (select pg_sequence_last_value(queue_seq) from waitroom.rooms where id = ${room}) as last`;
  return row;
}

async function sqlState(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

const joinMany = (room: string, count: number, holders: (string | null)[] | null = null) =>
  db.sql`select * from waitroom.join_many(${room}, ${count}, ${holders as string[]}, null, ${at(0)})`;

describe("max_queued", () => {
  it("refuses the join beyond the cap with WRFUL and changes nothing", async () => {
    const room = await createRoom(db.sql, 1, { max_queued: 2 });
    await join(db.sql, room);
    await join(db.sql, room, { holder: "alice" });
    const before = await snapshot(db.sql, room);
    expect(await sqlState(join(db.sql, room))).toBe("WRFUL");
    expect(await sqlState(join(db.sql, room, { holder: "bob" }))).toBe("WRFUL");
    expect(await sqlState(joinMany(room, 1))).toBe("WRFUL");
    expect(await snapshot(db.sql, room)).toEqual(before);
  });

  it("lets a live holder re-join a full room, alone or in a batch", async () => {
    const room = await createRoom(db.sql, 1, { max_queued: 1 });
    const first = await join(db.sql, room, { holder: "alice" });
    const again = await join(db.sql, room, { holder: "alice" });
    expect(again.ticket_id).toBe(first.ticket_id);
    const [batch] = await joinMany(room, 1, ["alice"]);
    expect(batch?.ticket_id).toBe(first.ticket_id);
    expect(Number((await snapshot(db.sql, room))?.depth)).toBe(1);
  });

  it("refuses a batch whose new tickets do not all fit, whole", async () => {
    const room = await createRoom(db.sql, 1, { max_queued: 3 });
    await join(db.sql, room);
    const before = await snapshot(db.sql, room);
    expect(await sqlState(joinMany(room, 3))).toBe("WRFUL");
    expect(await sqlState(joinMany(room, 3, [null, "x", "y"]))).toBe("WRFUL");
    expect(await snapshot(db.sql, room)).toEqual(before);
    expect(await joinMany(room, 2)).toHaveLength(2);
  });

  it("takes joins again once places are freed, and none at all when the cap is lifted", async () => {
    const room = await createRoom(db.sql, 1, { max_queued: 1 });
    const ticket = await join(db.sql, room);
    expect(await sqlState(join(db.sql, room))).toBe("WRFUL");
    expect((await verdict(db.sql, "leave", ticket, at(1))).ok).toBe(true);
    await join(db.sql, room);
    await db.sql`select waitroom.configure_room(${room}, '{"max_queued": null}')`;
    await join(db.sql, room);
    await join(db.sql, room);
  });

  it("is a positive number or null", async () => {
    expect(await sqlState(createRoom(db.sql, 1, { max_queued: 0 }))).toBe("WR400");
    expect(await sqlState(createRoom(db.sql, 1, { max_queued: "many" }))).toBe("WR400");
    const room = await createRoom(db.sql, 1, { max_queued: 5 });
    const [row] = await db.sql<{ max_queued: number }[]>`select max_queued from waitroom.rooms where id = ${room}`;
    expect(row?.max_queued).toBe(5);
  });
});
