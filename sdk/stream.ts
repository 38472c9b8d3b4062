import type { Http, Ticket } from "./client.js";
import { errorFrom, WaitroomError } from "./errors.js";
import { SseParser } from "./sse.js";
import type { ClaimResponse, WaitroomEvent } from "./types.js";

export type SubscribeOptions = {
  /** Stops the subscription (it then resolves with reason "aborted"). */
  signal?: AbortSignal;
  /** Resume after this event id (e.g. one stored with the ticket): what was missed is replayed first. */
  lastEventId?: string;
  /** Claim the seat as soon as the ticket is admitted; the result goes to onClaim and ticket.admission. */
  autoClaim?: boolean;
  onClaim?: (claim: ClaimResponse) => void;
  /**
   * Heartbeat this often while the seat is active: it renews the seat where the room renews on heartbeat,
   * and keeps ticket.admission's token current (set it below WAITROOM_ADMISSION_TOKEN_SECONDS); off when unset.
   */
  heartbeatMs?: number;
  /** Whatever went wrong without ending the subscription: a dropped connection, a failed claim or heartbeat, an error thrown by onEvent. */
  onError?: (error: unknown) => void;
  /** Longest wait between reconnection attempts (default 30 s). */
  maxRetryMs?: number;
  /** Reconnect when nothing, not even a keep-alive comment, arrived for this long (default 45 s; 0 = never). */
  idleTimeoutMs?: number;
};

export type SubscribeEnd = {
  /**
   * ended: the ticket is over (ended, expired, left); superseded: the holder re-joined elsewhere;
   * over: the service answered 204 (over, and nothing left to show); room_deleted; aborted: options.signal.
   */
  reason: "ended" | "superseded" | "over" | "room_deleted" | "aborted";
  /** The last event id seen: resume from here with options.lastEventId. */
  lastEventId: string | undefined;
};

type Reason = SubscribeEnd["reason"];

/** The server's first line says 2000 too; this covers a stream that fails before sending it. */
const DEFAULT_RETRY_MS = 2_000;
/** Ids remembered for de-duplication; a ticket's stream shows far fewer events than this. */
const SEEN_IDS_KEPT = 1_024;
const EVENT_TYPES = new Set<string>(["state", "admitted", "active", "draining", "ended", "superseded", "room"]);
/** What a request about a ticket that is over answers: the stream ends on it with reason "ended". */
const TICKET_OVER = new Set<string>(["ended", "expired", "left"]);
const OVER = new Set<string>(["draining", "ended", "expired", "left", "superseded"]);

/** Errors worth another try: the network, timeouts, overload and 5xx (a replica going away, a gateway). */
const transient = (error: unknown) =>
  !(error instanceof WaitroomError) || error.status >= 500 || error.status === 408 || error.status === 429;

/** Resolves after ms, or at once when the signal aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

export async function subscribe(
  http: Http,
  ticket: Ticket,
  onEvent: (event: WaitroomEvent) => void,
  options: SubscribeOptions,
): Promise<SubscribeEnd> {
  const { signal, autoClaim = false, heartbeatMs, maxRetryMs = 30_000, idleTimeoutMs = 45_000 } = options;
  let lastEventId = options.lastEventId;
  let retryMs = DEFAULT_RETRY_MS;
  /** Consecutive failed attempts: the exponent of the backoff. */
  let failures = 0;
  const seen = new Set<string>();
  let claiming: Promise<void> | undefined;
  let claimSettled = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;

  const report = (error: unknown) => {
    try {
      options.onError?.(error);
    } catch {
      // the error handler's own failure has nowhere to go
    }
  };

  const stopHeartbeat = () => {
    clearInterval(heartbeat);
    heartbeat = undefined;
  };
  const startHeartbeat = () => {
    if (!heartbeatMs || heartbeat !== undefined) return;
    heartbeat = setInterval(() => {
      ticket.heartbeat(signal).catch((error: unknown) => {
        // The seat is gone: further heartbeats would only fail the same way.
        if (error instanceof WaitroomError && error.status < 500) stopHeartbeat();
        // The ticket is over (a leave, say, while this heartbeat was in flight): the stream tells of the
        // end with its own event and resolves "ended", so it is not an error of the subscription.
        if (error instanceof WaitroomError && TICKET_OVER.has(error.code)) return;
        report(error);
      });
    }, heartbeatMs);
  };

  const claim = () => {
    claiming = ticket
      .claim(signal)
      .then(
        (claimed) => {
          claimSettled = true;
          startHeartbeat();
          try {
            options.onClaim?.(claimed);
          } catch (error) {
            report(error);
          }
        },
        (error: unknown) => {
          // Superseded or lapsed: no point retrying. (ticket.claim already retried a lost answer; a network
          // error that outlasted that may be retried on the next event.)
          if (error instanceof WaitroomError) claimSettled = true;
          report(error);
        },
      )
      .finally(() => {
        claiming = undefined;
      });
  };

  /** One parsed message: de-duplicated, delivered, acted on; returns why to stop, if it should. */
  const handle = (type: string, id: string | undefined, text: string): Reason | undefined => {
    // A stream's goodbye: nothing to show, only where to resume.
    if (type === "reconnect" && id !== undefined) lastEventId = id;
    if (!EVENT_TYPES.has(type)) return undefined; // newer servers may add events: skip, don't fail
    if (id !== undefined) {
      lastEventId = id;
      // A replay after reconnecting may repeat what the live stream already showed.
      if (seen.has(id)) return undefined;
      seen.add(id);
      if (seen.size > SEEN_IDS_KEPT) seen.delete(seen.values().next().value as string);
    }
    const event = { type, id, data: JSON.parse(text) } as WaitroomEvent;
    try {
      onEvent(event);
    } catch (error) {
      report(error);
    }
    const status = event.data.status;
    if (status === "admitted" && autoClaim && !claiming && !claimSettled) claim();
    if (status === "active") startHeartbeat();
    if (OVER.has(status)) stopHeartbeat();
    if (event.type === "ended" || event.type === "superseded") return event.type;
    if (event.type === "room" && event.data.room.event === "room_deleted") return "room_deleted";
    return undefined;
  };

  /** One connection: read until the stream says stop, the connection ends, or it goes quiet. */
  const connect = async (): Promise<Reason | undefined> => {
    const connection = new AbortController();
    const cut = () => connection.abort();
    signal?.addEventListener("abort", cut);
    let idle: ReturnType<typeof setTimeout> | undefined;
    const stillAlive = () => {
      clearTimeout(idle);
      if (idleTimeoutMs > 0) idle = setTimeout(cut, idleTimeoutMs);
    };
    try {
      stillAlive();
      // The token goes in a header, not ?token=, so it stays out of URLs and access logs.
      const headers: Record<string, string> = { accept: "text/event-stream", authorization: `Bearer ${ticket.token}` };
      if (lastEventId) headers["last-event-id"] = lastEventId;
      const response = await http.fetch(http.url(`${ticket.path}/events`), {
        headers,
        signal: connection.signal,
        cache: "no-store",
      });
      if (response.status === 204) return "over";
      if (!response.ok) {
        const error = await errorFrom(response);
        // Re-joined elsewhere while we were away: the same outcome as the event.
        if (error.code === "superseded") return "superseded";
        throw error;
      }
      if (!response.body || !response.headers.get("content-type")?.startsWith("text/event-stream")) {
        throw new WaitroomError(response.status, "unexpected_response", "the answer is not an event stream");
      }
      failures = 0;
      let stop: Reason | undefined;
      const parser = new SseParser({
        message: (message) => {
          stop ??= handle(message.event, message.id, message.data);
        },
        retry: (ms) => {
          retryMs = ms;
        },
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      while (stop === undefined) {
        const { value, done } = await reader.read();
        if (done) break;
        stillAlive();
        parser.push(decoder.decode(value, { stream: true }));
      }
      return stop;
    } catch (error) {
      if (signal?.aborted) return "aborted";
      if (!transient(error)) throw error;
      report(error);
      return undefined;
    } finally {
      clearTimeout(idle);
      signal?.removeEventListener("abort", cut);
      connection.abort(); // releases the connection however we got here
    }
  };

  try {
    for (;;) {
      if (signal?.aborted) return { reason: "aborted", lastEventId };
      const reason = await connect();
      if (reason) return { reason, lastEventId };
      // Honour the server's retry (it says 500 when a replica shuts down), back off while attempts keep
      // failing, and spread reconnects so a crowd dropped at once does not come back at once.
      const delay = Math.min(maxRetryMs, retryMs * 2 ** failures);
      failures++;
      await sleep(delay * (1 + Math.random() / 2), signal);
    }
  } finally {
    await claiming; // onClaim has run (or the claim failed) before the subscription resolves
    stopHeartbeat(); // after the claim: its success starts the timer
  }
}
