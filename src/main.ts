import { serve } from "@hono/node-server";
import { type Config, ConfigError, loadConfig } from "./config/index.js";
import { createSql } from "./db/client.js";
import { openDatabase } from "./db/database.js";
import { migrate } from "./db/migrate.js";
import { createApp } from "./http/app.js";
import { createLogger, type Logger } from "./log.js";

const usage = `usage: waitroom <command>

  start     start the database (embedded unless DATABASE_URL is set), migrate, serve HTTP
  migrate   apply migrations and sql/ to the database, then exit`;

async function start(config: Config, log: Logger): Promise<void> {
  const database = await openDatabase(config, log);
  await migrate(database.url, log);
  const sql = createSql(database.url);
  const app = createApp({ sql });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) =>
    log.info({ port: info.port, host: config.host }, "waitroom listening"),
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await sql.end({ timeout: 5 });
    await database.close();
    log.info("stopped");
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void stop(signal));
}

async function migrateOnly(config: Config, log: Logger): Promise<void> {
  const database = await openDatabase(config, log);
  try {
    await migrate(database.url, log);
  } finally {
    await database.close();
  }
}

const commands: Record<string, (config: Config, log: Logger) => Promise<void>> = { start, migrate: migrateOnly };

async function main(argv: string[]): Promise<void> {
  const command = commands[argv[0] ?? ""];
  if (!command) {
    process.stderr.write(`${usage}\n`);
    process.exitCode = 2;
    return;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exitCode = 1;
    return;
  }
  const log = createLogger(config.logLevel);
  try {
    await command(config, log);
  } catch (error) {
    log.fatal({ err: error }, `${argv[0]} failed`);
    process.exitCode = 1;
  }
}

await main(process.argv.slice(2));
