import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LedgerEvent } from "../../src/events/codec.js";
import { type Listener, startListener } from "../../src/events/listener.js";
import { createLogger } from "../../src/log.js";
import { createMetrics } from "../../src/metrics.js";
import { noticeEvents } from "../../src/queue/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { admit, at, createRoom, join, verdict } from "../helpers/queue.js";

/*
 * Which verbs announce their ledger rows on waitroom_events (NOTIFY), heard
 * by the listener an app process runs (rows in full, or read from the ledger
 * when a compact notice names them): every state change a client must see,
 * and never a join (NOTIFY takes a global lock at commit).
 */

const db = useTestDatabase();
let listener: Listener;
const received: LedgerEvent[][] = [];
const gaps: Date[] = [];

beforeAll(async () => {
  listener = startListener({
    databaseUrl: db.serviceUrl,
    log: createLogger("silent"),
    metrics: createMetrics(),
    onEvents: (events) => received.push(events),
    readNotice: (ranges) => noticeEvents(db.serviceSql, ranges),
    onGap: (since) => gaps.push(since),
  });
  await eventually(() => listener.connected, "the listener is connected", 5_000);
});
afterAll(async () => {
  await listener.close();
});

/** Publish a fence message and wait for it: once it is in, everything committed before it is too. */
let fences = 0;
async function fence(): Promise<string> {
  // Ids far above the ledger's, one per fence: the reassembler ignores a key it has seen.
  const id = 1_000_000_000_000 + ++fences;
  const type = `fence-${id}`;
  await db.sql`select waitroom._publish(${db.sql.json([{ id, type }])})`;
  await eventually(() => received.some((events) => events.some((e) => e.type === type)), "the fence arrives", 5_000);
  return type;
}

/** The messages announced by `work` (and nothing earlier), as lists of event types. */
async function announced(work: () => Promise<unknown>): Promise<string[][]> {
  await fence();
  received.length = 0;
  await work();
  await fence();
  expect(gaps).toEqual([]);
  return received
    .filter((events) => !events.some((e) => e.type.startsWith("fence-")))
    .map((events) => events.map((e) => e.type));
}

describe("announcements", () => {
  it("join sends none: plain, by holder, re-join, and a passthrough join admitting only itself", async () => {
    const room = await createRoom(db.sql, 5, { idle_seconds: 3600 });
    const passthrough = await createRoom(db.sql, 5, { mode: "passthrough" });
    expect(
      await announced(async () => {
        await join(db.sql, room);
        await join(db.sql, room, { holder: "ada" });
        await join(db.sql, room, { holder: "ada" });
        const direct = await join(db.sql, passthrough);
        expect(direct.status).toBe("admitted");
      }),
    ).toEqual([]);
  });

  it("a passthrough join announces the admissions of tickets ahead of it, not its own", async () => {
    const room = await createRoom(db.sql, 2, { mode: "passthrough", idle_seconds: 3600 });
    const a = await join(db.sql, room, { now: at(1) });
    const b = await join(db.sql, room, { now: at(1) });
    const c = await join(db.sql, room, { now: at(2) });
    expect([a.status, b.status, c.status]).toEqual(["admitted", "admitted", "queued"]);
    await verdict(db.sql, "leave", a, at(3));
    await verdict(db.sql, "leave", b, at(3));
    let d: Awaited<ReturnType<typeof join>> | undefined;
    const messages = await announced(async () => {
      d = await join(db.sql, room, { now: at(4) });
    });
    expect(d?.status).toBe("admitted");
    expect(messages).toEqual([["admitted"]]);
    const [row] = await db.sql<{ ticket_id: string }[]>`
      select ticket_id from waitroom.events where room_id = ${room} and type = 'admitted' order by id desc offset 1 limit 1`;
    expect(row?.ticket_id).toBe(c.ticket_id);
  });

  it("admit, claim, leave, configure and sweep each announce their rows in one message", async () => {
    const room = await createRoom(db.sql, 2, { idle_seconds: 30, claim_seconds: 10 });
    const a = await join(db.sql, room, { now: at(0) });
    const b = await join(db.sql, room, { now: at(0) });
    const c = await join(db.sql, room, { now: at(0) });
    expect(await announced(() => admit(db.sql, room, at(1)))).toEqual([["admitted", "admitted"]]);
    expect(await announced(() => verdict(db.sql, "claim", a, at(2)))).toEqual([["active"]]);
    expect(await announced(() => verdict(db.sql, "leave", a, at(3)))).toEqual([["left"]]);
    expect(await announced(() => db.sql`select waitroom.configure_room(${room}, '{"capacity": 3}', ${at(4)})`)).toEqual(
      [["room_configured"]],
    );
    // b's offer lapses (claim by 11 s) and c went idle (30 s): admit records both before admitting.
    expect(await announced(() => admit(db.sql, room, at(40)))).toEqual([["expired", "expired"]]);
    expect((await verdict(db.sql, "check", b, at(40))).code).toBe("expired");
    expect((await verdict(db.sql, "check", c, at(40))).code).toBe("expired");
    const d = await join(db.sql, room, { now: at(40) });
    await admit(db.sql, room, at(41));
    await verdict(db.sql, "claim", d, at(41));
    expect(await announced(() => db.sql`select waitroom.sweep(1000, ${room}, ${at(41 + 600 + 31)})`)).toEqual([
      ["ended"],
    ]);
  });

  it("the opening admission announces the draw with the admissions, and only once", async () => {
    const room = await createRoom(db.sql, 2, { opens_at: at(10).toISOString(), idle_seconds: 3600 });
    for (let i = 0; i < 3; i++) await join(db.sql, room, { now: at(1) });
    expect(await announced(() => admit(db.sql, room, at(10)))).toEqual([["room_shuffled", "admitted", "admitted"]]);
    expect(await announced(() => admit(db.sql, room, at(11)))).toEqual([]);
  });

  it("sends nothing when nothing changed", async () => {
    const room = await createRoom(db.sql, 0);
    await join(db.sql, room);
    expect(
      await announced(async () => {
        await admit(db.sql, room, at(1));
        await db.sql`select waitroom.sweep(1000, ${room}, ${at(2)})`;
        await db.sql`select waitroom.configure_room(${room}, '{"capacity": 0}', ${at(3)})`;
      }),
    ).toEqual([]);
  });
});
