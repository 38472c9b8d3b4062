import type postgres from "postgres";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, first, join, verdict } from "../helpers/queue.js";

const db = useTestDatabase();

const position = async (ticketId: string, now: Date) => {
  const [row] = await db.sql`select * from waitroom.position(${ticketId}, ${now})`;
  return row;
};

describe("position", () => {
  it("is exact near the front and moves as tickets ahead leave or are admitted", async () => {
    const room = await createRoom(db.sql, 1, { idle_seconds: 3600 });
    const first = await join(db.sql, room);
    const second = await join(db.sql, room);
    const third = await join(db.sql, room);
    expect(await position(third.ticket_id, at(1))).toMatchObject({
      status: "queued",
      position: 3,
      depth: 3,
      approximate: false,
    });
    await verdict(db.sql, "leave", second, at(2));
    expect(await position(third.ticket_id, at(2))).toMatchObject({ position: 2, depth: 2 });
    await admit(db.sql, room, at(3));
    expect(await position(third.ticket_id, at(3))).toMatchObject({ position: 1, depth: 1 });
    expect(await position(first.ticket_id, at(3))).toMatchObject({ status: "admitted", position: null, depth: 1 });
  });

  it("counts higher priorities ahead", async () => {
    const room = await createRoom(db.sql, 0);
    const plain = await join(db.sql, room);
    await join(db.sql, room, { holder: "vip", priority: 5 });
    expect(await position(plain.ticket_id, at(1))).toMatchObject({ position: 2 });
  });

  it("interpolates deep in a long queue and says so", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    await db.sql`select waitroom.join(${room}, null, 0, ${at(0)}) from generate_series(1, 15000)`;
    const [deep] = await db.sql`select ticket_id from waitroom.queue where room_id = ${room} and position = 12000`;
    const [near] = await db.sql`select ticket_id from waitroom.queue where room_id = ${room} and position = 9000`;
    const far = await position(deep?.ticket_id, at(1));
    expect(far).toMatchObject({ approximate: true, depth: 15000 });
    expect(Math.abs(Number(far?.position) - 12000)).toBeLessThan(100);
    expect(await position(near?.ticket_id, at(1))).toMatchObject({ position: 9000, approximate: false });
  });

  it("interpolates entrants of an opening draw and later joiners each over their own stretch", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600, opens_at: at(100).toISOString() });
    for (let i = 0; i < 2; i++)
      await db.sql`select count(*) from waitroom.join_many(${room}, 6000, null, null, ${at(1)})`;
    await admit(db.sql, room, at(100), 0);
    await db.sql`select count(*) from waitroom.join_many(${room}, 6000, null, null, ${at(101)})`;
    const ticketAt = async (place: number) =>
      first(
        await db.sql<{ ticket_id: string }[]>`
        select ticket_id from waitroom.queue where room_id = ${room} and position = ${place}`,
      ).ticket_id;
    // 12,000 drawn (seq below zero), then 6,000 in join order: each is placed within 2 %.
    for (const place of [11_000, 12_500, 15_000, 17_900]) {
      const state = await position(await ticketAt(place), at(102));
      expect(state).toMatchObject({ approximate: true, depth: 18000 });
      expect(Math.abs(Number(state?.position) - place), `position ${place}`).toBeLessThan(place * 0.02);
    }
  });

  it("estimates the wait from recent admissions, and says nothing without any", async () => {
    const room = await createRoom(db.sql, 100, { idle_seconds: 3600 });
    for (let i = 0; i < 4; i++) await join(db.sql, room);
    const last = await join(db.sql, room);
    expect(await position(last.ticket_id, at(0))).toMatchObject({ eta_seconds: null });
    // Two admissions in the last five minutes: 2 per 300 s.
    await admit(db.sql, room, at(10), 2);
    const estimate = await position(last.ticket_id, at(20));
    expect(estimate).toMatchObject({ position: 3, eta_seconds: 450 });
  });

  it("estimates whole seconds exactly: a third of an admission per second puts position 1 at 3 s, not 4", async () => {
    const room = await createRoom(db.sql, 100, { idle_seconds: 3600 });
    await db.sql`select count(*) from waitroom.join_many(${room}, 100, null, null, ${at(0)})`;
    const last = await join(db.sql, room);
    // 100 admitted in the last five minutes: 1/3 per second, which a decimal (0.333…) rounds down.
    await admit(db.sql, room, at(10), 100);
    expect(await position(last.ticket_id, at(20))).toMatchObject({ position: 1, eta_seconds: 3 });
    // Capped by admit_per_minute (20 a minute: the same third), the same answer.
    await db.sql`select waitroom.configure_room(${room}, '{"admit_per_minute": 20}')`;
    expect(await position(last.ticket_id, at(20))).toMatchObject({ position: 1, eta_seconds: 3 });
  });

  it("returns no row for an unknown ticket", async () => {
    expect(await position("00000000-0000-4000-8000-000000000000", at(0))).toBeUndefined();
  });
});

describe("positions", () => {
  type Row = { ticket_id: string; status: string; position: number | null; approximate: boolean; instance: number };
  const positions = (room: string, ids: string[], now: Date) =>
    db.sql<Row[]>`select * from waitroom.positions(${room}, ${db.sql.array(ids)}::uuid[], ${now})`;

  it("answers for many tickets at once, equal to waitroom.queue's numbering, across priority bands", async () => {
    const room = await createRoom(db.sql, 1, { idle_seconds: 3600 });
    const tickets = [];
    for (let i = 0; i < 30; i++) {
      tickets.push(await join(db.sql, room, i % 7 === 0 ? { holder: `vip-${i}`, priority: 3 } : {}));
    }
    await admit(db.sql, room, at(1));
    const rows = await positions(
      room,
      tickets.map((t) => t.ticket_id),
      at(2),
    );
    const queue = await db.sql<{ ticket_id: string; position: number }[]>`
      select ticket_id, position from waitroom.queue where room_id = ${room}`;
    const expected = new Map(queue.map((row) => [row.ticket_id, row.position]));
    expect(rows).toHaveLength(30);
    for (const row of rows) {
      expect(row.position).toBe(row.status === "queued" ? expected.get(row.ticket_id) : null);
      expect(row.approximate).toBe(false);
    }
    expect(rows.filter((row) => row.status === "admitted")).toHaveLength(1);
  });

  it("ignores tickets of other rooms and unknown ids, and reports the instance", async () => {
    const room = await createRoom(db.sql, 0);
    const other = await createRoom(db.sql, 0);
    const mine = await join(db.sql, room, { holder: "ada" });
    await join(db.sql, room, { holder: "ada" });
    const theirs = await join(db.sql, other);
    const rows = await positions(
      room,
      [mine.ticket_id, theirs.ticket_id, "00000000-0000-4000-8000-000000000000"],
      at(1),
    );
    expect(rows).toEqual([expect.objectContaining({ ticket_id: mine.ticket_id, position: 1, instance: 2 })]);
  });

  /** Index entries of waitroom.tickets this transaction has read so far. */
  const ticketIndexEntriesRead = async (sql: postgres.TransactionSql): Promise<number> => {
    const [row] = await sql<{ read: string }[]>`
      select coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) as read
        from pg_index where indrelid = 'waitroom.tickets'::regclass`;
    return Number(row?.read);
  };

  /*
   * Every stream that opens asks about one ticket, then each change in the room asks about all of
   * them on the same connection. After five single-ticket calls PL/pgSQL may switch to a generic
   * plan, estimated for one ticket: nested loops that re-read the whole queue once per ticket asked
   * about (≈ 1 s for 1,000 tickets, found by SSE fan-out benchmark at 1,000 streams). Counted in
   * index entries read, not in time.
   */
  it("reads the queue once for many tickets, even after the session has asked about single ones", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const tickets = 1000;
    const ids = (
      await db.sql<{ id: string }[]>`
        select (j).ticket_id::text as id
          from (select waitroom.join(${room}, null, 0, ${at(0)}) as j from generate_series(1, ${tickets}) offset 0) s`
    ).map((row) => row.id);

    const indexEntriesRead = await db.sql.begin(async (sql) => {
      for (const id of ids.slice(0, 10)) {
        await sql`select * from waitroom.positions(${room}, ${sql.array([id])}::uuid[], ${at(1)})`;
      }
      const before = await ticketIndexEntriesRead(sql);
      const rows = await sql`select * from waitroom.positions(${room}, ${sql.array(ids)}::uuid[], ${at(1)})`;
      expect(rows).toHaveLength(tickets);
      const [setting] = await sql<{ mode: string }[]>`select current_setting('plan_cache_mode') as mode`;
      expect(setting?.mode, "the caller's transaction keeps its plan_cache_mode").toBe("auto");
      return (await ticketIndexEntriesRead(sql)) - before;
    });
    // The asked tickets, the queue ahead of the furthest, each band's ends: a few entries per ticket.
    expect(indexEntriesRead).toBeLessThan(tickets * 10);
  });

  it("reads the queue once for many tickets when the statistics predate the rush", async () => {
    // Statistics gathered while the room was empty (other rooms busy), as before an opening; then the rush joins.
    const other = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    await db.sql`select count(*) from waitroom.join_many(${other}, 10000, null, null, ${at(0)})`;
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    await db.sql`analyze waitroom.tickets`;
    const tickets = 2000;
    const ids = (
      await db.sql<
        { id: string }[]
      >`select ticket_id::text as id from waitroom.join_many(${room}, ${tickets}, null, null, ${at(0)})`
    ).map((row) => row.id);
    const indexEntriesRead = await db.sql.begin(async (sql) => {
      const before = await ticketIndexEntriesRead(sql);
      const rows = await sql<{ position: number }[]>`
        select position from waitroom.positions(${room}, ${sql.array(ids)}::uuid[], ${at(1)})`;
      expect(rows.map((row) => row.position).sort((a, b) => a - b)).toEqual(ids.map((_, i) => i + 1));
      return (await ticketIndexEntriesRead(sql)) - before;
    });
    // A join planned for one row a side re-ranked the queue once per ticket: 2,000 × 2,000.
    expect(indexEntriesRead).toBeLessThan(tickets * 10);
  });
});

describe("touch", () => {
  it("records presence of live tickets only, never reviving an idle one or extending a seat", async () => {
    const room = await createRoom(db.sql, 1, { idle_seconds: 30, session_seconds: 60 });
    const seated = await join(db.sql, room, { now: at(0) });
    await admit(db.sql, room, at(0));
    await verdict(db.sql, "claim", seated, at(1));
    const fresh = await join(db.sql, room, { now: at(10) });
    const idle = await join(db.sql, room, { now: at(0) });
    const gone = await join(db.sql, room, { now: at(0) });
    await verdict(db.sql, "leave", gone, at(5));

    const ids = [seated, fresh, idle, gone].map((t) => t.ticket_id);
    const [row] = await db.sql<{ touched: number }[]>`
      select waitroom.touch(${db.sql.array(ids)}::uuid[], ${at(35)}) as touched`;
    expect(row?.touched).toBe(2);
    const seen = await db.sql<{ id: string; last_seen_at: Date; expires_at: Date | null }[]>`
      select id, last_seen_at, expires_at from waitroom.tickets where id = any(${db.sql.array(ids)}::uuid[])`;
    const byId = new Map(seen.map((t) => [t.id, t]));
    expect(byId.get(seated.ticket_id)).toMatchObject({ last_seen_at: at(35), expires_at: at(61) });
    expect(byId.get(fresh.ticket_id)?.last_seen_at).toEqual(at(35));
    expect(byId.get(idle.ticket_id)?.last_seen_at).toEqual(at(0));
    expect(byId.get(gone.ticket_id)?.last_seen_at).toEqual(at(0));
  });

  it("skips a ticket another transaction holds, instead of waiting on it and failing the whole batch", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const held = await join(db.sql, room, { now: at(0) });
    const free = await join(db.sql, room, { now: at(0) });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let locked: () => void = () => {};
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const holder = db.sql.begin(async (tx) => {
      await tx`select id from waitroom.tickets where id = ${held.ticket_id} for update`;
      locked();
      await released;
    });
    try {
      await isLocked;
      // A lock wait would end in lock_timeout and touch nobody: presence must go on for the rest.
      const [row] = await db.sql.begin(async (tx) => {
        await tx`set local lock_timeout = '500ms'`;
        return tx<{ touched: number }[]>`
          select waitroom.touch(${db.sql.array([held.ticket_id, free.ticket_id])}::uuid[], ${at(35)}) as touched`;
      });
      expect(row?.touched).toBe(1);
    } finally {
      release();
      await holder;
    }
    const seen = await db.sql<{ id: string; last_seen_at: Date }[]>`
      select id, last_seen_at from waitroom.tickets where id in (${held.ticket_id}, ${free.ticket_id})`;
    const byId = new Map(seen.map((t) => [t.id, t.last_seen_at]));
    expect(byId.get(free.ticket_id)).toEqual(at(35));
    expect(byId.get(held.ticket_id)).toEqual(at(0));
  });
});
