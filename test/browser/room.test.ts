import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { screenshot, useBrowser, watchConsole } from "./browser.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });
const chrome = useBrowser();

type Ticket = { ticket_id: string; token: string; status: string; position: number | null };
type Stored = { ticket_id: string; token: string; admission_token?: string };

async function createRoom(settings: Record<string, unknown>): Promise<string> {
  const room = uniqueRoomId("page");
  const response = await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.status).toBe(201);
  return room;
}

async function join(room: string): Promise<Ticket> {
  const response = await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" });
  expect(response.status).toBe(202);
  return (await response.json()) as Ticket;
}

async function leave(ticket: Ticket): Promise<void> {
  const response = await server.request(`/v1/tickets/${ticket.ticket_id}`, { method: "DELETE", token: ticket.token });
  expect(response.status).toBe(204);
}

async function ticketStatus(id: string): Promise<string | undefined> {
  const [row] = await db.sql<{ status: string }[]>`select status from waitroom.tickets where id = ${id}`;
  return row?.status;
}

/** The ticket the page keeps in sessionStorage. */
async function stored(page: Page, room: string): Promise<Stored> {
  const value = await page.evaluate((key) => sessionStorage.getItem(key), `waitroom:ticket:${room}`);
  expect(value, "the page keeps its ticket in sessionStorage").not.toBeNull();
  return JSON.parse(value as string) as Stored;
}

/** How far the page is wider than its viewport (0 or less: no horizontal scrolling). */
const horizontalOverflow = (page: Page) =>
  page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

const panelState = (page: Page) => page.locator("#panel").getAttribute("data-state");

describe("the waiting-room page", () => {
  it("serves HTML and its module with a strict content security policy", async () => {
    const response = await server.request("/rooms/some-room");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    expect(response.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(response.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await response.text();
    expect(html).toContain('data-room="some-room"');
    expect(html).toMatch(/<script type="module" src="\.\.\/assets\/room\.js\?v=[\w-]+"><\/script>/);
    expect(html).toContain('aria-live="polite"');

    const script = await server.request("/assets/room.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toMatch(/^text\/javascript/);
    const etag = script.headers.get("etag") as string;
    expect((await server.request("/assets/room.js", { headers: { "if-none-match": etag } })).status).toBe(304);
    expect((await server.request("/assets/nope.js")).status).toBe(404);
    expect((await server.request("/assets/..%2Fapp.ts")).status).toBe(404);
    expect((await server.request("/rooms/Not_A_Room")).status).toBe(404);
  });

  it("waits, sees its position fall, is admitted and claims by itself", async () => {
    const room = await createRoom({ capacity: 0, claim_seconds: 120, session_seconds: 600 });
    const others = [await join(room), await join(room), await join(room)];

    const page = await chrome.browser.newPage();
    const logged = watchConsole(page);
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("4");
      expect(await panelState(page)).toBe("queued");
      expect(await page.locator("#headline-text").textContent()).toBe("You are in the queue");
      expect(await page.locator("#depth").textContent()).toBe("4");
      expect(await page.getByRole("button", { name: "Leave the queue" }).isVisible()).toBe(true);
      expect(await page.getByRole("button", { name: "Join again" }).isVisible()).toBe(false);
      // Accessible: the progress bar has a label, position changes are announced politely.
      expect(await page.getByLabel(/Progress through the queue/).count()).toBe(1);
      expect(await page.locator("#announcer").getAttribute("aria-live")).toBe("polite");
      await expect.poll(() => page.locator("#announcer").textContent()).toBe("You are number 4 in line.");
      await page.locator("#connection[data-connection='live']").waitFor();
      await screenshot(page, "room-queued-4");

      const mine = await stored(page, room);
      expect(await ticketStatus(mine.ticket_id)).toBe("queued");

      // Others leave through the API: the page moves up, live.
      await leave(others[0] as Ticket);
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("3");
      await leave(others[1] as Ticket);
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("2");
      // Two of the three ahead have gone in: half of the line that was there at the start.
      expect(Number(await page.locator("#progress").getAttribute("value"))).toBe(50);
      await leave(others[2] as Ticket);
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("1");
      expect(await page.locator("#detail").textContent()).toBe("You are next.");
      await screenshot(page, "room-queued-next");

      // A seat frees up: the scheduler admits the page, which claims by itself.
      const opened = await server.request(`/v1/rooms/${room}`, {
        method: "PUT",
        token: ADMIN_KEY,
        body: { capacity: 1 },
      });
      expect(opened.status).toBe(200);
      await page.locator("#panel[data-state='active'] #token-details").waitFor({ timeout: 15_000 });
      expect(await page.locator("#headline-text").textContent()).toBe("You're in");
      // The room has no target_url: nowhere to continue to (test/browser/gate.test.ts has one).
      expect(await page.locator("#continue").isVisible()).toBe(false);
      await expect.poll(() => ticketStatus(mine.ticket_id)).toBe("active");
      const claimed = await stored(page, room);
      expect(claimed.admission_token).toMatch(/^ey[\w-]+\.[\w-]+\.[\w-]+$/);
      expect(await page.locator("#admission-token").inputValue()).toBe(claimed.admission_token);
      // The gate agrees.
      const check = await server.request("/v1/check", {
        method: "POST",
        body: { room, admission_token: claimed.admission_token },
      });
      expect(check.status).toBe(200);
      await page.locator("#token-details summary").click();
      await screenshot(page, "room-active");
      expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("says before a scheduled opening that places are drawn then, and shows its place once drawn", async () => {
    const opensAt = new Date(Date.now() + 4_000);
    const room = await createRoom({ capacity: 0, opens_at: opensAt.toISOString() });
    await join(room);
    await join(room);
    const page = await chrome.browser.newPage();
    const logged = watchConsole(page);
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await page.locator("#connection[data-connection='live']").waitFor({ timeout: 10_000 });
      expect(await panelState(page)).toBe("queued");
      expect(await page.locator("#position").textContent()).toBe("–");
      expect(await page.locator("#depth").textContent()).toBe("3");
      expect(await page.locator("#detail").textContent()).toBe(
        "Places are drawn when the room opens: everyone here by then has the same chance. Keep this page open.",
      );
      await screenshot(page, "room-before-the-draw");
      // The scheduler draws at opens_at; the stream brings the place the draw gave.
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 15_000 }).toMatch(/^[123]$/);
      expect(Date.now()).toBeGreaterThanOrEqual(opensAt.getTime());
      expect(await page.locator("#detail").textContent()).not.toContain("drawn");
      expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("resumes its place on reload instead of joining again", async () => {
    const room = await createRoom({ capacity: 0 });
    await join(room);
    const page = await chrome.browser.newPage();
    // expect.poll does not bound the call it repeats: a step that never answers fails by its own name.
    page.setDefaultTimeout(10_000);
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("2");
      const before = await stored(page, room);

      // The reloaded document must show the place, not the old one: wait for the new document's load.
      // location.reload() (which the page sees coming) runs after evaluate has answered, so evaluate
      // neither races the navigation nor waits on it.
      const reloaded = page.waitForEvent("load");
      await page.evaluate(() => {
        setTimeout(() => location.reload());
      });
      await reloaded;
      await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("2");
      expect((await stored(page, room)).ticket_id).toBe(before.ticket_id);
      expect(await ticketStatus(before.ticket_id)).toBe("queued");
      const [{ count }] =
        (await db.sql`select count(*)::int as count from waitroom.tickets where room_id = ${room}`) as [
          { count: number },
        ];
      expect(count).toBe(2);
    } finally {
      await page.close();
    }
  });

  it("leaves the queue when the page is closed, and with its button", async () => {
    const room = await createRoom({ capacity: 0 });
    const page = await chrome.browser.newPage();
    await page.goto(`${server.url}/rooms/${room}`);
    await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("1");
    const closed = await stored(page, room);
    await page.close({ runBeforeUnload: true });
    await expect.poll(() => ticketStatus(closed.ticket_id), { timeout: 10_000 }).toBe("left");

    const second = await chrome.browser.newPage();
    try {
      await second.goto(`${server.url}/rooms/${room}`);
      await expect.poll(() => second.locator("#position").textContent(), { timeout: 10_000 }).toBe("1");
      const mine = await stored(second, room);
      await second.getByRole("button", { name: "Leave the queue" }).click();
      await second.locator("#panel[data-state='left']").waitFor();
      expect(await ticketStatus(mine.ticket_id)).toBe("left");
      expect(await second.getByRole("button", { name: "Join again" }).isVisible()).toBe(true);
      await screenshot(second, "room-left");
    } finally {
      await second.close();
    }
  });

  for (const [name, width] of [
    ["desktop", 1280],
    ["phone", 390],
  ] as const) {
    it(`says plainly that there is no such room, offering nothing that cannot work (${name}, ${width} px)`, async () => {
      const context = await chrome.browser.newContext({ viewport: { width, height: 800 } });
      const page = await context.newPage();
      const logged = watchConsole(page);
      try {
        const room = uniqueRoomId("missing");
        await page.goto(`${server.url}/rooms/${room}`);
        await page.locator("#panel[data-state='unknown']").waitFor({ timeout: 10_000 });
        expect(await page.locator("#headline-text").textContent()).toBe("There is no waiting room here");
        expect(await page.locator("#detail").textContent()).toBe(
          `No waiting room is called “${room}”. Check the address you were given.`,
        );
        // Neither "Join again" nor "Connecting…": there is nothing to join or connect to.
        expect(await page.getByRole("button").filter({ visible: true }).count()).toBe(0);
        expect(await page.locator("#connection").isVisible()).toBe(false);
        expect(await page.getByText("Connecting").filter({ visible: true }).count()).toBe(0);
        await screenshot(page, `room-unknown-${name}`);
        expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
        expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }

  it("asks before giving up a seat, and keeps it when told to", async () => {
    const room = await createRoom({ capacity: 1, session_seconds: 600 });
    const page = await chrome.browser.newPage();
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await page.locator("#panel[data-state='active']").waitFor({ timeout: 15_000 });
      const mine = await stored(page, room);
      await expect.poll(() => ticketStatus(mine.ticket_id)).toBe("active");

      await page.getByRole("button", { name: "Give up my seat" }).click();
      const confirm = page.getByRole("group", { name: /Give up your seat\?/ });
      expect(await confirm.isVisible()).toBe(true);
      expect(await page.getByRole("button", { name: "Give up my seat" }).isVisible()).toBe(false);
      await screenshot(page, "room-confirm-give-up");
      await page.getByRole("button", { name: "Keep my seat" }).click();
      expect(await confirm.isVisible()).toBe(false);
      expect(await ticketStatus(mine.ticket_id)).toBe("active");
      expect(await page.locator("#panel").getAttribute("data-state")).toBe("active");

      await page.getByRole("button", { name: "Give up my seat" }).click();
      await page.getByRole("button", { name: "Yes, give it up" }).click();
      await page.locator("#panel[data-state='left']").waitFor({ timeout: 10_000 });
      expect(await ticketStatus(mine.ticket_id)).toBe("left");
    } finally {
      await page.close();
    }
  });

  for (const [name, width] of [
    ["desktop", 1280],
    ["phone", 390],
  ] as const) {
    it(`shows the estimated wait with its range on a line of its own (${name}, ${width} px)`, async () => {
      // A room that has admitted people lately has a rate to estimate from.
      const room = await createRoom({ capacity: 1, claim_seconds: 120, session_seconds: 600 });
      for (let admitted = 0; admitted < 3; admitted++) {
        const ticket = await join(room);
        await expect.poll(() => ticketStatus(ticket.ticket_id), { timeout: 10_000 }).toBe("admitted");
        await leave(ticket);
      }
      const holder = await join(room);
      await expect.poll(() => ticketStatus(holder.ticket_id), { timeout: 10_000 }).toBe("admitted");
      const ahead = await join(room);

      const context = await chrome.browser.newContext({ viewport: { width, height: 800 } });
      const page = await context.newPage();
      try {
        await page.goto(`${server.url}/rooms/${room}`);
        await expect.poll(() => page.locator("#position").textContent(), { timeout: 10_000 }).toBe("2");
        await expect.poll(() => page.locator("#eta-range").isVisible(), { timeout: 10_000 }).toBe(true);
        expect(await page.locator("#eta-estimate").textContent()).toMatch(/^(about \d+ minutes?|less than a minute)$/);
        expect(await page.locator("#eta-range").textContent()).toMatch(/^\d+–\d+ min$/);
        // The range is one unbroken line, below the estimate.
        const lines = await page.locator("#eta-range").evaluate((element) => element.getClientRects().length);
        expect(lines).toBe(1);
        const [estimate, range] = await Promise.all(
          ["#eta-estimate", "#eta-range"].map((selector) => page.locator(selector).boundingBox()),
        );
        expect(range?.y).toBeGreaterThanOrEqual((estimate?.y ?? 0) + (estimate?.height ?? 0) - 1);
        await screenshot(page, `room-eta-${name}`);
        expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
      } finally {
        await context.close();
        await leave(ahead);
        await leave(holder);
      }
    });
  }

  it("solves a room's proof of work in a worker, under the page's policy, and joins", async () => {
    const room = await createRoom({ capacity: 0, proof_of_work_bits: 10 });
    const response = await server.request(`/rooms/${room}`);
    expect(response.headers.get("content-security-policy")).toContain("worker-src 'self'");
    const page = await chrome.browser.newPage();
    const logged = watchConsole(page);
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await page.locator("#panel[data-state='queued']").waitFor({ timeout: 30_000 });
      const { ticket_id } = await stored(page, room);
      expect(await ticketStatus(ticket_id)).toBe("queued");
      // The page's first join met the room's demand; its second brought a solution that was taken.
      const joins = await db.sql<{ n: string }[]>`select count(*) as n from waitroom.tickets where room_id = ${room}`;
      expect(Number(joins[0]?.n)).toBe(1);
      expect(logged.filter((line) => line.startsWith("pageerror") || /Content Security Policy/.test(line))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("says so when the room's queue is full", async () => {
    const room = await createRoom({ capacity: 0, max_queued: 1 });
    await join(room);
    const page = await chrome.browser.newPage();
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await page.locator("#panel[data-state='error']").waitFor({ timeout: 10_000 });
      expect(await page.locator("#detail").textContent()).toBe(
        "This waiting room is full right now. Try again in a few minutes.",
      );
    } finally {
      await page.close();
    }
  });
});
