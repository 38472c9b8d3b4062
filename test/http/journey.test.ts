import { createRemoteJWKSet, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, StreamRecorder, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });

type Ticket = { ticket_id: string; token: string; status: string; position: number | null; events_url: string };

async function join(room: string): Promise<Ticket> {
  const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" });
  expect(response.status).toBe(202);
  return (await response.json()) as Ticket;
}

async function leave(ticket: Ticket): Promise<void> {
  const response = await server.request(`/v1/tickets/${ticket.ticket_id}`, { method: "DELETE", token: ticket.token });
  expect(response.status).toBe(204);
}

describe("the journey of one ticket over HTTP", () => {
  it("waits, watches its position fall, is admitted, claims, proves it with a JWT and leaves", async () => {
    const room = uniqueRoomId();
    const created = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { capacity: 1, claim_seconds: 60, session_seconds: 300 },
    });
    expect(created.status).toBe(201);

    // The first ticket takes the only seat; the next two wait.
    const first = await join(room);
    const second = await join(room);
    const mine = await join(room);
    expect(mine).toMatchObject({ status: "queued", events_url: `/v1/tickets/${mine.ticket_id}/events` });

    const stream = new StreamRecorder(`${server.url}${mine.events_url}?token=${encodeURIComponent(mine.token)}`);
    try {
      const snapshot = await stream.next((m) => m.event === "state" && m.data.position === 2);
      expect(snapshot.data).toMatchObject({ ticket_id: mine.ticket_id, status: "queued", depth: 2 });

      await leave(first); // the seat goes to the second ticket: I am next
      await stream.next((m) => m.event === "state" && m.data.position === 1);
      await leave(second); // now the seat is mine
      const admitted = await stream.next((m) => m.event === "admitted");
      expect(admitted.data).toMatchObject({ ticket_id: mine.ticket_id, status: "admitted", position: null });
      expect(Number(admitted.id)).toBeGreaterThan(0);

      const claim = await server.request(`/v1/tickets/${mine.ticket_id}/claim`, { method: "POST", token: mine.token });
      expect(claim.status).toBe(200);
      const { admission_token, admission_expires_at, expires_at } = (await claim.json()) as {
        admission_token: string;
        admission_expires_at: string;
        expires_at: string;
      };
      await stream.next((m) => m.event === "active");

      // The protected app verifies offline with a standard JWT library and the JWKS.
      const jwks = createRemoteJWKSet(new URL(`${server.url}/.well-known/jwks.json`));
      const { payload, protectedHeader } = await jwtVerify(admission_token, jwks, { algorithms: ["EdDSA"] });
      expect(protectedHeader.kid).toEqual(expect.any(String));
      expect(payload).toMatchObject({ room, tid: mine.ticket_id, sub: mine.ticket_id });
      expect(payload.exp).toBe(Date.parse(admission_expires_at) / 1000);

      const check = async (body: unknown) => {
        const response = await server.request("/v1/check", { method: "POST", body: { room, ...(body as object) } });
        return { status: response.status, body: (await response.json()) as Record<string, unknown> };
      };
      expect(await check({ admission_token })).toEqual({
        status: 200,
        body: { ok: true, status: "active", ticket_id: mine.ticket_id, room_id: room, expires_at },
      });
      expect((await check({ ticket_id: mine.ticket_id, token: mine.token })).status).toBe(200);

      await leave(mine);
      const ended = await stream.next((m) => m.event === "ended");
      expect(ended.data).toMatchObject({ status: "left" });
      expect(await check({ admission_token })).toMatchObject({ status: 410, body: { error: { code: "left" } } });
      expect(await check({ ticket_id: mine.ticket_id, token: mine.token })).toMatchObject({
        status: 410,
        body: { error: { code: "left" } },
      });
    } finally {
      stream.close();
    }
  });
});
