import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, inject } from "vitest";
import { connectSql, type Sql, withClient } from "../../src/db/client.js";

export type TestDatabase = {
  /** URL of this file's own database, as the superuser that set the suite up (tests arrange and inspect with it). */
  url: string;
  /** A postgres.js client on it, as that superuser. */
  sql: Sql;
  /** The same database as the service's least-privileged role: what every service under test connects with. */
  serviceUrl: string;
  /** A postgres.js client as the service's role. */
  serviceSql: Sql;
};

/** `url` with the service's role (global-setup made it) instead of the superuser. */
export function asServiceRole(url: string): string {
  const { name, password } = inject("serviceRole");
  const service = new URL(url);
  service.username = name;
  service.password = password;
  return service.toString();
}

/** A fresh database for the calling test file, cloned from the migrated template and dropped afterwards. */
export function useTestDatabase(options: { max?: number } = {}): TestDatabase {
  const name = `waitroom_test_${randomBytes(6).toString("hex")}`;
  const url = new URL(inject("serverUrl"));
  url.pathname = `/${name}`;
  const database = { url: url.toString(), serviceUrl: asServiceRole(url.toString()) } as TestDatabase;

  beforeAll(async () => {
    await withClient(inject("serverUrl"), (client) =>
      client.query(`create database ${name} template ${inject("templateDatabase")}`),
    );
    database.sql = await connectSql(database.url, { max: options.max ?? 10 });
    database.serviceSql = await connectSql(database.serviceUrl, { max: 4 });
  });
  afterAll(async () => {
    await database.serviceSql?.end({ timeout: 5 });
    await database.sql?.end({ timeout: 5 });
    await withClient(inject("serverUrl"), (client) => client.query(`drop database if exists ${name} with (force)`));
  });
  return database;
}
