import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, metric, SERVER_KEY, type TestServer, testLimits, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * Per-client limits against the real service: token buckets per client address (per holder for
 * the server's identified joins), 429 rate_limited with Retry-After, counted, nothing written.
 */

const db = useTestDatabase();
/** The service's own defaults: "" is unset. */
const defaults = Object.fromEntries(Object.keys(testLimits).map((name) => [name, ""]));
const server = useTestServer(db, { env: defaults });
const proxied = useTestServer(db, {
  env: { WAITROOM_TRUSTED_PROXIES: "127.0.0.1/32", WAITROOM_RATE_LIMIT_JOIN: "1/h,burst=2" },
});
const small = useTestServer(db, {
  env: { WAITROOM_RATE_LIMIT_TICKET: "1/h,burst=3", WAITROOM_RATE_LIMIT_STREAM: "1/h,burst=2" },
});
const unlimited = useTestServer(db, { env: { ...defaults, WAITROOM_RATE_LIMITS: "off" } });

async function createRoom(): Promise<string> {
  const id = uniqueRoomId();
  const response = await server.request(`/v1/rooms/${id}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 1, idle_seconds: 3600 },
  });
  expect(response.status).toBe(201);
  return id;
}

const join = (on: TestServer, room: string, init: { headers?: Record<string, string>; holder?: string } = {}) =>
  on.request(`/v1/rooms/${room}/tickets`, {
    method: "POST",
    headers: init.headers,
    ...(init.holder === undefined ? {} : { token: SERVER_KEY, body: { holder: init.holder } }),
  });

const tickets = async (room: string) =>
  Number((await db.sql<{ n: string }[]>`select count(*) as n from waitroom.tickets where room_id = ${room}`)[0]?.n);

/** Fire `count` joins, `concurrency` at a time; the statuses in order of answer. */
async function rush(on: TestServer, room: string, count: number, concurrency: number) {
  const statuses: number[] = [];
  const retryAfter: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        const response = await join(on, room);
        statuses.push(response.status);
        if (response.status === 429) {
          expect(await response.json()).toEqual({ error: { code: "rate_limited", message: expect.any(String) } });
          retryAfter.push(Number(response.headers.get("retry-after")));
        } else {
          await response.arrayBuffer();
        }
      }
    }),
  );
  return { statuses, retryAfter };
}

describe("per-client limits (the service's defaults)", () => {
  it("gives one client trying to take 1,000 places a handful, then 429s, writing nothing for them", async () => {
    const room = await createRoom();
    const started = Date.now();
    const { statuses, retryAfter } = await rush(server, room, 1000, 50);
    const seconds = (Date.now() - started) / 1000;
    const accepted = statuses.filter((status) => status === 202).length;
    // The default join bucket: a burst of 10, then one every 10 s.
    expect(accepted).toBeGreaterThanOrEqual(10);
    expect(accepted).toBeLessThanOrEqual(10 + Math.ceil(seconds / 10));
    expect(statuses.filter((status) => status === 429)).toHaveLength(1000 - accepted);
    expect(Math.min(...retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...retryAfter)).toBeLessThanOrEqual(10);
    expect(await tickets(room)).toBe(accepted);
    expect(await metric(server, 'waitroom_rate_limited_total{bucket="join"}')).toBe(1000 - accepted);
  });

  it("limits the server's identified joins per holder, not by its address", async () => {
    const room = await createRoom();
    const alice = [];
    for (let i = 0; i < 8; i++) alice.push((await join(server, room, { holder: "alice" })).status);
    // The default holder bucket: a burst of 5.
    expect(alice).toEqual([202, 202, 202, 202, 202, 429, 429, 429]);
    // The server's address is over the anonymous join limit already (the test above), and other holders are not limited by alice.
    const others = await Promise.all(
      Array.from({ length: 20 }, (_, i) => join(server, room, { holder: `user-${i}` }).then((r) => r.status)),
    );
    expect(others).toEqual(Array(20).fill(202));
    expect(await metric(server, 'waitroom_rate_limited_total{bucket="holder"}')).toBe(3);
    // alice holds one ticket: her refused re-joins rotated no token.
    const [row] = await db.sql<{ instance: number }[]>`
      select instance from waitroom.tickets where room_id = ${room} and holder = 'alice'`;
    expect(row?.instance).toBe(5);
  });

  it("documents rate_limited on every limited route", async () => {
    const document = (await (await server.request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { "x-rate-limit"?: string; "x-error-codes": string[] }>>;
    };
    const limited = Object.entries(document.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, operation]) => operation["x-rate-limit"] !== undefined)
        .map(([method, operation]) => {
          expect(operation["x-error-codes"]).toContain("rate_limited");
          return `${method} ${path} ${operation["x-rate-limit"]}`;
        }),
    );
    expect(limited.sort()).toEqual([
      "delete /v1/tickets/{id} ticket",
      "get /v1/tickets/{id} ticket",
      "get /v1/tickets/{id}/events stream",
      "post /v1/check check",
      "post /v1/rooms/{room}/handover ticket",
      "post /v1/rooms/{room}/tickets join",
      "post /v1/tickets/{id}/claim ticket",
      "post /v1/tickets/{id}/heartbeat ticket",
    ]);
  });
});

describe("the client's address", () => {
  it("is X-Forwarded-For's nearest untrusted address when the peer is a trusted proxy", async () => {
    const room = await createRoom();
    const from = (chain: string) => join(proxied, room, { headers: { "x-forwarded-for": chain } });
    expect((await from("203.0.113.5")).status).toBe(202);
    expect((await from("203.0.113.5")).status).toBe(202);
    expect((await from("203.0.113.5")).status).toBe(429);
    // Whatever the client writes on the left is not believed: the address the proxy saw is the client.
    expect((await from("198.51.100.1, 203.0.113.5")).status).toBe(429);
    // Another client behind the same proxy has its own bucket; trusted hops on the right are skipped.
    expect((await from("203.0.113.6, 127.0.0.1")).status).toBe(202);
    // IPv6 clients count by their /64.
    expect((await from("2001:db8:1:2::1")).status).toBe(202);
    expect((await from("2001:db8:1:2:ffff::9")).status).toBe(202);
    expect((await from("2001:db8:1:2::abcd")).status).toBe(429);
    expect((await from("2001:db8:1:3::1")).status).toBe(202);
    expect(await tickets(room)).toBe(6);
  });

  it("is the socket's peer when the peer is not a trusted proxy: X-Forwarded-For is ignored", async () => {
    const room = await createRoom();
    const statuses = [];
    for (const client of ["203.0.113.7", "203.0.113.8", "203.0.113.9", "203.0.113.10"]) {
      const response = await small.request(`/v1/rooms/${room}/tickets`, {
        method: "POST",
        headers: { "x-forwarded-for": client },
      });
      statuses.push(response.status);
    }
    // small's join bucket is the tests' (high): all accepted, and all counted as 127.0.0.1 — see the ticket bucket below.
    expect(statuses).toEqual([202, 202, 202, 202]);
    const [ticket] = (await db.sql<{ id: string }[]>`select id from waitroom.tickets where room_id = ${room}`).map(
      (row) => row.id,
    );
    // The ticket bucket of small: a burst of 3 for 127.0.0.1, whatever X-Forwarded-For says.
    const reads = [];
    for (const client of ["203.0.113.7", "203.0.113.8", "203.0.113.9", "203.0.113.10"]) {
      const response = await small.request(`/v1/tickets/${ticket}`, {
        token: "not-the-token",
        headers: { "x-forwarded-for": client },
      });
      reads.push(response.status);
    }
    expect(reads).toEqual([404, 404, 404, 429]);
  });
});

describe("stream opens", () => {
  it("are limited per client; a refused open subscribes nothing", async () => {
    const room = await createRoom();
    const response = await join(small, room);
    const { ticket_id: id, token } = (await response.json()) as { ticket_id: string; token: string };
    const before = await metric(small, "waitroom_sse_streams");
    const opens = [];
    const controller = new AbortController();
    for (let i = 0; i < 3; i++) {
      const stream = await fetch(`${small.url}/v1/tickets/${id}/events?token=${token}`, { signal: controller.signal });
      opens.push(stream.status);
      if (stream.status === 429) expect(Number(stream.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    expect(opens).toEqual([200, 200, 429]);
    // Two streams of one ticket: the default cap per ticket.
    expect(await metric(small, "waitroom_sse_streams")).toBe(before + 2);
    controller.abort();
    expect(await metric(small, 'waitroom_rate_limited_total{bucket="stream"}')).toBe(1);
  });
});

describe("WAITROOM_RATE_LIMITS=off", () => {
  it("lets one client join as often as it likes", async () => {
    const room = await createRoom();
    const { statuses } = await rush(unlimited, room, 100, 20);
    expect(statuses).toEqual(Array(100).fill(202));
    expect(await tickets(room)).toBe(100);
  });
});
