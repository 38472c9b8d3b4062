/*
 * The NOTIFY codec. Verbs (sql/02_notify.sql) send each message on channel
 * waitroom_events as chunks '<first_id>-<last_id>:<index>/<count>:<body>' under
 * Postgres's 8000-byte payload limit; this module puts them back together and
 * says which ledger rows a message names: a JSON array of ledger rows
 * (waitroom._publish), or a compact notice naming them by id ranges,
 * '{"v": 1, "ranges": [[first, last], …]}' (waitroom._publish_ids). Either way
 * the listener reads the rows themselves from the ledger: NOTIFY is a hint.
 */

import { z } from "zod";

export const EVENTS_CHANNEL = "waitroom_events";

/** One row of waitroom.events as the listener receives it. */
export type LedgerEvent = {
  id: number;
  room_id: string;
  ticket_id: string | null;
  type: string;
  data: Record<string, unknown>;
  created_at: string;
};

export type Chunk = {
  /** `<first_id>-<last_id>`: names the message the chunk belongs to. */
  key: string;
  firstId: number;
  lastId: number;
  /** 1-based. */
  index: number;
  count: number;
  body: string;
};

export type IncompleteMessage = { key: string; firstId: number; lastId: number; received: number; count: number };

export type ReassemblerOptions = {
  /** How long a message may wait for its missing chunks after its first arrived. */
  timeoutMs: number;
  /** Messages awaiting chunks at once; beyond it the oldest is given up. Default 256. */
  maxPending?: number;
  /** Most chunks a message may have; a chunk claiming more is malformed. Default 128 (1 MB). */
  maxChunks?: number;
  /** Most body bytes (UTF-16 code units) held for incomplete messages; beyond it the oldest are given up. Default 4 MB. */
  maxPendingBytes?: number;
  onMessage: (key: string, text: string) => void;
  /** A message given up (timed out, evicted, or sent twice with different text): read events firstId..lastId from the table instead. */
  onIncomplete: (info: IncompleteMessage) => void;
};

const HEADER = /^(\d{1,16})-(\d{1,16}):(\d{1,9})\/(\d{1,9}):/;

/** The parts of a NOTIFY payload, or null when it is not a well-formed chunk. */
export function parseChunk(payload: string): Chunk | null {
  const match = HEADER.exec(payload);
  if (!match) return null;
  const [header = "", first = "", last = "", index = "", count = ""] = match;
  const chunk = {
    key: `${first}-${last}`,
    firstId: Number(first),
    lastId: Number(last),
    index: Number(index),
    count: Number(count),
    body: payload.slice(header.length),
  };
  const valid =
    Number.isSafeInteger(chunk.firstId) &&
    Number.isSafeInteger(chunk.lastId) &&
    chunk.firstId <= chunk.lastId &&
    chunk.index >= 1 &&
    chunk.index <= chunk.count;
  return valid ? chunk : null;
}

type Pending = { chunk: Chunk; parts: Map<number, string>; bytes: number; timer: ReturnType<typeof setTimeout> };

/**
 * Collects chunks into messages: any order, messages interleaved. Anyone who can connect may send
 * chunks, so nothing a forged chunk does may hold a real message back: a single-chunk message is
 * delivered at once, whatever came before under its key; messages are told apart by key and count;
 * a chunk repeated with other text gives its message up (the listener then replays from the
 * ledger); and what incomplete messages hold is bounded in number, chunks, bytes and time.
 * Callbacks run synchronously inside push() or from a timer.
 */
export class Reassembler {
  readonly #options: ReassemblerOptions;
  readonly #maxPending: number;
  readonly #maxChunks: number;
  readonly #maxPendingBytes: number;
  /** By key and count; insertion order is age: the first entry is the oldest. */
  readonly #pending = new Map<string, Pending>();
  #pendingBytes = 0;
  #closed = false;

  constructor(options: ReassemblerOptions) {
    this.#options = options;
    this.#maxPending = Math.max(1, options.maxPending ?? 256);
    this.#maxChunks = Math.max(1, options.maxChunks ?? 128);
    this.#maxPendingBytes = options.maxPendingBytes ?? 4 * 1024 * 1024;
  }

  /** Feed one NOTIFY payload. false when it was malformed or could not be used. */
  push(payload: string): boolean {
    if (this.#closed) return false;
    const chunk = parseChunk(payload);
    if (!chunk || chunk.count > this.#maxChunks) return false;
    if (chunk.count === 1) {
      this.#options.onMessage(chunk.key, chunk.body);
      return true;
    }
    const id = `${chunk.key}/${chunk.count}`;
    let pending = this.#pending.get(id);
    if (!pending) {
      if (this.#pending.size >= this.#maxPending) this.#giveUpOldest();
      const timer = setTimeout(() => this.#expire(id), this.#options.timeoutMs);
      timer.unref?.(); // a half-received message must not keep the process alive
      pending = { chunk, parts: new Map(), bytes: 0, timer };
      this.#pending.set(id, pending);
    }
    const known = pending.parts.get(chunk.index);
    if (known !== undefined) {
      // A repeat is harmless; the same chunk with other text means one of them is forged.
      if (known !== chunk.body) this.#giveUp(id, pending);
      return known === chunk.body;
    }
    pending.parts.set(chunk.index, chunk.body);
    pending.bytes += chunk.body.length;
    this.#pendingBytes += chunk.body.length;
    if (pending.parts.size < chunk.count) {
      while (this.#pendingBytes > this.#maxPendingBytes && this.#pending.size > 0) this.#giveUpOldest();
      return true;
    }
    const bodies: string[] = [];
    for (let i = 1; i <= chunk.count; i++) bodies.push(pending.parts.get(i) ?? "");
    this.#forget(id, pending);
    this.#options.onMessage(chunk.key, bodies.join(""));
    return true;
  }

  /** Messages awaiting chunks now. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Drop everything pending without reporting it, and stop the timers. */
  close(): void {
    this.#closed = true;
    for (const pending of this.#pending.values()) clearTimeout(pending.timer);
    this.#pending.clear();
    this.#pendingBytes = 0;
  }

  #expire(id: string): void {
    const pending = this.#pending.get(id);
    if (pending) this.#giveUp(id, pending);
  }

  #giveUpOldest(): void {
    const [oldest] = this.#pending;
    if (oldest) this.#giveUp(...oldest);
  }

  #giveUp(id: string, pending: Pending): void {
    this.#forget(id, pending);
    const { key, firstId, lastId, count } = pending.chunk;
    this.#options.onIncomplete({ key, firstId, lastId, received: pending.parts.size, count });
  }

  #forget(id: string, pending: Pending): void {
    clearTimeout(pending.timer);
    this.#pending.delete(id);
    this.#pendingBytes -= pending.bytes;
  }
}

/** Ledger ids first to last, both included. */
export type IdRange = readonly [first: number, last: number];

const ledgerId = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

/**
 * The two forms a message takes (sql/02_notify.sql). Only the ids are used: anyone who can connect
 * may NOTIFY, so a row's content in a message is never shown to a client; the listener reads the
 * rows the ids name from the ledger.
 */
const messageSchema = z.union([
  z.array(z.looseObject({ id: ledgerId })),
  z.strictObject({
    v: z.literal(1),
    ranges: z.array(z.tuple([ledgerId, ledgerId]).refine(([first, last]) => first <= last)).min(1),
  }),
]);

/** Ranges in ascending order, overlapping or adjacent ones merged. */
export function mergeRanges(ranges: readonly IdRange[]): IdRange[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [first, last] of sorted) {
    const previous = merged.at(-1);
    if (previous && first <= previous[1] + 1) previous[1] = Math.max(previous[1], last);
    else merged.push([first, last]);
  }
  return merged;
}

/**
 * The ledger ids a reassembled message names, as ascending disjoint ranges: those of a JSON array of
 * rows (waitroom._publish), or of a version 1 notice (waitroom._publish_ids). Throws for anything
 * else. How many ids a read may name is waitroom.notice_events's to refuse.
 */
export function decodeMessage(text: string): IdRange[] {
  const parsed = messageSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new TypeError("event message is neither a JSON array of rows with ids nor a version 1 notice");
  }
  const value = parsed.data;
  return mergeRanges(Array.isArray(value) ? value.map(({ id }) => [id, id] as const) : value.ranges);
}
