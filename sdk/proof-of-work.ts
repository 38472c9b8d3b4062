import type { ChallengeResponse } from "./types.js";

/*
 * Solving a room's proof-of-work challenge with WebCrypto (Node 20 and browsers; a browser needs a
 * secure context, https or localhost): the first nonce such that SHA-256("<challenge>:<nonce>")
 * starts with `bits` zero bits. Hashes are asked for in rounds, many at once, since each digest
 * is a promise.
 */

/** Digests asked for at once. */
const ROUND = 256;

/** Leading zero bits of a digest. */
export function leadingZeroBits(digest: Uint8Array): number {
  let bits = 0;
  for (const byte of digest) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

/** A nonce that solves the challenge (base 36 counter); rejects when `signal` aborts. */
export async function solveChallenge({ challenge, bits }: ChallengeResponse, signal?: AbortSignal): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("proof of work needs WebCrypto (crypto.subtle): a secure context (https or localhost)");
  const encoder = new TextEncoder();
  for (let start = 0; ; start += ROUND) {
    signal?.throwIfAborted();
    const nonces = Array.from({ length: ROUND }, (_, i) => (start + i).toString(36));
    const digests = await Promise.all(
      nonces.map((nonce) => subtle.digest("SHA-256", encoder.encode(`${challenge}:${nonce}`))),
    );
    const found = digests.findIndex((digest) => leadingZeroBits(new Uint8Array(digest)) >= bits);
    if (found >= 0) return nonces[found] as string;
  }
}
