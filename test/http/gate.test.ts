import { decodeJwt } from "jose";
import { describe, expect, it, onTestFinished } from "vitest";
import { guardingRoom } from "../../src/http/routes/gate.js";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { resigned, signedEarlier } from "../helpers/gate.js";
import { ADMIN_KEY, metric, SERVER_KEY, type TestServer, useTestServer } from "../helpers/http.js";
import { holdLock, uniqueRoomId } from "../helpers/queue.js";

/*
 * Where admitted visitors go (the room's target, return URLs and handover) and the forward-auth gate,
 * called directly as a proxy would.
 */

const db = useTestDatabase();
const room = uniqueRoomId("gate");
// The renewal timeout is far above what a renewal takes even on a loaded machine; one test holds a lock past it.
const renewalTimeoutMs = 3000;
const server = useTestServer(db, {
  worker: true,
  env: {
    WAITROOM_GATES: `shop.test=${room},shop.test/api=other`,
    WAITROOM_GATE_RENEWAL_TIMEOUT_MS: String(renewalTimeoutMs),
  },
});

async function putRoom(id: string, settings: Record<string, unknown>, service: TestServer = server) {
  const response = await service.request(`/v1/rooms/${id}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.status).toBeLessThan(300);
  return response.json() as Promise<Record<string, unknown>>;
}

/** A fresh seat in the room (a holder's, when named): its ticket and admission token. */
async function seat(
  id: string,
  holder?: string,
): Promise<{ ticket_id: string; token: string; admission_token: string }> {
  const joined = (await (
    await server.request(`/v1/rooms/${id}/tickets`, {
      method: "POST",
      ...(holder ? { token: SERVER_KEY, body: { holder } } : {}),
    })
  ).json()) as { ticket_id: string; token: string };
  const { admission_token } = await eventually(async () => {
    const claim = await server.request(`/v1/tickets/${joined.ticket_id}/claim`, {
      method: "POST",
      token: joined.token,
    });
    return claim.ok && ((await claim.json()) as { admission_token: string });
  }, "the seat is claimed");
  return { ...joined, admission_token };
}

const handover = (id: string, body: Record<string, unknown>) =>
  server.request(`/v1/rooms/${id}/handover`, { method: "POST", body });

/** The gate, asked as a proxy asks it (which follows no redirect). */
const gate = (headers: Record<string, string>, query = "") =>
  fetch(`${server.url}/v1/gate${query}`, {
    redirect: "manual",
    headers: { "x-forwarded-host": "shop.test", "x-forwarded-proto": "https", ...headers },
  });

describe("where admitted visitors go", () => {
  it("keeps the target, the return origins and the handover as room settings", async () => {
    const id = uniqueRoomId("target");
    const created = await putRoom(id, { capacity: 1 });
    expect(created).toMatchObject({ target_url: null, return_origins: [], handover: "cookie", auto_continue: true });
    const changed = await putRoom(id, {
      target_url: "https://shop.example/start?from=queue",
      return_origins: ["https://app.example", "http://localhost:3000"],
      handover: "fragment",
      auto_continue: false,
    });
    expect(changed).toMatchObject({
      target_url: "https://shop.example/start?from=queue",
      return_origins: ["https://app.example", "http://localhost:3000"],
      handover: "fragment",
      auto_continue: false,
    });
    // The database keeps the rules too, for whoever configures a room from SQL.
    for (const bad of [
      { target_url: "javascript:alert(1)" },
      { return_origins: ["https://shop.example/path"] },
      { return_origins: ["HTTPS://SHOP.EXAMPLE"] },
      { handover: "header" },
    ]) {
      await expect(db.sql`select waitroom.configure_room(${id}, ${db.sql.json(bad)})`).rejects.toMatchObject({
        code: "WR400",
      });
    }
  });

  it("continues to the target, or to an allowed return URL, and refuses any other", async () => {
    const id = uniqueRoomId("return");
    await putRoom(id, { capacity: 5, target_url: "https://shop.example/", return_origins: ["https://app.example"] });
    const token = (await seat(id)).admission_token;
    const continuing = async (returnUrl?: string) => {
      const answer = await handover(id, { admission_token: token, ...(returnUrl ? { return: returnUrl } : {}) });
      return { status: answer.status, body: (await answer.json()) as Record<string, unknown> };
    };
    expect(await continuing()).toMatchObject({ status: 200, body: { continue_url: "https://shop.example/" } });
    for (const allowed of [
      "https://shop.example/deep/page?x=1",
      "https://SHOP.example:443/x",
      "https://app.example/account",
    ]) {
      expect(await continuing(allowed)).toMatchObject({ status: 200, body: { continue_url: allowed } });
    }
    for (const refused of [
      "http://shop.example/",
      "https://shop.example:8443/",
      "https://shop.example.evil.example/",
      "https://evil.example/?https://shop.example/",
      "https://app.example.evil/",
    ]) {
      expect(await continuing(refused)).toMatchObject({ status: 400, body: { error: { code: "return_not_allowed" } } });
    }
  });

  it("sets the gate's cookie for handover cookie, and hands the token in the fragment otherwise", async () => {
    const id = uniqueRoomId("cookie");
    await putRoom(id, { capacity: 5, target_url: "https://shop.example/" });
    const token = (await seat(id)).admission_token;
    const cookie = await handover(id, { admission_token: token });
    expect(cookie.status).toBe(200);
    const [setCookie = ""] = cookie.headers.getSetCookie();
    const attributes = setCookie.split("; ").slice(1);
    expect(attributes).toHaveLength(5);
    expect(attributes).toEqual(
      expect.arrayContaining(["HttpOnly", "Path=/", "SameSite=Lax", "Secure", expect.stringMatching(/^Max-Age=\d+$/)]),
    );
    expect(setCookie.startsWith(`waitroom_${id}=${token};`)).toBe(true);
    const { admission_expires_at } = (await cookie.json()) as { admission_expires_at: string };
    const maxAge = Number(/Max-Age=(\d+)/.exec(setCookie)?.[1]);
    // The cookie lives as long as the token in it, no longer.
    expect(maxAge).toBeLessThanOrEqual((new Date(admission_expires_at).getTime() - Date.now()) / 1000 + 1);
    expect(maxAge).toBeGreaterThan(60);

    await putRoom(id, { handover: "fragment" });
    const fragment = await handover(id, { admission_token: token, return: "https://shop.example/basket" });
    expect(fragment.headers.getSetCookie()).toEqual([]);
    expect(await fragment.json()).toMatchObject({
      continue_url: `https://shop.example/basket#waitroom_token=${token}`,
      handover: "fragment",
    });

    const cleared = await server.request(`/v1/rooms/${id}/handover`, { method: "DELETE" });
    expect(cleared.status).toBe(204);
    expect(cleared.headers.getSetCookie()[0]).toMatch(new RegExp(`^waitroom_${id}=; Max-Age=0; Path=/; Secure`));
  });

  it("refuses the handover of a seat given up", async () => {
    const id = uniqueRoomId("gone");
    await putRoom(id, { capacity: 5 });
    const mine = await seat(id);
    expect(await (await handover(id, { admission_token: mine.admission_token })).json()).toMatchObject({
      continue_url: null,
    });
    const left = await server.request(`/v1/tickets/${mine.ticket_id}`, { method: "DELETE", token: mine.token });
    expect(left.status).toBe(204);
    const refused = await handover(id, { admission_token: mine.admission_token });
    expect(refused.status).toBe(410);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("left");
    expect(refused.headers.getSetCookie()).toEqual([]);
  });
});

describe("the gate", () => {
  it("maps a host and path to the room guarding it: the longest path, the port where named", () => {
    const routes = [
      { host: "shop.test", port: undefined, path: "/", room: "all" },
      { host: "shop.test", port: undefined, path: "/api", room: "api" },
      { host: "shop.test", port: "8443", path: "/api/v2/", room: "v2" },
    ];
    expect(guardingRoom(routes, "shop.test", "/")).toBe("all");
    expect(guardingRoom(routes, "SHOP.test:80", "/basket?x=1")).toBe("all");
    expect(guardingRoom(routes, "shop.test", "/api")).toBe("api");
    expect(guardingRoom(routes, "shop.test", "/api/orders")).toBe("api");
    expect(guardingRoom(routes, "shop.test", "/apiary")).toBe("all");
    expect(guardingRoom(routes, "shop.test:8443", "/api/v2/x")).toBe("v2");
    expect(guardingRoom(routes, "shop.test", "/api/v2/x")).toBe("api");
    expect(guardingRoom(routes, "other.test", "/")).toBeUndefined();
  });

  it("lets a valid admission cookie through and sends anyone else to the room with the URL to return to", async () => {
    await putRoom(room, { capacity: 5, target_url: "https://shop.test/" });
    const uri = "/deep/page?x=1&y=%20";
    const expected = `/.waitroom/rooms/${room}?${new URLSearchParams({ return: `https://shop.test${uri}` })}`;

    const none = await gate({ "x-forwarded-uri": uri });
    expect(none.status).toBe(302);
    expect(none.headers.get("location")).toBe(expected);
    expect(none.headers.get("cache-control")).toBe("no-store");
    const nginx = await gate({ "x-forwarded-uri": uri }, "?deny=unauthorized");
    expect(nginx.status).toBe(401);
    expect(nginx.headers.get("location")).toBe(expected);
    expect(((await nginx.json()) as { error: { code: string } }).error.code).toBe("admission_required");

    const token = (await seat(room)).admission_token;
    const admitted = await gate({ "x-forwarded-uri": uri, cookie: `other=1; waitroom_${room}=${token}` });
    expect(admitted.status).toBe(204);
    // The same token does not open a path another room guards, nor does garbage.
    expect((await gate({ "x-forwarded-uri": "/api/x", cookie: `waitroom_other=${token}` })).status).toBe(302);
    expect((await gate({ "x-forwarded-uri": uri, cookie: `waitroom_${room}=${token}x` })).status).toBe(302);
    expect((await gate({ "x-forwarded-uri": uri, cookie: `waitroom_${room}=` })).status).toBe(302);
  });
});

describe("the gate's renewal of the cookie", () => {
  /** The gate asked for a request to the site carrying the room's cookie with `token`. */
  const gated = (token: string) => gate({ "x-forwarded-uri": "/basket", cookie: `waitroom_${room}=${token}` });
  const renewals = async (outcome: string) => metric(server, `waitroom_gate_renewals_total{outcome="${outcome}"}`);
  const allRenewals = async () =>
    (await Promise.all(["renewed", "gone", "failed", "timed_out"].map(renewals))).reduce((a, b) => a + b, 0);
  /** The seat as the database has it. */
  const seatRow = async (ticketId: string) => {
    const [row] = await db.sql<{ expires_at: Date; last_seen_at: Date }[]>`
      select expires_at, last_seen_at from waitroom.tickets where id = ${ticketId}`;
    if (!row) throw new Error("no such ticket");
    return row;
  };
  const renewedToken = (response: Response) => {
    const [cookie = ""] = response.headers.getSetCookie();
    return { cookie, token: /^waitroom_[^=]+=([^;]*)/.exec(cookie)?.[1] ?? "" };
  };
  const roomPage = `/.waitroom/rooms/${room}?${new URLSearchParams({ return: "https://shop.test/basket" })}`;

  it("lets a token with less than half its life spent through on its signature alone", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600, renew_on_heartbeat: true });
    const mine = await seat(room);
    const before = await seatRow(mine.ticket_id);
    const renewalsBefore = await allRenewals();
    const passed = await gated(mine.admission_token);
    expect(passed.status).toBe(204);
    expect(passed.headers.getSetCookie()).toEqual([]);
    // No renewal ran: a heartbeat would have moved last_seen_at (and, in this room, expires_at).
    expect(await seatRow(mine.ticket_id)).toEqual(before);
    expect(await allRenewals()).toBe(renewalsBefore);
  });

  it("renews a token past half its life: a fresh cookie with a later exp, and the seat extended as a heartbeat would", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600, renew_on_heartbeat: true });
    const mine = await seat(room);
    const before = await seatRow(mine.ticket_id);
    // As if signed 70 s ago: 50 s left of its 120.
    const old = await signedEarlier(db.sql, mine.admission_token, 70);
    const renewedBefore = await renewals("renewed");
    const passed = await gated(old);
    expect(passed.status).toBe(204);
    const { cookie, token } = renewedToken(passed);
    // The handover's cookie, to the attribute.
    expect(cookie.split("; ").slice(1)).toEqual(
      expect.arrayContaining(["HttpOnly", "Path=/", "SameSite=Lax", "Secure", expect.stringMatching(/^Max-Age=\d+$/)]),
    );
    expect(cookie.split("; ")).toHaveLength(6);
    expect(Number(/Max-Age=(\d+)/.exec(cookie)?.[1])).toBeGreaterThan(60);
    expect(decodeJwt(token).exp).toBeGreaterThan(decodeJwt(old).exp ?? Infinity);
    // The service itself takes it: signature, claims, and the seat behind it.
    const checked = await server.request("/v1/check", { method: "POST", body: { room, admission_token: token } });
    expect(checked.status).toBe(200);
    const after = await seatRow(mine.ticket_id);
    expect(after.expires_at.getTime()).toBeGreaterThan(before.expires_at.getTime());
    expect(after.last_seen_at.getTime()).toBeGreaterThan(before.last_seen_at.getTime());
    expect(await renewals("renewed")).toBe(renewedBefore + 1);
    // The renewed token is young again: it passes with no renewal.
    expect((await gated(token)).headers.getSetCookie()).toEqual([]);
  });

  it("renews a token without iat (never one the service signed) at once", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600 });
    const mine = await seat(room);
    const undated = await resigned(db.sql, mine.admission_token, ({ iat: _iat, ...claims }) => claims);
    const passed = await gated(undated);
    expect(passed.status).toBe(204);
    expect(decodeJwt(renewedToken(passed).token).iat).toEqual(expect.any(Number));
  });

  it("does not extend the seat without renew_on_heartbeat: the renewed token ends with the seat", async () => {
    const id = room;
    await putRoom(id, { capacity: 50, session_seconds: 30, renew_on_heartbeat: false });
    const mine = await seat(id);
    const before = await seatRow(mine.ticket_id);
    // Its token ends with the seat (30 s < 120 s); as if signed 20 s ago, 10 s are left.
    const old = await signedEarlier(db.sql, mine.admission_token, 20);
    const passed = await gated(old);
    expect(passed.status).toBe(204);
    const { token } = renewedToken(passed);
    const exp = decodeJwt(token).exp ?? Infinity;
    expect(exp).toBeGreaterThan(decodeJwt(old).exp ?? Infinity);
    expect(exp * 1000).toBeLessThanOrEqual(before.expires_at.getTime());
    expect((await seatRow(mine.ticket_id)).expires_at).toEqual(before.expires_at);
  });

  it("clears the cookie and sends the visitor to the room at the first renewal after a leave", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600, renew_on_heartbeat: true });
    const mine = await seat(room);
    const old = await signedEarlier(db.sql, mine.admission_token, 70);
    expect(
      (await server.request(`/v1/tickets/${mine.ticket_id}`, { method: "DELETE", token: mine.token })).status,
    ).toBe(204);
    // A young token is not checked: the leave is seen at its next renewal, half a lifetime later at most.
    expect((await gated(mine.admission_token)).status).toBe(204);
    const goneBefore = await renewals("gone");
    const refused = await gated(old);
    expect(refused.status).toBe(302);
    expect(refused.headers.get("location")).toBe(roomPage);
    expect(refused.headers.getSetCookie()).toEqual([
      expect.stringMatching(new RegExp(`^waitroom_${room}=; Max-Age=0; Path=/; Secure`)),
    ]);
    expect(await renewals("gone")).toBe(goneBefore + 1);
  });

  it("clears the cookie of a superseded seat at its next renewal", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600 });
    const mine = await seat(room, "ada");
    const old = await signedEarlier(db.sql, mine.admission_token, 70);
    // Ada joins again (another device): her seat stays, her old token is superseded.
    const again = await server.request(`/v1/rooms/${room}/tickets`, {
      method: "POST",
      token: SERVER_KEY,
      body: { holder: "ada" },
    });
    expect(((await again.json()) as { ticket_id: string }).ticket_id).toBe(mine.ticket_id);
    const refused = await gate(
      { "x-forwarded-uri": "/basket", cookie: `waitroom_${room}=${old}` },
      "?deny=unauthorized",
    );
    expect(refused.status).toBe(401);
    expect(refused.headers.get("location")).toBe(roomPage);
    expect(refused.headers.getSetCookie()[0]).toMatch(new RegExp(`^waitroom_${room}=; Max-Age=0;`));
  });

  it("lets a still-valid token through when the renewal fails in the database, and says so", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600 });
    const mine = await seat(room);
    const old = await signedEarlier(db.sql, mine.admission_token, 70);
    const failedBefore = await renewals("failed");
    await db.sql`revoke execute on function waitroom.renew_admission(uuid, integer, text, timestamptz) from waitroom_app`;
    onTestFinished(async () => {
      await db.sql`grant execute on function waitroom.renew_admission(uuid, integer, text, timestamptz) to waitroom_app`;
    });
    const passed = await gated(old);
    expect(passed.status).toBe(204);
    expect(passed.headers.getSetCookie()).toEqual([]);
    expect(await renewals("failed")).toBe(failedBefore + 1);
    // An expired token is refused all the same: failing open ends at the token's exp.
    const expired = await signedEarlier(db.sql, mine.admission_token, 121);
    expect((await gated(expired)).status).toBe(302);
  });

  it("lets a still-valid token through when the renewal takes longer than WAITROOM_GATE_RENEWAL_TIMEOUT_MS", async () => {
    await putRoom(room, { capacity: 50, session_seconds: 600 });
    const mine = await seat(room);
    const old = await signedEarlier(db.sql, mine.admission_token, 70);
    const timedOutBefore = await renewals("timed_out");
    // The database stuck: the seats are locked until the gate has answered.
    const lock = holdLock(db.sql, (tx) => tx`lock table waitroom.tickets in access exclusive mode`);
    await lock.held;
    try {
      const passed = await gated(old);
      expect(passed.status).toBe(204);
      expect(passed.headers.getSetCookie()).toEqual([]);
    } finally {
      lock.release();
      await lock.done;
    }
    expect(await renewals("timed_out")).toBe(timedOutBefore + 1);
  });
});
