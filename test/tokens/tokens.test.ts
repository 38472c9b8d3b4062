import {
  base64url,
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  jwtVerify,
  SignJWT,
} from "jose";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { createSql, type Sql } from "../../src/db/client.js";
import { createLogger } from "../../src/log.js";
import {
  createTokenIssuer,
  type SigningKey,
  TokenError,
  type TokenIssuer,
  type TokenTimings,
} from "../../src/tokens/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { admit, createRoom, first, join } from "../helpers/queue.js";

const db = useTestDatabase();
const log = createLogger("silent");

/** Figures short enough to wait out: a rotated key signs 2 s after it is published. */
const quick: TokenTimings = { tokenSeconds: 120, jwksMaxAgeSeconds: 1, keyCacheSeconds: 1 };

const issuer = (options: { sql?: Sql; timings?: Partial<TokenTimings> } = {}) =>
  createTokenIssuer({ sql: options.sql ?? db.serviceSql, log, timings: { ...quick, ...options.timings } });

/** Claims for a made-up seat; ticket ids must be uuids. */
const claims = (overrides: { holder?: string | null; expiresAt?: Date } = {}) => ({
  holder: "user-1",
  room: "launch",
  ticketId: "0190a0e0-0000-7000-8000-000000000001",
  instance: 1,
  expiresAt: new Date(Date.now() + 600_000),
  ...overrides,
});

const extraSql: Sql[] = [];
afterAll(async () => {
  await Promise.all(extraSql.map((sql) => sql.end({ timeout: 5 })));
});

/** Issuers on their own connections, each with its own key cache: separate replicas. */
function replicas(count: number): TokenIssuer[] {
  return Array.from({ length: count }, () => {
    const sql = createSql(db.url, { max: 1 });
    extraSql.push(sql);
    return issuer({ sql });
  });
}

async function currentKids(): Promise<string[]> {
  const rows = await db.sql<SigningKey[]>`select * from waitroom.list_signing_keys() where state = 'current'`;
  return rows.map((row) => row.kid);
}

/** Sign until the issuer signs with `kid` (a staged key activates when its time has come). */
const signedBy = (tokens: TokenIssuer, kid: string) =>
  eventually(async () => {
    const signed = await tokens.sign(claims());
    return signed.kid === kid && signed;
  }, `tokens are signed by ${kid}`);

async function rejection(issuerUnderTest: TokenIssuer, token: string, room = "launch"): Promise<TokenError> {
  const error = await issuerUnderTest.verify(token, room).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(TokenError);
  return error as TokenError;
}

/** Sign arbitrary claims with the real current key, to test what verify demands beyond a good signature. */
async function signWithCurrentKey(payload: Record<string, unknown>) {
  const [row] = await db.sql<{ kid: string; private_jwk: JWK }[]>`
    select kid, private_jwk from waitroom.current_signing_key()`;
  if (!row) throw new Error("no current key");
  const key = await importJWK(row.private_jwk, "EdDSA");
  return new SignJWT(payload).setProtectedHeader({ alg: "EdDSA", kid: row.kid, typ: "JWT" }).sign(key);
}

beforeEach(async () => {
  await db.sql`delete from waitroom.signing_keys`;
});

describe("sign", () => {
  it("issues a JWT that a standard JOSE library verifies against the JWKS, exp = tokenSeconds from now", async () => {
    const room = await createRoom(db.sql, 1);
    const ticket = await join(db.sql, room, { holder: "user-42", now: new Date() });
    await admit(db.sql, room, new Date());
    const seat = first(
      await db.sql<{ expires_at: Date }[]>`select * from waitroom.claim(${ticket.ticket_id}, ${ticket.token})`,
    );
    const tokens = issuer();
    const issuedAt = Math.floor(Date.now() / 1000);
    const { token, kid } = await tokens.sign({
      holder: "user-42",
      room,
      ticketId: ticket.ticket_id,
      instance: 1,
      expiresAt: seat.expires_at,
    });

    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(await tokens.jwks()), {
      algorithms: ["EdDSA"],
      issuer: "waitroom",
    });
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid, typ: "JWT" });
    expect(payload).toEqual({
      sub: "user-42",
      aud: room,
      room,
      tid: ticket.ticket_id,
      ins: 1,
      iss: "waitroom",
      iat: expect.any(Number),
      exp: expect.any(Number),
    });
    expect(payload.iat).toBeGreaterThanOrEqual(issuedAt);
    // Short-lived: tokenSeconds (120 s) from signing, before the seat (300 s) ends.
    expect(payload.exp).toBeGreaterThanOrEqual(issuedAt + 120);
    expect(payload.exp).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 120);
    expect(payload.exp).toBeLessThan(Math.floor(seat.expires_at.getTime() / 1000));

    expect(await tokens.verify(token, room)).toEqual({
      ticketId: ticket.ticket_id,
      room,
      holder: "user-42",
      instance: 1,
      issuedAt: new Date((payload.iat ?? 0) * 1000),
      expiresAt: new Date((payload.exp ?? 0) * 1000),
      kid,
    });
  });

  it("never outlives the seat", async () => {
    const seatEnds = new Date(Date.now() + 30_500);
    const signed = await issuer().sign(claims({ expiresAt: seatEnds }));
    expect(signed.expiresAt).toEqual(new Date(Math.floor(seatEnds.getTime() / 1000) * 1000));
  });

  it("uses the ticket id as subject for anonymous tickets", async () => {
    const tokens = issuer();
    const { token } = await tokens.sign(claims({ holder: null }));
    expect(await tokens.verify(token, "launch")).toMatchObject({
      holder: claims().ticketId,
      ticketId: claims().ticketId,
    });
  });

  it("creates the first key exactly once when ten replicas sign at the same moment", async () => {
    const signed = await Promise.all(replicas(10).map((replica) => replica.sign(claims())));
    const kids = new Set(signed.map((result) => result.kid));
    expect(kids.size).toBe(1);
    const [count] = await db.sql<{ n: number }[]>`select count(*)::int as n from waitroom.signing_keys`;
    expect(count?.n).toBe(1);
    expect(await currentKids()).toEqual([...kids]);
  });
});

describe("rotate", () => {
  it("publishes the next key before any token it signs exists, then retires the old one", async () => {
    const tokens = issuer();
    const before = await tokens.sign(claims());
    const staged = await tokens.rotate();
    expect(staged).toMatchObject({ state: "staged" });
    expect(staged.kid).not.toBe(before.kid);
    // Published for the JWKS cache lifetime plus the replicas' key cache lifetime before it signs.
    expect(staged.activates_at.getTime() - staged.created_at.getTime()).toBe(
      (quick.jwksMaxAgeSeconds + quick.keyCacheSeconds) * 1000,
    );
    expect((await tokens.jwks()).keys.map((key) => key.kid)).toEqual([before.kid, staged.kid]);
    // Meanwhile the old key signs; a second rotation changes nothing.
    expect((await tokens.sign(claims())).kid).toBe(before.kid);
    expect(await tokens.rotate()).toEqual(staged);

    const after = await signedBy(tokens, staged.kid);
    const { iat } = JSON.parse(new TextDecoder().decode(base64url.decode(after.token.split(".")[1] ?? "")));
    expect(iat * 1000).toBeGreaterThanOrEqual(Math.floor(staged.activates_at.getTime() / 1000) * 1000);
    expect(await currentKids()).toEqual([staged.kid]);
    // The old key's tokens still verify; its private half is gone from the database.
    expect(await tokens.verify(before.token, "launch")).toMatchObject({ kid: before.kid });
    await issuer({ timings: { keyCacheSeconds: 1 } }).jwks(); // any replica's read does the upkeep
    const [old] = await db.sql<{ private_jwk: unknown; retired_at: Date | null }[]>`
      select private_jwk, retired_at from waitroom.signing_keys where kid = ${before.kid}`;
    expect(old).toEqual({ private_jwk: null, retired_at: staged.activates_at });

    // An independent verifier holding the JWKS accepts both.
    const jwks = createLocalJWKSet(await tokens.jwks());
    for (const { token } of [before, after]) await expect(jwtVerify(token, jwks)).resolves.toBeTruthy();
  });

  it("a replica whose key cache predates the rotation lists the staged key before it signs", async () => {
    const [a, b] = [issuer(), issuer()] as const;
    const old = await a.sign(claims());
    await b.jwks(); // b caches the keys for keyCacheSeconds
    const staged = await a.rotate();
    const seen = await eventually(async () => {
      const listed = (await b.jwks()).keys.some((key) => key.kid === staged.kid);
      return listed && new Date();
    }, "the other replica lists the staged key");
    const signed = await signedBy(a, staged.kid);
    expect(seen.getTime()).toBeLessThanOrEqual(staged.activates_at.getTime());
    expect(await b.verify(signed.token, "launch")).toMatchObject({ kid: staged.kid });
    expect(await b.verify(old.token, "launch")).toMatchObject({ kid: old.kid });
  });

  it("stages exactly one key when replicas rotate concurrently", async () => {
    await issuer().sign(claims());
    const staged = await Promise.all(replicas(5).map((replica) => replica.rotate()));
    expect(new Set(staged.map((key) => key.kid)).size).toBe(1);
    const keys = await db.sql<SigningKey[]>`select * from waitroom.list_signing_keys()`;
    expect(keys.map((key) => key.state).sort()).toEqual(["current", "staged"]);
  });

  it("drops a retired key from the JWKS and verification once its listing period is over", async () => {
    const tokens = issuer({ timings: { keyCacheSeconds: 1 } });
    const old = await tokens.sign(claims());
    const staged = await tokens.rotate();
    await signedBy(tokens, staged.kid);
    await db.sql`update waitroom.signing_keys set retired_at = now() - interval '1 day' where kid = ${old.kid}`;
    await eventually(
      async () => !(await tokens.jwks()).keys.some((key) => key.kid === old.kid),
      "the retired key is unlisted",
    );
    expect(await rejection(tokens, old.token)).toMatchObject({ code: "invalid_token" });
    expect((await tokens.keys()).map((key) => key.kid)).toEqual([staged.kid]);
  });
});

describe("revoke", () => {
  it("unlists a key at once and signs with the staged key instead", async () => {
    const tokens = issuer();
    const old = await tokens.sign(claims());
    const staged = await tokens.rotate();
    expect(await tokens.revoke(old.kid)).toMatchObject({
      kid: old.kid,
      state: "revoked",
      revoked_at: expect.any(Date),
    });
    expect((await tokens.jwks()).keys.map((key) => key.kid)).toEqual([staged.kid]);
    expect(await rejection(tokens, old.token)).toMatchObject({ code: "invalid_token" });
    expect((await tokens.sign(claims())).kid).toBe(staged.kid);
    const [row] = await db.sql`select private_jwk from waitroom.signing_keys where kid = ${old.kid}`;
    expect(row).toEqual({ private_jwk: null });
  });

  it("without a staged key, the next signature makes a new key; an unknown kid is WR404", async () => {
    const tokens = issuer();
    const old = await tokens.sign(claims());
    await tokens.revoke(old.kid);
    const next = await tokens.sign(claims());
    expect(next.kid).not.toBe(old.kid);
    expect(await currentKids()).toEqual([next.kid]);
    await expect(tokens.revoke("A".repeat(43))).rejects.toMatchObject({ code: "WR404" });
  });
});

describe("verify", () => {
  it("rejects tampered payloads and signatures", async () => {
    const tokens = issuer();
    const { token } = await tokens.sign(claims());
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const forgedClaims = { ...JSON.parse(new TextDecoder().decode(base64url.decode(payload))), room: "vip" };
    const forged = `${header}.${base64url.encode(JSON.stringify(forgedClaims))}.${signature}`;
    expect(await rejection(tokens, forged)).toMatchObject({ code: "invalid_token" });

    const flipped = `${signature[0] === "A" ? "B" : "A"}${signature.slice(1)}`;
    expect(await rejection(tokens, `${header}.${payload}.${flipped}`)).toMatchObject({ code: "invalid_token" });
  });

  it("rejects alg none and HMAC signed with the public key", async () => {
    const tokens = issuer();
    const { token, kid } = await tokens.sign(claims());
    const payload = token.split(".")[1];
    const none = `${base64url.encode(JSON.stringify({ alg: "none", kid, typ: "JWT" }))}.${payload}.`;
    expect(await rejection(tokens, none)).toMatchObject({ code: "invalid_token" });

    const publicX = first((await tokens.jwks()).keys).x as string;
    const hmac = await new SignJWT({ room: "launch", tid: claims().ticketId, ins: 1 })
      .setProtectedHeader({ alg: "HS256", kid, typ: "JWT" })
      .setSubject("user-1")
      .setIssuer("waitroom")
      .setExpirationTime("10m")
      .sign(new TextEncoder().encode(publicX));
    expect(await rejection(tokens, hmac)).toMatchObject({ code: "invalid_token" });
  });

  it.each([
    "",
    "garbage",
    "a.b.c",
    "...",
    "eyJhbGciOiJFZERTQSJ9.e30.",
    `${base64url.encode(JSON.stringify({ alg: "EdDSA", kid: "a".repeat(43) }))}.!!.??`,
    "{}",
  ])("rejects %j as invalid_token", async (garbage) => {
    const error = await rejection(issuer(), garbage);
    expect(error.code).toBe("invalid_token");
    expect(error.message).toMatch(/admission token/);
  });

  it("rejects a well-formed token signed by a key it does not list", async () => {
    const tokens = issuer();
    await tokens.sign(claims());
    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const stranger = await new SignJWT({ room: "launch", tid: claims().ticketId, ins: 1 })
      .setProtectedHeader({ alg: "EdDSA", kid: await calculateJwkThumbprint(await exportJWK(publicKey)), typ: "JWT" })
      .setSubject("user-1")
      .setIssuer("waitroom")
      .setExpirationTime("10m")
      .sign(privateKey);
    expect(await rejection(tokens, stranger)).toMatchObject({ code: "invalid_token" });
  });

  it("reads the keys again for forged kids at most once a second, however many arrive", async () => {
    // The service's connection, counting the key store's reads of the published keys.
    let reads = 0;
    const counted = new Proxy(db.serviceSql, {
      apply(target, self, args: Parameters<Sql>) {
        const [strings] = args;
        if (Array.isArray(strings) && strings.join("").includes("published_keys")) reads += 1;
        return Reflect.apply(target, self, args);
      },
    });
    const tokens = issuer({ sql: counted, timings: { keyCacheSeconds: 3600 } });
    await tokens.sign(claims());
    const readsAfterSigning = reads;
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const started = performance.now();
    for (let i = 0; i < 20; i++) {
      // A well-formed kid of our kind (a 43-character thumbprint) that no replica ever made.
      const forged = await new SignJWT({ room: "launch", tid: claims().ticketId, ins: 1 })
        .setProtectedHeader({
          alg: "EdDSA",
          kid: base64url.encode(crypto.getRandomValues(new Uint8Array(32))),
          typ: "JWT",
        })
        .setSubject("user-1")
        .setIssuer("waitroom")
        .setExpirationTime("10m")
        .sign(privateKey);
      expect(await rejection(tokens, forged)).toMatchObject({ code: "invalid_token" });
    }
    const seconds = (performance.now() - started) / 1000;
    // At most one read per second that passed (none within a second of signing's), not one per forged token.
    expect(reads - readsAfterSigning).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    expect(reads - readsAfterSigning).toBeLessThan(20);
  });

  it.each([
    ["tid", { sub: "user-1", aud: "launch", room: "launch", ins: 1 }],
    ["a non-uuid tid", { sub: "user-1", aud: "launch", room: "launch", tid: "1; drop table", ins: 1 }],
    ["ins", { sub: "user-1", aud: "launch", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001" }],
    [
      "an integer ins",
      { sub: "user-1", aud: "launch", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: "1" },
    ],
    ["room", { sub: "user-1", aud: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: 1 }],
    ["aud", { sub: "user-1", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: 1 }],
    [
      "an aud equal to its room",
      { sub: "user-1", aud: "vip", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: 1 },
    ],
    ["sub", { aud: "launch", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: 1 }],
  ])("rejects a properly signed token lacking %s", async (_, payload) => {
    const tokens = issuer();
    await tokens.sign(claims());
    const now = Math.floor(Date.now() / 1000);
    const token = await signWithCurrentKey({ ...payload, iss: "waitroom", iat: now, exp: now + 600 });
    expect(await rejection(tokens, token)).toMatchObject({ code: "invalid_token" });
  });

  it("rejects a properly signed token from another issuer, or without exp", async () => {
    const tokens = issuer();
    await tokens.sign(claims());
    const base = { sub: "user-1", aud: "launch", room: "launch", tid: claims().ticketId, ins: 1 };
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + 600;
    // The complete payload passes: each refusal below is for the one claim changed.
    expect(
      await tokens.verify(await signWithCurrentKey({ ...base, iss: "waitroom", iat, exp }), "launch"),
    ).toMatchObject({ ticketId: base.tid });
    for (const payload of [
      { ...base, iss: "evil", iat, exp },
      { ...base, iss: "waitroom", iat },
      { ...base, iss: "waitroom", iat: "yesterday", exp },
    ]) {
      expect(await rejection(tokens, await signWithCurrentKey(payload))).toMatchObject({ code: "invalid_token" });
    }
  });

  it("answers wrong_room for a valid token of another room", async () => {
    const tokens = issuer();
    const { token } = await tokens.sign(claims());
    expect(await tokens.verify(token, "launch")).toMatchObject({ room: "launch" });
    const error = await rejection(tokens, token, "vip");
    expect(error).toMatchObject({ code: "wrong_room", name: "TokenError" });
    expect(error.message).toBe("the admission token is for room 'launch', not 'vip'");
    // Verifiers that only know the standard claims refuse it too.
    const elsewhere = jwtVerify(token, createLocalJWKSet(await tokens.jwks()), { audience: "vip" });
    await expect(elsewhere).rejects.toMatchObject({ claim: "aud" });
  });

  it("answers expired for a token past its seat expiry", async () => {
    const tokens = issuer();
    const { token } = await tokens.sign(claims({ expiresAt: new Date(Date.now() - 1000) }));
    const error = await rejection(tokens, token);
    expect(error).toMatchObject({ code: "expired", name: "TokenError" });
    expect(error.message).toMatch(/expired/);
  });
});

describe("jwks", () => {
  it("publishes only public parts of the current and recently retired keys", async () => {
    const tokens = issuer();
    await tokens.sign(claims());
    await tokens.rotate();
    const { keys } = await tokens.jwks();
    expect(keys).toHaveLength(2);
    for (const key of keys) {
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x"]);
      expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
    }
    const secrets = await db.sql<{ d: string }[]>`select private_jwk->>'d' as d from waitroom.signing_keys`;
    expect(secrets).toHaveLength(2);
    const published = JSON.stringify(keys);
    for (const { d } of secrets) {
      expect(d).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(published).not.toContain(d);
    }
  });

  it("names each key by its RFC 7638 thumbprint", async () => {
    const tokens = issuer();
    await tokens.sign(claims());
    const key = first((await tokens.jwks()).keys);
    expect(key.kid).toBe(await calculateJwkThumbprint({ kty: "OKP", crv: "Ed25519", x: key.x }));
  });
});
