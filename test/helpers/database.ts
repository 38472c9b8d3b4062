import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, inject } from "vitest";
import { connectSql, type Sql, withClient } from "../../src/db/client.js";

export type TestDatabase = {
  /** URL of this file's own database. */
  url: string;
  /** A postgres.js client on it. */
  sql: Sql;
};

/** A fresh database for the calling test file, cloned from the migrated template and dropped afterwards. */
export function useTestDatabase(options: { max?: number } = {}): TestDatabase {
  const name = `waitroom_test_${randomBytes(6).toString("hex")}`;
  const url = new URL(inject("serverUrl"));
  url.pathname = `/${name}`;
  const database = { url: url.toString() } as TestDatabase;

  beforeAll(async () => {
    await withClient(inject("serverUrl"), (client) =>
      client.query(`create database ${name} template ${inject("templateDatabase")}`),
    );
    database.sql = await connectSql(database.url, { max: options.max ?? 10 });
  });
  afterAll(async () => {
    await database.sql?.end({ timeout: 5 });
    await withClient(inject("serverUrl"), (client) => client.query(`drop database if exists ${name} with (force)`));
  });
  return database;
}
