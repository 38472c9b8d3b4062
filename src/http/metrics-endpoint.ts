import type { Context } from "hono";
import { Hono } from "hono";
import type { MetricsSettings } from "../config/index.js";
import type { Metrics } from "../metrics.js";
import { sameSecret } from "./credentials.js";
import { ApiError, errorAnswer } from "./errors.js";
import { checkKey, type Limiter } from "./limits.js";
import type { AppEnv } from "./route.js";

/*
 * /metrics names rooms, counts and error codes: worth keeping from the public. With
 * WAITROOM_METRICS_KEY it asks for a bearer key; with WAITROOM_METRICS_PORT it is served on a port
 * of its own (for the scraper's network only) and the main port answers not_found.
 */

/**
 * Throws unless this request may read the metrics here; `onOwnPort`: asked on the metrics port. A
 * wrong key is throttled by `limiter` like the admin key.
 */
export function authorizeMetrics(
  c: Context<AppEnv>,
  settings: MetricsSettings,
  onOwnPort: boolean,
  limiter: Limiter | undefined,
): void {
  if (settings.port !== undefined && !onOwnPort) {
    throw new ApiError("not_found", "metrics are served on their own port (WAITROOM_METRICS_PORT)");
  }
  const expected = settings.key;
  if (expected === undefined) return;
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "")?.[1];
  const refusal = new ApiError("unauthorized", "the metrics key is required (Authorization: Bearer <key>)");
  if (!presented) throw refusal;
  checkKey(limiter, c, () => sameSecret(presented, expected), refusal);
}

/** The app of the metrics port: /metrics and nothing else, errors in the one envelope. */
export function createMetricsApp(
  metrics: Metrics,
  settings: MetricsSettings,
  limiter: Limiter | undefined,
): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/metrics", async (c) => {
    authorizeMetrics(c, settings, true, limiter);
    return c.text(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType });
  });
  const answer = (c: Context<AppEnv>, error: ApiError) => {
    const { body, status, headers } = errorAnswer(error);
    return c.body(body, status, headers);
  };
  app.notFound((c) => answer(c, new ApiError("not_found", `no route ${c.req.method} ${c.req.path}`)));
  app.onError((error, c) => answer(c, error instanceof ApiError ? error : new ApiError("internal", "internal error")));
  return app;
}
