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
      stream: { keepAliveMs: 15_000, refreshMs: 2_000, presenceMs: 10_000, bufferBytes: 262_144 },
      grouping: { maxJoinBatch: 500, maxReadBatch: 1000, maxInFlight: 2 },
      logLevel: "info",
    });
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
      WAITROOM_BATCHES_IN_FLIGHT: "1",
      LOG_LEVEL: "debug",
    });
    expect(config).toEqual({
      databaseUrl: "postgresql://app:secret@db.example:5433/rooms",
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
      stream: { keepAliveMs: 5000, refreshMs: 500, presenceMs: 3000, bufferBytes: 65_536 },
      grouping: { maxJoinBatch: 100, maxReadBatch: 200, maxInFlight: 1 },
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

  it("never echoes a bad admin or server key", () => {
    const error = configError({ WAITROOM_ADMIN_KEY: "short-secret", WAITROOM_SERVER_KEY: "has whitespace in it" });
    expect(namedIn(error)).toEqual(["WAITROOM_ADMIN_KEY", "WAITROOM_SERVER_KEY"]);
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
  ])("rejects %s=%j, naming it", (name, value) => {
    expect(namedIn(configError({ [name]: value }))).toEqual([name]);
  });
});
