import { setTimeout as sleep } from "node:timers/promises";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { claimResponse, heartbeatResponse, joinResponse } from "../../src/http/contracts.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { ADMIN_KEY, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * Nobody who got in is thrown out by accident (issue 14): a claim can be
 * retried, the admission token lives as long as the seat, and keys rotate
 * without signing for a key verifiers cannot know yet.
 */

const db = useTestDatabase();
// Short caches so a staged key's time comes within the test: it signs 2 s after rotation.
const server = useTestServer(db, {
  env: { WAITROOM_JWKS_MAX_AGE_SECONDS: "1", WAITROOM_KEY_CACHE_SECONDS: "1", WAITROOM_ADMISSION_TOKEN_SECONDS: "10" },
});

type Ticket = z.infer<typeof joinResponse>;

async function seatRoom(settings: Record<string, unknown> = {}): Promise<string> {
  const id = uniqueRoomId("seats");
  const response = await server.request(`/v1/rooms/${id}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 1, claim_seconds: 600, ...settings },
  });
  expect(response.status).toBe(201);
  return id;
}

async function admitted(room: string, holder?: string): Promise<Ticket> {
  const response = await server.request(`/v1/rooms/${room}/tickets`, {
    method: "POST",
    token: holder ? SERVER_KEY : undefined,
    body: holder ? { holder } : undefined,
  });
  expect(response.status).toBe(202);
  const ticket = joinResponse.parse(await response.json());
  await db.sql`select * from waitroom.admit(${room})`;
  return ticket;
}

const claim = (ticket: Pick<Ticket, "ticket_id" | "token">) =>
  server.request(`/v1/tickets/${ticket.ticket_id}/claim`, { method: "POST", token: ticket.token });

const heartbeat = async (ticket: Ticket) => {
  const response = await server.request(`/v1/tickets/${ticket.ticket_id}/heartbeat`, {
    method: "POST",
    token: ticket.token,
  });
  expect(response.status).toBe(200);
  return heartbeatResponse.parse(await response.json());
};

/** The protected app of the token's own room asks. */
const check = (admission_token: string) =>
  server.request("/v1/check", { method: "POST", body: { room: decodeJwt(admission_token).aud, admission_token } });

const jwks = async () => createLocalJWKSet(await (await server.request("/.well-known/jwks.json")).json());

async function activeEvents(ticketId: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    select count(*)::int as n from waitroom.events where ticket_id = ${ticketId} and type = 'active'`;
  return row?.n ?? 0;
}

describe("a retried claim", () => {
  it("answers the same seat with a valid token and writes no second active event, under 20 at once", async () => {
    const room = await seatRoom();
    const ticket = await admitted(room);
    const answers = await Promise.all(Array.from({ length: 20 }, () => claim(ticket)));
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    const seats = await Promise.all(answers.map(async (answer) => claimResponse.parse(await answer.json())));
    expect(new Set(seats.map((seat) => `${seat.status} ${seat.expires_at}`))).toEqual(
      new Set([`active ${seats[0]?.expires_at}`]),
    );
    // And once more, later, as after a lost answer.
    const retried = claimResponse.parse(await (await claim(ticket)).json());
    expect(retried.expires_at).toBe(seats[0]?.expires_at);
    expect(await activeEvents(ticket.ticket_id)).toBe(1);

    const keys = await jwks();
    for (const seat of [...seats, retried]) {
      const { payload } = await jwtVerify(seat.admission_token, keys, { issuer: "waitroom" });
      expect(payload).toMatchObject({ tid: ticket.ticket_id, room, ins: 1 });
      expect((await check(seat.admission_token)).status).toBe(200);
    }
  });

  it("by a superseded token still fails", async () => {
    const room = await seatRoom();
    const old = await admitted(room, "ada");
    expect((await claim(old)).status).toBe(200);
    const rejoin = await server.request(`/v1/rooms/${room}/tickets`, {
      method: "POST",
      token: SERVER_KEY,
      body: { holder: "ada" },
    });
    const current = joinResponse.parse(await rejoin.json());
    const refused = await claim(old);
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("superseded");
    // The current token's claim answers the seat, for the new instance.
    const seat = claimResponse.parse(await (await claim(current)).json());
    expect(decodeJwt(seat.admission_token)).toMatchObject({ ins: 2, sub: "ada" });
    expect(await activeEvents(old.ticket_id)).toBe(1);
  });
});

describe("admission tokens", () => {
  it("are refreshed by heartbeats: past the original session_seconds the token verifies and passes /v1/check", async () => {
    const room = await seatRoom({ session_seconds: 2, renew_on_heartbeat: true });
    const ticket = await admitted(room);
    const first = claimResponse.parse(await (await claim(ticket)).json());
    expect(Date.parse(first.admission_expires_at)).toBeLessThanOrEqual(Date.parse(first.expires_at));
    // Heartbeats keep the seat (2 s each) until it has outlived the original one.
    let beat = await heartbeat(ticket);
    while (Date.now() <= Date.parse(first.expires_at) + 500) {
      await sleep(250); // pacing, well inside the 2 s a heartbeat grants
      beat = await heartbeat(ticket);
    }
    expect(beat).toMatchObject({ status: "active", admission_token: expect.any(String) });
    const token = beat.admission_token ?? "";
    const { payload } = await jwtVerify(token, await jwks(), { issuer: "waitroom" });
    expect((payload.exp ?? 0) * 1000).toBeGreaterThan(Date.parse(first.expires_at));
    expect(payload.exp).toBe(Date.parse(beat.admission_expires_at ?? "") / 1000);
    expect((await check(token)).status).toBe(200);
    // The claim's own token has expired meanwhile (it lived as long as the seat then did): refused.
    const stale = await check(first.admission_token);
    expect(stale.status).toBe(410);
    expect(((await stale.json()) as { error: { code: string } }).error.code).toBe("expired");
  });

  it("are not handed out by heartbeats of a ticket that holds no seat", async () => {
    const room = await seatRoom({ capacity: 0 });
    const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" });
    const queued = joinResponse.parse(await response.json());
    const beat = await heartbeat(queued);
    expect(beat.status).toBe("queued");
    expect(beat.admission_token).toBeUndefined();
  });
});

describe("signing keys", () => {
  const admin = (path: string, method = "POST") => server.request(path, { method, token: ADMIN_KEY });

  it("a rotated key is in the JWKS before any token signed by it exists", async () => {
    const room = await seatRoom();
    const ticket = await admitted(room);
    const before = claimResponse.parse(await (await claim(ticket)).json());
    const oldKid = decodeProtectedHeader(before.admission_token).kid;
    const staged = (await (await admin("/v1/keys/rotate")).json()) as { kid: string; activates_at: string };
    const listedAt = Date.now();
    const listed = async () =>
      (
        (await (await server.request("/.well-known/jwks.json")).json()) as {
          keys: Array<{ kid: string }>;
        }
      ).keys.map((key) => key.kid);
    expect(await listed()).toEqual([oldKid, staged.kid]);

    // Retried claims sign with the old key until the staged one's time has come.
    const signed = await eventually(async () => {
      const seat = claimResponse.parse(await (await claim(ticket)).json());
      return decodeProtectedHeader(seat.admission_token).kid === staged.kid && seat;
    }, "claims are signed by the staged key");
    expect(listedAt).toBeLessThan(Date.parse(staged.activates_at));
    expect((decodeJwt(signed.admission_token).iat ?? 0) * 1000).toBeGreaterThanOrEqual(
      Math.floor(Date.parse(staged.activates_at) / 1000) * 1000,
    );
    expect((await check(signed.admission_token)).status).toBe(200);
    expect((await check(before.admission_token)).status).toBe(200);
    expect((await listed())[0]).toBe(staged.kid);
  });

  it("a revoked key's tokens fail /v1/check at once, and the JWKS drops it", async () => {
    const room = await seatRoom();
    const ticket = await admitted(room);
    const seat = claimResponse.parse(await (await claim(ticket)).json());
    const kid = decodeProtectedHeader(seat.admission_token).kid ?? "";
    expect((await check(seat.admission_token)).status).toBe(200);

    const revoked = await admin(`/v1/keys/${kid}/revoke`);
    expect(revoked.status).toBe(200);
    expect(await revoked.json()).toMatchObject({ kid, state: "revoked" });
    const refused = await check(seat.admission_token);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("invalid_token");
    // Also on a replica whose key cache still holds the key: the database says no.
    const [row] = await db.sql<{ code: string }[]>`
      select code from waitroom.check_admission(${ticket.ticket_id}, 1, ${kid})`;
    expect(row?.code).toBe("key_revoked");
    const keys = ((await (await server.request("/.well-known/jwks.json")).json()) as { keys: Array<{ kid: string }> })
      .keys;
    expect(keys.map((key) => key.kid)).not.toContain(kid);

    // The seat goes on: a retried claim gets a token from another key, which passes.
    const fresh = claimResponse.parse(await (await claim(ticket)).json());
    expect(decodeProtectedHeader(fresh.admission_token).kid).not.toBe(kid);
    expect((await check(fresh.admission_token)).status).toBe(200);

    const unknown = await admin(`/v1/keys/${"A".repeat(43)}/revoke`);
    expect(unknown.status).toBe(404);
    const malformed = await admin("/v1/keys/not-a-kid/revoke");
    expect(malformed.status).toBe(400);
  });
});
