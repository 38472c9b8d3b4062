import pg from "pg";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { decodeMessage, EVENTS_CHANNEL, type IdRange, type LedgerEvent, type Message, Reassembler } from "./codec.js";

/*
 * The process's one LISTEN connection. A `pg` client rather than postgres.js's
 * sql.listen(): that hides its connection, swallows a failed re-LISTEN (the
 * subscription is then silently gone) and says nothing about being connected,
 * while here we must reconnect with backoff, know the state for /readyz and
 * replay what was missed.
 */

export type ListenerOptions = {
  databaseUrl: string;
  log: Logger;
  metrics: Metrics;
  /** Each batch of events, in the order their messages arrived, whether they came in full or by notice. */
  onEvents: (events: LedgerEvent[]) => void;
  /** Reads the ledger rows a compact notice names (waitroom.notice_events). */
  readNotice: (ranges: readonly IdRange[]) => Promise<LedgerEvent[]>;
  /** Events may have been missed since `since` (server time): the connection was lost or a message was. */
  onGap: (since: Date) => void;
  /** How long a message may wait for missing chunks. Default 5 s. */
  chunkTimeoutMs?: number;
  /** Connection check; also bounds how far back a replay reaches. Default 5 s. */
  pingMs?: number;
};

export type Listener = {
  /** LISTEN is in place now. */
  readonly connected: boolean;
  /** Backend pid of the LISTEN connection (for diagnostics and tests), null while disconnected. */
  readonly backendPid: number | null;
  close(): Promise<void>;
};

/** A transaction may start this long before the last moment we knew we were listening and commit after it. */
const REPLAY_MARGIN_MS = 10_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;

export function startListener(options: ListenerOptions): Listener {
  const { log, metrics } = options;
  const pingMs = options.pingMs ?? 5_000;
  let client: pg.Client | null = null;
  let connected = false;
  let backendPid: number | null = null;
  let closed = false;
  let attempt = 0;
  /** Server time at which we last knew LISTEN was in place; null before the first connection. */
  let aliveAt: Date | null = null;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;

  const gap = () => options.onGap(new Date((aliveAt?.getTime() ?? Date.now()) - REPLAY_MARGIN_MS));

  /**
   * Messages are handled one after another, in arrival order: a notice being read holds back the
   * messages behind it, so a stream never sees a ticket's `active` before its `admitted`, and one
   * read at a time bounds what a flood of (forged) notices can make this process hold.
   */
  let handled: Promise<void> = Promise.resolve();
  const handle = (key: string, work: () => LedgerEvent[] | Promise<LedgerEvent[] | null>) => {
    handled = handled
      .then(async () => {
        const events = await work();
        if (closed || !events) return;
        for (const event of events) metrics.events.inc({ type: event.type });
        options.onEvents(events);
      })
      .catch((error: unknown) => log.error({ err: error, key }, "delivering events failed"));
  };

  const read = async (key: string, ranges: readonly IdRange[]): Promise<LedgerEvent[] | null> => {
    try {
      return await options.readNotice(ranges);
    } catch (error) {
      // WR400: ranges waitroom._publish_ids never sends (too many ids, out of order): forged, so
      // there is nothing to recover. Anything else (connection, timeout) may have lost real events.
      if ((error as { code?: unknown }).code === "WR400") {
        log.warn({ err: error, key }, "ignored a notice the ledger refused to read");
      } else {
        log.error({ err: error, key }, "could not read a notice's events; replaying from the ledger");
        gap();
      }
      return null;
    }
  };

  const reassembler = new Reassembler({
    timeoutMs: options.chunkTimeoutMs ?? 5_000,
    onMessage: (key, text) => {
      let message: Message;
      try {
        message = decodeMessage(text);
      } catch (error) {
        log.error({ err: error, key }, "undecodable event message; replaying from the ledger");
        gap();
        return;
      }
      if (message.kind === "events") {
        const { events } = message;
        handle(key, () => events);
      } else {
        const { ranges } = message;
        handle(key, () => read(key, ranges));
      }
    },
    onIncomplete: (info) => {
      metrics.notifyIncomplete.inc();
      log.warn(info, "event message incomplete; replaying from the ledger");
      gap();
    },
  });

  const ping = setInterval(() => {
    const current = client;
    if (!connected || !current) return;
    current.query<{ now: Date }>("select now()").then(
      ({ rows }) => {
        if (current === client && rows[0]) aliveAt = rows[0].now;
      },
      () => {}, // the 'end' handler deals with a dead connection
    );
  }, pingMs);
  ping.unref();

  const lost = (current: pg.Client, error?: Error) => {
    if (current !== client) return;
    client = null;
    connected = false;
    backendPid = null;
    current.end().catch(() => {});
    if (closed) return;
    log.warn({ err: error }, "LISTEN connection lost; reconnecting");
    schedule();
  };

  const schedule = () => {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    retryTimer = setTimeout(connect, delay);
    retryTimer.unref();
  };

  const connect = async () => {
    if (closed) return;
    const current = new pg.Client({
      connectionString: options.databaseUrl,
      application_name: "waitroom-listen",
      keepAlive: true,
    });
    client = current;
    current.on("notification", (message) => {
      if (message.channel !== EVENTS_CHANNEL || message.payload === undefined) return;
      metrics.notifyChunks.inc();
      if (!reassembler.push(message.payload)) log.warn("ignored a malformed NOTIFY payload");
    });
    current.on("error", (error) => lost(current, error));
    current.on("end", () => lost(current));
    try {
      await current.connect();
      await current.query(`listen ${EVENTS_CHANNEL}`);
      const { rows } = await current.query<{ now: Date; pid: number }>("select now(), pg_backend_pid() as pid");
      if (current !== client) return;
      const reconnected = aliveAt !== null;
      connected = true;
      backendPid = rows[0]?.pid ?? null;
      attempt = 0;
      log.info({ pid: backendPid, reconnected }, "listening for events");
      if (reconnected) {
        metrics.listenReconnects.inc();
        gap();
      }
      aliveAt = rows[0]?.now ?? new Date();
    } catch (error) {
      lost(current, error as Error);
    }
  };

  void connect();

  return {
    get connected() {
      return connected;
    },
    get backendPid() {
      return backendPid;
    },
    async close() {
      closed = true;
      clearInterval(ping);
      clearTimeout(retryTimer);
      reassembler.close();
      const current = client;
      client = null;
      connected = false;
      await current?.end().catch(() => {});
    },
  };
}
