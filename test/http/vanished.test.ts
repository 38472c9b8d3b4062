import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { metric, StreamRecorder, useTestServer } from "../helpers/http.js";
import { createRoom } from "../helpers/queue.js";

/*
 * A client that vanishes without closing its connection (no FIN: a phone
 * that lost its network) is only noticed by TCP some 15 minutes later, and
 * its stream counts as presence until then. Streams are therefore ended at
 * their age (WAITROOM_STREAM_MAX_AGE_MS): a live client reconnects at once
 * and resumes, a vanished one is gone.
 */

const db = useTestDatabase();
const server = useTestServer(db, { env: { WAITROOM_STREAM_MAX_AGE_MS: "1000", WAITROOM_KEEPALIVE_MS: "1000" } });

type Ticket = { ticket_id: string; token: string };

describe("streams past their age", () => {
  it("are ended: a vanished client's stream is reaped, a live client reconnects and misses nothing", async () => {
    const room = await createRoom(db.sql, 0, { idle_seconds: 3600, claim_seconds: 3600 });
    const join = async () =>
      (await (await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).json()) as Ticket;
    const [gone, live] = [await join(), await join()];

    // The vanishing client: asks for the stream, reads the headers, then never reads or closes again.
    const { port, hostname } = new URL(server.url);
    const socket = connect(Number(port), hostname);
    try {
      socket.write(
        `GET /v1/tickets/${gone.ticket_id}/events?token=${gone.token} HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n\r\n`,
      );
      await new Promise<void>((resolve) => socket.once("data", () => resolve()));
      socket.pause(); // from now on it reads nothing and never closes
      const stream = new StreamRecorder(`${server.url}/v1/tickets/${live.ticket_id}/events?token=${live.token}`);
      let opens = 0;
      stream.source.addEventListener("open", () => {
        opens += 1;
      });
      try {
        await stream.next((m) => m.event === "state" && m.data.position === 2);
        expect(await metric(server, "waitroom_sse_streams")).toBe(2);

        // Both reach their age; only the live client comes back.
        await eventually(
          async () => (await metric(server, "waitroom_sse_streams_recycled_total")) >= 2,
          "both recycled",
        );
        await eventually(
          async () => opens >= 2 && (await metric(server, "waitroom_sse_streams")) === 1,
          "live is back",
        );
        // What the server sent the vanished client was waiting unread: its stream ended, the server closed it.
        let unread = "";
        const closedByServer = new Promise<void>((resolve) => socket.once("end", () => resolve()));
        socket.on("data", (data: Buffer) => {
          unread += data.toString();
        });
        socket.resume();
        await closedByServer;
        expect(unread).toContain(": stream recycled, reconnect\n");

        // The live stream resumed: a change after the recycle arrives as its named event.
        await db.sql`select waitroom.configure_room(${room}, '{"capacity": 2}')`;
        await db.sql`select * from waitroom.admit(${room})`;
        const admitted = await stream.next((m) => m.event === "admitted");
        expect(admitted.data).toMatchObject({ ticket_id: live.ticket_id, status: "admitted" });
      } finally {
        stream.close();
      }
    } finally {
      socket.destroy();
    }
  });
});
