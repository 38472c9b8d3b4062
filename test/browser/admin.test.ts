import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import type { room as roomContract, roomHistory } from "../../src/http/contracts.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { screenshot, useBrowser, watchConsole } from "./browser.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });
const chrome = useBrowser();

type Ticket = { ticket_id: string; token: string };
type Room = ReturnType<typeof roomContract.parse>;
type History = ReturnType<typeof roomHistory.parse>;

async function putRoom(room: string, settings: Record<string, unknown>): Promise<void> {
  const response = await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.ok).toBe(true);
}

async function join(room: string): Promise<Ticket> {
  const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" });
  expect(response.status).toBe(202);
  return (await response.json()) as Ticket;
}

async function apiRoom(room: string): Promise<Room> {
  return (await (await server.request(`/v1/rooms/${room}`, { token: ADMIN_KEY })).json()) as Room;
}

async function apiHistory(room: string, minutes: number): Promise<History> {
  return (await (
    await server.request(`/v1/rooms/${room}/history?minutes=${minutes}`, { token: ADMIN_KEY })
  ).json()) as History;
}

async function roomRow(room: string): Promise<{ mode: string; capacity: number } | undefined> {
  const [row] = await db.sql<{ mode: string; capacity: number }[]>`
    select mode, capacity from waitroom.rooms where id = ${room}`;
  return row;
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.getByLabel(/Admin key/).fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** A room with history: six join a room of two, two are admitted, one of the queued leaves. */
async function busyRoom(prefix: string): Promise<string> {
  const room = uniqueRoomId(prefix);
  await putRoom(room, { capacity: 2, admit_per_minute: 30, claim_seconds: 300, session_seconds: 600 });
  const tickets: Ticket[] = [];
  for (let i = 0; i < 6; i++) tickets.push(await join(room));
  await expect.poll(async () => (await apiRoom(room)).stats.admitted, { timeout: 15_000 }).toBe(2);
  const last = tickets[5] as Ticket;
  expect((await server.request(`/v1/tickets/${last.ticket_id}`, { method: "DELETE", token: last.token })).status).toBe(
    204,
  );
  return room;
}

/** Nothing wider than the viewport: the page does not scroll sideways. */
async function expectNoHorizontalOverflow(page: Page): Promise<void> {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
}

/** The element lies inside the viewport's width (a control not cut off). */
async function expectWithinWidth(page: Page, selector: string): Promise<void> {
  const width = page.viewportSize()?.width ?? 0;
  for (const box of await page.locator(selector).evaluateAll((nodes) =>
    nodes.map((node) => {
      const rect = node.getBoundingClientRect();
      return { left: rect.left, right: rect.right, name: node.getAttribute("aria-label") ?? node.textContent };
    }),
  )) {
    expect(box.left, String(box.name)).toBeGreaterThanOrEqual(0);
    expect(box.right, String(box.name)).toBeLessThanOrEqual(width);
  }
}

/** A wait as the dashboard writes it: seconds, minutes or hours, never milliseconds. */
const waitText = /^(–|\d+(\.\d)? (s|min|h))$/;

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

  for (const [name, viewport] of [
    ["desktop", { width: 1280, height: 900 }],
    ["phone", { width: 390, height: 844 }],
  ] as const) {
    it(`shows each room's numbers as the API does, live from the stream, with charts and guarded controls (${name}, ${viewport.width} px)`, async () => {
      const room = await busyRoom(`busy-${name}`);
      const quiet = uniqueRoomId(`quiet-${name}`);
      await putRoom(quiet, { capacity: 5 });

      const page = await chrome.browser.newPage({ viewport });
      const logged = watchConsole(page);
      const requested: string[] = [];
      page.on("request", (request) => requested.push(new URL(request.url()).pathname));
      try {
        await page.goto(`${server.url}/admin`);
        await signIn(page, ADMIN_KEY);
        await page.locator("#dashboard").waitFor();
        expect(await page.evaluate(() => sessionStorage.getItem("waitroom:admin-key"))).toBe(ADMIN_KEY);
        await expect.poll(() => page.locator("#live").getAttribute("data-live")).toBe("on");

        // The card's numbers are the API's.
        const card = page.locator(`.room-card[data-room="${room}"]`);
        await card.waitFor();
        const stat = (key: string) => card.locator(`dd[data-stat="${key}"]`).textContent();
        const note = (key: string) => card.locator(`dd[data-stat="${key}"] + .of`).textContent();
        const api = await apiRoom(room);
        const recent = await apiHistory(room, 15);
        expect(await stat("queued")).toBe(String(api.stats.queued));
        expect(api.stats.queued).toBe(3);
        expect(await stat("offered")).toBe(String(api.stats.admitted));
        expect(await stat("active")).toBe(String(api.stats.active));
        expect(await note("active")).toBe(`of ${api.capacity} seats`);
        expect(await stat("rate")).toBe(String(api.stats.admitted_last_minute));
        expect(await note("rate")).toBe("limit 30");
        expect(await card.locator('[data-field="mode"]').textContent()).toBe("open");
        expect(await card.locator('[data-field="health"]').textContent()).toBe("no health gate");
        const joined = recent.buckets.reduce((sum, b) => sum + b.joined, 0);
        const gone = recent.buckets.reduce((sum, b) => sum + b.left + b.expired, 0);
        expect([joined, gone]).toEqual([6, 1]);
        await expect.poll(() => note("abandoned")).toBe(`${gone} of ${joined} joined`);
        expect(await stat("abandoned")).toBe(`${Math.round((100 * gone) / joined)} %`);
        for (const key of ["median", "p90", "oldest"]) expect(await stat(key)).toMatch(waitText);
        expect(await stat("p90")).not.toBe("–");
        expect(await page.locator(`.room-card[data-room="${quiet}"]`).count()).toBe(1);

        // Live: an arrival shows without a reload, and without polling the list.
        await page.evaluate(() => {
          (window as unknown as { marker: string }).marker = "same page";
        });
        await join(room);
        await expect.poll(() => stat("queued"), { timeout: 10_000 }).toBe("4");
        expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe("same page");
        expect(requested.filter((path) => path === "/v1/rooms")).toHaveLength(1);
        expect(requested.filter((path) => path === "/v1/events/rooms")).toHaveLength(1);

        // Charts of the selected room, drawn by uPlot, over each window.
        await page.getByLabel("Room", { exact: true }).selectOption(room);
        const admissions = page.locator("#chart-admissions");
        for (const [label, minutes] of [
          ["5 min", 5],
          ["24 h", 1440],
          ["1 h", 60],
        ] as const) {
          await page.getByRole("button", { name: label, exact: true }).click();
          await expect.poll(() => admissions.getAttribute("data-points")).toBe(String(minutes));
        }
        for (const figure of ["chart-depth", "chart-admissions", "chart-waits"]) {
          expect(await page.locator(`#${figure} .uplot canvas`).count()).toBe(1);
        }
        const hour = await apiHistory(room, 60);
        const [admitted, joinedSeries] = JSON.parse(
          (await admissions.getAttribute("data-values")) ?? "[]",
        ) as number[][];
        const total = (values: number[] | undefined) => (values ?? []).reduce((a, b) => a + b, 0);
        expect(total(admitted)).toBe(total(hour.buckets.map((b) => b.admitted)));
        expect(total(admitted)).toBe(2);
        expect(total(joinedSeries)).toBe(total(hour.buckets.map((b) => b.joined)));
        expect(["s", "min", "h"]).toContain(await page.locator("#chart-waits").getAttribute("data-unit"));
        // The depth chart's current minute follows the stream.
        const lastDepth = async () =>
          (JSON.parse((await page.locator("#chart-depth").getAttribute("data-values")) ?? "[[]]") as number[][])[0]?.at(
            -1,
          );
        expect(await lastDepth()).toBe(4);
        await join(room);
        await expect.poll(lastDepth).toBe(5);
        await expect.poll(() => stat("queued")).toBe("5");
        expect(await page.locator("#chart-waits .summary").textContent()).toMatch(
          /latest median is \d+(\.\d)? (s|min|h)\./,
        );
        // Every legend entry fits on its line.
        for (const height of await page
          .locator(".legend .item")
          .evaluateAll((items) => items.map((item) => item.getBoundingClientRect().height))) {
          expect(height).toBeLessThan(30);
        }

        await expectNoHorizontalOverflow(page);
        await expectWithinWidth(page, ".room-card button, .room-card input, .room-card select, .windows button");
        await screenshot(page, `admin-${name}`);

        // Pause asks first: cancelled, nothing changes; confirmed, the room is paused.
        await card.getByRole("button", { name: `Pause ${room}` }).click();
        const dialog = page.locator("#confirm");
        await dialog.waitFor();
        expect(await page.locator("#confirm-text").textContent()).toMatch(new RegExp(`^Pause ${room}\\?`));
        await screenshot(page, `admin-${name}-confirm`);
        await page.getByRole("button", { name: "Cancel" }).click();
        await dialog.waitFor({ state: "hidden" });
        expect((await roomRow(room))?.mode).toBe("open");
        await card.getByRole("button", { name: `Pause ${room}` }).click();
        await page.locator("#confirm-ok").click();
        await expect.poll(async () => (await roomRow(room))?.mode).toBe("paused");
        await expect.poll(() => card.locator('[data-field="mode"]').textContent()).toBe("paused");
        // Resuming turns nobody away: no question.
        await card.getByRole("button", { name: `Resume ${room}` }).click();
        await expect.poll(async () => (await roomRow(room))?.mode).toBe("open");
        expect(await dialog.isVisible()).toBe(false);

        // Raising capacity goes straight through; lowering it asks.
        await card.getByLabel("Capacity", { exact: true }).fill("3");
        await card.getByRole("button", { name: `Set capacity of ${room}` }).click();
        await expect.poll(async () => (await roomRow(room))?.capacity).toBe(3);
        expect(await dialog.isVisible()).toBe(false);
        await card.getByLabel("Capacity", { exact: true }).fill("1");
        await card.getByRole("button", { name: `Set capacity of ${room}` }).click();
        await dialog.waitFor();
        expect(await page.locator("#confirm-text").textContent()).toMatch(/from 3 to 1/);
        await page.locator("#confirm-ok").click();
        await expect.poll(async () => (await roomRow(room))?.capacity).toBe(1);
        await expect.poll(() => note("active")).toMatch(/^of 1 seats/);

        // The rate, and closing (which asks).
        await card.getByLabel("Rate", { exact: true }).fill("");
        await card.getByRole("button", { name: `Set rate of ${room}` }).click();
        await expect.poll(() => note("rate")).toBe("no rate limit");
        await card.getByLabel("Mode", { exact: true }).selectOption("closed");
        await card.getByRole("button", { name: `Set mode of ${room}` }).click();
        await dialog.waitFor();
        await page.locator("#confirm-ok").click();
        await expect.poll(async () => (await roomRow(room))?.mode).toBe("closed");

        // Delete asks, then the card goes.
        await page
          .locator(`.room-card[data-room="${quiet}"]`)
          .getByRole("button", { name: `Delete ${quiet}` })
          .click();
        await dialog.waitFor();
        await page.locator("#confirm-ok").click();
        await expect.poll(async () => roomRow(quiet)).toBeUndefined();
        await page.locator(`.room-card[data-room="${quiet}"]`).waitFor({ state: "detached" });

        // Create a room from the form.
        const created = uniqueRoomId(`made-${name}`);
        await page.getByLabel("Room id").fill(created);
        await page.locator("#create-capacity").fill("7");
        await page.getByRole("button", { name: "Create" }).click();
        await expect.poll(async () => (await roomRow(created))?.capacity).toBe(7);
        await page.locator(`.room-card[data-room="${created}"]`).waitFor();
        await expectNoHorizontalOverflow(page);

        // Signing out forgets the key.
        await page.getByRole("button", { name: "Sign out" }).click();
        await page.locator("#login").waitFor();
        expect(await page.evaluate(() => sessionStorage.getItem("waitroom:admin-key"))).toBeNull();
        expect(logged.filter((line) => line.startsWith("pageerror") || line.startsWith("error"))).toEqual([]);
      } finally {
        await page.close();
      }
    });
  }
});
