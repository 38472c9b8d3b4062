import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateCaddy } from "../helpers/caddy.js";
import { useTestDatabase } from "../helpers/database.js";
import { gateEnvironment, gateRoom, joinAndClaim, signedEarlier, useOrigin, visitor } from "../helpers/gate.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import type { RunningProxy } from "../helpers/proxy.js";

/*
 * deploy/Caddyfile.gate with Debian's real caddy in front of a tiny origin: sent to the room without a
 * cookie, handed over, on the site; a cookie in its second half comes back renewed with the site's page
 * (forward_auth alone would drop it: the Caddyfile writes it out); after leaving, the next renewal
 * clears the cookie and sends the visitor to the room.
 */

const db = useTestDatabase();
const server = useTestServer(db, { worker: true, env: gateEnvironment });
const origin = useOrigin();
let caddy: RunningProxy;
beforeAll(async () => {
  caddy = await startGateCaddy({ waitroomPort: Number(new URL(server.url).port), originPort: origin.port });
});
afterAll(() => caddy?.stop());

const room = gateRoom;

describe("the gate behind caddy", () => {
  it("admits a visitor, renews its cookie while it uses the site, and sends it to the room once it left", async () => {
    const put = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { capacity: 5, target_url: `${caddy.url}/`, session_seconds: 600 },
    });
    expect(put.status).toBe(201);
    const browser = visitor(caddy.url);
    const roomPage = `/.waitroom/rooms/${room}?return=${encodeURIComponent(`${caddy.url}/shop/basket`)}`;
    const refused = await browser.get("/shop/basket");
    expect(refused.status).toBe(302);
    expect(refused.headers.get("location")).toBe(roomPage);

    const { ticket: mine, admissionToken } = await joinAndClaim(browser, room);
    const handover = await browser.call("POST", `/v1/rooms/${room}/handover`, {
      body: { admission_token: admissionToken },
    });
    expect(handover.status).toBe(200);
    const cookie = `waitroom_${room}`;
    expect(browser.jar.get(cookie)).toBe(admissionToken);
    const young = await browser.get("/shop/basket");
    expect(young.status).toBe(200);
    expect(await young.text()).toContain("The origin served /shop/basket");
    expect(young.headers.getSetCookie()).toEqual([]);

    // Its token in its second half (as if signed 70 s ago): the site's page comes with a renewed cookie.
    const old = await signedEarlier(db.sql, admissionToken, 70);
    browser.jar.set(cookie, old);
    const renewed = await browser.get("/shop/basket");
    expect(renewed.status).toBe(200);
    expect(await renewed.text()).toContain("The origin served /shop/basket");
    expect(renewed.headers.getSetCookie()).toEqual([
      expect.stringMatching(new RegExp(`^${cookie}=ey[^;]+; Max-Age=\\d+; Path=/; HttpOnly; SameSite=Lax$`)),
    ]);
    const fresh = browser.jar.get(cookie) ?? "";
    expect(decodeJwt(fresh).exp).toBeGreaterThan(decodeJwt(old).exp ?? Infinity);

    // It leaves from elsewhere: the next renewal clears the cookie and sends it to the room.
    expect(
      (await server.request(`/v1/tickets/${mine.ticket_id}`, { method: "DELETE", token: mine.token })).status,
    ).toBe(204);
    browser.jar.set(cookie, await signedEarlier(db.sql, fresh, 70));
    const gone = await browser.get("/shop/basket");
    expect(gone.status).toBe(302);
    expect(gone.headers.get("location")).toBe(roomPage);
    expect(browser.jar.has(cookie)).toBe(false);
  });
});
