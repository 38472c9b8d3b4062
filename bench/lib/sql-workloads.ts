import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type pg from "pg";

/*
 * The pgbench workloads several benchmarks measure against (bench/sql/*.sql),
 * and the maintenance every measured run starts from. One definition, so the
 * raw INSERT that the SQL join is compared with is the same statement as the
 * one the HTTP join is compared with.
 */

export const SQL_WORKLOADS = ["raw", "floor", "join", "add_job"] as const;
export type SqlWorkload = (typeof SQL_WORKLOADS)[number];

/** Workloads that write BATCH_ROWS rows per transaction (the rush benchmark's). */
export const BATCH_WORKLOADS = ["join_many", "join_many_floor", "add_jobs"] as const;
export type BatchWorkload = (typeof BATCH_WORKLOADS)[number];
export const BATCH_ROWS = 100;

const SCRIPT_FILES: Record<SqlWorkload | BatchWorkload, string> = {
  raw: "raw_insert.sql",
  floor: "join_floor.sql",
  join: "join.sql",
  add_job: "add_job.sql",
  join_many: "join_many.sql",
  join_many_floor: "join_many_floor.sql",
  add_jobs: "add_jobs.sql",
};
const SCRIPTS_DIR = fileURLToPath(new URL("../sql/", import.meta.url));

/** The pgbench script of a workload (join.sql joins room `bench`; raw_insert.sql needs RAW_INSERT_TABLE). */
export function scriptFile(workload: SqlWorkload | BatchWorkload): string {
  return `${SCRIPTS_DIR}${SCRIPT_FILES[workload]}`;
}

/** The baseline's table: one narrow row with one index entry per INSERT. */
export const RAW_INSERT_TABLE = `
  create table raw_insert (
    id         bigint generated always as identity primary key,
    room_id    text not null,
    payload    text,
    created_at timestamptz not null default now()
  )`;

/** The script's statement on one line, for the report. */
export async function statementOf(workload: SqlWorkload | BatchWorkload): Promise<string> {
  const text = await readFile(scriptFile(workload), "utf8");
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("--"))
    .join(" ");
}

/*
 * Vacuum is done between runs rather than by autovacuum at random moments:
 * otherwise the WAL and CPU of vacuuming one workload's table are charged to
 * whichever run is going on.
 */
export async function disableAutovacuum(control: pg.Client): Promise<void> {
  await control.query(`
    do $$
    declare
      v_table regclass;
    begin
      for v_table in
        select oid from pg_class
         where relkind = 'r'
           and relnamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
      loop
        execute format('alter table %s set (autovacuum_enabled = false)', v_table);
      end loop;
    end
    $$`);
}

/**
 * Every measured run starts on vacuumed tables right after a checkpoint, so each pays the same
 * full-page-image cost and none inherits maintenance owed by another.
 */
export async function settle(control: pg.Client): Promise<void> {
  await control.query("vacuum (analyze)");
  await control.query("checkpoint");
}
