import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, metric, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * A body-less POST is a CORS "simple request": without a check, any page could make its visitors'
 * browsers join a room. Browsers say where a request comes from (Origin, Sec-Fetch-Site); callers
 * that are not browsers say nothing and keep working.
 */

const db = useTestDatabase();
const server = useTestServer(db, {
  env: { WAITROOM_ALLOWED_ORIGINS: "https://shop.example", WAITROOM_RATE_LIMIT_JOIN: "1/h,burst=3" },
});

async function createRoom(): Promise<string> {
  const id = uniqueRoomId();
  const response = await server.request(`/v1/rooms/${id}`, { method: "PUT", token: ADMIN_KEY, body: { capacity: 1 } });
  expect(response.status).toBe(201);
  return id;
}

const join = (room: string, headers: Record<string, string>, token?: string) =>
  server.request(`/v1/rooms/${room}/tickets`, { method: "POST", headers, token });

const tickets = async (room: string) =>
  Number((await db.sql<{ n: string }[]>`select count(*) as n from waitroom.tickets where room_id = ${room}`)[0]?.n);

describe("anonymous joins from browsers", () => {
  it("refuses a cross-site browser join, writing nothing and spending none of the visitor's limit", async () => {
    const room = await createRoom();
    const crossSite: Record<string, string>[] = [
      { origin: "https://evil.example", "sec-fetch-site": "cross-site" },
      { origin: "https://evil.example" },
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site", origin: "https://sub.127.0.0.1.example" },
      { origin: "null" },
      { origin: "https://shop.example.evil.example" },
    ];
    for (const headers of crossSite) {
      const response = await join(room, headers);
      expect(response.status).toBe(403);
      expect(await response.json()).toEqual({ error: { code: "origin_not_allowed", message: expect.any(String) } });
    }
    expect(await tickets(room)).toBe(0);
    expect(await metric(server, 'waitroom_http_errors_total{code="origin_not_allowed"}')).toBe(crossSite.length);
    // The address's join bucket (a burst of 3) is untouched.
    expect(await metric(server, 'waitroom_rate_limited_total{bucket="join"}')).toBe(0);
  });

  it("accepts a same-origin browser join, one from an allowed origin, and a server-to-server one", async () => {
    const room = await createRoom();
    const own = new URL(server.url).origin;
    expect((await join(room, { origin: own, "sec-fetch-site": "same-origin" })).status).toBe(202);
    expect((await join(room, { origin: "https://shop.example", "sec-fetch-site": "cross-site" })).status).toBe(202);
    // No Origin, no Sec-Fetch-Site: not a browser.
    expect((await join(room, {})).status).toBe(202);
    expect(await tickets(room)).toBe(3);
  });

  it("lets the server key join from anywhere", async () => {
    const room = await createRoom();
    const response = await server.request(`/v1/rooms/${room}/tickets`, {
      method: "POST",
      token: SERVER_KEY,
      headers: { origin: "https://elsewhere.example" },
      body: { holder: "carol" },
    });
    expect(response.status).toBe(202);
  });
});
