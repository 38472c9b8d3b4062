/*
 * Wait your turn from a terminal: join a room, print each move in the queue,
 * claim the seat the moment it is offered, print the admission token, hold
 * the seat a while, leave.
 *
 *   npx tsx examples/node-client.ts <room> [--url http://localhost:8080] [--hold 30] [--holder user-42]
 *
 * --hold: seconds to keep the seat before leaving (Ctrl-C leaves at once).
 * --holder: join as this user; needs WAITROOM_SERVER_KEY in the environment
 * (a trusted backend's key: never ship it to a browser).
 */
import { parseArgs } from "node:util";
import { createClient, WaitroomError } from "../sdk/index.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: process.env.WAITROOM_URL ?? "http://localhost:8080" },
    hold: { type: "string", default: "30" },
    holder: { type: "string" },
  },
});
const room = positionals[0];
if (!room) {
  console.error("usage: npx tsx examples/node-client.ts <room> [--url URL] [--hold SECONDS] [--holder ID]");
  process.exit(2);
}

const client = createClient({ baseUrl: values.url });
const ticket = await client.join(room, {
  holder: values.holder,
  serverKey: process.env.WAITROOM_SERVER_KEY || undefined,
});
const place = (position: number | null | undefined) =>
  // null before a scheduled opening: the draw gives every entrant its place then.
  position === null ? "place drawn at the opening" : `position ${position}`;
console.log(`joined ${room}: ticket ${ticket.id} (${ticket.joined?.status}, ${place(ticket.joined?.position)})`);

// Ctrl-C (or the end of --hold) stops following the stream; then we leave.
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

let shown: string | undefined;
const end = await ticket.subscribe(
  (event) => {
    const { status, position, depth, eta_seconds, expires_at } = event.data;
    switch (event.type) {
      case "state": {
        if (status !== "queued") break;
        const line = `${place(position)} of ${depth}${eta_seconds === null ? "" : `, about ${eta_seconds} s to go`}`;
        if (line !== shown) console.log(line); // state also fires when only the ETA moved
        shown = line;
        break;
      }
      case "admitted":
        console.log(`admitted: claiming (the offer lapses at ${expires_at})`);
        break;
      case "active":
        console.log(`seat active until ${expires_at}`);
        break;
      case "draining":
        console.log(`session over; grace until ${expires_at}`);
        break;
      case "ended":
        console.log(`ticket ${status}${event.data.reason ? ` (${event.data.reason})` : ""}`);
        break;
      case "superseded":
        console.log("re-joined elsewhere: this ticket is no longer valid");
        break;
      case "room":
        console.log(`room changed: ${JSON.stringify(event.data.room)}`);
        break;
    }
  },
  {
    signal: stop.signal,
    autoClaim: true,
    onClaim: (claim) => {
      console.log(`admission token: ${claim.admission_token}`);
      console.log(`holding the seat for ${values.hold} s (Ctrl-C to leave now)`);
      setTimeout(() => stop.abort(), Number(values.hold) * 1000).unref();
    },
    onError: (error) => console.error(`(${error instanceof Error ? error.message : String(error)}; carrying on)`),
  },
);

if (end.reason === "aborted") {
  try {
    await ticket.leave();
    console.log("left");
  } catch (error) {
    // Already over (expired, say): nothing to give back.
    if (!(error instanceof WaitroomError)) throw error;
    console.log(`could not leave: ${error.code}`);
  }
} else {
  console.log(`done: ${end.reason}`);
}
