import { resolve } from "node:path";
import { z } from "zod";

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const postgresUrl = z
  .string()
  .url()
  .refine((url) => /^postgres(ql)?:$/.test(new URL(url).protocol), "must be a postgres:// or postgresql:// URL");

/** Environment variables the service reads; unset values take these defaults. */
const environmentSchema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default("0.0.0.0"),
  WAITROOM_DATA_DIR: z.string().min(1).default(".data"),
  WAITROOM_EMBEDDED_PG_PORT: z.coerce.number().int().min(0).max(65535).default(54329),
  LOG_LEVEL: z.enum(logLevels).default("info"),
});

export type Config = {
  /** Unset: an embedded PostgreSQL is started in `dataDir`. */
  databaseUrl: string | undefined;
  port: number;
  host: string;
  /** Absolute path; holds the embedded database. */
  dataDir: string;
  embeddedPostgresPort: number;
  logLevel: (typeof logLevels)[number];
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Validated configuration from the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as in most shells' habits.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ""));
  const parsed = environmentSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  ${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n${problems.join("\n")}`);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.WAITROOM_DATA_DIR),
    embeddedPostgresPort: e.WAITROOM_EMBEDDED_PG_PORT,
    logLevel: e.LOG_LEVEL,
  };
}
