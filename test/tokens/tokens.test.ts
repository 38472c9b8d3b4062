import {
  base64url,
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeProtectedHeader,
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
import { createTokenIssuer, TokenError, type TokenIssuer } from "../../src/tokens/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { admit, createRoom, first, join } from "../helpers/queue.js";

const db = useTestDatabase();
const log = createLogger("silent");

const issuer = (options: { sql?: Sql; cacheMs?: number } = {}) =>
  createTokenIssuer({ sql: db.serviceSql, log, ...options });

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
  const rows = await db.sql<{ kid: string }[]>`select kid from waitroom.signing_keys where retired_at is null`;
  return rows.map((row) => row.kid);
}

async function rejection(issuerUnderTest: TokenIssuer, token: string): Promise<TokenError> {
  const error = await issuerUnderTest.verify(token).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(TokenError);
  return error as TokenError;
}

/** Sign arbitrary claims with the real current key, to test what verify demands beyond a good signature. */
async function signWithCurrentKey(payload: Record<string, unknown>) {
  const [row] = await db.sql<{ kid: string; private_jwk: JWK }[]>`
    select kid, private_jwk from waitroom.signing_keys where retired_at is null`;
  if (!row) throw new Error("no current key");
  const key = await importJWK(row.private_jwk, "EdDSA");
  return new SignJWT(payload).setProtectedHeader({ alg: "EdDSA", kid: row.kid, typ: "JWT" }).sign(key);
}

beforeEach(async () => {
  await db.sql`delete from waitroom.signing_keys`;
});

describe("sign", () => {
  it("issues a JWT that a standard JOSE library verifies against the JWKS, exp = seat expiry", async () => {
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
      room,
      tid: ticket.ticket_id,
      ins: 1,
      iss: "waitroom",
      iat: expect.any(Number),
      exp: Math.floor(seat.expires_at.getTime() / 1000),
    });
    expect(payload.iat).toBeGreaterThanOrEqual(issuedAt);
    expect(payload.exp).toBeGreaterThan(issuedAt + 500);

    expect(await tokens.verify(token)).toEqual({
      ticketId: ticket.ticket_id,
      room,
      holder: "user-42",
      instance: 1,
      expiresAt: new Date(Math.floor(seat.expires_at.getTime() / 1000) * 1000),
      kid,
    });
  });

  it("uses the ticket id as subject for anonymous tickets", async () => {
    const tokens = issuer();
    const { token } = await tokens.sign(claims({ holder: null }));
    expect(await tokens.verify(token)).toMatchObject({ holder: claims().ticketId, ticketId: claims().ticketId });
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
  it("switches signing to a new key while tokens of the old one still verify", async () => {
    const tokens = issuer();
    const before = await tokens.sign(claims());
    const kid = await tokens.rotate();
    expect(kid).not.toBe(before.kid);
    expect(await currentKids()).toEqual([kid]);

    expect(await tokens.verify(before.token)).toMatchObject({ kid: before.kid });
    const after = await tokens.sign(claims());
    expect(after.kid).toBe(kid);
    expect(decodeProtectedHeader(after.token).kid).toBe(kid);
    expect((await tokens.jwks()).keys.map((key) => key.kid)).toEqual([kid, before.kid]);

    // An independent verifier holding the JWKS accepts both.
    const jwks = createLocalJWKSet(await tokens.jwks());
    for (const { token } of [before, after]) await expect(jwtVerify(token, jwks)).resolves.toBeTruthy();
  });

  it("is verified at once by another replica whose cache predates the rotation", async () => {
    const [a, b] = [issuer(), issuer({ cacheMs: 3_600_000 })] as const;
    await b.verify((await a.sign(claims())).token); // b has read the keys and caches them for an hour
    await a.rotate();
    const { token, kid } = await a.sign(claims());
    expect(await b.verify(token)).toMatchObject({ kid });
    expect((await b.jwks()).keys.map((key) => key.kid)).toContain(kid);
  });

  it("leaves exactly one current key when replicas rotate concurrently", async () => {
    await issuer().sign(claims());
    const kids = await Promise.all(replicas(5).map((replica) => replica.rotate()));
    expect(new Set(kids).size).toBe(5);
    const current = await currentKids();
    expect(current).toHaveLength(1);
    expect(kids).toContain(current[0]);
  });

  it("drops a retired key from the JWKS and verification once its listing period is over", async () => {
    const tokens = issuer({ cacheMs: 0 });
    const old = await tokens.sign(claims());
    await tokens.rotate();
    await db.sql`update waitroom.signing_keys set retired_at = now() - interval '86401 seconds' where kid = ${old.kid}`;
    expect((await tokens.jwks()).keys.map((key) => key.kid)).not.toContain(old.kid);
    expect(await rejection(tokens, old.token)).toMatchObject({ code: "invalid_token" });
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

  it.each([
    ["tid", { sub: "user-1", room: "launch", ins: 1 }],
    ["a non-uuid tid", { sub: "user-1", room: "launch", tid: "1; drop table", ins: 1 }],
    ["ins", { sub: "user-1", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001" }],
    ["an integer ins", { sub: "user-1", room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: "1" }],
    ["room", { sub: "user-1", tid: "0190a0e0-0000-7000-8000-000000000001", ins: 1 }],
    ["sub", { room: "launch", tid: "0190a0e0-0000-7000-8000-000000000001", ins: 1 }],
  ])("rejects a properly signed token lacking %s", async (_, payload) => {
    const tokens = issuer();
    await tokens.sign(claims());
    const token = await signWithCurrentKey({ ...payload, iss: "waitroom", exp: Math.floor(Date.now() / 1000) + 600 });
    expect(await rejection(tokens, token)).toMatchObject({ code: "invalid_token" });
  });

  it("rejects a properly signed token from another issuer or without exp", async () => {
    const tokens = issuer();
    await tokens.sign(claims());
    const base = { sub: "user-1", room: "launch", tid: claims().ticketId, ins: 1 };
    const exp = Math.floor(Date.now() / 1000) + 600;
    for (const payload of [
      { ...base, iss: "evil", exp },
      { ...base, iss: "waitroom" },
    ]) {
      expect(await rejection(tokens, await signWithCurrentKey(payload))).toMatchObject({ code: "invalid_token" });
    }
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
