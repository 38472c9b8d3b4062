import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { freePort, startEmbeddedPostgres } from "../../src/db/embedded.js";
import { migrate } from "../../src/db/migrate.js";
import { createLogger } from "../../src/log.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Superuser URL of the test server's maintenance database. */
    serverUrl: string;
    /** Migrated database that each test file clones. */
    templateDatabase: string;
    /** The service's login role: a member of waitroom_app and waitroom_worker, nothing else. */
    serviceRole: { name: string; password: string };
  }
}

/*
 * One PostgreSQL for the whole run: TEST_DATABASE_URL or DATABASE_URL when
 * set (the role needs CREATEDB), else an embedded server in a temporary
 * directory. A template database is migrated once; every test file clones it.
 * The services under test connect as a least-privileged login role made here,
 * as an operator would make it (docs/operations.md).
 */
export default async function setup(project: TestProject) {
  const log = createLogger(process.env.LOG_LEVEL ?? "warn");
  const externalUrl = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  const dataDir = join(tmpdir(), `waitroom-test-${randomBytes(4).toString("hex")}`);
  const embedded = externalUrl
    ? undefined
    : await startEmbeddedPostgres({
        dataDir,
        port: await freePort(),
        durable: false,
        maxConnections: 400,
        log,
      });
  const serverUrl = externalUrl ?? (embedded?.url as string);
  const templateDatabase = `waitroom_template_${process.pid}`;

  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${templateDatabase}`);
  await admin.query(`create database ${templateDatabase}`);
  const templateUrl = new URL(serverUrl);
  templateUrl.pathname = `/${templateDatabase}`;
  await migrate(templateUrl.toString(), log);
  // Roles are cluster-wide: one per run, so that runs sharing a server do not share it.
  const serviceRole = { name: `waitroom_service_${process.pid}`, password: randomBytes(18).toString("base64url") };
  await admin.query(`drop role if exists ${serviceRole.name}`);
  await admin.query(`create role ${serviceRole.name} login password '${serviceRole.password}'`);
  await admin.query(`grant waitroom_app, waitroom_worker to ${serviceRole.name}`);

  project.provide("serverUrl", serverUrl);
  project.provide("templateDatabase", templateDatabase);
  project.provide("serviceRole", serviceRole);

  return async () => {
    await admin.query(`drop database if exists ${templateDatabase} with (force)`);
    await admin.query(`drop role if exists ${serviceRole.name}`);
    await admin.end();
    if (embedded) {
      await embedded.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  };
}
