import http from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import express from "express";
import { Hono } from "hono";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AdmissionVerifier,
  createClient,
  createVerifier,
  expressAdmission,
  honoAdmission,
  nodeAdmission,
  type VerifiedAdmission,
  type VerifierOptions,
} from "../../sdk/index.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true, env: { WAITROOM_KEY_CACHE_SECONDS: "1" } });

async function createRoom(): Promise<string> {
  const room = uniqueRoomId();
  const response = await server.request(`/v1/rooms/${room}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 100, claim_seconds: 600, session_seconds: 600 },
  });
  expect(response.status).toBe(201);
  return room;
}

/** A real admission token: join, wait for the worker to admit, claim. */
async function admission(room: string): Promise<{ token: string; ticketId: string; expiresAt: Date }> {
  const ticket = await createClient({ baseUrl: server.url }).join(room);
  const admitted = new Promise<void>((resolve, reject) => {
    const stop = new AbortController();
    ticket
      .subscribe(
        (event) => {
          if (event.data.status === "admitted") {
            stop.abort();
            resolve();
          }
        },
        { signal: stop.signal },
      )
      .catch(reject);
  });
  await admitted;
  const claim = await ticket.claim();
  return { token: claim.admission_token, ticketId: ticket.id, expiresAt: new Date(claim.admission_expires_at) };
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const parts = (token: string) => token.split(".") as [string, string, string];
const decode = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString()) as Record<string, unknown>;

/** The same token with its header changed (its signature no longer covers it). */
function withHeader(token: string, change: Record<string, unknown>): string {
  const [header, payload, signature] = parts(token);
  return [b64({ ...decode(header), ...change }), payload, signature].join(".");
}

/** The same token with its payload changed, the signature kept. */
function withPayload(token: string, change: Record<string, unknown>): string {
  const [header, payload, signature] = parts(token);
  return [header, b64({ ...decode(payload), ...change }), signature].join(".");
}

const FORGED_KID = "A".repeat(43);

const verifier = (room: string, options: Partial<VerifierOptions> = {}) =>
  createVerifier({ baseUrl: server.url, room, ...options });

const reasonOf = (promise: Promise<unknown>) =>
  promise.then(
    () => "passed",
    (error: { reason?: string }) => error.reason ?? String(error),
  );

/* ---------- The three middlewares, each in front of a tiny app on a real port ---------- */

const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

function listening(listener: http.Server): Promise<string> {
  closers.push(() => new Promise((resolve) => listener.close(() => resolve())));
  return new Promise((resolve) => {
    if (listener.listening) resolve(`http://127.0.0.1:${(listener.address() as AddressInfo).port}`);
    else listener.once("listening", () => resolve(`http://127.0.0.1:${(listener.address() as AddressInfo).port}`));
  });
}

const frameworks: Record<string, (verifier: AdmissionVerifier) => Promise<string>> = {
  hono: (v) => {
    const app = new Hono<{ Variables: { admission: VerifiedAdmission } }>();
    app.use(honoAdmission(v));
    app.get("/", (c) => c.json(c.get("admission")));
    return listening(serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }) as http.Server);
  },
  express: (v) => {
    const app = express();
    app.use(expressAdmission(v));
    app.get("/", (_request, response) => {
      response.json(response.locals.admission);
    });
    return listening(app.listen(0, "127.0.0.1"));
  },
  "node:http": (v) => {
    const guard = nodeAdmission(v);
    const listener = http.createServer(async (request, response) => {
      const admitted = await guard(request, response);
      if (!admitted) return;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(admitted));
    });
    return listening(listener.listen(0, "127.0.0.1"));
  },
};

async function get(url: string, token?: string) {
  const response = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown> & { error?: { code: string } },
  };
}

describe.each(Object.keys(frameworks))("%s middleware against the running service", (name) => {
  const start = frameworks[name] as (verifier: AdmissionVerifier) => Promise<string>;

  it("lets a claimed seat's token through, with its claims", async () => {
    const room = await createRoom();
    const url = await start(verifier(room));
    const seat = await admission(room);
    const answer = await get(url, seat.token);
    expect(answer).toMatchObject({ status: 200, body: { room, ticketId: seat.ticketId, holder: seat.ticketId } });
    expect(answer.body.expiresAt).toBe(seat.expiresAt.toISOString());
  });

  it("refuses no token, another room's, a tampered one and an unknown key, each with its reason", async () => {
    const room = await createRoom();
    const other = await createRoom();
    const url = await start(verifier(room));
    const mine = await admission(room);
    const theirs = await admission(other);
    const refused = async (token: string | undefined) => {
      const { status, body } = await get(url, token);
      return { status, code: body.error?.code };
    };
    expect(await refused(undefined)).toEqual({ status: 401, code: "missing" });
    expect(await refused(theirs.token)).toEqual({ status: 403, code: "wrong_room" });
    // Another room's seat dressed up as this room's: the signature no longer matches.
    expect(await refused(withPayload(theirs.token, { aud: room, room }))).toEqual({
      status: 401,
      code: "bad_signature",
    });
    expect(await refused(withHeader(mine.token, { kid: FORGED_KID }))).toEqual({ status: 401, code: "unknown_key" });
    expect(await refused(withHeader(mine.token, { alg: "none" }))).toEqual({
      status: 401,
      code: "unsupported_algorithm",
    });
    expect(await refused("not-a-jwt")).toEqual({ status: 401, code: "malformed" });
  });

  it("refuses a token once its exp is past, beyond the clock skew", async () => {
    const room = await createRoom();
    const seat = await admission(room);
    // A verifier whose clock reads a minute after the token's exp (the skew is 30 s).
    const late = await start(verifier(room, { now: () => seat.expiresAt.getTime() + 60_000 }));
    const answer = await get(late, seat.token);
    expect(answer).toMatchObject({ status: 401, body: { error: { code: "expired" } } });
  });

  it("answers 503 when the JWKS cannot be fetched: the token is not at fault", async () => {
    const room = await createRoom();
    const seat = await admission(room);
    const nowhere = await start(createVerifier({ baseUrl: "http://127.0.0.1:9", room }));
    expect(await get(nowhere, seat.token)).toMatchObject({
      status: 503,
      body: { error: { code: "jwks_unavailable" } },
    });
  });
});

describe("the verifier", () => {
  it("allows the clock skew around exp and no more", async () => {
    const room = await createRoom();
    const seat = await admission(room);
    const exp = seat.expiresAt.getTime();
    expect(await reasonOf(verifier(room, { now: () => exp + 29_000 }).verify(seat.token))).toBe("passed");
    expect(await reasonOf(verifier(room, { now: () => exp + 31_000 }).verify(seat.token))).toBe("expired");
    expect(await reasonOf(verifier(room, { now: () => exp + 5_000, clockSkewSeconds: 0 }).verify(seat.token))).toBe(
      "expired",
    );
  });

  it("does not refetch the JWKS for forged key ids more often than its floor", async () => {
    const room = await createRoom();
    const seat = await admission(room);
    let fetches = 0;
    const counted = verifier(room, {
      fetch: (input, init) => {
        fetches++;
        return fetch(input, init);
      },
    });
    expect(await reasonOf(counted.verify(seat.token))).toBe("passed");
    const forged = Array.from({ length: 20 }, () => counted.verify(withHeader(seat.token, { kid: FORGED_KID })));
    expect(await Promise.all(forged.map(reasonOf))).toEqual(Array(20).fill("unknown_key"));
    expect(fetches).toBe(1);
    // The cached keys still serve real tokens without a fetch.
    expect(await reasonOf(counted.verify(seat.token))).toBe("passed");
    expect(fetches).toBe(1);
  });

  it("follows a key rotation and drops a revoked key", async () => {
    const room = await createRoom();
    const before = await admission(room);
    let fetches = 0;
    const following = verifier(room, {
      refetchFloorMs: 0,
      fetch: (input, init) => {
        fetches++;
        return fetch(input, init);
      },
    });
    expect(await reasonOf(following.verify(before.token))).toBe("passed");
    const oldKid = decode(parts(before.token)[0]).kid as string;

    // Rotate, then revoke the signing key: the staged key signs from now on.
    const rotated = await server.request("/v1/keys/rotate", { method: "POST", token: ADMIN_KEY });
    expect(rotated.status).toBe(200);
    const revoked = await server.request(`/v1/keys/${oldKid}/revoke`, { method: "POST", token: ADMIN_KEY });
    expect(revoked.status).toBe(200);
    const after = await admission(room);
    const newKid = decode(parts(after.token)[0]).kid;
    expect(newKid).toBe(((await rotated.json()) as { kid: string }).kid);

    // The new kid is unknown to the cached set: one refetch, and the new set no longer lists the old key.
    expect(await reasonOf(following.verify(after.token))).toBe("passed");
    expect(fetches).toBe(2);
    expect(await reasonOf(following.verify(before.token))).toBe("unknown_key");
    // A verifier starting now never knew the revoked key.
    expect(await reasonOf(verifier(room).verify(before.token))).toBe("unknown_key");
  });
});
