import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runner } from "node-pg-migrate";
import pg from "pg";
import type { Logger } from "../log.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const migrationsDir = join(root, "migrations");
export const sqlDir = join(root, "sql");

/** Held for the whole migrate, so concurrent migrators run one after the other. */
const MIGRATE_LOCK = 2000;

/*
 * sql/ holds every function, view and standalone type of schema waitroom and
 * is the whole truth about them: each migrate drops what is there and applies
 * the files in name order, in one transaction, so a signature change or a
 * removed function needs no hand-written migration.
 */
const dropRoutinesAndViews = `
do $$
declare
  v_object record;
begin
  for v_object in
    select 'view' as kind, c.oid::regclass::text as name
      from pg_class c where c.relnamespace = 'waitroom'::regnamespace and c.relkind = 'v'
    union all
    select case p.prokind when 'p' then 'procedure' else 'function' end, p.oid::regprocedure::text
      from pg_proc p where p.pronamespace = 'waitroom'::regnamespace
    union all
    select 'type', t.oid::regtype::text
      from pg_type t join pg_class c on c.oid = t.typrelid
     where t.typnamespace = 'waitroom'::regnamespace and c.relkind = 'c'
  loop
    execute format('drop %s %s', v_object.kind, v_object.name);
  end loop;
end
$$`;

async function applySqlDirectory(client: pg.Client): Promise<string[]> {
  const files = (await readdir(sqlDir)).filter((name) => name.endsWith(".sql")).sort();
  await client.query("begin");
  try {
    await client.query(dropRoutinesAndViews);
    for (const file of files) {
      const text = await readFile(join(sqlDir, file), "utf8");
      try {
        await client.query(text);
      } catch (error) {
        throw new Error(`sql/${file}: ${(error as Error).message}`, { cause: error });
      }
    }
    await client.query("commit");
  } catch (error) {
    await client.query("rollback");
    throw error;
  }
  return files;
}

/** Apply pending migrations, then re-apply sql/. Safe to run from several processes at once. */
export async function migrate(databaseUrl: string, log: Logger): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("set client_min_messages = warning");
    await client.query("select pg_advisory_lock($1)", [MIGRATE_LOCK]);
    const applied = await runner({
      dbClient: client,
      dir: migrationsDir,
      migrationsTable: "waitroom_migrations",
      direction: "up",
      noLock: true,
      checkOrder: true,
      logger: { debug: () => {}, info: () => {}, warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
    });
    const files = await applySqlDirectory(client);
    log.info({ migrations: applied.map((m) => m.name), sqlFiles: files.length }, "database migrated");
  } finally {
    await client.end();
  }
}
