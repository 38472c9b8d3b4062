import { decodeProtectedHeader, errors, type JWK, type JWTPayload, jwtVerify, SignJWT } from "jose";
import type { Sql } from "../db/client.js";
import type { Logger } from "../log.js";
import { createKeyStore } from "./keys.js";

/** What a claim puts in an admission token. */
export type AdmissionClaims = {
  holder: string | null;
  room: string;
  ticketId: string;
  instance: number;
  expiresAt: Date;
};

/** What a verified admission token says; holder is the ticket id for anonymous tickets. */
export type VerifiedAdmission = {
  ticketId: string;
  room: string;
  holder: string;
  instance: number;
  expiresAt: Date;
  kid: string;
};

export type TokenIssuer = {
  sign(claims: AdmissionClaims): Promise<{ token: string; kid: string }>;
  /**
   * Signature, issuer, expiry and audience: the token must have been issued for `room`, the room the
   * caller protects. Revocation is waitroom.check_admission's job. Throws only TokenError for bad tokens.
   */
  verify(token: string, room: string): Promise<VerifiedAdmission>;
  /** Public keys for /.well-known/jwks.json. */
  jwks(): Promise<{ keys: JWK[] }>;
  /** Retire the current key (it stays in the JWKS for retiredKeyTtlSeconds) and return the new kid. */
  rotate(): Promise<string>;
};

export type TokenIssuerOptions = {
  sql: Sql;
  log: Logger;
  /** How long keys read from the database are trusted before reading again. */
  cacheMs?: number;
  /** How long a retired key stays listed: longer than any session, so every token it signed can still verify. */
  retiredKeyTtlSeconds?: number;
};

/** wrong_room: a valid token, but for another room's seat. */
export type TokenErrorCode = "invalid_token" | "expired" | "wrong_room";

export class TokenError extends Error {
  override readonly name = "TokenError";
  readonly code: TokenErrorCode;

  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const ISSUER = "waitroom";
const ALG = "EdDSA";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const invalid = (message: string) => new TokenError("invalid_token", message);

/** The kid of a token that at least claims to be one of ours. */
function signingKid(token: unknown): string {
  if (typeof token !== "string") throw invalid("admission token must be a string");
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw invalid("admission token is not a JWT");
  }
  // Pinning the algorithm rules out "none" and HMAC-with-the-public-key confusion.
  if (header.alg !== ALG) throw invalid("admission token must be signed with EdDSA");
  if (typeof header.kid !== "string") throw invalid("admission token has no key id");
  return header.kid;
}

/** Admission tokens: Ed25519-signed JWTs issued on claim, checked offline against the JWKS or by POST /v1/check. */
export function createTokenIssuer({
  sql,
  log,
  cacheMs = 30_000,
  retiredKeyTtlSeconds = 86_400,
}: TokenIssuerOptions): TokenIssuer {
  const keys = createKeyStore({ sql, log, cacheMs, retiredKeyTtlSeconds });

  return {
    async sign({ holder, room, ticketId, instance, expiresAt }) {
      const { kid, privateKey } = await keys.signingKey();
      // The audience binds the token to its room: a verifier that checks aud (every JWT library can)
      // refuses another room's seat. `room` says the same for verifiers written before aud was set.
      const token = await new SignJWT({ room, tid: ticketId, ins: instance })
        .setProtectedHeader({ alg: ALG, kid, typ: "JWT" })
        .setSubject(holder ?? ticketId)
        .setIssuer(ISSUER)
        .setAudience(room)
        .setIssuedAt()
        // Never outlives the seat: a fractional second rounds down.
        .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
        .sign(privateKey);
      return { token, kid };
    },

    async verify(token, expectedRoom) {
      const kid = signingKid(token);
      const key = await keys.publicKey(kid);
      if (!key) throw invalid("admission token was signed by an unknown key");
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, key, {
          algorithms: [ALG],
          issuer: ISSUER,
          typ: "JWT",
          requiredClaims: ["sub", "exp", "aud", "room", "tid", "ins"],
        }));
      } catch (error) {
        if (error instanceof errors.JWTExpired) throw new TokenError("expired", "admission token has expired");
        const reason = error instanceof errors.JOSEError ? `: ${error.message}` : "";
        throw invalid(`admission token is invalid${reason}`);
      }
      const { sub, aud, room, tid, ins, exp } = payload;
      if (
        typeof sub !== "string" ||
        typeof room !== "string" ||
        aud !== room ||
        typeof tid !== "string" ||
        !UUID.test(tid) ||
        typeof ins !== "number" ||
        // Instances are int4 counting from 1: anything else was never issued here.
        !Number.isInteger(ins) ||
        ins < 1 ||
        ins > 2_147_483_647 ||
        typeof exp !== "number"
      ) {
        throw invalid("admission token claims are malformed");
      }
      if (room !== expectedRoom) {
        throw new TokenError("wrong_room", `the admission token is for room '${room}', not '${expectedRoom}'`);
      }
      return { ticketId: tid, room, holder: sub, instance: ins, expiresAt: new Date(exp * 1000), kid };
    },

    async jwks() {
      return { keys: await keys.listed() };
    },

    rotate: () => keys.rotate(),
  };
}
