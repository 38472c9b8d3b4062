import { errorFrom } from "./errors.js";
import { type SubscribeEnd, type SubscribeOptions, subscribe } from "./stream.js";
import type { CheckResponse, ClaimResponse, JoinResponse, TicketState, WaitroomEvent } from "./types.js";

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

/** A handle on one ticket: everything its holder may do, authenticated by the ticket's token. */
export class Ticket {
  readonly id: string;
  /** The ticket's bearer token: store it (with id) to resume later with client.ticket(id, token). */
  readonly token: string;
  /** The answer of join (position, depth…), when this handle came from join(). */
  readonly joined: JoinResponse | undefined;
  /** The last successful claim through this handle (autoClaim included). */
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

  /** Where the ticket stands now. */
  state(signal?: AbortSignal): Promise<TicketState> {
    return this.#http.json<TicketState>(this.path, { bearer: this.token, signal });
  }

  /** Take the offered seat; the admission token is what the protected app verifies. */
  async claim(signal?: AbortSignal): Promise<ClaimResponse> {
    const claimed = await this.#http.json<ClaimResponse>(`${this.path}/claim`, {
      method: "POST",
      bearer: this.token,
      signal,
    });
    this.admission = claimed;
    return claimed;
  }

  /** Still here: extends an active seat where the room renews on heartbeat. An open stream counts as presence already. */
  heartbeat(signal?: AbortSignal): Promise<TicketState> {
    return this.#http.json<TicketState>(`${this.path}/heartbeat`, { method: "POST", bearer: this.token, signal });
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
};

export function createClient(options: ClientOptions): WaitroomClient {
  const http = new Http(options);
  return {
    baseUrl: http.baseUrl,
    jwksUrl: http.url("/.well-known/jwks.json"),
    async join(room, { holder, priority, serverKey, signal } = {}) {
      const body = holder === undefined && priority === undefined ? undefined : { holder, priority };
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
  };
}
