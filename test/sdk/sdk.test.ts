import { randomUUID } from "node:crypto";
import net from "node:net";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { describe, expect, expectTypeOf, it, vi } from "vitest";
import type { z } from "zod";
import {
  type ChallengeResponse,
  type CheckResponse,
  type ClaimResponse,
  createClient,
  type ErrorCode,
  type JoinResponse,
  type SettleResponse,
  type StockLevel,
  type TicketAnswer,
  type TicketState,
  WaitroomError,
  type WaitroomEvent,
} from "../../sdk/index.js";
import type * as contracts from "../../src/http/contracts.js";
import { errorCodes } from "../../src/http/contracts.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function createRoom(settings: Record<string, unknown>): Promise<string> {
  const room = uniqueRoomId();
  const response = await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.status).toBe(201);
  return room;
}

/** Records what a subscription delivers and lets the test wait for an event. */
function recorder() {
  const events: WaitroomEvent[] = [];
  const waiters: Array<() => void> = [];
  return {
    events,
    push(event: WaitroomEvent) {
      events.push(event);
      for (const wake of waiters.splice(0)) wake();
    },
    async next(match: (event: WaitroomEvent) => boolean, timeoutMs = 15_000): Promise<WaitroomEvent> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching event; got ${JSON.stringify(events)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 100);
        });
      }
    },
  };
}

/** A fetch that records every request (method, path, Last-Event-ID) before passing it on. */
function traced() {
  const calls: Array<{ method: string; path: string; lastEventId: string | null; status?: number }> = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const call: (typeof calls)[number] = {
      method: init?.method ?? "GET",
      path: new URL(String(input)).pathname,
      lastEventId: new Headers(init?.headers).get("last-event-id"),
    };
    calls.push(call);
    const response = await globalThis.fetch(input, init);
    call.status = response.status;
    return response;
  };
  const to = (suffix: string) => calls.filter((call) => call.path.endsWith(suffix));
  return { fetch, calls, to };
}

/** A TCP proxy in front of the server whose connections the test can cut, and keep refusing for a while. */
async function cuttableProxy(target: string) {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  let refusing = false;
  const proxy = net.createServer((downstream) => {
    if (refusing) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    for (const [from, to] of [
      [downstream, upstream],
      [upstream, downstream],
    ] as const) {
      sockets.add(from);
      from.pipe(to);
      from.on("error", () => to.destroy());
      from.on("close", () => {
        sockets.delete(from);
        to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const { port: proxyPort } = proxy.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    /** Destroy every open connection (the event stream's among them) and refuse new ones until resumed. */
    cut() {
      refusing = true;
      for (const socket of sockets) socket.destroy();
    },
    resume() {
      refusing = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        proxy.close(() => resolve());
      }),
  };
}

async function ledgerIds(ticketId: string): Promise<string[]> {
  const rows = await db.sql<{ id: string }[]>`select id::text from waitroom.ticket_events(${ticketId}, 0) order by id`;
  return rows.map((row) => row.id);
}

async function maxEventId(): Promise<bigint> {
  const [row] = await db.sql<{ id: string }[]>`select coalesce(max(id), 0)::text as id from waitroom.events`;
  return BigInt(row?.id ?? 0);
}

describe("the client SDK against the real server", () => {
  it("joins, watches its position fall, auto-claims on admission, proves it with a JWT, heartbeats and leaves", async () => {
    const room = await createRoom({ capacity: 1, claim_seconds: 60, session_seconds: 300, renew_on_heartbeat: true });
    const { fetch, to } = traced();
    const client = createClient({ baseUrl: `${server.url}/`, fetch });

    // The first ticket takes the only seat; the next two wait.
    const first = await client.join(room);
    const second = await client.join(room);
    const mine = await client.join(room);
    expect(mine.joined).toMatchObject({ ticket_id: mine.id, token: mine.token, status: "queued" });

    const seen = recorder();
    const claims: ClaimResponse[] = [];
    const errors: unknown[] = [];
    const subscription = mine.subscribe(seen.push, {
      autoClaim: true,
      onClaim: (claim) => claims.push(claim),
      heartbeatMs: 150,
      onError: (error) => errors.push(error),
    });

    await seen.next((e) => e.type === "state" && e.data.position === 2);
    await first.leave(); // the seat goes to the second ticket: I am next
    await seen.next((e) => e.type === "state" && e.data.position === 1);
    expect(claims).toEqual([]);
    await second.leave(); // now the seat is mine, and autoClaim takes it
    const admitted = await seen.next((e) => e.type === "admitted");
    expect(admitted).toMatchObject({
      id: expect.stringMatching(/^\d+$/),
      data: { ticket_id: mine.id, position: null },
    });
    const active = await seen.next((e) => e.type === "active");
    expect(Number(active.id)).toBeGreaterThan(Number(admitted.id));
    // The stream may show the claim before its HTTP answer arrives.
    for (let waited = 0; claims.length === 0 && waited < 5_000; waited += 20) await sleep(20);
    expect(claims).toHaveLength(1);
    const [claim] = claims as [ClaimResponse];
    expect(mine.admission).toMatchObject({ ticket_id: mine.id, status: "active" }); // heartbeats may have refreshed it
    expect(claim).toMatchObject({ ticket_id: mine.id, status: "active" });
    expect(to("/claim")).toHaveLength(1);

    // The protected app verifies the admission token offline against the JWKS…
    const jwks = createRemoteJWKSet(new URL(client.jwksUrl));
    const { payload } = await jwtVerify(claim.admission_token, jwks, { algorithms: ["EdDSA"], issuer: "waitroom" });
    expect(payload).toMatchObject({ room, tid: mine.id, sub: mine.id });
    expect(payload.exp).toBe(Date.parse(claim.admission_expires_at) / 1000);
    // …or online, which also sees revocations.
    expect(await client.check({ room, admission_token: claim.admission_token })).toEqual({
      ok: true,
      status: "active",
      ticket_id: mine.id,
      room_id: room,
      expires_at: claim.expires_at,
    });

    // Active: the heartbeat timer runs.
    for (let waited = 0; to("/heartbeat").length < 2 && waited < 5_000; waited += 50) await sleep(50);
    expect(to("/heartbeat").length).toBeGreaterThanOrEqual(2);

    await mine.leave();
    expect(await subscription).toEqual({ reason: "ended", lastEventId: expect.any(String) });
    expect(seen.events.at(-1)).toMatchObject({ type: "ended", data: { status: "left" } });
    expect(errors).toEqual([]);
    // Positions only fell, then the seat came.
    const positions = seen.events.filter((e) => e.type === "state" && e.data.status === "queued");
    const moves = positions.map((e) => e.data.position as number).filter((p, i, all) => p !== all[i - 1]);
    expect(moves.slice(-2)).toEqual([2, 1]); // (3 first when the first ticket was not yet admitted)
    expect(moves).toEqual([...moves].sort((a, b) => b - a));

    expect(await mine.state()).toMatchObject({ ticket_id: mine.id, room_id: room, status: "left", position: null });
    const revoked = await client
      .check({ room, admission_token: claim.admission_token })
      .catch((error: unknown) => error);
    expect(revoked).toMatchObject({ name: "WaitroomError", status: 410, code: "left" });
    // The subscription is over: its heartbeat timer stopped with it.
    const heartbeats = to("/heartbeat").length;
    await sleep(400);
    expect(to("/heartbeat")).toHaveLength(heartbeats);
  });

  it("ends quietly when the seat is given up while a heartbeat is in flight", async () => {
    const room = await createRoom({ capacity: 1, claim_seconds: 60, session_seconds: 300 });
    const { fetch, to } = traced();
    const client = createClient({ baseUrl: `${server.url}/`, fetch });
    const mine = await client.join(room);
    const seen = recorder();
    const errors: unknown[] = [];
    // Heartbeats back to back, so that one is answered after the leave, before the stream tells of it.
    const subscription = mine.subscribe(seen.push, { autoClaim: true, heartbeatMs: 1, onError: (e) => errors.push(e) });
    await seen.next((e) => e.type === "active");
    for (let waited = 0; to("/heartbeat").length < 5 && waited < 5_000; waited += 20) await sleep(20);
    await mine.leave();
    expect(await subscription).toEqual({ reason: "ended", lastEventId: expect.any(String) });
    expect(seen.events.at(-1)).toMatchObject({ type: "ended", data: { status: "left" } });
    // The contention happened: a heartbeat was answered after the seat was given up.
    expect(to("/heartbeat").filter((call) => call.status === 410).length).toBeGreaterThan(0);
    // The stream tells of the end; a heartbeat answering "left" is not an error of the subscription.
    expect(errors).toEqual([]);
  });

  it("resumes a cut connection without missing or repeating an event", async () => {
    const ahead = 5;
    const room = await createRoom({ capacity: 0, claim_seconds: 3600, idle_seconds: 3600 });
    await db.sql`select waitroom.join(${room}) from generate_series(1, ${ahead})`;
    const proxy = await cuttableProxy(server.url);
    try {
      const { fetch, to } = traced();
      const client = createClient({ baseUrl: proxy.url, fetch });
      const mine = await client.join(room);
      expect(await ledgerIds(mine.id)).toEqual([]); // joins are not announced: the stream shows all there is

      const seen = recorder();
      const errors: unknown[] = [];
      const subscription = mine.subscribe(seen.push, { autoClaim: true, onError: (error) => errors.push(error) });
      await seen.next((e) => e.type === "state" && e.data.position === ahead + 1);

      // Each step: a room event for everyone, and one more admission (by the scheduler, and here at once).
      const grow = async (capacity: number) => {
        await db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ capacity })})`;
        await db.sql`select * from waitroom.admit(${room})`;
      };
      await grow(1);
      const beforeCut = await seen.next((e) => e.type === "room" && e.data.room.capacity === 1);

      proxy.cut();
      const cutAt = await maxEventId();
      await grow(2);
      await grow(3);
      await sleep(200);
      const resumedAt = await maxEventId();
      proxy.resume();
      await grow(4);
      // The SDK reconnects after the server's retry (2 s), resuming after the last event it saw.
      for (let waited = 0; to("/events").length < 2 && waited < 10_000; waited += 50) await sleep(50);
      expect(to("/events").map((call) => call.lastEventId)).toEqual([null, beforeCut.id]);
      await seen.next((e) => e.type === "room" && e.data.room.capacity === 4);
      await grow(5);
      await grow(6); // my turn: admitted, and claimed at once
      await seen.next((e) => e.type === "active");

      const ledger = await ledgerIds(mine.id);
      expect(ledger).toHaveLength(ahead + 1 + 2); // six room changes, my admission and my claim
      // Events really were written while the connection was down.
      expect(ledger.filter((id) => BigInt(id) > cutAt && BigInt(id) <= resumedAt)).toHaveLength(2);
      const delivered = seen.events.flatMap((e) => (e.id === undefined ? [] : [e.id]));
      expect(delivered).toEqual(ledger); // each exactly once, in order
      expect(errors.length).toBeGreaterThanOrEqual(1); // the cut was noticed…
      expect(errors.every((error) => !(error instanceof WaitroomError))).toBe(true); // …as a network failure

      await mine.leave();
      expect((await subscription).reason).toBe("ended");
    } finally {
      await proxy.close();
    }
  });

  it("stops on 204 once the ticket is over and its end was seen, instead of reconnecting", async () => {
    const room = await createRoom({ capacity: 0 });
    const { fetch, to } = traced();
    const client = createClient({ baseUrl: server.url, fetch });
    const ticket = await client.join(room);
    await ticket.leave();

    const fresh = recorder();
    expect(await ticket.subscribe(fresh.push)).toEqual({ reason: "over", lastEventId: undefined });
    expect(fresh.events).toEqual([]);

    // Resuming from before the end replays how it ended; resuming after that gets 204.
    const replay = recorder();
    const ended = await ticket.subscribe(replay.push, { lastEventId: "0" });
    expect(replay.events).toEqual([expect.objectContaining({ type: "ended", id: ended.lastEventId })]);
    expect(replay.events[0]?.data.status).toBe("left");
    expect(ended.reason).toBe("ended");
    expect(await ticket.subscribe(replay.push, { lastEventId: ended.lastEventId })).toEqual({
      reason: "over",
      lastEventId: ended.lastEventId,
    });
    await sleep(300);
    expect(to("/events").map((call) => call.lastEventId)).toEqual([null, "0", ended.lastEventId]);
  });

  it("stops when the holder re-joins elsewhere (superseded)", async () => {
    const room = await createRoom({ capacity: 0 });
    const { fetch, to } = traced();
    const client = createClient({ baseUrl: server.url, fetch });
    const holder = `user-${randomUUID()}`;
    const first = await client.join(room, { holder, priority: 5, serverKey: SERVER_KEY });
    const seen = recorder();
    const subscription = first.subscribe(seen.push);
    await seen.next((e) => e.type === "state");

    const again = await client.join(room, { holder, serverKey: SERVER_KEY });
    expect(again.id).toBe(first.id);
    expect(again.token).not.toBe(first.token);
    expect(await subscription).toEqual({ reason: "superseded", lastEventId: undefined });
    expect(seen.events.at(-1)).toMatchObject({
      type: "superseded",
      data: { ticket_id: first.id, status: "superseded" },
    });
    await sleep(300);
    expect(to("/events")).toHaveLength(1);

    // The old token is dead: reading fails, and a new subscription ends at once.
    await expect(first.state()).rejects.toMatchObject({ status: 409, code: "superseded" });
    expect((await first.subscribe(() => {})).reason).toBe("superseded");
    expect((await again.state()).status).toBe("queued");
  });

  it("joins a room with proof of work: it solves the room's challenge with WebCrypto and joins again", async () => {
    const room = await createRoom({ capacity: 0, idle_seconds: 3600, proof_of_work_bits: 10 });
    const trace = traced();
    const client = createClient({ baseUrl: server.url, fetch: trace.fetch });
    const ticket = await client.join(room);
    expect(ticket.joined?.status).toBe("queued");
    expect(trace.calls.map((call) => `${call.method} ${call.path}`)).toEqual([
      `POST /v1/rooms/${room}/tickets`,
      `GET /v1/rooms/${room}/challenge`,
      `POST /v1/rooms/${room}/tickets`,
    ]);
    // The server key's joins are not asked for one.
    const held = await client.join(room, { holder: "ada", serverKey: SERVER_KEY });
    expect(held.joined?.status).toBe("queued");
    expect(trace.calls).toHaveLength(4);
    // An abort while solving ends the join.
    const hard = await createRoom({ capacity: 0, proof_of_work_bits: 24 });
    const controller = new AbortController();
    const joining = client.join(hard, { signal: controller.signal });
    await vi.waitFor(() => expect(trace.to("/challenge")).toHaveLength(2));
    controller.abort();
    await expect(joining).rejects.toThrow();
  });

  it("throws WaitroomError with the envelope's status, code and message", async () => {
    const client = createClient({ baseUrl: server.url });
    const failure = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (error: unknown) => error,
      );

    const unknownRoom = await failure(client.join(uniqueRoomId()));
    expect(unknownRoom).toBeInstanceOf(WaitroomError);
    expect(unknownRoom).toBeInstanceOf(Error);
    expect(unknownRoom).toMatchObject({ name: "WaitroomError", status: 404, code: "not_found" });
    expect((unknownRoom as Error).message).toMatch(/room/);

    const stranger = client.ticket(randomUUID(), "not-a-token");
    expect(await failure(stranger.state())).toMatchObject({ status: 404, code: "not_found" });
    // A stream that can never work rejects rather than retrying forever.
    expect(await failure(stranger.subscribe(() => {}))).toMatchObject({ status: 404, code: "not_found" });

    const room = await createRoom({ capacity: 1, claim_seconds: 600 });
    expect(await failure(client.join(room, { holder: "ada" }))).toMatchObject({ status: 403, code: "forbidden" });
    const seat = await client.join(room);
    const waiting = await client.join(room);
    expect(await failure(waiting.claim())).toMatchObject({ status: 428, code: "not_admitted" });
    for (let waited = 0; (await seat.state()).status !== "admitted" && waited < 10_000; waited += 50) await sleep(50);
    const claimed = await seat.claim();
    // Idempotent: a claim whose answer was lost can be sent again and answers the same seat.
    expect(await seat.claim()).toMatchObject({ status: "active", expires_at: claimed.expires_at });
    const beat = await seat.heartbeat();
    expect(beat).toMatchObject({ status: "active", admission_token: expect.any(String) });
    expect(seat.admission?.admission_token).toBe(beat.admission_token);
  });

  it("describes the wire exactly as the server's contracts do", () => {
    // Type-level: tsc fails when the SDK's hand-written shapes drift from src/http/contracts.ts.
    expectTypeOf<TicketState>().toEqualTypeOf<z.infer<typeof contracts.ticketState>>();
    expectTypeOf<JoinResponse>().toEqualTypeOf<z.infer<typeof contracts.joinResponse>>();
    expectTypeOf<ClaimResponse>().toEqualTypeOf<z.infer<typeof contracts.claimResponse>>();
    expectTypeOf<CheckResponse>().toEqualTypeOf<z.infer<typeof contracts.checkResponse>>();
    expectTypeOf<TicketAnswer>().toEqualTypeOf<z.infer<typeof contracts.ticketAnswer>>();
    expectTypeOf<StockLevel>().toEqualTypeOf<z.infer<typeof contracts.stockLevel>>();
    expectTypeOf<SettleResponse>().toEqualTypeOf<z.infer<typeof contracts.settleResponse>>();
    expectTypeOf<ChallengeResponse>().toEqualTypeOf<z.infer<typeof contracts.challengeResponse>>();
    expectTypeOf<Exclude<ErrorCode, "unexpected_response">>().toEqualTypeOf<contracts.ErrorCode>();
    // At run time too, for the error codes.
    const sdkCodes: Record<Exclude<ErrorCode, "unexpected_response">, true> = {
      invalid_request: true,
      invalid_token: true,
      unauthorized: true,
      forbidden: true,
      wrong_room: true,
      origin_not_allowed: true,
      return_not_allowed: true,
      admission_required: true,
      not_found: true,
      method_not_allowed: true,
      superseded: true,
      room_full: true,
      already_settled: true,
      not_granted: true,
      sold_out: true,
      quota_exceeded: true,
      proof_required: true,
      proof_invalid: true,
      proof_replayed: true,
      proof_expired: true,
      draining: true,
      ended: true,
      expired: true,
      left: true,
      payload_too_large: true,
      unsupported_media_type: true,
      headers_too_large: true,
      not_admitted: true,
      not_claimed: true,
      rate_limited: true,
      not_ready: true,
      room_closed: true,
      unavailable: true,
      internal: true,
    };
    expect(Object.keys(sdkCodes).sort()).toEqual(Object.keys(errorCodes).sort());
  });

  it("sends a claim whose answer was lost again, and gets the same seat with one active event", async () => {
    const room = await createRoom({ capacity: 1, claim_seconds: 60, session_seconds: 300 });
    // The first claim reaches the service and commits; its answer is dropped on the way back, as when the
    // connection fails after the request was sent (fetch then rejects with a TypeError).
    let claimsSent = 0;
    const lossy: typeof globalThis.fetch = async (input, init) => {
      const response = await globalThis.fetch(input, init);
      if (init?.method === "POST" && new URL(String(input)).pathname.endsWith("/claim") && ++claimsSent === 1) {
        await response.arrayBuffer();
        throw new TypeError("fetch failed");
      }
      return response;
    };
    const client = createClient({ baseUrl: server.url, fetch: lossy });
    const ticket = await client.join(room);
    await db.sql`select * from waitroom.admit(${room})`;

    const claimed = await ticket.claim();
    expect(claimsSent).toBe(2);
    const [seat] = await db.sql<{ status: string; expires_at: Date; actives: number }[]>`
      select t.status, t.expires_at,
             (select count(*)::int from waitroom.events e where e.ticket_id = t.id and e.type = 'active') as actives
        from waitroom.tickets t where t.id = ${ticket.id}`;
    expect(seat).toMatchObject({ status: "active", actives: 1 });
    expect(Date.parse(claimed.expires_at)).toBe(seat?.expires_at.getTime());
    const { payload } = await jwtVerify(claimed.admission_token, createRemoteJWKSet(new URL(client.jwksUrl)), {
      issuer: "waitroom",
    });
    expect(payload.tid).toBe(ticket.id);
  });
});
