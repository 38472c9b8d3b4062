import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, metric, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { createRoom, join } from "../helpers/queue.js";

/*
 * The join and the event stream are served on Node's request, ahead of the framework
 * (src/http/node-route.ts). Callers must not be able to tell: the same envelope, headers and codes
 * as a framework route, the same request counts, and whatever is not the route's method and path
 * still reaches the framework.
 */

const db = useTestDatabase();
const server = useTestServer(db);

const events = (id: string, query = "") => `/v1/tickets/${id}/events${query}`;

/** Status, headers and body of a raw request (fetch cannot send a GET with Content-Length). */
function rawRequest(path: string, headers: Record<string, string>) {
  const url = new URL(path, server.url);
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const sent = request(url, { method: "GET", headers }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        body += chunk;
      });
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    sent.on("error", reject);
    sent.end();
  });
}

describe("the stream served on Node's request", () => {
  it("refuses bad input with the framework's envelope and headers", async () => {
    // The same bad id on the stream and on a framework route of the same concern.
    const [stream, framework] = await Promise.all([
      server.request(events("not-a-uuid", "?token=t")),
      server.request("/v1/tickets/not-a-uuid", { headers: { authorization: "Bearer t" } }),
    ]);
    for (const response of [stream, framework]) {
      expect(response.status).toBe(400);
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    }
    const [streamBody, frameworkBody] = await Promise.all([stream.json(), framework.json()]);
    expect(streamBody).toEqual(frameworkBody);
    expect(streamBody).toMatchObject({
      error: { code: "invalid_request", message: expect.stringMatching(/^invalid path/) },
    });
  });

  it("takes the token from Authorization or ?token=, and refuses a malformed one", async () => {
    const room = await createRoom(db.sql, 0);
    const ticket = await join(db.sql, room);
    const controller = new AbortController();
    try {
      const byHeader = await server.request(events(ticket.ticket_id), {
        headers: { authorization: `Bearer ${ticket.token}` },
        signal: controller.signal,
      });
      expect(byHeader.status).toBe(200);
      expect(byHeader.headers.get("content-type")).toMatch(/^text\/event-stream/);
    } finally {
      controller.abort();
    }
    const malformed = await server.request(events(ticket.ticket_id), { headers: { authorization: "Basic abc" } });
    expect(malformed.status).toBe(401);
    expect(await malformed.json()).toMatchObject({ error: { code: "unauthorized" } });
    const missing = await server.request(events(ticket.ticket_id));
    expect(missing.status).toBe(401);
    const wrong = await server.request(events(ticket.ticket_id, "?token=wrong"));
    expect(wrong.status).toBe(404);
    expect(await wrong.json()).toMatchObject({ error: { code: "not_found" } });
  });

  it("refuses a declared body over the limit before anything else, closing the connection", async () => {
    const answer = await rawRequest(events("not-a-uuid", "?token=t"), { "content-length": String(10_000_000) });
    expect(answer.status).toBe(413);
    expect(answer.headers.connection).toBe("close");
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: "payload_too_large" } });
    expect(Number(answer.headers["content-length"])).toBe(Buffer.byteLength(answer.body));
  });

  it("leaves other methods and longer paths to the framework", async () => {
    const post = await server.request(events("00000000-0000-4000-8000-000000000000"), { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    for (const path of [`${events("00000000-0000-4000-8000-000000000000")}/more`, "/v1/tickets//events"]) {
      const response = await server.request(path);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
    }
  });

  it("counts its requests under the route's path, like every route", async () => {
    const series = 'waitroom_http_requests_total{method="GET",route="/v1/tickets/:id/events",status="404"}';
    const before = await metric(server, series);
    await server.request(events("00000000-0000-4000-8000-000000000000", "?token=nope"));
    await server.request(events("00000000-0000-4000-8000-000000000000", "?token=nope"));
    expect(await metric(server, series)).toBe(before + 2);
  });
});

describe("the join served on Node's request", () => {
  const tickets = (room: string) => `/v1/rooms/${room}/tickets`;
  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    server.request(path, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });

  it("refuses a bad body with the same envelope as a framework route with a body", async () => {
    const room = await createRoom(db.sql, 0);
    // The same bodies to the join and to a framework route that takes one (the admin's room settings, PUT).
    const settings = (body: string, headers: Record<string, string> = {}) =>
      server.request(`/v1/rooms/${room}`, {
        method: "PUT",
        body,
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_KEY}`, ...headers },
      });
    for (const [body, headers, code] of [
      ["{", {}, "invalid_request"],
      ["[]", {}, "invalid_request"],
      ["{}", { "content-type": "text/plain" }, "unsupported_media_type"],
    ] as const) {
      const [join, framework] = await Promise.all([post(tickets(room), body, headers), settings(body, headers)]);
      expect(join.status, body).toBe(framework.status);
      expect(join.headers.get("content-type")).toMatch(/^application\/json/);
      const [joinError, frameworkError] = await Promise.all([join.json(), framework.json()]);
      expect(joinError).toMatchObject({ error: { code } });
      expect(joinError.error.code).toBe(frameworkError.error.code);
    }
    // A field the join does not know is named, as zod names it.
    const unknown = await post(tickets(room), JSON.stringify({ seat: 1 }));
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({
      error: { code: "invalid_request", message: /^invalid body: .*seat/ },
    });
    expect(await db.sql`select count(*)::int as n from waitroom.tickets where room_id = ${room}`).toEqual([{ n: 0 }]);
  });

  it("joins with a JSON body, and with the server key sets the holder", async () => {
    const room = await createRoom(db.sql, 0);
    const anonymous = await post(tickets(room), "{}");
    expect(anonymous.status).toBe(202);
    expect(anonymous.headers.get("content-type")).toBe("application/json");
    const text = await anonymous.text();
    expect(Number(anonymous.headers.get("content-length"))).toBe(Buffer.byteLength(text));
    expect(JSON.parse(text)).toMatchObject({ status: "queued", position: 1, depth: 1, eta_seconds: null });
    const refused = await post(tickets(room), JSON.stringify({ holder: "ann" }));
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: { code: "forbidden" } });
    const wrongKey = await post(tickets(room), JSON.stringify({ holder: "ann" }), { authorization: "Bearer wrong" });
    expect(wrongKey.status).toBe(401);
    const held = await post(tickets(room), JSON.stringify({ holder: "ann" }), {
      authorization: `Bearer ${SERVER_KEY}`,
    });
    expect(held.status).toBe(202);
    const { ticket_id } = await held.json();
    expect(await db.sql`select holder from waitroom.tickets where id = ${ticket_id}`).toEqual([{ holder: "ann" }]);
  });

  it("leaves other methods and longer paths to the framework, and counts its requests", async () => {
    const room = await createRoom(db.sql, 0);
    const get = await server.request(tickets(room));
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const longer = await post(`${tickets(room)}/more`, "{}");
    expect(longer.status).toBe(404);
    expect(await longer.json()).toMatchObject({ error: { code: "not_found" } });
    const series = 'waitroom_http_requests_total{method="POST",route="/v1/rooms/:room/tickets",status="202"}';
    const before = await metric(server, series);
    await post(tickets(room), "{}");
    expect(await metric(server, series)).toBe(before + 1);
  });
});
