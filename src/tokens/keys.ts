import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { Sql } from "../db/client.js";
import type { Logger } from "../log.js";

/** A public key as published in the JWKS: nothing else, never the private part. */
export type PublicJwk = { kty: "OKP"; crv: "Ed25519"; x: string; kid: string; alg: "EdDSA"; use: "sig" };

export type KeyStoreOptions = { sql: Sql; log: Logger; cacheMs: number; retiredKeyTtlSeconds: number };

export type KeyStore = {
  /** The current key, created on first use. */
  signingKey(): Promise<{ kid: string; privateKey: CryptoKey }>;
  /** A listed (current or recently retired) key; an unknown kid reloads from the database once. */
  publicKey(kid: string): Promise<CryptoKey | undefined>;
  /** The JWKS entries: current key first, then retired ones still listed. */
  listed(): Promise<PublicJwk[]>;
  /** Retire the current key and make a new one current; returns its kid. */
  rotate(): Promise<string>;
};

type KeyRow = { kid: string; public_jwk: JWK; private_jwk: JWK | null };
type KeySet = {
  loadedAt: number;
  keys: Map<string, { jwk: PublicJwk; publicKey: CryptoKey }>;
  current?: { kid: string; privateKey: CryptoKey };
};

/** Our kids are RFC 7638 SHA-256 thumbprints; anything else cannot be ours and never costs a reload. */
const KID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

async function asCryptoKey(jwk: JWK): Promise<CryptoKey> {
  const key = await importJWK(jwk, "EdDSA");
  if (key instanceof Uint8Array) throw new Error("signing key is not an Ed25519 key");
  return key;
}

async function generateKey(): Promise<{ kid: string; publicJwk: JWK; privateJwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { kid: await calculateJwkThumbprint(publicJwk), publicJwk, privateJwk: await exportJWK(privateKey) };
}

/**
 * Signing keys kept in waitroom.signing_keys, so every replica signs and publishes the same ones; reached
 * only through waitroom.published_keys, current_signing_key and add_signing_key.
 */
export function createKeyStore({ sql, log, cacheMs, retiredKeyTtlSeconds }: KeyStoreOptions): KeyStore {
  let cache: KeySet | undefined;
  let loading: { startedAt: number; promise: Promise<KeySet> } | undefined;

  async function read(startedAt: number): Promise<KeySet> {
    // The public halves of every listed key, and the private half of the current one only.
    const rows = await sql<KeyRow[]>`
      select k.kid, k.public_jwk, c.private_jwk
        from waitroom.published_keys(${retiredKeyTtlSeconds}) with ordinality k(kid, public_jwk, current, listed)
        left join waitroom.current_signing_key() c on c.kid = k.kid
       order by k.listed`;
    const set: KeySet = { loadedAt: startedAt, keys: new Map() };
    for (const row of rows) {
      const jwk: PublicJwk = {
        kty: "OKP",
        crv: "Ed25519",
        x: String(row.public_jwk.x),
        kid: row.kid,
        alg: "EdDSA",
        use: "sig",
      };
      set.keys.set(row.kid, { jwk, publicKey: await asCryptoKey(jwk) });
      if (row.private_jwk) set.current = { kid: row.kid, privateKey: await asCryptoKey(row.private_jwk) };
    }
    return set;
  }

  /** Keys read no earlier than freshAfter (a performance.now() time); concurrent callers share one read. */
  function load(freshAfter: number): Promise<KeySet> {
    if (cache && cache.loadedAt >= freshAfter) return Promise.resolve(cache);
    if (loading && loading.startedAt >= freshAfter) return loading.promise;
    const startedAt = performance.now();
    const promise = read(startedAt)
      .then((set) => {
        // A slower, older read never replaces a newer one.
        if (!cache || set.loadedAt >= cache.loadedAt) cache = set;
        return set;
      })
      .finally(() => {
        if (loading?.promise === promise) loading = undefined;
      });
    loading = { startedAt, promise };
    return promise;
  }

  const cached = () => load(performance.now() - cacheMs);
  const reload = () => load(performance.now());

  /** Add a new current key (waitroom.add_signing_key); without rotate, only if there is none (first use). */
  async function addKey(rotate: boolean): Promise<string> {
    const key = await generateKey();
    const [row] = await sql<{ kid: string }[]>`
      select waitroom.add_signing_key(${key.kid}, ${sql.json(key.publicJwk)}, ${sql.json(key.privateJwk)}, ${rotate}) as kid`;
    const kid = row?.kid ?? key.kid;
    if (kid === key.kid) log.info({ kid }, rotate ? "signing key rotated" : "signing key created");
    await reload();
    return kid;
  }

  return {
    async signingKey() {
      let current = (await cached()).current;
      if (!current) {
        await addKey(false);
        current = (await cached()).current;
      }
      if (!current) throw new Error("no current signing key after creating one");
      return current;
    },
    async publicKey(kid) {
      const known = (await cached()).keys.get(kid);
      if (known || !KID_PATTERN.test(kid)) return known?.publicKey;
      // Perhaps another replica rotated since our last read.
      return (await reload()).keys.get(kid)?.publicKey;
    },
    async listed() {
      return [...(await cached()).keys.values()].map((key) => key.jwk);
    },
    rotate: () => addKey(true),
  };
}
