import type { Sql } from "../db/client.js";
import * as queue from "../queue/index.js";
import { formatSse, type StreamClient, sayGoodbye } from "./hub.js";

/** How often the rooms feed reads the rooms while anyone watches: one query for every watcher. */
export const ROOMS_FEED_EVERY_MS = 1_000;
/** Reads without a change between keep-alive comments, which keep proxies from closing a quiet stream. */
const KEEPALIVE_EVERY = 15;

export type RoomsFeed = {
  /** Sends the rooms now (once known) and on every change; the returned function stops. */
  watch(watcher: StreamClient): () => void;
  /** Shutdown: tell every watcher to reconnect (to another replica) and stop reading. */
  close(): void;
};

/**
 * The rooms (GET /v1/rooms's answer) for the operators' dashboards: read once a second while anyone
 * watches and sent to every watcher when they changed. A poll on the server rather than the hub's
 * events: the numbers (waits, admissions in the last minute) move with time as well as with events,
 * joins are never announced, and one query for all dashboards is cheap.
 */
export function roomsFeed(sql: Sql): RoomsFeed {
  const watchers = new Set<StreamClient>();
  let timer: NodeJS.Timeout | undefined;
  let latest: string | undefined;
  let reading = false;
  let quiet = 0;
  let closed = false;

  const read = async () => {
    // A read slower than the interval is not overlapped by the next.
    if (reading) return;
    reading = true;
    try {
      const text = formatSse({ event: "rooms", data: { rooms: await queue.listRooms(sql) } });
      if (text !== latest) {
        latest = text;
        quiet = 0;
        for (const watcher of watchers) watcher.write(text);
      } else if (++quiet % KEEPALIVE_EVERY === 0) {
        for (const watcher of watchers) watcher.write(": keep-alive\n\n");
      }
    } catch {
      // The database is away: the watchers keep the last numbers, and the next read tries again.
    } finally {
      reading = false;
    }
  };

  const stop = () => {
    clearInterval(timer);
    timer = undefined;
    // Stale once nobody watches: the next watcher waits for a fresh read.
    latest = undefined;
  };

  return {
    watch(watcher) {
      if (closed) {
        sayGoodbye(watcher);
        return () => {};
      }
      watchers.add(watcher);
      if (latest) watcher.write(latest);
      if (!timer) {
        void read();
        timer = setInterval(read, ROOMS_FEED_EVERY_MS).unref();
      }
      return () => {
        watchers.delete(watcher);
        if (watchers.size === 0) stop();
      };
    },
    close() {
      closed = true;
      stop();
      for (const watcher of [...watchers]) sayGoodbye(watcher);
      watchers.clear();
    },
  };
}
