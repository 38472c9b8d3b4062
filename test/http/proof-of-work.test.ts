import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, SERVER_KEY, type TestServer, useTestServer } from "../helpers/http.js";
import { challengeOf, solve, unsolved } from "../helpers/proof-of-work.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * Proof of work for anonymous joins, against the real service: a room with proof_of_work_bits
 * refuses anonymous joins without a solved challenge of its own (each refusal with its code,
 * nothing written); server-key joins are exempt; a room without it joins as before.
 */

const db = useTestDatabase();
const server = useTestServer(db);
/** Another replica of the same deployment (same database). */
const replica = useTestServer(db);

type Answer = { status: number; code: string | undefined };

async function createRoom(settings: Record<string, unknown> = {}): Promise<string> {
  const id = uniqueRoomId("pow");
  const response = await server.request(`/v1/rooms/${id}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 0, idle_seconds: 3600, ...settings },
  });
  expect(response.status).toBe(201);
  return id;
}

async function join(room: string, body: unknown = undefined, on: TestServer = server, token?: string): Promise<Answer> {
  const response = await on.request(`/v1/rooms/${room}/tickets`, { method: "POST", body, token });
  const answer = (await response.json()) as { error?: { code: string } };
  return { status: response.status, code: answer.error?.code };
}

const tickets = async (room: string) =>
  Number((await db.sql<{ n: string }[]>`select count(*) as n from waitroom.tickets where room_id = ${room}`)[0]?.n);

/** A solved challenge of `room`, as a join's body. */
async function solved(room: string, on: TestServer = server) {
  const { challenge, bits } = await challengeOf(on, room);
  return { proof_of_work: { challenge, nonce: solve(challenge, bits) } };
}

describe("a room without proof of work", () => {
  it("takes anonymous joins without a proof; its challenge asks for 0 bits, and a join may still bring one", async () => {
    const room = await createRoom();
    expect(await join(room)).toEqual({ status: 202, code: undefined });
    const challenge = await challengeOf(server, room);
    expect(challenge).toEqual({ challenge: expect.any(String), bits: 0, expires_at: expect.any(String) });
    expect(await join(room, await solved(room))).toEqual({ status: 202, code: undefined });
    expect(await tickets(room)).toBe(2);
  });
});

describe("a room with proof of work", () => {
  it("shows its difficulty, refuses a join without a solution and takes one with", async () => {
    const room = await createRoom({ proof_of_work_bits: 8 });
    const listed = await server.request(`/v1/rooms/${room}`, { token: ADMIN_KEY });
    expect(((await listed.json()) as { proof_of_work_bits: number }).proof_of_work_bits).toBe(8);
    expect(await join(room)).toEqual({ status: 428, code: "proof_required" });
    expect(await join(room, {})).toEqual({ status: 428, code: "proof_required" });
    expect(await tickets(room)).toBe(0);
    const { challenge, bits, expires_at } = await challengeOf(server, room);
    expect(bits).toBe(8);
    expect(new Date(expires_at).getTime()).toBeGreaterThan(Date.now());
    expect(await join(room, { proof_of_work: { challenge, nonce: solve(challenge, bits) } })).toEqual({
      status: 202,
      code: undefined,
    });
    expect(await tickets(room)).toBe(1);
  });

  it("refuses a wrong nonce, a replayed solution and another room's challenge, writing nothing", async () => {
    const room = await createRoom({ proof_of_work_bits: 8 });
    const other = await createRoom({ proof_of_work_bits: 8 });
    const { challenge } = await challengeOf(server, room);
    expect(await join(room, { proof_of_work: { challenge, nonce: unsolved(challenge, 8) } })).toEqual({
      status: 403,
      code: "proof_invalid",
    });
    const proof = { proof_of_work: { challenge, nonce: solve(challenge, 8) } };
    expect(await join(other, proof)).toEqual({ status: 403, code: "wrong_room" });
    // Refusals do not spend the challenge: the room it is for still takes it, once.
    expect(await join(room, proof)).toEqual({ status: 202, code: undefined });
    expect(await join(room, proof)).toEqual({ status: 409, code: "proof_replayed" });
    expect(await tickets(room)).toBe(1);
    expect(await tickets(other)).toBe(0);
  });

  it("holds a challenge to the difficulty the room asks at the join, not when it was issued", async () => {
    const room = await createRoom({ proof_of_work_bits: 4 });
    const weak = await solved(room);
    const configure = (bits: number | null) =>
      server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: { proof_of_work_bits: bits } });
    expect((await configure(12)).status).toBe(200);
    expect(await join(room, weak)).toEqual({ status: 428, code: "proof_required" });
    expect(await join(room, await solved(room))).toEqual({ status: 202, code: undefined });
    expect((await configure(null)).status).toBe(200);
    expect(await join(room)).toEqual({ status: 202, code: undefined });
    expect(await tickets(room)).toBe(2);
  });

  it("does not ask the server key's joins for one", async () => {
    const room = await createRoom({ proof_of_work_bits: 24 });
    expect(await join(room, undefined, server, SERVER_KEY)).toEqual({ status: 202, code: undefined });
    expect(await join(room, { holder: "ada" }, server, SERVER_KEY)).toEqual({ status: 202, code: undefined });
    expect(await tickets(room)).toBe(2);
  });

  it("sorts joins arriving together: the solved ones queue, the others are refused", async () => {
    const room = await createRoom({ proof_of_work_bits: 8 });
    const proofs = await Promise.all(Array.from({ length: 20 }, () => solved(room)));
    const answers = await Promise.all([
      ...proofs.map((proof) => join(room, proof)),
      ...Array.from({ length: 20 }, () => join(room)),
      join(room, undefined, server, SERVER_KEY),
    ]);
    expect(answers.slice(0, 20)).toEqual(Array(20).fill({ status: 202, code: undefined }));
    expect(answers.slice(20, 40)).toEqual(Array(20).fill({ status: 428, code: "proof_required" }));
    expect(answers[40]).toEqual({ status: 202, code: undefined });
    expect(await tickets(room)).toBe(21);
  });

  it("takes a challenge issued by another replica: every replica signs with the database's key", async () => {
    const room = await createRoom({ proof_of_work_bits: 8 });
    expect(await join(room, await solved(room, replica), server)).toEqual({ status: 202, code: undefined });
    expect(await join(room, await solved(room, server), replica)).toEqual({ status: 202, code: undefined });
    expect(await tickets(room)).toBe(2);
  });
});
