import type { StreamSettings } from "../config/index.js";
import type { Sql } from "../db/client.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import {
  latestEventId,
  type PresentedToken,
  positions,
  roomEvents,
  type TicketState,
  type TokenState,
  terminalStatuses,
  ticketEvents,
  touch,
} from "../queue/index.js";
import type { LedgerEvent } from "./codec.js";

/*
 * Fans ledger events out to this process's event streams. Events name the
 * tickets they concern; positions and depth are not in them, so after any
 * change in a room the room's subscribers are re-read with ONE
 * waitroom.positions query and sent a `state` only where their numbers moved.
 * Joins are never announced: every refreshMs, the subscribers whose state was
 * read more than half of it ago are re-read too (streams just opened were).
 */

/** Where a stream's text goes; write() returns false once the client is gone or was dropped. */
export type StreamClient = {
  write(text: string): boolean;
  close(): void;
};

/** What a stream shows: the ticket's state, ISO times, no internal instance number. */
export type StreamData = Omit<TicketState, "expires_at" | "instance" | "end_reason"> & {
  expires_at: string | null;
  reason?: string;
  room?: Record<string, unknown>;
};

type Subscriber = {
  ticketId: string;
  roomId: string;
  instance: number;
  client: StreamClient;
  /** The state last sent. */
  shown: StreamData;
  /** When (Hub's clock) the read that gave `shown` (or confirmed it) began. */
  readAt: number;
  /** Ids of events already sent (bounded), so replay and live delivery never repeat one. */
  sent: Set<number>;
  /**
   * An event that would end the stream (the ticket ended, the room was deleted), held until the next
   * read of the ticket's state agrees: a forged notice may name a real but old row (of an earlier
   * instance of the ticket, or of a room of the same name deleted long ago).
   */
  ending: LedgerEvent | undefined;
  /** The delivery (Hub's count) in which `ending` was heard: a state read begun before it cannot confirm or deny it. */
  endingHeardIn: number;
  /** When (Hub's clock) something was last written to the stream: keep-alive comments go to quiet ones. */
  writtenAt: number;
  /** When (Hub's clock) the stream is ended for its client to reconnect (Infinity: never). */
  recycleAt: number;
  /** The newest ledger id this stream resumed after or was sent. */
  resumeAfter: number;
  closed: boolean;
};

/** Ledger event types → the named SSE events clients see. */

const SENT_IDS_KEPT = 256;
const TOUCH_BATCH = 10_000;
/** First SSE lines: how long clients wait before reconnecting. */
export const RETRY_MS = 2_000;
/** A stream ended for a newer one of its ticket waits this long before it reconnects (and ends the oldest in turn). */
const REPLACED_RETRY_MS = 30_000;

/**
 * Shutdown (or a recycled stream): the client reconnects after retryMs, to another replica; the stream
 * closes. With `resume`, a `reconnect` event first gives the client the ledger id to come back with as
 * Last-Event-ID (an id in a block without data sets nothing in EventSource implementations such as
 * the `eventsource` package), so what commits while it is away is replayed, not lost.
 */
export function sayGoodbye(
  client: StreamClient,
  why = "server shutting down",
  retryMs = 500,
  resume?: { id: number; data: StreamData },
): void {
  const goodbye = resume ? formatSse({ event: "reconnect", ...resume }) : "";
  client.write(`${goodbye}${formatSse({ retry: retryMs }).trimEnd()}\n: ${why}, reconnect\n\n`);
  client.close();
}

export function formatSse(message: { event?: string; id?: number; data?: unknown; retry?: number }): string {
  let text = "";
  if (message.retry !== undefined) text += `retry: ${message.retry}\n`;
  if (message.event) text += `event: ${message.event}\n`;
  if (message.id !== undefined) text += `id: ${message.id}\n`;
  if (message.data !== undefined) text += `data: ${JSON.stringify(message.data)}\n`;
  return `${text}\n`;
}

/** A ticket state as JSON clients see it (streams and GET /v1/tickets/{id}). */
export const ticketView = ({
  instance: _instance,
  end_reason: _reason,
  expires_at,
  ...state
}: TicketState): StreamData => ({
  ...state,
  expires_at: expires_at ? new Date(expires_at).toISOString() : null,
});

const withReason = (data: StreamData, reason: string | null): StreamData => (reason ? { ...data, reason } : data);

/** Whether a state read shows the stream anything new (checked before building its view: most rows of a re-read did not move). */
const moved = (shown: StreamData, state: TicketState) =>
  shown.status !== state.status ||
  shown.position !== state.position ||
  shown.depth !== state.depth ||
  shown.approximate !== state.approximate ||
  shown.eta_seconds !== state.eta_seconds ||
  shown.expires_at !== (state.expires_at === null ? null : new Date(state.expires_at).toISOString());

/** A room's re-read: every subscriber (something was announced), or only those not read lately (the periodic one). */
type RefreshScope = "all" | "stale";

/** How a stream open ended: streaming, nothing left to stream, or refused with the token's verdict. */
export type Opened =
  | { kind: "streaming"; unsubscribe: () => void }
  | { kind: "over" }
  | { kind: "refused"; code: string };

export type HubOptions = {
  sql: Sql;
  log: Logger;
  metrics: Metrics;
  settings: StreamSettings;
  /** Verifies a presented token and reads the ticket's state (grouped with the other opens of the moment). */
  readState: (presented: PresentedToken) => Promise<TokenState>;
  /** Ledger event type → the SSE event a stream shows it as (queue.streamEventTypes, from SQL). */
  streamEvents: ReadonlyMap<string, string>;
  /** Monotonic milliseconds (performance.now by default; tests move it themselves). */
  now?: () => number;
  /** A room's streams are read in slices of this many at once (ROOM_READ_SLICE; tests make it small). */
  readSlice?: number;
};

/**
 * A room's re-read, in slices read at the same time on as many connections: PostgreSQL runs each
 * query on one core, and an opening's draw re-reads every stream of the room (19,000 positions took
 * ≈ 200 ms of one core while the service waited for them). At most ROOM_READ_SLICES at once, so a
 * huge room leaves the pool's other connections to the joins. Each slice is its own snapshot: a
 * change committing between them is announced, and the read that follows shows it.
 */
const ROOM_READ_SLICE = 5000;
const ROOM_READ_SLICES = 4;

export class Hub {
  readonly #sql: Sql;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #settings: StreamSettings;
  readonly #readState: HubOptions["readState"];
  readonly #streamEvents: ReadonlyMap<string, string>;
  readonly #now: () => number;
  readonly #readSlice: number;
  readonly #rooms = new Map<string, Set<Subscriber>>();
  /**
   * Events heard for streams still being opened (token being verified), by ticket: each open
   * hears its ticket's events and every room-wide one, and sends those of its room once open.
   */
  readonly #opening = new Map<string, Set<LedgerEvent[]>>();
  #closed = false;
  /**
   * The newest ledger id at start or delivered since: every stream has been shown all it concerns up
   * to here (as events or in its state). Unknown until the ledger's head is read.
   */
  #latestId: number | undefined;
  readonly #tickets = new Map<string, Set<Subscriber>>();
  /** Rooms being re-read, and the re-read asked for meanwhile (undefined: none yet). */
  readonly #refreshing = new Map<string, RefreshScope | undefined>();
  /** Rooms whose last read was dropped for the re-read asked for meanwhile: the next one is never dropped. */
  readonly #dropped = new Set<string>();
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  /** Deliveries so far, numbered: held ends and state reads are ordered by it. */
  #deliveries = 0;

  constructor(options: HubOptions) {
    this.#sql = options.sql;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#settings = options.settings;
    this.#readState = options.readState;
    this.#streamEvents = options.streamEvents;
    this.#now = options.now ?? (() => performance.now());
    this.#readSlice = options.readSlice ?? ROOM_READ_SLICE;
    const every = (ms: number, work: () => void) => {
      const timer = setInterval(work, ms);
      timer.unref();
      this.#timers.push(timer);
    };
    every(this.#settings.keepAliveMs / 2, () => {
      this.#recycle();
      this.keepAlive();
    });
    every(this.#settings.refreshMs, () => {
      for (const room of this.#rooms.keys()) this.refresh(room, "stale");
    });
    every(this.#settings.presenceMs, () => void this.#recordPresence());
    // Until the first event arrives, streams resume after the ledger's head at start.
    latestEventId(this.#sql).then(
      (id) => {
        this.#latestId = Math.max(this.#latestId ?? 0, id);
      },
      (error: unknown) => this.#log.warn({ err: error }, "could not read the ledger's newest id"),
    );
  }

  get streams(): number {
    let count = 0;
    for (const subscribers of this.#rooms.values()) count += subscribers.size;
    return count;
  }

  /**
   * Open a stream for a presented ticket token: verify it, replay what the client missed after
   * `lastEventId`, send a `state` snapshot, then live events. Opens arriving together are verified
   * and read together (readState). Refused for an unknown or superseded token; over when the ticket
   * has ended and the client missed nothing: there is nothing left to stream.
   */
  async open(presented: PresentedToken, client: StreamClient, lastEventId?: number): Promise<Opened> {
    // Hearing before reading, so nothing that commits meanwhile falls between the reads and the live feed.
    const heard: LedgerEvent[] = [];
    const hearing = this.#opening.get(presented.ticketId) ?? new Set();
    hearing.add(heard);
    this.#opening.set(presented.ticketId, hearing);
    try {
      let readAt = this.#now();
      let { code, state } = await this.#readState(presented);
      let missed: LedgerEvent[] = [];
      if (state && lastEventId !== undefined) {
        missed = await ticketEvents(this.#sql, presented.ticketId, lastEventId);
        // The snapshot must be newer than what is replayed before it.
        if (missed.length > 0) {
          readAt = this.#now();
          ({ code, state } = await this.#readState(presented));
        }
      }
      if (!state) return { kind: "refused", code };
      if (missed.length === 0 && terminalStatuses.has(state.status)) return { kind: "over" };
      if (this.#closed) {
        sayGoodbye(client);
        return { kind: "streaming", unsubscribe: () => {} };
      }
      const subscriber = this.#add(state, readAt, client, lastEventId ?? 0);
      for (const event of missed) this.#sendEvent(subscriber, event);
      this.#sendState(subscriber, state, true);
      for (const event of heard) if (event.room_id === subscriber.roomId) this.#sendEvent(subscriber, event);
      if (subscriber.ending) this.refresh(subscriber.roomId);
      return { kind: "streaming", unsubscribe: () => this.#remove(subscriber) };
    } finally {
      hearing.delete(heard);
      if (hearing.size === 0 && this.#opening.get(presented.ticketId) === hearing) {
        this.#opening.delete(presented.ticketId);
      }
    }
  }

  /**
   * Events from the LISTEN connection (or a replay): re-read their rooms, then send the events to
   * the tickets they name. The rooms' reads are asked for first and the events written after this
   * turn's I/O (setImmediate), when the driver has sent the reads' queries (a large one at once):
   * an opening's draw admits a thousand at once, and the room's positions, its slowest read, then
   * run in PostgreSQL while those thousand are written. A read answers after its round trip, so
   * after the events it follows.
   */
  deliver(events: readonly LedgerEvent[]): void {
    this.#deliveries += 1;
    const touched = new Set<string>();
    for (const event of events) {
      this.#latestId = Math.max(this.#latestId ?? 0, event.id);
      // Seats or places changed: everyone in the room may have moved.
      if (this.#rooms.has(event.room_id)) touched.add(event.room_id);
      if (event.ticket_id) {
        for (const heard of this.#opening.get(event.ticket_id) ?? []) heard.push(event);
      } else {
        for (const hearing of this.#opening.values()) for (const heard of hearing) heard.push(event);
      }
    }
    for (const room of touched) this.refresh(room);
    const delivery = this.#deliveries;
    setImmediate(() => {
      for (const event of events) this.#sendToAudience(event, delivery);
    });
  }

  #sendToAudience(event: LedgerEvent, delivery: number): void {
    const audience = event.ticket_id ? this.#tickets.get(event.ticket_id) : this.#rooms.get(event.room_id);
    for (const subscriber of [...(audience ?? [])]) {
      try {
        this.#sendEvent(subscriber, event, delivery);
      } catch (error) {
        // One stream's trouble ends that stream (its client reconnects), never anyone else's.
        this.#log.error({ err: error, event: event.id }, "could not send an event to a stream");
        this.#end(subscriber);
      }
    }
  }

  /** The LISTEN connection was lost or a message was: replay the ledger since `since`, then re-read every room. */
  async replay(since: Date): Promise<void> {
    const rooms = [...this.#rooms.keys()];
    if (rooms.length === 0) return;
    try {
      this.deliver(await roomEvents(this.#sql, rooms, since));
    } catch (error) {
      this.#log.error({ err: error }, "replay from the ledger failed; positions are re-read anyway");
    }
    for (const room of rooms) this.refresh(room);
  }

  /** Re-read a room's subscribers with one query; coalesces calls that arrive while one runs. */
  refresh(room: string, scope: RefreshScope = "all"): void {
    if (this.#refreshing.has(room)) {
      const pending = this.#refreshing.get(room);
      this.#refreshing.set(room, pending === "all" || scope === "all" ? "all" : "stale");
      return;
    }
    this.#refreshing.set(room, undefined);
    void this.#refreshRoom(room, scope)
      .catch((error: unknown) => this.#log.warn({ err: error, room }, "could not refresh positions"))
      .finally(() => {
        const again = this.#refreshing.get(room);
        this.#refreshing.delete(room);
        if (again) this.refresh(room, again);
      });
  }

  /** Shutdown: tell every client to reconnect soon (to another replica) and close the streams. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const subscribers of this.#rooms.values()) {
      for (const subscriber of [...subscribers]) {
        this.#sayGoodbye(subscriber, "server shutting down", 500);
        this.#end(subscriber);
      }
    }
  }

  /**
   * End streams past their age: a live client reconnects at once and resumes with Last-Event-ID; one
   * that vanished without closing its connection stops counting as present.
   */
  #recycle(): void {
    const now = this.#now();
    for (const subscribers of this.#rooms.values()) {
      for (const subscriber of [...subscribers]) {
        if (subscriber.recycleAt > now) continue;
        this.#metrics.streamsRecycled.inc();
        this.#sayGoodbye(subscriber, "stream recycled", 50);
        this.#end(subscriber);
      }
    }
  }

  /**
   * A stream shows no id until its first ledger event, and its client would come back without
   * Last-Event-ID and lose what commits while it is away. It resumes after the newest id this hub
   * delivered (all it concerns up to there is in the stream, as events or in its state), but before
   * an end still held for confirmation, which the next stream must show.
   */
  #sayGoodbye(subscriber: Subscriber, why: string, retryMs: number): void {
    const { ending, resumeAfter } = subscriber;
    let id = Math.max(this.#latestId ?? 0, resumeAfter);
    if (ending && ending.id > resumeAfter) id = Math.min(id, ending.id - 1);
    const known = this.#latestId !== undefined || resumeAfter > 0;
    sayGoodbye(subscriber.client, why, retryMs, known ? { id, data: subscriber.shown } : undefined);
  }

  async #refreshRoom(room: string, scope: RefreshScope): Promise<void> {
    const readAt = this.#now();
    const staleBefore = readAt - this.#settings.refreshMs / 2;
    const subscribers = [...(this.#rooms.get(room) ?? [])].filter((s) => scope === "all" || s.readAt <= staleBefore);
    if (subscribers.length === 0) return;
    const ids = [...new Set(subscribers.map((s) => s.ticketId))];
    const readAfter = this.#deliveries;
    const rows = await this.#readPositions(room, ids);
    // Something was announced while this read was in flight, and the room is read again at once: these
    // states are already old, and showing them would only hold the newer ones up (a draw re-places
    // everyone). Once in a row at most, so that a room that never stops changing is still shown.
    if (this.#refreshing.get(room) === "all" && !this.#dropped.has(room)) {
      this.#dropped.add(room);
      this.#metrics.positionReadsDropped.inc();
      return;
    }
    this.#dropped.delete(room);
    const byTicket = new Map(rows.map((row) => [row.ticket_id, row]));
    for (const subscriber of subscribers) {
      // An end heard while this read was in flight waits for the read that follows its delivery.
      if (subscriber.ending && subscriber.endingHeardIn > readAfter) continue;
      subscriber.readAt = readAt;
      this.#sendState(subscriber, byTicket.get(subscriber.ticketId), false);
    }
  }

  async #readPositions(room: string, ids: readonly string[]): Promise<TicketState[]> {
    const slices = Math.min(ROOM_READ_SLICES, Math.ceil(ids.length / this.#readSlice));
    const size = Math.ceil(ids.length / slices);
    const parts = await Promise.all(
      Array.from({ length: slices }, (_, i) => positions(this.#sql, room, ids.slice(i * size, (i + 1) * size))),
    );
    this.#metrics.positionQueries.inc(slices);
    return parts.flat();
  }

  /** Send the state if it moved (or always, for the snapshot); ends the stream when the ticket is over. */
  #sendState(subscriber: Subscriber, state: TicketState | undefined, snapshot: boolean): void {
    if (subscriber.closed) return;
    const { ending } = subscriber;
    subscriber.ending = undefined;
    if (!state) {
      // Deleted with its room, or purged.
      if (ending) this.#writeEvent(subscriber, ending);
      else this.#write(subscriber, formatSse({ event: "ended", data: { ...subscriber.shown, status: "ended" } }));
      this.#end(subscriber);
      return;
    }
    if (state.instance !== subscriber.instance) {
      this.#write(subscriber, formatSse({ event: "superseded", data: { ...ticketView(state), status: "superseded" } }));
      this.#end(subscriber);
      return;
    }
    if (terminalStatuses.has(state.status)) {
      if (ending?.ticket_id) this.#writeEvent(subscriber, ending);
      // Read before the ledger event that ended it arrived: the state says why (sold_out, say) as the event would.
      else
        this.#write(subscriber, formatSse({ event: "ended", data: withReason(ticketView(state), state.end_reason) }));
      this.#end(subscriber);
      return;
    }
    if (ending)
      this.#log.warn({ event: ending.id, ticket: subscriber.ticketId }, "ignored an end the ticket's state denies");
    if (!snapshot && !moved(subscriber.shown, state)) return;
    const data = ticketView(state);
    subscriber.shown = data;
    this.#write(subscriber, formatSse({ event: "state", data }));
  }

  /** `delivery`: the deliver() that heard it (a held end waits for that delivery's read or a later one). */
  #sendEvent(subscriber: Subscriber, event: LedgerEvent, delivery = this.#deliveries): void {
    const name = this.#streamEvents.get(event.type);
    if (!name || subscriber.closed || subscriber.sent.has(event.id)) return;
    if (name === "ended" || event.type === "room_deleted") {
      // Held for the state read that follows every delivery (deliver → refresh), which confirms or denies it.
      if (!subscriber.ending) {
        subscriber.ending = event;
        subscriber.endingHeardIn = delivery;
      }
      return;
    }
    this.#writeEvent(subscriber, event);
  }

  /** Write a ledger event as its named SSE event; ends the stream after an end. */
  #writeEvent(subscriber: Subscriber, event: LedgerEvent): void {
    const name = this.#streamEvents.get(event.type) as string;
    subscriber.sent.add(event.id);
    subscriber.resumeAfter = Math.max(subscriber.resumeAfter, event.id);
    if (subscriber.sent.size > SENT_IDS_KEPT) {
      const [oldest] = subscriber.sent;
      if (oldest !== undefined) subscriber.sent.delete(oldest);
    }
    const data: StreamData = { ...subscriber.shown };
    if (name === "room") {
      data.room = { event: event.type, ...event.data };
    } else {
      data.status = (name === "ended" ? event.type : name) as StreamData["status"];
      data.position = null;
      const deadline = event.data.claim_deadline ?? event.data.expires_at;
      if (typeof deadline === "string") data.expires_at = new Date(deadline).toISOString();
      if (typeof event.data.reason === "string") data.reason = event.data.reason;
      subscriber.shown = data;
    }
    this.#write(subscriber, formatSse({ event: name, id: event.id, data }));
    if (name === "ended" || event.type === "room_deleted") this.#end(subscriber);
  }

  #write(subscriber: Subscriber, text: string): void {
    subscriber.writtenAt = this.#now();
    if (!subscriber.client.write(text)) {
      this.#metrics.streamsDropped.inc();
      this.#end(subscriber);
    }
  }

  /**
   * A comment to every stream nothing was written to for half of keepAliveMs, so that proxies do not
   * close it; run every half period, so none is quiet longer than keepAliveMs. Streams sent a state
   * lately (every tick of an admitting room, an opening's draw) cost no write: 19,000 of them took
   * ≈ 0.4 s of this thread, and the writes of a draw that fell on it waited.
   */
  keepAlive(): void {
    const quietSince = this.#now() - this.#settings.keepAliveMs / 2;
    for (const subscribers of this.#rooms.values()) {
      for (const subscriber of [...subscribers]) {
        if (subscriber.writtenAt <= quietSince) this.#write(subscriber, ": keep-alive\n\n");
      }
    }
  }

  async #recordPresence(): Promise<void> {
    const ids = [...this.#tickets.keys()];
    for (let i = 0; i < ids.length; i += TOUCH_BATCH) {
      try {
        await touch(this.#sql, ids.slice(i, i + TOUCH_BATCH));
      } catch (error) {
        this.#log.warn({ err: error }, "could not record presence of open streams");
      }
    }
  }

  #add(state: TicketState, readAt: number, client: StreamClient, resumeAfter: number): Subscriber {
    const subscriber: Subscriber = {
      ticketId: state.ticket_id,
      roomId: state.room_id,
      instance: state.instance,
      client,
      shown: ticketView(state),
      readAt,
      sent: new Set(),
      ending: undefined,
      endingHeardIn: 0,
      writtenAt: readAt,
      // Spread over half the age to the whole, so streams opened together do not all reconnect together.
      recycleAt:
        this.#settings.maxAgeMs > 0
          ? this.#now() + this.#settings.maxAgeMs * (0.5 + Math.random() / 2)
          : Number.POSITIVE_INFINITY,
      resumeAfter,
      closed: false,
    };
    const inRoom = this.#rooms.get(subscriber.roomId) ?? new Set();
    inRoom.add(subscriber);
    this.#rooms.set(subscriber.roomId, inRoom);
    const forTicket = this.#tickets.get(subscriber.ticketId) ?? new Set();
    forTicket.add(subscriber);
    this.#tickets.set(subscriber.ticketId, forTicket);
    this.#metrics.streams.inc();
    // The newest streams of a ticket are the live ones (an older one may be a tab closed or a
    // connection that died unnoticed): beyond the cap, the oldest ends.
    const [oldest] = forTicket;
    if (forTicket.size > this.#settings.perTicket && oldest) {
      oldest.client.write(`retry: ${REPLACED_RETRY_MS}\n: replaced by a newer stream of this ticket\n\n`);
      this.#end(oldest);
    }
    return subscriber;
  }

  #end(subscriber: Subscriber): void {
    if (subscriber.closed) return;
    subscriber.closed = true;
    subscriber.client.close();
    this.#remove(subscriber);
  }

  #remove(subscriber: Subscriber): void {
    const inRoom = this.#rooms.get(subscriber.roomId);
    if (!inRoom?.delete(subscriber)) return;
    if (inRoom.size === 0) this.#rooms.delete(subscriber.roomId);
    const forTicket = this.#tickets.get(subscriber.ticketId);
    forTicket?.delete(subscriber);
    if (forTicket?.size === 0) this.#tickets.delete(subscriber.ticketId);
    this.#metrics.streams.dec();
  }
}
