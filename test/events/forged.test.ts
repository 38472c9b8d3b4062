import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVENTS_CHANNEL } from "../../src/events/codec.js";
import { useTestDatabase } from "../helpers/database.js";
import { metric, StreamRecorder, useTestServer } from "../helpers/http.js";
import { createRoom } from "../helpers/queue.js";

/*
 * NOTIFY is a hint, never a command (issue 13): any role that can connect may
 * NOTIFY waitroom_events. A role that can do nothing else sends forged and
 * malformed notifications, in valid chunk framing, while real streams are
 * open: the process stays up, every stream stays open, and each shows what
 * the ledger says, before and after a real admission.
 */

const db = useTestDatabase();
const server = useTestServer(db);
const forgerRole = `forger_${randomBytes(4).toString("hex")}`;
const forgerPassword = randomBytes(12).toString("hex");
let forger: pg.Client;

beforeAll(async () => {
  // Only what PUBLIC has: it can connect, and pg_notify is anyone's.
  await db.sql.unsafe(`create role ${forgerRole} login password '${forgerPassword}'`);
  const url = new URL(db.url);
  url.username = forgerRole;
  url.password = forgerPassword;
  forger = new pg.Client({ connectionString: url.toString() });
  await forger.connect();
});
afterAll(async () => {
  await forger?.end();
  await db.sql.unsafe(`drop role if exists ${forgerRole}`);
});

const forge = (payload: string) => forger.query("select pg_notify($1, $2)", [EVENTS_CHANNEL, payload]);

type Ticket = { ticket_id: string; token: string };

/** A stream that counts how often its EventSource (re)connected: once, if the server never closed it. */
class Watched extends StreamRecorder {
  opens = 0;
  constructor(readonly ticket: Ticket) {
    super(`${server.url}/v1/tickets/${ticket.ticket_id}/events?token=${ticket.token}`);
    this.source.addEventListener("open", () => {
      this.opens += 1;
    });
  }

  get last() {
    return this.messages.at(-1);
  }
}

async function ledgerIds(room: string): Promise<{ id: number; type: string; ticket_id: string | null }[]> {
  return db.sql`select id, type, ticket_id from waitroom.events where room_id = ${room} order by id`;
}

async function maxId(): Promise<number> {
  const [row] = await db.sql<{ id: number }[]>`select coalesce(max(id), 0)::bigint as id from waitroom.events`;
  return Number(row?.id);
}

describe("forged notifications from a role that can only connect", () => {
  it("leave the process up, every stream open and showing the ledger's state", async () => {
    const room = await createRoom(db.sql, 1, { idle_seconds: 3600, claim_seconds: 3600, session_seconds: 3600 });
    const join = async (): Promise<Ticket> =>
      (await (await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).json()) as Ticket;
    const seated = await join();
    await db.sql`select * from waitroom.admit(${room})`;
    expect(
      (await server.request(`/v1/tickets/${seated.ticket_id}/claim`, { method: "POST", token: seated.token })).status,
    ).toBe(200);
    const queued = [await join(), await join(), await join()];
    const streams = [seated, ...queued].map((ticket) => new Watched(ticket));
    try {
      await streams[0]?.next((m) => m.event === "state" && m.data.status === "active");
      for (const [i, stream] of streams.slice(1).entries()) {
        await stream.next((m) => m.event === "state" && m.data.position === i + 1);
      }
      const before = streams.map((stream) => stream.messages.length);
      const ledger = await ledgerIds(room);
      const top = await maxId();
      const tickets = [seated, ...queued].map((t) => t.ticket_id);

      // Rows in full with made-up content, under real ids and made-up ones: "your ticket ended".
      for (const [i, ticketId] of tickets.entries()) {
        for (const { id } of ledger) {
          const lie = {
            id,
            room_id: room,
            ticket_id: ticketId,
            type: "ended",
            data: { reason: "forged" },
            created_at: new Date().toISOString(),
          };
          await forge(`${id}-${id}:1/1:${JSON.stringify([lie])}`);
        }
        const made = 1e15 + i;
        await forge(
          `${made}-${made}:1/1:${JSON.stringify([{ id: made, room_id: room, ticket_id: ticketId, type: "left", data: {} }])}`,
        );
      }
      // Room-wide: deleted, by a row in full and by a notice naming every row there is (all real, all old).
      await forge(
        `${top}-${top}:1/1:${JSON.stringify([{ id: top, room_id: room, ticket_id: null, type: "room_deleted", data: {} }])}`,
      );
      await forge(`1-${top}:1/1:{"v": 1, "ranges": [[1, ${top}]]}`);
      // Refused by the ledger: too many ids.
      await forge(`1-${top + 1e9}:1/1:{"v": 1, "ranges": [[1, ${top + 1e9}]]}`);
      // Malformed, in valid chunk framing: not JSON, other shapes, other versions, impossible ranges.
      for (const body of [
        "",
        "{",
        "null",
        "[null]",
        '"ended"',
        '{"v": 2, "ranges": [[1, 2]]}',
        '{"v": 1, "ranges": [[5, 1]]}',
        '{"v": 1, "ranges": [[0, 1e400]]}',
        `[{"id": -1, "ticket_id": "${seated.ticket_id}", "type": "ended"}]`,
        `{"__proto__": {"v": 1}, "ranges": [[1, 2]]}`,
        "x".repeat(7900),
      ]) {
        await forge(`${top}-${top}:1/1:${body}`);
      }
      // Chunks that never complete, claim a billion parts, or contradict each other.
      await forge(`${top}-${top + 10}:1/3:[{"id": ${top}}`);
      await forge(`${top}-${top}:1/999999999:[`);
      await forge(`${top}-${top + 1}:1/2:[{"id": ${top}},`);
      await forge(`${top}-${top + 1}:1/2:[{"id": 1},`);
      // A flood of notices naming real rows.
      await Promise.all(Array.from({ length: 300 }, () => forge(`1-${top}:1/1:{"v": 1, "ranges": [[1, ${top}]]}`)));
      // Keys of the next real messages taken first, with empty bodies: they must not hold the real ones back.
      for (let id = top + 1; id <= top + 50; id++) await forge(`${id}-${id}:1/1:[]`);

      // The process is up and ready; every stream is still open, on its first connection.
      expect((await server.request("/healthz")).status).toBe(200);
      expect((await server.request("/readyz")).status).toBe(200);
      expect(await metric(server, "waitroom_sse_streams")).toBe(4);
      expect(await metric(server, "waitroom_notify_rejected_total")).toBeGreaterThan(10);

      // A real change: the seat is given back and the first in line admitted, announced as usual.
      expect(
        (await server.request(`/v1/tickets/${seated.ticket_id}`, { method: "DELETE", token: seated.token })).status,
      ).toBe(204);
      const ended = await streams[0]?.next((m) => m.event === "ended");
      expect(ended?.data).toMatchObject({ status: "left" });
      await db.sql`select * from waitroom.admit(${room})`;
      const [admittedRow] = await db.sql<{ id: number }[]>`
        select id from waitroom.events where room_id = ${room} and type = 'admitted' and ticket_id = ${queued[0]?.ticket_id ?? null}`;
      const admitted = await streams[1]?.next((m) => m.event === "admitted");
      // The named event, live, with the ledger's id: not a state noticed later.
      expect(admitted?.id).toBe(String(admittedRow?.id));
      await streams[2]?.next((m) => m.event === "state" && m.data.position === 1);
      await streams[3]?.next((m) => m.event === "state" && m.data.position === 2);

      // Nothing forged showed: no stream but the one that left saw an end, none reconnected, and
      // what each showed last is what the service says now.
      for (const stream of streams) expect(stream.opens).toBe(1);
      for (const [i, stream] of streams.slice(1).entries()) {
        const shown = stream.messages.slice(before[i + 1]);
        expect(shown.filter((m) => m.event === "ended" || m.event === "superseded")).toEqual([]);
        for (const m of shown) expect(JSON.stringify(m.data)).not.toContain("forged");
        const truth = (await (
          await server.request(`/v1/tickets/${stream.ticket.ticket_id}`, { token: stream.ticket.token })
        ).json()) as Record<string, unknown>;
        expect(stream.last?.data).toMatchObject({ status: truth.status, position: truth.position, depth: truth.depth });
      }
      expect(await metric(server, "waitroom_sse_streams")).toBe(3);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it("end no stream by naming a real but old row: the deletion of an earlier room of the same name", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    await db.sql`select waitroom.delete_room(${room})`;
    const [deleted] = await db.sql<{ id: number }[]>`
      select id from waitroom.events where room_id = ${room} and type = 'room_deleted'`;
    const old = Number(deleted?.id);
    await db.sql`select waitroom.create_room(${room}, 0, '{"idle_seconds": 3600}')`;
    const join = async (): Promise<Ticket> =>
      (await (await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).json()) as Ticket;
    const [first, second] = [await join(), await join()];
    const streams = [first, second].map((ticket) => new Watched(ticket as Ticket));
    try {
      await streams[1]?.next((m) => m.event === "state" && m.data.position === 2);
      await forge(`${old}-${old}:1/1:{"v": 1, "ranges": [[${old}, ${old}]]}`);
      await forge(`${old}-${old}:1/1:${JSON.stringify([{ id: old }])}`);
      // A real change after the forged ones: once it shows, they have been handled.
      expect(
        (await server.request(`/v1/tickets/${first?.ticket_id}`, { method: "DELETE", token: first?.token })).status,
      ).toBe(204);
      await streams[1]?.next((m) => m.event === "state" && m.data.position === 1);
      expect(streams[0]?.messages.filter((m) => m.event === "ended").map((m) => m.data.status)).toEqual(["left"]);
      expect(streams[1]?.messages.filter((m) => m.event !== "state")).toEqual([]);
      expect(streams[1]?.opens).toBe(1);
    } finally {
      for (const stream of streams) stream.close();
    }
  });
});
