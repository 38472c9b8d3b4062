import { decodeJwt, decodeProtectedHeader, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { withClient } from "../../src/db/client.js";
import { type ErrorCode, errorCodes } from "../../src/http/contracts.js";
import type { Route } from "../../src/http/route.js";
import { checkRoute, revokeRoute } from "../../src/http/routes/checks.js";
import { endHandoverRoute, gateRoute, handoverRoute } from "../../src/http/routes/gate.js";
import { routes } from "../../src/http/routes/index.js";
import { metricsRoute, readyRoute } from "../../src/http/routes/ops.js";
import {
  deleteRoomRoute,
  getRoomRoute,
  historyRoute,
  pauseRoute,
  putRoomRoute,
  resumeRoute,
} from "../../src/http/routes/rooms.js";
import { addStockRoute, getStockRoute, settleRoute } from "../../src/http/routes/stock.js";
import {
  claimRoute,
  eventsRoute,
  heartbeatRoute,
  joinRoute,
  leaveRoute,
  ticketRoute,
} from "../../src/http/routes/tickets.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { ADMIN_KEY, SERVER_KEY, testLimits, useTestServer } from "../helpers/http.js";
import { admit, first, join, uniqueRoomId, verdict } from "../helpers/queue.js";

/*
 * Every error code a route documents (x-error-codes in /openapi.json) is one it really answers:
 * one scenario per (route, code) puts a real service in the state that makes the route give that
 * code, and the pairs answered must be exactly the documented ones. The other half (a route never
 * answers a code it does not document) is checked by useTestServer on every HTTP test file.
 * Codes any route may answer (payload_too_large, unavailable, internal) are not listed per route.
 */

const db = useTestDatabase();
/** The gate guards gate.test with a room of that name (which need not exist: the gate reads no database). */
const gatedHost = "gate.test";
const server = useTestServer(db, { env: { WAITROOM_GATES: `${gatedHost}=gated` } });
/** The same service without WAITROOM_ADMIN_KEY: the admin API is disabled. */
const keyless = useTestServer(db, { env: { WAITROOM_ADMIN_KEY: "" } });
/** The same service allowing a client one call an hour of each kind. */
const limited = useTestServer(db, {
  // The gate answers only the proxies listed, and this service lists one that is not the test.
  env: {
    ...Object.fromEntries(Object.keys(testLimits).map((name) => [name, "1/h"])),
    WAITROOM_TRUSTED_PROXIES: "192.0.2.1",
  },
});
/** /metrics behind a key, and /metrics on a port of its own (the main port then has none). */
const metricsKeyed = useTestServer(db, { env: { WAITROOM_METRICS_KEY: "metrics-key-for-tests-0123456789" } });
const metricsApart = useTestServer(db, { env: { WAITROOM_METRICS_PORT: "0" } });
/** The same service without WAITROOM_SERVER_KEY: the server-key routes are disabled. */
const serverless = useTestServer(db, { env: { WAITROOM_SERVER_KEY: "" } });
const services = { server, keyless, limited, metricsKeyed, metricsApart, serverless };

type Ticket = { ticket_id: string; token: string; room: string };
type TicketState = "queued" | "admitted" | "active" | "draining" | "ended" | "expired" | "left";

/** What one scenario sends to its route. */
type Call = {
  /** Path parameters by name (the route's path has the placeholders). */
  params?: Record<string, string>;
  token?: string;
  headers?: Record<string, string>;
  /** The query string, without "?". */
  query?: string;
  /** JSON-encoded unless a string. */
  body?: unknown;
  /** The service that answers (default: server). */
  service?: keyof typeof services;
};

type Scenario = {
  route: Route;
  code: ErrorCode;
  /** The state the request meets, in words. */
  given: string;
  /** Puts the service in that state (undoing what outlives the test with onTestFinished) and says what to send. */
  arrange: () => Promise<Call>;
};

const pair = (route: Route, code: string) => `${route.method.toUpperCase()} ${route.path} → ${code}`;

async function databaseNow(): Promise<Date> {
  return first(await db.sql<{ now: Date }[]>`select now()`).now;
}

async function createRoom(settings: Record<string, unknown> = {}, capacity = 1): Promise<string> {
  const id = uniqueRoomId("codes");
  await db.sql`select waitroom.create_room(${id}, ${capacity}, ${db.sql.json(settings as never)})`;
  return id;
}

/**
 * A ticket that is in `state` now, by the database's clock. Where a horizon must have passed, it
 * joined, was admitted and claimed two minutes ago with a 60 s claim window and a 60 s session
 * (grace 0: ended; grace an hour: draining); every other horizon is an hour away.
 */
async function ticketIn(state: TicketState): Promise<Ticket> {
  const lapsed = state === "expired" || state === "draining" || state === "ended";
  const room = await createRoom({
    idle_seconds: 3600,
    claim_seconds: lapsed ? 60 : 3600,
    session_seconds: lapsed ? 60 : 3600,
    grace_seconds: state === "ended" ? 0 : 3600,
  });
  const now = await databaseNow();
  const at = lapsed ? new Date(now.getTime() - 120_000) : now;
  const ticket = await join(db.sql, room, { now: at });
  if (state !== "queued") expect(await admit(db.sql, room, at)).toEqual([ticket.ticket_id]);
  if (state === "left") expect((await verdict(db.sql, "leave", ticket, at)).ok).toBe(true);
  if (state === "active" || state === "draining" || state === "ended") {
    expect((await verdict(db.sql, "claim", ticket, at)).ok).toBe(true);
  }
  // The state as the service sees it now.
  const [seen] = await db.sql<{ status: string }[]>`
    select status from waitroom.check(${ticket.ticket_id}::uuid, ${ticket.token})`;
  expect(seen?.status).toBe(state);
  return { ...ticket, room };
}

/** A ticket whose holder joined again: `token` is the first, superseded one. */
async function supersededTicket(): Promise<Ticket> {
  const room = await createRoom({ idle_seconds: 3600 }, 0);
  const now = await databaseNow();
  const before = await join(db.sql, room, { holder: "ada", now });
  const after = await join(db.sql, room, { holder: "ada", now });
  expect(after.ticket_id).toBe(before.ticket_id);
  return { ...before, room };
}

/** The claims and key id of a real admission token, signed by a key that is not the service's. */
async function admissionToken(): Promise<{ token: string; room: string }> {
  const ticket = await ticketIn("admitted");
  const claimed = await server.request(`/v1/tickets/${ticket.ticket_id}/claim`, {
    method: "POST",
    token: ticket.token,
  });
  expect(claimed.status).toBe(200);
  return { token: ((await claimed.json()) as { admission_token: string }).admission_token, room: ticket.room };
}

async function forgedAdmissionToken(): Promise<{ admission_token: string; room: string }> {
  const { token: genuine, room } = await admissionToken();
  // The genuine token passes: only the signature is forged.
  expect((await server.request("/v1/check", { method: "POST", body: { room, admission_token: genuine } })).status).toBe(
    200,
  );
  const { kid } = decodeProtectedHeader(genuine);
  const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const forged = await new SignJWT(decodeJwt(genuine))
    .setProtectedHeader({ alg: "EdDSA", kid, typ: "JWT" })
    .sign(privateKey);
  return { admission_token: forged, room };
}

/**
 * An admission token for a ticket in any state, signed with the service's own key (as a claim would
 * have, had the ticket been claimed): what the handover is refused for is then the seat's state alone.
 */
async function signedFor(ticket: { ticket_id: string; room: string }, instance = 1): Promise<string> {
  await admissionToken();
  const [key] = await db.sql<{ kid: string; private_jwk: JWK }[]>`
    select kid, private_jwk from waitroom.signing_keys where private_jwk is not null order by activates_at desc limit 1`;
  if (!key) throw new Error("no signing key after a claim");
  return new SignJWT({ room: ticket.room, tid: ticket.ticket_id, ins: instance })
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ: "JWT" })
    .setSubject(ticket.ticket_id)
    .setIssuer("waitroom")
    .setAudience(ticket.room)
    .setIssuedAt()
    .setExpirationTime("2 minutes")
    .sign(await importJWK(key.private_jwk, "EdDSA"));
}

/** The handover of an admission token for the ticket's room. */
const handingOver = async (ticket: { ticket_id: string; room: string }, extra: Record<string, unknown> = {}) => ({
  params: { room: ticket.room },
  body: { admission_token: await signedFor(ticket), ...extra },
});

/** What the proxy forwards to the gate about a request for path on host. */
const forwarded = (host: string, path = "/") => ({
  headers: { "x-forwarded-host": host, "x-forwarded-uri": path, "x-forwarded-proto": "https" },
});

/** The keyless service's LISTEN connection is cut and cannot come back until the test is over. */
async function listenerDown(): Promise<void> {
  const database = new URL(db.url).pathname.slice(1);
  const allowConnections = (allow: boolean) =>
    withClient(inject("serverUrl"), (client) =>
      client.query(`alter database "${database}" allow_connections ${allow}`),
    );
  await eventually(() => keyless.listener.connected, "the LISTEN connection is up");
  const pid = keyless.listener.backendPid;
  // No new connection to the database (those open stay): the listener cannot reconnect.
  await allowConnections(false);
  onTestFinished(async () => {
    await allowConnections(true);
    await eventually(() => keyless.listener.connected, "the LISTEN connection is back", 30_000);
  });
  await withClient(inject("serverUrl"), (client) => client.query("select pg_terminate_backend($1, 5000)", [pid]));
  await eventually(() => !keyless.listener.connected, "the service sees the LISTEN connection lost");
}

/**
 * In a room of one unit of stock (and `settings`), holder ada joined, was admitted and claimed, and
 * the unit was consumed: the room is sold out once admission next looks.
 */
async function settledTicket(settings: Record<string, unknown>): Promise<Ticket> {
  const room = await createRoom({ idle_seconds: 3600, claim_seconds: 3600, ...settings });
  await db.sql`select waitroom.add_stock(${room}, 1)`;
  const now = await databaseNow();
  const ticket = await join(db.sql, room, { holder: "ada", now });
  expect(await admit(db.sql, room, now)).toEqual([ticket.ticket_id]);
  expect((await verdict(db.sql, "claim", ticket, now)).ok).toBe(true);
  expect(first(await db.sql`select * from waitroom.settle(${ticket.ticket_id}, 'consumed')`)).toMatchObject({
    ok: true,
  });
  expect((await verdict(db.sql, "leave", ticket, now)).ok).toBe(true);
  return { ...ticket, room };
}

async function soldOutRoom(): Promise<string> {
  const { room } = await settledTicket({});
  await admit(db.sql, room, await databaseNow());
  expect(first(await db.sql`select sold_out from waitroom.room_stats where room_id = ${room}`)).toEqual({
    sold_out: true,
  });
  return room;
}

/** What a stock route would do, with the right key. */
const stockCall = (route: Route, room: string): Call =>
  route === settleRoute
    ? { params: { id: "00000000-0000-4000-8000-000000000000" }, body: { outcome: "consumed" } }
    : { params: { room }, body: route === addStockRoute ? { units: 1 } : undefined };

const ticketRoutes = [ticketRoute, eventsRoute, claimRoute, heartbeatRoute, leaveRoute];
/** Every route the admin key opens, from the definitions themselves. */
const adminRoutes = routes.filter((route) => route.security?.some((requirement) => "adminKey" in requirement));
/** What an admin route would do, on an existing room, with the right key. */
const adminCall = (route: Route, room: string): Call => ({
  params: route === revokeRoute ? { kid: "no-such-key" } : { room },
  body: route === putRoomRoute ? { capacity: 2 } : undefined,
});
const textBody = { headers: { "content-type": "text/plain" }, body: "holder=ada" };

/** What the queue's rules refuse, by route, code and the ticket's state. */
const verdicts: Array<[Route, ErrorCode, TicketState]> = [
  [claimRoute, "not_admitted", "queued"],
  [claimRoute, "ended", "ended"],
  [claimRoute, "expired", "expired"],
  [claimRoute, "left", "left"],
  [heartbeatRoute, "draining", "draining"],
  [heartbeatRoute, "ended", "ended"],
  [heartbeatRoute, "expired", "expired"],
  [heartbeatRoute, "left", "left"],
  [leaveRoute, "ended", "ended"],
  [leaveRoute, "expired", "expired"],
  [leaveRoute, "left", "left"],
  [checkRoute, "not_admitted", "queued"],
  [checkRoute, "not_claimed", "admitted"],
  [checkRoute, "draining", "draining"],
  [checkRoute, "ended", "ended"],
  [checkRoute, "expired", "expired"],
  [checkRoute, "left", "left"],
];

/** A ticket route's call for a ticket: the token in the header, or the ticket in /v1/check's body. */
const presenting = (route: Route, ticket: Ticket, token = ticket.token): Call =>
  route === checkRoute
    ? { body: { room: ticket.room, ticket_id: ticket.ticket_id, token } }
    : { params: { id: ticket.ticket_id }, token };

const scenarios: Scenario[] = [
  // --- joining ---
  {
    route: joinRoute,
    code: "invalid_request",
    given: "a room id that cannot be one",
    arrange: async () => ({ params: { room: "Not-A-Room" } }),
  },
  {
    route: joinRoute,
    code: "unsupported_media_type",
    given: "a body that is not JSON",
    arrange: async () => ({ params: { room: await createRoom() }, ...textBody }),
  },
  {
    route: joinRoute,
    code: "unauthorized",
    given: "a wrong server key",
    arrange: async () => ({ params: { room: await createRoom() }, token: `${SERVER_KEY}x`, body: {} }),
  },
  {
    route: joinRoute,
    code: "forbidden",
    given: "a holder without the server key",
    arrange: async () => ({ params: { room: await createRoom() }, body: { holder: "mallory" } }),
  },
  {
    route: joinRoute,
    code: "not_found",
    given: "a room that does not exist",
    arrange: async () => ({ params: { room: uniqueRoomId("nowhere") }, body: {} }),
  },
  {
    route: joinRoute,
    code: "origin_not_allowed",
    given: "a browser on another site",
    arrange: async () => ({
      params: { room: await createRoom() },
      headers: { origin: "https://elsewhere.example", "sec-fetch-site": "cross-site" },
    }),
  },
  {
    route: joinRoute,
    code: "room_full",
    given: "a room whose queue holds max_queued tickets",
    arrange: async () => {
      const room = await createRoom({ idle_seconds: 3600, max_queued: 1 }, 0);
      await join(db.sql, room, { now: await databaseNow() });
      return { params: { room }, body: {} };
    },
  },
  {
    route: joinRoute,
    code: "room_closed",
    given: "a closed room",
    arrange: async () => ({ params: { room: await createRoom({ mode: "closed" }) }, body: {} }),
  },
  {
    route: joinRoute,
    code: "sold_out",
    given: "a room whose stock is sold",
    arrange: async () => {
      const room = await soldOutRoom();
      return { params: { room }, body: {} };
    },
  },
  {
    route: joinRoute,
    code: "quota_exceeded",
    given: "a holder that used its tier's one admission of the day",
    arrange: async () => {
      const { room } = await settledTicket({ quota_window_seconds: 86400, quota_tiers: { default: { limit: 1 } } });
      return { params: { room }, token: SERVER_KEY, body: { holder: "ada" } };
    },
  },

  // --- every route a ticket's token opens ---
  ...ticketRoutes.flatMap((route): Scenario[] => [
    {
      route,
      code: "unauthorized",
      given: "no token",
      arrange: async () => ({ params: { id: (await ticketIn("queued")).ticket_id } }),
    },
    {
      route,
      code: "not_found",
      given: "another ticket's token",
      arrange: async () => ({
        params: { id: (await ticketIn("queued")).ticket_id },
        token: (await ticketIn("queued")).token,
      }),
    },
    {
      route,
      code: "invalid_request",
      given: "a ticket id that is not a UUID",
      arrange: async () => ({ params: { id: "not-a-uuid" }, token: (await ticketIn("queued")).token }),
    },
    {
      route,
      code: "superseded",
      given: "the token of a ticket its holder joined again",
      arrange: async () => presenting(route, await supersededTicket()),
    },
  ]),
  // Valid calls the limited service counts (answered not_found, or rate_limited once the hour's call is spent).
  ...[joinRoute, ...ticketRoutes, checkRoute].map(
    (route): Scenario => ({
      route,
      code: "rate_limited",
      given: "the client's call of the hour spent",
      arrange: async () => {
        const call: Call =
          route === joinRoute
            ? { params: { room: uniqueRoomId("nowhere") }, service: "limited" }
            : { ...presenting(route, await ticketIn("queued"), (await ticketIn("queued")).token), service: "limited" };
        const spent = await send(route, call);
        expect(((await spent.json()) as { error: { code: string } }).error.code).toMatch(/^(not_found|rate_limited)$/);
        return call;
      },
    }),
  ),
  ...verdicts.map(
    ([route, code, state]): Scenario => ({
      route,
      code,
      given: `a ticket that is ${state}`,
      arrange: async () => presenting(route, await ticketIn(state)),
    }),
  ),

  // --- the protected app's check ---
  {
    route: checkRoute,
    code: "invalid_request",
    given: "neither an admission token nor a ticket",
    arrange: async () => ({ body: {} }),
  },
  {
    route: checkRoute,
    code: "unsupported_media_type",
    given: "a body that is not JSON",
    arrange: async () => textBody,
  },
  {
    route: checkRoute,
    code: "invalid_token",
    given: "an admission token signed by another key",
    arrange: async () => ({ body: await forgedAdmissionToken() }),
  },
  {
    route: metricsRoute,
    code: "unauthorized",
    given: "no key, where WAITROOM_METRICS_KEY is set",
    arrange: async () => ({ service: "metricsKeyed" }),
  },
  {
    route: metricsRoute,
    code: "not_found",
    given: "the main port, where WAITROOM_METRICS_PORT serves it apart",
    arrange: async () => ({ service: "metricsApart" }),
  },
  {
    route: checkRoute,
    code: "wrong_room",
    given: "a genuine admission token of another room",
    arrange: async () => {
      const { token } = await admissionToken();
      return { body: { room: await createRoom(), admission_token: token } };
    },
  },
  {
    route: checkRoute,
    code: "not_found",
    given: "a ticket with another ticket's token",
    arrange: async () => presenting(checkRoute, await ticketIn("active"), (await ticketIn("active")).token),
  },
  {
    route: checkRoute,
    code: "superseded",
    given: "the token of a ticket its holder joined again",
    arrange: async () => presenting(checkRoute, await supersededTicket()),
  },

  // --- the gate and the handover ---
  ...(
    [
      [handoverRoute, "not_admitted", "queued"],
      [handoverRoute, "not_claimed", "admitted"],
      [handoverRoute, "draining", "draining"],
      [handoverRoute, "ended", "ended"],
      [handoverRoute, "expired", "expired"],
      [handoverRoute, "left", "left"],
    ] as const
  ).map(
    ([route, code, state]): Scenario => ({
      route,
      code,
      given: `an admission token of a ticket that is ${state}`,
      arrange: async () => handingOver(await ticketIn(state)),
    }),
  ),
  {
    route: handoverRoute,
    code: "superseded",
    given: "an admission token of a ticket its holder joined again",
    arrange: async () => handingOver(await supersededTicket()),
  },
  {
    route: handoverRoute,
    code: "not_found",
    given: "an admission token of a ticket that does not exist",
    arrange: async () => handingOver({ ticket_id: crypto.randomUUID(), room: await createRoom() }),
  },
  {
    route: handoverRoute,
    code: "invalid_token",
    given: "an admission token signed by another key",
    arrange: async () => {
      const { admission_token, room } = await forgedAdmissionToken();
      return { params: { room }, body: { admission_token } };
    },
  },
  {
    route: handoverRoute,
    code: "wrong_room",
    given: "a genuine admission token of another room",
    arrange: async () => ({
      params: { room: await createRoom() },
      body: { admission_token: (await admissionToken()).token },
    }),
  },
  {
    route: handoverRoute,
    code: "return_not_allowed",
    given: "a return URL whose origin the room does not list",
    arrange: async () => handingOver(await ticketIn("active"), { return: "https://elsewhere.example/" }),
  },
  {
    route: handoverRoute,
    code: "invalid_request",
    given: "no admission token",
    arrange: async () => ({ params: { room: await createRoom() }, body: {} }),
  },
  {
    route: handoverRoute,
    code: "unsupported_media_type",
    given: "a body that is not JSON",
    arrange: async () => ({ params: { room: await createRoom() }, ...textBody }),
  },
  {
    route: handoverRoute,
    code: "rate_limited",
    given: "the client's call of the hour spent",
    arrange: async () => {
      const call: Call = { ...(await handingOver(await ticketIn("active"))), service: "limited" };
      await (await send(handoverRoute, call)).body?.cancel();
      return call;
    },
  },
  {
    route: endHandoverRoute,
    code: "invalid_request",
    given: "a room id that cannot be one",
    arrange: async () => ({ params: { room: "Not A Room" } }),
  },
  {
    route: gateRoute,
    code: "admission_required",
    given: "no admission cookie, with deny=unauthorized (nginx)",
    arrange: async () => ({ ...forwarded(gatedHost), query: "deny=unauthorized" }),
  },
  {
    route: gateRoute,
    code: "not_found",
    given: "a host WAITROOM_GATES maps no room to",
    arrange: async () => ({ ...forwarded("elsewhere.test"), query: "deny=unauthorized" }),
  },
  {
    route: gateRoute,
    code: "forbidden",
    given: "a caller that is not one of WAITROOM_TRUSTED_PROXIES",
    arrange: async () => ({ ...forwarded(gatedHost), service: "limited" }),
  },
  {
    route: gateRoute,
    code: "invalid_request",
    given: "no X-Forwarded-Uri",
    arrange: async () => ({ headers: { "x-forwarded-host": gatedHost } }),
  },

  // --- the admin API ---
  ...adminRoutes.flatMap((route): Scenario[] => [
    {
      route,
      code: "unauthorized",
      given: "a wrong admin key",
      arrange: async () => ({ ...adminCall(route, await createRoom()), token: `${ADMIN_KEY}x` }),
    },
    {
      route,
      code: "forbidden",
      given: "the admin API disabled (no WAITROOM_ADMIN_KEY)",
      arrange: async () => ({ ...adminCall(route, await createRoom()), token: ADMIN_KEY, service: "keyless" }),
    },
  ]),
  {
    route: revokeRoute,
    code: "invalid_request",
    given: "a key id that cannot be one",
    arrange: async () => ({ params: { kid: "no-such-key" }, token: ADMIN_KEY }),
  },
  {
    route: revokeRoute,
    code: "not_found",
    given: "a well-formed key id no key has",
    arrange: async () => ({ params: { kid: "A".repeat(43) }, token: ADMIN_KEY }),
  },
  ...[getRoomRoute, deleteRoomRoute, historyRoute, pauseRoute, resumeRoute].flatMap((route): Scenario[] => [
    {
      route,
      code: "invalid_request",
      given: "a room id that cannot be one",
      arrange: async () => ({ params: { room: "Not-A-Room" }, token: ADMIN_KEY }),
    },
    {
      route,
      code: "not_found",
      given: "a room that does not exist",
      arrange: async () => ({ params: { room: uniqueRoomId("nowhere") }, token: ADMIN_KEY }),
    },
  ]),
  {
    route: putRoomRoute,
    code: "invalid_request",
    given: "a capacity below 0",
    arrange: async () => ({ params: { room: await createRoom() }, token: ADMIN_KEY, body: { capacity: -1 } }),
  },
  {
    route: putRoomRoute,
    code: "unsupported_media_type",
    given: "a body that is not JSON",
    arrange: async () => ({ params: { room: await createRoom() }, token: ADMIN_KEY, ...textBody }),
  },

  // --- stock, for the server key ---
  ...[addStockRoute, getStockRoute, settleRoute].flatMap((route): Scenario[] => [
    {
      route,
      code: "unauthorized",
      given: "no server key",
      arrange: async () => stockCall(route, await createRoom()),
    },
    {
      route,
      code: "forbidden",
      given: "the server-key routes disabled (no WAITROOM_SERVER_KEY)",
      arrange: async () => ({ ...stockCall(route, await createRoom()), token: SERVER_KEY, service: "serverless" }),
    },
    {
      route,
      code: "invalid_request",
      given: route === settleRoute ? "a ticket id that is not a UUID" : "a room id that cannot be one",
      arrange: async (): Promise<Call> => {
        const params: Record<string, string> = route === settleRoute ? { id: "not-a-uuid" } : { room: "Not-A-Room" };
        return { ...stockCall(route, "Not-A-Room"), params, token: SERVER_KEY };
      },
    },
  ]),
  ...[addStockRoute, settleRoute].map(
    (route): Scenario => ({
      route,
      code: "unsupported_media_type",
      given: "a body that is not JSON",
      arrange: async () => ({ ...stockCall(route, await createRoom()), token: SERVER_KEY, ...textBody }),
    }),
  ),
  ...[addStockRoute, getStockRoute].map(
    (route): Scenario => ({
      route,
      code: "not_found",
      given: "a room that does not exist",
      arrange: async () => ({ ...stockCall(route, uniqueRoomId("nowhere")), token: SERVER_KEY }),
    }),
  ),
  {
    route: settleRoute,
    code: "not_granted",
    given: "a ticket that was never offered a seat",
    arrange: async () => ({
      params: { id: (await ticketIn("queued")).ticket_id },
      token: SERVER_KEY,
      body: { outcome: "consumed" },
    }),
  },
  {
    route: settleRoute,
    code: "already_settled",
    given: "an admission whose unit was consumed already",
    arrange: async () => {
      const { ticket_id } = await settledTicket({});
      return { params: { id: ticket_id }, token: SERVER_KEY, body: { outcome: "returned" } };
    },
  },

  // --- operations ---
  {
    route: readyRoute,
    code: "not_ready",
    given: "the LISTEN connection lost",
    arrange: async () => {
      await listenerDown();
      return { service: "keyless" };
    },
  },
];

/** The request a call makes to its route: the route's own method and path, so no scenario can miss it. */
function send(route: Route, call: Call): Promise<Response> {
  const path = route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = call.params?.[name];
    if (value === undefined) throw new Error(`${pair(route, "?")}: no value for {${name}}`);
    return encodeURIComponent(value);
  });
  const { token, headers, body } = call;
  return services[call.service ?? "server"].request(call.query ? `${path}?${call.query}` : path, {
    method: route.method.toUpperCase(),
    token,
    headers,
    body,
  });
}

describe("documented error codes", () => {
  /** The (route, code) pairs the routes really answered. */
  const answered = new Set<string>();

  it("has one scenario per (route, code)", () => {
    const keys = scenarios.map((scenario) => pair(scenario.route, scenario.code));
    expect(keys.filter((key, i) => keys.indexOf(key) !== i)).toEqual([]);
  });

  for (const scenario of scenarios) {
    it(`${pair(scenario.route, scenario.code)} given ${scenario.given}`, async () => {
      const response = await send(scenario.route, await scenario.arrange());
      const body = (await response.json()) as { error?: { code?: string; message?: string } };
      const code = body.error?.code ?? `(status ${response.status}, no error)`;
      answered.add(pair(scenario.route, code));
      expect({ status: response.status, code, message: typeof body.error?.message }).toEqual({
        status: errorCodes[scenario.code],
        code: scenario.code,
        message: "string",
      });
    });
  }

  // After the scenarios (tests in a file run in order): a code documented without a scenario, or
  // answered without being documented, fails here.
  it("answered every documented code of every route, and nothing else", () => {
    const documented = routes.flatMap((route) => route["x-error-codes"].map((code) => pair(route, code)));
    expect([...answered].sort()).toEqual(documented.sort());
  });
});
