import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Context, Env, Hono } from "hono";
import { roomId } from "../contracts.js";

/*
 * The pages people see: the waiting room (/rooms/{room}) and the admin
 * dashboard (/admin). Plain HTML with a vanilla ES module each, served as
 * they are in this directory: no framework, no build step, no CDN. They call
 * the public HTTP API like any other client; tokens stay in sessionStorage
 * and in the event stream's query string (which the request log never logs).
 */

type Asset = { body: string; type: string; etag: string };

const assetTypes: Record<string, string> = {
  "room.js": "text/javascript; charset=utf-8",
  "admin.js": "text/javascript; charset=utf-8",
  "pages.css": "text/css; charset=utf-8",
};

/** Read once at start: a fixed list, so no path from a request ever reaches the file system. */
const assets = new Map<string, Asset>(
  Object.entries(assetTypes).map(([name, type]) => {
    const body = readFileSync(new URL(`./${name}`, import.meta.url), "utf8");
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
    return [name, { body, type, etag }];
  }),
);

/** Scripts, styles and requests from this origin only; nothing inline, no framing. */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

function securityHeaders(c: Context): void {
  c.header("content-security-policy", contentSecurityPolicy);
  c.header("x-content-type-options", "nosniff");
  // Nothing about the page (or a ticket) travels to other sites in Referer.
  c.header("referrer-policy", "no-referrer");
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch] ?? ch);

const page = (title: string, script: string | undefined, body: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/assets/pages.css?v=${assets.get("pages.css")?.etag.slice(1, 9)}">
${script ? `<script type="module" src="/assets/${script}?v=${assets.get(script)?.etag.slice(1, 9)}"></script>` : ""}
</head>
<body>
${body}
</body>
</html>
`;

export function roomPage(room: string): string {
  const id = escapeHtml(room);
  return page(
    `Waiting room · ${room}`,
    "room.js",
    `<main id="room" class="room" data-room="${id}">
  <header>
    <p class="eyebrow">Waiting room</p>
    <h1>${id}</h1>
  </header>
  <noscript><p class="panel">This waiting room needs JavaScript to hold your place and let you in.</p></noscript>
  <section id="panel" class="panel" data-state="connecting" aria-labelledby="headline" aria-busy="true">
    <h2 id="headline"><span class="icon" aria-hidden="true">…</span> <span id="headline-text">Joining the queue…</span></h2>
    <p id="detail">One moment while we save your place.</p>
    <p id="notice" class="notice" hidden></p>
    <div id="waiting" hidden>
      <dl class="numbers">
        <div><dt id="position-label">Your place in line</dt><dd id="position" aria-labelledby="position-label">–</dd></div>
        <div><dt id="depth-label">People waiting</dt><dd id="depth" aria-labelledby="depth-label">–</dd></div>
        <div><dt id="eta-label">Estimated wait</dt><dd id="eta" aria-labelledby="eta-label">–</dd></div>
      </dl>
      <label for="progress">Progress through the queue <span id="progress-text"></span></label>
      <progress id="progress" max="100" value="0">0%</progress>
    </div>
    <div id="active" hidden>
      <p><a id="continue" class="button" href="#continue">Continue</a></p>
      <p id="expires"></p>
      <details id="token-details" hidden>
        <summary>Admission token</summary>
        <label for="admission-token">Your admission token (the site you are going to checks it)</label>
        <textarea id="admission-token" readonly rows="4" spellcheck="false"></textarea>
      </details>
    </div>
    <p class="actions">
      <button id="leave" type="button" hidden>Leave the queue</button>
      <button id="rejoin" type="button" hidden>Join again</button>
    </p>
  </section>
  <p id="connection" class="connection" data-connection="connecting"><span class="icon" aria-hidden="true">○</span> <span id="connection-text">Connecting…</span></p>
  <div id="announcer" class="visually-hidden" role="status" aria-live="polite" aria-atomic="true"></div>
</main>`,
  );
}

export function adminPage(): string {
  return page(
    "waitroom admin",
    "admin.js",
    `<main id="admin" class="admin">
  <header class="admin-header">
    <h1>waitroom admin</h1>
    <p><span id="updated" class="muted"></span> <button id="signout" type="button" hidden>Sign out</button></p>
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
      <div class="table-wrap">
        <table id="rooms">
          <caption class="visually-hidden">Rooms with their live numbers and controls, refreshed every 2 seconds</caption>
          <thead><tr>
            <th scope="col">Room</th><th scope="col">Mode</th><th scope="col">Capacity</th>
            <th scope="col">Queued</th><th scope="col">Offered</th><th scope="col">Active</th>
            <th scope="col">Draining</th><th scope="col">Free</th><th scope="col">Admitted / min</th>
            <th scope="col">Median wait</th><th scope="col">Oldest wait</th><th scope="col" class="controls-head">Controls</th>
          </tr></thead>
          <tbody></tbody>
        </table>
      </div>
      <p id="no-rooms" hidden>No rooms yet.</p>
      <form id="create" class="inline-form">
        <fieldset>
          <legend>Create a room</legend>
          <label for="create-id">Room id</label>
          <input id="create-id" required pattern="[a-z0-9][a-z0-9_\\-]{0,47}" placeholder="launch">
          <label for="create-capacity">Capacity</label>
          <input id="create-capacity" type="number" min="0" max="1000000" required value="100">
          <button type="submit">Create</button>
        </fieldset>
      </form>
    </section>
    <section aria-labelledby="charts-title">
      <h2 id="charts-title">The last hour</h2>
      <p><label for="chart-room">Room</label> <select id="chart-room"></select></p>
      <div class="charts">
        <figure id="chart-depth" class="chart"><figcaption>Queue depth</figcaption><div class="plot"></div></figure>
        <figure id="chart-admissions" class="chart"><figcaption>Admissions per minute <span class="legend"><span class="key bar"></span> admitted <span class="key dashed"></span> joined</span></figcaption><div class="plot"></div></figure>
        <figure id="chart-waits" class="chart"><figcaption>Wait before admission <span class="legend"><span class="key solid"></span> median <span class="key dotted"></span> 90th percentile</span></figcaption><div class="plot"></div></figure>
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
  <div id="status" class="visually-hidden" role="status" aria-live="polite"></div>
</main>`,
  );
}

const notFoundPage = (message: string) =>
  page("Not found · waitroom", undefined, `<main class="room"><h1>Not found</h1><p>${escapeHtml(message)}</p></main>`);

/** GET /rooms/{room}, GET /admin and their assets under /assets/. */
export function mountPages<E extends Env>(app: Hono<E>): void {
  app.get("/rooms/:room", (c) => {
    securityHeaders(c);
    c.header("cache-control", "no-cache");
    const room = c.req.param("room");
    if (!roomId.safeParse(room).success) {
      return c.html(notFoundPage("A room id is 1 to 48 characters of a-z, 0-9, _ and -."), 404);
    }
    return c.html(roomPage(room));
  });

  app.get("/admin", (c) => {
    securityHeaders(c);
    c.header("cache-control", "no-cache");
    return c.html(adminPage());
  });

  app.get("/assets/:name", (c) => {
    const asset = assets.get(c.req.param("name"));
    if (!asset) {
      securityHeaders(c);
      return c.html(notFoundPage("No such file."), 404);
    }
    securityHeaders(c);
    c.header("content-type", asset.type);
    c.header("etag", asset.etag);
    // Pages link them with ?v=<hash>, so a new version is a new URL; revalidate anyway after a day.
    c.header("cache-control", "public, max-age=86400");
    if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304);
    return c.body(asset.body);
  });
}
