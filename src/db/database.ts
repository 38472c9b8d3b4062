import pg from "pg";
import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import { withClient } from "./client.js";
import { startEmbeddedPostgres } from "./embedded.js";

export type Database = {
  url: string;
  /** Settles with an error if the embedded server stops without close() being called; never otherwise. */
  lost: Promise<Error>;
  /** Stops the embedded server, if this process started one. */
  close(): Promise<void>;
};

const EMBEDDED_DATABASE = "waitroom";

/**
 * DATABASE_URL when set; otherwise an embedded PostgreSQL kept in the data directory. Aborting `signal`
 * while it starts stops what was started and rejects with the signal's reason.
 */
export async function openDatabase(
  config: Config,
  log: Logger,
  options: { signal?: AbortSignal } = {},
): Promise<Database> {
  const { signal } = options;
  if (config.databaseUrl) return { url: config.databaseUrl, lost: new Promise(() => {}), close: async () => {} };
  const server = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedPostgresPort,
    durable: true,
    log,
    signal,
  });
  try {
    await withClient(server.url, async (client) => {
      const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [EMBEDDED_DATABASE]);
      if (rowCount === 0) await client.query(`create database ${pg.escapeIdentifier(EMBEDDED_DATABASE)}`);
    });
    signal?.throwIfAborted();
  } catch (error) {
    await server.stop();
    throw error;
  }
  let closing = false;
  const lost = server.exited.then(
    () =>
      new Promise<Error>((resolve) => {
        if (!closing) resolve(new Error(`embedded PostgreSQL (pid ${server.pid}) exited unexpectedly`));
      }),
  );
  const url = new URL(server.url);
  url.pathname = `/${EMBEDDED_DATABASE}`;
  return {
    url: url.toString(),
    lost,
    close: () => {
      closing = true;
      return server.stop();
    },
  };
}
