import { decodeJwt } from "jose";
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { checkResponse, claimResponse, errorCodes, joinResponse, ticketState } from "../../src/http/contracts.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { apiRoutes as routes } from "../helpers/routes.js";

const db = useTestDatabase();
const server = useTestServer(db);

type Ticket = z.infer<typeof joinResponse>;

async function createRoom(settings: Record<string, unknown> = { capacity: 1 }): Promise<string> {
  const id = uniqueRoomId();
  const response = await server.request(`/v1/rooms/${id}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.status).toBe(201);
  return id;
}

async function join(room: string, body?: { holder?: string; priority?: number }): Promise<Ticket> {
  const response = await server.request(`/v1/rooms/${room}/tickets`, {
    method: "POST",
    body,
    token: body ? SERVER_KEY : undefined,
  });
  expect(response.status).toBe(202);
  return joinResponse.parse(await response.json());
}

async function admit(room: string): Promise<string[]> {
  const rows = await db.sql<{ ticket_id: string }[]>`select ticket_id from waitroom.admit(${room})`;
  return rows.map((row) => row.ticket_id);
}

/** Status and error code of an error response, after checking it is the envelope. */
async function failure(response: Response): Promise<{ status: number; code: string }> {
  const body = (await response.json()) as { error: { code: keyof typeof errorCodes; message: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error.message).toEqual(expect.any(String));
  expect(errorCodes[body.error.code]).toBe(response.status);
  return { status: response.status, code: body.error.code };
}

const state = (ticket: Pick<Ticket, "ticket_id">, token: string) =>
  server.request(`/v1/tickets/${ticket.ticket_id}`, { token });
const post = (ticket: Pick<Ticket, "ticket_id">, verb: "claim" | "heartbeat", token: string) =>
  server.request(`/v1/tickets/${ticket.ticket_id}/${verb}`, { method: "POST", token });
const leave = (ticket: Pick<Ticket, "ticket_id">, token: string) =>
  server.request(`/v1/tickets/${ticket.ticket_id}`, { method: "DELETE", token });

describe("ops endpoints", () => {
  it("describes every route in /openapi.json (OpenAPI 3.1)", async () => {
    const response = await server.request("/openapi.json");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    type Operation = {
      security?: Array<Record<string, string[]>>;
      requestBody?: { content: Record<string, { schema: unknown }> };
      responses: Record<string, unknown>;
      parameters?: Array<{ name: string; in: string }>;
      "x-error-codes": string[];
    };
    const document = (await response.json()) as {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
    };
    expect(document.openapi).toBe("3.1.0");
    expect(document.info).toMatchObject({ title: "waitroom", version: "1" });
    const described = Object.entries(document.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method} ${path}`),
    );
    expect(described.sort()).toEqual(routes.map((route) => `${route.method} ${route.path}`).sort());
    for (const route of routes) {
      const operation = document.paths[route.path]?.[route.method] as Operation;
      const statuses = Object.keys(operation.responses);
      for (const status of route.statuses) expect(statuses).toContain(String(status));
      expect(operation["x-error-codes"]).toEqual([...route.errors]);
      for (const code of route.errors) expect(statuses).toContain(String(errorCodes[code]));
      const placeholders = [...route.path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]);
      const inPath = (operation.parameters ?? []).filter((parameter) => parameter.in === "path");
      expect(inPath.map((parameter) => parameter.name)).toEqual(placeholders);
      expect(operation.requestBody !== undefined).toBe(route.body);
      if (route.body) expect(operation.requestBody?.content["application/json"]?.schema).toBeDefined();
    }
    // Anyone may join; the server key only unlocks holder and priority.
    expect(document.paths["/v1/rooms/{room}/tickets"]?.post?.security).toEqual([{}, { serverKey: [] }]);
    expect(document.paths["/v1/check"]?.post?.security).toBeUndefined();
    expect(document.paths["/v1/rooms"]?.get?.security).toEqual([{ adminKey: [] }]);
    expect(Object.keys(document.components.securitySchemes).sort()).toEqual([
      "adminKey",
      "serverKey",
      "ticketToken",
      "ticketTokenQuery",
    ]);
  });

  it("answers /healthz and /readyz", async () => {
    const health = await server.request("/healthz");
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    // Ready once the LISTEN connection is in place.
    await expect
      .poll(async () => (await server.request("/readyz")).status, { timeout: 10_000, interval: 100 })
      .toBe(200);
    expect(server.listener.connected).toBe(true);
    expect(await (await server.request("/readyz")).json()).toEqual({ status: "ready" });
  });

  it("exports Prometheus metrics that count joins, claims, requests and errors", async () => {
    const metrics = async () => {
      const response = await server.request("/metrics");
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
      return response.text();
    };
    const value = (text: string, series: string) => {
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    };
    const before = await metrics();
    for (const name of ["waitroom_joins_total", "waitroom_claims_total", "waitroom_http_requests_total"]) {
      expect(before).toContain(`# TYPE ${name} counter`);
    }
    expect(before).toContain("# TYPE waitroom_http_errors_total counter");
    expect(before).toContain("# TYPE waitroom_sse_streams gauge");

    const room = await createRoom();
    const ticket = await join(room);
    await join(room);
    await admit(room);
    expect((await post(ticket, "claim", ticket.token)).status).toBe(200);
    expect((await state(ticket, "wrong-token")).status).toBe(404);

    const after = await metrics();
    expect(value(after, "waitroom_joins_total") - value(before, "waitroom_joins_total")).toBe(2);
    expect(value(after, "waitroom_claims_total") - value(before, "waitroom_claims_total")).toBe(1);
    const notFound = 'waitroom_http_errors_total{code="not_found"}';
    expect(value(after, notFound) - value(before, notFound)).toBe(1);
    const joins = 'waitroom_http_requests_total{method="POST",route="/v1/rooms/:room/tickets",status="202"}';
    expect(value(after, joins) - value(before, joins)).toBe(2);
  });

  it("publishes the JWKS", async () => {
    const response = await server.request("/.well-known/jwks.json");
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("public, max-age=300");
    const { keys } = (await response.json()) as { keys: Array<Record<string, unknown>> };
    for (const key of keys) {
      expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
      expect(key.d).toBeUndefined();
    }
  });
});

describe("tickets", () => {
  it("joins with 202 and shows the ticket's state to its token only", async () => {
    const room = await createRoom({ capacity: 0 });
    const first = await join(room);
    const second = await join(room);
    expect(second).toMatchObject({
      status: "queued",
      position: 2,
      depth: 2,
      eta_seconds: null,
      events_url: `/v1/tickets/${second.ticket_id}/events`,
    });

    const response = await state(second, second.token);
    expect(response.status).toBe(200);
    expect(ticketState.parse(await response.json())).toEqual({
      ticket_id: second.ticket_id,
      room_id: room,
      status: "queued",
      position: 2,
      depth: 2,
      approximate: false,
      eta_seconds: null,
      eta_low_seconds: null,
      eta_high_seconds: null,
      expires_at: null,
    });
    expect(await failure(await state(second, first.token))).toEqual({ status: 404, code: "not_found" });
    expect(await failure(await state(second, "x".repeat(43)))).toEqual({ status: 404, code: "not_found" });
    expect(await failure(await server.request(`/v1/tickets/${second.ticket_id}`))).toEqual({
      status: 401,
      code: "unauthorized",
    });

    // The first one leaves: the second moves up.
    expect((await leave(first, first.token)).status).toBe(204);
    expect(ticketState.parse(await (await state(second, second.token)).json())).toMatchObject({
      position: 1,
      depth: 1,
    });
  });

  it("supersedes the old token when a holder joins again, keeping the place", async () => {
    const room = await createRoom({ capacity: 0 });
    await join(room);
    const first = await join(room, { holder: "user-42" });
    const again = await join(room, { holder: "user-42" });
    expect(again.ticket_id).toBe(first.ticket_id);
    expect(again.token).not.toBe(first.token);

    expect(await failure(await state(first, first.token))).toEqual({ status: 409, code: "superseded" });
    expect(await failure(await post(first, "heartbeat", first.token))).toEqual({ status: 409, code: "superseded" });
    expect(await failure(await leave(first, first.token))).toEqual({ status: 409, code: "superseded" });
    const check = await server.request("/v1/check", {
      method: "POST",
      body: { room, ticket_id: first.ticket_id, token: first.token },
    });
    expect(await failure(check)).toEqual({ status: 409, code: "superseded" });

    const current = await state(again, again.token);
    expect(current.status).toBe(200);
    expect(ticketState.parse(await current.json())).toMatchObject({ status: "queued", position: 2, depth: 2 });
  });

  it("records heartbeats and refuses them once the ticket is over", async () => {
    const room = await createRoom({ capacity: 0 });
    const ticket = await join(room);
    const [before] = await db.sql<{ last_seen_at: Date }[]>`
      select last_seen_at from waitroom.tickets where id = ${ticket.ticket_id}`;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const response = await post(ticket, "heartbeat", ticket.token);
    expect(response.status).toBe(200);
    expect(ticketState.parse(await response.json())).toMatchObject({
      ticket_id: ticket.ticket_id,
      status: "queued",
      position: 1,
    });
    const [after] = await db.sql<{ last_seen_at: Date }[]>`
      select last_seen_at from waitroom.tickets where id = ${ticket.ticket_id}`;
    expect(after?.last_seen_at.getTime()).toBeGreaterThan(before?.last_seen_at.getTime() ?? Number.POSITIVE_INFINITY);

    expect(await failure(await post(ticket, "heartbeat", "wrong"))).toEqual({ status: 404, code: "not_found" });
    expect((await leave(ticket, ticket.token)).status).toBe(204);
    expect(await failure(await post(ticket, "heartbeat", ticket.token))).toEqual({ status: 410, code: "left" });
  });

  it("claims only after admission, exactly once, and the gate agrees", async () => {
    const room = await createRoom({ capacity: 1, session_seconds: 300 });
    const ticket = await join(room);
    expect(await failure(await post(ticket, "claim", ticket.token))).toEqual({ status: 428, code: "not_admitted" });
    const gate = (body: object) => server.request("/v1/check", { method: "POST", body: { room, ...body } });
    expect(await failure(await gate({ ticket_id: ticket.ticket_id, token: ticket.token }))).toEqual({
      status: 428,
      code: "not_admitted",
    });

    expect(await admit(room)).toEqual([ticket.ticket_id]);
    const offered = ticketState.parse(await (await state(ticket, ticket.token)).json());
    expect(offered).toMatchObject({ status: "admitted", position: null });
    expect(offered.expires_at).not.toBeNull();
    expect(await failure(await gate({ ticket_id: ticket.ticket_id, token: ticket.token }))).toEqual({
      status: 428,
      code: "not_claimed",
    });
    expect(await failure(await post(ticket, "claim", "wrong-token"))).toEqual({ status: 404, code: "not_found" });

    const claimed = await post(ticket, "claim", ticket.token);
    expect(claimed.status).toBe(200);
    const seat = claimResponse.parse(await claimed.json());
    expect(seat).toMatchObject({ ticket_id: ticket.ticket_id, status: "active" });
    const seconds = (Date.parse(seat.expires_at) - Date.now()) / 1000;
    expect(seconds).toBeGreaterThan(290);
    expect(seconds).toBeLessThanOrEqual(300);
    expect(decodeJwt(seat.admission_token)).toMatchObject({ room, tid: ticket.ticket_id, sub: ticket.ticket_id });

    // Claiming again (an answer lost on the way) answers the same seat with a fresh token.
    const again = claimResponse.parse(await (await post(ticket, "claim", ticket.token)).json());
    expect(again).toMatchObject({ ticket_id: ticket.ticket_id, status: "active", expires_at: seat.expires_at });
    // The seat is room A's: a gate protecting room B refuses it, whether shown the JWT or the ticket.
    const elsewhere = await createRoom();
    const wrongRoom = { status: 403, code: "wrong_room" };
    expect(await failure(await gate({ admission_token: seat.admission_token, room: elsewhere }))).toEqual(wrongRoom);
    expect(await failure(await gate({ ticket_id: ticket.ticket_id, token: ticket.token, room: elsewhere }))).toEqual(
      wrongRoom,
    );
    const ok = await gate({ admission_token: seat.admission_token });
    expect(ok.status).toBe(200);
    expect(checkResponse.parse(await ok.json())).toEqual({
      ok: true,
      status: "active",
      ticket_id: ticket.ticket_id,
      room_id: room,
      expires_at: seat.expires_at,
    });
  });

  it("leaves once: 204, then 410 left", async () => {
    const room = await createRoom();
    const ticket = await join(room);
    const first = await leave(ticket, ticket.token);
    expect(first.status).toBe(204);
    expect(await first.text()).toBe("");
    expect(await failure(await leave(ticket, ticket.token))).toEqual({ status: 410, code: "left" });
    expect(await failure(await post(ticket, "claim", ticket.token))).toEqual({ status: 410, code: "left" });
    // The ticket's state stays readable to its holder.
    expect(ticketState.parse(await (await state(ticket, ticket.token)).json())).toMatchObject({
      status: "left",
      position: null,
    });
  });

  it("refuses to join a closed room (503) or an unknown one (404)", async () => {
    const room = await createRoom({ capacity: 5, mode: "closed" });
    const closed = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" });
    expect(await failure(closed)).toEqual({ status: 503, code: "room_closed" });
    const unknown = await server.request(`/v1/rooms/${uniqueRoomId("nowhere")}/tickets`, { method: "POST" });
    expect(await failure(unknown)).toEqual({ status: 404, code: "not_found" });
    const [row] = await db.sql<
      { n: number }[]
    >`select count(*)::int as n from waitroom.tickets where room_id = ${room}`;
    expect(row?.n).toBe(0);
  });

  it("streams a live ticket, answers 204 for a finished one and 404 for a wrong token", async () => {
    const room = await createRoom({ capacity: 0 });
    const live = await join(room);
    const controller = new AbortController();
    const stream = await fetch(
      `${server.url}/v1/tickets/${live.ticket_id}/events?token=${encodeURIComponent(live.token)}`,
      {
        signal: controller.signal,
      },
    );
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
      const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
      const snapshot = /event: state\n(?:id: \d+\n)?data: (.*)\n\n/;
      let text = "";
      while (!snapshot.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      expect(text).toMatch(/^retry: \d+/);
      const data = snapshot.exec(text)?.[1];
      expect(JSON.parse(data ?? "null")).toMatchObject({ ticket_id: live.ticket_id, status: "queued", position: 1 });
    } finally {
      controller.abort();
    }

    const wrong = await server.request(`/v1/tickets/${live.ticket_id}/events`, { token: "not-the-token" });
    expect(await failure(wrong)).toEqual({ status: 404, code: "not_found" });

    expect((await leave(live, live.token)).status).toBe(204);
    const over = await server.request(`/v1/tickets/${live.ticket_id}/events`, { token: live.token });
    expect(over.status).toBe(204);
    expect(await over.text()).toBe("");
  });

  it("honours holder and priority from a caller with the server key", async () => {
    const room = await createRoom({ capacity: 1 });
    const early = await join(room);
    const vip = await join(room, { holder: "vip@example.com", priority: 10 });
    expect(vip.status).toBe("queued");
    const [row] = await db.sql<{ holder: string; priority: number }[]>`
      select holder, priority from waitroom.tickets where id = ${vip.ticket_id}`;
    expect(row).toEqual({ holder: "vip@example.com", priority: 10 });
    // The exact position puts the priority ticket first.
    expect(ticketState.parse(await (await state(vip, vip.token)).json())).toMatchObject({ position: 1, depth: 2 });
    expect(ticketState.parse(await (await state(early, early.token)).json())).toMatchObject({ position: 2 });

    expect(await admit(room)).toEqual([vip.ticket_id]);
    const claimed = await post(vip, "claim", vip.token);
    expect(claimed.status).toBe(200);
    const { admission_token } = claimResponse.parse(await claimed.json());
    expect(decodeJwt(admission_token)).toMatchObject({ sub: "vip@example.com", tid: vip.ticket_id });
    expect(ticketState.parse(await (await state(early, early.token)).json())).toMatchObject({
      status: "queued",
      position: 1,
    });

    // A re-join of the holder revokes the admission token at the gate.
    const rejoined = await join(room, { holder: "vip@example.com" });
    expect(rejoined).toMatchObject({ ticket_id: vip.ticket_id, status: "active" });
    const revoked = await server.request("/v1/check", { method: "POST", body: { room, admission_token } });
    expect(await failure(revoked)).toEqual({ status: 409, code: "superseded" });

    // Any well-formed Unicode holder is kept exactly.
    const unicode = await join(room, { holder: "José 😀 例え\ufffd" });
    const [stored] = await db.sql<
      { holder: string }[]
    >`select holder from waitroom.tickets where id = ${unicode.ticket_id}`;
    expect(stored?.holder).toBe("José 😀 例え\ufffd");

    // Without the key, holder and priority are refused.
    for (const body of [{ holder: "vip@example.com" }, { priority: 10 }]) {
      const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST", body });
      expect(await failure(response)).toEqual({ status: 403, code: "forbidden" });
    }
  });
});

describe("requests Node cannot parse", () => {
  it("get the error envelope too: headers over 16 KB → 431 headers_too_large", async () => {
    const response = await server.request("/healthz", { headers: { "x-filler": "a".repeat(20_000) } });
    expect(response.status).toBe(431);
    expect(await response.json()).toEqual({
      error: { code: "headers_too_large", message: expect.any(String) },
    });
  });
});
