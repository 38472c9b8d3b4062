import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createSql } from "../../src/db/client.js";
import {
  decodeMessage,
  EVENTS_CHANNEL,
  type IdRange,
  type IncompleteMessage,
  type LedgerEvent,
  mergeRanges,
  parseChunk,
  Reassembler,
} from "../../src/events/codec.js";
import { useTestDatabase } from "../helpers/database.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { seededRandom } from "../helpers/random.js";

const db = useTestDatabase();

const ASCII = ["a", "Z", "7", " ", ":", "/", '"', "\\", "-", "\n"];
const WIDE = ["é", "ß", "€", "中", "語", "😀", "𝄞"]; // 2, 2, 3, 3, 3, 4, 4 bytes

/** A message of exactly `bytes` UTF-8 bytes; each draws its own mix, some all-wide, so cuts land everywhere. */
function randomMessage(random: () => number, bytes: number): string {
  const wideShare = [0, 0.3, 0.9, 1][Math.floor(random() * 4)] ?? 0;
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const pool = random() < wideShare ? WIDE : ASCII;
    let piece = pool[Math.floor(random() * pool.length)] ?? "a";
    if (size + Buffer.byteLength(piece) > bytes) piece = "x";
    parts.push(piece);
    size += Buffer.byteLength(piece);
  }
  return parts.join("");
}

function shuffle<T>(random: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

type Case = { key: string; message: string; maxBytes: number };

/** The same cases on every call: 0 B to 1 MB at the default limit, small messages at tiny limits. */
function cases(): Case[] {
  const random = seededRandom(20240611);
  const sizes = [0, 1, 2, 3, 4, 5, 100, 15_990, 16_000, 65_536, 1_048_576];
  for (let size = 7980; size <= 8010; size++) sizes.push(size);
  for (let i = 0; i < 20; i++) sizes.push(Math.floor(random() * 200_000));
  const all = sizes.map((size, i) => ({ key: `${i * 1000 + 1}-${i * 1000 + 999}`, maxBytes: 7999, size }));
  for (let i = 0; i < 30; i++) {
    all.push({ key: `${i + 1}-${i + 2}`, maxBytes: 16, size: Math.floor(random() * 300) });
    all.push({ key: `${i + 100}-${i + 2000}`, maxBytes: 50, size: Math.floor(random() * 2000) });
  }
  return all.map(({ key, maxBytes, size }) => ({ key, maxBytes, message: randomMessage(random, size) }));
}

async function chunks(message: string, key: string, maxBytes: number): Promise<string[]> {
  const rows = await db.sql<{ payload: string }[]>`
    select payload from waitroom._chunks(${message}::text, ${key}::text, ${maxBytes}::integer)
      with ordinality as t(payload, n) order by n`;
  return rows.map((row) => row.payload);
}

describe("waitroom._chunks", () => {
  it("cuts messages of 0 B to 1 MB into full payloads within the limit, on character boundaries", async () => {
    const all = cases();
    expect(all.some((c) => Buffer.byteLength(c.message) === 1_048_576)).toBe(true);
    for (const { key, message, maxBytes } of all) {
      const payloads = await chunks(message, key, maxBytes);
      const count = payloads.length;
      // Every body but the last is full up to a character's width (4 bytes) of its budget.
      const budget = maxBytes - Buffer.byteLength(key) - 3 - 2 * String(count).length;
      const bodies = payloads.map((payload, i) => {
        expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(maxBytes);
        const chunk = parseChunk(payload);
        expect(chunk).toMatchObject({ key, index: i + 1, count });
        const body = chunk?.body ?? "";
        expect(Buffer.from(body, "utf8").toString("utf8")).toBe(body); // no half character
        if (i < count - 1) expect(Buffer.byteLength(body)).toBeGreaterThan(budget - 4);
        return body;
      });
      expect(bodies.join("")).toBe(message);
    }
  });

  it("sends an empty message as one chunk with an empty body", async () => {
    expect(await chunks("", "5-9", 7999)).toEqual(["5-9:1/1:"]);
  });

  it("needs room for 4 body bytes after the header, so any character fits", async () => {
    // Header "1-2:i/n:" is 8 bytes while n < 10.
    expect(await chunks("😀😀", "1-2", 12)).toEqual(["1-2:1/2:😀", "1-2:2/2:😀"]);
    expect(await chunks("é😀", "1-2", 12)).toEqual(["1-2:1/2:é", "1-2:2/2:😀"]);
    await expect(chunks("😀😀", "1-2", 11)).rejects.toMatchObject({ code: "WR400" });
    await expect(chunks("a", "1:2", 7999)).rejects.toMatchObject({ code: "WR400" });
  });

  it("reserves header digits for the count: a tenth chunk lengthens every header", async () => {
    // Of 14 bytes, 6 are body while n < 10; at n >= 10 the header takes 10, leaving 4.
    expect(await chunks("a".repeat(54), "1-2", 14)).toHaveLength(9);
    const payloads = await chunks("a".repeat(55), "1-2", 14);
    expect(payloads).toHaveLength(14);
    expect(payloads[0]).toBe("1-2:1/14:aaaa");
    expect(payloads.at(-1)).toBe("1-2:14/14:aaa");
    for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(14);
    await expect(chunks("a".repeat(46), "1-2", 13)).rejects.toMatchObject({ code: "WR400" });
  });
});

describe("Reassembler on chunks from Postgres", () => {
  it("restores shuffled, duplicated, interleaved messages exactly", async () => {
    const all = cases();
    const random = seededRandom(7);
    for (let i = 0; i + 1 < all.length; i += 2) {
      const pair = [all[i], all[i + 1]] as [Case, Case];
      const payloads: string[] = [];
      for (const { message, key, maxBytes } of pair) payloads.push(...(await chunks(message, key, maxBytes)));
      const duplicates = payloads.filter(() => random() < 0.3);
      const delivered: [string, string][] = [];
      const incomplete: IncompleteMessage[] = [];
      const reassembler = new Reassembler({
        timeoutMs: 60_000,
        maxChunks: 1000,
        onMessage: (key, text) => delivered.push([key, text]),
        onIncomplete: (info) => incomplete.push(info),
      });
      for (const payload of shuffle(random, [...payloads, ...duplicates])) expect(reassembler.push(payload)).toBe(true);
      reassembler.close();
      expect(incomplete).toEqual([]);
      // Each message whole; a repeated one may come twice (reading its ids again is harmless).
      const expected = new Map(pair.map((c) => [c.key, c.message]));
      expect(new Map(delivered)).toEqual(expected);
      for (const [key, text] of delivered) expect(text).toBe(expected.get(key));
    }
  });
});

/** A LISTEN connection of its own, feeding a Reassembler, as an app process holds one. */
async function listen() {
  const listener = createSql(db.serviceUrl, { max: 1 });
  const payloads: string[] = [];
  const messages = new Map<string, string>();
  const incomplete: IncompleteMessage[] = [];
  const reassembler = new Reassembler({
    timeoutMs: 10_000,
    onMessage: (key, text) => messages.set(key, text),
    onIncomplete: (info) => incomplete.push(info),
  });
  await listener.listen(EVENTS_CHANNEL, (payload) => {
    payloads.push(payload);
    reassembler.push(payload);
  });
  const message = (key: string) =>
    vi.waitFor(
      () => {
        const text = messages.get(key);
        if (text === undefined) throw new Error(`message ${key} has not arrived`);
        return text;
      },
      { timeout: 10_000, interval: 10 },
    );
  const close = async () => {
    reassembler.close();
    await listener.end({ timeout: 5 });
  };
  return { payloads, incomplete, message, close };
}

const publish = (events: unknown) => db.sql`select waitroom._publish(${JSON.stringify(events)}::text::jsonb)`;

function fakeEvents(firstId: number, count: number, note = "x"): LedgerEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    id: firstId + i,
    room_id: "r",
    ticket_id: null,
    type: "room",
    data: { note },
    created_at: "2026-01-01T00:00:00+00:00",
  }));
}

/** The rows a full-row message carries (a listener uses only their ids); fails on a notice. */
function decodeEvents(text: string): LedgerEvent[] {
  const rows: unknown = JSON.parse(text);
  if (!Array.isArray(rows)) throw new Error(`expected rows, got ${text.slice(0, 40)}`);
  const ids = rows.map((row: LedgerEvent) => row.id).sort((a, b) => a - b);
  expect(decodeMessage(text)).toEqual(mergeRanges(ids.map((id) => [id, id])));
  return rows as LedgerEvent[];
}

/** The ranges of a compact notice; fails on a full-row message. */
function decodeNotice(text: string): IdRange[] {
  if (!text.startsWith("{")) throw new Error(`expected a notice, got ${text.slice(0, 40)}`);
  return decodeMessage(text);
}

describe("waitroom._publish over LISTEN", () => {
  it("delivers a batch of 500 ledger rows far over 8000 bytes, reassembled and decoded", async () => {
    const room = uniqueRoomId("notify");
    const { close, message, payloads, incomplete } = await listen();
    try {
      const inserted = await db.sql<{ id: number }[]>`
        insert into waitroom.events (room_id, ticket_id, type, data)
        select ${room}, case when i % 3 = 0 then null else gen_random_uuid() end, 'admitted',
               jsonb_build_object('i', i, 'note', repeat('é€😀中 ', 10 + i % 7))
          from generate_series(1, 500) i
        returning id`;
      const ids = inserted.map((row) => row.id);
      await db.sql`
        select waitroom._publish((select jsonb_agg(to_jsonb(e) order by e.id)
                                    from waitroom.events e where e.room_id = ${room}))`;
      const key = `${Math.min(...ids)}-${Math.max(...ids)}`;
      const events = decodeEvents(await message(key));

      const expected = await db.sql<{ event: LedgerEvent }[]>`
        select to_jsonb(e) as event from waitroom.events e where e.room_id = ${room} order by e.id`;
      expect(events).toEqual(expected.map((row) => row.event));
      expect(events.map((event) => event.id)).toEqual(ids);
      expect(events[1]?.data).toEqual({ i: 2, note: "é€😀中 ".repeat(12) });
      const ours = payloads.filter((payload) => payload.startsWith(`${key}:`));
      const bytes = Buffer.byteLength(JSON.stringify(events));
      expect(ours.length).toBeGreaterThanOrEqual(Math.ceil(bytes / 7999));
      for (const payload of ours) expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(7999);
      expect(incomplete).toEqual([]);
    } finally {
      await close();
    }
  });

  it("keys a batch by its lowest and highest id, whatever their order", async () => {
    const { close, message, payloads } = await listen();
    try {
      const events = [7, 3, 12].map((id) => fakeEvents(id, 1)[0]);
      await publish(events);
      expect(decodeEvents(await message("3-12"))).toEqual(events);
      expect(payloads).toHaveLength(1);
      expect(payloads[0]).toMatch(/^3-12:1\/1:\[/);
    } finally {
      await close();
    }
  });

  it("sends nothing for null or an empty array", async () => {
    const { close, message, payloads } = await listen();
    try {
      await publish([]);
      await db.sql`select waitroom._publish(null)`;
      await publish(fakeEvents(41, 1));
      await message("41-41"); // notifications arrive in commit order: anything earlier is here by now
      expect(payloads.map((payload) => parseChunk(payload)?.key)).toEqual(["41-41"]);
    } finally {
      await close();
    }
  });

  it("delivers every batch published in one transaction", async () => {
    const { close, message, incomplete } = await listen();
    try {
      const batches = [fakeEvents(100, 1), fakeEvents(200, 2), fakeEvents(300, 300, "€".repeat(30))];
      await db.sql.begin(async (tx) => {
        for (const batch of batches) await tx`select waitroom._publish(${JSON.stringify(batch)}::text::jsonb)`;
      });
      expect(decodeEvents(await message("100-100"))).toEqual(batches[0]);
      expect(decodeEvents(await message("200-201"))).toEqual(batches[1]);
      expect(decodeEvents(await message("300-599"))).toEqual(batches[2]);
      expect(incomplete).toEqual([]);
    } finally {
      await close();
    }
  });

  it("refuses what is not a batch of events with ids", async () => {
    await expect(publish({ id: 1 })).rejects.toMatchObject({ code: "WR400" });
    await expect(publish([{ type: "room" }])).rejects.toMatchObject({ code: "WR400" });
  });
});

/** `count` ledger rows of `room` like admissions (about 250 bytes of JSON each), `bytes` longer when asked; their ids. */
async function ledgerRows(room: string, count: number, extraBytes = 0): Promise<number[]> {
  const rows = await db.sql<{ id: number }[]>`
    insert into waitroom.events (room_id, ticket_id, type, data)
    select ${room}, gen_random_uuid(), 'admitted',
           jsonb_build_object('claim_deadline', now(), 'waited_ms', i, 'pad', repeat('x', ${extraBytes}))
      from generate_series(1, ${count}) i
    returning id`;
  return rows.map((row) => Number(row.id));
}

const publishIds = (ids: readonly number[] | null) =>
  db.sql`select waitroom._publish_ids(${ids === null ? null : db.sql.array(ids as number[])}::bigint[])`;

/** The notices among `payloads` (single-chunk messages whose body is not an array), decoded. */
const notices = (payloads: string[]) =>
  payloads.flatMap((payload) => {
    const body = parseChunk(payload)?.body ?? "";
    return body.startsWith("{") ? [{ payload, ranges: decodeNotice(body) }] : [];
  });

describe("waitroom._publish_ids over LISTEN", () => {
  it("sends up to 64 rows in full, as one payload, when their JSON fits in it", async () => {
    const { close, message, payloads } = await listen();
    try {
      const ids = await ledgerRows(uniqueRoomId("full"), 25);
      await publishIds(ids);
      const key = `${ids[0]}-${ids.at(-1)}`;
      const expected = await db.sql<{ event: LedgerEvent }[]>`
        select to_jsonb(e) as event from waitroom.events e where e.id = any (${db.sql.array(ids)}::bigint[]) order by e.id`;
      expect(decodeEvents(await message(key))).toEqual(expected.map((row) => row.event));
      expect(payloads).toHaveLength(1);
      expect(payloads[0]).toMatch(new RegExp(`^${key}:1/1:\\[`));
    } finally {
      await close();
    }
  });

  it("sends a compact notice instead when the rows are more than 64 or do not fit in one payload", async () => {
    const { close, message, payloads } = await listen();
    try {
      const many = await ledgerRows(uniqueRoomId("many"), 65);
      const wide = await ledgerRows(uniqueRoomId("wide"), 20, 300); // ~11 kB of JSON
      const huge = await ledgerRows(uniqueRoomId("huge"), 1, 9000);
      for (const ids of [many, wide, huge]) {
        await publishIds(ids);
        const key = `${ids[0]}-${ids.at(-1)}`;
        expect(decodeNotice(await message(key))).toEqual([[ids[0], ids.at(-1)]]);
      }
      expect(payloads).toHaveLength(3);
      for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThan(100);
    } finally {
      await close();
    }
  });

  it("names the runs of consecutive ids it was given, in order, without the ids between them", async () => {
    const { close, message } = await listen();
    try {
      // Ids need not be in the ledger for a notice: only a listener's read looks them up.
      const ids = [9_000_000_120, 1005, 1001, 1002, 1003, 1004, 1010, 1012, 1013, 9_000_000_121, 1003];
      ids.push(...Array.from({ length: 100 }, (_, i) => 5000 + i));
      await publishIds(ids);
      expect(decodeNotice(await message("1001-9000000121"))).toEqual([
        [1001, 1005],
        [1010, 1010],
        [1012, 1013],
        [5000, 5099],
        [9_000_000_120, 9_000_000_121],
      ]);
    } finally {
      await close();
    }
  });

  it("splits notices at waitroom._notice_max_rows() ids and at 200 runs, one payload each", async () => {
    const { close, payloads } = await listen();
    try {
      const [row] = await db.sql<{ max: number }[]>`select waitroom._notice_max_rows() as max`;
      const max = Number(row?.max);
      const first = 1_000_000_000_000_000; // 16 digits: the longest ranges a notice can hold
      // One run of 2 × max + 7 ids, then 450 runs of one id each: the third part of max ids holds
      // the run's last 7 and all 450 single ids, 451 runs, sent as 200 + 200 + 51.
      const run = Array.from({ length: 2 * max + 7 }, (_, i) => first + i);
      const scattered = Array.from({ length: 450 }, (_, i) => first + 3 * max + 2 * i);
      await publishIds([...scattered, ...run]);
      await vi.waitFor(() => expect(notices(payloads)).toHaveLength(5), { timeout: 10_000, interval: 10 });
      const sent = notices(payloads);
      expect(sent.map(({ ranges }) => [ranges.length, ranges.reduce((sum, [a, b]) => sum + b - a + 1, 0)])).toEqual([
        [1, max],
        [1, max],
        [200, 7 + 199],
        [200, 200],
        [51, 51],
      ]);
      const named = sent.flatMap(({ ranges }) =>
        ranges.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)),
      );
      expect(named).toEqual([...run, ...scattered]);
      for (const { payload, ranges } of sent) {
        expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(7999);
        expect(parseChunk(payload)).toMatchObject({ firstId: ranges[0]?.[0], lastId: ranges.at(-1)?.[1], count: 1 });
      }
    } finally {
      await close();
    }
  });

  it("sends nothing for null or an empty array", async () => {
    const { close, message, payloads } = await listen();
    try {
      await publishIds([]);
      await publishIds(null);
      await publish(fakeEvents(77, 1));
      await message("77-77");
      expect(payloads.map((payload) => parseChunk(payload)?.key)).toEqual(["77-77"]);
    } finally {
      await close();
    }
  });
});

describe("waitroom.notice_events", () => {
  const read = (firsts: number[] | null, lasts: number[] | null) =>
    db.sql<{ id: number; type: string }[]>`
      select id, type from waitroom.notice_events(
        ${firsts === null ? null : db.sql.array(firsts)}::bigint[], ${lasts === null ? null : db.sql.array(lasts)}::bigint[])`;

  it("reads the announced rows in the ranges, oldest first, as the app role may", async () => {
    const room = uniqueRoomId("read");
    const rows = await db.sql<{ id: number; type: string }[]>`
      insert into waitroom.events (room_id, type)
      select ${room}, t from unnest(array['room_created', 'joined', 'admitted', 'left', 'rejoined', 'ended']) t
      returning id, type`;
    const ids = rows.map((row) => Number(row.id));
    const [first = 0, , third = 0, fourth = 0, , last = 0] = ids;
    const app = await db.sql.begin(async (tx) => {
      await tx`set local role waitroom_app`;
      return tx<{ id: number; type: string }[]>`
        select id, type from waitroom.notice_events(${db.sql.array([first, last])}::bigint[], ${db.sql.array([fourth, last])}::bigint[])`;
    });
    expect(app.map((row) => [Number(row.id), row.type])).toEqual([
      [third, "admitted"],
      [fourth, "left"],
      [last, "ended"],
    ]);
  });

  it("refuses ranges waitroom._publish_ids never sends: out of order, overlapping, too many ids", async () => {
    const [row] = await db.sql<{ max: number }[]>`select waitroom._notice_max_rows() as max`;
    const max = Number(row?.max);
    const refused: [number[] | null, number[] | null][] = [
      [null, [1]],
      [[1], null],
      [[1, 5], [2]],
      [[5], [4]],
      [[0], [3]],
      [[-5], [3]],
      [
        [10, 1],
        [11, 2],
      ],
      [
        [1, 3],
        [5, 8],
      ],
      [
        [1, 5],
        [5, 8],
      ],
      [[1], [max + 1]],
      [
        [1, max],
        [max - 10, max + 10],
      ],
      [[1], [Number.MAX_SAFE_INTEGER]],
    ];
    for (const [firsts, lasts] of refused) {
      await expect(read(firsts, lasts), JSON.stringify([firsts, lasts])).rejects.toMatchObject({ code: "WR400" });
    }
    expect(await read([1, max], [max - 11, max + 10])).toBeDefined();
    expect(await read([], [])).toEqual([]);
  });
});

describe("Reassembler", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function collect(limits: { maxPending?: number; maxChunks?: number; maxPendingBytes?: number } = {}) {
    const messages: [string, string][] = [];
    const incomplete: IncompleteMessage[] = [];
    const reassembler = new Reassembler({
      timeoutMs: 1000,
      ...limits,
      onMessage: (key, text) => messages.push([key, text]),
      onIncomplete: (info) => incomplete.push(info),
    });
    return { reassembler, messages, incomplete };
  }

  it("delivers a single-chunk message at once, without a timer", () => {
    const { reassembler, messages } = collect();
    reassembler.push("5-5:1/1:[1]");
    expect(messages).toEqual([["5-5", "[1]"]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("delivers every single-chunk message, even under a key seen before: a forged one holds no real one back", () => {
    const { reassembler, messages } = collect();
    reassembler.push("5-5:1/1:junk");
    reassembler.push("5-5:1/2:junk");
    reassembler.push("5-5:1/1:[5]");
    expect(messages).toEqual([
      ["5-5", "junk"],
      ["5-5", "[5]"],
    ]);
  });

  it("gives up an incomplete message after timeoutMs with its ids; a late chunk starts over and is given up too", () => {
    const { reassembler, messages, incomplete } = collect();
    reassembler.push("10-20:3/3:c");
    reassembler.push("10-20:1/3:a");
    vi.advanceTimersByTime(999);
    expect(incomplete).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(incomplete).toEqual([{ key: "10-20", firstId: 10, lastId: 20, received: 2, count: 3 }]);
    reassembler.push("10-20:2/3:b");
    vi.advanceTimersByTime(1000);
    expect(incomplete).toHaveLength(2);
    expect(messages).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("ignores a repeated chunk; the same chunk with other text gives its message up", () => {
    const { reassembler, messages, incomplete } = collect();
    reassembler.push("1-2:2/2:b");
    expect(reassembler.push("1-2:2/2:b")).toBe(true);
    reassembler.push("1-2:1/2:a");
    expect(messages).toEqual([["1-2", "ab"]]);

    reassembler.push("3-4:1/2:a");
    expect(reassembler.push("3-4:1/2:X")).toBe(false);
    expect(incomplete).toEqual([{ key: "3-4", firstId: 3, lastId: 4, received: 1, count: 2 }]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("keeps messages of one key but other counts apart", () => {
    const { reassembler, messages, incomplete } = collect();
    reassembler.push("1-2:1/3:a");
    reassembler.push("1-2:2/2:X");
    reassembler.push("1-2:2/3:b");
    reassembler.push("1-2:3/3:c");
    expect(messages).toEqual([["1-2", "abc"]]);
    vi.advanceTimersByTime(1000);
    expect(incomplete).toEqual([{ key: "1-2", firstId: 1, lastId: 2, received: 1, count: 2 }]);
  });

  it("gives up the oldest pending message beyond maxPending", () => {
    const { reassembler, messages, incomplete } = collect({ maxPending: 2 });
    reassembler.push("1-1:1/2:a");
    reassembler.push("2-2:1/2:b");
    reassembler.push("3-3:1/2:c");
    expect(incomplete).toEqual([{ key: "1-1", firstId: 1, lastId: 1, received: 1, count: 2 }]);
    expect(vi.getTimerCount()).toBe(2);
    reassembler.push("3-3:2/2:C");
    reassembler.push("2-2:2/2:B");
    expect(messages).toEqual([
      ["3-3", "cC"],
      ["2-2", "bB"],
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("bounds what incomplete messages hold: chunks per message and bytes in all", () => {
    const { reassembler, messages, incomplete } = collect({ maxChunks: 4, maxPendingBytes: 10 });
    expect(reassembler.push("1-1:1/5:a")).toBe(false);
    expect(reassembler.pending).toBe(0);
    reassembler.push("2-2:1/4:123456");
    reassembler.push("3-3:1/2:1234");
    expect(incomplete).toEqual([]);
    reassembler.push("4-4:1/2:1");
    // 11 bytes held: the oldest goes.
    expect(incomplete).toEqual([{ key: "2-2", firstId: 2, lastId: 2, received: 1, count: 4 }]);
    reassembler.push("3-3:2/2:5");
    reassembler.push("4-4:2/2:2");
    expect(messages).toEqual([
      ["3-3", "12345"],
      ["4-4", "12"],
    ]);
    expect(reassembler.pending).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("close() drops pending messages and their timers", () => {
    const { reassembler, messages, incomplete } = collect();
    reassembler.push("1-2:1/2:a");
    reassembler.close();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(reassembler.push("1-2:2/2:b")).toBe(false);
    expect(incomplete).toEqual([]);
    expect(messages).toEqual([]);
  });

  it("parses chunks, bodies may hold any character", () => {
    expect(parseChunk("12-345:2/3:a:b/c")).toEqual({
      key: "12-345",
      firstId: 12,
      lastId: 345,
      index: 2,
      count: 3,
      body: "a:b/c",
    });
    expect(parseChunk("1-1:1/1:")).toMatchObject({ body: "" });
  });

  it("ignores malformed payloads", () => {
    const { reassembler, messages } = collect();
    const malformed = [
      "",
      "hello",
      "1-2:1/1",
      "1-2:0/1:x",
      "1-2:2/1:x",
      "1-2:1/0:",
      "2-1:1/1:x",
      "a-b:1/1:x",
      "-1-2:1/1:x",
      "1-2:1/1x:",
      "1-2 :1/1:x",
      "99999999999999999-1:1/1:x",
    ];
    for (const payload of malformed) {
      expect(parseChunk(payload), payload).toBeNull();
      expect(reassembler.push(payload)).toBe(false);
    }
    expect(messages).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("decodeMessage", () => {
  it("returns the ids of the rows of a JSON array, as ranges; nothing else of them", () => {
    expect(decodeMessage(JSON.stringify(fakeEvents(1, 2)))).toEqual([[1, 2]]);
    expect(decodeMessage('[{"id": 9, "type": "ended"}, {"id": 3}, {"id": 4}, {"id": 9}]')).toEqual([
      [3, 4],
      [9, 9],
    ]);
    expect(decodeMessage("[]")).toEqual([]);
  });

  it("returns the id ranges of a version 1 notice, as waitroom._publish_ids writes it, merged", () => {
    expect(decodeMessage('{"v": 1, "ranges": [[5, 9], [12, 12], [9007199254740991, 9007199254740991]]}')).toEqual([
      [5, 9],
      [12, 12],
      [9007199254740991, 9007199254740991],
    ]);
    // What _publish_ids never sends still names only these ids, once each.
    expect(decodeMessage('{"v": 1, "ranges": [[12, 20], [1, 3], [2, 5], [6, 6]]}')).toEqual([
      [1, 6],
      [12, 20],
    ]);
  });

  it("throws on anything else: another version, ranges that are not pairs of ids, rows without ids", () => {
    const undecodable = [
      '{"id": 1}',
      "null",
      "1",
      '"x"',
      "[1]",
      "[null]",
      '[{"id": "1"}]',
      '[{"id": 0}]',
      '[{"id": 1.5}]',
      '[{"type": "ended", "ticket_id": "0190a0e0-0000-7000-8000-000000000001"}]',
      '{"v": 2, "ranges": [[1, 2]]}',
      '{"v": "1", "ranges": [[1, 2]]}',
      '{"ranges": [[1, 2]]}',
      '{"v": 1}',
      '{"v": 1, "ranges": []}',
      '{"v": 1, "ranges": [1, 2]}',
      '{"v": 1, "ranges": [[1]]}',
      '{"v": 1, "ranges": [[1, 2, 3]]}',
      '{"v": 1, "ranges": [[0, 2]]}',
      '{"v": 1, "ranges": [[3, 2]]}',
      '{"v": 1, "ranges": [[1, 2.5]]}',
      '{"v": 1, "ranges": [["1", 2]]}',
      '{"v": 1, "ranges": [[1, 9007199254740992]]}',
      '{"v": 1, "ranges": [[1, 2]], "rows": [{"id": 1, "type": "ended"}]}',
    ];
    for (const text of undecodable) expect(() => decodeMessage(text), text).toThrow(TypeError);
    expect(() => decodeMessage("[")).toThrow(SyntaxError);
  });
});
