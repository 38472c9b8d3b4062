/*
 * The NOTIFY codec. Verbs (sql/02_notify.sql) send each message on channel
 * waitroom_events as chunks '<first_id>-<last_id>:<index>/<count>:<body>' under
 * Postgres's 8000-byte payload limit; this module puts them back together and
 * says what a message is: a JSON array of ledger rows (waitroom._publish), or a
 * compact notice naming them by id ranges, '{"v": 1, "ranges": [[first, last], …]}'
 * (waitroom._publish_ids), whose rows the listener reads from the ledger.
 */

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
  onMessage: (key: string, text: string) => void;
  /** A message given up (timed out or evicted): read events firstId..lastId from the table instead. */
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

type Pending = { chunk: Chunk; parts: Map<number, string>; timer: ReturnType<typeof setTimeout> };

/**
 * Collects chunks into messages: any order, duplicates ignored, messages
 * interleaved. Callbacks run synchronously inside push() or from a timer.
 */
export class Reassembler {
  readonly #options: ReassemblerOptions;
  readonly #maxPending: number;
  /** Insertion order is age: the first entry is the oldest. */
  readonly #pending = new Map<string, Pending>();
  /** Keys recently delivered or given up, so their late or repeated chunks do not start a new message. */
  readonly #settled = new Set<string>();
  #closed = false;

  constructor(options: ReassemblerOptions) {
    this.#options = options;
    this.#maxPending = Math.max(1, options.maxPending ?? 256);
  }

  /** Feed one NOTIFY payload. false when it was malformed or could not be used. */
  push(payload: string): boolean {
    if (this.#closed) return false;
    const chunk = parseChunk(payload);
    if (!chunk) return false;
    if (this.#settled.has(chunk.key)) return true;
    if (chunk.count === 1) {
      this.#settle(chunk.key);
      this.#options.onMessage(chunk.key, chunk.body);
      return true;
    }
    let pending = this.#pending.get(chunk.key);
    if (!pending) {
      if (this.#pending.size >= this.#maxPending) {
        const [oldest] = this.#pending.values();
        if (oldest) this.#giveUp(oldest);
      }
      const timer = setTimeout(() => this.#expire(chunk.key), this.#options.timeoutMs);
      timer.unref?.(); // a half-received message must not keep the process alive
      pending = { chunk, parts: new Map(), timer };
      this.#pending.set(chunk.key, pending);
    } else if (pending.chunk.count !== chunk.count) {
      return false; // same key, other shape: not part of this message
    }
    if (!pending.parts.has(chunk.index)) pending.parts.set(chunk.index, chunk.body);
    if (pending.parts.size < chunk.count) return true;

    const bodies: string[] = [];
    for (let i = 1; i <= chunk.count; i++) bodies.push(pending.parts.get(i) ?? "");
    this.#forget(pending);
    this.#options.onMessage(chunk.key, bodies.join(""));
    return true;
  }

  /** Drop everything pending without reporting it, and stop the timers. */
  close(): void {
    this.#closed = true;
    for (const pending of this.#pending.values()) clearTimeout(pending.timer);
    this.#pending.clear();
    this.#settled.clear();
  }

  #expire(key: string): void {
    const pending = this.#pending.get(key);
    if (pending) this.#giveUp(pending);
  }

  #giveUp(pending: Pending): void {
    this.#forget(pending);
    const { key, firstId, lastId, count } = pending.chunk;
    this.#options.onIncomplete({ key, firstId, lastId, received: pending.parts.size, count });
  }

  #forget(pending: Pending): void {
    clearTimeout(pending.timer);
    this.#pending.delete(pending.chunk.key);
    this.#settle(pending.chunk.key);
  }

  #settle(key: string): void {
    this.#settled.add(key);
    // Remember as many settled keys as messages may be pending: enough to absorb stragglers.
    if (this.#settled.size > this.#maxPending) {
      const [oldest] = this.#settled;
      if (oldest !== undefined) this.#settled.delete(oldest);
    }
  }
}

/** Ledger ids first to last, both included. */
export type IdRange = readonly [first: number, last: number];

/** A reassembled message: the events themselves, or a compact notice of the ledger rows to read. */
export type Message = { kind: "events"; events: LedgerEvent[] } | { kind: "notice"; ranges: IdRange[] };

/** The compact notice format this codec reads; another version is undecodable here. */
const NOTICE_VERSION = 1;

const isId = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 1;

/**
 * What a reassembled message holds; throws unless it is a JSON array of events or a notice of this
 * version whose ranges are pairs of ids. Their order and number are for waitroom.notice_events to
 * check: it refuses what waitroom._publish_ids never sends.
 */
export function decodeMessage(text: string): Message {
  const value: unknown = JSON.parse(text);
  if (Array.isArray(value)) {
    for (const event of value as unknown[]) {
      if (typeof event !== "object" || event === null || !Number.isSafeInteger((event as { id?: unknown }).id)) {
        throw new TypeError("event message holds an item without an integer id");
      }
    }
    return { kind: "events", events: value as LedgerEvent[] };
  }
  if (typeof value !== "object" || value === null || (value as { v?: unknown }).v !== NOTICE_VERSION) {
    throw new TypeError(`event message is neither a JSON array nor a version ${NOTICE_VERSION} notice`);
  }
  const ranges: unknown = (value as { ranges?: unknown }).ranges;
  if (
    !Array.isArray(ranges) ||
    ranges.length === 0 ||
    !ranges.every((range) => Array.isArray(range) && range.length === 2 && isId(range[0]) && isId(range[1]))
  ) {
    throw new TypeError("notice ranges are not a list of [first, last] ledger ids");
  }
  return { kind: "notice", ranges: ranges as IdRange[] };
}
