import { expect } from "vitest";
import { workOf } from "../../src/http/proof-of-work.js";
import type { TestServer } from "./http.js";

/*
 * Proof of work from a test's side: the room's challenge, and nonces that do and do not solve it
 * (by the service's own measure of the work).
 */

export type Challenge = { challenge: string; bits: number; expires_at: string };

export async function challengeOf(server: TestServer, room: string): Promise<Challenge> {
  const response = await server.request(`/v1/rooms/${room}/challenge`);
  expect(response.status).toBe(200);
  return (await response.json()) as Challenge;
}

/** The first nonce (base 36 counter) whose work meets `bits`, or, with `solving` false, falls short of it. */
function firstNonce(challenge: string, bits: number, solving: boolean): string {
  for (let n = 0; ; n++) {
    const nonce = n.toString(36);
    if (workOf(challenge, nonce) >= bits === solving) return nonce;
  }
}

export const solve = (challenge: string, bits: number) => firstNonce(challenge, bits, true);
export const unsolved = (challenge: string, bits: number) => firstNonce(challenge, bits, false);
