import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, metric, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

/*
 * Room caps: the most tickets a room queues at once (max_queued), and the most open streams of
 * one ticket (WAITROOM_STREAMS_PER_TICKET: a newer stream ends the oldest).
 */

const db = useTestDatabase();
const server = useTestServer(db);

async function createRoom(settings: Record<string, unknown>): Promise<string> {
  const id = uniqueRoomId();
  const response = await server.request(`/v1/rooms/${id}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 1, ...settings },
  });
  expect(response.status).toBe(201);
  return id;
}

const join = (room: string, holder?: string) =>
  server.request(`/v1/rooms/${room}/tickets`, {
    method: "POST",
    ...(holder === undefined ? {} : { token: SERVER_KEY, body: { holder } }),
  });

async function ledger(room: string) {
  const [row] = await db.sql<{ tickets: string; events: string }[]>`
    select (select count(*) from waitroom.tickets where room_id = ${room}) as tickets,
           (select count(*) from waitroom.events where room_id = ${room}) as events`;
  return row;
}

describe("a room's queue cap (max_queued)", () => {
  it("refuses joins with room_full once full, changing nothing; a live holder may still re-join", async () => {
    const room = await createRoom({ max_queued: 2 });
    const read = await server.request(`/v1/rooms/${room}`, { token: ADMIN_KEY });
    expect(await read.json()).toMatchObject({ max_queued: 2 });
    expect((await join(room)).status).toBe(202);
    expect((await join(room, "alice")).status).toBe(202);
    const before = await ledger(room);
    for (const holder of [undefined, "bob"]) {
      const refused = await join(room, holder);
      expect(refused.status).toBe(409);
      expect(await refused.json()).toEqual({ error: { code: "room_full", message: expect.any(String) } });
    }
    expect(await ledger(room)).toEqual(before);
    expect((await join(room, "alice")).status).toBe(202);
  });

  it("admits exactly the cap of joins arriving together, in batches", async () => {
    const room = await createRoom({ max_queued: 5 });
    const statuses = await Promise.all(Array.from({ length: 40 }, () => join(room).then((r) => r.status)));
    expect(statuses.filter((status) => status === 202)).toHaveLength(5);
    expect(statuses.filter((status) => status === 409)).toHaveLength(35);
    expect(Number((await ledger(room))?.tickets)).toBe(5);
    const [row] = await db.sql<{ depth: string }[]>`select waitroom._depth(${room}) as depth`;
    expect(Number(row?.depth)).toBe(5);
  });

  it("can be lifted", async () => {
    const room = await createRoom({ max_queued: 1 });
    expect((await join(room)).status).toBe(202);
    expect((await join(room)).status).toBe(409);
    const lifted = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { max_queued: null },
    });
    expect(lifted.status).toBe(200);
    expect((await join(room)).status).toBe(202);
  });
});

/** Read a stream's text until `done` says enough, or the stream ends. */
async function readUntil(
  response: Response,
  done: (text: string) => boolean,
): Promise<{ text: string; ended: boolean }> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) return { text, ended: true };
    text += decoder.decode(value, { stream: true });
    if (done(text)) {
      void reader.cancel();
      return { text, ended: false };
    }
  }
}

describe("streams per ticket", () => {
  it("ends the oldest stream of a ticket when a newer one goes over the cap (2)", async () => {
    const room = await createRoom({ idle_seconds: 3600 });
    const { ticket_id: id, token } = (await (await join(room)).json()) as { ticket_id: string; token: string };
    const url = `${server.url}/v1/tickets/${id}/events?token=${token}`;
    const before = await metric(server, "waitroom_sse_streams");
    const controller = new AbortController();
    const first = await fetch(url, { signal: controller.signal });
    const second = await fetch(url, { signal: controller.signal });
    expect(await metric(server, "waitroom_sse_streams")).toBe(before + 2);
    const third = await fetch(url, { signal: controller.signal });
    expect([first.status, second.status, third.status]).toEqual([200, 200, 200]);
    // The first is told to wait before reconnecting, and ended.
    const oldest = await readUntil(first, () => false);
    expect(oldest.ended).toBe(true);
    expect(oldest.text).toContain("retry: 30000\n: replaced by a newer stream of this ticket\n\n");
    expect(await metric(server, "waitroom_sse_streams")).toBe(before + 2);
    // The newer two still stream.
    for (const live of [second, third]) {
      expect((await readUntil(live, (text) => text.includes("event: state"))).ended).toBe(false);
    }
    controller.abort();
  });
});
