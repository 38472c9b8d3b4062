import { decodeProtectedHeader, errors, type JWK, type JWTPayload, jwtVerify, SignJWT } from "jose";
import type { Sql } from "../db/client.js";
import type { Logger } from "../log.js";
import { createKeyStore, type SigningKey } from "./keys.js";

export type { SigningKey } from "./keys.js";

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
  /** Its iat (every token we sign has one), and exp: the gate renews a token half way between them. */
  issuedAt: Date | undefined;
  expiresAt: Date;
  kid: string;
};

/** A signed admission token and when it expires (never after the seat). */
export type SignedAdmission = { token: string; kid: string; expiresAt: Date };

export type TokenIssuer = {
  /** An admission token for the seat: it expires after tokenSeconds, or with the seat if that is sooner. */
  sign(claims: AdmissionClaims): Promise<SignedAdmission>;
  /**
   * Signature, issuer, expiry and audience: the token must have been issued for `room`, the room the
   * caller protects. Revocation is waitroom.check_admission's job. Throws only TokenError for bad tokens.
   */
  verify(token: string, room: string): Promise<VerifiedAdmission>;
  /** Public keys for /.well-known/jwks.json. */
  jwks(): Promise<{ keys: JWK[] }>;
  /** Stage the next key: published now, signing after stageSeconds (a key already staged is returned instead). */
  rotate(): Promise<SigningKey>;
  /** Emergency revoke of a key: unlisted, and its tokens refused by /v1/check, at once. */
  revoke(kid: string): Promise<SigningKey>;
  /** Every key kept, newest first, with its state. */
  keys(): Promise<SigningKey[]>;
};

/** How long admission tokens and keys live; derived figures follow from these three (see tokenTimings). */
export type TokenTimings = {
  /** Most an admission token lives; heartbeats and claim retries hand out fresh ones. */
  tokenSeconds: number;
  /** How long relying parties may cache the JWKS (its Cache-Control max-age). */
  jwksMaxAgeSeconds: number;
  /** How long a replica trusts the keys it read from the database. */
  keyCacheSeconds: number;
};

/** wrong_room: a valid token, but for another room's seat. */
export type TokenErrorCode = "invalid_token" | "expired" | "wrong_room";

/** A verifier's clock may run this far behind ours when it checks exp. */
const CLOCK_LEEWAY_SECONDS = 60;

/**
 * stageSeconds: a rotated key is published this long before it signs, so a relying party that cached the
 * JWKS just before another replica's key cache saw the key still learns it before its first token.
 * retiredKeyTtlSeconds: a retired key stays listed until the last token it can have signed (by a replica
 * still caching it) has expired, with a verifier's clock leeway.
 */
export function tokenTimings({ tokenSeconds, jwksMaxAgeSeconds, keyCacheSeconds }: TokenTimings) {
  return {
    stageSeconds: jwksMaxAgeSeconds + keyCacheSeconds,
    retiredKeyTtlSeconds: tokenSeconds + keyCacheSeconds + CLOCK_LEEWAY_SECONDS,
  };
}

export const defaultTokenTimings: TokenTimings = { tokenSeconds: 120, jwksMaxAgeSeconds: 300, keyCacheSeconds: 30 };

export type TokenIssuerOptions = { sql: Sql; log: Logger; timings?: TokenTimings };

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
export function createTokenIssuer({ sql, log, timings = defaultTokenTimings }: TokenIssuerOptions): TokenIssuer {
  const keys = createKeyStore({ sql, log, cacheMs: timings.keyCacheSeconds * 1000, ...tokenTimings(timings) });

  return {
    async sign({ holder, room, ticketId, instance, expiresAt }) {
      const { kid, privateKey } = await keys.signingKey();
      // The audience binds the token to its room: a verifier that checks aud (every JWT library can)
      // refuses another room's seat. `room` says the same for verifiers written before aud was set.
      // Never outlives the seat nor tokenSeconds; a fractional second rounds down.
      const exp = Math.floor(Math.min(expiresAt.getTime(), Date.now() + timings.tokenSeconds * 1000) / 1000);
      const token = await new SignJWT({ room, tid: ticketId, ins: instance })
        .setProtectedHeader({ alg: ALG, kid, typ: "JWT" })
        .setSubject(holder ?? ticketId)
        .setIssuer(ISSUER)
        .setAudience(room)
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(privateKey);
      return { token, kid, expiresAt: new Date(exp * 1000) };
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
      const { sub, aud, room, tid, ins, iat, exp } = payload;
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
        (iat !== undefined && typeof iat !== "number") ||
        typeof exp !== "number"
      ) {
        throw invalid("admission token claims are malformed");
      }
      if (room !== expectedRoom) {
        throw new TokenError("wrong_room", `the admission token is for room '${room}', not '${expectedRoom}'`);
      }
      return {
        ticketId: tid,
        room,
        holder: sub,
        instance: ins,
        issuedAt: iat === undefined ? undefined : new Date(iat * 1000),
        expiresAt: new Date(exp * 1000),
        kid,
      };
    },

    async jwks() {
      return { keys: await keys.listed() };
    },

    rotate: () => keys.rotate(),
    revoke: (kid) => keys.revoke(kid),
    keys: () => keys.list(),
  };
}
