import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, inject } from "vitest";
import { createSql, type Sql } from "../../src/db/client.js";

export type TestDatabase = {
  /** URL of this file's own database. */
  url: string;
  /** A postgres.js client on it. */
  sql: Sql;
};

async function onServer<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject("serverUrl") });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh database for the calling test file, cloned from the migrated template and dropped afterwards. */
export function useTestDatabase(options: { max?: number } = {}): TestDatabase {
  const name = `waitroom_test_${randomBytes(6).toString("hex")}`;
  const url = new URL(inject("serverUrl"));
  url.pathname = `/${name}`;
  const database = { url: url.toString() } as TestDatabase;

  beforeAll(async () => {
    await onServer((client) => client.query(`create database ${name} template ${inject("templateDatabase")}`));
    database.sql = createSql(database.url, { max: options.max ?? 10 });
  });
  afterAll(async () => {
    await database.sql?.end({ timeout: 5 });
    await onServer((client) => client.query(`drop database if exists ${name} with (force)`));
  });
  return database;
}
