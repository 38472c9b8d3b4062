import { createHash, timingSafeEqual } from "node:crypto";
import { ApiError } from "./errors.js";

/* The credentials a request presents, read the same way by the framework's routes and the node route. */

/** Compare secrets in constant time (hashed first, so lengths do not leak either). */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHash("sha256").update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The bearer token of an Authorization header (none: undefined; any other form: unauthorized). */
export function bearerOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) throw new ApiError("unauthorized", "Authorization must be 'Bearer <token>'");
  return match[1];
}

/** The ticket's token: the bearer, or (on the stream, for EventSource) ?token=. */
export function ticketTokenOf(authorization: string | undefined, queryToken: string | undefined): string {
  const token = bearerOf(authorization) ?? queryToken;
  if (!token) throw new ApiError("unauthorized", "the ticket's token is required (Authorization: Bearer <token>)");
  // No ticket has such a token (and PostgreSQL text cannot even hold a NUL).
  if (token.length > 256 || token.includes("\u0000"))
    throw new ApiError("not_found", "no ticket with this id and token");
  return token;
}
