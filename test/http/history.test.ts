import { describe, expect, it } from "vitest";
import { roomHistory } from "../../src/http/contracts.js";
import * as queue from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

const db = useTestDatabase();
const server = useTestServer(db);

const T0 = Date.parse("2031-05-01T12:00:00Z");
const at = (seconds: number) => new Date(T0 + seconds * 1000);

const history = (room: string, minutes: number, now: Date) => queue.history(db.sql, room, minutes, now);

describe("waitroom.history", () => {
  it("counts the ledger per minute and derives the depth at the end of each", async () => {
    const room = uniqueRoomId("hist");
    await db.sql`select waitroom.create_room(${room}, 1, '{"claim_seconds": 600, "idle_seconds": 600}', ${at(0)})`;
    const join = async (seconds: number) => {
      const [row] = await db.sql<{ ticket_id: string; token: string }[]>`
        select ticket_id, token from waitroom.join(${room}, null, 0, ${at(seconds)})`;
      return row as { ticket_id: string; token: string };
    };
    // Minute 0: four join. Minute 1: one is admitted (waited 70 s), one leaves. Minute 3: one joins.
    const first = await join(10);
    await join(20);
    const third = await join(30);
    await join(40);
    await db.sql`select * from waitroom.admit(${room}, null, ${at(80)})`;
    await db.sql`select waitroom.leave(${third.ticket_id}, ${third.token}, ${at(90)})`;
    await join(200);

    const buckets = await history(room, 5, at(230));
    expect(buckets.map((b) => b.minute.toISOString())).toEqual([
      "2031-05-01T11:59:00.000Z",
      "2031-05-01T12:00:00.000Z",
      "2031-05-01T12:01:00.000Z",
      "2031-05-01T12:02:00.000Z",
      "2031-05-01T12:03:00.000Z",
    ]);
    expect(buckets.map(({ joined, admitted, left, expired }) => [joined, admitted, left, expired])).toEqual([
      [0, 0, 0, 0],
      [4, 0, 0, 0],
      [0, 1, 1, 0],
      [0, 0, 0, 0],
      [1, 0, 0, 0],
    ]);
    expect(buckets.map((b) => b.depth)).toEqual([0, 4, 2, 2, 3]);
    expect(buckets[2]).toMatchObject({ median_wait_ms: 70_000, p90_wait_ms: 70_000 });
    expect(buckets[1]).toMatchObject({ median_wait_ms: null, p90_wait_ms: null });
    expect(first.ticket_id).toEqual(expect.any(String));

    // Asked at an earlier time, later events still count as "after": the depth then is what it was.
    expect((await history(room, 2, at(50))).map((b) => b.depth)).toEqual([0, 4]);
  });

  it("refuses an unknown room and a bad window", async () => {
    await expect(history("no-such-room", 60, at(0))).rejects.toMatchObject({ code: "WR404" });
    const room = uniqueRoomId("hist");
    await db.sql`select waitroom.create_room(${room}, 1)`;
    await expect(history(room, 0, at(0))).rejects.toMatchObject({ code: "WR400" });
    await expect(history(room, 1441, at(0))).rejects.toMatchObject({ code: "WR400" });
  });
});

describe("GET /v1/rooms/{room}/history", () => {
  it("answers the admin with per-minute buckets of the last hour", async () => {
    const room = uniqueRoomId("hist");
    expect(
      (await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: { capacity: 0 } })).status,
    ).toBe(201);
    for (let i = 0; i < 3; i++) {
      expect((await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).status).toBe(202);
    }
    const response = await server.request(`/v1/rooms/${room}/history`, { token: ADMIN_KEY });
    expect(response.status).toBe(200);
    const body = roomHistory.parse(await response.json());
    expect(body).toMatchObject({ room_id: room, minutes: 60 });
    expect(body.buckets).toHaveLength(60);
    expect(body.buckets.at(-1)?.depth).toBe(3);
    expect(body.buckets.reduce((sum, b) => sum + b.joined, 0)).toBe(3);

    const short = await server.request(`/v1/rooms/${room}/history?minutes=5`, { token: ADMIN_KEY });
    expect(roomHistory.parse(await short.json()).buckets).toHaveLength(5);
  });

  it("needs the admin key, a known room and a sane window", async () => {
    const room = uniqueRoomId("hist");
    await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: { capacity: 1 } });
    const code = async (path: string, token?: string) => {
      const response = await server.request(path, { token });
      return [response.status, ((await response.json()) as { error?: { code: string } }).error?.code];
    };
    expect(await code(`/v1/rooms/${room}/history`)).toEqual([401, "unauthorized"]);
    expect(await code(`/v1/rooms/${room}/history`, "wrong-key-wrong-key")).toEqual([401, "unauthorized"]);
    expect(await code("/v1/rooms/no-such-room/history", ADMIN_KEY)).toEqual([404, "not_found"]);
    for (const minutes of ["0", "1441", "1.5", "x", ""]) {
      expect(await code(`/v1/rooms/${room}/history?minutes=${minutes}`, ADMIN_KEY)).toEqual([400, "invalid_request"]);
    }
  });
});
