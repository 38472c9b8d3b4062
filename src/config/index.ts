import { BlockList, isIP } from "node:net";
import { resolve } from "node:path";
import { z } from "zod";
import { roomIdPattern } from "../queue/rooms.js";
import type { TokenTimings } from "../tokens/index.js";

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** A whole number written in plain digits: "1e3", "0x50", " 80" and "8080.0" are mistakes, not ports. */
const integer = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const port = integer(0, 65535);

function isPostgresUrl(value: string): boolean {
  try {
    return /^postgres(ql)?:$/.test(new URL(value).protocol);
  } catch {
    return false;
  }
}

// The message never echoes the value: a DATABASE_URL carries a password.
const postgresUrl = z.string().refine(isPostgresUrl, "must be a postgres:// or postgresql:// URL");

/** A shared secret sent as a bearer token: long enough not to be guessed, no whitespace to mangle. */
const key = z
  .string()
  .regex(/^\S+$/, "must not contain whitespace")
  .min(16, "must be at least 16 characters (try: openssl rand -hex 24)");

/** A token bucket: `<count>/<s|min|h>[,burst=<n>]`, e.g. `6/min,burst=10` (the burst defaults to the count). */
const rateLimit = z
  .string()
  .trim()
  .regex(/^\d+\/(s|min|h)(,burst=\d+)?$/, "must be <count>/<s|min|h>[,burst=<n>], e.g. 6/min,burst=10")
  .transform((value): RateLimit => {
    const [, count, unit, burst] = /^(\d+)\/(s|min|h)(?:,burst=(\d+))?$/.exec(value) as unknown as string[];
    const seconds = { s: 1, min: 60, h: 3600 }[unit as "s" | "min" | "h"];
    return { perSecond: Number(count) / seconds, burst: Number(burst ?? count) };
  })
  .refine((limit) => limit.perSecond > 0 && limit.burst >= 1, "count and burst must be at least 1");

/** Comma-separated CIDRs (a bare address is a /32 or /128), as a BlockList to test peers against. */
const cidrList = z.string().transform((value, context): BlockList => {
  const list = new BlockList();
  for (const entry of value.split(",").map((part) => part.trim())) {
    const [address = "", prefix, extra] = entry.split("/");
    const family = isIP(address);
    const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix);
    const wellFormed = family !== 0 && extra === undefined && (prefix === undefined || /^\d+$/.test(prefix));
    if (!wellFormed || bits > (family === 6 ? 128 : 32)) {
      context.addIssue({ code: "custom", message: `${JSON.stringify(entry)} is not an address or CIDR` });
      return z.NEVER;
    }
    list.addSubnet(address, bits, family === 6 ? "ipv6" : "ipv4");
  }
  return list;
});

/** Comma-separated origins (scheme://host[:port]), normalised as browsers send them in Origin. */
const originList = z.string().transform((value, context): string[] =>
  value.split(",").map((entry) => {
    const trimmed = entry.trim();
    try {
      const url = new URL(trimmed);
      if (/^https?:$/.test(url.protocol) && url.origin === trimmed.replace(/\/$/, "").toLowerCase()) return url.origin;
    } catch {}
    context.addIssue({
      code: "custom",
      message: `${JSON.stringify(trimmed)} is not an origin like https://shop.example`,
    });
    return "";
  }),
);

/** Which room guards which part of a protected site: `host[:port][/path]=room`. */
export type GateRoute = { host: string; port: string | undefined; path: string; room: string };

const gateRoutePattern = new RegExp(`^([a-z0-9.-]+)(?::(\\d{1,5}))?(\\/[^\\s=?#]*)?=(${roomIdPattern})$`);

/** Comma-separated `host[:port][/path]=room` entries (docs/integration.md, "The gate"). */
const gateRoutes = z.string().transform((value, context): GateRoute[] =>
  value.split(",").map((entry) => {
    const trimmed = entry.trim();
    const match = gateRoutePattern.exec(trimmed.toLowerCase());
    if (!match) {
      context.addIssue({
        code: "custom",
        message: `${JSON.stringify(trimmed)} is not host[:port][/path]=room, like shop.example.com/checkout=launch`,
      });
      return { host: "", port: undefined, path: "/", room: "" };
    }
    const [, host = "", port, path = "/", room = ""] = match;
    return { host, port, path, room };
  }),
);

/** Environment variables the service reads; unset values take these defaults. */
const environmentSchema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  WAITROOM_MIGRATE_URL: postgresUrl.optional(),
  PORT: port.default(8080),
  HOST: z.string().trim().min(1).default("0.0.0.0"),
  WAITROOM_LISTEN_BACKLOG: integer(1, 65_535).default(65_535),
  WAITROOM_DATA_DIR: z.string().min(1).default(".data"),
  WAITROOM_EMBEDDED_PG_PORT: port.default(54329),
  WAITROOM_SHUTDOWN_TIMEOUT_MS: integer(100, 600_000).default(10_000),
  WAITROOM_WORKER: z.enum(["true", "false"], { error: "must be true or false" }).default("true"),
  WAITROOM_WORKER_CONCURRENCY: integer(1, 100).default(4),
  WAITROOM_SWEEP_INTERVAL_MS: integer(100, 3_600_000).default(5_000),
  WAITROOM_ADMIN_KEY: key.optional(),
  WAITROOM_SERVER_KEY: key.optional(),
  WAITROOM_BODY_LIMIT_BYTES: integer(1024, 1_048_576).default(16_384),
  WAITROOM_KEEPALIVE_MS: integer(1000, 120_000).default(15_000),
  WAITROOM_REFRESH_MS: integer(200, 60_000).default(2_000),
  WAITROOM_PRESENCE_MS: integer(1000, 600_000).default(10_000),
  WAITROOM_STREAM_BUFFER_BYTES: integer(4096, 16_777_216).default(262_144),
  WAITROOM_JOIN_BATCH_MAX: integer(1, 10_000).default(500),
  WAITROOM_READ_BATCH_MAX: integer(1, 10_000).default(1_000),
  WAITROOM_BATCHES_IN_FLIGHT: integer(1, 64).default(2),
  // Hostile traffic (docs/operations.md): how long a peer may stall us, and who may read /metrics.
  WAITROOM_STATEMENT_TIMEOUT_MS: integer(0, 86_400_000).default(30_000),
  WAITROOM_LOCK_TIMEOUT_MS: integer(0, 86_400_000).default(10_000),
  WAITROOM_IDLE_IN_TRANSACTION_TIMEOUT_MS: integer(0, 86_400_000).default(60_000),
  WAITROOM_LISTEN_PING_MS: integer(100, 600_000).default(5_000),
  WAITROOM_LISTEN_PING_TIMEOUT_MS: integer(100, 600_000).default(5_000),
  WAITROOM_METRICS_PORT: port.optional(),
  WAITROOM_METRICS_KEY: key.optional(),
  WAITROOM_STREAM_MAX_AGE_MS: integer(0, 86_400_000).default(300_000),
  WAITROOM_ADMISSION_TOKEN_SECONDS: integer(10, 86_400).default(120),
  WAITROOM_JWKS_MAX_AGE_SECONDS: integer(0, 86_400).default(300),
  WAITROOM_KEY_CACHE_SECONDS: integer(1, 3_600).default(30),
  WAITROOM_STREAMS_PER_TICKET: integer(1, 100).default(2),
  WAITROOM_RATE_LIMITS: z.enum(["on", "off"], { error: "must be on or off" }).default("on"),
  WAITROOM_RATE_LIMIT_JOIN: rateLimit.default({ perSecond: 6 / 60, burst: 10 }),
  WAITROOM_RATE_LIMIT_HOLDER: rateLimit.default({ perSecond: 6 / 60, burst: 5 }),
  WAITROOM_RATE_LIMIT_TICKET: rateLimit.default({ perSecond: 2, burst: 60 }),
  WAITROOM_RATE_LIMIT_STREAM: rateLimit.default({ perSecond: 30 / 60, burst: 20 }),
  WAITROOM_RATE_LIMIT_CHECK: rateLimit.default({ perSecond: 50, burst: 500 }),
  WAITROOM_RATE_LIMIT_KEY_FAILURES: rateLimit.default({ perSecond: 6 / 60, burst: 5 }),
  WAITROOM_REPLICAS: integer(1, 1000).default(1),
  WAITROOM_TRUSTED_PROXIES: cidrList.optional(),
  WAITROOM_ALLOWED_ORIGINS: originList.default([]),
  WAITROOM_GATES: gateRoutes.default([]),
  WAITROOM_GATE_COOKIE_SECURE: z.enum(["true", "false"], { error: "must be true or false" }).default("true"),
  WAITROOM_GATE_RENEWAL_TIMEOUT_MS: integer(10, 60_000).default(1000),
  LOG_LEVEL: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(logLevels, { error: `must be one of ${logLevels.join(", ")}` }))
    .default("info"),
});

export type Config = {
  /** The service's (least-privileged) connection. Unset: an embedded PostgreSQL is started in `dataDir`. */
  databaseUrl: string | undefined;
  /**
   * The owner's connection, for migrations only. Unset: migrate through databaseUrl, which then needs the
   * owner's privileges only when the schema is not current.
   */
  migrateUrl: string | undefined;
  port: number;
  host: string;
  /**
   * Connections the kernel may hold for the service before it accepts them. An opening rush
   * connects thousands at once; Node's default (511) drops the rest's SYNs, and each then waits
   * 1, 3, 7… s to retry. The kernel caps it at net.core.somaxconn.
   */
  listenBacklog: number;
  /** Absolute path; holds the embedded database. */
  dataDir: string;
  embeddedPostgresPort: number;
  /** SIGTERM/SIGINT: drain and stop within this, else exit anyway (code 1). */
  shutdownTimeoutMs: number;
  /** Run the scheduler (graphile-worker) inside `start`; `worker` runs it alone. */
  worker: boolean;
  workerConcurrency: number;
  /** How often waitroom.sweep runs (cron runs it every minute as a safety net too). */
  sweepIntervalMs: number;
  /** Bearer key of the admin endpoints; unset disables them. */
  adminKey: string | undefined;
  /** Bearer key of trusted callers, who may set holder and priority on join; unset: nobody may. */
  serverKey: string | undefined;
  /** Largest accepted request body. */
  bodyLimitBytes: number;
  stream: StreamSettings;
  grouping: GroupingSettings;
  sessionTimeouts: SessionTimeouts;
  listen: ListenSettings;
  metrics: MetricsSettings;
  /** Admission token lifetime and the key caches that staged rotation waits out (src/tokens). */
  tokens: TokenTimings;
  limits: LimitSettings;
  gate: GateSettings;
  logLevel: (typeof logLevels)[number];
};

/** The forward-auth gate (src/http/routes/gate.ts). */
export type GateSettings = {
  /** Which room guards which host and path; the longest matching path wins. */
  routes: readonly GateRoute[];
  /** The admission cookie is Secure (false only for plain-HTTP development). */
  cookieSecure: boolean;
  /** The longest the gate waits for a renewal's database call before letting a still-valid token through. */
  renewalTimeoutMs: number;
};

/** How event streams behave. */
export type StreamSettings = {
  /** A comment line this often keeps proxies from closing idle streams. */
  keepAliveMs: number;
  /** Every this often, subscribers not re-read for half of it are (depth grows without events): states are at most 1.5× this old. */
  refreshMs: number;
  /** Open streams are recorded as presence (last_seen_at) this often, in one statement per process. */
  presenceMs: number;
  /** A client this far behind is disconnected rather than buffered without bound. */
  bufferBytes: number;
  /**
   * A stream is ended (the client reconnects at once and resumes) after a random time between half
   * this and this; 0: never. A client that vanished without closing its connection (no FIN) is
   * otherwise only noticed when TCP gives up, some 15 minutes later, and counts as present until then.
   */
  maxAgeMs: number;
  /** Open streams of one ticket in a replica; a newer one ends the oldest beyond this. */
  perTicket: number;
};

/** A token bucket: refills at perSecond, holds at most burst. */
export type RateLimit = { perSecond: number; burst: number };

/** What each request draws from; docs/operations.md, "Hostile traffic", explains the defaults. */
export type RateBucket = "join" | "holder" | "ticket" | "stream" | "check" | "key";

/** Limits on what one client may do, and how the client and its browser are recognised. */
export type LimitSettings = {
  /** Per-client rate limits, per replica (the deployment's figures divided by `replicas`); off: none. */
  rates: Record<RateBucket, RateLimit> | undefined;
  /** Peers whose X-Forwarded-For (and X-Forwarded-Host) are believed; unset: none. */
  trustedProxies: BlockList | undefined;
  /** Origins besides the service's own from which browsers may join anonymously. */
  allowedOrigins: readonly string[];
};

/** How calls arriving together are grouped into one statement (src/queue/grouped.ts). */
export type GroupingSettings = {
  /** Most joins of one room written by one waitroom.join_many. */
  maxJoinBatch: number;
  /** Most stream opens and ticket reads verified by one waitroom.ticket_states. */
  maxReadBatch: number;
  /** Batches of one kind (per room, for joins) in flight at once; calls arriving meanwhile wait for the next. */
  maxInFlight: number;
};

/*
 * Hostile traffic: timeouts wherever a peer can stall the service, and who may read /metrics.
 */

/**
 * Set on the service's database connections, so no statement, lock wait or forgotten transaction
 * holds a connection for ever; 0 leaves the server's own setting (no limit unless configured there).
 */
export type SessionTimeouts = {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
};

/** The LISTEN connection's liveness check. */
export type ListenSettings = {
  /** A ping this often. */
  pingMs: number;
  /** A ping (or a connection attempt) not answered within this: the connection is dead, /readyz turns red and it is replaced. */
  pingTimeoutMs: number;
};

export type MetricsSettings = {
  /** Serve /metrics on this port only (the main port answers not_found); unset: on the main port. */
  port: number | undefined;
  /** Bearer key /metrics requires; unset: anyone who can reach it may read it. */
  key: string | undefined;
};

/** Variables whose value must never appear in a message or a log. */
const secret: Record<string, true> = {
  DATABASE_URL: true,
  WAITROOM_MIGRATE_URL: true,
  WAITROOM_ADMIN_KEY: true,
  WAITROOM_SERVER_KEY: true,
  WAITROOM_METRICS_KEY: true,
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Validated configuration from the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as in most shells' habits.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ""));
  const parsed = environmentSchema
    // The embedded database migrates as its own superuser: an owner URL without a service URL is a mistake.
    .refine((e) => e.WAITROOM_MIGRATE_URL === undefined || e.DATABASE_URL !== undefined, {
      path: ["WAITROOM_MIGRATE_URL"],
      message: "needs DATABASE_URL (the service's connection); unset, the embedded database is used",
    })
    .safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join(".");
      const shown = name in secret ? "" : ` (got ${JSON.stringify(present[name])})`;
      return `  ${name}: ${issue.message}${shown}`;
    });
    throw new ConfigError(`invalid configuration:\n${problems.join("\n")}`);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    migrateUrl: e.WAITROOM_MIGRATE_URL,
    port: e.PORT,
    host: e.HOST,
    listenBacklog: e.WAITROOM_LISTEN_BACKLOG,
    dataDir: resolve(e.WAITROOM_DATA_DIR),
    embeddedPostgresPort: e.WAITROOM_EMBEDDED_PG_PORT,
    shutdownTimeoutMs: e.WAITROOM_SHUTDOWN_TIMEOUT_MS,
    worker: e.WAITROOM_WORKER === "true",
    workerConcurrency: e.WAITROOM_WORKER_CONCURRENCY,
    sweepIntervalMs: e.WAITROOM_SWEEP_INTERVAL_MS,
    adminKey: e.WAITROOM_ADMIN_KEY,
    serverKey: e.WAITROOM_SERVER_KEY,
    bodyLimitBytes: e.WAITROOM_BODY_LIMIT_BYTES,
    stream: {
      keepAliveMs: e.WAITROOM_KEEPALIVE_MS,
      refreshMs: e.WAITROOM_REFRESH_MS,
      presenceMs: e.WAITROOM_PRESENCE_MS,
      bufferBytes: e.WAITROOM_STREAM_BUFFER_BYTES,
      maxAgeMs: e.WAITROOM_STREAM_MAX_AGE_MS,
      perTicket: e.WAITROOM_STREAMS_PER_TICKET,
    },
    grouping: {
      maxJoinBatch: e.WAITROOM_JOIN_BATCH_MAX,
      maxReadBatch: e.WAITROOM_READ_BATCH_MAX,
      maxInFlight: e.WAITROOM_BATCHES_IN_FLIGHT,
    },
    sessionTimeouts: {
      statementTimeoutMs: e.WAITROOM_STATEMENT_TIMEOUT_MS,
      lockTimeoutMs: e.WAITROOM_LOCK_TIMEOUT_MS,
      idleInTransactionTimeoutMs: e.WAITROOM_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    },
    listen: { pingMs: e.WAITROOM_LISTEN_PING_MS, pingTimeoutMs: e.WAITROOM_LISTEN_PING_TIMEOUT_MS },
    metrics: { port: e.WAITROOM_METRICS_PORT, key: e.WAITROOM_METRICS_KEY },
    tokens: {
      tokenSeconds: e.WAITROOM_ADMISSION_TOKEN_SECONDS,
      jwksMaxAgeSeconds: e.WAITROOM_JWKS_MAX_AGE_SECONDS,
      keyCacheSeconds: e.WAITROOM_KEY_CACHE_SECONDS,
    },
    limits: {
      rates: e.WAITROOM_RATE_LIMITS === "off" ? undefined : perReplica(e, e.WAITROOM_REPLICAS),
      trustedProxies: e.WAITROOM_TRUSTED_PROXIES,
      allowedOrigins: e.WAITROOM_ALLOWED_ORIGINS,
    },
    gate: {
      routes: e.WAITROOM_GATES,
      cookieSecure: e.WAITROOM_GATE_COOKIE_SECURE === "true",
      renewalTimeoutMs: e.WAITROOM_GATE_RENEWAL_TIMEOUT_MS,
    },
    logLevel: e.LOG_LEVEL,
  };
}

/**
 * Each replica keeps its own buckets: the deployment's limits are shared out, so a client whose
 * requests a load balancer spreads over every replica gets about the deployment's figure in all.
 */
function perReplica(e: z.infer<typeof environmentSchema>, replicas: number): Record<RateBucket, RateLimit> {
  const share = ({ perSecond, burst }: RateLimit): RateLimit => ({
    perSecond: perSecond / replicas,
    burst: Math.max(1, Math.floor(burst / replicas)),
  });
  return {
    join: share(e.WAITROOM_RATE_LIMIT_JOIN),
    holder: share(e.WAITROOM_RATE_LIMIT_HOLDER),
    ticket: share(e.WAITROOM_RATE_LIMIT_TICKET),
    stream: share(e.WAITROOM_RATE_LIMIT_STREAM),
    check: share(e.WAITROOM_RATE_LIMIT_CHECK),
    // Wrong admin, server and metrics keys (src/http/limits.ts, checkKey).
    key: share(e.WAITROOM_RATE_LIMIT_KEY_FAILURES),
  };
}
