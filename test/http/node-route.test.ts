import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { metric, useTestServer } from "../helpers/http.js";
import { createRoom, join } from "../helpers/queue.js";

/*
 * The event stream is served on Node's request, ahead of the framework (src/http/node-route.ts).
 * Callers must not be able to tell: the same envelope, headers and codes as a framework route,
 * the same request counts, and whatever is not the stream's GET or HEAD still reaches the framework.
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
