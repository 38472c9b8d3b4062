import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { eventually } from "../helpers/eventually.js";
import { gateEnvironment, gateRoom, useOrigin } from "../helpers/gate.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { type Nginx, startGateNginx } from "../helpers/nginx.js";
import { screenshot, useBrowser, watchConsole } from "./browser.js";

/*
 * A real browser through deploy/nginx-gate.conf: asking for a deep URL of the protected site, it is
 * sent to the waiting room, waits while the room is full, is admitted, and the page takes it back to
 * that URL by itself; once it gives up its seat, the site sends it to the room again.
 */

const db = useTestDatabase();
const server = useTestServer(db, { worker: true, env: gateEnvironment });
const origin = useOrigin();
const chrome = useBrowser();
let nginx: Nginx;
beforeAll(async () => {
  nginx = await startGateNginx({ waitroomPort: Number(new URL(server.url).port), originPort: origin.port });
});
afterAll(() => nginx?.stop());

const room = gateRoom;

describe("a browser behind the gate", () => {
  it("waits in the room, is admitted, returns to the URL it asked for, and is sent back after leaving", async () => {
    const put = await server.request(`/v1/rooms/${room}`, {
      method: "PUT",
      token: ADMIN_KEY,
      body: { capacity: 1, target_url: `${nginx.url}/`, session_seconds: 600, claim_seconds: 120 },
    });
    expect(put.status).toBe(201);
    const first = (await (await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).json()) as {
      ticket_id: string;
      token: string;
    };
    await eventually(
      async () =>
        (await server.request(`/v1/tickets/${first.ticket_id}/claim`, { method: "POST", token: first.token })).ok,
      "someone else holds the only seat",
    );

    const context = await chrome.browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const logged = watchConsole(page);
    try {
      const deep = "/catalogue/item/42?colour=blue";
      await page.goto(`${nginx.url}${deep}`);
      expect(new URL(page.url()).pathname).toBe(`/.waitroom/rooms/${room}`);
      expect(new URL(page.url()).searchParams.get("return")).toBe(`${nginx.url}${deep}`);
      await page.locator("#panel[data-state='queued']").waitFor({ timeout: 15_000 });
      expect(await page.locator("#position").textContent()).toBe("1");
      await screenshot(page, "gate-queued");

      // The seat frees up: the page claims it, hands it over and goes back to the URL it came for.
      const freed = await server.request(`/v1/tickets/${first.ticket_id}`, { method: "DELETE", token: first.token });
      expect(freed.status).toBe(204);
      await page.waitForURL(`${nginx.url}${deep}`, { timeout: 15_000 });
      expect(await page.locator("#origin").textContent()).toBe(`The origin served ${deep}`);
      const [cookie] = (await context.cookies(nginx.url)).filter((c) => c.name === `waitroom_${room}`);
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Lax", path: "/" });
      await screenshot(page, "gate-admitted");

      // Back in the room without a return URL: the seat is shown (and handed over again), not left.
      await page.goto(`${nginx.url}/.waitroom/rooms/${room}`);
      await page.locator("#panel[data-state='active']").waitFor({ timeout: 15_000 });
      await page.locator("#continue-line:not([hidden])").waitFor();
      expect(await page.locator("#continue").getAttribute("href")).toBe(`${nginx.url}/`);
      await page.locator("#leave").click();
      await page.locator("#confirm-leave-yes").click();
      await page.locator("#panel[data-state='left']").waitFor({ timeout: 15_000 });
      await eventually(
        async () => !(await context.cookies(nginx.url)).some((c) => c.name === `waitroom_${room}`),
        "the admission cookie is gone",
      );

      // The site sends it to the room again.
      await page.goto(`${nginx.url}${deep}`);
      expect(new URL(page.url()).pathname).toBe(`/.waitroom/rooms/${room}`);
      expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
