import { resolve } from "node:path";
import { z } from "zod";

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

/** Environment variables the service reads; unset values take these defaults. */
const environmentSchema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  PORT: port.default(8080),
  HOST: z.string().trim().min(1).default("0.0.0.0"),
  WAITROOM_DATA_DIR: z.string().min(1).default(".data"),
  WAITROOM_EMBEDDED_PG_PORT: port.default(54329),
  WAITROOM_SHUTDOWN_TIMEOUT_MS: integer(100, 600_000).default(10_000),
  WAITROOM_WORKER: z.enum(["true", "false"], { error: "must be true or false" }).default("true"),
  WAITROOM_WORKER_CONCURRENCY: integer(1, 100).default(4),
  WAITROOM_SWEEP_INTERVAL_MS: integer(100, 3_600_000).default(5_000),
  LOG_LEVEL: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(logLevels, { error: `must be one of ${logLevels.join(", ")}` }))
    .default("info"),
});

export type Config = {
  /** Unset: an embedded PostgreSQL is started in `dataDir`. */
  databaseUrl: string | undefined;
  port: number;
  host: string;
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
  logLevel: (typeof logLevels)[number];
};

/** Variables whose value must never appear in a message or a log. */
const secret: Record<string, true> = { DATABASE_URL: true };

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Validated configuration from the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as in most shells' habits.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ""));
  const parsed = environmentSchema.safeParse(present);
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
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.WAITROOM_DATA_DIR),
    embeddedPostgresPort: e.WAITROOM_EMBEDDED_PG_PORT,
    shutdownTimeoutMs: e.WAITROOM_SHUTDOWN_TIMEOUT_MS,
    worker: e.WAITROOM_WORKER === "true",
    workerConcurrency: e.WAITROOM_WORKER_CONCURRENCY,
    sweepIntervalMs: e.WAITROOM_SWEEP_INTERVAL_MS,
    logLevel: e.LOG_LEVEL,
  };
}
