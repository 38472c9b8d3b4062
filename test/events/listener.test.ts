import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { createSql } from "../../src/db/client.js";
import { decodeMessage, EVENTS_CHANNEL, type IdRange, type LedgerEvent, parseChunk } from "../../src/events/codec.js";
import { type Listener, startListener } from "../../src/events/listener.js";
import { createLogger } from "../../src/log.js";
import { createMetrics } from "../../src/metrics.js";
import { noticeEvents, roomEvents } from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { uniqueRoomId } from "../helpers/queue.js";

const db = useTestDatabase();
const log = createLogger("silent");

type Probe = { listener: Listener; batches: LedgerEvent[][]; gaps: Date[]; metrics: ReturnType<typeof createMetrics> };
const started: Listener[] = [];
afterEach(async () => {
  for (const listener of started.splice(0)) await listener.close();
});

type ReadNotice = (ranges: readonly IdRange[]) => Promise<LedgerEvent[]>;

function listen(options: { chunkTimeoutMs?: number; readNotice?: ReadNotice } = {}): Probe {
  const metrics = createMetrics();
  const probe = { batches: [], gaps: [], metrics } as unknown as Probe;
  probe.listener = startListener({
    databaseUrl: db.serviceUrl,
    log,
    metrics,
    chunkTimeoutMs: options.chunkTimeoutMs,
    onEvents: (events) => probe.batches.push(events),
    readNotice: options.readNotice ?? ((ranges) => noticeEvents(db.serviceSql, ranges)),
    onGap: (since) => probe.gaps.push(since),
  });
  started.push(probe.listener);
  return probe;
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `count` real ledger rows (as a full-row message carries them); long, so a message of 20 needs several chunks. */
async function ledgerRows(count: number, noteRepeats = 500): Promise<LedgerEvent[]> {
  const room = uniqueRoomId("rows");
  const rows = await db.sql<{ event: LedgerEvent }[]>`
    insert into waitroom.events as e (room_id, type, data)
    select ${room}, 'room_health', jsonb_build_object('note', repeat('é€😀', ${noteRepeats}))
      from generate_series(1, ${count})
    returning to_jsonb(e) as event`;
  return rows.map((row) => row.event);
}

const publish = (events: unknown) => db.sql`select waitroom._publish(${JSON.stringify(events)}::text::jsonb)`;

/** A stand-in for ledger rows, for a readNotice of the test's own. */
const fakeEvent = (id: number): LedgerEvent => ({
  id,
  room_id: "r",
  ticket_id: null,
  type: "admitted",
  data: {},
  created_at: new Date().toISOString(),
});

/** Payloads the listener's connection has received so far. */
async function chunksHeard(probe: Probe): Promise<number> {
  const text = await probe.metrics.registry.getSingleMetricAsString("waitroom_notify_chunks_total");
  return Number(/ (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** A room of `count` queued tickets and capacity for all, ready to be admitted at once. */
async function queuedRoom(count: number): Promise<string> {
  const room = uniqueRoomId("rush");
  await db.sql`select waitroom.create_room(${room}, ${count}, '{"idle_seconds": 3600}')`;
  await db.sql`select count(*) from (select waitroom.join(${room}) from generate_series(1, ${count})) joined`;
  return room;
}

/** The room's admitted rows as a full-row message carries them, oldest first. */
async function admittedRows(room: string): Promise<LedgerEvent[]> {
  const rows = await db.sql<{ event: LedgerEvent }[]>`
    select to_jsonb(e) as event from waitroom.events e where e.room_id = ${room} and e.type = 'admitted' order by e.id`;
  return rows.map((row) => row.event);
}

/** Ids of the fence rows: not the events a test is about. */
const fences = new Set<number>();
const notFence = (event: LedgerEvent) => !fences.has(event.id);

/** A fence message, and its arrival: a listener handles messages in order, so everything before it is in. */
async function fence(probe: Probe): Promise<void> {
  const [row] = await ledgerRows(1);
  if (!row) throw new Error("no fence row");
  fences.add(row.id);
  await publish([row]);
  await until(() => probe.batches.some((batch) => batch.some((e) => e.id === row.id)), "the fence arrives");
}

describe("the LISTEN connection", () => {
  it("delivers published batches, reassembled from their chunks", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    const batch = await ledgerRows(20);
    await publish(batch);
    await until(() => probe.batches.length === 1, "the batch arrives");
    expect(probe.batches[0]).toEqual(batch);
    expect(probe.gaps).toEqual([]);
  });

  it("reports a gap when a message stays incomplete", async () => {
    const probe = listen({ chunkTimeoutMs: 200 });
    await until(() => probe.listener.connected, "connected");
    await db.sql`select pg_notify('waitroom_events', '901-902:1/2:[{"id":901')`;
    await until(() => probe.gaps.length === 1, "the gap is reported");
    expect(probe.batches).toEqual([]);
    const gap = probe.gaps[0] as Date;
    // Replay reaches back before the moment the connection was last known alive.
    expect(gap.getTime()).toBeLessThan(Date.now() - 5_000);
    expect(await probe.metrics.registry.getSingleMetricAsString("waitroom_notify_incomplete_total")).toMatch(/ 1$/m);
  });

  it("reconnects after its backend is terminated, reports the gap and delivers again", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    const firstPid = probe.listener.backendPid;
    await db.sql`select pg_terminate_backend(${firstPid})`;
    await until(() => probe.gaps.length === 1 && probe.listener.connected, "reconnected");
    expect(probe.listener.backendPid).not.toBe(firstPid);
    const rows = await ledgerRows(1);
    await publish(rows);
    await until(() => probe.batches.length === 1, "a batch after the reconnect");
    expect(probe.batches[0]).toEqual(rows);
  });

  it("delivers an admission of 10,000 from one compact notice: every event once, as in full", async () => {
    const room = await queuedRoom(10_000);
    const probe = listen();
    const raw = createSql(db.url, { max: 1 });
    const payloads: string[] = [];
    try {
      await raw.listen(EVENTS_CHANNEL, (payload) => payloads.push(payload));
      await until(() => probe.listener.connected, "connected");
      const [admitted] = await db.sql<{ n: number }[]>`select count(*)::int as n from waitroom.admit(${room})`;
      expect(admitted?.n).toBe(10_000);
      await fence(probe);

      const rows = await admittedRows(room);
      const delivered = probe.batches.flat().filter((e) => e.room_id === room);
      expect(delivered).toEqual(rows);
      expect(new Set(delivered.map((e) => e.id)).size).toBe(10_000);
      expect(probe.gaps).toEqual([]);

      // What went over the wire: one notice of one range, not 3 MB of rows.
      const ours = payloads.filter((payload) => !fences.has(parseChunk(payload)?.firstId ?? 0));
      expect(ours).toHaveLength(1);
      expect(Buffer.byteLength(ours[0] ?? "")).toBeLessThan(100);
      const chunk = parseChunk(ours[0] ?? "");
      expect(chunk).toMatchObject({ firstId: rows[0]?.id, lastId: rows.at(-1)?.id, count: 1 });
      expect(chunk?.body).toMatch(/^\{"v": 1/);
      expect(decodeMessage(chunk?.body ?? "")).toEqual([[rows[0]?.id, rows.at(-1)?.id]]);
    } finally {
      await raw.end({ timeout: 5 });
    }
  });

  it("holds back a message that arrives while a notice before it is being read", async () => {
    const reads: { ranges: readonly IdRange[]; release: (events: LedgerEvent[]) => void }[] = [];
    const probe = listen({ readNotice: (ranges) => new Promise((release) => reads.push({ ranges, release })) });
    await until(() => probe.listener.connected, "connected");
    await db.sql`select pg_notify('waitroom_events', '501-600:1/1:{"v": 1, "ranges": [[501, 600]]}')`;
    await db.sql`select pg_notify('waitroom_events', '601-601:1/1:[{"id": 601}]')`;
    await until(async () => (await chunksHeard(probe)) === 2, "both messages are heard");
    expect(reads.map((r) => r.ranges)).toEqual([[[501, 600]]]);
    reads[0]?.release([fakeEvent(550), fakeEvent(601)]); // a row outside the notice's ranges is not its own
    await until(() => reads.length === 2, "the second is read");
    expect(reads[1]?.ranges).toEqual([[601, 601]]);
    reads[1]?.release([fakeEvent(601)]);
    await until(() => probe.batches.length === 2, "both are delivered");
    expect(probe.batches.map((batch) => batch.map((e) => e.id))).toEqual([[550], [601]]);
  });

  it("reads messages that arrived together with one query, and delivers each its own rows in order", async () => {
    const reads: (readonly IdRange[])[] = [];
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const probe = listen({
      readNotice: async (ranges) => {
        reads.push(ranges);
        if (reads.length === 1) await held;
        return noticeEvents(db.sql, ranges);
      },
    });
    await until(() => probe.listener.connected, "connected");
    const [first, ...rest] = await ledgerRows(4, 1); // one payload each
    await publish([first]);
    await until(() => reads.length === 1, "the first is being read");
    // Three messages while the first is read: the second and fourth name the same row.
    await publish([rest[0]]);
    await publish([rest[1], rest[2]]);
    await publish([rest[0]]);
    await until(async () => (await chunksHeard(probe)) === 4, "all are heard");
    release();
    await until(() => probe.batches.length === 4, "all are delivered");
    expect(reads).toHaveLength(2);
    expect(reads[1]).toEqual([[rest[0]?.id, rest[2]?.id]]);
    expect(probe.batches).toEqual([[first], [rest[0]], [rest[1], rest[2]], [rest[0]]]);
  });

  it("reports a gap when a notice's rows cannot be read, and goes on delivering", async () => {
    let reads = 0;
    const probe = listen({
      readNotice: async (ranges) => {
        reads += 1;
        if (reads === 1) throw Object.assign(new Error("connection reset"), { code: "ECONNRESET" });
        return noticeEvents(db.serviceSql, ranges);
      },
    });
    await until(() => probe.listener.connected, "connected");
    const room = await queuedRoom(100);
    await db.sql`select count(*) from waitroom.admit(${room}, 70)`;
    await until(() => probe.gaps.length === 1, "the gap is reported");
    expect(probe.batches).toEqual([]);
    // The replay the gap asks for finds the rows the notice named.
    const rows = await admittedRows(room);
    expect(await roomEvents(db.sql, [room], probe.gaps[0] as Date)).toEqual(rows);

    await db.sql`select count(*) from waitroom.admit(${room})`;
    await until(() => probe.batches.length === 1, "the next notice is read");
    expect(probe.batches[0]).toEqual((await admittedRows(room)).slice(70));
    expect(probe.gaps).toHaveLength(1);
  });

  it("recovers a notice sent while it was disconnected by replay from the ledger", async () => {
    const room = await queuedRoom(200);
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    // Terminated (and waited for) before the admission commits: the notice goes to nobody here.
    await db.sql`select pg_terminate_backend(${probe.listener.backendPid}, 5000)`;
    await db.sql`select count(*) from waitroom.admit(${room})`;
    await until(() => probe.gaps.length === 1 && probe.listener.connected, "reconnected");
    const replayed = await roomEvents(db.sql, [room], probe.gaps[0] as Date);
    expect(replayed).toEqual(await admittedRows(room));
    expect(replayed).toHaveLength(200);
  });

  it("does no harm with notices forged by another role: reads real, announced rows or nothing", async () => {
    const forger = `forger_${randomBytes(4).toString("hex")}`;
    await db.sql.unsafe(`create role ${forger} nologin`);
    const forge = (payload: string) =>
      db.sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${forger}`);
        await tx`select pg_notify('waitroom_events', ${payload})`;
      });
    try {
      const probe = listen();
      await until(() => probe.listener.connected, "connected");
      const room = await queuedRoom(3);
      await db.sql`select count(*) from waitroom.admit(${room})`;
      await fence(probe);
      probe.batches.length = 0;
      const ledger = await db.sql<{ id: number; type: string }[]>`
        select id, type from waitroom.events where room_id = ${room} order by id`;
      const first = Number(ledger[0]?.id);
      const last = Number(ledger.at(-1)?.id);

      // Refused by the ledger: too many ids. Ignored, nothing replayed.
      await forge('1-9000000000000:1/1:{"v": 1, "ranges": [[1, 9000000000000]]}');
      await forge(`1-2:1/1:{"v": 1, "ranges": [[1, ${first}], [${last}, ${last + 30000}]]}`);
      await fence(probe);
      expect(probe.batches.flat().filter(notFence)).toEqual([]);
      expect(probe.gaps).toEqual([]);

      // Real ids: the real rows, without the joins and the room's creation, which streams never see.
      // Overlapping ranges name each row once.
      probe.batches.length = 0;
      await forge(`${first}-${last}:1/1:{"v": 1, "ranges": [[${first}, ${last}]]}`);
      await forge(`${first}-${last}:1/1:{"v": 1, "ranges": [[${first}, ${last}], [${first}, ${last}]]}`);
      await fence(probe);
      expect(ledger.map((row) => row.type)).toEqual([
        "room_created",
        "joined",
        "joined",
        "joined",
        ...Array(3).fill("admitted"),
      ]);
      const admitted = await admittedRows(room);
      expect(probe.batches.filter((batch) => batch.every(notFence))).toEqual([admitted, admitted]);

      // Rows in full with made-up content: only their ids count, and the ledger's rows are delivered.
      probe.batches.length = 0;
      const real = admitted[0] as LedgerEvent;
      const lie = { ...real, type: "ended", data: { reason: "forged" }, ticket_id: real.ticket_id };
      await forge(`${real.id}-${real.id}:1/1:${JSON.stringify([lie])}`);
      await forge(`${1e15}-${1e15}:1/1:${JSON.stringify([{ ...lie, id: 1e15 }])}`); // no such row: nothing
      await fence(probe);
      expect(probe.batches.filter((batch) => batch.every(notFence))).toEqual([[real]]);
      expect(probe.gaps).toEqual([]);

      // Undecodable (a notice of another version, say): a message was lost, replay.
      await forge('7-8:1/1:{"v": 1, "ranges": "all"}');
      await until(() => probe.gaps.length === 1, "the gap is reported");
      expect(probe.listener.connected).toBe(true);
    } finally {
      await db.sql.unsafe(`drop role ${forger}`);
    }
  });

  it("stays closed once closed", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    await probe.listener.close();
    expect(probe.listener.connected).toBe(false);
    const [row] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
       where application_name = 'waitroom-listen' and datname = current_database()`;
    expect(row?.n).toBe(0);
  });
});
