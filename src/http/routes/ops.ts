import { z } from "@hono/zod-openapi";
import type { MetricsSettings } from "../../config/index.js";
import type { Sql } from "../../db/client.js";
import type { Metrics } from "../../metrics.js";
import { ApiError } from "../errors.js";
import type { Limiter } from "../limits.js";
import { authorizeMetrics } from "../metrics-endpoint.js";
import type { OpenApiDocument } from "../openapi.js";
import { defineRoute, type Router } from "../route.js";

/*
 * For operators and their machines: liveness, readiness, metrics, and this API's own description.
 */

const status = (value: string) => ({
  content: { "application/json": { schema: z.object({ status: z.literal(value) }) } },
});

export const healthRoute = defineRoute({
  method: "get",
  path: "/healthz",
  summary: "Liveness",
  description: "The process answers.",
  tags: ["operations"],
  responses: { 200: { description: "Up.", ...status("ok") } },
  errors: [],
});

export const readyRoute = defineRoute({
  method: "get",
  path: "/readyz",
  summary: "Readiness",
  description: "The database answers and the LISTEN connection is in place.",
  tags: ["operations"],
  responses: { 200: { description: "Ready.", ...status("ready") } },
  errors: ["not_ready"],
});

export const metricsRoute = defineRoute({
  method: "get",
  path: "/metrics",
  summary: "Prometheus metrics",
  description:
    "Requests, errors, joins, claims, streams, batches, NOTIFY traffic and the process. Requires the bearer key " +
    "WAITROOM_METRICS_KEY when set; not_found here when served on WAITROOM_METRICS_PORT instead.",
  tags: ["operations"],
  responses: {
    200: { description: "Metrics in the Prometheus text format.", content: { "text/plain": { schema: z.string() } } },
  },
  errors: ["unauthorized", "not_found", "rate_limited"],
});

export const openApiRoute = defineRoute({
  method: "get",
  path: "/openapi.json",
  summary: "This API's description",
  description: "OpenAPI 3.1, generated from the same definitions that validate requests.",
  tags: ["operations"],
  responses: {
    200: {
      description: "The OpenAPI document.",
      content: { "application/json": { schema: z.record(z.string(), z.unknown()) } },
    },
  },
  errors: [],
});

export type OpsDeps = {
  sql: Sql;
  metrics: Metrics;
  /** The LISTEN connection. */
  listener: { readonly connected: boolean };
  /** The OpenAPI document of the whole app. */
  document: () => OpenApiDocument;
  /** Who may read /metrics, and on which port. */
  metricsAccess: MetricsSettings;
  /** Throttles wrong metrics keys; absent: limits are off. */
  limiter: Limiter | undefined;
};

export function mountOps({ mount }: Router, deps: OpsDeps): void {
  const { sql, metrics, listener } = deps;

  mount(healthRoute, (c) => c.json({ status: "ok" as const }, 200));

  mount(readyRoute, async (c) => {
    if (!listener.connected) throw new ApiError("not_ready", "the LISTEN connection is not established");
    try {
      await sql`select 1`;
    } catch {
      throw new ApiError("not_ready", "the database is unreachable");
    }
    return c.json({ status: "ready" as const }, 200);
  });

  mount(metricsRoute, async (c) => {
    authorizeMetrics(c, deps.metricsAccess, false, deps.limiter);
    return c.text(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType });
  });

  mount(openApiRoute, (c) => c.json(deps.document(), 200));
}
