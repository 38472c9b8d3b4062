import type { Context } from "hono";
import { Hono } from "hono";
import type { MetricsSettings } from "../config/index.js";
import type { Metrics } from "../metrics.js";
import { ApiError, errorResponse } from "./errors.js";
import { sameSecret } from "./secret.js";

/*
 * /metrics names rooms, counts and error codes: worth keeping from the public. With
 * WAITROOM_METRICS_KEY it asks for a bearer key; with WAITROOM_METRICS_PORT it is served on a port
 * of its own (for the scraper's network only) and the main port answers not_found.
 */

/** The /metrics handler; `onOwnPort` says whether this app is the metrics port's. */
export function metricsHandler(metrics: Metrics, settings: MetricsSettings, onOwnPort: boolean) {
  return async (c: Context) => {
    if (settings.port !== undefined && !onOwnPort) {
      throw new ApiError("not_found", "metrics are served on their own port (WAITROOM_METRICS_PORT)");
    }
    if (settings.key !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
      if (!match?.[1] || !sameSecret(match[1], settings.key)) {
        throw new ApiError("unauthorized", "the metrics key is required (Authorization: Bearer <key>)");
      }
    }
    c.header("content-type", metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  };
}

/** The app of the metrics port: /metrics and nothing else, errors in the one envelope. */
export function createMetricsApp(metrics: Metrics, settings: MetricsSettings): Hono {
  const app = new Hono();
  app.get("/metrics", metricsHandler(metrics, settings, true));
  app.notFound((c) => errorResponse(c, new ApiError("not_found", `no route ${c.req.method} ${c.req.path}`)));
  app.onError((error, c) =>
    errorResponse(c, error instanceof ApiError ? error : new ApiError("internal", "internal error")),
  );
  return app;
}
