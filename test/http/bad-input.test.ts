import { randomUUID } from "node:crypto";
import { importJWK, type JWK, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { checkRequest, type ErrorCode, errorCodes, joinRequest, roomSettings } from "../../src/http/contracts.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, SERVER_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { seededRandom } from "../helpers/random.js";
import { type ApiRoute as Route, apiRoutes as routes } from "../helpers/routes.js";

/*
 * A seeded corpus of malformed requests against every route. Each one must be
 * answered with a 4xx in the error envelope, and together they must change
 * nothing in the database.
 */

const db = useTestDatabase();
const server = useTestServer(db);

const BODY_LIMIT = 16_384;

/** Random values of a fixed seed, so the corpus is the same every run and a failing case can be replayed. */
function prng(seed: number) {
  const next = seededRandom(seed);
  return {
    next,
    int: (below: number) => Math.floor(next() * below),
    pick<T>(items: readonly T[]): T {
      return items[Math.floor(next() * items.length)] as T;
    },
    string(length: number, alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_'\";{}[]<>%$#@!\\/ é☃😀") {
      const chars = [...alphabet];
      return Array.from({ length }, () => chars[Math.floor(next() * chars.length)]).join("");
    },
  };
}

type Case = {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  /** Sent as is; objects are JSON-encoded with Content-Type: application/json. */
  body?: unknown;
  /** A body sent as a chunked stream (no Content-Length). */
  stream?: string;
  /** The error code(s) this request must get, when it is certain. */
  expect?: ErrorCode | ErrorCode[];
};

type Fixture = {
  room: string;
  closedRoom: string;
  active: { ticket_id: string; token: string };
  queued: { ticket_id: string; token: string };
  left: { ticket_id: string; token: string };
  held: { ticket_id: string; token: string; oldToken: string };
  admissionToken: string;
  signingKey: { kid: string; jwk: JWK };
};

const b64url = (value: string | Buffer) => Buffer.from(value).toString("base64url");
const jsonPart = (value: unknown) => b64url(JSON.stringify(value));
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const admin = bearer(ADMIN_KEY);
const serverKey = bearer(SERVER_KEY);

/** Path with {param} replaced. */
const concrete = (route: Route, value: string) => route.path.replace(/\{[^}]+\}/, value);

const badRoomIds = [
  "UPPER",
  "Room",
  "a".repeat(49),
  "-leading",
  "_leading",
  "a.b",
  "a b",
  "é",
  "日本",
  "😀",
  "\u0000",
  "a\nb",
  "../x",
  "x'; drop table waitroom.tickets;--",
  'x"; select pg_sleep(1);--',
  "room%",
  "*",
];
const rawBadRoomSegments = ["%00", "%zz", "%E0%A4%A", "..%2Fx", "a%2Fb", "%27%3B--"];

const badTicketIds = [
  "not-a-uuid",
  "123",
  "00000000-0000-0000-0000-00000000000g",
  "0123456789abcdef0123456789abcdef",
  `{${"0".repeat(8)}-0000-4000-8000-${"0".repeat(12)}}`,
  `${randomUUID()}x`,
  `${randomUUID()}'; drop table waitroom.tickets;--`,
  "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
  "١٢٣",
  "\u0000",
  "a".repeat(37),
  "' or '1'='1",
];
const rawBadTicketSegments = ["%00", "%zz", "%27%20or%201%3D1"];

const wrongJsonTypes: unknown[] = [null, true, false, "5", "", 1.5, -1, 2 ** 31, [], [1], {}, { a: 1 }];

function buildCorpus(f: Fixture): Case[] {
  const random = prng(20_240_601);
  const cases: Case[] = [];
  const add = (c: Case) => cases.push(c);
  const ticketRoutes = routes.filter((route) => route.auth === "ticket");
  const adminRoutes = routes.filter((route) => route.auth === "admin");
  const roomRoutes = routes.filter((route) => route.path.includes("{room}"));
  const joinPath = `/v1/rooms/${f.room}/tickets`;
  const credentials = (route: Route) => (route.auth === "admin" ? admin : route.auth === "server" ? serverKey : {});

  // --- invalid path parameters, on every route that has one, with valid credentials ---
  for (const route of roomRoutes) {
    for (const id of badRoomIds) {
      add({
        name: `${route.method} ${route.path} room=${JSON.stringify(id)}`,
        method: route.method,
        path: concrete(route, encodeURIComponent(id)),
        headers: credentials(route),
        body: route.body ? {} : undefined,
        expect: "invalid_request",
      });
    }
    for (const segment of rawBadRoomSegments) {
      add({
        name: `${route.method} ${route.path} raw room segment ${segment}`,
        method: route.method,
        path: concrete(route, segment),
        headers: credentials(route),
        body: route.body ? {} : undefined,
        expect: "invalid_request",
      });
    }
  }
  for (const route of ticketRoutes) {
    for (const id of badTicketIds) {
      add({
        name: `${route.method} ${route.path} id=${JSON.stringify(id)}`,
        method: route.method,
        path: concrete(route, encodeURIComponent(id)),
        headers: bearer(f.queued.token),
        expect: "invalid_request",
      });
    }
    for (const segment of rawBadTicketSegments) {
      add({
        name: `${route.method} ${route.path} raw id segment ${segment}`,
        method: route.method,
        path: concrete(route, segment),
        headers: bearer(f.queued.token),
        expect: "invalid_request",
      });
    }
  }

  // --- tokens on every ticket route, against real tickets ---
  const oversized = (length: number) => random.string(length, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789-_");
  for (const route of ticketRoutes) {
    const on = (ticket: { ticket_id: string }) => concrete(route, ticket.ticket_id);
    const tokenCases: Array<[string, string, Record<string, string>, ErrorCode]> = [
      ["no Authorization", on(f.queued), {}, "unauthorized"],
      ["Basic auth", on(f.queued), { authorization: `Basic ${b64url(`x:${f.queued.token}`)}` }, "unauthorized"],
      ["empty Authorization", on(f.queued), { authorization: "" }, "unauthorized"],
      ["Bearer without token", on(f.queued), { authorization: "Bearer " }, "unauthorized"],
      ["two tokens", on(f.queued), { authorization: `Bearer ${f.queued.token} ${f.queued.token}` }, "unauthorized"],
      ["token without scheme", on(f.queued), { authorization: f.queued.token }, "unauthorized"],
      ["wrong token", on(f.queued), bearer(oversized(43)), "not_found"],
      ["token of another ticket", on(f.queued), bearer(f.active.token), "not_found"],
      ["admin key as token", on(f.queued), admin, "not_found"],
      ["server key as token", on(f.active), serverKey, "not_found"],
      ["injection as token", on(f.queued), bearer("x';drop/**/table/**/waitroom.tickets;--"), "not_found"],
      ["300-character token", on(f.queued), bearer(oversized(300)), "not_found"],
      ["4000-character token", on(f.active), bearer(oversized(4000)), "not_found"],
      ["right token, unknown ticket", concrete(route, randomUUID()), bearer(f.queued.token), "not_found"],
      ["superseded token", on(f.held), bearer(f.held.oldToken), "superseded"],
    ];
    for (const [what, path, headers, code] of tokenCases) {
      add({ name: `${route.method} ${route.path}: ${what}`, method: route.method, path, headers, expect: code });
    }
  }
  // The stream also takes ?token=.
  const events = (ticket: { ticket_id: string }, query: string) => `/v1/tickets/${ticket.ticket_id}/events?${query}`;
  for (const [what, query, code] of [
    ["empty ?token=", "token=", "unauthorized"],
    ["wrong ?token=", `token=${oversized(43)}`, "not_found"],
    ["?token= with NUL", "token=%00", "not_found"],
    ["?token= injection", `token=${encodeURIComponent("x'; drop table waitroom.tickets;--")}`, "not_found"],
    ["?token= unicode", `token=${encodeURIComponent("tökén😀")}`, "not_found"],
    ["oversized ?token=", `token=${oversized(5000)}`, "not_found"],
    ["superseded ?token=", `token=${encodeURIComponent(f.held.oldToken)}`, "superseded"],
  ] as const) {
    add({ name: `stream: ${what}`, method: "get", path: events(f.held, query), expect: code });
  }
  // Last-Event-ID garbage is refused even with the right token.
  for (const value of ["abc", "-1", "1.5", "1e3", "0x10", " 1", "9".repeat(16), "1,2", "null", "🙂"]) {
    // Header values are trimmed and must be Latin-1: the others go in the query.
    const viaQuery = !/^[\x21-\x7e]+$/.test(value);
    add({
      name: `stream: Last-Event-ID ${JSON.stringify(value)}`,
      method: "get",
      path: viaQuery
        ? events(f.queued, `lastEventId=${encodeURIComponent(value)}`)
        : `/v1/tickets/${f.queued.ticket_id}/events`,
      headers: viaQuery ? bearer(f.queued.token) : { ...bearer(f.queued.token), "last-event-id": value },
      expect: "invalid_request",
    });
    add({
      name: `stream: ?lastEventId=${JSON.stringify(value)} with ?token=`,
      method: "get",
      path: events(f.active, `token=${encodeURIComponent(f.active.token)}&lastEventId=${encodeURIComponent(value)}`),
      expect: "invalid_request",
    });
  }

  // --- outcomes that are refusals by the queue's rules ---
  add({
    name: "claim a queued ticket",
    method: "post",
    path: `/v1/tickets/${f.queued.ticket_id}/claim`,
    headers: bearer(f.queued.token),
    expect: "not_admitted",
  });
  for (const [method, path, code] of [
    ["post", "claim", "left"],
    ["post", "heartbeat", "left"],
    ["delete", "", "left"],
  ] as const) {
    add({
      name: `${method} ${path || "ticket"} of a left ticket`,
      method,
      path: `/v1/tickets/${f.left.ticket_id}${path ? `/${path}` : ""}`,
      headers: bearer(f.left.token),
      expect: code,
    });
  }

  // --- admin routes: missing or wrong keys ---
  for (const route of adminRoutes) {
    const path = concrete(route, f.room);
    const body = route.body ? { capacity: 1 } : undefined;
    for (const [what, headers] of [
      ["no key", {}],
      ["wrong key", bearer(`${ADMIN_KEY}x`)],
      ["key prefix", bearer(ADMIN_KEY.slice(0, -1))],
      ["server key", serverKey],
      ["ticket token", bearer(f.queued.token)],
      ["Basic auth", { authorization: `Basic ${b64url(`admin:${ADMIN_KEY}`)}` }],
      ["key without scheme", { authorization: ADMIN_KEY }],
      ["key in another header", { "x-api-key": ADMIN_KEY }],
      ["oversized key", bearer(oversized(6000))],
    ] as const) {
      add({
        name: `${route.method} ${route.path}: ${what}`,
        method: route.method,
        path,
        headers,
        body,
        expect: "unauthorized",
      });
    }
    add({
      name: `${route.method} ${route.path}: key in the query`,
      method: route.method,
      path: `${path}?token=${ADMIN_KEY}&key=${ADMIN_KEY}`,
      body,
      expect: "unauthorized",
    });
  }

  // --- join: keys, holder and priority ---
  for (const [what, headers, body, code] of [
    ["wrong server key", bearer(`${SERVER_KEY}x`), {}, "unauthorized"],
    ["admin key as server key", admin, { holder: "h" }, "unauthorized"],
    ["Basic auth", { authorization: `Basic ${b64url(`server:${SERVER_KEY}`)}` }, {}, "unauthorized"],
    ["empty bearer", { authorization: "Bearer" }, {}, "unauthorized"],
    ["holder without server key", {}, { holder: "mallory" }, "forbidden"],
    ["priority without server key", {}, { priority: 1000 }, "forbidden"],
    ["priority 0 without server key", {}, { priority: 0 }, "forbidden"],
    ["holder and priority without server key", {}, { holder: "m", priority: 5 }, "forbidden"],
    ["tier without server key", {}, { tier: "default" }, "forbidden"],
    ["a tier in a room without tiers", serverKey, { holder: "h", tier: "default" }, "invalid_request"],
    ["ticket token as server key", bearer(f.queued.token), { priority: 1 }, "unauthorized"],
  ] as const) {
    add({ name: `join: ${what}`, method: "post", path: joinPath, headers, body, expect: code });
  }
  add({
    name: "join an unknown room",
    method: "post",
    path: `/v1/rooms/${uniqueRoomId("nowhere")}/tickets`,
    headers: serverKey,
    body: { holder: "h", priority: 3 },
    expect: "not_found",
  });

  // --- bodies: wrong types, ranges, unknown fields ---
  const joinFields: Record<string, unknown[]> = {
    holder: [
      null,
      5,
      true,
      [],
      {},
      ["a"],
      "",
      "x".repeat(257),
      "\u0000",
      "nul\u0000inside",
      "\ud800",
      "a\udfffb",
      "😀\ud83d",
    ],
    priority: [1001, -1001, 1.5, "5", null, true, 2 ** 31, -(2 ** 31) - 1, [], {}, Number.MAX_SAFE_INTEGER + 2],
    tier: [null, 5, true, [], {}, "", "x".repeat(65), "\u0000", "\ud800"],
  };
  for (const [field, values] of Object.entries(joinFields)) {
    for (const value of values) {
      add({
        name: `join: ${field}=${JSON.stringify(value)}`,
        method: "post",
        path: joinPath,
        headers: serverKey,
        body: { [field]: value },
        expect: "invalid_request",
      });
    }
  }
  const settingsFields: Record<string, unknown[]> = {
    capacity: [-1, 2 ** 31, 1.5, "5", null, true, [], {}],
    admit_per_minute: [0, -1, 1.5, "5", 2 ** 31, true, []],
    session_seconds: [0, -1, 1.5, "5", null, 2 ** 31],
    grace_seconds: [-1, 1.5, "5", null, 2 ** 31],
    claim_seconds: [0, -5, 1.5, "60", null],
    idle_seconds: [0, -5, 0.5, "120", null],
    renew_on_heartbeat: ["true", 1, 0, null, "yes"],
    mode: ["OPEN", "deleted", "", null, 1, ["open"], "open "],
    opens_at: [
      "tomorrow",
      "2030-01-01",
      "2030-01-01T00:00:00",
      "2030-02-31T00:00:00Z",
      "2030-01-01T25:00:00Z",
      "2030-13-01T00:00:00Z",
      "0000-01-01T00:00:00Z",
      "99999-01-01T00:00:00Z",
      "2030-01-01T00:00:00+25:00",
      1_900_000_000,
      true,
      "",
    ],
    tick_ms: [49, 60_001, 1.5, "1000", null, 0],
    retention_seconds: [3599, 0, -1, 3600.5, null],
    quota_window_seconds: [0, -1, 1.5, "60", 2 ** 31],
    quota_tiers: [
      5,
      "default",
      [],
      { default: 3 },
      { default: { limit: -1 } },
      { default: { limit: 1.5 } },
      { default: { limit: "3" } },
      { default: { limit: 3, priority: 1001 } },
      { default: { limit: 3, extra: 1 } },
      { default: {} },
      { "": { limit: 1 } },
    ],
    pool_per_day: [-1, 1.5, "5", 2 ** 31, true],
    time_zone: ["", null, 5, "Mars/Olympus", "x".repeat(65), "UTC\u0000"],
    target_url: [
      "shop.example",
      "ftp://shop.example/",
      "javascript:alert(1)",
      "https://shop.example/#fragment",
      `https://shop.example/${"a".repeat(2048)}`,
      "",
      5,
      true,
      [],
    ],
    return_origins: [
      "https://shop.example",
      ["https://shop.example/"],
      ["HTTPS://SHOP.EXAMPLE"],
      ["https://shop.example/path"],
      ["https://user@shop.example"],
      ["javascript:alert(1)"],
      ["https://shop.example https://evil.example"],
      [5],
      [null],
      Array.from({ length: 33 }, (_, i) => `https://s${i}.example`),
      null,
      {},
    ],
    handover: ["header", "COOKIE", "", null, 1, ["cookie"]],
    auto_continue: ["yes", 1, 0, null],
  };
  const settingsTargets = [
    { what: "existing room", path: `/v1/rooms/${f.room}`, base: {} },
    { what: "closed room", path: `/v1/rooms/${f.closedRoom}`, base: {} },
    { what: "new room", path: `/v1/rooms/${uniqueRoomId("never")}`, base: { capacity: 5 } },
  ];
  for (const [field, values] of Object.entries(settingsFields)) {
    for (const value of values) {
      for (const target of settingsTargets) {
        if (target.what === "closed room" && random.next() < 0.5) continue;
        const body = { ...target.base, [field]: value };
        add({
          name: `put ${target.what}: ${field}=${JSON.stringify(value)}`,
          method: "put",
          path: target.path,
          headers: admin,
          body,
          expect: "invalid_request",
        });
      }
    }
  }
  for (const target of settingsTargets) {
    for (const extra of [
      { id: "other" },
      { queue_seq: "waitroom.tickets" },
      { created_at: "2030-01-01T00:00:00Z" },
      { updated_at: "2030-01-01T00:00:00Z" },
      { capacity_: 5 },
      { Capacity: 5 },
      { stats: {} },
      { "": 1 },
      JSON.parse('{"__proto__": {"capacity": 5}}'),
      { constructor: { prototype: { polluted: true } } },
    ]) {
      add({
        name: `put ${target.what}: unknown setting ${JSON.stringify(extra)}`,
        method: "put",
        path: target.path,
        headers: admin,
        body: { ...target.base, ...extra },
        expect: "invalid_request",
      });
    }
  }
  for (const body of [{}, { mode: "open" }, { admit_per_minute: null }, { capacity: null }]) {
    add({
      name: `put new room without capacity: ${JSON.stringify(body)}`,
      method: "put",
      path: `/v1/rooms/${uniqueRoomId("never")}`,
      headers: admin,
      body,
      expect: "invalid_request",
    });
  }
  // Two bad fields, or a good one and a bad one, drawn at random.
  const settingNames = Object.keys(settingsFields);
  for (let i = 0; i < 60; i++) {
    const bad = random.pick(settingNames);
    const other = random.pick(settingNames);
    const body: Record<string, unknown> = {
      capacity: random.int(100),
      [other]: random.pick(settingsFields[other] as unknown[]),
      [bad]: random.pick(settingsFields[bad] as unknown[]),
    };
    add({
      name: `put random mix #${i}: ${JSON.stringify(body)}`,
      method: "put",
      path: random.next() < 0.5 ? `/v1/rooms/${f.room}` : `/v1/rooms/${uniqueRoomId("never")}`,
      headers: admin,
      body,
      expect: "invalid_request",
    });
  }

  // Quotas need their tiers and a "default" tier (checked in SQL: nothing changes either).
  for (const body of [
    { quota_window_seconds: 60 },
    { quota_tiers: { default: { limit: 1 } } },
    { quota_window_seconds: 60, quota_tiers: { pro: { limit: 1 } } },
  ]) {
    add({
      name: `put quota settings: ${JSON.stringify(body)}`,
      method: "put",
      path: `/v1/rooms/${f.room}`,
      headers: admin,
      body,
      expect: "invalid_request",
    });
  }

  // --- stock and settlement, for the server key ---
  const stockPath = `/v1/rooms/${f.room}/stock`;
  const settlePath = (id: string) => `/v1/tickets/${id}/settle`;
  for (const [what, headers, code] of [
    ["no key", {}, "unauthorized"],
    ["admin key", admin, "unauthorized"],
    ["ticket token", bearer(f.active.token), "unauthorized"],
    ["wrong server key", bearer(`${SERVER_KEY}x`), "unauthorized"],
  ] as const) {
    add({ name: `add stock: ${what}`, method: "post", path: stockPath, headers, body: { units: 5 }, expect: code });
    add({ name: `read stock: ${what}`, method: "get", path: stockPath, headers, expect: code });
    add({
      name: `settle: ${what}`,
      method: "post",
      path: settlePath(f.active.ticket_id),
      headers,
      body: { outcome: "returned" },
      expect: code,
    });
  }
  for (const units of [0, -1, 1.5, "5", null, true, 2 ** 31, 1_000_000_001, [], {}]) {
    add({
      name: `add stock: units=${JSON.stringify(units)}`,
      method: "post",
      path: stockPath,
      headers: serverKey,
      body: { units },
      expect: "invalid_request",
    });
  }
  for (const body of [{}, { units: 5, extra: 1 }, [5], "5"]) {
    add({
      name: `add stock: body ${JSON.stringify(body)}`,
      method: "post",
      path: stockPath,
      headers: serverKey,
      body,
      expect: "invalid_request",
    });
  }
  add({
    name: "add stock to an unknown room",
    method: "post",
    path: `/v1/rooms/${uniqueRoomId("nowhere")}/stock`,
    headers: serverKey,
    body: { units: 5 },
    expect: "not_found",
  });
  for (const id of badTicketIds) {
    add({
      name: `settle: id=${JSON.stringify(id)}`,
      method: "post",
      path: settlePath(encodeURIComponent(id)),
      headers: serverKey,
      body: { outcome: "consumed" },
      expect: "invalid_request",
    });
  }
  for (const body of [
    {},
    { outcome: "sold" },
    { outcome: "CONSUMED" },
    { outcome: 1 },
    { outcome: null },
    { outcome: "consumed", units: 2 },
  ]) {
    add({
      name: `settle: body ${JSON.stringify(body)}`,
      method: "post",
      path: settlePath(f.active.ticket_id),
      headers: serverKey,
      body,
      expect: "invalid_request",
    });
  }
  // The fixture's tickets took no stock and no share: nothing to settle.
  for (const ticket of [f.active, f.queued, { ticket_id: randomUUID() }]) {
    add({
      name: `settle a ticket that took nothing ${ticket.ticket_id}`,
      method: "post",
      path: settlePath(ticket.ticket_id),
      headers: serverKey,
      body: { outcome: "returned" },
      expect: "not_granted",
    });
  }

  // --- POST /v1/check ---
  const checkBodies: unknown[] = [
    {},
    { admission_token: f.admissionToken },
    { ticket_id: f.active.ticket_id, token: f.active.token },
    { room: "", admission_token: f.admissionToken },
    { room: 5, admission_token: f.admissionToken },
    { room: "not a room id!", admission_token: f.admissionToken },
    { room: f.room, admission_token: "" },
    { room: f.room, admission_token: 5 },
    { room: f.room, admission_token: null },
    { room: f.room, admission_token: ["a.b.c"] },
    { room: f.room, admission_token: "x".repeat(4097) },
    { room: f.room, ticket_id: "x", token: "y" },
    { room: f.room, ticket_id: f.queued.ticket_id },
    { room: f.room, token: f.queued.token },
    { room: f.room, ticket_id: f.queued.ticket_id, token: "" },
    { room: f.room, ticket_id: f.queued.ticket_id, token: "x".repeat(257) },
    { room: f.room, ticket_id: f.queued.ticket_id, token: 5 },
    { room: f.room, ticket_id: 5, token: f.queued.token },
    { room: f.room, ticket_id: f.queued.ticket_id.toUpperCase().replace(/-/g, ""), token: f.queued.token },
    { room: f.room, ticket_id: f.queued.ticket_id, token: f.queued.token, admission_token: f.admissionToken },
    { room: f.room, admission_token: f.admissionToken, extra: 1 },
    { room: f.room, ticket_id: f.active.ticket_id, token: f.active.token, extra: true },
  ];
  for (const body of checkBodies) {
    add({
      name: `check: ${JSON.stringify(body).slice(0, 120)}`,
      method: "post",
      path: "/v1/check",
      body,
      expect: "invalid_request",
    });
  }
  for (const [what, body, code] of [
    ["wrong token", { ticket_id: f.active.ticket_id, token: oversized(43) }, "not_found"],
    ["unknown ticket", { ticket_id: randomUUID(), token: f.active.token }, "not_found"],
    ["token with NUL", { ticket_id: f.active.ticket_id, token: "\u0000" }, "invalid_request"],
    ["token with NUL inside", { ticket_id: f.active.ticket_id, token: `${f.active.token}\u0000` }, "invalid_request"],
    ["token with a lone surrogate", { ticket_id: f.active.ticket_id, token: "\udc00" }, "invalid_request"],
    ["queued ticket", { ticket_id: f.queued.ticket_id, token: f.queued.token }, "not_admitted"],
    ["left ticket", { ticket_id: f.left.ticket_id, token: f.left.token }, "left"],
    ["superseded token", { ticket_id: f.held.ticket_id, token: f.held.oldToken }, "superseded"],
    [
      "ticket of another room",
      { ticket_id: f.active.ticket_id, token: f.active.token, room: f.closedRoom },
      "wrong_room",
    ],
    ["admission token of another room", { admission_token: f.admissionToken, room: f.closedRoom }, "wrong_room"],
  ] as const) {
    add({ name: `check: ${what}`, method: "post", path: "/v1/check", body: { room: f.room, ...body }, expect: code });
  }
  // JWT garbage.
  const [header = "", payload = "", signature = ""] = f.admissionToken.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as Record<string, unknown>;
  const flip = (text: string, at: number) => `${text.slice(0, at)}${text[at] === "A" ? "B" : "A"}${text.slice(at + 1)}`;
  const jwtGarbage: Array<[string, string]> = [
    ["alg none", `${jsonPart({ alg: "none", typ: "JWT", kid: f.signingKey.kid })}.${payload}.`],
    ["alg none, no kid", `${jsonPart({ alg: "none" })}.${payload}.`],
    ["alg HS256", `${jsonPart({ alg: "HS256", typ: "JWT", kid: f.signingKey.kid })}.${payload}.${signature}`],
    ["alg RS256", `${jsonPart({ alg: "RS256", typ: "JWT", kid: f.signingKey.kid })}.${payload}.${signature}`],
    ["tampered payload", `${header}.${jsonPart({ ...claims, tid: f.queued.ticket_id })}.${signature}`],
    ["extended expiry", `${header}.${jsonPart({ ...claims, exp: Number(claims.exp) + 3600 })}.${signature}`],
    ["tampered signature", `${header}.${payload}.${flip(signature, 10)}`],
    ["signature of the wrong length", `${header}.${payload}.${signature.slice(0, 40)}`],
    ["no signature", `${header}.${payload}.`],
    ["two parts", `${header}.${payload}`],
    ["four parts", `${f.admissionToken}.${signature}`],
    ["unknown kid", `${jsonPart({ alg: "EdDSA", typ: "JWT", kid: "A".repeat(43) })}.${payload}.${signature}`],
    ["odd kid", `${jsonPart({ alg: "EdDSA", typ: "JWT", kid: "../../etc/passwd\u0000" })}.${payload}.${signature}`],
    ["numeric kid", `${jsonPart({ alg: "EdDSA", typ: "JWT", kid: 7 })}.${payload}.${signature}`],
    ["header not JSON", `${b64url("{alg")}.${payload}.${signature}`],
    ["header a JSON array", `${b64url("[]")}.${payload}.${signature}`],
    ["payload not JSON", `${header}.${b64url("not json")}.${signature}`],
    ["whitespace", ` ${f.admissionToken}`],
    ["Bearer prefix", `Bearer ${f.admissionToken}`],
    ["a.b.c", "a.b.c"],
    ["dots", ".."],
    ["plain word", "token"],
  ];
  for (let i = 0; i < 12; i++) {
    const part = () => b64url(Buffer.from(Array.from({ length: 1 + random.int(80) }, () => random.int(256))));
    jwtGarbage.push([`random base64 #${i}`, [part(), part(), part()].slice(0, 1 + random.int(3)).join(".")]);
  }
  for (const [what, token] of jwtGarbage) {
    add({
      name: `check: JWT ${what}`,
      method: "post",
      path: "/v1/check",
      body: { room: f.room, admission_token: token },
      expect: "invalid_token",
    });
  }

  // --- malformed JSON and wrong content types on every route with a body ---
  const bodyTargets = [
    { path: joinPath, headers: {} },
    { path: "/v1/check", headers: {} },
    { path: `/v1/rooms/${f.room}`, headers: admin, method: "put" },
    { path: `/v1/rooms/${uniqueRoomId("never")}`, headers: admin, method: "put" },
  ];
  const malformed = [
    "{",
    "}",
    '{"a":}',
    "{'capacity': 1}",
    '{"capacity": 01}',
    '{"capacity": 1,}',
    "[1,]",
    "NaN",
    "undefined",
    '{"capacity": Infinity}',
    '{"a": "\\x41"}',
    '{"a": "unterminated}',
    "nul\u0000",
    "<xml/>",
  ];
  const deep = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
  const topLevel = [
    "null",
    "[]",
    "[{}]",
    '"text"',
    "5",
    "true",
    "false",
    "-0",
    '"{}"',
    deep(8000),
    `{"capacity": ${deep(4000)}}`,
    `{"holder": ${deep(4000)}}`,
    `{"admission_token": {"a": ${deep(4000)}}}`,
  ];
  const validSamples = ['{"holder":"someone","priority":5}', '{"capacity":5,"mode":"open"}'];
  for (const target of bodyTargets) {
    const method = target.method ?? "post";
    for (const text of malformed) {
      add({
        name: `${method} ${target.path}: malformed ${JSON.stringify(text)}`,
        method,
        path: target.path,
        headers: { ...target.headers, "content-type": "application/json" },
        body: text,
        expect: "invalid_request",
      });
    }
    for (const text of topLevel) {
      add({
        name: `${method} ${target.path}: top-level ${text.slice(0, 40)}`,
        method,
        path: target.path,
        headers: { ...target.headers, "content-type": "application/json" },
        body: text,
        expect: "invalid_request",
      });
    }
    for (const sample of validSamples) {
      for (let i = 0; i < 3; i++) {
        const cut = 1 + random.int(sample.length - 2);
        add({
          name: `${method} ${target.path}: truncated ${JSON.stringify(sample.slice(0, cut))}`,
          method,
          path: target.path,
          headers: { ...target.headers, "content-type": "application/json" },
          body: sample.slice(0, cut),
          expect: "invalid_request",
        });
      }
    }
    for (const contentType of [
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/xml",
      "application/jsonx",
      "text/json",
      "",
    ]) {
      add({
        name: `${method} ${target.path}: content-type ${JSON.stringify(contentType)}`,
        method,
        path: target.path,
        headers: { ...target.headers, "content-type": contentType },
        body: contentType.startsWith("application/x-www") ? "capacity=5" : '{"capacity": 5, "holder": "x"}',
        expect: "unsupported_media_type",
      });
    }
    // Huge bodies, with and without Content-Length.
    const huge = JSON.stringify({ holder: "x".repeat(BODY_LIMIT) });
    add({
      name: `${method} ${target.path}: body over the limit`,
      method,
      path: target.path,
      headers: { ...target.headers, "content-type": "application/json" },
      body: huge,
      expect: "payload_too_large",
    });
    add({
      name: `${method} ${target.path}: chunked body over the limit`,
      method,
      path: target.path,
      headers: { ...target.headers, "content-type": "application/json" },
      stream: huge,
      expect: "payload_too_large",
    });
    add({
      name: `${method} ${target.path}: 1 MB of garbage`,
      method,
      path: target.path,
      headers: { ...target.headers, "content-type": "text/plain" },
      body: random.string(1000).repeat(1000),
      expect: "payload_too_large",
    });
  }
  // Junk of every JSON type in every field of every body (what the contract itself would accept is skipped).
  for (const [path, headers, fields, method, wrap, schema] of [
    [joinPath, serverKey, ["holder", "priority", "extra"], "post", (b: object) => b, joinRequest],
    [
      "/v1/check",
      {},
      ["room", "admission_token", "ticket_id", "token", "extra"],
      "post",
      (b: object) => ({
        room: f.room,
        ...("admission_token" in b ? b : { ticket_id: f.queued.ticket_id, token: f.queued.token, ...b }),
      }),
      checkRequest,
    ],
    [`/v1/rooms/${f.room}`, admin, [...settingNames, "extra"], "put", (b: object) => b, roomSettings],
  ] as const) {
    for (const field of fields) {
      for (const value of wrongJsonTypes) {
        const body = wrap({ [field]: value });
        if (schema.safeParse(body).success) continue;
        add({
          name: `${method} ${path}: ${field} as ${JSON.stringify(value)}`,
          method,
          path,
          headers,
          body,
          expect: "invalid_request",
        });
      }
    }
  }

  // --- unknown routes and wrong methods ---
  // GET / is the landing page; nothing else answers at /.
  add({ name: "post unknown /", method: "post", path: "/", headers: admin, expect: "not_found" });
  const unknownPaths = [
    "/v1",
    "/v1/",
    "/v2/rooms",
    "/V1/rooms",
    "/v1/room",
    "/v1/rooms/",
    `/v1/rooms/${f.room}/tickets/`,
    `/v1/rooms/${f.room}/tickets/extra`,
    `/v1/rooms/${f.room}/stats`,
    `/v1/tickets/${f.queued.ticket_id}/unknown`,
    `/v1/tickets/${f.queued.ticket_id}/events/`,
    "/v1/tickets",
    "/.well-known/openid-configuration",
    "/openapi.yaml",
    "/metrics/extra",
    "/docs/",
    "/v1/keyring",
    "/admin/",
    "/.env",
    "/v1/rooms//tickets",
  ];
  for (let i = 0; i < 15; i++) {
    const path = `/${random.string(1 + random.int(20), "abcdefghijklmnopqrstuvwxyz0123456789-_.~")}`;
    // "/." and "/.." are "/" once the URL is resolved: the landing page.
    if (!/^\/\.{1,2}$/.test(path)) unknownPaths.push(path);
  }
  for (const path of unknownPaths) {
    for (const method of ["get", "post"]) {
      add({ name: `${method} unknown ${path}`, method, path, headers: admin, expect: "not_found" });
    }
  }
  const methods = ["get", "post", "put", "delete", "patch", "options"];
  const byPath = new Map<string, Set<string>>();
  for (const route of routes) byPath.set(route.path, (byPath.get(route.path) ?? new Set()).add(route.method));
  for (const [path, allowed] of byPath) {
    const sample = path.replace("{room}", f.room).replace("{id}", f.queued.ticket_id);
    for (const method of methods) {
      if (allowed.has(method)) continue;
      add({ name: `${method} ${path}`, method, path: sample, headers: admin, expect: "method_not_allowed" });
    }
  }
  // --- the handover: bodies, tokens, and return URLs off the room's list (f.room lists none) ---
  const handoverPath = `/v1/rooms/${f.room}/handover`;
  for (const body of [
    {},
    { admission_token: "" },
    { admission_token: 5 },
    { admission_token: null },
    { admission_token: "x".repeat(4097) },
    { admission_token: f.admissionToken, return: "" },
    { admission_token: f.admissionToken, return: 5 },
    { admission_token: f.admissionToken, return: `https://x.example/${"a".repeat(4096)}` },
    { admission_token: f.admissionToken, extra: 1 },
    { return: "https://shop.example/" },
  ]) {
    add({
      name: `handover: ${JSON.stringify(body).slice(0, 120)}`,
      method: "post",
      path: handoverPath,
      body,
      expect: "invalid_request",
    });
  }
  for (const returnUrl of [
    "https://evil.example/",
    "//evil.example/",
    "/relative",
    "javascript:alert(1)",
    "https://shop.example@evil.example/",
    "http://evil.example:80/",
    "https://evil.example/#waitroom_token=x",
    "data:text/html,<script>alert(1)</script>",
  ]) {
    add({
      name: `handover: return ${returnUrl}`,
      method: "post",
      path: handoverPath,
      body: { admission_token: f.admissionToken, return: returnUrl },
      expect: "return_not_allowed",
    });
  }
  for (const token of ["abc", "a.b.c", `${f.admissionToken}x`]) {
    add({
      name: `handover: token ${token.slice(0, 20)}`,
      method: "post",
      path: handoverPath,
      body: { admission_token: token },
      expect: "invalid_token",
    });
  }
  add({
    name: "handover: another room's token",
    method: "post",
    path: `/v1/rooms/${f.closedRoom}/handover`,
    body: { admission_token: f.admissionToken },
    expect: "wrong_room",
  });

  // --- the gate: what the proxy forwards (this service's WAITROOM_GATES maps no host) ---
  const gateHeaders = { "x-forwarded-host": "shop.example", "x-forwarded-uri": "/", "x-forwarded-proto": "https" };
  for (const [what, headers, query] of [
    ["no forwarded headers", {}, ""],
    ["no X-Forwarded-Uri", { "x-forwarded-host": "shop.example" }, ""],
    ["no X-Forwarded-Host", { "x-forwarded-uri": "/" }, ""],
    ["host with a path", { ...gateHeaders, "x-forwarded-host": "shop.example/x" }, ""],
    ["host with a space", { ...gateHeaders, "x-forwarded-host": "shop example" }, ""],
    ["host with userinfo", { ...gateHeaders, "x-forwarded-host": "user@shop.example" }, ""],
    ["relative uri", { ...gateHeaders, "x-forwarded-uri": "shop" }, ""],
    ["absolute uri", { ...gateHeaders, "x-forwarded-uri": "https://evil.example/" }, ""],
    ["uri with a fragment", { ...gateHeaders, "x-forwarded-uri": "/#x" }, ""],
    ["oversized uri", { ...gateHeaders, "x-forwarded-uri": `/${"a".repeat(8192)}` }, ""],
    ["proto ftp", { ...gateHeaders, "x-forwarded-proto": "ftp" }, ""],
    ["deny=maybe", gateHeaders, "?deny=maybe"],
  ] as const) {
    add({ name: `gate: ${what}`, method: "get", path: `/v1/gate${query}`, headers, expect: "invalid_request" });
  }
  add({
    name: "gate: an unmapped host",
    method: "get",
    path: "/v1/gate?deny=unauthorized",
    headers: gateHeaders,
    expect: "not_found",
  });

  return cases;
}

/** The methods a path answers, as a 405's Allow header must list them (HEAD wherever GET is). */
function allowed(path: string): string {
  const bare = path.split("?")[0] as string;
  const methods = routes
    .filter((route) => new RegExp(`^${route.path.replace(/\{[^}]+\}/g, "[^/]+")}$`).test(bare))
    .flatMap((route) => (route.method === "get" ? ["GET", "HEAD"] : [route.method.toUpperCase()]));
  return methods.join(", ");
}

async function send(c: Case): Promise<Response> {
  const headers: Record<string, string> = { ...c.headers };
  let body: BodyInit | undefined;
  const init: RequestInit & { duplex?: "half" } = { method: c.method.toUpperCase(), headers };
  if (c.stream !== undefined) {
    const bytes = new TextEncoder().encode(c.stream);
    body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < bytes.length; at += 4096) controller.enqueue(bytes.slice(at, at + 4096));
        controller.close();
      },
    });
    init.duplex = "half";
  } else if (typeof c.body === "string") {
    body = c.body;
    headers["content-type"] ??= "application/json";
  } else if (c.body !== undefined) {
    body = JSON.stringify(c.body);
    headers["content-type"] ??= "application/json";
  }
  init.body = body;
  return fetch(`${server.url}${c.path}`, init);
}

/** A digest of every row of the tables (and queue sequences) a request could change. */
async function snapshot() {
  const [row] = await db.sql`
    select
      (select md5(coalesce(string_agg(t::text, ',' order by t.id), '')) from waitroom.rooms t) as rooms,
      (select md5(coalesce(string_agg(t::text, ',' order by t.id), '')) from waitroom.tickets t) as tickets,
      (select md5(coalesce(string_agg(t::text, ',' order by t.id), '')) from waitroom.events t) as events,
      (select md5(coalesce(string_agg(t::text, ',' order by t.room_id, t.shard), '')) from waitroom.queue_tally t)
        as queue_tally,
      (select md5(coalesce(string_agg(t::text, ',' order by t.kid), '')) from waitroom.signing_keys t) as signing_keys,
      (select md5(coalesce(string_agg(t::text, ',' order by t.ticket_id), '')) from waitroom.grants t) as grants,
      (select coalesce(string_agg(r.id || '=' || coalesce(pg_sequence_last_value(r.queue_seq), 0), ',' order by r.id), '')
         from waitroom.rooms r) as sequences,
      (select count(*)::int from waitroom.tickets) as ticket_count`;
  return row;
}

async function errorCounts(): Promise<Map<string, number>> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^waitroom_http_errors_total\{code="([a-z_]+)"\} (\d+)$/gm)) {
    counts.set(match[1] as string, Number(match[2]));
  }
  return counts;
}

let fixture: Fixture;

beforeAll(async () => {
  const room = uniqueRoomId("corpus");
  const closedRoom = uniqueRoomId("closed");
  for (const [id, settings] of [
    [room, { capacity: 1, claim_seconds: 3600, session_seconds: 3600, idle_seconds: 3600 }],
    [closedRoom, { capacity: 3, mode: "closed" }],
  ] as const) {
    const response = await server.request(`/v1/rooms/${id}`, { method: "PUT", token: ADMIN_KEY, body: settings });
    expect(response.status).toBe(201);
  }
  const join = async (body?: unknown, token?: string) => {
    const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST", body, token });
    expect(response.status).toBe(202);
    return (await response.json()) as { ticket_id: string; token: string };
  };
  const active = await join();
  await db.sql`select * from waitroom.admit(${room})`;
  const claim = await server.request(`/v1/tickets/${active.ticket_id}/claim`, { method: "POST", token: active.token });
  expect(claim.status).toBe(200);
  const { admission_token } = (await claim.json()) as { admission_token: string };
  const queued = await join();
  const left = await join();
  expect((await server.request(`/v1/tickets/${left.ticket_id}`, { method: "DELETE", token: left.token })).status).toBe(
    204,
  );
  const first = await join({ holder: "alice", priority: -5 }, SERVER_KEY);
  const held = await join({ holder: "alice" }, SERVER_KEY);
  expect(held.ticket_id).toBe(first.ticket_id);
  const [key] = await db.sql<{ kid: string; private_jwk: JWK }[]>`
    select kid, private_jwk from waitroom.signing_keys where retired_at is null`;
  if (!key) throw new Error("no signing key after a claim");
  fixture = {
    room,
    closedRoom,
    active,
    queued,
    left,
    held: { ...held, oldToken: first.token },
    admissionToken: admission_token,
    signingKey: { kid: key.kid, jwk: key.private_jwk },
  };
});

/** Admission tokens signed with the real key but with claims the gate must refuse. */
async function forgedTokenCases(f: Fixture): Promise<Case[]> {
  const key = await importJWK(f.signingKey.jwk, "EdDSA");
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: f.signingKey.kid, typ: "JWT", ...header }).sign(key);
  const base = { iss: "waitroom", sub: f.active.ticket_id, aud: f.room, room: f.room, tid: f.active.ticket_id, ins: 1 };
  const cases: Array<[string, Promise<string>, ErrorCode]> = [
    ["expired", sign({ ...base, exp: now - 60 }), "expired"],
    ["unknown ticket", sign({ ...base, tid: randomUUID(), exp: now + 600 }), "not_found"],
    ["wrong instance", sign({ ...base, ins: 7, exp: now + 600 }), "superseded"],
    ["instance beyond int4", sign({ ...base, ins: 2 ** 31, exp: now + 600 }), "invalid_token"],
    ["negative instance beyond int4", sign({ ...base, ins: -(2 ** 31) - 1, exp: now + 600 }), "invalid_token"],
    ["instance 0", sign({ ...base, ins: 0, exp: now + 600 }), "invalid_token"],
    ["instance 2^53", sign({ ...base, ins: 2 ** 53, exp: now + 600 }), "invalid_token"],
    ["fractional instance", sign({ ...base, ins: 1.5, exp: now + 600 }), "invalid_token"],
    ["instance as string", sign({ ...base, ins: "1", exp: now + 600 }), "invalid_token"],
    ["queued ticket", sign({ ...base, tid: f.queued.ticket_id, exp: now + 600 }), "not_admitted"],
    ["left ticket", sign({ ...base, tid: f.left.ticket_id, exp: now + 600 }), "left"],
    ["tid not a uuid", sign({ ...base, tid: "not-a-uuid", exp: now + 600 }), "invalid_token"],
    [
      "tid garbage uuid",
      sign({ ...base, tid: "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", exp: now + 600 }),
      "invalid_token",
    ],
    ["no exp", sign({ ...base }), "invalid_token"],
    ["no room", sign({ ...base, room: undefined, exp: now + 600 }), "invalid_token"],
    ["no aud", sign({ ...base, aud: undefined, exp: now + 600 }), "invalid_token"],
    ["aud another room than room", sign({ ...base, aud: f.closedRoom, exp: now + 600 }), "invalid_token"],
    [
      "room and aud another room",
      sign({ ...base, aud: f.closedRoom, room: f.closedRoom, exp: now + 600 }),
      "wrong_room",
    ],
    ["wrong issuer", sign({ ...base, iss: "someone-else", exp: now + 600 }), "invalid_token"],
    ["no typ", sign({ ...base, exp: now + 600 }, { typ: undefined }), "invalid_token"],
    ["exp as string", sign({ ...base, exp: String(now + 600) }), "invalid_token"],
  ];
  return Promise.all(
    cases.map(async ([what, token, code]) => ({
      name: `check: signed token, ${what}`,
      method: "post",
      path: "/v1/check",
      body: { room: f.room, admission_token: await token },
      expect: code,
    })),
  );
}

describe("a corpus of malformed requests", () => {
  it("answers every one with a 4xx error envelope and changes nothing", async () => {
    const corpus = [...buildCorpus(fixture), ...(await forgedTokenCases(fixture))];
    expect(corpus.length).toBeGreaterThan(500);
    // Every route that takes input is exercised with its own method; every path with a wrong one.
    const hits = (route: Route, method?: string) => {
      const pattern = new RegExp(`^${route.path.replace(/\{[^}]+\}/g, "[^/]+")}(\\?.*)?$`);
      return corpus.some((c) => (method === undefined || c.method === method) && pattern.test(c.path));
    };
    const withInput = routes.filter((route) => route.params || route.body || route.auth !== "none");
    expect(withInput.filter((route) => !hits(route, route.method))).toEqual([]);
    expect(routes.filter((route) => !hits(route))).toEqual([]);

    const before = await snapshot();
    const countsBefore = await errorCounts();
    const failures: string[] = [];
    const seen = new Map<string, number>();
    for (const c of corpus) {
      let response: Response;
      let text: string;
      try {
        response = await send(c);
        text = await response.text();
      } catch (error) {
        failures.push(`${c.name} → ${error} (${(error as Error).cause})`);
        continue;
      }
      const problem = (() => {
        if (response.status < 400 || response.status > 499) return `status ${response.status}`;
        if (!/^application\/json\b/.test(response.headers.get("content-type") ?? "")) {
          return `content-type ${response.headers.get("content-type")}`;
        }
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          return "body is not JSON";
        }
        const error = (body as { error?: Record<string, unknown> }).error;
        if (
          !error ||
          Object.keys(body as object).length !== 1 ||
          Object.keys(error).sort().join() !== "code,message" ||
          typeof error.code !== "string" ||
          typeof error.message !== "string" ||
          error.message === ""
        ) {
          return "not the error envelope";
        }
        if (!(error.code in errorCodes)) return `unknown code ${error.code}`;
        if (errorCodes[error.code as ErrorCode] !== response.status)
          return `code ${error.code} with ${response.status}`;
        if (error.code === "method_not_allowed" && response.headers.get("allow") !== allowed(c.path)) {
          return `Allow: ${response.headers.get("allow")}, expected ${allowed(c.path)}`;
        }
        const expected = c.expect === undefined ? undefined : ([] as ErrorCode[]).concat(c.expect);
        if (expected && !expected.includes(error.code as ErrorCode)) return `code ${error.code}, expected ${expected}`;
        seen.set(error.code, (seen.get(error.code) ?? 0) + 1);
        return undefined;
      })();
      if (problem) failures.push(`${c.name} → ${problem}: ${text.slice(0, 200)}`);
    }
    expect(failures).toEqual([]);
    expect(await snapshot()).toEqual(before);

    // /metrics counted each refusal under its code, and nothing else.
    const countsAfter = await errorCounts();
    const delta = Object.fromEntries(
      [...countsAfter].map(([code, count]) => [code, count - (countsBefore.get(code) ?? 0)]).filter(([, n]) => n !== 0),
    );
    expect(delta).toEqual(Object.fromEntries(seen));
    expect(countsAfter.get("invalid_request")).toBeGreaterThan(0);
    // Unknown paths do not grow the label sets: routes are the table's, or the catch-all.
    const metricsText = await (await fetch(`${server.url}/metrics`)).text();
    const routeLabels = new Set(
      [...metricsText.matchAll(/^waitroom_http_requests_total\{method="[A-Z]+",route="([^"]*)"/gm)].map((m) => m[1]),
    );
    const tablePaths = routes.map((route) => route.path.replace(/\{([^}]+)\}/g, ":$1"));
    expect([...routeLabels].filter((label) => label !== "/*" && !tablePaths.includes(label as string))).toEqual([]);
  });
});
