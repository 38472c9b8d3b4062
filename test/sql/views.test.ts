import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, createRoom, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

describe("views", () => {
  it("room_stats counts every state and the free seats", async () => {
    const room = await createRoom(db.sql, 4, { session_seconds: 600 });
    const tickets = [];
    for (let i = 0; i < 6; i++) tickets.push(await join(db.sql, room, { now: new Date() }));
    await admit(db.sql, room, new Date());
    const [a, b] = tickets;
    if (!a || !b) throw new Error("joins failed");
    await verdict(db.sql, "claim", a, new Date());
    await verdict(db.sql, "claim", b, new Date());
    const [stats] = await db.sql`select * from waitroom.room_stats where room_id = ${room}`;
    expect(stats).toMatchObject({
      mode: "open",
      capacity: 4,
      queued: 2,
      admitted: 2,
      active: 2,
      draining: 0,
      free_seats: 0,
      admitted_last_minute: 4,
    });
    expect(stats?.oldest_wait).not.toBeNull();
  });

  it("queue lists queued tickets in admission order with positions", async () => {
    const room = await createRoom(db.sql, 0);
    const plain = await join(db.sql, room);
    const vip = await join(db.sql, room, { holder: "vip", priority: 1 });
    const rows = await db.sql`select position, ticket_id, holder from waitroom.queue where room_id = ${room}`;
    expect(rows).toEqual([
      { position: 1, ticket_id: vip.ticket_id, holder: "vip" },
      { position: 2, ticket_id: plain.ticket_id, holder: null },
    ]);
  });

  it("recent_events shows the last hour of the ledger, newest first", async () => {
    const room = await createRoom(db.sql, 1);
    const ticket = await join(db.sql, room, { now: new Date() });
    await verdict(db.sql, "leave", ticket, new Date());
    const rows = await db.sql`select type from waitroom.recent_events where ticket_id = ${ticket.ticket_id}`;
    expect(rows.map((row) => row.type)).toEqual(["left", "joined"]);
    const old = await join(db.sql, room, { now: new Date(Date.now() - 2 * 3600_000) });
    expect(await db.sql`select 1 from waitroom.recent_events where ticket_id = ${old.ticket_id}`).toHaveLength(0);
  });
});
