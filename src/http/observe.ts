import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { ErrorCode } from "./contracts.js";
import type { ApiError } from "./errors.js";

/* What every door (the framework's routes, the node route) counts and logs of the requests it answers. */

/** Codes every route may answer: a declared body over the limit, an outage, and a bug. */
export const anyRouteErrors: readonly ErrorCode[] = ["payload_too_large", "unavailable", "internal"];

type Observers = { metrics: Metrics; log: Logger };

/** Count an error answer; a code its route does not document is a bug (the tests fail on the counter). */
export function countError(
  { metrics, log }: Observers,
  error: ApiError,
  route: string,
  documented: readonly ErrorCode[] | undefined,
): void {
  metrics.errors.inc({ code: error.code });
  if (documented && !documented.includes(error.code) && !anyRouteErrors.includes(error.code)) {
    metrics.undocumentedErrors.inc({ route, code: error.code });
    log.warn({ route, code: error.code }, "answered an error code the route does not document");
  }
}

/** One count and debug line per request, by its route: never the URL, whose ?token= must stay out of logs. */
export function countRequest(
  { metrics, log }: Observers,
  request: { method: string; route: string; status: number; started: number },
): void {
  const { method, route, status, started } = request;
  metrics.requests.inc({ method, route, status });
  log.debug({ method, route, status, ms: Math.round(performance.now() - started) }, "request");
}
