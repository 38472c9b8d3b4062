import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { gateEnvironment, gateRoom, joinAndClaim, signedEarlier, useOrigin, visitor } from "../helpers/gate.js";
import { ADMIN_KEY, StreamRecorder, useTestServer } from "../helpers/http.js";
import { type Nginx, startGateNginx } from "../helpers/nginx.js";

/*
 * deploy/nginx-gate.conf with Debian's real nginx in front of a tiny origin: a visitor is sent to the
 * room, waits while the room is full, is admitted, lands on the URL it first asked for, and is sent
 * back to the room once it leaves or its seat ends. Every call goes through nginx, as a browser's would.
 */

const db = useTestDatabase();
const server = useTestServer(db, { worker: true, env: gateEnvironment });
const origin = useOrigin();
let nginx: Nginx;
beforeAll(async () => {
  nginx = await startGateNginx({ waitroomPort: Number(new URL(server.url).port), originPort: origin.port });
});
afterAll(() => nginx?.stop());

type Joined = { ticket_id: string; token: string; events_url: string; position: number };

const room = gateRoom;

describe("the gate behind nginx", () => {
  it("queues a visitor while the room is full, admits it to the URL it asked for, and turns it away once it left", async () => {
    const target = `${nginx.url}/`;
    const put = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { capacity: 1, target_url: target, session_seconds: 600 },
    });
    expect(put.status).toBe(201);
    // Someone holds the only seat.
    const first = (await (await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).json()) as Joined;
    await eventually(
      async () =>
        (await server.request(`/v1/tickets/${first.ticket_id}/claim`, { method: "POST", token: first.token })).ok,
      "the first visitor holds the seat",
    );

    const browser = visitor(nginx.url);
    const deep = "/shop/item/42?colour=blue";
    const refused = await browser.get(deep);
    expect(refused.status).toBe(302);
    const location = refused.headers.get("location") as string;
    const roomPage = new URL(location, nginx.url);
    expect(roomPage.pathname).toBe(`/.waitroom/rooms/${room}`);
    expect(roomPage.searchParams.get("return")).toBe(`${nginx.url}${deep}`);
    const html = await browser.get(`${roomPage.pathname}${roomPage.search}`);
    expect(html.status).toBe(200);
    expect(await html.text()).toContain(`data-room="${room}"`);

    // It waits in line, watching its stream through nginx (unbuffered: the events arrive as they happen).
    const joined = await browser.call("POST", `/v1/rooms/${room}/tickets`);
    expect(joined.status).toBe(202);
    const mine = (await joined.json()) as Joined;
    expect(mine.position).toBe(1);
    const stream = new StreamRecorder(`${nginx.url}/.waitroom${mine.events_url}?token=${mine.token}`);
    try {
      await stream.next((m) => m.event === "state" && m.data.status === "queued");
      expect((await browser.get(deep)).status).toBe(302);

      // The seat frees up: admitted, claimed, handed over.
      expect(
        (await server.request(`/v1/tickets/${first.ticket_id}`, { method: "DELETE", token: first.token })).status,
      ).toBe(204);
      await stream.next((m) => m.event === "admitted");
    } finally {
      stream.close();
    }
    const claim = await browser.call("POST", `/v1/tickets/${mine.ticket_id}/claim`, { token: mine.token });
    expect(claim.status).toBe(200);
    const { admission_token } = (await claim.json()) as { admission_token: string };

    // A return URL off the room's list is refused, and nothing is set.
    const offList = await browser.call("POST", `/v1/rooms/${room}/handover`, {
      body: { admission_token, return: "https://elsewhere.example/phish" },
    });
    expect(offList.status).toBe(400);
    expect(((await offList.json()) as { error: { code: string } }).error.code).toBe("return_not_allowed");
    expect(browser.jar.size).toBe(0);

    const handover = await browser.call("POST", `/v1/rooms/${room}/handover`, {
      body: { admission_token, return: roomPage.searchParams.get("return") },
    });
    expect(handover.status).toBe(200);
    expect(await handover.json()).toMatchObject({
      continue_url: `${nginx.url}${deep}`,
      handover: "cookie",
      auto_continue: true,
    });
    const setCookie = handover.headers.getSetCookie().join("\n");
    expect(setCookie).toMatch(new RegExp(`^waitroom_${room}=ey`));
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
    expect(setCookie).toMatch(/Path=\//);

    // It lands on the URL it first asked for, and sees the origin's page.
    const landed = await browser.get(deep);
    expect(landed.status).toBe(200);
    expect(await landed.text()).toContain(`The origin served ${deep}`);

    // It gives up its seat (as the page does): sent back to the room at once.
    expect((await browser.call("DELETE", `/v1/tickets/${mine.ticket_id}`, { token: mine.token })).status).toBe(204);
    expect((await browser.call("DELETE", `/v1/rooms/${room}/handover`)).status).toBe(204);
    expect(browser.jar.size).toBe(0);
    const after = await browser.get(deep);
    expect(after.status).toBe(302);
    expect(after.headers.get("location")).toBe(location);
  });

  it("turns a visitor away when its seat ends, with the cookie it still holds", async () => {
    const configured = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { session_seconds: 2, grace_seconds: 0, renew_on_heartbeat: false },
    });
    expect(configured.status).toBe(200);
    const browser = visitor(nginx.url);
    const { admissionToken } = await joinAndClaim(browser, room);
    expect(
      (await browser.call("POST", `/v1/rooms/${room}/handover`, { body: { admission_token: admissionToken } })).status,
    ).toBe(200);
    expect((await browser.get("/")).status).toBe(200);
    // The token in the cookie ends with the seat, and renewals (without renew_on_heartbeat) do not move
    // that end: the gate refuses the visitor then, its token expired or its seat found over.
    const refused = await eventually(async () => {
      const answer = await browser.get("/");
      return answer.status === 302 && answer;
    }, "the gate refuses the ended seat");
    expect(refused.headers.get("location")).toBe(
      `${nginx.url}/.waitroom/rooms/${room}?return=${encodeURIComponent(`${nginx.url}/`)}`,
    );
    expect(await nginx.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });

  it("renews the cookie of a visitor using the site, and sends it to the room at the first renewal after it left", async () => {
    const configured = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { capacity: 5, session_seconds: 600, grace_seconds: 0, renew_on_heartbeat: true },
    });
    expect(configured.status).toBe(200);
    const browser = visitor(nginx.url);
    const { ticket: mine, admissionToken } = await joinAndClaim(browser, room);
    const cookie = `waitroom_${room}`;
    // The page went on to the site long ago: its token is in its second half (as if signed 70 s ago).
    const old = await signedEarlier(db.sql, admissionToken, 70);
    browser.jar.set(cookie, old);

    const page = await browser.get("/shop/basket");
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("The origin served /shop/basket");
    const [renewed = ""] = page.headers.getSetCookie();
    expect(renewed).toMatch(new RegExp(`^${cookie}=ey[^;]+; Max-Age=\\d+; Path=/; HttpOnly; SameSite=Lax$`));
    const fresh = browser.jar.get(cookie) ?? "";
    expect(fresh).not.toBe(old);
    expect(decodeJwt(fresh).exp).toBeGreaterThan(decodeJwt(old).exp ?? Infinity);
    // A young cookie passes with nothing set.
    const next = await browser.get("/shop/basket");
    expect(next.status).toBe(200);
    expect(next.headers.getSetCookie()).toEqual([]);

    // It leaves from elsewhere (another tab, the app): its cookie stays until the next renewal, which refuses it.
    expect(
      (await server.request(`/v1/tickets/${mine.ticket_id}`, { method: "DELETE", token: mine.token })).status,
    ).toBe(204);
    browser.jar.set(cookie, await signedEarlier(db.sql, fresh, 70));
    const refused = await browser.get("/shop/basket");
    expect(refused.status).toBe(302);
    expect(refused.headers.get("location")).toBe(
      `${nginx.url}/.waitroom/rooms/${room}?return=${encodeURIComponent(`${nginx.url}/shop/basket`)}`,
    );
    expect(browser.jar.has(cookie)).toBe(false);
    expect(await nginx.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
  });
});
