import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import type { Logger } from "../log.js";
import { TokenError } from "../tokens/index.js";
import { type ErrorCode, errorCodes } from "./contracts.js";

/** An expected failure: answered with the error envelope and the status of its code. */
export class ApiError extends Error {
  /** When the caller may try again (quota_exceeded: the next share), shown as available_at and Retry-After. */
  readonly availableAt: Date | undefined;
  /** Seconds until a retry may succeed (rate_limited: until the bucket has a token), shown as Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    retry: { availableAt?: Date | undefined; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.availableAt = retry.availableAt;
    this.retryAfterSeconds = retry.retryAfterSeconds;
  }

  get status(): ContentfulStatusCode {
    return errorCodes[this.code] as ContentfulStatusCode;
  }
}

/** An error answer on the wire: the one envelope, and the headers its code calls for. */
export type ErrorAnswer = { status: ContentfulStatusCode; headers: Record<string, string>; body: string };

export function errorAnswer(error: ApiError, now = Date.now()): ErrorAnswer {
  const headers: Record<string, string> = { "content-type": "application/json" };
  const retryAfter =
    error.retryAfterSeconds ??
    (error.availableAt
      ? Math.max(1, Math.ceil((error.availableAt.getTime() - now) / 1000))
      : error.code === "unavailable"
        ? 2
        : undefined);
  if (retryAfter !== undefined) headers["retry-after"] = String(retryAfter);
  // The rest of the body is never read: close, or the client may see a reset instead of this answer.
  if (error.code === "payload_too_large") headers.connection = "close";
  const availableAt = error.availableAt?.toISOString();
  const body = JSON.stringify({
    error: { code: error.code, message: error.message, ...(availableAt ? { available_at: availableAt } : {}) },
  });
  return { status: error.status, headers, body };
}

/** A zod mismatch as invalid_request, naming each problem. */
export function invalid(error: z.ZodError, what: string): ApiError {
  const problems = error.issues.map((issue) => {
    const path = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    return `${path}${issue.message}`;
  });
  return new ApiError("invalid_request", `invalid ${what}: ${problems.join("; ")}`);
}

/** Parse with a zod schema; a mismatch is invalid_request. */
export function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw invalid(result.error, what);
}

/** waitroom._fail codes (SQLSTATE) → API errors; other database errors are not the caller's fault. */
const sqlErrors: Record<string, ErrorCode> = {
  WR400: "invalid_request",
  WR404: "not_found",
  WR503: "room_closed",
  WRFUL: "room_full",
  WRSLD: "sold_out",
  WRQUO: "quota_exceeded",
  WRRET: "return_not_allowed",
  WRPOW: "proof_required",
  // p_now from a role that may not pin the clock: the service never sends one.
  WR403: "forbidden",
};

/** The database is unreachable or going away: an outage to retry after, not a bug. */
function isUnavailable(code: string): boolean {
  return (
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|CONNECTION_(CLOSED|ENDED|DESTROYED)|CONNECT_TIMEOUT)$/.test(code) ||
    // SQLSTATE: connection exceptions, shutdown / cannot connect now, too many connections.
    /^(08...|57P0[123]|53300)$/.test(code)
  );
}

export function fromDatabaseError(error: unknown): ApiError | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return undefined;
  if (isUnavailable(code)) return new ApiError("unavailable", "the database is unavailable; retry shortly");
  const mapped = sqlErrors[code];
  if (!mapped) return undefined;
  // WRQUO carries the time of the next share as its detail (waitroom._check_quota); empty: never.
  const detail = (error as { detail?: unknown }).detail;
  const availableAt =
    mapped === "quota_exceeded" && typeof detail === "string" && detail ? new Date(detail) : undefined;
  return new ApiError(mapped, (error as Error).message, { availableAt });
}

/** Whatever a handler threw, as the API error to answer; anything unexpected is logged and internal. */
export function asApiError(error: unknown, log: Logger, request: { method: string; route: string }): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof TokenError) return new ApiError(error.code, error.message);
  const mapped = fromDatabaseError(error);
  if (mapped) return mapped;
  log.error({ err: error, ...request }, "request failed");
  return new ApiError("internal", "internal error");
}

/** A verdict's code (waitroom.verdict) → the API error that explains it. */
const verdictErrors: Record<string, { code: ErrorCode; message: string }> = {
  unknown: { code: "not_found", message: "no ticket with this id and token" },
  superseded: { code: "superseded", message: "this ticket was re-joined elsewhere; its token is no longer valid" },
  queued: { code: "not_admitted", message: "the ticket is still waiting in the queue" },
  not_claimed: { code: "not_claimed", message: "the ticket was admitted but its seat is not claimed yet" },
  key_revoked: { code: "invalid_token", message: "admission token was signed by a revoked key" },
  draining: { code: "draining", message: "the session is over; its grace period is running out" },
  ended: { code: "ended", message: "the session has ended" },
  expired: { code: "expired", message: "the ticket expired" },
  left: { code: "left", message: "the ticket left the room" },
};

/** Every code a verdict on a ticket or admission token can answer: what a seat check documents. */
export const verdictCodes: readonly ErrorCode[] = [...new Set(Object.values(verdictErrors).map((error) => error.code))];

export function verdictError(code: string): ApiError {
  const known = verdictErrors[code];
  return known ? new ApiError(known.code, known.message) : new ApiError("internal", `unexpected verdict ${code}`);
}
