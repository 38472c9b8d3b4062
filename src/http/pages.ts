import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { Context, Env, Hono } from "hono";
import type { Sql } from "../db/client.js";
import * as queue from "../queue/index.js";
import { pageLanguages, type RoomPageSettings } from "../queue/rooms.js";
import { roomId } from "./contracts.js";

/*
 * The pages people see: the waiting room (/rooms/{room}) and the admin
 * dashboard (/admin). Plain HTML with a vanilla ES module each, served as
 * they are from web/: no framework, no build step, no CDN. They call
 * the public HTTP API like any other client; tokens stay in sessionStorage
 * and in the event stream's query string (which the request log never logs).
 */

type Asset = { body: string; type: string; etag: string };

const assetTypes: Record<string, string> = {
  "room.js": "text/javascript; charset=utf-8",
  "i18n.js": "text/javascript; charset=utf-8",
  "page.js": "text/javascript; charset=utf-8",
  "handover.js": "text/javascript; charset=utf-8",
  "pow-worker.js": "text/javascript; charset=utf-8",
  "admin.js": "text/javascript; charset=utf-8",
  "docs.js": "text/javascript; charset=utf-8",
  "pages.css": "text/css; charset=utf-8",
  "favicon.svg": "image/svg+xml",
};

/** Read once at start: a fixed list, so no path from a request ever reaches the file system. */
const assets = new Map<string, Asset>(
  Object.entries(assetTypes).map(([name, type]) => {
    const body = readFileSync(new URL(`../../web/${name}`, import.meta.url), "utf8");
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    return [name, { body, type, etag }];
  }),
);

/**
 * Scripts, styles and requests from this origin only; nothing inline, no framing. The API reference's
 * renderer also writes styles of its own into the page (style elements and attributes, without a nonce):
 * that page alone allows inline styles; its scripts are held to the same rule. A room's page may show
 * images from its logo's origin, and from nowhere else.
 */
type PagePolicy = {
  inlineStyles?: boolean;
  /** Another origin the page's images may come from (a room's logo). */
  imageOrigin?: string | undefined;
  /** Workers from this origin: the waiting room's proof of work runs in one (web/pow-worker.js). */
  workers?: boolean;
};

const contentSecurityPolicy = ({ inlineStyles = false, imageOrigin, workers = false }: PagePolicy) =>
  [
    "default-src 'none'",
    "script-src 'self'",
    inlineStyles ? "style-src 'self' 'unsafe-inline'" : "style-src 'self'",
    "connect-src 'self'",
    ...(workers ? ["worker-src 'self'"] : []),
    `img-src 'self' data:${imageOrigin ? ` ${imageOrigin}` : ""}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");

function securityHeaders(c: Context, options: PagePolicy = {}): void {
  c.header("content-security-policy", contentSecurityPolicy(options));
  c.header("x-content-type-options", "nosniff");
  // Nothing about the page (or a ticket) travels to other sites in Referer.
  c.header("referrer-policy", "no-referrer");
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch] ?? ch);

/** An asset's address under `root` (see page()): a new version is a new URL (its hash). */
const assetUrl = (name: string, root = "/") => `${root}assets/${name}?v=${assets.get(name)?.etag.slice(1, 9)}`;

/** The language of a page and the direction it is written in. */
type PageLocale = { lang: string; dir: "ltr" | "rtl" };

/**
 * A page; `vendor` names files under /assets/vendor/ it needs (stylesheets, and scripts that run before its own).
 * `root` prefixes its own files: the room page says "../" (it sits at rooms/{room}), so it works where the
 * gate's proxy serves the service under a path of the protected site (/.waitroom/rooms/{room}).
 */
const page = (
  title: string,
  script: string | undefined,
  body: string,
  vendor: string[] = [],
  locale: PageLocale = { lang: "en", dir: "ltr" },
  root = "/",
) => `<!doctype html>
<html lang="${locale.lang}" dir="${locale.dir}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="${root}favicon.ico" type="image/svg+xml">
${vendor
  .map((name) =>
    name.endsWith(".css")
      ? `<link rel="stylesheet" href="${vendorUrl(name)}">`
      : // Deferred like the module below, and run before it, in document order.
        `<script defer src="${vendorUrl(name)}"></script>`,
  )
  .join("\n")}
<link rel="stylesheet" href="${assetUrl("pages.css", root)}">
${script ? `<script type="module" src="${assetUrl(script, root)}"></script>` : ""}
</head>
<body>
${body}
</body>
</html>
`;

export type PageLanguage = (typeof pageLanguages)[number];

/** The languages the page writes right to left. */
const rightToLeft: ReadonlySet<PageLanguage> = new Set(["ar"]);

const isPageLanguage = (tag: string): tag is PageLanguage => (pageLanguages as readonly string[]).includes(tag);

/**
 * The page's language: the visitor's most preferred (by q) of those the page speaks, matched on the primary
 * subtag (pt-BR is pt, zh-Hant is zh); else the room's default; else English.
 */
export function pageLanguage(acceptLanguage: string | undefined, roomDefault: string | null): PageLanguage {
  const wanted = (acceptLanguage ?? "")
    .split(",")
    .map((entry, order) => {
      const [tag = "", ...parameters] = entry.trim().split(";");
      const q = parameters.map((p) => /^\s*q=([0-9.]+)\s*$/i.exec(p)?.[1]).find((value) => value !== undefined);
      return { primary: tag.trim().split("-")[0]?.toLowerCase() ?? "", q: q === undefined ? 1 : Number(q), order };
    })
    .filter(({ q }) => q > 0)
    .sort((a, b) => b.q - a.q || a.order - b.order);
  const found = wanted.find(({ primary }) => isPageLanguage(primary))?.primary;
  if (found && isPageLanguage(found)) return found;
  return roomDefault && isPageLanguage(roomDefault) ? roomDefault : "en";
}

/** The origin of a logo URL for the CSP's img-src; SQL and zod allow only plain ASCII hosts there. */
function logoOrigin(url: string | null): string | undefined {
  if (!url || !URL.canParse(url)) return undefined;
  return new URL(url).origin;
}

/** Data for the page's script, inside a <script type="application/json">: no "<" can end the element early. */
const jsonData = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c");

export function roomPage(room: string, settings: RoomPageSettings | null, language: PageLanguage): string {
  const id = escapeHtml(room);
  const title = settings?.page_title ?? room;
  const logo = settings?.page_logo_url && logoOrigin(settings.page_logo_url) ? settings.page_logo_url : null;
  // The page (web/page.js) sets every one of these as text or as a property, never as HTML.
  const data = {
    title,
    message: settings?.page_message ?? null,
    brand_color: settings?.page_brand_color ?? null,
    logo_url: logo,
    admitted_text: settings?.page_admitted_text ?? null,
    help_url: settings?.page_help_url ?? null,
  };
  return page(
    title,
    "room.js",
    `<main id="room" class="room" data-room="${id}" data-i18n-module="${assetUrl("i18n.js", "../")}" data-page-module="${assetUrl("page.js", "../")}" data-handover-module="${assetUrl("handover.js", "../")}" data-pow-worker="${assetUrl("pow-worker.js", "../")}">
  <script type="application/json" id="page-settings">${jsonData(data)}</script>
  <header class="room-header">
    <img id="logo" class="logo" alt="" hidden>
    <div>
      <p class="eyebrow" data-i18n="eyebrow">Waiting room</p>
      <h1 id="title" dir="auto">${escapeHtml(title)}</h1>
    </div>
  </header>
  <p id="message" class="message" dir="auto" hidden></p>
  <noscript><p class="panel" data-i18n="noscript">This waiting room needs JavaScript to hold your place and let you in.</p></noscript>
  <section id="panel" class="panel" data-state="connecting" aria-labelledby="headline" aria-busy="true">
    <h2 id="headline"><span class="icon" aria-hidden="true">…</span> <span id="headline-text">Joining the queue…</span></h2>
    <p id="detail" dir="auto">One moment while we save your place.</p>
    <p id="notice" class="notice" hidden></p>
    <div id="waiting" hidden>
      <dl class="numbers">
        <div><dt id="position-label" data-i18n="position_label">Your place in line</dt><dd id="position" aria-labelledby="position-label">–</dd></div>
        <div><dt id="depth-label" data-i18n="depth_label">People waiting</dt><dd id="depth" aria-labelledby="depth-label">–</dd></div>
        <div><dt id="eta-label" data-i18n="eta_label">Estimated wait</dt><dd id="eta" aria-labelledby="eta-label"><span id="eta-estimate">–</span> <span id="eta-range" class="range" hidden></span></dd></div>
      </dl>
      <label for="progress"><span data-i18n="progress_label">Progress through the queue</span> <span id="progress-text"></span></label>
      <progress id="progress" max="100" value="0">0%</progress>
    </div>
    <div id="active" hidden>
      <p id="continue-line" hidden><a id="continue" class="button" href="#continue" data-i18n="continue">Continue</a></p>
      <p id="expires"></p>
      <details id="token-details" hidden>
        <summary data-i18n="token_summary">Admission token</summary>
        <label for="admission-token" data-i18n="token_label">Your admission token (the site you are going to checks it)</label>
        <textarea id="admission-token" readonly rows="4" spellcheck="false"></textarea>
      </details>
    </div>
    <p class="actions">
      <button id="leave" type="button" hidden>Leave the queue</button>
      <button id="rejoin" type="button" hidden>Join again</button>
    </p>
    <div id="confirm-leave" class="confirm" role="group" aria-labelledby="confirm-leave-text" hidden>
      <p id="confirm-leave-text" data-i18n="confirm_leave">Give up your seat? It goes to the next person in line at once; you would have to queue again.</p>
      <p class="actions">
        <button id="confirm-leave-yes" type="button" class="danger" data-i18n="confirm_yes">Yes, give it up</button>
        <button id="confirm-leave-no" type="button" data-i18n="confirm_no">Keep my seat</button>
      </p>
    </div>
  </section>
  <p id="connection" class="connection" data-connection="connecting"><span class="icon" aria-hidden="true">○</span> <span id="connection-text" data-i18n="conn_connecting">Connecting…</span></p>
  <p id="help" class="help" hidden><a id="help-link" rel="noopener noreferrer" data-i18n="help">Status and help</a></p>
  <div id="announcer" class="visually-hidden" role="status" aria-live="polite" aria-atomic="true"></div>
</main>`,
    [],
    { lang: language, dir: rightToLeft.has(language) ? "rtl" : "ltr" },
    "../",
  );
}

/**
 * The room's page settings; null for an unknown room, and when the database cannot answer: the page then
 * shows its defaults and its script reports what the API says.
 */
async function readRoomPage(sql: Sql, room: string): Promise<RoomPageSettings | null> {
  try {
    return (await queue.showRoomPage(sql, room)) ?? null;
  } catch {
    return null;
  }
}

export function adminPage(): string {
  return page(
    "waitroom admin",
    "admin.js",
    `<main id="admin" class="admin">
  <header class="admin-header">
    <h1>waitroom admin</h1>
    <p class="header-status"><span id="live" class="live" data-live="off" hidden><span class="icon" aria-hidden="true">○</span> <span id="live-text">Connecting…</span></span> <span id="updated" class="muted"></span> <button id="signout" type="button" hidden>Sign out</button></p>
  </header>
  <noscript><p class="panel">The dashboard needs JavaScript.</p></noscript>
  <form id="login" class="panel" hidden>
    <h2>Sign in</h2>
    <p><label for="admin-key">Admin key (<code>WAITROOM_ADMIN_KEY</code>)</label>
    <input id="admin-key" name="admin-key" type="password" autocomplete="current-password" required minlength="1"></p>
    <p id="login-error" class="error" role="alert"></p>
    <p><button type="submit">Sign in</button></p>
  </form>
  <div id="dashboard" hidden>
    <section aria-labelledby="rooms-title">
      <h2 id="rooms-title">Rooms</h2>
      <p class="muted note">Live from the service's stream. Waits and abandonment cover the last 15 minutes; p90 is the worst minute's.</p>
      <div id="rooms" class="room-cards"></div>
      <p id="no-rooms" hidden>No rooms yet.</p>
      <form id="create" class="inline-form">
        <fieldset>
          <legend>Create a room</legend>
          <span><label for="create-id">Room id</label>
          <input id="create-id" required pattern="[a-z0-9][a-z0-9_\\-]{0,47}" placeholder="launch"></span>
          <span><label for="create-capacity">Capacity</label>
          <input id="create-capacity" type="number" min="0" required value="100"></span>
          <button type="submit">Create</button>
        </fieldset>
      </form>
    </section>
    <section aria-labelledby="charts-title">
      <h2 id="charts-title">History</h2>
      <div class="chart-controls">
        <span><label for="chart-room">Room</label> <select id="chart-room"></select></span>
        <span role="group" aria-label="Time window" class="windows">
          <button type="button" data-minutes="5" aria-pressed="false">5 min</button>
          <button type="button" data-minutes="60" aria-pressed="true">1 h</button>
          <button type="button" data-minutes="1440" aria-pressed="false">24 h</button>
        </span>
      </div>
      <div class="charts">
        <figure id="chart-depth" class="chart"><figcaption>Queue depth <span class="legend"><span class="item"><span class="key area"></span> queued</span></span></figcaption><div class="plot"></div><p class="visually-hidden summary"></p></figure>
        <figure id="chart-admissions" class="chart"><figcaption>Per minute <span class="legend"><span class="item"><span class="key bar"></span> admitted</span> <span class="item"><span class="key joined"></span> joined</span> <span class="item"><span class="key limit"></span> limit</span></span></figcaption><div class="plot"></div><p class="visually-hidden summary"></p></figure>
        <figure id="chart-waits" class="chart"><figcaption>Wait before admission <span class="legend"><span class="item"><span class="key median"></span> median</span> <span class="item"><span class="key p90"></span> p90</span></span></figcaption><div class="plot"></div><p class="visually-hidden summary"></p></figure>
      </div>
      <details>
        <summary>The numbers behind the charts</summary>
        <div class="table-wrap"><table id="history-table">
          <caption class="visually-hidden">Per minute: queue depth, joined, admitted, left, expired, median and 90th percentile wait</caption>
          <thead><tr><th scope="col">Minute</th><th scope="col">Depth</th><th scope="col">Joined</th><th scope="col">Admitted</th><th scope="col">Left</th><th scope="col">Expired</th><th scope="col">Median wait</th><th scope="col">p90 wait</th></tr></thead>
          <tbody></tbody>
        </table></div>
      </details>
    </section>
  </div>
  <dialog id="confirm" aria-labelledby="confirm-title">
    <h2 id="confirm-title">Are you sure?</h2>
    <p id="confirm-text"></p>
    <p class="dialog-actions"><button id="confirm-cancel" type="button">Cancel</button> <button id="confirm-ok" type="button" class="danger">Confirm</button></p>
  </dialog>
  <div id="status" class="visually-hidden" role="status" aria-live="polite"></div>
</main>`,
    ["uplot.css", "uplot.js"],
  );
}

/** The API reference: Scalar's standalone renderer, from its npm package (@scalar/api-reference), reading /openapi.json. */
export function docsPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>waitroom API reference</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
</head>
<body>
<noscript><p>The API reference needs JavaScript; the description itself is <a href="/openapi.json">/openapi.json</a>.</p></noscript>
<div id="reference"></div>
<script src="${vendorUrl("scalar-api-reference.js")}"></script>
<script src="${assetUrl("docs.js")}"></script>
</body>
</html>
`;
}

/** A file of an npm package that a page uses, served by this service under /assets/vendor/ (no CDN). */
type VendorFile = { entry: string; file: string; type: string };

/** The packages' entry points sit in dist/ (or alike), one level below package.json. */
const vendorFiles: Record<string, VendorFile> = {
  "scalar-api-reference.js": {
    entry: import.meta.resolve("@scalar/api-reference"),
    file: "browser/standalone.js",
    type: "text/javascript; charset=utf-8",
  },
  "uplot.js": {
    entry: import.meta.resolve("uplot"),
    file: "uPlot.iife.min.js",
    type: "text/javascript; charset=utf-8",
  },
  "uplot.css": { entry: import.meta.resolve("uplot"), file: "uPlot.min.css", type: "text/css; charset=utf-8" },
};

const packageVersion = (entry: string) =>
  (JSON.parse(readFileSync(new URL("../package.json", entry), "utf8")) as { version: string }).version;

/** The package's version: pages link /assets/vendor/<name>?v=<version>, so an upgrade is a new URL. */
const vendorVersions = new Map(Object.entries(vendorFiles).map(([name, file]) => [name, packageVersion(file.entry)]));

type CompressedAsset = Asset & { gzipped: Buffer };

/** Read and compressed on first request: Scalar's is 4.8 MB that most processes (and tests) never serve. */
const vendorAssets = new Map<string, Promise<CompressedAsset>>();
function vendorAsset(name: string): Promise<CompressedAsset> | undefined {
  const vendor = vendorFiles[name];
  if (!vendor) return undefined;
  let asset = vendorAssets.get(name);
  if (!asset) {
    asset = (async () => {
      const body = await readFile(new URL(vendor.file, vendor.entry), "utf8");
      const etag = `"${name.replace(/\.\w+$/, "")}-${vendorVersions.get(name)}"`;
      return { body, type: vendor.type, etag, gzipped: await promisify(gzip)(body) };
    })();
    vendorAssets.set(name, asset);
  }
  return asset;
}

const vendorUrl = (name: string) => `/assets/vendor/${name}?v=${vendorVersions.get(name)}`;

/** GET /: what this service is and where its pages are, for whoever opens its address. */
export function landingPage(): string {
  return page(
    "waitroom",
    undefined,
    `<main class="room landing">
  <header>
    <p class="eyebrow">waitroom</p>
    <h1>A fair waiting room, run by PostgreSQL</h1>
  </header>
  <section class="panel">
    <h2>Where to go</h2>
    <ul class="links">
      <li><a href="/rooms/demo">/rooms/<em>room</em></a>: the waiting-room page people see (this link opens the quick start's room, <code>demo</code>).</li>
      <li><a href="/admin">/admin</a>: the operators' dashboard (sign in with the service's <code>WAITROOM_ADMIN_KEY</code>).</li>
      <li><a href="/docs">/docs</a>: the API reference (<a href="/openapi.json">/openapi.json</a> for machines).</li>
      <li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>, <a href="/metrics">/metrics</a>: for load balancers and Prometheus.</li>
    </ul>
  </section>
</main>`,
  );
}

const notFoundPage = (message: string) =>
  page("Not found · waitroom", undefined, `<main class="room"><h1>Not found</h1><p>${escapeHtml(message)}</p></main>`);

/** GET /, /rooms/{room}, /admin, /docs, /favicon.ico and the pages' assets under /assets/. */
export function mountPages<E extends Env>(app: Hono<E>, { sql }: { sql: Sql }): void {
  app.get("/", (c) => {
    securityHeaders(c);
    c.header("cache-control", "no-cache");
    return c.html(landingPage());
  });

  app.get("/docs", (c) => {
    securityHeaders(c, { inlineStyles: true });
    c.header("cache-control", "no-cache");
    return c.html(docsPage());
  });

  app.get("/assets/vendor/:name", async (c) => {
    const asset = await vendorAsset(c.req.param("name"));
    securityHeaders(c);
    if (!asset) return c.html(notFoundPage("No such file."), 404);
    c.header("content-type", asset.type);
    c.header("etag", asset.etag);
    c.header("vary", "accept-encoding");
    c.header("cache-control", "public, max-age=86400");
    if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304);
    if (/\bgzip\b/.test(c.req.header("accept-encoding") ?? "")) {
      c.header("content-encoding", "gzip");
      return c.body(new Uint8Array(asset.gzipped));
    }
    return c.body(asset.body);
  });

  app.get("/rooms/:room", async (c) => {
    c.header("cache-control", "no-cache");
    const room = c.req.param("room");
    if (!roomId.safeParse(room).success) {
      securityHeaders(c);
      return c.html(notFoundPage("A room id is 1 to 48 characters of a-z, 0-9, _ and -."), 404);
    }
    const settings = await readRoomPage(sql, room);
    const language = pageLanguage(c.req.header("accept-language"), settings?.page_language ?? null);
    securityHeaders(c, { imageOrigin: logoOrigin(settings?.page_logo_url ?? null), workers: true });
    // The same address answers in the visitor's language: caches must key on it.
    c.header("vary", "accept-language");
    c.header("content-language", language);
    return c.html(roomPage(room, settings, language));
  });

  app.get("/admin", (c) => {
    securityHeaders(c);
    c.header("cache-control", "no-cache");
    return c.html(adminPage());
  });

  // Browsers ask for /favicon.ico whatever the page says: answer with the pages' icon (an SVG, which they take).
  app.get("/favicon.ico", (c) => serveAsset(c, "favicon.svg"));
  app.get("/assets/:name", (c) => serveAsset(c, c.req.param("name")));
}

/** One of the fixed assets, or the not-found page. */
function serveAsset(c: Context, name: string): Response | Promise<Response> {
  const asset = assets.get(name);
  securityHeaders(c);
  if (!asset) return c.html(notFoundPage("No such file."), 404);
  c.header("content-type", asset.type);
  c.header("etag", asset.etag);
  // Pages link them with ?v=<hash>, so a new version is a new URL; revalidate anyway after a day.
  c.header("cache-control", "public, max-age=86400");
  if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304);
  return c.body(asset.body);
}
