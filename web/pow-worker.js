/*
 * The waiting-room page's proof of work, off the main thread: given a room's
 * challenge and its bits, find a nonce (a base-36 counter) such that
 * SHA-256("<challenge>:<nonce>") starts with that many zero bits, and post
 * it back. WebCrypto needs a secure context (https, or localhost).
 */

/** Digests asked for at once: each is a promise. */
const ROUND = 256;

function leadingZeroBits(bytes) {
  let bits = 0;
  for (const byte of bytes) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

self.onmessage = async ({ data: { challenge, bits } }) => {
  try {
    const encoder = new TextEncoder();
    for (let start = 0; ; start += ROUND) {
      const nonces = Array.from({ length: ROUND }, (_, i) => (start + i).toString(36));
      const digests = await Promise.all(
        nonces.map((nonce) => crypto.subtle.digest("SHA-256", encoder.encode(`${challenge}:${nonce}`))),
      );
      const found = digests.findIndex((digest) => leadingZeroBits(new Uint8Array(digest)) >= bits);
      if (found >= 0) {
        self.postMessage({ nonce: nonces[found] });
        return;
      }
    }
  } catch (error) {
    self.postMessage({ error: String(error) });
  }
};
