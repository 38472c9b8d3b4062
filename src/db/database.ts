import { readFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import type { Config } from "../config/index.js";
import type { Logger } from "../log.js";
import { withClient } from "./client.js";
import { readOrCreatePassword, startEmbeddedPostgres } from "./embedded.js";
import { sqlDir } from "./migrate.js";

export type Database = {
  /** The service's connection: the least-privileged role (see docs/operations.md). */
  url: string;
  /** The owner's connection, for migrations only. */
  migrateUrl: string;
  /** Settles with an error if the embedded server stops without close() being called; never otherwise. */
  lost: Promise<Error>;
  /** Stops the embedded server, if this process started one. */
  close(): Promise<void>;
};

const EMBEDDED_DATABASE = "waitroom";

/** The embedded database's login role for the service: a member of waitroom_app and waitroom_worker only. */
export const EMBEDDED_SERVICE_ROLE = "waitroom_service";

/**
 * The embedded service role, with the password kept in the data directory. The group roles come from
 * sql/05_roles.sql, run here too because the first migrate has not made them yet.
 */
async function ensureServiceRole(client: pg.Client, password: string): Promise<void> {
  await client.query(await readFile(join(sqlDir, "05_roles.sql"), "utf8"));
  const role = pg.escapeIdentifier(EMBEDDED_SERVICE_ROLE);
  const { rowCount } = await client.query("select 1 from pg_roles where rolname = $1", [EMBEDDED_SERVICE_ROLE]);
  // A password is not a bind parameter in CREATE/ALTER ROLE; ours is base64url, so a literal is safe.
  const literal = pg.escapeLiteral(password);
  await client.query(
    rowCount === 0 ? `create role ${role} login password ${literal}` : `alter role ${role} login password ${literal}`,
  );
  await client.query(`grant waitroom_app, waitroom_worker to ${role}`);
}

/**
 * DATABASE_URL (and WAITROOM_MIGRATE_URL) when set; otherwise an embedded PostgreSQL kept in the data
 * directory, served through its own least-privileged role. Aborting `signal` while it starts stops what
 * was started and rejects with the signal's reason.
 */
export async function openDatabase(
  config: Config,
  log: Logger,
  options: { signal?: AbortSignal } = {},
): Promise<Database> {
  const { signal } = options;
  if (config.databaseUrl) {
    return {
      url: config.databaseUrl,
      migrateUrl: config.migrateUrl ?? config.databaseUrl,
      lost: new Promise(() => {}),
      close: async () => {},
    };
  }
  const server = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    port: config.embeddedPostgresPort,
    durable: true,
    log,
    signal,
  });
  const servicePassword = await readOrCreatePassword(config.dataDir, "service-password");
  try {
    await withClient(server.url, async (client) => {
      const { rowCount } = await client.query("select 1 from pg_database where datname = $1", [EMBEDDED_DATABASE]);
      if (rowCount === 0) await client.query(`create database ${pg.escapeIdentifier(EMBEDDED_DATABASE)}`);
      await ensureServiceRole(client, servicePassword);
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
  const owner = new URL(server.url);
  owner.pathname = `/${EMBEDDED_DATABASE}`;
  const service = new URL(owner);
  service.username = EMBEDDED_SERVICE_ROLE;
  service.password = servicePassword;
  return {
    url: service.toString(),
    migrateUrl: owner.toString(),
    lost,
    close: () => {
      closing = true;
      return server.stop();
    },
  };
}
