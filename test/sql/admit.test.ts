import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

async function occupancy(room: string) {
  const [row] =
    await db.sql`select queued, admitted, active, draining, free_seats from waitroom.room_stats where room_id = ${room}`;
  return row;
}

describe("admit", () => {
  it("fills free seats in order, sets the claim deadline and writes an event per ticket", async () => {
    const room = await createRoom(db.sql, 2, { claim_seconds: 30 });
    const tickets = [await join(db.sql, room), await join(db.sql, room), await join(db.sql, room)];
    const rows = await db.sql`select * from waitroom.admit(${room}, null, ${at(10)})`;
    expect(rows.map((r) => r.ticket_id)).toEqual([tickets[0]?.ticket_id, tickets[1]?.ticket_id]);
    expect(rows[0]?.claim_deadline).toEqual(at(40));
    expect(await occupancy(room)).toMatchObject({ queued: 1, admitted: 2, free_seats: 0 });
    const events = await db.sql`
      select ticket_id, data from waitroom.events where room_id = ${room} and type = 'admitted' order by id`;
    expect(events).toHaveLength(2);
    expect(events[0]?.data).toMatchObject({ waited_ms: 10_000 });
  });

  it("answers each admitted ticket with its holder, priority and deadline: priority first, then join order", async () => {
    const room = await createRoom(db.sql, 3, { claim_seconds: 30 });
    const low = await join(db.sql, room, { holder: "lo", priority: -1 });
    const first = await join(db.sql, room);
    const vip = await join(db.sql, room, { holder: "vip", priority: 5 });
    await join(db.sql, room);
    const rows = await db.sql`select * from waitroom.admit(${room}, null, ${at(10)})`;
    expect(rows).toEqual([
      { ticket_id: vip.ticket_id, holder: "vip", priority: 5, claim_deadline: at(40) },
      { ticket_id: first.ticket_id, holder: null, priority: 0, claim_deadline: at(40) },
      expect.objectContaining({ holder: null, priority: 0 }),
    ]);
    expect(rows.map((r) => r.ticket_id)).not.toContain(low.ticket_id);
    expect(await db.sql`select * from waitroom.admit(${room}, null, ${at(11)})`).toEqual([]);
  });

  it("admits nobody when no seat is free, and refills a seat once it is freed", async () => {
    const room = await createRoom(db.sql, 1);
    const first = await join(db.sql, room);
    const second = await join(db.sql, room);
    expect(await admit(db.sql, room, at(1))).toEqual([first.ticket_id]);
    expect(await admit(db.sql, room, at(2))).toEqual([]);
    await verdict(db.sql, "leave", first, at(3));
    expect(await admit(db.sql, room, at(4))).toEqual([second.ticket_id]);
  });

  it("respects p_max", async () => {
    const room = await createRoom(db.sql, 10);
    for (let i = 0; i < 5; i++) await join(db.sql, room);
    expect(await admit(db.sql, room, at(1), 3)).toHaveLength(3);
    expect(await admit(db.sql, room, at(1), 0)).toHaveLength(0);
    await expect(admit(db.sql, room, at(1), -1)).rejects.toMatchObject({ code: "WR400" });
  });

  it("counts seats freed by lapsed offers and finished sessions, recording their end", async () => {
    const room = await createRoom(db.sql, 2, { claim_seconds: 10, session_seconds: 60, grace_seconds: 5 });
    const offered = await join(db.sql, room);
    const seated = await join(db.sql, room);
    const next = await join(db.sql, room);
    const last = await join(db.sql, room);
    await admit(db.sql, room, at(0));
    await verdict(db.sql, "claim", seated, at(1));
    // Offer lapses at 10 s; the session expires at 61 s and drains until 66 s.
    expect(await admit(db.sql, room, at(9.999))).toEqual([]);
    expect(await admit(db.sql, room, at(10))).toEqual([next.ticket_id]);
    expect(await verdict(db.sql, "check", offered, at(10))).toMatchObject({ code: "expired" });
    await verdict(db.sql, "claim", next, at(11));
    expect(await admit(db.sql, room, at(65.999))).toEqual([]);
    expect(await admit(db.sql, room, at(66))).toEqual([last.ticket_id]);
    expect(await verdict(db.sql, "check", seated, at(66))).toMatchObject({ code: "ended" });
  });

  it("skips queued tickets that have gone idle", async () => {
    const room = await createRoom(db.sql, 5, { idle_seconds: 60 });
    const idle = await join(db.sql, room, { now: at(0) });
    const present = await join(db.sql, room, { now: at(30) });
    expect(await admit(db.sql, room, at(60))).toEqual([present.ticket_id]);
    expect(await verdict(db.sql, "check", idle, at(60))).toMatchObject({ code: "expired" });
  });

  it("keeps within admit_per_minute over any 60 seconds", async () => {
    const room = await createRoom(db.sql, 100, { admit_per_minute: 3, idle_seconds: 3600 });
    for (let i = 0; i < 10; i++) await join(db.sql, room);
    expect(await admit(db.sql, room, at(0))).toHaveLength(3);
    expect(await admit(db.sql, room, at(59.999))).toHaveLength(0);
    expect(await admit(db.sql, room, at(60))).toHaveLength(3);
  });

  it.each([
    ["paused", { mode: "paused" }],
    ["closed", { mode: "closed" }],
    ["before opens_at", { opens_at: at(100).toISOString() }],
  ])("admits nobody when %s", async (_label, settings) => {
    const room = await createRoom(db.sql, 5);
    await join(db.sql, room);
    await db.sql`select waitroom.configure_room(${room}, ${db.sql.json(settings)}, ${at(1)})`;
    expect(await admit(db.sql, room, at(2))).toEqual([]);
  });

  it("admits from opens_at on", async () => {
    const room = await createRoom(db.sql, 5, { opens_at: at(100).toISOString() });
    const ticket = await join(db.sql, room);
    expect(await admit(db.sql, room, at(99.999))).toEqual([]);
    expect(await admit(db.sql, room, at(100))).toEqual([ticket.ticket_id]);
  });

  it("refuses to run outside READ COMMITTED, where its snapshot could miss a concurrent admission", async () => {
    const room = await createRoom(db.sql, 5);
    await join(db.sql, room);
    await expect(
      db.sql.begin("isolation level repeatable read", (tx) => tx`select * from waitroom.admit(${room})`),
    ).rejects.toMatchObject({ code: "WR400" });
  });

  it("fails with WR404 for an unknown room", async () => {
    await expect(admit(db.sql, "no-such-room", at(0))).rejects.toMatchObject({ code: "WR404" });
  });
});
