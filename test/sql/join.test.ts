import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, eventTypes, first, join, ticketRow, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

describe("join", () => {
  it("queues anonymous tickets in order with exact O(1) position and depth", async () => {
    const room = await createRoom(db.sql, 1);
    const first = await join(db.sql, room);
    const second = await join(db.sql, room);
    expect(first).toMatchObject({ status: "queued", position: 1, depth: 1 });
    expect(second).toMatchObject({ status: "queued", position: 2, depth: 2 });
    expect(first.token).not.toEqual(second.token);
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(await eventTypes(db.sql, first.ticket_id)).toEqual(["joined"]);
  });

  it("stores only a sha256 of the token", async () => {
    const room = await createRoom(db.sql, 1);
    const ticket = await join(db.sql, room);
    const row = await ticketRow(db.sql, ticket.ticket_id);
    const { hash } = first(await db.sql`select sha256(convert_to(${ticket.token}, 'UTF8')) as hash`);
    expect(row?.token_hash).toEqual(hash);
    const { found } = first(
      await db.sql`
      select count(*)::int as found from waitroom.tickets t
       where position(convert_to(${ticket.token}, 'UTF8') in t.token_hash) > 0
          or t.holder = ${ticket.token}`,
    );
    expect(found).toBe(0);
  });

  it("re-join by the same holder keeps the place, rotates the token and supersedes the old one", async () => {
    const room = await createRoom(db.sql, 1);
    const alice = await join(db.sql, room, { holder: "alice" });
    await join(db.sql, room, { holder: "bob" });
    const again = await join(db.sql, room, { holder: "alice", now: at(5) });
    expect(again.ticket_id).toBe(alice.ticket_id);
    expect(again.token).not.toBe(alice.token);
    expect(again.depth).toBe(2);
    expect(await verdict(db.sql, "check", alice, at(6))).toMatchObject({ ok: false, code: "superseded" });
    expect(await verdict(db.sql, "check", again, at(6))).toMatchObject({ ok: false, code: "queued" });
    const [pos] = await db.sql`select * from waitroom.position(${alice.ticket_id}, ${at(6)})`;
    expect(pos).toMatchObject({ position: 1, depth: 2 });
    const row = await ticketRow(db.sql, alice.ticket_id);
    expect(row).toMatchObject({ instance: 2, last_seen_at: at(5) });
    expect(await eventTypes(db.sql, alice.ticket_id)).toEqual(["joined", "rejoined"]);
  });

  it("re-join of an admitted holder keeps the offer for the new token only", async () => {
    const room = await createRoom(db.sql, 1);
    const first = await join(db.sql, room, { holder: "carol" });
    await admit(db.sql, room, at(1));
    const second = await join(db.sql, room, { holder: "carol", now: at(2) });
    expect(second).toMatchObject({ ticket_id: first.ticket_id, status: "admitted", position: null });
    expect(await verdict(db.sql, "claim", first, at(3))).toMatchObject({ ok: false, code: "superseded" });
    expect(await verdict(db.sql, "claim", second, at(3))).toMatchObject({ ok: true, code: "ok", status: "active" });
  });

  it("a holder whose ticket ended gets a new ticket at the back", async () => {
    const room = await createRoom(db.sql, 1);
    const first = await join(db.sql, room, { holder: "dave" });
    await join(db.sql, room, { holder: "erin" });
    await verdict(db.sql, "leave", first, at(1));
    const second = await join(db.sql, room, { holder: "dave", now: at(2) });
    expect(second.ticket_id).not.toBe(first.ticket_id);
    expect(second).toMatchObject({ status: "queued", position: 2, depth: 2 });
  });

  it("orders by priority, then by join order", async () => {
    const room = await createRoom(db.sql, 3);
    const low = await join(db.sql, room);
    const high = await join(db.sql, room, { holder: "vip", priority: 10 });
    const low2 = await join(db.sql, room);
    expect(await admit(db.sql, room, at(1), 2)).toEqual([high.ticket_id, low.ticket_id]);
    expect(await admit(db.sql, room, at(1))).toEqual([low2.ticket_id]);
  });

  it("accepts joins to a paused room and refuses a closed one with WR503", async () => {
    const paused = await createRoom(db.sql, 1, { mode: "paused" });
    expect(await join(db.sql, paused)).toMatchObject({ status: "queued" });
    const closed = await createRoom(db.sql, 1, { mode: "closed" });
    await expect(join(db.sql, closed)).rejects.toMatchObject({ code: "WR503" });
    const { n } = first(await db.sql`select count(*)::int as n from waitroom.tickets where room_id = ${closed}`);
    expect(n).toBe(0);
  });

  it("admits at once in passthrough mode while seats are free", async () => {
    const room = await createRoom(db.sql, 1, { mode: "passthrough" });
    const first = await join(db.sql, room);
    const second = await join(db.sql, room);
    expect(first).toMatchObject({ status: "admitted", position: null });
    expect(second).toMatchObject({ status: "queued", position: 1, depth: 1 });
  });

  it.each([
    ["unknown room", { room: "no-such-room" }, "WR404"],
    ["empty holder", { holder: "" }, "WR400"],
    ["huge holder", { holder: "x".repeat(257) }, "WR400"],
    ["priority out of range", { priority: 5000 }, "WR400"],
  ])(
    "rejects %s and changes nothing",
    async (_label, input: { room?: string; holder?: string; priority?: number }, code) => {
      const room = await createRoom(db.sql, 1);
      await expect(join(db.sql, input.room ?? room, input)).rejects.toMatchObject({ code });
      const { n } = first(await db.sql`select count(*)::int as n from waitroom.tickets where room_id = ${room}`);
      expect(n).toBe(0);
      const { depth } = first(await db.sql`select waitroom._depth(${room}) as depth`);
      expect(depth).toBe(0);
    },
  );
});
