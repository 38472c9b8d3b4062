import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, metric, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { useBrowser, watchConsole } from "./browser.js";

/*
 * Cross-site joins in a real browser: another site's page makes its visitor's browser POST a
 * body-less join (a CORS simple request, no preflight). The service must refuse it; a page of
 * the service's own origin still joins.
 */

const db = useTestDatabase();
const server = useTestServer(db);
const chrome = useBrowser();

/** Another site: a page whose script joins the room on the service, then says it is done. */
let elsewhere: Server;
let elsewhereUrl = "";
beforeAll(async () => {
  elsewhere = createServer((request, response) => {
    const target = new URL(request.url ?? "/", "http://localhost").searchParams.get("join") ?? "";
    response.writeHead(200, { "content-type": "text/html" });
    response.end(`<!doctype html><script>
      fetch(${JSON.stringify(target)}, { method: "POST", mode: "no-cors", credentials: "include" })
        .finally(() => { document.title = "sent"; });
    </script>`);
  });
  await new Promise<void>((resolve) => elsewhere.listen(0, "127.0.0.1", resolve));
  // localhost is another site than the service's 127.0.0.1.
  elsewhereUrl = `http://localhost:${(elsewhere.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => elsewhere.close(() => resolve())));

async function createRoom(): Promise<string> {
  const room = uniqueRoomId("origin");
  const response = await server.request(`/v1/rooms/${room}`, {
    method: "PUT",
    token: ADMIN_KEY,
    body: { capacity: 1 },
  });
  expect(response.status).toBe(201);
  return room;
}

const tickets = async (room: string) =>
  Number((await db.sql<{ n: string }[]>`select count(*) as n from waitroom.tickets where room_id = ${room}`)[0]?.n);

describe("joins from a browser", () => {
  it("refuses one that another site's page sends", async () => {
    const room = await createRoom();
    const refusedBefore = await metric(server, 'waitroom_http_errors_total{code="origin_not_allowed"}');
    const page = await chrome.browser.newPage();
    const logs = watchConsole(page);
    try {
      const target = `${server.url}/v1/rooms/${room}/tickets`;
      await page.goto(`${elsewhereUrl}/?join=${encodeURIComponent(target)}`);
      await page.waitForFunction(() => document.title === "sent", undefined, { timeout: 15_000 });
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${logs.join("\n")}`);
    } finally {
      await page.close();
    }
    expect(await metric(server, 'waitroom_http_errors_total{code="origin_not_allowed"}')).toBe(refusedBefore + 1);
    expect(await tickets(room)).toBe(0);
  });

  it("accepts one from a page of the service's own origin", async () => {
    const room = await createRoom();
    const page = await chrome.browser.newPage();
    try {
      await page.goto(`${server.url}/healthz`);
      const status = await page.evaluate(
        async (path) => (await fetch(path, { method: "POST" })).status,
        `/v1/rooms/${room}/tickets`,
      );
      expect(status).toBe(202);
    } finally {
      await page.close();
    }
    expect(await tickets(room)).toBe(1);
  });
});
