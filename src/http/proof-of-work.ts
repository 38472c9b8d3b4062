import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { roomIdPattern } from "../queue/rooms.js";
import { ApiError } from "./errors.js";

/*
 * Proof of work for anonymous joins (docs/operations.md, "Proof of work"). The service hands out a
 * challenge it signed: `<room>.<bits>.<expires, Unix seconds>.<id>.<HMAC-SHA256>`. The client finds
 * a nonce such that SHA-256("<challenge>:<nonce>") starts with `bits` zero bits, and joins with both.
 * Checking that costs one HMAC and one hash in the process, no database round trip: join_many then
 * compares the bits shown with what the room asks as of its statement.
 *
 * Single use is remembered per replica (a challenge id is accepted once per process until it
 * expires); the key is the database's, so every replica accepts what any replica issued.
 */

/** How long a challenge may be used: enough to solve the hardest one on a slow phone, short for replays. */
export const CHALLENGE_SECONDS = 120;

const challengePattern = new RegExp(
  `^(${roomIdPattern})\\.(\\d{1,2})\\.(\\d{1,12})\\.([A-Za-z0-9_-]{22})\\.([A-Za-z0-9_-]{43})$`,
);

export type Proof = { challenge: string; nonce: string };

export type Challenge = { challenge: string; bits: number; expires_at: string };

/** The fields of a challenge; `expires` in Unix seconds. */
export type ChallengeFields = { room: string; bits: number; expires: number; id: string };

const mac = (secret: Buffer, payload: string) =>
  createHmac("sha256", secret).update(`waitroom-pow:${payload}`).digest();

/** A challenge string for these fields, signed with `secret`. */
export function signChallenge(secret: Buffer, { room, bits, expires, id }: ChallengeFields): string {
  const payload = `${room}.${bits}.${expires}.${id}`;
  return `${payload}.${mac(secret, payload).toString("base64url")}`;
}

/** Leading zero bits of SHA-256("<challenge>:<nonce>"): the work a solution shows. */
export function workOf(challenge: string, nonce: string): number {
  const digest = createHash("sha256").update(`${challenge}:${nonce}`).digest();
  let bits = 0;
  for (const byte of digest) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

export class ProofOfWork {
  readonly #loadSecret: () => Promise<Buffer>;
  readonly #now: () => number;
  #secret: Promise<Buffer> | undefined;
  /** Challenge ids accepted by this process, in the order accepted, with when they expire (ms). */
  readonly #spent = new Map<string, number>();

  /** `loadSecret` is asked once (again only after it failed); `now` in ms. */
  constructor(loadSecret: () => Promise<Buffer>, now: () => number = Date.now) {
    this.#loadSecret = loadSecret;
    this.#now = now;
  }

  #key(): Promise<Buffer> {
    this.#secret ??= this.#loadSecret().catch((error: unknown) => {
      this.#secret = undefined;
      throw error;
    });
    return this.#secret;
  }

  /** A fresh challenge for `room` at `bits` (0: any nonce solves it). */
  async issue(room: string, bits: number): Promise<Challenge> {
    const expires = Math.ceil(this.#now() / 1000) + CHALLENGE_SECONDS;
    const id = randomBytes(16).toString("base64url");
    return {
      challenge: signChallenge(await this.#key(), { room, bits, expires, id }),
      bits,
      expires_at: new Date(expires * 1000).toISOString(),
    };
  }

  /**
   * The bits a join's proof shows, once it is known to be a challenge this service issued for
   * `room`, not expired, solved, and not used before in this process; else the error that says which.
   */
  async verify(room: string, { challenge, nonce }: Proof): Promise<number> {
    const secret = await this.#key();
    const fields = challengePattern.exec(challenge);
    const [, forRoom = "", bits = "", expires = "", id = "", signature = ""] = fields ?? [];
    const given = Buffer.from(signature, "base64url");
    const expected = mac(secret, challenge.slice(0, challenge.length - signature.length - 1));
    // Both 32 bytes once the pattern matched: the comparison takes the same time wherever they differ.
    if (!fields || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ApiError("proof_invalid", "proof_of_work.challenge is not a challenge this service issued");
    }
    if (forRoom !== room) {
      throw new ApiError("wrong_room", `the challenge is for room '${forRoom}', not '${room}'`);
    }
    const now = this.#now();
    if (Number(expires) * 1000 <= now) {
      throw new ApiError("proof_expired", "the challenge has expired: fetch a new one");
    }
    if (workOf(challenge, nonce) < Number(bits)) {
      throw new ApiError("proof_invalid", `the nonce does not solve the challenge (${bits} leading zero bits)`);
    }
    this.#forgetExpired(now);
    if (this.#spent.has(id)) {
      throw new ApiError("proof_replayed", "this challenge was used already: fetch a new one");
    }
    this.#spent.set(id, Number(expires) * 1000);
    return Number(bits);
  }

  /** Ids are accepted about in the order they expire: forget from the oldest while they have. */
  #forgetExpired(now: number): void {
    for (const [id, expires] of this.#spent) {
      if (expires > now) return;
      this.#spent.delete(id);
    }
  }
}
