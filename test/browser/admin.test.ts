import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { screenshot, useBrowser, watchConsole } from "./browser.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });
const chrome = useBrowser();

type Ticket = { ticket_id: string; token: string };

async function putRoom(room: string, settings: Record<string, unknown>): Promise<void> {
  const response = await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.ok).toBe(true);
}

async function join(room: string): Promise<Ticket> {
  const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" });
  expect(response.status).toBe(202);
  return (await response.json()) as Ticket;
}

async function roomRow(room: string): Promise<{ mode: string; capacity: number }> {
  const [row] = await db.sql<{ mode: string; capacity: number }[]>`
    select mode, capacity from waitroom.rooms where id = ${room}`;
  return row as { mode: string; capacity: number };
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.getByLabel(/Admin key/).fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

describe("the admin dashboard", () => {
  it("asks for the admin key and refuses a wrong one", async () => {
    const page = await chrome.browser.newPage();
    try {
      await page.goto(`${server.url}/admin`);
      await page.locator("#login").waitFor();
      expect(await page.locator("#dashboard").isVisible()).toBe(false);
      await signIn(page, "not-the-admin-key-at-all");
      await expect.poll(() => page.locator("#login-error").textContent()).toBe("The admin key was refused.");
      expect(await page.evaluate(() => sessionStorage.getItem("waitroom:admin-key"))).toBeNull();
      expect(await page.locator("#dashboard").isVisible()).toBe(false);
    } finally {
      await page.close();
    }
  });

  it("shows rooms live with charts of the last hour, and pauses, resumes and resizes a room", async () => {
    // A room with some history: people join, are admitted, one leaves.
    const room = uniqueRoomId("busy");
    await putRoom(room, { capacity: 2, claim_seconds: 300, session_seconds: 600 });
    const tickets: Ticket[] = [];
    for (let i = 0; i < 6; i++) tickets.push(await join(room));
    await expect
      .poll(async () => {
        const [row] = await db.sql<{ n: number }[]>`
          select count(*)::int as n from waitroom.tickets where room_id = ${room} and status = 'admitted'`;
        return row?.n;
      })
      .toBe(2);
    const last = tickets[5] as Ticket;
    expect(
      (await server.request(`/v1/tickets/${last.ticket_id}`, { method: "DELETE", token: last.token })).status,
    ).toBe(204);
    const quiet = uniqueRoomId("quiet");
    await putRoom(quiet, { capacity: 5 });

    const page = await chrome.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const logged = watchConsole(page);
    try {
      await page.goto(`${server.url}/admin`);
      await signIn(page, ADMIN_KEY);
      await page.locator("#dashboard").waitFor();
      // The key is kept for this tab only.
      expect(await page.evaluate(() => sessionStorage.getItem("waitroom:admin-key"))).toBe(ADMIN_KEY);

      const row = page.locator(`#rooms tr[data-room="${room}"]`);
      await row.waitFor();
      const cell = (column: string) => row.locator(`td[data-column="${column}"]`).textContent();
      expect(await cell("mode")).toBe("open");
      expect(await cell("capacity")).toBe("2");
      expect(await cell("queued")).toBe("3");
      expect(await cell("admitted")).toBe("2");
      expect(await cell("admitted_last_minute")).toBe("2");
      expect(await page.locator(`#rooms tr[data-room="${quiet}"]`).count()).toBe(1);

      // Live: a new arrival shows up within a poll or two.
      await join(room);
      await expect.poll(() => cell("queued"), { timeout: 10_000 }).toBe("4");

      // Charts of the selected room, drawn as inline SVG with data in them.
      await page.getByLabel("Room", { exact: true }).selectOption(room);
      const depth = page.locator("#chart-depth svg");
      await depth.waitFor();
      await expect.poll(() => depth.getAttribute("data-points")).toBe("60");
      expect(Number(await depth.getAttribute("data-max"))).toBeGreaterThanOrEqual(3);
      expect(await page.locator("#chart-depth svg path.line").count()).toBe(1);
      const bars = page.locator("#chart-admissions svg rect.bar");
      expect(await bars.count()).toBe(60);
      const admittedBars = await bars.evaluateAll((rects) =>
        rects.map((rect) => Number(rect.getAttribute("data-value"))).filter((value) => value > 0),
      );
      expect(admittedBars.reduce((a, b) => a + b, 0)).toBe(2);
      expect(await page.locator("#chart-admissions svg path.line.dashed").count()).toBe(1);
      expect(Number(await page.locator("#chart-waits svg").getAttribute("data-points"))).toBeGreaterThan(0);
      expect(await page.locator("#chart-waits svg desc").textContent()).toMatch(/latest median/);
      expect(await page.locator("#history-table tbody tr").count()).toBe(60);
      await screenshot(page, "admin-dashboard");

      // Pause: the room stops admitting, in SQL; then resume.
      await row.getByRole("button", { name: `Pause ${room}` }).click();
      await expect.poll(async () => (await roomRow(room)).mode).toBe("paused");
      await expect.poll(() => cell("mode")).toBe("paused");
      await row.getByRole("button", { name: `Resume ${room}` }).waitFor();
      await screenshot(page, "admin-paused");
      await row.getByRole("button", { name: `Resume ${room}` }).click();
      await expect.poll(async () => (await roomRow(room)).mode).toBe("open");
      await expect.poll(() => cell("mode")).toBe("open");

      // Capacity and mode.
      await row.getByLabel(`Capacity of ${room}`, { exact: true }).fill("3");
      await row.getByRole("button", { name: `Set capacity of ${room}` }).click();
      await expect.poll(async () => (await roomRow(room)).capacity).toBe(3);
      await expect.poll(() => cell("capacity")).toBe("3");
      await row.getByLabel(`Mode of ${room}`, { exact: true }).selectOption("closed");
      await row.getByRole("button", { name: `Set mode of ${room}` }).click();
      await expect.poll(async () => (await roomRow(room)).mode).toBe("closed");

      // Create a room from the form.
      const created = uniqueRoomId("made");
      await page.getByLabel("Room id").fill(created);
      await page.getByLabel("Capacity", { exact: true }).fill("7");
      await page.getByRole("button", { name: "Create" }).click();
      await expect.poll(async () => (await roomRow(created))?.capacity).toBe(7);
      await page.locator(`#rooms tr[data-room="${created}"]`).waitFor();

      // Signing out forgets the key.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.locator("#login").waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem("waitroom:admin-key"))).toBeNull();
      expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
