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

const event = (id: number, type = "admitted"): LedgerEvent => ({
  id,
  room_id: "r",
  ticket_id: null,
  type,
  data: { note: "é€😀".repeat(500) },
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

/** A fence message, and its arrival: a listener handles messages in order, so everything before it is in. */
let fences = 0;
async function fence(probe: Probe): Promise<void> {
  const id = 1_000_000_000_000 + ++fences;
  await db.sql`select waitroom._publish(${JSON.stringify([event(id, "fence")])}::text::jsonb)`;
  await until(() => probe.batches.some((batch) => batch.some((e) => e.id === id)), "the fence arrives");
}

describe("the LISTEN connection", () => {
  it("delivers published batches, reassembled from their chunks", async () => {
    const probe = listen();
    await until(() => probe.listener.connected, "connected");
    const batch = Array.from({ length: 20 }, (_, i) => event(i + 1));
    await db.sql`select waitroom._publish(${JSON.stringify(batch)}::text::jsonb)`;
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
    await db.sql`select waitroom._publish(${JSON.stringify([event(1000)])}::text::jsonb)`;
    await until(() => probe.batches.length === 1, "a batch after the reconnect");
    expect(probe.batches[0]?.[0]?.id).toBe(1000);
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
      const ours = payloads.filter((payload) => !payload.includes('"fence"'));
      expect(ours).toHaveLength(1);
      expect(Buffer.byteLength(ours[0] ?? "")).toBeLessThan(100);
      const chunk = parseChunk(ours[0] ?? "");
      expect(chunk).toMatchObject({ firstId: rows[0]?.id, lastId: rows.at(-1)?.id, count: 1 });
      expect(decodeMessage(chunk?.body ?? "")).toEqual({ kind: "notice", ranges: [[rows[0]?.id, rows.at(-1)?.id]] });
    } finally {
      await raw.end({ timeout: 5 });
    }
  });

  it("holds back a message that arrives while a notice before it is being read", async () => {
    let release: (events: LedgerEvent[]) => void = () => {};
    const probe = listen({ readNotice: () => new Promise((resolve) => (release = resolve)) });
    await until(() => probe.listener.connected, "connected");
    await db.sql`select pg_notify('waitroom_events', '501-600:1/1:{"v": 1, "ranges": [[501, 600]]}')`;
    await db.sql`select waitroom._publish(${JSON.stringify([event(601)])}::text::jsonb)`;
    await until(async () => (await chunksHeard(probe)) === 2, "both messages are heard");
    expect(probe.batches).toEqual([]);
    release([event(550)]);
    await until(() => probe.batches.length === 2, "both are delivered");
    expect(probe.batches.map((batch) => batch.map((e) => e.id))).toEqual([[550], [601]]);
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

      // Refused by the ledger: too many ids, overlapping ranges. Ignored, nothing replayed.
      await forge('1-9000000000000:1/1:{"v": 1, "ranges": [[1, 9000000000000]]}');
      await forge(`1-2:1/1:{"v": 1, "ranges": [[${first}, ${last}], [${first}, ${last}]]}`);
      await fence(probe);
      expect(probe.batches.flat().filter((e) => e.type !== "fence")).toEqual([]);
      expect(probe.gaps).toEqual([]);

      // Real ids: the real rows, without the joins and the room's creation, which streams never see.
      probe.batches.length = 0;
      await forge(`${first}-${last}:1/1:{"v": 1, "ranges": [[${first}, ${last}]]}`);
      await fence(probe);
      expect(ledger.map((row) => row.type)).toEqual([
        "room_created",
        "joined",
        "joined",
        "joined",
        ...Array(3).fill("admitted"),
      ]);
      expect(probe.batches.flat().filter((e) => e.type !== "fence")).toEqual(await admittedRows(room));

      // Undecodable (a notice of another version, say): a message was lost, replay.
      await forge('7-8:1/1:{"v": 1, "ranges": "all"}');
      await until(() => probe.gaps.length === 1, "the gap is reported");
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
