import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { loadConfig } from "../../src/config/index.js";
import { createSql } from "../../src/db/client.js";
import { type Database, openDatabase } from "../../src/db/database.js";
import { freePort } from "../../src/db/embedded.js";
import { migrate } from "../../src/db/migrate.js";
import type { joinResponse } from "../../src/http/contracts.js";
import { type HttpService, startHttp } from "../../src/http/server.js";
import { createLogger } from "../../src/log.js";
import { type Scheduler, startWorker } from "../../src/worker/index.js";
import { eventually } from "../helpers/eventually.js";
import { StreamRecorder, testEnvironment } from "../helpers/http.js";

/*
 * A database restart under a running service, on a PostgreSQL of this file's
 * own (the shared test server must stay up for the other files): requests
 * during the outage get 503 unavailable (never 500), nothing acknowledged is
 * lost, and afterwards admission and the open streams carry on by themselves.
 */

const log = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
const dataDir = join(tmpdir(), `waitroom-restart-${randomBytes(5).toString("hex")}`);
let postgres: Database | undefined;
let http: HttpService | undefined;
let scheduler: Scheduler | undefined;

afterAll(async () => {
  await scheduler?.stop().catch(() => {});
  await http?.close().catch(() => {});
  await postgres?.close();
  await rm(dataDir, { recursive: true, force: true });
}, 60_000);

type Ticket = z.infer<typeof joinResponse>;

describe("a restarted database", { timeout: 120_000 }, () => {
  it("answers 503 during the outage, loses nothing and carries on by itself afterwards", async () => {
    const port = await freePort();
    // The embedded database as `start` opens it: the service connects as its least-privileged role.
    const config = loadConfig({ WAITROOM_DATA_DIR: dataDir, WAITROOM_EMBEDDED_PG_PORT: String(port) });
    const start = () => openDatabase(config, log);
    postgres = await start();
    const url = postgres.url;
    await migrate(postgres.migrateUrl, log);
    http = await startHttp({ databaseUrl: url, config: loadConfig(testEnvironment()), log });
    scheduler = await startWorker({ databaseUrl: url, log, concurrency: 2, sweepIntervalMs: 1000 });
    const base = http.url;
    const sql = createSql(postgres.migrateUrl, { max: 1 });
    await sql`select waitroom.create_room('encore', 1, '{"idle_seconds": 3600, "claim_seconds": 3600}')`;
    await sql.end();

    const join = async () => {
      const response = await fetch(`${base}/v1/rooms/encore/tickets`, { method: "POST" });
      return { status: response.status, body: (await response.json()) as Ticket & { error?: { code: string } } };
    };
    const seated = (await join()).body;
    const waiting = (await join()).body;
    const stream = new StreamRecorder(`${base}${waiting.events_url}?token=${waiting.token}`);
    try {
      await stream.next((m) => m.event === "state" && m.data.position === 1, 15_000);

      await postgres.close();
      const during = await join();
      expect(during.status).toBe(503);
      expect(during.body).toEqual({ error: { code: "unavailable", message: expect.any(String) } });
      expect((await fetch(`${base}/readyz`)).status).toBe(503);

      postgres = await start();
      await eventually(async () => (await fetch(`${base}/readyz`)).status === 200, "ready again", 30_000);

      // Both tickets acknowledged before the outage are still there, and the seat moves on.
      const left = await fetch(`${base}/v1/tickets/${seated.ticket_id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${seated.token}` },
      });
      expect(left.status).toBe(204);
      const admitted = await stream.next((m) => m.event === "admitted", 20_000);
      expect(admitted.data).toMatchObject({ ticket_id: waiting.ticket_id, status: "admitted" });
      expect((await join()).status).toBe(202);
    } finally {
      stream.close();
    }
  });
});
