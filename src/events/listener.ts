import { Socket } from "node:net";
import pg from "pg";
import type { SessionTimeouts } from "../config/index.js";
import { timeoutParameters } from "../db/client.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { decodeMessage, EVENTS_CHANNEL, type IdRange, type LedgerEvent, mergeRanges, Reassembler } from "./codec.js";

/*
 * The process's one LISTEN connection. A `pg` client rather than postgres.js's
 * sql.listen(): that hides its connection, swallows a failed re-LISTEN (the
 * subscription is then silently gone) and says nothing about being connected,
 * while here we must reconnect with backoff, know the state for /readyz and
 * replay what was missed.
 *
 * NOTIFY is a hint, never a command: any role that can connect may send on
 * the channel. A message only names ledger ids; the rows shown to clients are
 * always read from the ledger (waitroom.notice_events), so a forged message
 * can at most make this process read real rows again.
 */

export type ListenerOptions = {
  databaseUrl: string;
  log: Logger;
  metrics: Metrics;
  /** Each batch of events, in the order their messages arrived, as read from the ledger. */
  onEvents: (events: LedgerEvent[]) => void;
  /** Reads the ledger rows with ids in these ascending, disjoint ranges (waitroom.notice_events). */
  readNotice: (ranges: readonly IdRange[]) => Promise<LedgerEvent[]>;
  /**
   * Events may have been missed since `since` (server time): the connection was lost or a message
   * was. Replays run one at a time: a returned promise is awaited before the next.
   */
  onGap: (since: Date) => unknown;
  /** How long a message may wait for missing chunks. Default 5 s. */
  chunkTimeoutMs?: number;
  /** Connection check; also bounds how far back a replay reaches. Default 5 s. */
  pingMs?: number;
  /** A ping or a connection attempt not answered within this: the connection is dead and replaced. Default 5 s. */
  pingTimeoutMs?: number;
  /** Statement, lock and idle-in-transaction timeouts of the connection. */
  timeouts?: SessionTimeouts;
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
/**
 * Messages are read together up to about this many ids: one notice's worth. The hard bound is
 * waitroom.notice_events's (it refuses a read of more), and a batch it refuses is read message by
 * message, so a forged notice it refuses holds no real message back.
 */
const BATCH_IDS = 10_000;
/** Messages waiting to be read; a flood beyond it is dropped and replaced by one replay from the ledger. */
const MAX_QUEUED = 10_000;
/** Replays asked for by lost messages (forged ones too) run one at a time, at most this often. */
const REPLAY_MIN_INTERVAL_MS = 1_000;

const idCount = (ranges: readonly IdRange[]) => ranges.reduce((sum, [first, last]) => sum + last - first + 1, 0);

/** The events (sorted by id) whose ids lie in the ranges. */
function within(events: readonly LedgerEvent[], ranges: readonly IdRange[]): LedgerEvent[] {
  const found: LedgerEvent[] = [];
  for (const [first, last] of ranges) {
    let low = 0;
    let high = events.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((events[middle]?.id ?? 0) < first) low = middle + 1;
      else high = middle;
    }
    for (let i = low; i < events.length && (events[i]?.id ?? 0) <= last; i++) found.push(events[i] as LedgerEvent);
  }
  return found;
}

type Queued = { key: string; ranges: IdRange[] };

export function startListener(options: ListenerOptions): Listener {
  const { log, metrics } = options;
  const pingMs = options.pingMs ?? 5_000;
  const pingTimeoutMs = options.pingTimeoutMs ?? 5_000;
  let client: pg.Client | null = null;
  let socket: Socket | null = null;
  let connected = false;
  let backendPid: number | null = null;
  let closed = false;
  let attempt = 0;
  /** Server time at which we last knew LISTEN was in place; null before the first connection. */
  let aliveAt: Date | null = null;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;

  // --- replays: coalesced, one at a time, rate-limited (a flood of forged messages asks for many) ---
  let replayWanted: Date | null = null;
  let replaying = false;
  let lastReplayAt = 0;
  const runReplays = async () => {
    replaying = true;
    try {
      while (replayWanted && !closed) {
        const wait = lastReplayAt + REPLAY_MIN_INTERVAL_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
        const since = replayWanted;
        replayWanted = null;
        lastReplayAt = Date.now();
        try {
          await options.onGap(since);
        } catch (error) {
          log.error({ err: error }, "replay from the ledger failed");
        }
      }
    } finally {
      replaying = false;
    }
  };
  const gap = () => {
    const since = new Date((aliveAt?.getTime() ?? Date.now()) - REPLAY_MARGIN_MS);
    if (!replayWanted || since < replayWanted) replayWanted = since;
    if (!replaying) void runReplays();
  };

  // --- reads: messages in arrival order, read from the ledger a batch at a time ---
  const queue: Queued[] = [];
  let reading = false;

  const deliver = (message: Queued, events: LedgerEvent[]) => {
    if (events.length === 0 || closed) return;
    try {
      for (const event of events) metrics.events.inc({ type: event.type });
      options.onEvents(events);
    } catch (error) {
      log.error({ err: error, key: message.key }, "delivering events failed");
    }
  };

  /** null: not read; a WR400 (ranges waitroom._publish_ids never sends) was forged, anything else may have lost real events. */
  const read = async (ranges: readonly IdRange[], keys: string[]): Promise<LedgerEvent[] | null> => {
    try {
      return await options.readNotice(ranges);
    } catch (error) {
      if ((error as { code?: unknown }).code === "WR400") {
        if (keys.length === 1) log.warn({ err: error, key: keys[0] }, "ignored a notice the ledger refused to read");
        return null;
      }
      log.error({ err: error, keys }, "could not read a notice's events; replaying from the ledger");
      gap();
      return [];
    }
  };

  const drain = async () => {
    reading = true;
    try {
      while (queue.length > 0 && !closed) {
        const batch: Queued[] = [];
        let ids = 0;
        while (queue.length > 0 && (batch.length === 0 || ids + idCount((queue[0] as Queued).ranges) <= BATCH_IDS)) {
          const message = queue.shift() as Queued;
          ids += idCount(message.ranges);
          batch.push(message);
        }
        const events = await read(
          mergeRanges(batch.flatMap((message) => message.ranges)),
          batch.map((message) => message.key),
        );
        if (events) {
          for (const message of batch) deliver(message, within(events, message.ranges));
        } else {
          // Refused as a whole: read each message alone, so only the offending one is left out.
          for (const message of batch) {
            const own = batch.length > 1 ? await read(message.ranges, [message.key]) : null;
            if (own) deliver(message, own);
            else metrics.notifyRejected.inc();
          }
        }
      }
    } finally {
      reading = false;
    }
  };

  const enqueue = (message: Queued) => {
    if (queue.length >= MAX_QUEUED) {
      log.warn(
        { queued: queue.length },
        "too many event messages waiting to be read; replaying from the ledger instead",
      );
      queue.length = 0;
      gap();
      return;
    }
    queue.push(message);
    if (!reading) void drain();
  };

  const reassembler = new Reassembler({
    timeoutMs: options.chunkTimeoutMs ?? 5_000,
    onMessage: (key, text) => {
      let ranges: IdRange[];
      try {
        ranges = decodeMessage(text);
      } catch (error) {
        metrics.notifyRejected.inc();
        log.warn({ err: error, key }, "undecodable event message; replaying from the ledger");
        gap();
        return;
      }
      if (ranges.length > 0) enqueue({ key, ranges });
    },
    onIncomplete: (info) => {
      metrics.notifyIncomplete.inc();
      log.warn(info, "event message incomplete; replaying from the ledger");
      gap();
    },
  });

  // --- the connection ---
  const lost = (current: pg.Client, error?: Error) => {
    if (current !== client) return;
    client = null;
    connected = false;
    backendPid = null;
    // A half-open connection never answers end(): cut the socket.
    socket?.destroy();
    socket = null;
    current.end().catch(() => {});
    if (closed) return;
    log.warn({ err: error }, "LISTEN connection lost; reconnecting");
    schedule();
  };

  /** Declares the connection dead unless `work` settles within pingTimeoutMs. */
  const withDeadline = <T>(current: pg.Client, what: string, work: Promise<T>): Promise<T> => {
    const deadline = setTimeout(() => {
      if (current !== client) return;
      metrics.listenPingTimeouts.inc();
      lost(current, new Error(`the LISTEN connection did not answer ${what} within ${pingTimeoutMs} ms`));
    }, pingTimeoutMs);
    deadline.unref();
    return work.finally(() => clearTimeout(deadline));
  };

  let pinging = false;
  const ping = setInterval(() => {
    const current = client;
    if (!connected || !current || pinging) return;
    pinging = true;
    withDeadline(current, "a ping", current.query<{ now: Date }>("select now()")).then(
      ({ rows }) => {
        pinging = false;
        if (current === client && rows[0]) aliveAt = rows[0].now;
      },
      () => {
        pinging = false; // the deadline or the 'end' handler deals with a dead connection
      },
    );
  }, pingMs);
  ping.unref();

  const schedule = () => {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    retryTimer = setTimeout(connect, delay);
    retryTimer.unref();
  };

  const connect = async () => {
    if (closed) return;
    const ownSocket = new Socket();
    const current = new pg.Client({
      connectionString: options.databaseUrl,
      application_name: "waitroom-listen",
      keepAlive: true,
      // Ours, so that a connection that stopped answering can be cut (lost()).
      stream: () => ownSocket,
      ...(options.timeouts ? timeoutParameters(options.timeouts) : {}),
    });
    client = current;
    socket = ownSocket;
    current.on("notification", (message) => {
      if (message.channel !== EVENTS_CHANNEL || message.payload === undefined) return;
      metrics.notifyChunks.inc();
      try {
        if (!reassembler.push(message.payload)) {
          metrics.notifyRejected.inc();
          log.warn("ignored a malformed NOTIFY payload");
        }
      } catch (error) {
        log.error({ err: error }, "handling a NOTIFY payload failed");
      }
    });
    current.on("error", (error) => lost(current, error));
    current.on("end", () => lost(current));
    try {
      const rows = await withDeadline(
        current,
        "while connecting",
        (async () => {
          await current.connect();
          await current.query(`listen ${EVENTS_CHANNEL}`);
          return (await current.query<{ now: Date; pid: number }>("select now(), pg_backend_pid() as pid")).rows;
        })(),
      );
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
      queue.length = 0;
      const current = client;
      client = null;
      connected = false;
      await current?.end().catch(() => {});
      socket?.destroy();
      socket = null;
    },
  };
}
