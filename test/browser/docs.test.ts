import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../helpers/database.js";
import { useTestServer } from "../helpers/http.js";
import { screenshot, useBrowser, watchConsole } from "./browser.js";

const db = useTestDatabase();
const server = useTestServer(db);
const chrome = useBrowser();

/** Every operation /openapi.json describes, by its summary. */
async function operationSummaries(): Promise<string[]> {
  const document = (await (await server.request("/openapi.json")).json()) as {
    paths: Record<string, Record<string, { summary?: string }>>;
  };
  return Object.values(document.paths).flatMap((item) =>
    Object.values(item).map((operation) => operation.summary ?? ""),
  );
}

describe("/docs", () => {
  it("serves the renderer page and its bundle from this service; only its styles may be inline", async () => {
    const response = await server.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    expect(response.headers.get("content-security-policy")).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    const html = await response.text();
    expect(html).toMatch(/<script src="\/assets\/vendor\/scalar-api-reference\.js\?v=[\d.]+"><\/script>/);
    expect(html).not.toMatch(/https?:\/\//); // nothing from another origin

    const bundle = await server.request("/assets/vendor/scalar-api-reference.js", {
      headers: { "accept-encoding": "gzip" },
    });
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get("content-type")).toMatch(/^text\/javascript/);
    const etag = bundle.headers.get("etag") as string;
    expect(etag).toMatch(/^"scalar-api-reference-\d+\.\d+\.\d+"$/);
    const notModified = await server.request("/assets/vendor/scalar-api-reference.js", {
      headers: { "if-none-match": etag },
    });
    expect(notModified.status).toBe(304);
  });

  for (const [name, width] of [
    ["desktop", 1280],
    ["phone", 390],
  ] as const) {
    it(`renders the API reference from /openapi.json in Chromium (${name}, ${width} px), offline`, async () => {
      const context = await chrome.browser.newContext({ viewport: { width, height: 900 } });
      const page = await context.newPage();
      const logged = watchConsole(page);
      const foreign: string[] = [];
      page.on("request", (request) => {
        if (!request.url().startsWith(server.url) && !request.url().startsWith("data:")) foreign.push(request.url());
      });
      try {
        await page.goto(`${server.url}/docs`);
        // The first operation's heading, once the document is loaded and rendered.
        const summaries = await operationSummaries();
        expect(summaries.length).toBeGreaterThan(10);
        expect(summaries).not.toContain("");
        await page.getByRole("heading", { name: summaries[0] }).first().waitFor({ timeout: 30_000 });
        // Every operation is there by its summary (the phone's sidebar is folded away: read the page's text).
        const text = (await page.locator("body").textContent())?.replace(/\s+/g, " ");
        for (const summary of summaries) expect(text, logged.join("\n")).toContain(summary);
        expect(text).toContain("/v1/rooms/{room}/tickets");
        await screenshot(page, `docs-${name}`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        expect(overflow).toBeLessThanOrEqual(0);
        expect(foreign).toEqual([]);
        expect(logged.filter((line) => /^error|^pageerror/.test(line))).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }
});

describe("GET / and /favicon.ico", () => {
  it("answers a landing page linking the pages and the docs, and an icon", async () => {
    const response = await server.request("/");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    expect(response.headers.get("content-security-policy")).toContain("style-src 'self';");
    const icon = await server.request("/favicon.ico");
    expect(icon.status).toBe(200);
    expect(icon.headers.get("content-type")).toBe("image/svg+xml");
    expect(await icon.text()).toMatch(/^<svg /);
  });

  for (const [name, width] of [
    ["desktop", 1280],
    ["phone", 390],
  ] as const) {
    it(`links to every page from the landing page (${name}, ${width} px)`, async () => {
      const context = await chrome.browser.newContext({ viewport: { width, height: 800 } });
      const page = await context.newPage();
      const logged = watchConsole(page);
      try {
        await page.goto(`${server.url}/`);
        const links = await page
          .getByRole("link")
          .evaluateAll((elements) => elements.map((element) => element.getAttribute("href")));
        expect(links).toEqual(
          expect.arrayContaining(["/rooms/demo", "/admin", "/docs", "/openapi.json", "/healthz", "/metrics"]),
        );
        for (const href of links) expect((await server.request(href as string)).status, href as string).toBe(200);
        await screenshot(page, `landing-${name}`);
        expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(
          0,
        );
        expect(logged).toEqual([]);
      } finally {
        await context.close();
      }
    });
  }
});
