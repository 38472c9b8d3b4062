import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** The Prometheus metrics of one app instance; each instance has its own registry. */
export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: "waitroom_" });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: "waitroom_http_requests_total",
      help: "HTTP requests answered, by route and status.",
      labelNames: ["method", "route", "status"] as const,
      registers,
    }),
    errors: new Counter({
      name: "waitroom_http_errors_total",
      help: "Error responses, by error code.",
      labelNames: ["code"] as const,
      registers,
    }),
    undocumentedErrors: new Counter({
      name: "waitroom_http_undocumented_errors_total",
      help: "Error codes a route answered without documenting them in /openapi.json (a bug), by route and code.",
      labelNames: ["route", "code"] as const,
      registers,
    }),
    rateLimited: new Counter({
      name: "waitroom_rate_limited_total",
      help: "Requests refused with 429 rate_limited, by the bucket they drew from.",
      labelNames: ["bucket"] as const,
      registers,
    }),
    joins: new Counter({ name: "waitroom_joins_total", help: "Tickets created or re-joined over HTTP.", registers }),
    claims: new Counter({ name: "waitroom_claims_total", help: "Seats claimed over HTTP.", registers }),
    gateRenewals: new Counter({
      name: "waitroom_gate_renewals_total",
      help: "Admission cookies past half their life the gate renewed, by outcome: renewed, gone (cleared: the seat is over), failed or timed_out (the database; the still-valid token let through).",
      labelNames: ["outcome"] as const,
      registers,
    }),
    events: new Counter({
      name: "waitroom_events_received_total",
      help: "Ledger events received over LISTEN/NOTIFY, by type (admitted = admissions seen by this process).",
      labelNames: ["type"] as const,
      registers,
    }),
    streams: new Gauge({ name: "waitroom_sse_streams", help: "Open event streams.", registers }),
    streamsDropped: new Counter({
      name: "waitroom_sse_streams_dropped_total",
      help: "Event streams closed because the client read too slowly.",
      registers,
    }),
    streamsRecycled: new Counter({
      name: "waitroom_sse_streams_recycled_total",
      help: "Event streams ended at their age (WAITROOM_STREAM_MAX_AGE_MS) for the client to reconnect.",
      registers,
    }),
    notifyChunks: new Counter({
      name: "waitroom_notify_chunks_total",
      help: "NOTIFY payloads (chunks) received.",
      registers,
    }),
    notifyIncomplete: new Counter({
      name: "waitroom_notify_incomplete_total",
      help: "NOTIFY messages given up with chunks missing (replayed from the events table).",
      registers,
    }),
    notifyRejected: new Counter({
      name: "waitroom_notify_rejected_total",
      help: "NOTIFY payloads or messages ignored as malformed: not our framing, or naming no valid ledger ids (forged, most likely).",
      registers,
    }),
    listenPingTimeouts: new Counter({
      name: "waitroom_listen_ping_timeouts_total",
      help: "Times the LISTEN connection did not answer a ping (or a connection attempt) in time and was replaced.",
      registers,
    }),
    listenReconnects: new Counter({
      name: "waitroom_listen_reconnects_total",
      help: "Times the LISTEN connection was re-established after a loss.",
      registers,
    }),
    batchSize: new Histogram({
      name: "waitroom_batch_size",
      help: "Calls sent to the database in one statement: joins per join_many, stream opens and ticket reads per ticket_states.",
      labelNames: ["kind"] as const,
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      registers,
    }),
    positionQueries: new Counter({
      name: "waitroom_position_queries_total",
      help: "waitroom.positions reads run to update subscribers (one per room and change, one per slice of 5,000 streams) and to open streams (one per batch of opens).",
      registers,
    }),
    positionReadsDropped: new Counter({
      name: "waitroom_position_reads_dropped_total",
      help: "Room re-reads whose states were not shown because something was announced while they ran and the room was read again at once.",
      registers,
    }),
  };
}
