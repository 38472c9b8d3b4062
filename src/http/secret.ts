import { createHash, timingSafeEqual } from "node:crypto";

/** Compare secrets in constant time (hashed first, so lengths do not leak either). */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHash("sha256").update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
