import { describe, expect, it } from "vitest";
import { createSql } from "../../src/db/client.js";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, first, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

/** Sweeps only the test's room: other tests in this file leave rows of their own. */
const sweep = async (room: string, now: Date, limit = 1000) => {
  const [result] = await db.sql`select * from waitroom.sweep(${limit}, ${room}, ${now})`;
  return result;
};
/** In join order (a room before its opening draw holds its entrants in the draw's order). */
const statuses = async (room: string) => {
  const rows = await db.sql<{ status: string; end_reason: string | null }[]>`
    select status, end_reason from waitroom.tickets where room_id = ${room} order by queued_at, id`;
  return rows.map((row) => (row.end_reason ? `${row.status}:${row.end_reason}` : row.status));
};

describe("sweep", () => {
  it("expires offers on both sides of the claim horizon", async () => {
    const room = await createRoom(db.sql, 2, { claim_seconds: 10, idle_seconds: 3600 });
    await join(db.sql, room);
    await admit(db.sql, room, at(0));
    await join(db.sql, room);
    await admit(db.sql, room, at(5));
    expect(await sweep(room, at(9.999))).toMatchObject({ offers_expired: 0 });
    expect(await sweep(room, at(10))).toMatchObject({ offers_expired: 1 });
    expect(await statuses(room)).toEqual(["expired:claim_timeout", "admitted"]);
    expect(await sweep(room, at(15))).toMatchObject({ offers_expired: 1 });
    expect(await sweep(room, at(15))).toMatchObject({ offers_expired: 0 });
  });

  it("expires idle queued tickets on both sides of the idle horizon and keeps depth exact", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30 });
    await join(db.sql, room, { now: at(0) });
    await join(db.sql, room, { now: at(10) });
    expect(await sweep(room, at(29.999))).toMatchObject({ idle_expired: 0 });
    expect(await sweep(room, at(30))).toMatchObject({ idle_expired: 1 });
    expect(await statuses(room)).toEqual(["expired:idle", "queued"]);
    const [stats] = await db.sql`select queued from waitroom.room_stats where room_id = ${room}`;
    expect(stats?.queued).toBe(1);
  });

  it.each([
    ["paused", { mode: "paused" }],
    ["not yet open", { opens_at: at(3600).toISOString() }],
  ])("expires idle queued tickets of a room that is %s, on both sides of the idle horizon", async (_, settings) => {
    const room = await createRoom(db.sql, 5, { idle_seconds: 30, ...settings });
    await join(db.sql, room, { now: at(0) });
    await join(db.sql, room, { now: at(10) });
    expect(await sweep(room, at(29.999))).toMatchObject({ idle_expired: 0 });
    expect(await sweep(room, at(30))).toMatchObject({ idle_expired: 1 });
    expect(await statuses(room)).toEqual(["expired:idle", "queued"]);
    expect(await sweep(room, at(40))).toMatchObject({ idle_expired: 1 });
    const { depth } = first(await db.sql`select waitroom._depth(${room}) as depth`);
    expect(depth).toBe(0);
  });

  it("moves sessions active -> draining -> ended on both sides of each horizon", async () => {
    const room = await createRoom(db.sql, 2, { session_seconds: 60, grace_seconds: 5 });
    const early = await join(db.sql, room);
    const late = await join(db.sql, room);
    await admit(db.sql, room, at(0));
    await verdict(db.sql, "claim", early, at(0));
    await verdict(db.sql, "claim", late, at(2));
    expect(await sweep(room, at(59.999))).toMatchObject({ sessions_drained: 0, sessions_ended: 0 });
    expect(await sweep(room, at(60))).toMatchObject({ sessions_drained: 1, sessions_ended: 0 });
    expect(await statuses(room)).toEqual(["draining", "active"]);
    expect(await sweep(room, at(64.999))).toMatchObject({ sessions_drained: 1, sessions_ended: 0 });
    expect(await sweep(room, at(65))).toMatchObject({ sessions_drained: 0, sessions_ended: 1 });
    expect(await statuses(room)).toEqual(["ended:session_over", "draining"]);
    const types = await db.sql`select type from waitroom.events where ticket_id = ${early.ticket_id} order by id`;
    expect(types.map((row) => row.type)).toEqual(["joined", "admitted", "active", "draining", "ended"]);
  });

  it("ends a session straight from active when the sweep comes late", async () => {
    const room = await createRoom(db.sql, 1, { session_seconds: 60, grace_seconds: 5 });
    const ticket = await join(db.sql, room);
    await admit(db.sql, room, at(0));
    await verdict(db.sql, "claim", ticket, at(0));
    expect(await sweep(room, at(1000))).toMatchObject({ sessions_drained: 0, sessions_ended: 1 });
  });

  it("does nothing when the clock goes backwards", async () => {
    const room = await createRoom(db.sql, 1, { claim_seconds: 10 });
    await join(db.sql, room);
    await admit(db.sql, room, at(100));
    const before = await statuses(room);
    expect(await sweep(room, at(50))).toEqual({
      offers_expired: 0,
      idle_expired: 0,
      sessions_drained: 0,
      sessions_ended: 0,
      tickets_purged: 0,
      events_purged: 0,
      batch_full: false,
    });
    expect(await statuses(room)).toEqual(before);
  });

  it("bounds each kind by p_limit", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30 });
    for (let i = 0; i < 5; i++) await join(db.sql, room);
    expect(await sweep(room, at(100), 2)).toMatchObject({ idle_expired: 2, batch_full: true });
    expect(await sweep(room, at(100), 2)).toMatchObject({ idle_expired: 2, batch_full: true });
    expect(await sweep(room, at(100), 2)).toMatchObject({ idle_expired: 1, batch_full: false });
    await expect(sweep(room, at(100), 0)).rejects.toMatchObject({ code: "WR400" });
  });

  it("purges finished tickets and events past retention, not before", async () => {
    const room = await createRoom(db.sql, 1, { retention_seconds: 3600, idle_seconds: 86400 });
    const gone = await join(db.sql, room);
    await verdict(db.sql, "leave", gone, at(10));
    const kept = await join(db.sql, room, { now: at(20) });
    expect(await sweep(room, at(3600))).toMatchObject({ tickets_purged: 0, events_purged: 0 });
    // room_created and the first joined happened at 0 s; the ticket left at 10 s.
    expect(await sweep(room, at(3600.001))).toMatchObject({ tickets_purged: 0, events_purged: 2 });
    expect(await sweep(room, at(3610))).toMatchObject({ tickets_purged: 0, events_purged: 0 });
    expect(await sweep(room, at(3610.001))).toMatchObject({ tickets_purged: 1, events_purged: 1 });
    const left = await db.sql`select id from waitroom.tickets where room_id = ${room}`;
    expect(left.map((row) => row.id)).toEqual([kept.ticket_id]);
    const events = await db.sql`select type from waitroom.events where room_id = ${room}`;
    expect(events.map((row) => row.type)).toEqual(["joined"]);
  });

  it("shares the work between concurrent sweeps: each transition happens once", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30 });
    await db.sql`select waitroom.join(${room}, null, 0, ${at(0)}) from generate_series(1, 300)`;
    const clients = [createSql(db.url, { max: 1 }), createSql(db.url, { max: 1 }), createSql(db.url, { max: 1 })];
    try {
      const results = await Promise.all(
        clients.map((client) => client`select idle_expired from waitroom.sweep(100, ${room}, ${at(100)})`),
      );
      const total = results.reduce((sum, [row]) => sum + Number(row?.idle_expired), 0);
      const { events } = first(
        await db.sql`
        select count(*)::int as events from waitroom.events where room_id = ${room} and type = 'expired'`,
      );
      const { expired } = first(
        await db.sql`
        select count(*)::int as expired from waitroom.tickets where room_id = ${room} and status = 'expired'`,
      );
      expect(total).toBe(expired);
      expect(events).toBe(expired);
      expect(expired).toBeGreaterThan(0);
      const { depth } = first(await db.sql`select waitroom._depth(${room}) as depth`);
      expect(depth).toBe(300 - expired);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });

  it("shares purges between concurrent sweeps: each row is deleted and counted once", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 30, retention_seconds: 3600 });
    await db.sql`select waitroom.join(${room}, null, 0, ${at(0)}) from generate_series(1, 300)`;
    await sweep(room, at(100));
    const count = async () =>
      first(
        await db.sql<{ tickets: number; events: number }[]>`
        select (select count(*)::int from waitroom.tickets where room_id = ${room}) as tickets,
               (select count(*)::int from waitroom.events where room_id = ${room}) as events`,
      );
    const before = await count();
    expect(before).toEqual({ tickets: 300, events: 601 });
    const clients = [createSql(db.url, { max: 1 }), createSql(db.url, { max: 1 }), createSql(db.url, { max: 1 })];
    try {
      const results = await Promise.all(
        clients.map(
          (client) => client`select tickets_purged, events_purged from waitroom.sweep(150, ${room}, ${at(3800)})`,
        ),
      );
      const purged = (kind: "tickets_purged" | "events_purged") =>
        results.reduce((sum, [row]) => sum + Number(row?.[kind]), 0);
      const after = await count();
      expect(purged("tickets_purged")).toBe(before.tickets - after.tickets);
      expect(purged("events_purged")).toBe(before.events - after.events);
      expect(before.tickets - after.tickets).toBeGreaterThan(0);
      expect(before.events - after.events).toBeGreaterThan(0);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });
});
