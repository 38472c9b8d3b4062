import type { IncomingMessage } from "node:http";
import { type BlockList, isIP } from "node:net";
import type { LimitSettings, RateBucket, RateLimit } from "../config/index.js";
import type { Metrics } from "../metrics.js";
import { ApiError } from "./errors.js";

/*
 * What one client may do: token buckets per client address (per holder for the server's
 * identified joins), and where a browser's anonymous join may come from. In memory, per replica:
 * docs/operations.md ("Hostile traffic") says why and what that means with several replicas.
 */

/** Keys a bucket may hold; beyond it the oldest is forgotten (memory stays bounded under a flood of addresses). */
const MAX_KEYS = 100_000;
/** Full buckets are forgotten this often: a full bucket and no bucket are the same. */
const SWEEP_MS = 60_000;

type Bucket = { tokens: number; at: number };

/** Token buckets of one kind, by key. */
export class TokenBuckets {
  readonly #limit: RateLimit;
  readonly #buckets = new Map<string, Bucket>();
  #sweptAt = 0;

  constructor(limit: RateLimit) {
    this.#limit = limit;
  }

  /** Take a token for `key`: 0 when taken, else the seconds until one is available. */
  take(key: string, now = performance.now()): number {
    if (now - this.#sweptAt > SWEEP_MS) this.#sweep(now);
    const bucket = this.#buckets.get(key);
    const tokens = this.#tokens(bucket, now);
    if (tokens < 1) return this.#until(tokens);
    if (bucket) {
      bucket.tokens = tokens - 1;
      bucket.at = now;
    } else {
      if (this.#buckets.size >= MAX_KEYS) this.#buckets.delete(this.#buckets.keys().next().value as string);
      this.#buckets.set(key, { tokens: tokens - 1, at: now });
    }
    return 0;
  }

  /** The seconds until `key` has a token (0: it has one now), taking none. */
  wait(key: string, now = performance.now()): number {
    const tokens = this.#tokens(this.#buckets.get(key), now);
    return tokens < 1 ? this.#until(tokens) : 0;
  }

  #tokens(bucket: Bucket | undefined, now: number): number {
    const { perSecond, burst } = this.#limit;
    return bucket ? Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond) : burst;
  }

  #until(tokens: number): number {
    return Math.ceil((1 - tokens) / this.#limit.perSecond);
  }

  #sweep(now: number): void {
    this.#sweptAt = now;
    const { perSecond, burst } = this.#limit;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * perSecond >= burst) this.#buckets.delete(key);
    }
  }
}

/** An IPv4-mapped IPv6 address is the IPv4 one; other IPv6 addresses count by their /64 (one host often has all of it). */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (isIP(address) !== 6) return address;
  const [head = "", tail] = address.toLowerCase().split("%")[0]?.split("::") ?? [];
  const headGroups = head ? head.split(":") : [];
  const tailGroups = tail ? tail.split(":") : [];
  const groups =
    tail === undefined
      ? headGroups
      : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/**
 * What the limits read of a request: Node's own. A Hono context is one (its env holds them), and so
 * are the routes served on Node's request directly (node-route.ts).
 */
export type Caller = { env: { incoming: IncomingMessage } };

/** A request header as Node parsed it (repeated ones joined with ", "). */
const header = (c: Caller, name: string): string | undefined => {
  const value = c.env.incoming.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
};

const familyOf = (address: string) => (isIP(address) === 6 ? "ipv6" : "ipv4");
const trusted = (proxies: BlockList | undefined, address: string) =>
  proxies !== undefined && isIP(address) !== 0 && proxies.check(address, familyOf(address));

/** The direct peer, IPv4-mapped addresses unwrapped. */
function peerOf(c: Caller): string {
  const address = c.env.incoming.socket.remoteAddress ?? "";
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/**
 * The client's address: the socket's peer, or, when that peer is a trusted proxy, the nearest
 * address in X-Forwarded-For that is not one (read from the right: the left is whatever the client
 * wrote). Every proxy trusted: the leftmost address; a malformed entry ends the walk.
 */
export function clientAddress(c: Caller, proxies: BlockList | undefined): string {
  let client = peerOf(c);
  if (!trusted(proxies, client)) return client;
  const hops = (header(c, "x-forwarded-for") ?? "").split(",").map((hop) => hop.trim());
  for (const hop of hops.reverse()) {
    if (isIP(hop) === 0) break;
    client = hop;
    if (!trusted(proxies, hop)) break;
  }
  return client;
}

/** The direct peer is a trusted proxy (none is when WAITROOM_TRUSTED_PROXIES is unset). */
export const fromTrustedProxy = (c: Caller, proxies: BlockList | undefined): boolean => trusted(proxies, peerOf(c));

/** The host the browser addressed: Host, or X-Forwarded-Host from a trusted proxy. */
function ownHost(c: Caller, proxies: BlockList | undefined): string {
  const forwarded = trusted(proxies, peerOf(c)) ? header(c, "x-forwarded-host")?.split(",")[0]?.trim() : undefined;
  return (forwarded || header(c, "host") || "").toLowerCase();
}

/**
 * A browser (it sends Origin, or Sec-Fetch-Site) may join anonymously only from the service's own
 * origin or an allowed one: a body-less POST needs no CORS preflight, so any page could otherwise
 * make its visitors join. Callers that are not browsers send neither and are not concerned.
 */
export function checkOrigin(c: Caller, settings: LimitSettings): void {
  const site = header(c, "sec-fetch-site");
  if (site === "same-origin") return;
  const origin = header(c, "origin");
  if (origin === undefined && site === undefined) return;
  if (origin !== undefined && settings.allowedOrigins.includes(origin.toLowerCase())) return;
  let host: string | undefined;
  try {
    host = origin === undefined ? undefined : new URL(origin).host;
  } catch {}
  if (host !== undefined && host === ownHost(c, settings.trustedProxies)) return;
  throw new ApiError(
    "origin_not_allowed",
    `a browser may join from this service's own origin or one of WAITROOM_ALLOWED_ORIGINS, not ${origin ?? `a ${site} page`}`,
  );
}

export type Limiter = {
  /** Take a token from `bucket` for `key`; over the limit: rate_limited with Retry-After, counted. */
  take(bucket: RateBucket, key: string): void;
  /** The client's address (see clientAddress). */
  address(c: Caller): string;
  /**
   * A presented key, checked under the throttle of wrong keys: while the client's address has used
   * up its failures (the key bucket), rate_limited whatever the key, so a guess that happens to be
   * right teaches nothing; otherwise a wrong key takes a token and is refused with `refusal`.
   */
  checkKey(c: Caller, right: () => boolean, refusal: ApiError): void;
};

export function createLimiter(settings: LimitSettings, metrics: Metrics): Limiter | undefined {
  const { rates, trustedProxies } = settings;
  if (!rates) return undefined;
  const buckets = Object.fromEntries(
    Object.entries(rates).map(([bucket, limit]) => [bucket, new TokenBuckets(limit)]),
  ) as Record<RateBucket, TokenBuckets>;
  const refuse = (bucket: RateBucket, wait: number): never => {
    metrics.rateLimited.inc({ bucket });
    throw new ApiError("rate_limited", `too many requests from this client; retry in ${wait} s`, {
      retryAfterSeconds: wait,
    });
  };
  const address = (c: Caller) => addressKey(clientAddress(c, trustedProxies));
  return {
    take(bucket, key) {
      const wait = buckets[bucket].take(key);
      if (wait !== 0) refuse(bucket, wait);
    },
    address,
    checkKey(c, right, refusal) {
      const client = address(c);
      const wait = buckets.key.wait(client);
      if (wait !== 0) refuse("key", wait);
      if (right()) return;
      buckets.key.take(client);
      throw refusal;
    },
  };
}

/** A presented key, checked under the limiter's throttle of wrong keys when limits are on. */
export function checkKey(limiter: Limiter | undefined, c: Caller, right: () => boolean, refusal: ApiError): void {
  if (limiter) limiter.checkKey(c, right, refusal);
  else if (!right()) throw refusal;
}
