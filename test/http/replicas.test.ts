import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/db/embedded.js";
import { killLaunched, type Running, startServing, terminate } from "../helpers/app-process.js";
import { useTestDatabase } from "../helpers/database.js";
import { StreamRecorder, testEnvironment } from "../helpers/http.js";
import { createRoom } from "../helpers/queue.js";

/*
 * Separate app processes (as npm start runs them) on one database, as behind
 * a load balancer: state changes made through one reach streams on another,
 * and a stream survives its app's restart through Last-Event-ID.
 */

const db = useTestDatabase();
afterAll(killLaunched);

type Ticket = { ticket_id: string; token: string; events_url: string };

async function join(base: string, room: string): Promise<Ticket> {
  const response = await fetch(`${base}/v1/rooms/${room}/tickets`, { method: "POST" });
  expect(response.status).toBe(202);
  return (await response.json()) as Ticket;
}

async function leave(base: string, ticket: Ticket): Promise<void> {
  const response = await fetch(`${base}/v1/tickets/${ticket.ticket_id}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${ticket.token}` },
  });
  expect(response.status).toBe(204);
}

async function startApp(port: number): Promise<Running> {
  const env = testEnvironment({
    PORT: String(port),
    DATABASE_URL: db.serviceUrl,
    WAITROOM_SHUTDOWN_TIMEOUT_MS: "5000",
    // debug logs every request: none may show a token (the stream takes it in the query string).
    LOG_LEVEL: "debug",
  });
  return startServing(env, port);
}

/** Ids of the announced ledger events of a ticket (and its room) after `afterId`. */
async function ledgerIds(ticketId: string, afterId: number): Promise<string[]> {
  const rows = await db.sql<{ id: number }[]>`select id from waitroom.ticket_events(${ticketId}, ${afterId})`;
  return rows.map((row) => String(row.id));
}

describe("two app processes on one database", { timeout: 120_000 }, () => {
  it("a stream on A sees the admission caused by a leave sent to B, and resumes across A's restart", async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    let appA = await startApp(portA);
    const firstA = appA;
    const appB = await startApp(portB);
    const [a, b] = [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`];

    const room = await createRoom(db.sql, 1, { idle_seconds: 3600, claim_seconds: 3600 });
    const [start] = await db.sql<{ id: number }[]>`select coalesce(max(id), 0) as id from waitroom.events`;
    const startId = start?.id ?? 0;
    const holder = await join(b, room); // admitted by a scheduler tick
    const waiting = await join(a, room);
    const third = await join(b, room);
    const stream = new StreamRecorder(`${a}${waiting.events_url}?token=${waiting.token}`);
    try {
      await stream.next((m) => m.event === "state" && m.data.status === "queued");
      await stream.next((m) => m.event === "state" && m.data.position === 1, 15_000);

      await leave(b, holder);
      const admitted = await stream.next((m) => m.event === "admitted", 15_000);
      expect(admitted.data).toMatchObject({ ticket_id: waiting.ticket_id, status: "admitted" });

      // A goes away; while it is down the ticket leaves through B (an event A's stream must not miss).
      const exit = await terminate(appA);
      expect(exit.code).toBe(0);
      await leave(b, waiting);
      const afterLeft = stream.messages.length;
      appA = await startApp(portA);
      const ended = await stream.next((m) => m.event === "ended", 20_000, afterLeft);
      expect(ended.data).toMatchObject({ ticket_id: waiting.ticket_id, status: "left" });

      // Every announced ledger event of the ticket reached the client exactly once, in order.
      const received = stream.messages.filter((m) => m.event !== "state" && m.id !== "").map((m) => m.id);
      expect(received).toEqual(await ledgerIds(waiting.ticket_id, startId));
      expect(received.length).toBeGreaterThanOrEqual(2);
    } finally {
      stream.close();
      await leave(b, third).catch(() => {});
    }
    expect((await terminate(appA)).code).toBe(0);
    expect((await terminate(appB)).code).toBe(0);
    const logs = [firstA, appA, appB].map((app) => app.stdout).join("\n");
    expect(logs).toContain('"route":"/v1/tickets/:id/events"');
    for (const ticket of [holder, waiting, third]) expect(logs).not.toContain(ticket.token);
  });
});
