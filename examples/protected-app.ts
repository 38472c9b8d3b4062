/*
 * The app behind the waiting room: it serves only requests that carry a
 * valid admission token (from a claim), sent as `Authorization: Bearer <jwt>`
 * or `?admission_token=<jwt>`.
 *
 *   npx tsx examples/protected-app.ts --room launch [--port 3000] [--url http://localhost:8080] [--check]
 *
 * --room is the room this app is behind: a token is bound to its room (its
 * audience), and another room's seat must not open this door.
 *
 * Offline (the default): the token's signature, issuer, expiry and audience are
 * verified with jose against the service's /.well-known/jwks.json; no call
 * to the service per request, but an early leave is not seen until the
 * token expires. --check also asks POST /v1/check, which sees revocations
 * (left, superseded, ended) at the price of one request each time.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { createRemoteJWKSet, errors, jwtVerify } from "jose";
import { createClient, WaitroomError } from "../sdk/index.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env.PORT ?? "3000" },
    url: { type: "string", default: process.env.WAITROOM_URL ?? "http://localhost:8080" },
    room: { type: "string", default: process.env.WAITROOM_ROOM },
    check: { type: "boolean", default: false },
  },
});
const room: string =
  values.room ??
  (() => {
    console.error("--room is required: the room whose admission tokens this app accepts");
    return process.exit(2);
  })();

const client = createClient({ baseUrl: values.url });
// Fetches the keys once, caches them, and refetches when a token names a kid it has not seen (a key rotation).
const jwks = createRemoteJWKSet(new URL(client.jwksUrl));

type Verdict = { ok: true; holder: string; expiresAt: Date } | { ok: false; status: number; reason: string };

async function verify(token: string | undefined): Promise<Verdict> {
  if (!token) return { ok: false, status: 401, reason: "no admission token: wait your turn in the waiting room" };
  try {
    const { payload } = await jwtVerify(token, jwks, {
      algorithms: ["EdDSA"],
      issuer: "waitroom",
      // A token for another room's seat must not open this door.
      audience: room,
      requiredClaims: ["sub", "aud", "tid", "exp"],
    });
    if (values.check) await client.check({ room, admission_token: token });
    return { ok: true, holder: String(payload.sub), expiresAt: new Date((payload.exp ?? 0) * 1000) };
  } catch (error) {
    if (error instanceof errors.JWTExpired) return { ok: false, status: 401, reason: "the admission token expired" };
    if (error instanceof errors.JWTClaimValidationFailed && error.claim === "aud") {
      return { ok: false, status: 403, reason: `this token is not for room ${room}` };
    }
    if (error instanceof errors.JOSEError) return { ok: false, status: 401, reason: "not a valid admission token" };
    // From /v1/check: the seat was given back (left), taken over (superseded), or is over.
    if (error instanceof WaitroomError && error.status < 500) {
      return { ok: false, status: 403, reason: `the seat is no longer valid: ${error.code}` };
    }
    throw error; // the service is unreachable: fail closed, as a 500
  }
}

const server = http.createServer(async (request, response) => {
  try {
    const url = new URL(request.url ?? "/", "http://localhost");
    const bearer = /^Bearer (.+)$/i.exec(request.headers.authorization ?? "")?.[1];
    const verdict = await verify(bearer ?? url.searchParams.get("admission_token") ?? undefined);
    response.setHeader("content-type", "text/plain; charset=utf-8");
    if (!verdict.ok) {
      response.writeHead(verdict.status).end(`${verdict.reason}\n`);
      return;
    }
    response
      .writeHead(200)
      .end(`welcome, ${verdict.holder}: your seat is valid until ${verdict.expiresAt.toISOString()}\n`);
  } catch (error) {
    console.error(error);
    if (!response.headersSent) response.writeHead(500);
    response.end("could not verify the admission token\n");
  }
});

server.listen(Number(values.port), "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  console.log(`protected app on http://127.0.0.1:${port} (${values.check ? "offline + /v1/check" : "offline"})`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => server.close());
