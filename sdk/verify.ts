/*
 * Offline verification of admission tokens, for an app that checks them
 * itself: the service's JWKS is fetched, cached as its Cache-Control says,
 * and fetched again when a token names a key it does not know (a rotation),
 * at most once per `refetchFloorMs` so tokens with made-up key ids cannot
 * make it hammer the service. WebCrypto's Ed25519 does the signature (Node 20,
 * current browsers); nothing is imported. See docs/sdk.md.
 */

/** What an admission token says once verified (docs/integration.md lists the claims). */
export type VerifiedAdmission = {
  /** The holder's user id for identified tickets, the ticket id for anonymous ones (`sub`). */
  holder: string;
  /** The room the seat is in (`aud`, also `room`). */
  room: string;
  /** The ticket (`tid`) and its instance (`ins`): a re-join elsewhere makes a new instance. */
  ticketId: string;
  instance: number;
  /** When this token stops proving the admission (`exp`); heartbeats hand out fresh tokens. */
  expiresAt: Date;
  /** The signing key's id. */
  kid: string;
};

/** Why a token was refused: one reason each, so an app can answer (and log) precisely. */
export type AdmissionFailure =
  /** No token was sent (middleware only). */
  | "missing"
  /** Not a JWT (three base64url parts of JSON), or its claims have the wrong types. */
  | "malformed"
  /** Signed with anything but EdDSA: "none" and HMAC-with-the-public-key are refused here. */
  | "unsupported_algorithm"
  /** Its kid is not in the JWKS, even after fetching it again (a revoked key, or a forgery). */
  | "unknown_key"
  /** The signature does not match: the token was changed, or not signed by the service. */
  | "bad_signature"
  | "wrong_issuer"
  /** A valid seat, but for another room than the one this app protects. */
  | "wrong_room"
  | "expired"
  /** Its nbf is still ahead (beyond the clock skew). */
  | "not_yet_valid"
  /** The JWKS could not be fetched or read: the app cannot tell, the token is not at fault. */
  | "jwks_unavailable";

export class AdmissionError extends Error {
  override readonly name = "AdmissionError";
  readonly reason: AdmissionFailure;

  constructor(reason: AdmissionFailure, message: string) {
    super(message);
    this.reason = reason;
  }
}

export type VerifierOptions = {
  /** The service's address ("https://queue.example.com"); the JWKS is at /.well-known/jwks.json under it. */
  baseUrl: string;
  /** The room this app protects: a token's audience must be this room. */
  room: string;
  /** The `iss` the service signs with. */
  issuer?: string;
  /** How far the clocks may disagree when exp and nbf are checked (seconds). */
  clockSkewSeconds?: number;
  /** Least time between two fetches of the JWKS for an unknown kid (ms). */
  refetchFloorMs?: number;
  /** Longest the JWKS is kept, whatever its Cache-Control says (ms). */
  maxCacheMs?: number;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
  /** The verifier's clock in ms since the epoch (tests, or a trusted clock). */
  now?: () => number;
};

export type AdmissionVerifier = {
  readonly room: string;
  readonly jwksUrl: string;
  /** The token's admission, or an AdmissionError saying why not. */
  verify(token: string): Promise<VerifiedAdmission>;
};

type KeySet = { keys: Map<string, CryptoKey>; fetchedAt: number; maxAgeMs: number };

const ISSUER = "waitroom";
const CLOCK_SKEW_SECONDS = 30;
const REFETCH_FLOOR_MS = 30_000;
/** The service's own default (WAITROOM_JWKS_MAX_AGE_SECONDS) when a response carries no max-age. */
const DEFAULT_MAX_AGE_MS = 300_000;
const MAX_CACHE_MS = 3_600_000;

const fail = (reason: AdmissionFailure, message: string) => new AdmissionError(reason, message);

function base64url(part: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw fail("malformed", "admission token is not base64url");
  const binary = atob(
    part
      .replace(/-/g, "+")
      .replace(/_/g, "/")
      .padEnd(Math.ceil(part.length / 4) * 4, "="),
  );
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

function jsonPart(part: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(base64url(part)));
  } catch (error) {
    if (error instanceof AdmissionError) throw error;
    throw fail("malformed", "admission token is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw fail("malformed", "admission token part is not a JSON object");
  }
  return value as Record<string, unknown>;
}

function maxAgeMs(cacheControl: string | null, cap: number): number {
  const match = /(?:^|[,\s])max-age=(\d+)/i.exec(cacheControl ?? "");
  return Math.min(match ? Number(match[1]) * 1000 : DEFAULT_MAX_AGE_MS, cap);
}

/** The Ed25519 signing keys of a JWKS document; anything else in it is skipped. */
async function importKeys(document: unknown): Promise<Map<string, CryptoKey>> {
  const list = (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw fail("jwks_unavailable", "the JWKS has no keys array");
  const keys = new Map<string, CryptoKey>();
  for (const jwk of list as Array<Record<string, unknown>>) {
    const { kty, crv, x, kid, alg, use } = jwk ?? {};
    if (kty !== "OKP" || crv !== "Ed25519" || typeof x !== "string" || typeof kid !== "string") continue;
    if ((alg !== undefined && alg !== "EdDSA") || (use !== undefined && use !== "sig")) continue;
    // Only the public fields: some WebCrypto implementations refuse a JWK whose alg they do not name.
    keys.set(kid, await crypto.subtle.importKey("jwk", { kty, crv, x }, { name: "Ed25519" }, false, ["verify"]));
  }
  return keys;
}

/** A verifier for one room's admission tokens, with its own JWKS cache. */
export function createVerifier(options: VerifierOptions): AdmissionVerifier {
  const jwksUrl = `${options.baseUrl.replace(/\/+$/, "")}/.well-known/jwks.json`;
  const issuer = options.issuer ?? ISSUER;
  const skew = options.clockSkewSeconds ?? CLOCK_SKEW_SECONDS;
  const floor = options.refetchFloorMs ?? REFETCH_FLOOR_MS;
  const cap = options.maxCacheMs ?? MAX_CACHE_MS;
  const now = options.now ?? Date.now;
  // Called through a wrapper: browsers throw "Illegal invocation" when fetch loses its `this`.
  const fetchJwks: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  let cached: KeySet | undefined;
  let inflight: Promise<KeySet> | undefined;
  let lastFetchAt = Number.NEGATIVE_INFINITY;

  /** One fetch at a time, shared by every verification waiting for it. */
  function refresh(): Promise<KeySet> {
    inflight ??= (async () => {
      lastFetchAt = now();
      try {
        const response = await fetchJwks(jwksUrl, { headers: { accept: "application/json" } });
        if (!response.ok) throw fail("jwks_unavailable", `the JWKS answered HTTP ${response.status}`);
        const keys = await importKeys(await response.json());
        cached = { keys, fetchedAt: lastFetchAt, maxAgeMs: maxAgeMs(response.headers.get("cache-control"), cap) };
        return cached;
      } catch (error) {
        if (error instanceof AdmissionError) throw error;
        throw fail("jwks_unavailable", `the JWKS could not be fetched: ${(error as Error).message}`);
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  }

  async function keyFor(kid: string): Promise<CryptoKey> {
    let set = cached && now() - cached.fetchedAt < cached.maxAgeMs ? cached : await refresh();
    let key = set.keys.get(kid);
    if (!key && now() - lastFetchAt >= floor) {
      set = await refresh();
      key = set.keys.get(kid);
    }
    if (!key) throw fail("unknown_key", `admission token was signed by a key the JWKS does not list (${kid})`);
    return key;
  }

  return {
    room: options.room,
    jwksUrl,
    async verify(token) {
      if (typeof token !== "string") throw fail("malformed", "admission token must be a string");
      const parts = token.split(".");
      if (parts.length !== 3) throw fail("malformed", "admission token is not a JWT");
      const [encodedHeader = "", encodedPayload = "", encodedSignature = ""] = parts;
      const header = jsonPart(encodedHeader);
      // Pinning the algorithm before any key is looked at rules out "none" and algorithm confusion.
      if (header.alg !== "EdDSA") throw fail("unsupported_algorithm", "admission token must be signed with EdDSA");
      if (typeof header.kid !== "string") throw fail("malformed", "admission token has no key id");
      const payload = jsonPart(encodedPayload);
      const signature = base64url(encodedSignature);
      const key = await keyFor(header.kid);
      const signed = new TextEncoder().encode(`${encodedHeader}.${encodedPayload}`);
      if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, signature, signed))) {
        throw fail("bad_signature", "admission token signature does not match");
      }

      const { iss, aud, sub, room, tid, ins, exp, nbf } = payload;
      if (iss !== issuer) throw fail("wrong_issuer", `admission token was issued by ${String(iss)}, not ${issuer}`);
      if (
        typeof sub !== "string" ||
        typeof tid !== "string" ||
        typeof ins !== "number" ||
        typeof exp !== "number" ||
        (nbf !== undefined && typeof nbf !== "number")
      ) {
        throw fail("malformed", "admission token claims are malformed");
      }
      const audiences = Array.isArray(aud) ? aud : [aud];
      if (!audiences.includes(options.room) || (room !== undefined && room !== options.room)) {
        throw fail("wrong_room", `the admission token is for room '${String(room ?? aud)}', not '${options.room}'`);
      }
      const seconds = now() / 1000;
      if (seconds > exp + skew) throw fail("expired", "admission token has expired");
      if (typeof nbf === "number" && seconds < nbf - skew)
        throw fail("not_yet_valid", "admission token is not valid yet");
      return {
        holder: sub,
        room: options.room,
        ticketId: tid,
        instance: ins,
        expiresAt: new Date(exp * 1000),
        kid: header.kid,
      };
    },
  };
}
