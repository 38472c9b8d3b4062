import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { joinResponse, room as roomContract, stockLevel, ticketAnswer } from "../../src/http/contracts.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, SERVER_KEY, StreamRecorder, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * Stock and quotas over HTTP with the real scheduler (issue 17): a sale whose last unit is sold
 * tells every stream at once (a room event, then the end), joins answer sold_out, new stock reopens
 * the room; a holder over quota is refused with the time its next share comes back.
 */

const db = useTestDatabase({ max: 20 });
const server = useTestServer(db, { worker: true });

type Ticket = z.infer<typeof joinResponse>;

async function putRoom(settings: Record<string, unknown>): Promise<string> {
  const id = uniqueRoomId("stock");
  const response = await server.request(`/v1/rooms/${id}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 5, claim_seconds: 600, idle_seconds: 600, tick_ms: 100, ...settings },
  });
  expect(response.status).toBe(201);
  return id;
}

async function joinRoom(room: string, body?: Record<string, unknown>): Promise<Response> {
  return server.request(`/v1/rooms/${room}/tickets`, { method: "POST", token: body ? SERVER_KEY : undefined, body });
}

async function joined(room: string, body?: Record<string, unknown>): Promise<Ticket> {
  const response = await joinRoom(room, body);
  expect(response.status).toBe(202);
  return joinResponse.parse(await response.json());
}

const stream = (ticket: Ticket) => new StreamRecorder(`${server.url}${ticket.events_url}?token=${ticket.token}`);

async function settle(ticket: Ticket, outcome: "consumed" | "returned"): Promise<Response> {
  return server.request(`/v1/tickets/${ticket.ticket_id}/settle`, {
    method: "POST",
    token: SERVER_KEY,
    body: { outcome },
  });
}

describe("a sale with finite stock", () => {
  it("sells out: streams get a room event then ended (sold_out), joins answer sold_out, new stock reopens", async () => {
    const room = await putRoom({});
    const added = await server.request(`/v1/rooms/${room}/stock`, {
      method: "POST",
      token: SERVER_KEY,
      body: { units: 1 },
    });
    expect(stockLevel.parse(await added.json())).toEqual({
      room_id: room,
      stock_available: 1,
      stock_outstanding: 0,
      sold_out: false,
    });
    const buyer = await joined(room);
    const buyerStream = stream(buyer);
    const waiting = await Promise.all([joined(room), joined(room)]);
    const streams = waiting.map(stream);
    try {
      await buyerStream.next((m) => m.event === "admitted");
      const claimed = await server.request(`/v1/tickets/${buyer.ticket_id}/claim`, {
        method: "POST",
        token: buyer.token,
      });
      expect(claimed.status).toBe(200);
      // The unit is reserved, not sold: the others keep waiting.
      const level = await server.request(`/v1/rooms/${room}/stock`, { token: SERVER_KEY });
      expect(await level.json()).toMatchObject({ stock_available: 0, stock_outstanding: 1, sold_out: false });

      const settled = await settle(buyer, "consumed");
      expect(settled.status).toBe(200);
      expect(await settled.json()).toEqual({
        ticket_id: buyer.ticket_id,
        room_id: room,
        outcome: "consumed",
        stock_available: 0,
      });
      for (const s of streams) {
        const told = await s.next(
          (m) => m.event === "room" && (m.data.room as { event?: string }).event === "room_sold_out",
        );
        const ended = await s.next((m) => m.event === "ended");
        expect(ended.data).toMatchObject({ status: "ended", reason: "sold_out" });
        expect(Number(ended.id)).toBeGreaterThan(Number(told.id));
        // Exactly once: one end, and the stream is over.
        expect(s.messages.filter((m) => m.event === "ended")).toHaveLength(1);
      }
      const refused = await joinRoom(room);
      expect(refused.status).toBe(410);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("sold_out");
      const listed = roomContract.parse(await (await server.request(`/v1/rooms/${room}`, { token: ADMIN_KEY })).json());
      expect(listed.stats).toMatchObject({ sold_out: true, stock_available: 0, stock_outstanding: 0, queued: 0 });
      expect((await settle(buyer, "returned")).status).toBe(409);

      // New stock reopens the room.
      const restocked = await server.request(`/v1/rooms/${room}/stock`, {
        method: "POST",
        token: SERVER_KEY,
        body: { units: 2 },
      });
      expect(await restocked.json()).toMatchObject({ stock_available: 2, sold_out: false });
      const comeback = await joined(room);
      const comebackStream = stream(comeback);
      try {
        await comebackStream.next((m) => m.event === "admitted");
      } finally {
        comebackStream.close();
      }
    } finally {
      buyerStream.close();
      for (const s of streams) s.close();
    }
    const [ledger] = await db.sql`select agrees from waitroom.stock_ledger where room_id = ${room}`;
    expect(ledger).toEqual({ agrees: true });
  });
});

describe("a free tier with fair shares", () => {
  it("refuses a holder over quota with available_at and Retry-After; GET ticket shows its shares", async () => {
    const room = await putRoom({
      quota_window_seconds: 3600,
      quota_tiers: { default: { limit: 1 }, pro: { limit: 2, priority: 10 } },
      pool_per_day: 100,
      time_zone: "Europe/Paris",
    });
    const ticket = await joined(room, { holder: "ada" });
    const s = stream(ticket);
    try {
      await s.next((m) => m.event === "admitted");
    } finally {
      s.close();
    }
    const state = ticketAnswer.parse(
      await (await server.request(`/v1/tickets/${ticket.ticket_id}`, { token: ticket.token })).json(),
    );
    expect(state.shares).toMatchObject({
      tier: "default",
      quota_limit: 1,
      used: 1,
      shares_left: 0,
      window_seconds: 3600,
    });
    const nextShare = state.shares?.next_share_at as string;
    expect(Date.parse(nextShare)).toBeGreaterThan(Date.now());

    // The live ticket is re-joined (same ticket, a new token); once it is gone, a new one is refused
    // until the share comes back.
    const rejoined = await joined(room, { holder: "ada" });
    expect(rejoined.ticket_id).toBe(ticket.ticket_id);
    const claim = await server.request(`/v1/tickets/${ticket.ticket_id}/claim`, {
      method: "POST",
      token: rejoined.token,
    });
    expect(claim.status).toBe(200);
    const left = await server.request(`/v1/tickets/${ticket.ticket_id}`, { method: "DELETE", token: rejoined.token });
    expect(left.status).toBe(204);
    const refused = await joinRoom(room, { holder: "ada" });
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as { error: { code: string; available_at: string } };
    expect(body.error.code).toBe("quota_exceeded");
    expect(body.error.available_at).toBe(nextShare);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(3500);

    // The work failed: the share comes back and the holder may join again.
    expect((await settle(ticket, "returned")).status).toBe(200);
    const again = await joined(room, { holder: "ada", tier: "pro" });
    const [row] = await db.sql`select priority, tier from waitroom.tickets where id = ${again.ticket_id}`;
    expect(row).toEqual({ priority: 10, tier: "pro" });
    const unknownTier = await joinRoom(room, { holder: "bob", tier: "gold" });
    expect(unknownTier.status).toBe(400);
    const pro = await server.request(`/v1/tickets/${again.ticket_id}`, { token: again.token });
    expect(ticketAnswer.parse(await pro.json()).shares).toMatchObject({ tier: "pro", quota_limit: 2 });
    // A ticket without a holder has no shares to show.
    const anonymous = await joined(room);
    const plain = await server.request(`/v1/tickets/${anonymous.ticket_id}`, { token: anonymous.token });
    expect(ticketAnswer.parse(await plain.json()).shares).toBeUndefined();
  });
});
