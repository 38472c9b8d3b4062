import { EventSource } from "eventsource";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { room as roomContract, roomList } from "../../src/http/contracts.js";
import { startHttp } from "../../src/http/server.js";
import { createLogger } from "../../src/log.js";
import { shownSettings } from "../../src/queue/rooms.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, SERVER_KEY, type TestServer, testEnvironment, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { apiRoutes as routes } from "../helpers/routes.js";

const db = useTestDatabase();

type Room = ReturnType<typeof roomContract.parse>;

const adminRoutes = routes.filter((route) => route.auth === "admin");
const concrete = (path: string, room: string) => path.replace("{room}", room).replace("{kid}", "A".repeat(43));

async function errorOf(response: Response): Promise<{ status: number; code: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  expect(body.error.message).toEqual(expect.any(String));
  return { status: response.status, code: body.error.code };
}

async function roomRows(id: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from waitroom.rooms where id = ${id}`;
  return row?.n ?? -1;
}

describe("the admin API", () => {
  const server = useTestServer(db);

  const put = (room: string, body: unknown, token = ADMIN_KEY) =>
    server.request(`/v1/rooms/${room}`, { method: "PUT", token, body });
  const get = async (room: string): Promise<Room> => {
    const response = await server.request(`/v1/rooms/${room}`, { token: ADMIN_KEY });
    expect(response.status).toBe(200);
    return roomContract.parse(await response.json());
  };
  const join = async (room: string, body?: unknown) => {
    const response = await server.request(`/v1/rooms/${room}/tickets`, {
      method: "POST",
      body,
      token: body ? SERVER_KEY : undefined,
    });
    expect(response.status).toBe(202);
    return (await response.json()) as { ticket_id: string; token: string };
  };

  it("creates a room with PUT (201), changes it with PUT (200) and reads it back", async () => {
    const id = uniqueRoomId();
    const created = await put(id, { capacity: 3, admit_per_minute: 60, opens_at: "2031-02-03T04:05:06+02:00" });
    expect(created.status).toBe(201);
    const room = roomContract.parse(await created.json());
    expect(room).toMatchObject({
      id,
      capacity: 3,
      admit_per_minute: 60,
      mode: "open",
      opens_at: "2031-02-03T02:05:06.000Z",
      // defaults of the table
      session_seconds: 600,
      grace_seconds: 30,
      claim_seconds: 60,
      idle_seconds: 120,
      renew_on_heartbeat: true,
      tick_ms: 1000,
      retention_seconds: 604800,
      stats: { queued: 0, admitted: 0, active: 0, draining: 0, free_seats: 3 },
    });

    const updated = await put(id, {
      capacity: 5,
      admit_per_minute: null,
      session_seconds: 900,
      grace_seconds: 0,
      claim_seconds: 30,
      idle_seconds: 45,
      renew_on_heartbeat: false,
      opens_at: null,
      tick_ms: 250,
      retention_seconds: 7200,
    });
    expect(updated.status).toBe(200);
    const changed = roomContract.parse(await updated.json());
    expect(changed).toMatchObject({
      id,
      capacity: 5,
      admit_per_minute: null,
      session_seconds: 900,
      grace_seconds: 0,
      claim_seconds: 30,
      idle_seconds: 45,
      renew_on_heartbeat: false,
      opens_at: null,
      tick_ms: 250,
      retention_seconds: 7200,
      created_at: room.created_at,
      stats: { free_seats: 5 },
    });
    expect(Date.parse(changed.updated_at)).toBeGreaterThanOrEqual(Date.parse(room.updated_at));
    expect(await get(id)).toEqual(changed);

    // A partial change leaves everything else as it was; an empty one changes nothing.
    expect((await put(id, { mode: "passthrough" })).status).toBe(200);
    expect(await get(id)).toEqual({ ...changed, mode: "passthrough", updated_at: expect.any(String) });
    const before = await get(id);
    const same = await put(id, {});
    expect(same.status).toBe(200);
    expect(roomContract.parse(await same.json())).toEqual(before);
  });

  it("sets a health gate and a draw seed: health shows unknown until probed, the seed stays hidden", async () => {
    const id = uniqueRoomId();
    const created = await put(id, { capacity: 2, health_url: "http://127.0.0.1:9/health", shuffle_seed: 42 });
    expect(created.status).toBe(201);
    const room = await get(id);
    expect(room.health_url).toBe("http://127.0.0.1:9/health");
    expect(room.stats.health).toBe("unknown");
    // On the wire, not through the contract (which would strip an unknown key): every setting but the seed, in order.
    const wire = (await (await server.request(`/v1/rooms/${id}`, { token: ADMIN_KEY })).json()) as object;
    expect(Object.keys(wire)).toEqual(["id", ...Object.keys(shownSettings.shape), "created_at", "updated_at", "stats"]);
    expect(wire).not.toHaveProperty("shuffle_seed");
    const [stored] = await db.sql`select shuffle_seed from waitroom.rooms where id = ${id}`;
    expect(Number(stored?.shuffle_seed)).toBe(42);
    expect(await errorOf(await put(id, { health_url: "ftp://example.com/" }))).toEqual({
      status: 400,
      code: "invalid_request",
    });
    expect((await put(id, { health_url: null })).status).toBe(200);
    expect((await get(id)).stats.health).toBeNull();
  });

  it("lists every room with live numbers, in id order", async () => {
    const a = uniqueRoomId("list-a");
    const b = uniqueRoomId("list-b");
    expect((await put(b, { capacity: 1 })).status).toBe(201);
    expect((await put(a, { capacity: 2 })).status).toBe(201);
    for (let i = 0; i < 3; i++) await join(a);
    await db.sql`select * from waitroom.admit(${a})`;

    const response = await server.request("/v1/rooms", { token: ADMIN_KEY });
    expect(response.status).toBe(200);
    const { rooms } = roomList.parse(await response.json());
    const ids = rooms.map((room) => room.id);
    expect(ids).toEqual([...ids].sort());
    expect(ids).toEqual(expect.arrayContaining([a, b]));
    expect(rooms.find((room) => room.id === a)?.stats).toMatchObject({
      queued: 1,
      admitted: 2,
      active: 0,
      draining: 0,
      free_seats: 0,
      admitted_last_minute: 2,
    });
    expect(rooms.find((room) => room.id === a)?.stats.oldest_wait_seconds).toBeGreaterThanOrEqual(0);
    expect(rooms.find((room) => room.id === b)?.stats).toMatchObject({ queued: 0, admitted: 0, free_seats: 1 });
    expect(rooms.find((room) => room.id === b)?.stats.oldest_wait_seconds).toBeNull();
  });

  it("pauses (admits nobody, still queues) and resumes", async () => {
    const id = uniqueRoomId("pause");
    expect((await put(id, { capacity: 2 })).status).toBe(201);
    const paused = await server.request(`/v1/rooms/${id}/pause`, { method: "POST", token: ADMIN_KEY });
    expect(paused.status).toBe(200);
    expect(roomContract.parse(await paused.json())).toMatchObject({ id, mode: "paused" });
    // Pausing twice is fine.
    const again = await server.request(`/v1/rooms/${id}/pause`, { method: "POST", token: ADMIN_KEY });
    expect(again.status).toBe(200);

    await join(id);
    await join(id);
    expect(await db.sql`select * from waitroom.admit(${id})`).toHaveLength(0);
    expect((await get(id)).stats).toMatchObject({ queued: 2, admitted: 0, free_seats: 2 });

    const resumed = await server.request(`/v1/rooms/${id}/resume`, { method: "POST", token: ADMIN_KEY });
    expect(resumed.status).toBe(200);
    expect(roomContract.parse(await resumed.json())).toMatchObject({ id, mode: "open" });
    expect(await db.sql`select * from waitroom.admit(${id})`).toHaveLength(2);
    expect((await get(id)).stats).toMatchObject({ queued: 0, admitted: 2, free_seats: 0, admitted_last_minute: 2 });

    // The mode changes are in the ledger.
    const modes = await db.sql<{ mode: string }[]>`
      select data ->> 'mode' as mode from waitroom.events
       where room_id = ${id} and type = 'room_configured' order by id`;
    expect(modes.map((row) => row.mode)).toEqual(["paused", "open"]);
  });

  it("deletes a room with its tickets (204), then answers 404", async () => {
    const id = uniqueRoomId("delete");
    expect((await put(id, { capacity: 1 })).status).toBe(201);
    const ticket = await join(id);
    const deleted = await server.request(`/v1/rooms/${id}`, { method: "DELETE", token: ADMIN_KEY });
    expect(deleted.status).toBe(204);
    expect(await deleted.text()).toBe("");
    expect(await roomRows(id)).toBe(0);
    expect(await db.sql`select 1 from waitroom.tickets where room_id = ${id}`).toHaveLength(0);

    for (const [method, path, token] of [
      ["GET", `/v1/rooms/${id}`, ADMIN_KEY],
      ["DELETE", `/v1/rooms/${id}`, ADMIN_KEY],
      ["POST", `/v1/rooms/${id}/pause`, ADMIN_KEY],
      ["POST", `/v1/rooms/${id}/resume`, ADMIN_KEY],
      ["POST", `/v1/rooms/${id}/tickets`, undefined],
    ] as const) {
      const response = await server.request(path, { method, token });
      expect(await errorOf(response)).toEqual({ status: 404, code: "not_found" });
    }
    const stale = await server.request(`/v1/tickets/${ticket.ticket_id}`, { token: ticket.token });
    expect(await errorOf(stale)).toEqual({ status: 404, code: "not_found" });

    // The id can be used again.
    expect((await put(id, { capacity: 4 })).status).toBe(201);
    expect((await get(id)).capacity).toBe(4);
  });

  it("stages the next signing key: published at once, signing only after the caches' lifetimes", async () => {
    const jwks = async () => {
      const response = await server.request("/.well-known/jwks.json");
      expect(response.status).toBe(200);
      expect(response.headers.get("cache-control")).toBe("public, max-age=300");
      return ((await response.json()) as { keys: Array<{ kid: string; kty: string; d?: string }> }).keys;
    };
    // A token signed before the rotation.
    const id = uniqueRoomId("keys");
    expect((await put(id, { capacity: 1 })).status).toBe(201);
    const ticket = await join(id);
    await db.sql`select * from waitroom.admit(${id})`;
    const claim = await server.request(`/v1/tickets/${ticket.ticket_id}/claim`, {
      method: "POST",
      token: ticket.token,
    });
    expect(claim.status).toBe(200);
    const { admission_token } = (await claim.json()) as { admission_token: string };
    const oldKid = decodeProtectedHeader(admission_token).kid;
    expect((await jwks()).map((key) => key.kid)).toContain(oldKid);

    const rotated = await server.request("/v1/keys/rotate", { method: "POST", token: ADMIN_KEY });
    expect(rotated.status).toBe(200);
    const staged = (await rotated.json()) as { kid: string; state: string; created_at: string; activates_at: string };
    expect(staged).toMatchObject({ kid: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), state: "staged" });
    expect(staged.kid).not.toBe(oldKid);
    // Defaults: the JWKS cache lifetime (300 s) plus the replicas' key cache lifetime (30 s).
    expect(Date.parse(staged.activates_at) - Date.parse(staged.created_at)).toBe(330_000);
    const keys = await jwks();
    expect(keys.map((key) => key.kid)).toEqual([oldKid, staged.kid]);
    expect(keys.every((key) => key.kty === "OKP" && key.d === undefined)).toBe(true);

    // Tokens of the current key still verify, offline and at the gate; it still signs (a retried claim).
    const set = createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`));
    await expect(jwtVerify(admission_token, set)).resolves.toMatchObject({ payload: { tid: ticket.ticket_id } });
    const check = await server.request("/v1/check", { method: "POST", body: { room: id, admission_token } });
    expect(check.status).toBe(200);
    const retried = await server.request(`/v1/tickets/${ticket.ticket_id}/claim`, {
      method: "POST",
      token: ticket.token,
    });
    const next = (await retried.json()) as { admission_token: string };
    expect(decodeProtectedHeader(next.admission_token).kid).toBe(oldKid);

    // One rotation at a time; the listing shows both keys.
    const again = await server.request("/v1/keys/rotate", { method: "POST", token: ADMIN_KEY });
    expect(await again.json()).toEqual(staged);
    const listed = await server.request("/v1/keys", { token: ADMIN_KEY });
    expect(((await listed.json()) as { keys: Array<{ kid: string; state: string }> }).keys).toEqual([
      expect.objectContaining({ kid: staged.kid, state: "staged" }),
      expect.objectContaining({ kid: oldKid, state: "current" }),
    ]);
  });

  it("streams the rooms to an operator: at once as GET /v1/rooms answers them, then on every change", async () => {
    const id = uniqueRoomId("watched");
    expect((await put(id, { capacity: 1 })).status).toBe(201);
    const answered = roomList.parse(await (await server.request("/v1/rooms", { token: ADMIN_KEY })).json());

    // The key goes in a header, as the dashboard sends it with fetch.
    const source = new EventSource(`${server.url}/v1/events/rooms`, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${ADMIN_KEY}` } }),
    });
    const received: Room[][] = [];
    let wake = () => {};
    source.addEventListener("rooms", (message) => {
      received.push(roomList.parse(JSON.parse(message.data)).rooms);
      wake();
    });
    /** The first message from `from` on whose room `id` matches; resolved by the stream's own events. */
    const next = async (match: (room: Room) => boolean, from = 0): Promise<number> => {
      for (;;) {
        const index = received.findIndex((rooms, i) => i >= from && rooms.some((r) => r.id === id && match(r)));
        if (index >= 0) return index;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    };
    try {
      const first = await next(() => true);
      expect(first).toBe(0);
      expect(received[0]?.find((r) => r.id === id)).toEqual(answered.rooms.find((r) => r.id === id));

      await join(id);
      const queued = await next((r) => r.stats.queued === 1);
      expect(received[queued]?.find((r) => r.id === id)?.stats.queued).toBe(1);

      expect((await server.request(`/v1/rooms/${id}/pause`, { method: "POST", token: ADMIN_KEY })).status).toBe(200);
      await next((r) => r.mode === "paused", queued);
    } finally {
      source.close();
    }
  });

  it("refuses every admin route without the key or with a wrong one (401)", async () => {
    const id = uniqueRoomId("guarded");
    expect((await put(id, { capacity: 1 })).status).toBe(201);
    for (const route of adminRoutes) {
      for (const token of [undefined, "wrong-admin-key-0123456789", SERVER_KEY, `${ADMIN_KEY}x`, ADMIN_KEY.slice(1)]) {
        const response = await server.request(concrete(route.path, id), {
          method: route.method.toUpperCase(),
          token,
          body: route.method === "put" ? { capacity: 9 } : undefined,
        });
        expect({ route: route.path, method: route.method, ...(await errorOf(response)) }).toEqual({
          route: route.path,
          method: route.method,
          status: 401,
          code: "unauthorized",
        });
      }
    }
    // Nothing happened to the room.
    expect((await get(id)).capacity).toBe(1);
    expect((await get(id)).mode).toBe("open");
  });

  it("requires capacity to create a room and creates nothing on a bad PUT", async () => {
    const id = uniqueRoomId("bad");
    for (const [body, pattern] of [
      [{}, /capacity is required/],
      [{ mode: "paused" }, /capacity is required/],
      [{ capacity: 3, colour: "blue" }, /colour/],
      [{ capacity: 3, id: "other" }, /id/],
      [{ capacity: -1 }, /capacity/],
      [{ capacity: 3, opens_at: "2030-02-31T00:00:00Z" }, /./],
    ] as const) {
      const response = await put(id, body);
      const payload = (await response.clone().json()) as { error: { message: string } };
      expect(await errorOf(response)).toEqual({ status: 400, code: "invalid_request" });
      expect(payload.error.message).toMatch(pattern);
    }
    expect(await roomRows(id)).toBe(0);
    expect(await db.sql`select 1 from waitroom.events where room_id = ${id}`).toHaveLength(0);
    const [sequence] = await db.sql`select to_regclass(${`waitroom."queue:${id}"`}) as seq`;
    expect(sequence?.seq).toBeNull();
    const missing = await server.request(`/v1/rooms/${id}`, { token: ADMIN_KEY });
    expect(await errorOf(missing)).toEqual({ status: 404, code: "not_found" });

    // On an existing room a bad change changes nothing either.
    expect((await put(id, { capacity: 2 })).status).toBe(201);
    const before = await get(id);
    for (const body of [{ colour: "blue" }, { capacity: 2 ** 31 }, { capacity: 7, tick_ms: 10 }, { mode: "gone" }]) {
      expect(await errorOf(await put(id, body))).toEqual({ status: 400, code: "invalid_request" });
    }
    expect(await get(id)).toEqual(before);
  });

  it("lets ten concurrent PUTs create one room: exactly one 201, the rest 200", async () => {
    // Several rounds at once, so that creations really overlap in the database.
    const ids = Array.from({ length: 5 }, () => uniqueRoomId("race"));
    const rounds = await Promise.all(
      ids.map((id) =>
        Promise.all(Array.from({ length: 10 }, (_, i) => put(id, { capacity: 10 + i, claim_seconds: 30 }))),
      ),
    );
    for (const [index, responses] of rounds.entries()) {
      const id = ids[index] as string;
      const answers = await Promise.all(
        responses.map(async (response) => ({ status: response.status, body: await response.json() })),
      );
      const codes = answers.map((answer) => (answer.body as { error?: { code: string } }).error?.code ?? "ok");
      expect(answers.map((answer) => answer.status).sort(), codes.join()).toEqual([
        200, 200, 200, 200, 200, 200, 200, 200, 200, 201,
      ]);
      for (const answer of answers) expect(roomContract.parse(answer.body).id).toBe(id);
      expect(await roomRows(id)).toBe(1);
      const room = await get(id);
      expect(room.capacity).toBeGreaterThanOrEqual(10);
      expect(room.claim_seconds).toBe(30);
      const [created] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from waitroom.events where room_id = ${id} and type = 'room_created'`;
      expect(created?.n).toBe(1);
      const [tally] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from waitroom.queue_tally where room_id = ${id}`;
      expect(tally?.n).toBe(16);
    }
  });
});

describe("the admin API without WAITROOM_ADMIN_KEY", () => {
  const server: TestServer = useTestServer(db, { env: { WAITROOM_ADMIN_KEY: "" } });

  it("answers 403 forbidden on every admin route, whatever key is sent", async () => {
    const id = uniqueRoomId("disabled");
    for (const route of adminRoutes) {
      for (const token of [undefined, ADMIN_KEY, "anything-at-all-0123456789"]) {
        const response = await server.request(concrete(route.path, id), {
          method: route.method.toUpperCase(),
          token,
          body: route.method === "put" ? { capacity: 1 } : undefined,
        });
        expect({ route: `${route.method} ${route.path}`, ...(await errorOf(response)) }).toEqual({
          route: `${route.method} ${route.path}`,
          status: 403,
          code: "forbidden",
        });
      }
    }
    expect(await roomRows(id)).toBe(0);
    // The rest of the API still works.
    expect((await server.request("/healthz")).status).toBe(200);
  });
});

describe("the rooms stream when the service stops", () => {
  it("tells the dashboard to reconnect (to another replica) and ends, instead of holding the shutdown", async () => {
    const http = await startHttp({
      databaseUrl: db.serviceUrl,
      config: loadConfig(testEnvironment()),
      log: createLogger("silent"),
    });
    const response = await fetch(`${http.url}/v1/events/rooms`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const read = async () => {
      const part = await reader.read();
      if (!part.done) text += decoder.decode(part.value, { stream: true });
      return !part.done;
    };
    let text = "";
    while (!text.includes("event: rooms")) await read();
    const closed = http.close();
    while (await read()) {}
    await closed;
    expect(text).toMatch(/retry: 500\n: server shutting down, reconnect\n\n$/);
  });
});
