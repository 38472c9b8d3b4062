import pg from "pg";
import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import { startEmbeddedPostgres } from "./embedded.js";

export type Database = {
  url: string;
  /** Stops the embedded server, if this process started one. */
  close(): Promise<void>;
};

const EMBEDDED_DATABASE = "waitroom";

/** DATABASE_URL when set; otherwise an embedded PostgreSQL kept in the data directory. */
export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  if (config.databaseUrl) return { url: config.databaseUrl, close: async () => {} };
  const server = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedPostgresPort,
    durable: true,
    log,
  });
  try {
    await createDatabaseIfMissing(server.url, EMBEDDED_DATABASE);
  } catch (error) {
    await server.stop();
    throw error;
  }
  const url = new URL(server.url);
  url.pathname = `/${EMBEDDED_DATABASE}`;
  return { url: url.toString(), close: () => server.stop() };
}

async function createDatabaseIfMissing(serverUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [name]);
    if (rowCount === 0) await client.query(`create database ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}
