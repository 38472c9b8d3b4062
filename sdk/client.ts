import { errorFrom, WaitroomError } from "./errors.js";
import { type SubscribeEnd, type SubscribeOptions, subscribe } from "./stream.js";
import type {
  CheckResponse,
  ClaimResponse,
  HeartbeatResponse,
  JoinResponse,
  SettleOutcome,
  SettleResponse,
  StockLevel,
  TicketAnswer,
  WaitroomEvent,
} from "./types.js";

export type ClientOptions = {
  /** Where the service is, e.g. "https://queue.example.com" (a path prefix is kept). */
  baseUrl: string;
  /** A fetch to use instead of the global one (tests, proxies, instrumentation). */
  fetch?: typeof fetch;
};

export type JoinOptions = {
  /** A verified user id; needs serverKey (so only a trusted backend can choose it). */
  holder?: string;
  /** Higher goes first; needs serverKey. */
  priority?: number;
  /** The holder's quota tier in a room with quota tiers; needs serverKey. */
  tier?: string;
  /** WAITROOM_SERVER_KEY. Never put it in a browser. */
  serverKey?: string;
  signal?: AbortSignal;
};

type Call = { method?: string; bearer?: string; body?: unknown; signal?: AbortSignal | undefined };

/** The transport every handle shares: base URL, fetch, JSON in and out, errors as WaitroomError. */
export class Http {
  readonly baseUrl: string;
  readonly fetch: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    // Called through a wrapper: browsers throw "Illegal invocation" when fetch loses its `this`.
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  /** A JSON request; undefined for 204. */
  async json<T>(path: string, call: Call = {}): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (call.bearer) headers.authorization = `Bearer ${call.bearer}`;
    if (call.body !== undefined) headers["content-type"] = "application/json";
    const response = await this.fetch(this.url(path), {
      method: call.method ?? "GET",
      headers,
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
      signal: call.signal,
    });
    if (!response.ok) throw await errorFrom(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }
}

/** How often a claim whose answer was lost is sent in all, and the pause before the n-th retry (n × this). */
const CLAIM_ATTEMPTS = 4;
const CLAIM_RETRY_MS = 250;

/** The request may have reached the service and its answer been lost: a network failure or a gateway's. */
function answerLost(error: unknown): boolean {
  if (error instanceof WaitroomError) return error.status === 502 || error.status === 503 || error.status === 504;
  // fetch rejects with a TypeError when the connection fails; an abort is the caller's choice.
  return error instanceof TypeError;
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** A handle on one ticket: everything its holder may do, authenticated by the ticket's token. */
export class Ticket {
  readonly id: string;
  /** The ticket's bearer token: store it (with id) to resume later with client.ticket(id, token). */
  readonly token: string;
  /** The answer of join (position, depth…), when this handle came from join(). */
  readonly joined: JoinResponse | undefined;
  /** The seat's latest admission token through this handle: from a claim (autoClaim included) or a heartbeat. */
  admission: ClaimResponse | undefined;
  readonly #http: Http;

  constructor(http: Http, id: string, token: string, joined?: JoinResponse) {
    this.#http = http;
    this.id = id;
    this.token = token;
    this.joined = joined;
  }

  get path(): string {
    return `/v1/tickets/${encodeURIComponent(this.id)}`;
  }

  /** Where the ticket stands now (and, in a room with quotas, the holder's shares). */
  state(signal?: AbortSignal): Promise<TicketAnswer> {
    return this.#http.json<TicketAnswer>(this.path, { bearer: this.token, signal });
  }

  /**
   * Take the offered seat; the admission token is what the protected app verifies. A claim is idempotent
   * for the ticket's token, so one whose answer was lost (the network failed, or a gateway said 502, 503
   * or 504) is sent again, up to CLAIM_ATTEMPTS times: a retry answers the same seat.
   */
  async claim(signal?: AbortSignal): Promise<ClaimResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        const claimed = await this.#http.json<ClaimResponse>(`${this.path}/claim`, {
          method: "POST",
          bearer: this.token,
          signal,
        });
        this.admission = claimed;
        return claimed;
      } catch (error) {
        if (attempt >= CLAIM_ATTEMPTS || signal?.aborted || !answerLost(error)) throw error;
        await pause(CLAIM_RETRY_MS * attempt, signal);
      }
    }
  }

  /**
   * Still here: extends an active seat where the room renews on heartbeat. While the ticket holds a seat
   * the answer carries a fresh admission token, kept in `admission`: heartbeat more often than the token
   * lives (admission_expires_at) and hand the protected app `admission.admission_token`. An open stream
   * counts as presence already, but renews neither the seat nor the token.
   */
  async heartbeat(signal?: AbortSignal): Promise<HeartbeatResponse> {
    const state = await this.#http.json<HeartbeatResponse>(`${this.path}/heartbeat`, {
      method: "POST",
      bearer: this.token,
      signal,
    });
    if (state.admission_token && state.admission_expires_at && state.expires_at) {
      this.admission = {
        ticket_id: state.ticket_id,
        status: state.status,
        admission_token: state.admission_token,
        admission_expires_at: state.admission_expires_at,
        expires_at: state.expires_at,
      };
    }
    return state;
  }

  /** Give up the place or seat; it goes to the next in line at once. */
  async leave(signal?: AbortSignal): Promise<void> {
    await this.#http.json<undefined>(this.path, { method: "DELETE", bearer: this.token, signal });
  }

  /**
   * Follow the ticket's event stream until it is over: reconnects (honouring `retry:`, with
   * backoff and jitter) and resumes with Last-Event-ID, delivering each ledger event once.
   * Resolves with why it stopped; rejects with a WaitroomError the stream cannot recover from
   * (unknown ticket or wrong token, say).
   */
  subscribe(onEvent: (event: WaitroomEvent) => void, options: SubscribeOptions = {}): Promise<SubscribeEnd> {
    return subscribe(this.#http, this, onEvent, options);
  }
}

export type WaitroomClient = {
  readonly baseUrl: string;
  /** Where the public keys that verify admission tokens are. */
  readonly jwksUrl: string;
  /** Join a room's queue. */
  join(room: string, options?: JoinOptions): Promise<Ticket>;
  /** A handle on a ticket joined earlier (its id and token were stored). */
  ticket(ticketId: string, token: string): Ticket;
  /**
   * For the protected app: may this admission token (or ticket and token) proceed into `room`, the
   * room the app protects? Sees revocations; a token of another room is refused with wrong_room.
   */
  check(
    input: { room: string } & ({ admission_token: string } | { ticket_id: string; token: string }),
    signal?: AbortSignal,
  ): Promise<CheckResponse>;
  /** For the protected app's backend (serverKey): add units to a room's stock; reopens a sold-out room. */
  addStock(room: string, units: number, call: ServerCall): Promise<StockLevel>;
  /** For the protected app's backend (serverKey): a room's stock. */
  stock(room: string, call: ServerCall): Promise<StockLevel>;
  /** For the protected app's backend (serverKey): the admission's unit was sold (consumed) or its work failed (returned). */
  settle(ticketId: string, outcome: SettleOutcome, call: ServerCall): Promise<SettleResponse>;
};

/** A call only the protected app's backend may make: WAITROOM_SERVER_KEY, never in a browser. */
export type ServerCall = { serverKey: string; signal?: AbortSignal };

export function createClient(options: ClientOptions): WaitroomClient {
  const http = new Http(options);
  return {
    baseUrl: http.baseUrl,
    jwksUrl: http.url("/.well-known/jwks.json"),
    async join(room, { holder, priority, tier, serverKey, signal } = {}) {
      const body =
        holder === undefined && priority === undefined && tier === undefined ? undefined : { holder, priority, tier };
      const joined = await http.json<JoinResponse>(`/v1/rooms/${encodeURIComponent(room)}/tickets`, {
        method: "POST",
        bearer: serverKey,
        body,
        signal,
      });
      return new Ticket(http, joined.ticket_id, joined.token, joined);
    },
    ticket: (ticketId, token) => new Ticket(http, ticketId, token),
    check: (input, signal) => http.json<CheckResponse>("/v1/check", { method: "POST", body: input, signal }),
    addStock: (room, units, { serverKey, signal }) =>
      http.json<StockLevel>(`/v1/rooms/${encodeURIComponent(room)}/stock`, {
        method: "POST",
        bearer: serverKey,
        body: { units },
        signal,
      }),
    stock: (room, { serverKey, signal }) =>
      http.json<StockLevel>(`/v1/rooms/${encodeURIComponent(room)}/stock`, { bearer: serverKey, signal }),
    settle: (ticketId, outcome, { serverKey, signal }) =>
      http.json<SettleResponse>(`/v1/tickets/${encodeURIComponent(ticketId)}/settle`, {
        method: "POST",
        bearer: serverKey,
        body: { outcome },
        signal,
      }),
  };
}
