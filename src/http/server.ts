import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { createAdaptorServer, getRequestListener } from "@hono/node-server";
import type { Hono } from "hono";
import type { Config } from "../config/index.js";
import { connectSql, type Sql } from "../db/client.js";
import { Hub } from "../events/hub.js";
import { type Listener, startListener } from "../events/listener.js";
import { roomsFeed } from "../events/rooms-feed.js";
import type { Logger } from "../log.js";
import { createMetrics } from "../metrics.js";
import { createGroupedQueue } from "../queue/grouped.js";
import { noticeEvents, proofOfWorkSecret, streamEventTypes } from "../queue/index.js";
import { createTokenIssuer } from "../tokens/index.js";
import { type AppEnv, createApp } from "./app.js";
import { createLimiter } from "./limits.js";
import { createMetricsApp } from "./metrics-endpoint.js";
import { ProofOfWork } from "./proof-of-work.js";

export type HttpService = {
  /** http://host:port of the listening server. */
  url: string;
  /** http://host:port of the metrics port, when WAITROOM_METRICS_PORT is set. */
  metricsUrl: string | undefined;
  app: Hono<AppEnv>;
  /** The service's connection pool (diagnostics and tests). */
  sql: Sql;
  hub: Hub;
  listener: Listener;
  /** Stop accepting, tell streams to reconnect elsewhere, drain, close the database connections. */
  close(): Promise<void>;
};

type HttpConfig = Pick<
  Config,
  | "port"
  | "host"
  | "listenBacklog"
  | "adminKey"
  | "serverKey"
  | "bodyLimitBytes"
  | "stream"
  | "grouping"
  | "tokens"
  | "shutdownTimeoutMs"
  | "sessionTimeouts"
  | "listen"
  | "metrics"
  | "limits"
  | "gate"
>;

/** Listen, or reject (port in use, say) instead of crashing on an unhandled 'error' event. */
function listen(server: Server, port: number, host: string, backlog: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once("error", onError);
    server.listen({ port, host, backlog }, () => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Let requests in flight finish for up to drainMs, then cut what is left. */
function closeServer(server: Server, drainMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const cut = setTimeout(() => {
      log.warn({ drainMs }, "closing connections still open after the drain period");
      server.closeAllConnections();
    }, drainMs);
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * Requests Node cannot even parse (headers over its 16 KB limit, broken framing) get the error
 * envelope too, instead of Node's bare status line.
 */
function answerUnparsable(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || error.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  const tooLarge = error.code === "HPE_HEADER_OVERFLOW";
  const [status, reason] = tooLarge ? [431, "Request Header Fields Too Large"] : [400, "Bad Request"];
  const body = JSON.stringify({
    error: tooLarge
      ? { code: "headers_too_large", message: "the request headers exceed 16 KB" }
      : { code: "invalid_request", message: "the request is not valid HTTP/1.1" },
  });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** The HTTP API with its LISTEN connection and stream hub, listening on config.port. */
export async function startHttp(options: {
  databaseUrl: string;
  config: HttpConfig;
  log: Logger;
  /** Also export process metrics (memory, CPU, event loop); once per process. */
  processMetrics?: boolean;
}): Promise<HttpService> {
  const { databaseUrl, config, log } = options;
  const sql = await connectSql(databaseUrl, { timeouts: config.sessionTimeouts });
  const metrics = createMetrics({ processMetrics: options.processMetrics });
  const grouped = createGroupedQueue(sql, config.grouping, (kind, size) => {
    metrics.batchSize.observe({ kind }, size);
    if (kind === "read") metrics.positionQueries.inc();
  });
  const hub = new Hub({
    sql,
    log,
    metrics,
    settings: config.stream,
    readState: grouped.tokenState,
    streamEvents: await streamEventTypes(sql),
  });
  const listener = startListener({
    databaseUrl,
    log,
    metrics,
    onEvents: (events) => hub.deliver(events),
    readNotice: (ranges) => noticeEvents(sql, ranges),
    onGap: (since) => hub.replay(since),
    pingMs: config.listen.pingMs,
    pingTimeoutMs: config.listen.pingTimeoutMs,
    timeouts: config.sessionTimeouts,
  });
  const rooms = roomsFeed(sql);
  const tokens = createTokenIssuer({ sql, log, timings: config.tokens });
  const limiter = createLimiter(config.limits, metrics);
  const { app, nodeRoutes } = createApp({
    sql,
    grouped,
    hub,
    rooms,
    tokens,
    metrics,
    log,
    listener,
    limiter,
    proofOfWork: new ProofOfWork(() => proofOfWorkSecret(sql)),
    settings: {
      adminKey: config.adminKey,
      serverKey: config.serverKey,
      bodyLimitBytes: config.bodyLimitBytes,
      streamBufferBytes: config.stream.bufferBytes,
      metrics: config.metrics,
      jwksMaxAgeSeconds: config.tokens.jwksMaxAgeSeconds,
      limits: config.limits,
      gate: config.gate,
    },
  });
  const framework = getRequestListener(app.fetch, { hostname: config.host });
  const server = createServer((incoming, outgoing) => {
    // The routes served on Node's request come first (node-route.ts); the framework answers the rest.
    if (!nodeRoutes.some((serve) => serve(incoming, outgoing))) void framework(incoming, outgoing);
  });
  server.on("clientError", answerUnparsable);
  const metricsServer =
    config.metrics.port === undefined
      ? undefined
      : (createAdaptorServer({
          fetch: createMetricsApp(metrics, config.metrics, limiter).fetch,
          hostname: config.host,
        }) as Server);
  const release = async () => {
    await listener.close();
    await sql.end({ timeout: Math.max(1, Math.floor(config.shutdownTimeoutMs / 4000)) });
  };
  const urlOf = (address: AddressInfo) =>
    `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
  let url: string;
  let metricsUrl: string | undefined;
  try {
    url = urlOf(await listen(server, config.port, config.host, config.listenBacklog));
    if (metricsServer && config.metrics.port !== undefined) {
      metricsUrl = urlOf(await listen(metricsServer, config.metrics.port, config.host, 511));
    }
  } catch (error) {
    hub.close();
    if (server.listening) server.close();
    rooms.close();
    await release();
    throw error;
  }
  return {
    url,
    metricsUrl,
    app,
    sql,
    hub,
    listener,
    async close() {
      const drainMs = Math.floor(config.shutdownTimeoutMs / 2);
      const drained = Promise.all([
        closeServer(server, drainMs, log),
        metricsServer ? closeServer(metricsServer, drainMs, log) : undefined,
      ]);
      hub.close();
      rooms.close();
      await drained;
      await release();
    },
  };
}
