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

/** Serialises key creation and rotation across processes (2001 is the per-room lock). */
const KEY_LOCK_CLASS = 2002;

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

/** Signing keys kept in waitroom.signing_keys, so every replica signs and publishes the same ones. */
export function createKeyStore({ sql, log, cacheMs, retiredKeyTtlSeconds }: KeyStoreOptions): KeyStore {
  let cache: KeySet | undefined;
  let loading: { startedAt: number; promise: Promise<KeySet> } | undefined;

  async function read(startedAt: number): Promise<KeySet> {
    // Only the current key's private half leaves the database.
    const rows = await sql<KeyRow[]>`
      select kid, public_jwk, case when retired_at is null then private_jwk end as private_jwk
        from waitroom.signing_keys
       where retired_at is null or retired_at > now() - make_interval(secs => ${retiredKeyTtlSeconds})
       order by retired_at desc nulls first, created_at desc`;
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

  /** Insert a new current key under the lock; without retire, only if there is none (first use). */
  async function insertKey(retire: boolean): Promise<string> {
    const key = await generateKey();
    const kid = await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${KEY_LOCK_CLASS}, 0)`;
      if (retire) {
        await tx`update waitroom.signing_keys set retired_at = now() where retired_at is null`;
      } else {
        const [current] = await tx<{ kid: string }[]>`select kid from waitroom.signing_keys where retired_at is null`;
        if (current) return current.kid;
      }
      await tx`
        insert into waitroom.signing_keys (kid, public_jwk, private_jwk)
        values (${key.kid}, ${sql.json(key.publicJwk)}, ${sql.json(key.privateJwk)})`;
      log.info({ kid: key.kid }, retire ? "signing key rotated" : "signing key created");
      return key.kid;
    });
    await reload();
    return kid;
  }

  return {
    async signingKey() {
      let current = (await cached()).current;
      if (!current) {
        await insertKey(false);
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
    rotate: () => insertKey(true),
  };
}
