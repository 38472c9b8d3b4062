import { describe, expect, it } from "vitest";
import { createSql } from "../../src/db/client.js";
import { EVENTS_CHANNEL } from "../../src/events/codec.js";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, first, join } from "../helpers/queue.js";

const db = useTestDatabase();

const URL_ = "http://upstream.internal:8080/health";

const setHealth = async (room: string, healthy: boolean | null, detail: string | null, seconds: number) =>
  first(
    await db.sql<{ changed: boolean }[]>`
    select waitroom.set_health(${room}, ${healthy}, ${detail}, ${at(seconds)}) as changed`,
  ).changed;

const health = async (room: string) =>
  first(await db.sql<{ health: string | null }[]>`select health from waitroom.room_stats where room_id = ${room}`)
    .health;

const healthEvents = (room: string) =>
  db.sql<{ data: { healthy: boolean; detail: string } }[]>`
    select data from waitroom.events where room_id = ${room} and type = 'room_health' order by id`;

const due = async (room: string, seconds: number) =>
  first(await db.sql<{ url: string | null }[]>`select waitroom.health_due(${room}, ${at(seconds)}) as url`).url;

describe("health gate", () => {
  it("admits nobody until the upstream is known healthy, and again while it is not", async () => {
    const room = await createRoom(db.sql, 10, { health_url: URL_, idle_seconds: 3600 });
    const tickets = [];
    for (let i = 0; i < 4; i++) tickets.push(await join(db.sql, room));
    expect(await health(room)).toBe("unknown");
    expect(await admit(db.sql, room, at(1), 1)).toEqual([]); // fail closed: never probed

    expect(await setHealth(room, true, "HTTP 200", 2)).toBe(true);
    expect(await health(room)).toBe("healthy");
    expect(await admit(db.sql, room, at(2), 1)).toEqual([tickets[0]?.ticket_id]);

    expect(await setHealth(room, false, "HTTP 503", 3)).toBe(true);
    expect(await health(room)).toBe("unhealthy");
    expect(await admit(db.sql, room, at(3), 1)).toEqual([]);
    expect(await setHealth(room, false, "connection refused", 4)).toBe(false); // still unhealthy
    expect(await admit(db.sql, room, at(4), 1)).toEqual([]);

    expect(await setHealth(room, true, "HTTP 204", 5)).toBe(true);
    expect(await admit(db.sql, room, at(5), 1)).toEqual([tickets[1]?.ticket_id]);
    expect(await setHealth(room, true, "HTTP 200", 6)).toBe(false);

    // One event per change, not per probe; the room row keeps the last probe.
    expect((await healthEvents(room)).map((event) => event.data)).toEqual([
      { healthy: true, detail: "HTTP 200" },
      { healthy: false, detail: "HTTP 503" },
      { healthy: true, detail: "HTTP 204" },
    ]);
    const [row] = await db.sql`select healthy, health_detail, health_checked_at from waitroom.rooms where id = ${room}`;
    expect(row).toEqual({ healthy: true, health_detail: "HTTP 200", health_checked_at: at(6) });
  });

  it("wakes the room when it turns healthy, and announces each change", async () => {
    const room = await createRoom(db.sql, 1, { health_url: URL_ });
    await db.sql`select graphile_worker.remove_job(${`admit:${room}`})`;
    await setHealth(room, false, "HTTP 500", 1);
    const jobs = () => db.sql`select run_at from graphile_worker.jobs where key = ${`admit:${room}`}`;
    expect(await jobs()).toHaveLength(0);
    await setHealth(room, true, "HTTP 200", 2);
    expect(await jobs()).toHaveLength(1);

    const listener = createSql(db.url, { max: 1 });
    const payloads: string[] = [];
    try {
      await listener.listen(EVENTS_CHANNEL, (payload) => payloads.push(payload));
      await setHealth(room, false, "HTTP 502", 3);
      const deadline = Date.now() + 5_000;
      while (!payloads.join("").includes("room_health") && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      await listener.end();
    }
    expect(payloads.join("")).toContain('"type": "room_health"');
  });

  it("is off without a health_url; a new URL is unknown until probed; streams never see the URL", async () => {
    const room = await createRoom(db.sql, 5, { idle_seconds: 3600 });
    const ticket = await join(db.sql, room);
    expect(await health(room)).toBeNull();
    expect(await due(room, 1)).toBeNull();
    expect(await setHealth(room, false, "HTTP 503", 1)).toBe(false); // no gate: nothing recorded
    expect(await healthEvents(room)).toHaveLength(0);

    await db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ health_url: URL_ })}, ${at(2)})`;
    expect(await health(room)).toBe("unknown");
    await setHealth(room, true, "HTTP 200", 3);
    await db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ health_url: `${URL_}?v=2` })}, ${at(4)})`;
    expect(await health(room)).toBe("unknown");
    expect(await admit(db.sql, room, at(5))).toEqual([]);
    await db.sql`select waitroom.configure_room(${room}, '{"health_url": null}', ${at(6)})`;
    expect(await health(room)).toBeNull();
    expect(await admit(db.sql, room, at(7))).toEqual([ticket.ticket_id]);

    const configured = await db.sql<{ data: Record<string, unknown> }[]>`
      select data from waitroom.events where room_id = ${room} and type = 'room_configured' order by id`;
    expect(configured.map((event) => event.data)).toEqual([
      { health_gate: true },
      { health_gate: true },
      { health_gate: false },
    ]);
  });

  it("says when a probe is due: at most once a second, only while the room may admit", async () => {
    const room = await createRoom(db.sql, 1, { health_url: URL_ });
    expect(await due(room, 0)).toBe(URL_);
    await setHealth(room, true, "HTTP 200", 10);
    expect(await due(room, 10.5)).toBeNull();
    expect(await due(room, 11)).toBe(URL_);
    expect(await due(room, 5)).toBe(URL_); // the clock went back: probe rather than trust the future
    await db.sql`select waitroom.configure_room(${room}, '{"mode": "paused"}', ${at(12)})`;
    expect(await due(room, 20)).toBeNull();
  });

  it("ticks at least every second while unhealthy, at tick_ms otherwise", async () => {
    const room = await createRoom(db.sql, 1, { health_url: URL_, tick_ms: 60_000 });
    const nextTick = async (seconds: number) => {
      await db.sql`select graphile_worker.remove_job(${`admit:${room}`})`;
      await db.sql`select waitroom.tick(${room}, ${at(seconds)})`;
      return first(
        await db.sql<{ run_at: Date }[]>`
        select run_at from graphile_worker.jobs where key = ${`admit:${room}`}`,
      ).run_at;
    };
    expect(await nextTick(1)).toEqual(at(2)); // unknown
    await setHealth(room, true, "HTTP 200", 2);
    expect(await nextTick(3)).toEqual(at(63));
    await setHealth(room, false, "no answer within 2000 ms", 4);
    expect(await nextTick(5)).toEqual(at(6));
  });

  it("rejects a health_url that is not http(s), and an unknown room", async () => {
    await expect(createRoom(db.sql, 1, { health_url: "file:///etc/passwd" })).rejects.toMatchObject({ code: "WR400" });
    await expect(db.sql`select waitroom.set_health('no-such-room', true)`).rejects.toMatchObject({ code: "WR404" });
    const room = await createRoom(db.sql, 1, { health_url: URL_ });
    await expect(setHealth(room, null, null, 1)).rejects.toMatchObject({ code: "WR400" });
  });
});
