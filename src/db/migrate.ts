import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runMigrations as installWorkerSchema } from "graphile-worker";
import { runner } from "node-pg-migrate";
import pg from "pg";
import { type Logger, workerLogger } from "../log.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const migrationsDir = join(root, "migrations");
export const sqlDir = join(root, "sql");

/** Held for the whole migrate, so concurrent migrators run one after the other. The key spells "waitroom". */
const MIGRATE_LOCK = "8602272712111386477";

/** Where a migrate records what it applied from sql/; beside node-pg-migrate's own table. */
export const MIGRATIONS_TABLE = "waitroom_migrations"; // in schema public, node-pg-migrate's default
const SQL_STATE_TABLE = "public.waitroom_sql_state";

/** Bump when the way sql/ is applied changes, so every database re-applies it once. */
const APPLY_VERSION = "1";

/**
 * Part of the checksum: a new graphile-worker may bring migrations of its own, which the owner must run
 * (the service's role cannot), so an upgrade makes the next migrate do the whole job once.
 */
const WORKER_VERSION = (createRequire(import.meta.url)("graphile-worker/package.json") as { version: string }).version;

/*
 * sql/ holds every function, view and standalone type of schema waitroom and
 * is the whole truth about them: a migrate that finds sql/ changed drops what
 * is there and applies the files in name order, in one transaction, so a
 * signature change or a removed function needs no hand-written migration.
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

/*
 * What the catalog holds for sql/: every function, view and composite type of
 * schema waitroom with its definition, privileges and comment. A re-apply is
 * skipped only when the files and this fingerprint are both as last recorded,
 * so a hand-dropped or hand-edited function is restored by the next migrate.
 */
const catalogFingerprint = `
select md5(coalesce(string_agg(item, E'\\n' order by item), '')) as fingerprint
  from (
    select concat_ws(' ', 'function', p.oid::regprocedure::text,
                     md5(case when p.prokind = 'a' then p.prosrc else pg_get_functiondef(p.oid) end),
                     p.proacl::text, obj_description(p.oid, 'pg_proc'))
      from pg_proc p
     where p.pronamespace = 'waitroom'::regnamespace
    union all
    select concat_ws(' ', 'view', c.oid::regclass::text, md5(pg_get_viewdef(c.oid)), c.relacl::text,
                     obj_description(c.oid, 'pg_class'))
      from pg_class c
     where c.relnamespace = 'waitroom'::regnamespace and c.relkind = 'v'
    union all
    select concat_ws(' ', 'type', t.oid::regtype::text,
                     (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)
                        from pg_attribute a
                       where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
                     obj_description(t.oid, 'pg_type'))
      from pg_type t
      join pg_class c on c.oid = t.typrelid
     where t.typnamespace = 'waitroom'::regnamespace and c.relkind = 'c'
  ) objects(item)`;

const createSqlStateTable = `
do $$
begin
  if to_regclass('${SQL_STATE_TABLE}') is null then
    create table ${SQL_STATE_TABLE} (
      id          boolean primary key default true check (id),
      checksum    text not null,
      fingerprint text not null,
      files       text[] not null,
      applied_at  timestamptz not null default now()
    );
    comment on table ${SQL_STATE_TABLE} is
      'Written by the waitroom migrate runner: the sql/ files last applied to schema waitroom '
      '(sha256 of their names and contents) and a fingerprint of the functions, views and types they made.';
  end if;
end
$$`;

type SqlFile = { name: string; text: string };

async function readSqlDirectory(dir: string): Promise<{ files: SqlFile[]; checksum: string }> {
  const names = (await readdir(dir)).filter((name) => name.endsWith(".sql")).sort();
  const files = await Promise.all(names.map(async (name) => ({ name, text: await readFile(join(dir, name), "utf8") })));
  const hash = createHash("sha256").update(`apply-version ${APPLY_VERSION}\0graphile-worker ${WORKER_VERSION}\0`);
  for (const file of files) hash.update(`${file.name}\0${file.text}\0`);
  return { files, checksum: hash.digest("hex") };
}

async function fingerprint(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ fingerprint: string }>(catalogFingerprint);
  return rows[0]?.fingerprint ?? "";
}

/** Names of the migrations in dir, in the order node-pg-migrate applies them (as it records them). */
export async function migrationNames(dir = migrationsDir): Promise<string[]> {
  return (await readdir(dir))
    .filter((name) => name.endsWith(".sql"))
    .sort()
    .map((name) => name.replace(/\.sql$/, ""));
}

/**
 * Whether every migration and sql/ (checksum and catalog fingerprint) are as this release would leave them,
 * read through waitroom.schema_state: no privilege beyond the service's role, no lock, no write.
 */
async function schemaIsCurrent(client: pg.Client, migrations: string[], checksum: string): Promise<boolean> {
  const { rows: found } = await client.query("select to_regprocedure('waitroom.schema_state()') is not null as ok");
  if (!found[0]?.ok) return false;
  const { rows } = await client.query<{ migrations: string[]; checksum: string; fingerprint: string }>(
    "select * from waitroom.schema_state()",
  );
  const state = rows[0];
  if (!state || state.checksum !== checksum || state.migrations.join("\n") !== migrations.join("\n")) return false;
  return state.fingerprint === (await fingerprint(client));
}

/*
 * Dropping a view needs its ACCESS EXCLUSIVE lock. Waiting for it behind a
 * long transaction that read the view would queue every later reader behind
 * the migrate (an outage), and a session that holds one view while wanting
 * another already dropped would deadlock with it. So each attempt gives up on
 * a lock after LOCK_TIMEOUT, rolls back (releasing what it held) and tries
 * again a little later, until it gets through or is aborted.
 */
const LOCK_TIMEOUT_MS = 200;
const LOCK_NOT_AVAILABLE = "55P03";

const blockingSessions = `
select distinct a.pid, a.usename as user, a.application_name as application, a.state, a.xact_start
  from pg_locks l
  join pg_class c on c.oid = l.relation
  join pg_stat_activity a on a.pid = l.pid
 where c.relnamespace = 'waitroom'::regnamespace and c.relkind = 'v' and l.granted and l.pid <> pg_backend_pid()`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function isLockTimeout(error: unknown): boolean {
  const cause = (error as { cause?: unknown }).cause ?? error;
  return (cause as { code?: unknown }).code === LOCK_NOT_AVAILABLE;
}

/** Drop what sql/ made and apply every file, in one transaction: all of it lands, or none. */
async function applySqlDirectory(
  client: pg.Client,
  files: SqlFile[],
  checksum: string,
  log: Logger,
  signal: AbortSignal | undefined,
): Promise<void> {
  const startedAt = Date.now();
  let warnedAt = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      await applyOnce(client, files, checksum);
      return;
    } catch (error) {
      if (!isLockTimeout(error) || signal?.aborted) throw error;
    }
    if (Date.now() - warnedAt >= 10_000) {
      warnedAt = Date.now();
      const { rows } = await client.query(blockingSessions);
      log.warn(
        { waitedMs: warnedAt - startedAt, attempt, sessions: rows },
        "waiting to re-apply sql/: sessions in a transaction are using waitroom views",
      );
    }
    await sleep(Math.min(1_000, 25 * attempt));
  }
}

async function applyOnce(client: pg.Client, files: SqlFile[], checksum: string): Promise<void> {
  await client.query("begin");
  try {
    await client.query(`set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
    await client.query(dropRoutinesAndViews);
    for (const file of files) {
      try {
        await client.query(file.text);
      } catch (error) {
        throw new Error(`sql/${file.name}: ${(error as Error).message}`, { cause: error });
      }
    }
    await client.query(
      `insert into ${SQL_STATE_TABLE} (checksum, fingerprint, files) values ($1, $2, $3)
       on conflict (id) do update set checksum = excluded.checksum, fingerprint = excluded.fingerprint,
                                      files = excluded.files, applied_at = excluded.applied_at`,
      [checksum, await fingerprint(client), files.map((file) => file.name)],
    );
    await client.query("commit");
  } catch (error) {
    // The connection may be gone (aborted): the server rolls back on its own then.
    await client.query("rollback").catch(() => {});
    throw error;
  }
}

export type MigrateOptions = {
  /** Aborting ends the connection: whatever transaction is open rolls back, and migrate rejects. */
  signal?: AbortSignal;
  /** Defaults: this repository's migrations/ and sql/. */
  migrationsDir?: string;
  sqlDir?: string;
};

export type MigrateResult = {
  /** Names of the migrations applied by this call. */
  migrations: string[];
  /** false when sql/ and the catalog were already as last applied, so nothing was touched. */
  sqlApplied: boolean;
};

/**
 * Apply pending migrations, then re-apply sql/ when it (or the catalog) differs from what was last
 * applied. Safe to run from several processes at once; a second run with nothing new changes nothing.
 */
export async function migrate(databaseUrl: string, log: Logger, options: MigrateOptions = {}): Promise<MigrateResult> {
  const { signal } = options;
  signal?.throwIfAborted();
  const { files, checksum } = await readSqlDirectory(options.sqlDir ?? sqlDir);
  const client = new pg.Client({ connectionString: databaseUrl, application_name: "waitroom migrate" });
  // A migrate waiting for the lock, or mid-way, must not hold up a shutdown.
  const onAbort = () => void client.end().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await client.connect();
    signal?.throwIfAborted();
    // A start against a current schema (the common case) must not need the owner's privileges.
    const dir = options.migrationsDir ?? migrationsDir;
    if (await schemaIsCurrent(client, await migrationNames(dir), checksum)) {
      log.info({ sqlFiles: files.length }, "database already up to date");
      return { migrations: [], sqlApplied: false };
    }
    await client.query("set client_min_messages = warning");
    await client.query("select pg_advisory_lock($1::bigint)", [MIGRATE_LOCK]);
    const applied = await runner({
      dbClient: client,
      dir,
      migrationsTable: MIGRATIONS_TABLE,
      direction: "up",
      noLock: true,
      singleTransaction: true,
      checkOrder: true,
      logger: { debug: () => {}, info: () => {}, warn: (m: string) => log.warn(m), error: (m: string) => log.error(m) },
    });
    const migrations = applied.map((m) => m.name);
    // sql/ schedules admission ticks through graphile_worker.add_job.
    await installWorkerSchema({ connectionString: databaseUrl, logger: workerLogger(log) });
    await client.query(createSqlStateTable);
    const { rows } = await client.query<{ checksum: string; fingerprint: string }>(
      `select checksum, fingerprint from ${SQL_STATE_TABLE}`,
    );
    const last = rows[0];
    if (migrations.length === 0 && last?.checksum === checksum && last.fingerprint === (await fingerprint(client))) {
      log.info({ migrations, sqlFiles: files.length }, "database already up to date");
      return { migrations, sqlApplied: false };
    }
    await applySqlDirectory(client, files, checksum, log, signal);
    log.info({ migrations, sqlFiles: files.length }, "database migrated");
    return { migrations, sqlApplied: true };
  } catch (error) {
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await client.end().catch(() => {});
  }
}
