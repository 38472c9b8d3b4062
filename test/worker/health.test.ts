import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/db/embedded.js";
import { createLogger } from "../../src/log.js";
import { probeHealth, type Scheduler, startWorker } from "../../src/worker/index.js";
import { sleep } from "../helpers/app-process.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { first, type Joined, uniqueRoomId } from "../helpers/queue.js";

/*
 * The upstream health gate against a real HTTP server that answers 200, 503,
 * never, or is not there at all, with the real scheduler probing it.
 */

const db = useTestDatabase();
const log = createLogger("warn");
let runner: Scheduler;

type Mode = "ok" | "unavailable" | "hang";
let mode: Mode = "unavailable";
let server: Server | undefined;
let port = 0;
/** Arrival times of the scheduler's probes. */
const probes: number[] = [];

async function startUpstream(): Promise<void> {
  const upstream = createServer((request, response) => {
    if (request.url !== "/health") return void response.writeHead(404).end();
    if (request.headers["user-agent"] === "waitroom-health-probe") probes.push(Date.now());
    if (mode === "hang") return; // never answers
    response.writeHead(mode === "ok" ? 200 : 503, { "content-type": "text/plain" }).end(mode);
  });
  await new Promise<void>((resolve) => upstream.listen(port, "127.0.0.1", resolve));
  port = (upstream.address() as AddressInfo).port;
  server = upstream;
}

async function stopUpstream(): Promise<void> {
  const upstream = server;
  server = undefined;
  if (!upstream) return;
  await new Promise<void>((resolve) => {
    upstream.close(() => resolve());
    upstream.closeAllConnections();
  });
}

beforeAll(async () => {
  await startUpstream();
  runner = await startWorker({ databaseUrl: db.serviceUrl, log, concurrency: 2, sweepIntervalMs: 1000 });
});
afterAll(async () => {
  await runner?.stop();
  await stopUpstream();
});

const roomHealth = async (room: string) =>
  first(
    await db.sql<{ health: string | null; detail: string | null }[]>`
      select s.health, r.health_detail as detail
        from waitroom.room_stats s join waitroom.rooms r on r.id = s.room_id where s.room_id = ${room}`,
  );

const healthIs = (room: string, health: string, detail: string) => async () => {
  const now = await roomHealth(room);
  return now.health === health && now.detail === detail;
};

const statusOf = async (ticketId: string) =>
  first(await db.sql<{ status: string }[]>`select status from waitroom.tickets where id = ${ticketId}`).status;

const admitted = (ticketId: string) => async () => (await statusOf(ticketId)) === "admitted";

const healthEvents = async (room: string) =>
  (
    await db.sql<{ data: { healthy: boolean } }[]>`
      select data from waitroom.events where room_id = ${room} and type = 'room_health' order by id`
  ).map((event) => event.data.healthy);

describe("probeHealth", () => {
  it("is healthy on 2xx only, and names what it saw without addresses", async () => {
    const url = () => `http://127.0.0.1:${port}/health`;
    mode = "ok";
    expect(await probeHealth(url())).toEqual({ healthy: true, detail: "HTTP 200" });
    expect(await probeHealth(`http://127.0.0.1:${port}/elsewhere`)).toEqual({ healthy: false, detail: "HTTP 404" });
    mode = "unavailable";
    expect(await probeHealth(url())).toEqual({ healthy: false, detail: "HTTP 503" });
    mode = "hang";
    expect(await probeHealth(url(), 300)).toEqual({ healthy: false, detail: "no answer within 300 ms" });
    const closed = await freePort(); // nothing listens there
    expect(await probeHealth(`http://127.0.0.1:${closed}/health`)).toEqual({
      healthy: false,
      detail: "connection refused",
    });
  });
});

describe("health gate", () => {
  it("pauses admission while the upstream is unhealthy or unreachable, and resumes by itself", async () => {
    mode = "unavailable";
    probes.length = 0;
    const room = uniqueRoomId("health");
    const settings = {
      tick_ms: 200,
      session_seconds: 600,
      idle_seconds: 3600,
      health_url: `http://127.0.0.1:${port}/health`,
    };
    await db.sql`select waitroom.create_room(${room}, 1, ${db.sql.json(settings)})`;
    const a = first(await db.sql<Joined[]>`select * from waitroom.join(${room})`);
    const b = first(await db.sql<Joined[]>`select * from waitroom.join(${room})`);

    // 503: the gate stays shut.
    await eventually(healthIs(room, "unhealthy", "HTTP 503"), "the room is unhealthy (HTTP 503)");
    await sleep(1_500);
    expect(await statusOf(a.ticket_id)).toBe("queued");

    // 200: admission resumes with no call from us.
    mode = "ok";
    await eventually(admitted(a.ticket_id), "a is admitted");
    expect(await roomHealth(room)).toEqual({ health: "healthy", detail: "HTTP 200" });
    await db.sql`select * from waitroom.claim(${a.ticket_id}, ${a.token})`;

    // 503 again, then the seat is freed: nobody takes it.
    mode = "unavailable";
    await eventually(healthIs(room, "unhealthy", "HTTP 503"), "the room is unhealthy (HTTP 503)");
    await db.sql`select * from waitroom.leave(${a.ticket_id}, ${a.token})`;
    await sleep(1_500);
    expect(await statusOf(b.ticket_id)).toBe("queued");

    // No answer within 2 s, then nobody listening at all: still shut, no new event.
    mode = "hang";
    await eventually(healthIs(room, "unhealthy", "no answer within 2000 ms"), "the room is unhealthy (no answer)");
    await stopUpstream();
    await eventually(healthIs(room, "unhealthy", "connection refused"), "the room is unhealthy (refused)");
    expect(await statusOf(b.ticket_id)).toBe("queued");
    expect(await healthEvents(room)).toEqual([false, true, false]);

    // Back and healthy: the next ticket is let in by itself.
    mode = "ok";
    await startUpstream();
    await eventually(admitted(b.ticket_id), "b is admitted");
    expect((await roomHealth(room)).health).toBe("healthy");
    expect(await healthEvents(room)).toEqual([false, true, false, true]);

    // Probed again and again, never twice within a second.
    const gaps = probes.slice(1).map((time, i) => time - (probes[i] as number));
    expect(probes.length).toBeGreaterThan(5);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(950);
  });
});
