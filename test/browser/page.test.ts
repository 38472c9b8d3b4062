/*
 * A room's own page: its settings (title, message, brand colour, logo, admitted text, help link, default
 * language) applied as text under the same CSP, the page's words in the visitor's language, right to left
 * for Arabic, at desktop and phone widths. Screenshots are decoded (by the browser itself) and checked.
 */
import { readFile } from "node:fs/promises";
import type { BrowserContext, Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { pageLanguages } from "../../src/queue/rooms.js";
import { useTestDatabase } from "../helpers/database.js";
import { ADMIN_KEY, useTestServer } from "../helpers/http.js";
import { uniqueRoomId } from "../helpers/queue.js";
import { screenshot, useBrowser, watchConsole } from "./browser.js";

const db = useTestDatabase();
const server = useTestServer(db, { worker: true });
const chrome = useBrowser();

type I18n = { languages: string[]; missingKeys(lang: string): string[] };
const i18nModule = new URL("../../web/i18n.js", import.meta.url).href;
const pageModule = new URL("../../web/page.js", import.meta.url).href;

/** WCAG 2 contrast ratio of two #rrggbb colours. */
function contrast(a: string, b: string): number {
  const luminance = (hex: string) => {
    const [r = 0, g = 0, bl = 0] = [1, 3, 5].map((at) => {
      const c = Number.parseInt(hex.slice(at, at + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (light + 0.05) / (dark + 0.05);
}

const LOGO_URL = "https://logo.example/brand/logo.svg";
const LOGO_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#123456"/></svg>';

async function createRoom(settings: Record<string, unknown>): Promise<string> {
  const room = uniqueRoomId("brand");
  const response = await server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: settings });
  expect(response.status).toBe(201);
  return room;
}

async function join(room: string): Promise<void> {
  expect((await server.request(`/v1/rooms/${room}/tickets`, { method: "POST" })).status).toBe(202);
}

/** A context that sends this Accept-Language and answers the logo's origin itself (no network). */
async function visitor(acceptLanguage: string, viewport: { width: number; height: number }): Promise<BrowserContext> {
  const context = await chrome.browser.newContext({
    viewport,
    extraHTTPHeaders: { "accept-language": acceptLanguage },
  });
  await context.route("https://logo.example/**", (route) =>
    route.fulfill({ status: 200, contentType: "image/svg+xml", body: LOGO_SVG }),
  );
  return context;
}

const htmlAttributes = (page: Page) =>
  page.evaluate(() => ({ lang: document.documentElement.lang, dir: document.documentElement.dir }));

const horizontalOverflow = (page: Page) =>
  page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

/** The screenshot decoded by the browser: its size and the colour of one pixel. */
async function decoded(page: Page, path: string, at: { x: number; y: number }) {
  const png = (await readFile(path)).toString("base64");
  return page.evaluate(
    async ({ png, at }) => {
      const image = new Image();
      image.src = `data:image/png;base64,${png}`;
      await image.decode();
      const canvas = document.createElement("canvas");
      canvas.width = image.width;
      canvas.height = image.height;
      const context = canvas.getContext("2d") as CanvasRenderingContext2D;
      context.drawImage(image, 0, 0);
      const [r = 0, g = 0, b = 0] = context.getImageData(at.x, at.y, 1, 1).data;
      return {
        width: image.width,
        height: image.height,
        pixel: `#${[r, g, b].map((c) => c.toString(16).padStart(2, "0")).join("")}`,
      };
    },
    { png, at },
  );
}

describe("the page's languages", () => {
  it("has every word in every language the settings allow", async () => {
    const i18n = (await import(i18nModule)) as I18n;
    expect(i18n.languages).toEqual([...pageLanguages]);
    expect(Object.fromEntries(pageLanguages.map((lang) => [lang, i18n.missingKeys(lang)]))).toEqual(
      Object.fromEntries(pageLanguages.map((lang) => [lang, []])),
    );
  });

  it("is chosen from Accept-Language, then the room's default, then English", async () => {
    const spanish = await createRoom({ capacity: 1, page_language: "es" });
    const plain = await createRoom({ capacity: 1 });
    const served = async (room: string, acceptLanguage?: string) => {
      const response = await server.request(`/rooms/${room}`, {
        headers: acceptLanguage ? { "accept-language": acceptLanguage } : {},
      });
      expect(response.headers.get("vary")).toContain("accept-language");
      const html = await response.text();
      return {
        language: response.headers.get("content-language"),
        html: /<html lang="(\w+)" dir="(\w+)">/.exec(html)?.slice(1),
      };
    };
    expect(await served(plain, "de-DE,de;q=0.9,en;q=0.8")).toEqual({ language: "de", html: ["de", "ltr"] });
    expect(await served(plain, "pt-BR")).toEqual({ language: "pt", html: ["pt", "ltr"] });
    expect(await served(plain, "zh-Hant-TW, ja;q=0.5")).toEqual({ language: "zh", html: ["zh", "ltr"] });
    expect(await served(plain, "en;q=0.1, ar")).toEqual({ language: "ar", html: ["ar", "rtl"] });
    expect(await served(plain, "fr;q=0, ja")).toEqual({ language: "ja", html: ["ja", "ltr"] });
    expect(await served(plain, "he, ko-KR")).toEqual({ language: "en", html: ["en", "ltr"] });
    // The room's default when the header names nothing the page speaks (or nothing at all).
    expect(await served(spanish, "he, ko-KR, *")).toEqual({ language: "es", html: ["es", "ltr"] });
    expect(await served(spanish)).toEqual({ language: "es", html: ["es", "ltr"] });
    // A language the visitor names still wins over the room's.
    expect(await served(spanish, "fr-CA")).toEqual({ language: "fr", html: ["fr", "ltr"] });
  });

  it("speaks the room's default in the browser, with the locale's numbers", async () => {
    const room = await createRoom({ capacity: 0, page_language: "ar", idle_seconds: 3600 });
    await join(room);
    await join(room);
    const context = await visitor("he-IL, ko;q=0.8", { width: 390, height: 844 });
    const page = await context.newPage();
    const logged = watchConsole(page);
    try {
      await page.goto(`${server.url}/rooms/${room}`);
      await page.locator('#panel[data-state="queued"]').waitFor();
      expect(await htmlAttributes(page)).toEqual({ lang: "ar", dir: "rtl" });
      expect(await page.locator("#headline-text").textContent()).toBe("أنت في الطابور");
      expect(await page.locator("#position-label").textContent()).toBe("مكانك في الطابور");
      // Numbers as Arabic writes them, whatever the browser's own locale.
      const three = await page.evaluate(() => new Intl.NumberFormat("ar").format(3));
      await expect.poll(() => page.locator("#position").textContent()).toBe(three);
      expect(await page.locator("#announcer").getAttribute("aria-live")).toBe("polite");
      expect(await page.locator("h1").count()).toBe(1);
      expect(await page.locator("h2#headline").count()).toBe(1);
    } finally {
      await context.close();
    }
    expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
  });
});

describe("a room's own page", () => {
  it("writes on any brand colour in black or white with at least 4.5:1 contrast", async () => {
    const { textOn } = (await import(pageModule)) as { textOn(hex: string): string };
    const steps = ["00", "33", "55", "77", "88", "99", "aa", "cc", "ee", "ff"];
    const colours = steps.flatMap((r) => steps.flatMap((g) => steps.map((b) => `#${r}${g}${b}`)));
    const worst = Math.min(...colours.map((colour) => contrast(colour, textOn(colour))));
    expect(worst).toBeGreaterThanOrEqual(4.5);
    expect([textOn("#ffcc00"), textOn("#0b5cad"), textOn("#000000"), textOn("#ffffff")]).toEqual([
      "#000000",
      "#ffffff",
      "#ffffff",
      "#000000",
    ]);
  });

  const brand = {
    page_title: "Launch <b>day</b>",
    page_message: "Thanks for waiting.\nThe shop opens to a few at a time.",
    page_brand_color: "#ffcc00",
    page_logo_url: LOGO_URL,
    page_admitted_text: "Your basket is waiting: go ahead.",
    page_help_url: "https://status.example.com/launch",
  };
  const languages = [
    { name: "en", acceptLanguage: "en-GB,en;q=0.9", dir: "ltr", headline: "You're in", eyebrow: "Waiting room" },
    { name: "ar", acceptLanguage: "ar-EG,ar;q=0.9", dir: "rtl", headline: "يمكنك الدخول", eyebrow: "غرفة الانتظار" },
  ] as const;
  const viewports = [
    { name: "desktop", width: 1280, height: 800 },
    { name: "phone", width: 390, height: 844 },
  ] as const;

  for (const language of languages) {
    for (const viewport of viewports) {
      it(`shows its brand, logo and words (${language.name}, ${language.dir}, ${viewport.name} ${viewport.width} px)`, async () => {
        const room = await createRoom({ capacity: 1, claim_seconds: 120, session_seconds: 600, ...brand });
        const context = await visitor(language.acceptLanguage, viewport);
        const page = await context.newPage();
        const logged = watchConsole(page);
        const violations: string[] = [];
        await page.exposeFunction("reportViolation", (uri: string) => violations.push(uri));
        await page.addInitScript(() => {
          document.addEventListener("securitypolicyviolation", (event) =>
            (window as unknown as { reportViolation(uri: string): void }).reportViolation(event.blockedURI),
          );
        });
        try {
          const response = await page.goto(`${server.url}/rooms/${room}`);
          const csp = response?.headers()["content-security-policy"] ?? "";
          expect(csp).toContain("img-src 'self' data: https://logo.example;");
          expect(csp).toContain("script-src 'self';");
          await page.locator('#panel[data-state="active"]').waitFor({ timeout: 15_000 });

          expect(await htmlAttributes(page)).toEqual({ lang: language.name, dir: language.dir });
          expect(await page.locator("#headline-text").textContent()).toBe(language.headline);
          expect(await page.locator(".eyebrow").textContent()).toBe(language.eyebrow);
          // The room's text, as text: the title's markup is shown, not parsed.
          expect(await page.locator("h1").textContent()).toBe("Launch <b>day</b>");
          expect(await page.locator("h1 b").count()).toBe(0);
          expect(await page.locator("#message").textContent()).toBe(brand.page_message);
          expect(await page.locator("#detail").textContent()).toBe(brand.page_admitted_text);
          expect(await page.locator("#help-link").getAttribute("href")).toBe(brand.page_help_url);
          expect(await page.title()).toContain("Launch <b>day</b>");

          // The logo loaded, from the one origin the CSP allows; nothing was blocked.
          const logo = page.locator("#logo");
          expect(await logo.isVisible()).toBe(true);
          expect(await logo.evaluate((image: HTMLImageElement) => image.naturalWidth)).toBe(120);
          expect(violations).toEqual([]);

          // The brand colour on the Continue button, with black text (more contrast than white on yellow).
          const button = await page.locator("#continue").evaluate((element) => {
            const style = getComputedStyle(element);
            return { background: style.backgroundColor, color: style.color };
          });
          expect(button).toEqual({ background: "rgb(255, 204, 0)", color: "rgb(0, 0, 0)" });

          // The panel's accent stripe on the start side: left in English, right in Arabic.
          const borders = await page.locator("#panel").evaluate((element) => {
            const style = getComputedStyle(element);
            return { left: Number.parseFloat(style.borderLeftWidth), right: Number.parseFloat(style.borderRightWidth) };
          });
          const [start, end] = language.dir === "rtl" ? [borders.right, borders.left] : [borders.left, borders.right];
          expect(start).toBeGreaterThan(end);
          const logoBox = await logo.boundingBox();
          const titleBox = await page.locator("h1").boundingBox();
          if (!logoBox || !titleBox) throw new Error("the logo and the title are laid out");
          // Side by side, the logo first in the reading direction.
          expect(logoBox.y < titleBox.y + titleBox.height && titleBox.y < logoBox.y + logoBox.height).toBe(true);
          expect(language.dir === "rtl" ? logoBox.x > titleBox.x : logoBox.x < titleBox.x).toBe(true);

          expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
          const header = await page.locator(".room-header").boundingBox();
          if (!header) throw new Error("the header is laid out");
          const path = await screenshot(page, `room-brand-${language.name}-${viewport.name}`);
          // The screenshot is the viewport's width (nothing sticks out) and shows the brand bar atop the header.
          const shot = await decoded(page, path, {
            x: Math.round(header.x + header.width / 2),
            y: Math.round(header.y + 2),
          });
          expect(shot.width).toBe(viewport.width);
          expect(shot.height).toBeGreaterThanOrEqual(viewport.height);
          expect(shot.pixel).toBe("#ffcc00");
        } finally {
          await context.close();
        }
        expect(logged.filter((line) => line.startsWith("pageerror"))).toEqual([]);
      });
    }
  }

  it("keeps the CSP closed to images from anywhere but the room's logo origin", async () => {
    const plain = await createRoom({ capacity: 1 });
    const response = await server.request(`/rooms/${plain}`);
    expect(response.headers.get("content-security-policy")).toContain("img-src 'self' data:;");
    const html = await response.text();
    expect(html).toContain('<script type="application/json" id="page-settings">');
    expect(html).not.toContain("logo.example");

    const branded = await createRoom({ capacity: 1, page_logo_url: LOGO_URL });
    const context = await visitor("en", { width: 1280, height: 800 });
    const page = await context.newPage();
    try {
      await page.goto(`${server.url}/rooms/${branded}`);
      await page.locator("#logo:visible").waitFor();
      // The logo's origin is allowed; another is not.
      const blocked = await page.evaluate(
        () =>
          new Promise<string>((resolve) => {
            document.addEventListener("securitypolicyviolation", (event) => resolve(event.effectiveDirective));
            const image = new Image();
            image.src = "https://elsewhere.example/tracker.png";
            document.body.append(image);
          }),
      );
      expect(blocked).toBe("img-src");
    } finally {
      await context.close();
    }
  });

  it("refuses page settings that are not plain text, colours or safe URLs, and changes nothing", async () => {
    const room = await createRoom({ capacity: 1, page_title: "Before" });
    const put = (settings: Record<string, unknown>) =>
      server.request(`/v1/rooms/${room}`, { method: "PUT", token: ADMIN_KEY, body: settings });
    for (const settings of [
      { page_brand_color: "red" },
      { page_logo_url: "http://logo.example/x.png" },
      { page_logo_url: "https://logo.example;script-src */x.png" },
      { page_help_url: "javascript:alert(1)" },
      { page_language: "he" },
      { page_title: "a\u0007b" },
    ]) {
      const response = await put({ page_title: "After", ...settings });
      expect(response.status, JSON.stringify(settings)).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("invalid_request");
    }
    const listed = (await (await server.request(`/v1/rooms/${room}`, { token: ADMIN_KEY })).json()) as Record<
      string,
      unknown
    >;
    expect(listed).toMatchObject({ page_title: "Before", page_brand_color: null, page_logo_url: null });
  });
});
