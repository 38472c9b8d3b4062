import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StreamSettings } from "../../src/config/index.js";
import { connectSql, type Sql } from "../../src/db/client.js";
import { Hub, type StreamClient } from "../../src/events/hub.js";
import { createLogger } from "../../src/log.js";
import { createMetrics } from "../../src/metrics.js";
import { roomEvents, streamEventTypes, ticketStates } from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { createRoom } from "../helpers/queue.js";

/*
 * How a hub re-reads a room (src/events/hub.ts), against the real SQL, with the hub's clock in the
 * test's hands and no timer of its own firing: the periodic re-read leaves out streams read lately,
 * a read overtaken by an announcement is dropped for the one that follows it, once in a row, a
 * delivery asks for its rooms' reads before it writes its events, and keep-alive comments go only to
 * streams left quiet.
 */

const db = useTestDatabase();
// Long enough that the hub's own timers never fire during the file.
const REFRESH_MS = 3_600_000;
const settings: StreamSettings = {
  keepAliveMs: 3_600_000,
  refreshMs: REFRESH_MS,
  presenceMs: 3_600_000,
  bufferBytes: 1 << 20,
  maxAgeMs: 0,
  perTicket: 4,
};

let sql: Sql;
let clock = 0;
let metrics: ReturnType<typeof createMetrics>;
let hub: Hub;
/** What the hub asked the database and wrote to its streams, in order, while a test records it. */
const order: string[] = [];

beforeAll(async () => {
  sql = await connectSql(db.serviceUrl, {
    max: 4,
    onQuery: (statement) => {
      if (statement.includes("waitroom.positions(")) order.push("read");
    },
  });
  metrics = createMetrics();
  hub = await createHub();
});

/** A hub on the file's connections, metrics and clock. */
async function createHub(options: { readSlice?: number } = {}): Promise<Hub> {
  return new Hub({
    sql,
    log: createLogger("silent"),
    metrics,
    settings,
    readState: async (presented) => {
      const [state] = await ticketStates(sql, [presented]);
      if (!state) throw new Error("ticket_states returned no row");
      return state;
    },
    streamEvents: await streamEventTypes(sql),
    now: () => clock,
    ...options,
  });
}
afterAll(async () => {
  hub?.close();
  await sql?.end({ timeout: 5 });
});

type Ticket = { ticket_id: string; token: string };

/** A stream's client that keeps the `state` events written to it. */
class Recorder implements StreamClient {
  readonly positions: (number | null)[] = [];
  keepAlives = 0;
  write(text: string): boolean {
    if (text === ": keep-alive\n\n") this.keepAlives += 1;
    const event = /^event: (\w+)$/m.exec(text)?.[1];
    if (event) order.push(event);
    const match = /^event: state\ndata: (.*)$/m.exec(text);
    if (match?.[1]) this.positions.push((JSON.parse(match[1]) as { position: number | null }).position);
    return true;
  }
  close(): void {}
}

async function joinAll(room: string, count: number): Promise<Ticket[]> {
  return db.sql<Ticket[]>`select ticket_id, token from waitroom.join_many(${room}, ${count})`;
}

async function open(ticket: Ticket): Promise<Recorder> {
  const client = new Recorder();
  const opened = await hub.open({ ticketId: ticket.ticket_id, token: ticket.token }, client);
  expect(opened.kind).toBe("streaming");
  return client;
}

const counter = async (name: "positionQueries" | "positionReadsDropped") =>
  (await metrics[name].get()).values[0]?.value ?? 0;

/** Until no re-read of the room is running or asked for (the hub's queries are real, so they take real time). */
async function settled(): Promise<void> {
  await eventually(async () => {
    const [row] = await db.sql<{ running: number }[]>`
      select count(*)::int as running from pg_stat_activity
       where datname = current_database() and query like '%waitroom.positions(%' and state = 'active' and pid <> pg_backend_pid()`;
    return row?.running === 0;
  }, "no positions read is running");
}

describe("the periodic re-read", () => {
  it("leaves out streams read within half the period, and reads them once they are older", async () => {
    const room = await createRoom(db.sql, 1);
    const [head, early, late] = await joinAll(room, 3);
    if (!head || !early || !late) throw new Error("join_many returned fewer tickets");
    clock = 0;
    const earlyClient = await open(early);
    clock = 600;
    const lateClient = await open(late);
    expect([earlyClient.positions, lateClient.positions]).toEqual([[2], [3]]);
    // Nothing is announced: the head leaves the queue without the hub hearing of it.
    await db.sql`select * from waitroom.leave(${head.ticket_id}, ${head.token})`;

    const before = await counter("positionQueries");
    clock = 600 + REFRESH_MS / 2 - 1; // late's state is 1 ms short of half the period old, early's 600 ms past it
    hub.refresh(room, "stale");
    await eventually(() => earlyClient.positions.length === 2, "the early stream was re-read");
    await settled();
    expect(earlyClient.positions).toEqual([2, 1]);
    expect(lateClient.positions).toEqual([3]);

    clock = 600 + REFRESH_MS / 2;
    hub.refresh(room, "stale");
    await eventually(() => lateClient.positions.length === 2, "the late stream was re-read");
    expect(lateClient.positions).toEqual([3, 2]);
    expect(await counter("positionQueries")).toBe(before + 2);

    // Both were just read: a periodic re-read now has nobody to read and asks the database nothing.
    hub.refresh(room, "stale");
    await settled();
    expect(await counter("positionQueries")).toBe(before + 2);
    // An announcement reads every stream of the room, however lately read.
    hub.refresh(room);
    await eventually(async () => (await counter("positionQueries")) === before + 3, "the room was re-read");
  });
});

describe("a re-read overtaken by an announcement", () => {
  it("is dropped for the read that follows it, but never twice in a row", async () => {
    const room = await createRoom(db.sql, 1);
    const [head, second, watched] = await joinAll(room, 3);
    if (!head || !second || !watched) throw new Error("join_many returned fewer tickets");
    const client = await open(watched);
    expect(client.positions).toEqual([3]);
    const dropped = await counter("positionReadsDropped");

    /** The hub's positions read waiting on the lock a test transaction holds. */
    const blocked = () =>
      eventually(async () => {
        const [row] = await db.sql<{ waiting: number }[]>`
          select count(*)::int as waiting from pg_stat_activity
           where datname = current_database() and query like '%waitroom.positions(%' and wait_event_type = 'Lock'`;
        return row?.waiting === 1;
      }, "the hub's read waits on the lock");

    // Two transactions in turn hold every read of tickets off: the first read waits on the first; the
    // second transaction queues behind that read and holds up the read after it.
    const first = db.sql.reserve();
    const second_ = db.sql.reserve();
    const [holder, follower] = await Promise.all([first, second_]);
    try {
      await holder`begin`;
      await holder`lock table waitroom.tickets in access exclusive mode`;
      hub.refresh(room);
      await blocked();
      // Announced while the read waits: the room must be read again; the head leaves meanwhile.
      hub.refresh(room);
      await holder`select * from waitroom.leave(${head.ticket_id}, ${head.token})`;
      await follower`begin`;
      const followerLock = follower`lock table waitroom.tickets in access exclusive mode`.execute();
      await eventually(async () => {
        const [row] = await db.sql<{ waiting: number }[]>`
          select count(*)::int as waiting from pg_locks
           where relation = 'waitroom.tickets'::regclass and mode = 'AccessExclusiveLock' and not granted`;
        return row?.waiting === 1;
      }, "the second transaction waits for the lock");
      await holder`commit`;
      // The first read ran (its snapshot before the leave) and was dropped; the next waits on the second lock.
      await followerLock;
      await blocked();
      expect(await counter("positionReadsDropped")).toBe(dropped + 1);
      expect(client.positions).toEqual([3]);
      // Announced again while this read waits: it is shown all the same, the one after it follows.
      hub.refresh(room);
      await follower`select * from waitroom.leave(${second.ticket_id}, ${second.token})`;
      await follower`commit`;
      await eventually(() => client.positions.at(-1) === 1, "the stream was shown its new place");
    } finally {
      holder.release();
      follower.release();
    }
    await settled();
    expect(await counter("positionReadsDropped")).toBe(dropped + 1);
    // The read that was not dropped showed the first leave; the one after it, the second.
    expect(client.positions).toEqual([3, 2, 1]);
  });
});

describe("a delivery", () => {
  it("asks for its rooms' reads before it writes its events, and shows both", async () => {
    const room = await createRoom(db.sql, 2);
    const tickets = await joinAll(room, 4);
    const clients = await Promise.all(tickets.map(open));
    const since = new Date();
    await db.sql`select * from waitroom.admit(${room})`;
    const events = await roomEvents(sql, [room], since);
    expect(events.filter((event) => event.type === "admitted")).toHaveLength(2);
    order.length = 0;
    hub.deliver(events);
    await eventually(() => clients.slice(2).every((client) => client.positions.at(-1) !== 3), "the queue moved up");
    await settled();
    // The room's read was handed to its connection before the first admission was written to its stream.
    expect(order.indexOf("read")).toBeGreaterThanOrEqual(0);
    expect(order.indexOf("read")).toBeLessThan(order.indexOf("admitted"));
    expect(order.filter((entry) => entry === "admitted")).toHaveLength(2);
    expect(clients.slice(2).map((client) => client.positions.at(-1))).toEqual([1, 2]);
  });
});

describe("a large room's re-read", () => {
  it("is read in slices at once, and shows every stream its own state", async () => {
    // Slices of two, so that five streams make three.
    const sliced = await createHub({ readSlice: 2 });
    try {
      const room = await createRoom(db.sql, 1);
      const [head, ...rest] = await joinAll(room, 6);
      if (!head) throw new Error("join_many returned fewer tickets");
      const clients = await Promise.all(
        rest.map(async (ticket) => {
          const client = new Recorder();
          expect((await sliced.open({ ticketId: ticket.ticket_id, token: ticket.token }, client)).kind).toBe(
            "streaming",
          );
          return client;
        }),
      );
      expect(clients.map((client) => client.positions)).toEqual([[2], [3], [4], [5], [6]]);
      await db.sql`select * from waitroom.leave(${head.ticket_id}, ${head.token})`;
      const before = await counter("positionQueries");
      // The three slices' reads wait together on a lock held meanwhile: they are in flight at once.
      const holder = await db.sql.reserve();
      try {
        await holder`begin`;
        await holder`lock table waitroom.tickets in access exclusive mode`;
        sliced.refresh(room);
        await eventually(async () => {
          const [row] = await db.sql<{ waiting: number }[]>`
            select count(*)::int as waiting from pg_stat_activity
             where datname = current_database() and query like '%waitroom.positions(%' and wait_event_type = 'Lock'`;
          return row?.waiting === 3;
        }, "three reads wait on the lock at once");
        await holder`commit`;
      } finally {
        holder.release();
      }
      await eventually(() => clients.every((client) => client.positions.length === 2), "every stream was re-read");
      expect(clients.map((client) => client.positions.at(-1))).toEqual([1, 2, 3, 4, 5]);
      expect(await counter("positionQueries")).toBe(before + 3);
    } finally {
      sliced.close();
    }
  });
});

describe("keep-alive comments", () => {
  it("go to streams nothing was written to for half the period, and to no other", async () => {
    const half = settings.keepAliveMs / 2;
    const room = await createRoom(db.sql, 1);
    const [first, second] = await joinAll(room, 2);
    if (!first || !second) throw new Error("join_many returned fewer tickets");
    clock = 0;
    const quiet = await open(first);
    clock = half / 2;
    const written = await open(second);

    clock = half - 1;
    hub.keepAlive();
    expect([quiet.keepAlives, written.keepAlives]).toEqual([0, 0]);
    clock = half; // the first stream's snapshot is half a period old, the second's a quarter
    hub.keepAlive();
    expect([quiet.keepAlives, written.keepAlives]).toEqual([1, 0]);
    clock = half + half / 2; // the comment was written to the first a quarter ago; the second is quiet for half
    hub.keepAlive();
    expect([quiet.keepAlives, written.keepAlives]).toEqual([1, 1]);
  });
});
