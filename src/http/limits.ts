import { type BlockList, isIP } from "node:net";
import type { Context } from "hono";
import type { LimitSettings, RateBucket, RateLimit } from "../config/index.js";
import type { Metrics } from "../metrics.js";
import { ApiError } from "./errors.js";
import type { AppEnv } from "./route.js";

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
    const { perSecond, burst } = this.#limit;
    const bucket = this.#buckets.get(key);
    const tokens = bucket ? Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond) : burst;
    if (tokens < 1) return Math.ceil((1 - tokens) / perSecond);
    if (bucket) {
      bucket.tokens = tokens - 1;
      bucket.at = now;
    } else {
      if (this.#buckets.size >= MAX_KEYS) this.#buckets.delete(this.#buckets.keys().next().value as string);
      this.#buckets.set(key, { tokens: tokens - 1, at: now });
    }
    return 0;
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

const familyOf = (address: string) => (isIP(address) === 6 ? "ipv6" : "ipv4");
const trusted = (proxies: BlockList | undefined, address: string) =>
  proxies !== undefined && isIP(address) !== 0 && proxies.check(address, familyOf(address));

/** The direct peer, IPv4-mapped addresses unwrapped. */
function peerOf(c: Context<AppEnv>): string {
  const address = c.env.incoming.socket.remoteAddress ?? "";
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/**
 * The client's address: the socket's peer, or, when that peer is a trusted proxy, the nearest
 * address in X-Forwarded-For that is not one (read from the right: the left is whatever the client
 * wrote). Every proxy trusted: the leftmost address; a malformed entry ends the walk.
 */
export function clientAddress(c: Context<AppEnv>, proxies: BlockList | undefined): string {
  let client = peerOf(c);
  if (!trusted(proxies, client)) return client;
  const hops = (c.req.header("x-forwarded-for") ?? "").split(",").map((hop) => hop.trim());
  for (const hop of hops.reverse()) {
    if (isIP(hop) === 0) break;
    client = hop;
    if (!trusted(proxies, hop)) break;
  }
  return client;
}

/** The direct peer is a trusted proxy (none is when WAITROOM_TRUSTED_PROXIES is unset). */
export const fromTrustedProxy = (c: Context<AppEnv>, proxies: BlockList | undefined): boolean =>
  trusted(proxies, peerOf(c));

/** The host the browser addressed: Host, or X-Forwarded-Host from a trusted proxy. */
function ownHost(c: Context<AppEnv>, proxies: BlockList | undefined): string {
  const forwarded = trusted(proxies, peerOf(c)) ? c.req.header("x-forwarded-host")?.split(",")[0]?.trim() : undefined;
  return (forwarded || c.req.header("host") || "").toLowerCase();
}

/**
 * A browser (it sends Origin, or Sec-Fetch-Site) may join anonymously only from the service's own
 * origin or an allowed one: a body-less POST needs no CORS preflight, so any page could otherwise
 * make its visitors join. Callers that are not browsers send neither and are not concerned.
 */
export function checkOrigin(c: Context<AppEnv>, settings: LimitSettings): void {
  const site = c.req.header("sec-fetch-site");
  if (site === "same-origin") return;
  const origin = c.req.header("origin");
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
  take(c: Context<AppEnv>, bucket: RateBucket, key: string): void;
  /** The client's address (see clientAddress). */
  address(c: Context<AppEnv>): string;
};

export function createLimiter(settings: LimitSettings, metrics: Metrics): Limiter | undefined {
  const { rates, trustedProxies } = settings;
  if (!rates) return undefined;
  const buckets = Object.fromEntries(
    Object.entries(rates).map(([bucket, limit]) => [bucket, new TokenBuckets(limit)]),
  ) as Record<RateBucket, TokenBuckets>;
  return {
    take(c, bucket, key) {
      const wait = buckets[bucket].take(key);
      if (wait === 0) return;
      metrics.rateLimited.inc({ bucket });
      c.header("retry-after", String(wait));
      throw new ApiError("rate_limited", `too many requests from this client; retry in ${wait} s`);
    },
    address: (c) => addressKey(clientAddress(c, trustedProxies)),
  };
}
