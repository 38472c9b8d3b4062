import type { StreamSettings } from "../config/index.js";
import type { Sql } from "../db/client.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import {
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
 * change in a room (and every refreshMs, since joins are never announced)
 * the room's subscribers are re-read with ONE waitroom.positions query and
 * sent a `state` only where their numbers moved.
 */

/** Where a stream's text goes; write() returns false once the client is gone or was dropped. */
export type StreamClient = {
  write(text: string): boolean;
  close(): void;
};

/** What a stream shows: the ticket's state, ISO times, no internal instance number. */
export type StreamData = Omit<TicketState, "expires_at" | "instance"> & {
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
  /** Ids of events already sent (bounded), so replay and live delivery never repeat one. */
  sent: Set<number>;
  closed: boolean;
};

/** Ledger event types → the named SSE events clients see. */
const streamEventName: Record<string, string> = {
  admitted: "admitted",
  active: "active",
  draining: "draining",
  ended: "ended",
  expired: "ended",
  left: "ended",
  room_configured: "room",
  room_deleted: "room",
  room_health: "room",
};

const SENT_IDS_KEPT = 256;
const TOUCH_BATCH = 10_000;
/** First SSE lines: how long clients wait before reconnecting. */
export const RETRY_MS = 2_000;
/** A stream ended for a newer one of its ticket waits this long before it reconnects (and ends the oldest in turn). */
const REPLACED_RETRY_MS = 30_000;

export function formatSse(message: { event?: string; id?: number; data?: unknown; retry?: number }): string {
  let text = "";
  if (message.retry !== undefined) text += `retry: ${message.retry}\n`;
  if (message.event) text += `event: ${message.event}\n`;
  if (message.id !== undefined) text += `id: ${message.id}\n`;
  if (message.data !== undefined) text += `data: ${JSON.stringify(message.data)}\n`;
  return `${text}\n`;
}

/** A ticket state as JSON clients see it (streams and GET /v1/tickets/{id}). */
export const ticketView = ({ instance: _instance, expires_at, ...state }: TicketState): StreamData => ({
  ...state,
  expires_at: expires_at ? new Date(expires_at).toISOString() : null,
});

const moved = (a: StreamData, b: StreamData) =>
  a.status !== b.status ||
  a.position !== b.position ||
  a.depth !== b.depth ||
  a.approximate !== b.approximate ||
  a.eta_seconds !== b.eta_seconds ||
  a.expires_at !== b.expires_at;

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
};

export class Hub {
  readonly #sql: Sql;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #settings: StreamSettings;
  readonly #readState: HubOptions["readState"];
  readonly #rooms = new Map<string, Set<Subscriber>>();
  /**
   * Events heard for streams still being opened (token being verified), by ticket: each open
   * hears its ticket's events and every room-wide one, and sends those of its room once open.
   */
  readonly #opening = new Map<string, Set<LedgerEvent[]>>();
  #closed = false;
  readonly #tickets = new Map<string, Set<Subscriber>>();
  /** Rooms being re-read; true = changed again meanwhile, read once more. */
  readonly #refreshing = new Map<string, boolean>();
  readonly #timers: ReturnType<typeof setInterval>[] = [];

  constructor(options: HubOptions) {
    this.#sql = options.sql;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#settings = options.settings;
    this.#readState = options.readState;
    const every = (ms: number, work: () => void) => {
      const timer = setInterval(work, ms);
      timer.unref();
      this.#timers.push(timer);
    };
    every(this.#settings.keepAliveMs, () => this.#broadcast(": keep-alive\n\n"));
    every(this.#settings.refreshMs, () => {
      for (const room of this.#rooms.keys()) this.refresh(room);
    });
    every(this.#settings.presenceMs, () => void this.#recordPresence());
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
      let { code, state } = await this.#readState(presented);
      let missed: LedgerEvent[] = [];
      if (state && lastEventId !== undefined) {
        missed = await ticketEvents(this.#sql, presented.ticketId, lastEventId);
        // The snapshot must be newer than what is replayed before it.
        if (missed.length > 0) ({ code, state } = await this.#readState(presented));
      }
      if (!state) return { kind: "refused", code };
      if (missed.length === 0 && terminalStatuses.has(state.status)) return { kind: "over" };
      if (this.#closed) {
        this.#sayGoodbye(client);
        return { kind: "streaming", unsubscribe: () => {} };
      }
      const subscriber = this.#add(state, client);
      for (const event of missed) this.#sendEvent(subscriber, event);
      this.#sendState(subscriber, state, true);
      for (const event of heard) if (event.room_id === subscriber.roomId) this.#sendEvent(subscriber, event);
      return { kind: "streaming", unsubscribe: () => this.#remove(subscriber) };
    } finally {
      hearing.delete(heard);
      if (hearing.size === 0 && this.#opening.get(presented.ticketId) === hearing) {
        this.#opening.delete(presented.ticketId);
      }
    }
  }

  /** Events from the LISTEN connection (or a replay): to the tickets they name, then re-read their rooms. */
  deliver(events: readonly LedgerEvent[]): void {
    const touched = new Set<string>();
    for (const event of events) {
      // Seats or places changed: everyone in the room may have moved.
      if (this.#rooms.has(event.room_id)) touched.add(event.room_id);
      if (event.ticket_id) {
        for (const heard of this.#opening.get(event.ticket_id) ?? []) heard.push(event);
      } else {
        for (const hearing of this.#opening.values()) for (const heard of hearing) heard.push(event);
      }
      const audience = event.ticket_id ? this.#tickets.get(event.ticket_id) : this.#rooms.get(event.room_id);
      for (const subscriber of [...(audience ?? [])]) this.#sendEvent(subscriber, event);
    }
    for (const room of touched) this.refresh(room);
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
  refresh(room: string): void {
    if (this.#refreshing.has(room)) {
      this.#refreshing.set(room, true);
      return;
    }
    this.#refreshing.set(room, false);
    void this.#refreshRoom(room)
      .catch((error: unknown) => this.#log.warn({ err: error, room }, "could not refresh positions"))
      .finally(() => {
        const again = this.#refreshing.get(room);
        this.#refreshing.delete(room);
        if (again) this.refresh(room);
      });
  }

  /** Shutdown: tell every client to reconnect soon (to another replica) and close the streams. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const subscribers of this.#rooms.values()) {
      for (const subscriber of [...subscribers]) {
        this.#sayGoodbye(subscriber.client);
        this.#end(subscriber);
      }
    }
  }

  #sayGoodbye(client: StreamClient): void {
    client.write(`${formatSse({ retry: 500 }).trimEnd()}\n: server shutting down, reconnect\n\n`);
    client.close();
  }

  async #refreshRoom(room: string): Promise<void> {
    const subscribers = [...(this.#rooms.get(room) ?? [])];
    if (subscribers.length === 0) return;
    const ids = [...new Set(subscribers.map((s) => s.ticketId))];
    const rows = await positions(this.#sql, room, ids);
    this.#metrics.positionQueries.inc();
    const byTicket = new Map(rows.map((row) => [row.ticket_id, row]));
    for (const subscriber of subscribers) this.#sendState(subscriber, byTicket.get(subscriber.ticketId), false);
  }

  /** Send the state if it moved (or always, for the snapshot); ends the stream when the ticket is over. */
  #sendState(subscriber: Subscriber, state: TicketState | undefined, snapshot: boolean): void {
    if (subscriber.closed) return;
    if (!state) {
      // Deleted with its room, or purged.
      this.#write(subscriber, formatSse({ event: "ended", data: { ...subscriber.shown, status: "ended" } }));
      this.#end(subscriber);
      return;
    }
    const data = ticketView(state);
    if (state.instance !== subscriber.instance) {
      this.#write(subscriber, formatSse({ event: "superseded", data: { ...data, status: "superseded" } }));
      this.#end(subscriber);
      return;
    }
    if (terminalStatuses.has(state.status)) {
      this.#write(subscriber, formatSse({ event: "ended", data }));
      this.#end(subscriber);
      return;
    }
    if (!snapshot && !moved(subscriber.shown, data)) return;
    subscriber.shown = data;
    this.#write(subscriber, formatSse({ event: "state", data }));
  }

  #sendEvent(subscriber: Subscriber, event: LedgerEvent): void {
    const name = streamEventName[event.type];
    if (!name || subscriber.closed || subscriber.sent.has(event.id)) return;
    subscriber.sent.add(event.id);
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
    if (!subscriber.client.write(text)) {
      this.#metrics.streamsDropped.inc();
      this.#end(subscriber);
    }
  }

  #broadcast(text: string): void {
    for (const subscribers of this.#rooms.values()) {
      for (const subscriber of [...subscribers]) this.#write(subscriber, text);
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

  #add(state: TicketState, client: StreamClient): Subscriber {
    const subscriber: Subscriber = {
      ticketId: state.ticket_id,
      roomId: state.room_id,
      instance: state.instance,
      client,
      shown: ticketView(state),
      sent: new Set(),
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
