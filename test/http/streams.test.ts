import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { sseResponse } from "../../src/http/sse.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { metric as metricOf, SERVER_KEY, StreamRecorder, useTestServer } from "../helpers/http.js";
import { createRoom, type Joined } from "../helpers/queue.js";

const db = useTestDatabase({ max: 20 });
const server = useTestServer(db, { env: { WAITROOM_KEEPALIVE_MS: "1000", WAITROOM_PRESENCE_MS: "1000" } });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Tickets joined in SQL (fast), idle for an hour without presence. */
async function joinMany(room: string, count: number): Promise<Joined[]> {
  // offset 0 keeps the subquery (and its one join per row) from being flattened into two calls per row.
  return db.sql<Joined[]>`
    select (j).ticket_id, (j).token
      from (select waitroom.join(${room}) as j from generate_series(1, ${count}) offset 0) joined`;
}

function streamOf(ticket: Joined): StreamRecorder {
  return new StreamRecorder(`${server.url}/v1/tickets/${ticket.ticket_id}/events?token=${ticket.token}`);
}

const metric = (series: string) => metricOf(server, series);

/** The stream's text up to the first occurrence of `marker` (within 5 s); then the stream is closed unless `keepOpen`. */
async function readUntil(response: Response, marker: string, options: { keepOpen?: boolean } = {}): Promise<string> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + 5_000;
  while (!text.includes(marker) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  if (options.keepOpen) reader.releaseLock();
  else await reader.cancel();
  return text;
}

async function lastEventId(): Promise<number> {
  const [row] = await db.sql<{ id: number }[]>`select coalesce(max(id), 0) as id from waitroom.events`;
  return row?.id ?? 0;
}

describe("event streams", () => {
  it("deliver a batch far over 8000 bytes intact: 400 admissions named by one compact notice", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const tickets = await joinMany(room, 400);
    const watched = tickets.filter((_, i) => i % 20 === 0);
    const streams = watched.map(streamOf);
    try {
      await Promise.all(streams.map((s) => s.next((m) => m.event === "state")));
      const chunksBefore = await metric("waitroom_notify_chunks_total");
      await db.sql`select waitroom.configure_room(${room}, '{"capacity": 400}')`;
      const admitted = await db.sql`select * from waitroom.admit(${room})`;
      expect(admitted).toHaveLength(400);
      const messages = await Promise.all(streams.map((s) => s.next((m) => m.event === "admitted")));
      expect(messages.map((m) => m.data.ticket_id)).toEqual(watched.map((t) => t.ticket_id));
      // 400 events of ~250 bytes each cannot fit one payload: one notice names them, the process reads
      // them. The other payload is room_configured.
      expect((await metric("waitroom_notify_chunks_total")) - chunksBefore).toBe(2);
      expect(await metric("waitroom_notify_incomplete_total")).toBe(0);
    } finally {
      for (const s of streams) s.close();
    }
  });

  it("miss no event when the LISTEN backend is terminated while events flow", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600, claim_seconds: 3600 });
    const tickets = await joinMany(room, 12);
    const streams = tickets.map(streamOf);
    try {
      await Promise.all(streams.map((s) => s.next((m) => m.event === "state")));
      const startId = await lastEventId();
      const firstPid = server.listener.backendPid;
      expect(firstPid).toEqual(expect.any(Number));
      for (let capacity = 1; capacity <= tickets.length; capacity++) {
        // A room event for every stream, then one admission.
        await db.sql`select waitroom.configure_room(${room}, ${db.sql.json({ capacity })})`;
        await db.sql`select * from waitroom.admit(${room})`;
        if (capacity === 4) {
          const [killed] = await db.sql`select pg_terminate_backend(${firstPid}) as ok`;
          expect(killed?.ok).toBe(true);
        }
        await sleep(40);
      }
      for (const [i, ticket] of tickets.entries()) {
        const expected = (
          await db.sql<{ id: number }[]>`select id from waitroom.ticket_events(${ticket.ticket_id}, ${startId})`
        ).map((row) => String(row.id));
        expect(expected.length).toBe(tickets.length + 1); // 12 room events and its admission
        const stream = streams[i] as StreamRecorder;
        await stream.next((m) => m.event === "admitted");
        const received = () => stream.messages.filter((m) => m.id !== "").map((m) => m.id);
        for (let waited = 0; received().length < expected.length && waited < 10_000; waited += 100) await sleep(100);
        expect([...received()].sort()).toEqual([...expected].sort());
      }
      expect(server.listener.backendPid).not.toBe(firstPid);
      expect(await metric("waitroom_listen_reconnects_total")).toBeGreaterThanOrEqual(1);
    } finally {
      for (const s of streams) s.close();
    }
  });

  it("re-read a room's positions with one query per change, not one per subscriber", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const tickets = await joinMany(room, 30);
    const streams = tickets.map(streamOf);
    try {
      await Promise.all(streams.map((s) => s.next((m) => m.event === "state")));
      const queriesBefore = await metric("waitroom_position_queries_total");
      await db.sql`select waitroom.configure_room(${room}, '{"capacity": 1}')`;
      await db.sql`select * from waitroom.admit(${room})`;
      // Everyone behind the admitted ticket moved up one place.
      await Promise.all(
        streams.slice(1).map((s, i) => s.next((m) => m.event === "state" && m.data.position === i + 1)),
      );
      const queries = (await metric("waitroom_position_queries_total")) - queriesBefore;
      // One per announced change, plus the periodic re-reads (every 300 ms here) while we waited.
      expect(queries).toBeGreaterThanOrEqual(1);
      expect(queries).toBeLessThan(10);
    } finally {
      for (const s of streams) s.close();
    }
  });

  it("tell a re-joined ticket's old stream that it was superseded", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const join = async () => {
      const response = await server.request(`/v1/rooms/${room}/tickets`, {
        method: "POST",
        token: SERVER_KEY,
        body: { holder: "ada" },
      });
      return (await response.json()) as Joined;
    };
    const first = await join();
    const stream = streamOf(first);
    try {
      await stream.next((m) => m.event === "state");
      const second = await join();
      expect(second.ticket_id).toBe(first.ticket_id);
      const superseded = await stream.next((m) => m.event === "superseded");
      expect(superseded.data).toMatchObject({ ticket_id: first.ticket_id, status: "superseded" });
    } finally {
      stream.close();
    }
  });

  it("count an open stream as presence and send keep-alive comments", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600 });
    const [ticket] = await joinMany(room, 1);
    if (!ticket) throw new Error("no ticket");
    await db.sql`update waitroom.tickets set last_seen_at = now() - interval '30 minutes' where id = ${ticket.ticket_id}`;
    const response = await server.request(`/v1/tickets/${ticket.ticket_id}/events`, { token: ticket.token });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const seen = async () => {
      const [row] = await db.sql<{ seen: boolean }[]>`
        select last_seen_at > now() - interval '1 minute' as seen from waitroom.tickets where id = ${ticket.ticket_id}`;
      return row?.seen === true;
    };
    expect(await seen()).toBe(false);
    // Kept open until presence is seen: the keep-alive and presence timers (each every second here)
    // drift apart, so a stream closed at its first keep-alive may be gone before the next presence round.
    const text = await readUntil(response, ": keep-alive", { keepOpen: true });
    expect(text).toMatch(/^retry: \d+\n/);
    expect(text).toContain("event: state\n");
    expect(text).toContain(": keep-alive\n");
    try {
      await eventually(seen, "a presence round recorded the open stream");
    } finally {
      await response.body?.cancel();
    }
  });

  it("resume after Last-Event-ID with what was missed, then the snapshot", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600, claim_seconds: 3600 });
    const [ticket] = await joinMany(room, 1);
    if (!ticket) throw new Error("no ticket");
    const before = await lastEventId();
    await db.sql`select waitroom.configure_room(${room}, '{"capacity": 1}')`;
    await db.sql`select * from waitroom.admit(${room})`;
    const response = await server.request(`/v1/tickets/${ticket.ticket_id}/events`, {
      token: ticket.token,
      headers: { "last-event-id": String(before) },
    });
    const text = await readUntil(response, "event: state");
    const names = [...text.matchAll(/^event: (\w+)$/gm)].map((match) => match[1]);
    expect(names).toEqual(["room", "admitted", "state"]);
  });
});

describe("a slow stream client", () => {
  it("is cut off once its buffer is full, instead of holding memory", async () => {
    const bufferBytes = 64 * 1024;
    let gone = 0;
    let accepted = 0;
    let queuedAtCut = -1;
    const served = new Promise<void>((resolve) => {
      const httpServer = createServer((_request, response) => {
        const { client, start } = sseResponse(response, bufferBytes, () => gone++);
        expect(start()).toBe(true);
        // The client reads nothing: the kernel's buffers fill, then ours, then it is cut.
        const chunk = "x".repeat(10_000);
        const writeMore = () => {
          for (let i = 0; i < 100; i++) {
            if (!client.write(chunk)) {
              queuedAtCut = response.writableLength;
              httpServer.close();
              resolve();
              return;
            }
            accepted += chunk.length;
          }
          if (accepted < 1_000_000_000) setImmediate(writeMore);
        };
        writeMore();
      });
      httpServer.listen(0, "127.0.0.1", () => {
        const { port } = httpServer.address() as AddressInfo;
        const socket = connect(port, "127.0.0.1", () => {
          socket.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
          socket.pause();
        });
        socket.on("error", () => {});
      });
    });
    await served;
    expect(gone).toBe(1);
    // Cut when what waits in the process passed the bound, not after a gigabyte.
    expect(accepted).toBeLessThan(1_000_000_000);
    expect(queuedAtCut).toBeGreaterThan(bufferBytes);
    expect(queuedAtCut).toBeLessThanOrEqual(bufferBytes + 10_000);
  });
});
