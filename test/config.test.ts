import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/index.js";

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

/** The variable names the message complains about, one per line "  NAME: reason". */
function namedIn(error: ConfigError): string[] {
  return [...error.message.matchAll(/^ {2}([A-Z_]+): /gm)].map((match) => match[1] as string).sort();
}

describe("loadConfig", () => {
  it("applies the defaults to an empty environment", () => {
    expect(loadConfig({})).toEqual({
      databaseUrl: undefined,
      migrateUrl: undefined,
      tokens: { tokenSeconds: 120, jwksMaxAgeSeconds: 300, keyCacheSeconds: 30 },
      port: 8080,
      host: "0.0.0.0",
      listenBacklog: 65_535,
      dataDir: resolve(".data"),
      embeddedPostgresPort: 54329,
      shutdownTimeoutMs: 10_000,
      worker: true,
      workerConcurrency: 4,
      sweepIntervalMs: 5_000,
      adminKey: undefined,
      serverKey: undefined,
      bodyLimitBytes: 16_384,
      stream: {
        keepAliveMs: 15_000,
        refreshMs: 2_000,
        presenceMs: 10_000,
        bufferBytes: 262_144,
        perTicket: 2,
        maxAgeMs: 300_000,
      },
      grouping: { maxJoinBatch: 500, maxReadBatch: 1000, maxJoinsInFlight: 1, maxReadsInFlight: 2 },
      limits: {
        rates: {
          join: { perSecond: 0.1, burst: 10 },
          holder: { perSecond: 0.1, burst: 5 },
          ticket: { perSecond: 2, burst: 60 },
          stream: { perSecond: 0.5, burst: 20 },
          check: { perSecond: 50, burst: 500 },
          key: { perSecond: 0.1, burst: 5 },
        },
        trustedProxies: undefined,
        allowedOrigins: [],
      },
      sessionTimeouts: { statementTimeoutMs: 30_000, lockTimeoutMs: 10_000, idleInTransactionTimeoutMs: 60_000 },
      listen: { pingMs: 5_000, pingTimeoutMs: 5_000 },
      metrics: { port: undefined, key: undefined },
      gate: { routes: [], cookieSecure: true, renewalTimeoutMs: 1000 },
      logLevel: "info",
    });
  });

  it("reads which rooms guard which hosts and paths, and refuses a malformed entry", () => {
    const { gate } = loadConfig({
      WAITROOM_GATES: "Shop.Example.com=launch, shop.example.com/api/=api,localhost:8081/checkout=pay",
      WAITROOM_GATE_COOKIE_SECURE: "false",
    });
    expect(gate).toEqual({
      routes: [
        { host: "shop.example.com", port: undefined, path: "/", room: "launch" },
        { host: "shop.example.com", port: undefined, path: "/api/", room: "api" },
        { host: "localhost", port: "8081", path: "/checkout", room: "pay" },
      ],
      cookieSecure: false,
      renewalTimeoutMs: 1000,
    });
    for (const bad of [
      "shop.example.com",
      "=launch",
      "shop.example.com=Launch!",
      "https://shop.example.com=launch",
      "a b=c",
    ]) {
      const error = configError({ WAITROOM_GATES: bad });
      expect(namedIn(error)).toEqual(["WAITROOM_GATES"]);
      expect(error.message).toMatch(/host\[:port\]\[\/path\]=room/);
    }
    expect(namedIn(configError({ WAITROOM_GATE_COOKIE_SECURE: "no" }))).toEqual(["WAITROOM_GATE_COOKIE_SECURE"]);
    for (const bad of ["0", "5", "60001", "1s"]) {
      expect(namedIn(configError({ WAITROOM_GATE_RENEWAL_TIMEOUT_MS: bad }))).toEqual([
        "WAITROOM_GATE_RENEWAL_TIMEOUT_MS",
      ]);
    }
  });

  it("reads valid values", () => {
    const config = loadConfig({
      DATABASE_URL: "postgresql://app:secret@db.example:5433/rooms",
      PORT: "9090",
      HOST: "127.0.0.1",
      WAITROOM_LISTEN_BACKLOG: "1024",
      WAITROOM_DATA_DIR: "/var/lib/waitroom",
      WAITROOM_EMBEDDED_PG_PORT: "6543",
      WAITROOM_SHUTDOWN_TIMEOUT_MS: "2500",
      WAITROOM_WORKER: "false",
      WAITROOM_WORKER_CONCURRENCY: "8",
      WAITROOM_SWEEP_INTERVAL_MS: "1000",
      WAITROOM_ADMIN_KEY: "0123456789abcdef-admin",
      WAITROOM_SERVER_KEY: "0123456789abcdef-server",
      WAITROOM_BODY_LIMIT_BYTES: "4096",
      WAITROOM_KEEPALIVE_MS: "5000",
      WAITROOM_REFRESH_MS: "500",
      WAITROOM_PRESENCE_MS: "3000",
      WAITROOM_STREAM_BUFFER_BYTES: "65536",
      WAITROOM_JOIN_BATCH_MAX: "100",
      WAITROOM_READ_BATCH_MAX: "200",
      WAITROOM_JOIN_BATCHES_IN_FLIGHT: "3",
      WAITROOM_BATCHES_IN_FLIGHT: "1",
      WAITROOM_STATEMENT_TIMEOUT_MS: "0",
      WAITROOM_LOCK_TIMEOUT_MS: "2500",
      WAITROOM_IDLE_IN_TRANSACTION_TIMEOUT_MS: "120000",
      WAITROOM_LISTEN_PING_MS: "1000",
      WAITROOM_LISTEN_PING_TIMEOUT_MS: "3000",
      WAITROOM_METRICS_PORT: "9100",
      WAITROOM_METRICS_KEY: "0123456789abcdef-metrics",
      WAITROOM_STREAM_MAX_AGE_MS: "60000",
      WAITROOM_ADMISSION_TOKEN_SECONDS: "60",
      WAITROOM_JWKS_MAX_AGE_SECONDS: "120",
      WAITROOM_KEY_CACHE_SECONDS: "10",
      WAITROOM_STREAMS_PER_TICKET: "1",
      WAITROOM_RATE_LIMIT_JOIN: "120/h,burst=3",
      WAITROOM_RATE_LIMIT_HOLDER: "2/s",
      WAITROOM_RATE_LIMIT_TICKET: "600/min,burst=100",
      WAITROOM_RATE_LIMIT_STREAM: "60/min",
      WAITROOM_RATE_LIMIT_CHECK: "1000/s,burst=2000",
      WAITROOM_RATE_LIMIT_KEY_FAILURES: "12/min,burst=4",
      WAITROOM_REPLICAS: "2",
      WAITROOM_TRUSTED_PROXIES: "10.0.0.0/8, 192.168.1.7,fd00::/8",
      WAITROOM_ALLOWED_ORIGINS: "https://Shop.example, http://localhost:3000/",
      WAITROOM_GATE_RENEWAL_TIMEOUT_MS: "250",
      LOG_LEVEL: "debug",
    });
    const { limits, ...rest } = config;
    // Shared out between the two replicas.
    expect(limits.rates).toEqual({
      join: { perSecond: 120 / 3600 / 2, burst: 1 },
      holder: { perSecond: 1, burst: 1 },
      ticket: { perSecond: 5, burst: 50 },
      stream: { perSecond: 0.5, burst: 30 },
      check: { perSecond: 500, burst: 1000 },
      key: { perSecond: 0.1, burst: 2 },
    });
    expect(limits.allowedOrigins).toEqual(["https://shop.example", "http://localhost:3000"]);
    const proxies = limits.trustedProxies;
    expect(["10.1.2.3", "192.168.1.7", "192.168.1.8", "11.0.0.1"].map((a) => proxies?.check(a, "ipv4"))).toEqual([
      true,
      true,
      false,
      false,
    ]);
    expect(proxies?.check("fd12::1", "ipv6")).toBe(true);
    expect(rest).toEqual({
      databaseUrl: "postgresql://app:secret@db.example:5433/rooms",
      migrateUrl: undefined,
      tokens: { tokenSeconds: 60, jwksMaxAgeSeconds: 120, keyCacheSeconds: 10 },
      port: 9090,
      host: "127.0.0.1",
      listenBacklog: 1024,
      dataDir: "/var/lib/waitroom",
      embeddedPostgresPort: 6543,
      shutdownTimeoutMs: 2500,
      worker: false,
      workerConcurrency: 8,
      sweepIntervalMs: 1000,
      adminKey: "0123456789abcdef-admin",
      serverKey: "0123456789abcdef-server",
      bodyLimitBytes: 4096,
      stream: {
        keepAliveMs: 5000,
        refreshMs: 500,
        presenceMs: 3000,
        bufferBytes: 65_536,
        perTicket: 1,
        maxAgeMs: 60_000,
      },
      grouping: { maxJoinBatch: 100, maxReadBatch: 200, maxJoinsInFlight: 3, maxReadsInFlight: 1 },
      sessionTimeouts: { statementTimeoutMs: 0, lockTimeoutMs: 2500, idleInTransactionTimeoutMs: 120_000 },
      listen: { pingMs: 1000, pingTimeoutMs: 3000 },
      metrics: { port: 9100, key: "0123456789abcdef-metrics" },
      gate: { routes: [], cookieSecure: true, renewalTimeoutMs: 250 },
      logLevel: "debug",
    });
    expect(loadConfig({ DATABASE_URL: "postgres://localhost/x" }).databaseUrl).toBe("postgres://localhost/x");
  });

  it("reads the owner's URL for migrations beside the service's, and refuses it alone", () => {
    const service = "postgres://waitroom_service:s3rvice@db/waitroom";
    const owner = "postgres://waitroom_owner:0wner-secret@db/waitroom";
    expect(loadConfig({ DATABASE_URL: service, WAITROOM_MIGRATE_URL: owner })).toMatchObject({
      databaseUrl: service,
      migrateUrl: owner,
    });
    expect(loadConfig({ DATABASE_URL: service }).migrateUrl).toBeUndefined();
    // The embedded database migrates as its own superuser: an owner URL without a service URL is a mistake.
    const alone = configError({ WAITROOM_MIGRATE_URL: owner });
    expect(namedIn(alone)).toEqual(["WAITROOM_MIGRATE_URL"]);
    expect(alone.message).toMatch(/WAITROOM_MIGRATE_URL: needs DATABASE_URL/);
    expect(alone.message).not.toContain("0wner-secret");
    const bad = configError({ DATABASE_URL: service, WAITROOM_MIGRATE_URL: "mysql://root:0wner-secret@db/x" });
    expect(namedIn(bad)).toEqual(["WAITROOM_MIGRATE_URL"]);
    expect(bad.message).not.toContain("0wner-secret");
  });

  it("resolves a relative data directory to an absolute path", () => {
    expect(loadConfig({ WAITROOM_DATA_DIR: "some/dir" }).dataDir).toBe(resolve("some/dir"));
  });

  it("turns the per-client rate limits off", () => {
    expect(loadConfig({ WAITROOM_RATE_LIMITS: "off" }).limits.rates).toBeUndefined();
  });

  it("accepts LOG_LEVEL in any case", () => {
    expect(loadConfig({ LOG_LEVEL: "WARN" }).logLevel).toBe("warn");
  });

  it("treats empty strings as unset", () => {
    expect(
      loadConfig({
        DATABASE_URL: "",
        PORT: "",
        HOST: "",
        WAITROOM_DATA_DIR: "",
        WAITROOM_EMBEDDED_PG_PORT: "",
        WAITROOM_SHUTDOWN_TIMEOUT_MS: "",
        LOG_LEVEL: "",
      }),
    ).toEqual(loadConfig({}));
  });

  it("ignores variables it does not know", () => {
    expect(loadConfig({ PATH: "/usr/bin", HOME: "/root", SOMETHING_ELSE: "x" })).toEqual(loadConfig({}));
  });

  it("names every bad variable in one ConfigError", () => {
    const error = configError({ PORT: "abc", DATABASE_URL: "mysql://u:hunter2@h/db", LOG_LEVEL: "loud" });
    expect(error.name).toBe("ConfigError");
    expect(namedIn(error)).toEqual(["DATABASE_URL", "LOG_LEVEL", "PORT"]);
    expect(error.message).toMatch(/^invalid configuration:/);
    expect(error.message).toMatch(/PORT: .*whole number.*"abc"/);
    expect(error.message).toMatch(/DATABASE_URL: .*postgres:\/\//);
    expect(error.message).toMatch(/LOG_LEVEL: .*info.*"loud"/);
    // The URL may carry a password: it is never echoed.
    expect(error.message).not.toContain("hunter2");
  });

  it("never echoes a bad admin, server or metrics key", () => {
    const error = configError({
      WAITROOM_ADMIN_KEY: "short-secret",
      WAITROOM_SERVER_KEY: "has whitespace in it",
      WAITROOM_METRICS_KEY: "tiny",
    });
    expect(namedIn(error)).toEqual(["WAITROOM_ADMIN_KEY", "WAITROOM_METRICS_KEY", "WAITROOM_SERVER_KEY"]);
    expect(error.message).not.toContain("tiny");
    expect(error.message).toMatch(/WAITROOM_ADMIN_KEY: .*at least 16/);
    expect(error.message).not.toContain("short-secret");
    expect(error.message).not.toContain("has whitespace");
  });

  it.each([
    ["PORT", "abc"],
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["PORT", "1e3"],
    ["PORT", "0x50"],
    ["PORT", " "],
    ["WAITROOM_EMBEDDED_PG_PORT", "99999"],
    ["WAITROOM_SHUTDOWN_TIMEOUT_MS", "soon"],
    ["WAITROOM_WORKER", "yes"],
    ["WAITROOM_WORKER_CONCURRENCY", "0"],
    ["WAITROOM_SWEEP_INTERVAL_MS", "5s"],
    ["WAITROOM_SHUTDOWN_TIMEOUT_MS", "10"],
    ["DATABASE_URL", "mysql://localhost/db"],
    ["DATABASE_URL", "http://localhost:5432/db"],
    ["DATABASE_URL", "not a url"],
    ["DATABASE_URL", "localhost:5432/db"],
    ["LOG_LEVEL", "loud"],
    ["LOG_LEVEL", "verbose"],
    ["WAITROOM_BODY_LIMIT_BYTES", "100"],
    ["WAITROOM_REFRESH_MS", "0"],
    ["WAITROOM_STREAM_BUFFER_BYTES", "lots"],
    ["WAITROOM_STATEMENT_TIMEOUT_MS", "-1"],
    ["WAITROOM_LOCK_TIMEOUT_MS", "10s"],
    ["WAITROOM_IDLE_IN_TRANSACTION_TIMEOUT_MS", "86400001"],
    ["WAITROOM_LISTEN_PING_MS", "10"],
    ["WAITROOM_LISTEN_PING_TIMEOUT_MS", "0"],
    ["WAITROOM_METRICS_PORT", "70000"],
    ["WAITROOM_STREAMS_PER_TICKET", "0"],
    ["WAITROOM_RATE_LIMITS", "false"],
    ["WAITROOM_RATE_LIMIT_JOIN", "10"],
    ["WAITROOM_RATE_LIMIT_JOIN", "10/day"],
    ["WAITROOM_RATE_LIMIT_JOIN", "0/min"],
    ["WAITROOM_RATE_LIMIT_STREAM", "5/min,burst=0"],
    ["WAITROOM_RATE_LIMIT_CHECK", "5/min burst 10"],
    ["WAITROOM_REPLICAS", "0"],
    ["WAITROOM_TRUSTED_PROXIES", "10.0.0.0/33"],
    ["WAITROOM_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal"],
    ["WAITROOM_TRUSTED_PROXIES", "::1/129"],
    ["WAITROOM_TRUSTED_PROXIES", "10.0.0.0/"],
    ["WAITROOM_ALLOWED_ORIGINS", "https://shop.example/path"],
    ["WAITROOM_ALLOWED_ORIGINS", "shop.example"],
    ["WAITROOM_ALLOWED_ORIGINS", "ftp://shop.example"],
  ])("rejects %s=%j, naming it", (name, value) => {
    expect(namedIn(configError({ [name]: value }))).toEqual([name]);
  });
});
