import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { Sql } from "../db/client.js";
import type { Logger } from "../log.js";

/** A public key as published in the JWKS: nothing else, never the private part. */
export type PublicJwk = { kty: "OKP"; crv: "Ed25519"; x: string; kid: string; alg: "EdDSA"; use: "sig" };

export type KeyStoreOptions = {
  sql: Sql;
  log: Logger;
  cacheMs: number;
  /** How long a retired key stays listed (and a revoked one kept): every token it signed has expired by then. */
  retiredKeyTtlSeconds: number;
  /** How long a rotated key is published before it signs. */
  stageSeconds: number;
};

/** A key as operators see it (waitroom.signing_key): never its private half. */
export type SigningKey = {
  kid: string;
  state: "staged" | "current" | "retired" | "revoked";
  created_at: Date;
  activates_at: Date;
  retired_at: Date | null;
  revoked_at: Date | null;
};

export type KeyStore = {
  /** The current key, created on first use. */
  signingKey(): Promise<{ kid: string; privateKey: CryptoKey }>;
  /** A listed (current, staged or recently retired) key; an unknown kid reloads from the database (at most once a second). */
  publicKey(kid: string): Promise<CryptoKey | undefined>;
  /** The JWKS entries: current key first, then the staged and retired ones still listed. */
  listed(): Promise<PublicJwk[]>;
  /** Stage a new key (published now, signing after stageSeconds), or the one already staged. */
  rotate(): Promise<SigningKey>;
  /** Emergency revoke: unlisted and refused at once; throws WR404 for an unknown kid. */
  revoke(kid: string): Promise<SigningKey>;
  /** Every key kept, newest first. */
  list(): Promise<SigningKey[]>;
};

type KeyRow = { kid: string; public_jwk: JWK; private_jwk: JWK | null };
type KeySet = {
  loadedAt: number;
  keys: Map<string, { jwk: PublicJwk; publicKey: CryptoKey }>;
  current?: { kid: string; privateKey: CryptoKey };
};

/**
 * A token naming a kid we do not know reloads the keys (another replica may have rotated), but a
 * read at most this old answers it: forged kids, which anyone can put in a cookie or a check, cost
 * the database at most one read a second, however many arrive. Our own new keys are published
 * (staged) long before they sign, so a real one is never missed for long.
 */
const UNKNOWN_KID_RELOAD_MS = 1_000;

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
 * only through the functions of sql/87_signing_keys.sql.
 */
export function createKeyStore({ sql, log, cacheMs, retiredKeyTtlSeconds, stageSeconds }: KeyStoreOptions): KeyStore {
  let cache: KeySet | undefined;
  let loading: { startedAt: number; promise: Promise<KeySet> } | undefined;

  async function read(startedAt: number): Promise<KeySet> {
    // Upkeep first, as often as any replica reads: replaced keys lose their private halves, expired ones go.
    await sql`select waitroom.retire_signing_keys(${retiredKeyTtlSeconds})`;
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

  /** waitroom.add_signing_key: a key signing at once if none signs (first use), or a staged next key (rotate). */
  async function addKey(rotate: boolean): Promise<SigningKey> {
    const key = await generateKey();
    const [added] = await sql<SigningKey[]>`
      select * from waitroom.add_signing_key(${key.kid}, ${sql.json(key.publicJwk)}, ${sql.json(key.privateJwk)},
                                             ${rotate}, ${rotate ? stageSeconds : 0})`;
    if (!added) throw new Error("add_signing_key returned no key");
    if (added.kid === key.kid) {
      log.info(
        { kid: added.kid, activates_at: added.activates_at },
        rotate ? "signing key staged" : "signing key created",
      );
    }
    await reload();
    return added;
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
      return (await load(performance.now() - UNKNOWN_KID_RELOAD_MS)).keys.get(kid)?.publicKey;
    },
    async listed() {
      return [...(await cached()).keys.values()].map((key) => key.jwk);
    },
    rotate: () => addKey(true),
    async revoke(kid) {
      const [revoked] = await sql<SigningKey[]>`select * from waitroom.revoke_signing_key(${kid})`;
      if (!revoked) throw new Error("revoke_signing_key returned no key");
      log.warn({ kid }, "signing key revoked");
      await reload();
      return revoked;
    },
    list: () => sql<SigningKey[]>`select * from waitroom.list_signing_keys()`,
  };
}
