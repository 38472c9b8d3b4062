import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { admit, at, createRoom, join, verdict } from "../helpers/queue.js";

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

  it("returns no row for an unknown ticket", async () => {
    expect(await position("00000000-0000-4000-8000-000000000000", at(0))).toBeUndefined();
  });
});
