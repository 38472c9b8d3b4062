/*
 * The admin dashboard: rooms with live numbers (GET /v1/rooms every 2 s),
 * the last hour from the ledger (GET /v1/rooms/{room}/history) drawn as
 * inline SVG, and controls (PUT /v1/rooms/{room}). Vanilla ES module, no
 * build step. The admin key lives in sessionStorage (this tab only).
 */

const keyStorage = "waitroom:admin-key";
const $ = (id) => document.getElementById(id);
const svgNs = "http://www.w3.org/2000/svg";
const ROOMS_EVERY_MS = 2000;
const HISTORY_EVERY_MS = 10_000;

let adminKey = readKey();
let roomsTimer;
let historyTimer;
/** @type {Map<string, {row: HTMLTableRowElement, cells: Record<string, HTMLElement>, pause: HTMLButtonElement, capacity: HTMLInputElement, mode: HTMLSelectElement, currentMode: string}>} */
const rows = new Map();
let selectedRoom = "";

function readKey() {
  try {
    return sessionStorage.getItem(keyStorage) ?? "";
  } catch {
    return "";
  }
}

function saveKey(value) {
  adminKey = value;
  try {
    if (value) sessionStorage.setItem(keyStorage, value);
    else sessionStorage.removeItem(keyStorage);
  } catch {
    // No storage: the key lasts as long as the page.
  }
}

class SignedOut extends Error {}

/** An admin API call: the data, or throws (SignedOut when the key is refused). */
async function api(path, { method = "GET", body } = {}) {
  const headers = { authorization: `Bearer ${adminKey}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) throw new SignedOut("The admin key was refused.");
  if (response.status === 403) throw new SignedOut(data?.error?.message ?? "The admin API is disabled.");
  if (!response.ok) throw new Error(data?.error?.message ?? `HTTP ${response.status}`);
  return data;
}

function say(text) {
  $("status").textContent = text;
}

/* ---------- Formatting ---------- */

const number = new Intl.NumberFormat();
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const clockSeconds = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function seconds(value) {
  if (value == null) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(value < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(value / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(value % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/* ---------- Sign in / out ---------- */

function showLogin(message = "") {
  clearTimeout(roomsTimer);
  clearTimeout(historyTimer);
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("admin-key").focus();
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("admin-key").value.trim();
  if (!value) return;
  saveKey(value);
  $("admin-key").value = "";
  void signIn();
});

$("signout").addEventListener("click", () => {
  saveKey("");
  rows.clear();
  document.querySelector("#rooms tbody").replaceChildren();
  showLogin();
});

async function signIn() {
  try {
    await refreshRooms();
  } catch (error) {
    if (error instanceof SignedOut) {
      saveKey("");
      return showLogin(error.message);
    }
  }
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  say("Signed in.");
  void refreshHistory();
}

/** Any call answered 401/403: back to the key form. */
function handle(error) {
  if (error instanceof SignedOut) {
    saveKey("");
    showLogin(error.message);
    return true;
  }
  say(`Error: ${error.message}`);
  return false;
}

/* ---------- Rooms table ---------- */

const columns = [
  "mode",
  "capacity",
  "queued",
  "admitted",
  "active",
  "draining",
  "free_seats",
  "admitted_last_minute",
  "median_wait",
  "oldest_wait",
];

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

async function change(room, settings, what) {
  try {
    await api(`/v1/rooms/${encodeURIComponent(room)}`, { method: "PUT", body: settings });
    say(`${room}: ${what}.`);
    await refreshRooms();
    if (room === selectedRoom) void refreshHistory();
  } catch (error) {
    handle(error);
  }
}

function createRow(room) {
  const id = room.id;
  const cells = {};
  const row = element("tr", { "data-room": id });
  const link = element("a", { href: `/rooms/${encodeURIComponent(id)}` }, id);
  row.append(element("th", { scope: "row" }, link));
  for (const column of columns) {
    cells[column] = element("td", { "data-column": column });
    row.append(cells[column]);
  }

  const pause = element("button", { type: "button", "data-action": "pause" });
  pause.addEventListener("click", () => {
    const paused = rows.get(id)?.currentMode === "paused";
    void change(id, { mode: paused ? "open" : "paused" }, paused ? "resumed" : "paused");
  });

  const capacityId = `capacity-${id}`;
  const capacity = element("input", {
    id: capacityId,
    type: "number",
    min: "0",
    max: "1000000",
    required: "",
    "data-dirty": "",
  });
  capacity.addEventListener("input", () => {
    capacity.dataset.dirty = "true";
  });
  const capacityForm = element(
    "form",
    { "data-action": "capacity" },
    element("label", { for: capacityId, class: "visually-hidden" }, `Capacity of ${id}`),
    capacity,
    element("button", { type: "submit", "aria-label": `Set capacity of ${id}` }, "Set"),
  );
  capacityForm.addEventListener("submit", (event) => {
    event.preventDefault();
    capacity.dataset.dirty = "";
    void change(id, { capacity: Number(capacity.value) }, `capacity ${capacity.value}`);
  });

  const modeId = `mode-${id}`;
  const mode = element(
    "select",
    { id: modeId },
    ...["open", "paused", "passthrough", "closed"].map((value) => element("option", { value }, value)),
  );
  mode.addEventListener("change", () => {
    mode.dataset.dirty = "true";
  });
  const modeForm = element(
    "form",
    { "data-action": "mode" },
    element("label", { for: modeId, class: "visually-hidden" }, `Mode of ${id}`),
    mode,
    element("button", { type: "submit", "aria-label": `Set mode of ${id}` }, "Set"),
  );
  modeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    mode.dataset.dirty = "";
    void change(id, { mode: mode.value }, `mode ${mode.value}`);
  });

  row.append(element("td", { class: "controls" }, pause, capacityForm, modeForm));
  return { row, cells, pause, capacity, mode, currentMode: room.mode };
}

function updateRow(entry, room) {
  const stats = room.stats;
  entry.currentMode = room.mode;
  const values = {
    mode: room.mode,
    capacity: number.format(room.capacity),
    queued: number.format(stats.queued),
    admitted: number.format(stats.admitted),
    active: number.format(stats.active),
    draining: number.format(stats.draining),
    free_seats: number.format(stats.free_seats),
    admitted_last_minute: number.format(stats.admitted_last_minute),
    median_wait: seconds(stats.median_wait_seconds),
    oldest_wait: seconds(stats.oldest_wait_seconds),
  };
  for (const column of columns) {
    if (entry.cells[column].textContent !== values[column]) entry.cells[column].textContent = values[column];
  }
  entry.cells.mode.className = "mode";
  entry.cells.mode.dataset.mode = room.mode;
  const paused = room.mode === "paused";
  entry.pause.textContent = paused ? "Resume" : "Pause";
  entry.pause.setAttribute("aria-label", `${paused ? "Resume" : "Pause"} ${room.id}`);
  // Never overwrite what someone is typing.
  if (document.activeElement !== entry.capacity && !entry.capacity.dataset.dirty) {
    entry.capacity.value = String(room.capacity);
  }
  if (document.activeElement !== entry.mode && !entry.mode.dataset.dirty) entry.mode.value = room.mode;
}

async function refreshRooms() {
  clearTimeout(roomsTimer);
  try {
    const { rooms } = await api("/v1/rooms");
    const tbody = document.querySelector("#rooms tbody");
    const seen = new Set();
    for (const room of rooms) {
      seen.add(room.id);
      let entry = rows.get(room.id);
      if (!entry) {
        entry = createRow(room);
        rows.set(room.id, entry);
      }
      updateRow(entry, room);
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.row.remove();
        rows.delete(id);
      }
    }
    // Keep the table in the API's order (by id).
    tbody.append(...rooms.map((room) => rows.get(room.id).row));
    $("no-rooms").hidden = rooms.length > 0;
    updateRoomPicker(rooms.map((room) => room.id));
    $("updated").textContent = `Updated ${clockSeconds.format(new Date())}`;
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    say(`Could not load the rooms: ${error.message}`);
  } finally {
    if (adminKey) roomsTimer = setTimeout(() => refreshRooms().catch(handle), ROOMS_EVERY_MS);
  }
}

function updateRoomPicker(ids) {
  const picker = $("chart-room");
  const current = [...picker.options].map((option) => option.value);
  if (current.join("\n") !== ids.join("\n")) {
    picker.replaceChildren(...ids.map((id) => element("option", { value: id }, id)));
  }
  if (!ids.includes(selectedRoom)) {
    selectedRoom = ids[0] ?? "";
    void refreshHistory();
  }
  picker.value = selectedRoom;
}

$("chart-room").addEventListener("change", (event) => {
  selectedRoom = event.target.value;
  void refreshHistory();
});

$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("create-id").value.trim();
  const capacity = Number($("create-capacity").value);
  try {
    await api(`/v1/rooms/${encodeURIComponent(id)}`, { method: "PUT", body: { capacity } });
    $("create-id").value = "";
    selectedRoom = id;
    say(`Room ${id} saved.`);
    await refreshRooms();
    void refreshHistory();
  } catch (error) {
    handle(error);
  }
});

/* ---------- Charts (inline SVG) ---------- */

const W = 420;
const H = 190;
const pad = { left: 46, right: 22, top: 10, bottom: 24 };

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(svgNs, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A nice round top for the y axis. */
function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/**
 * One chart: series of {kind: "bar" | "line" | "area", values, label, className}; null values leave gaps.
 * The SVG has a text title and description, and every bar or point a <title> for hover and assistive tech.
 */
function drawChart(figure, minutes, series, { format = (v) => number.format(v), summary }) {
  const plot = figure.querySelector(".plot");
  const all = series.flatMap((s) => s.values).filter((v) => v != null);
  const top = niceMax(Math.max(0, ...all));
  const n = minutes.length;
  const innerW = W - pad.left - pad.right;
  const innerH = H - pad.top - pad.bottom;
  const x = (i) => pad.left + (n <= 1 ? innerW / 2 : (i * innerW) / (n - 1));
  const y = (v) => pad.top + innerH - (v / top) * innerH;
  const slot = innerW / Math.max(n, 1);

  const titleId = `${figure.id}-title`;
  const descId = `${figure.id}-desc`;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": `${titleId} ${descId}`,
    "data-points": all.length,
    "data-max": Math.max(0, ...all),
  });
  root.append(svg("title", { id: titleId }, figure.querySelector("figcaption").firstChild.textContent.trim()));
  root.append(svg("desc", { id: descId }, summary));

  // Axes, grid and labels.
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    root.append(svg("line", { class: "axis", x1: pad.left, x2: W - pad.right, y1: y(value), y2: y(value) }));
    root.append(svg("text", { x: pad.left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value)));
  }
  const every = n > 30 ? 15 : n > 10 ? 5 : 1;
  minutes.forEach((minute, i) => {
    if ((n - 1 - i) % every === 0) {
      const anchor = i === n - 1 && n > 1 ? "end" : "middle";
      root.append(svg("text", { x: x(i), y: H - 6, "text-anchor": anchor }, clock.format(new Date(minute))));
    }
  });

  for (const s of series) {
    if (s.kind === "bar") {
      const group = svg("g", { class: s.className ?? "bar", "data-series": s.label });
      s.values.forEach((v, i) => {
        if (v == null) return;
        const height = (v / top) * innerH;
        const rect = svg("rect", {
          class: "bar",
          x: x(i) - slot * 0.4,
          y: pad.top + innerH - height,
          width: Math.max(slot * 0.8, 1),
          height: Math.max(height, v > 0 ? 1 : 0),
          "data-value": v,
        });
        rect.append(svg("title", {}, `${clock.format(new Date(minutes[i]))}: ${format(v)} ${s.label}`));
        group.append(rect);
      });
      root.append(group);
      continue;
    }
    // Lines (and areas) break where a value is missing.
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v == null) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (s.kind === "area" && d) {
      const first = s.values.findIndex((v) => v != null);
      const last = s.values.length - 1 - [...s.values].reverse().findIndex((v) => v != null);
      root.append(
        svg("path", {
          class: "area",
          d: `${d}L${x(last).toFixed(1)},${y(0)}L${x(first).toFixed(1)},${y(0)}Z`,
        }),
      );
    }
    const path = svg("path", {
      class: `line ${s.className ?? ""}`.trim(),
      d: d || "M0,0",
      "data-series": s.label,
      "data-values": s.values.filter((v) => v != null).length,
    });
    path.append(svg("title", {}, s.label));
    root.append(path);
    // A point with no neighbour draws no line: mark it.
    s.values.forEach((v, i) => {
      if (v == null || s.values[i - 1] != null || s.values[i + 1] != null) return;
      const dot = svg("circle", { class: `dot ${s.className ?? ""}`.trim(), cx: x(i), cy: y(v), r: 3 });
      dot.append(svg("title", {}, `${clock.format(new Date(minutes[i]))}: ${format(v)} ${s.label}`));
      root.append(dot);
    });
  }
  plot.replaceChildren(root);
}

function drawHistory(history) {
  const b = history.buckets;
  const minutes = b.map((bucket) => bucket.minute);
  const depth = b.map((bucket) => bucket.depth);
  const admitted = b.map((bucket) => bucket.admitted);
  const joined = b.map((bucket) => bucket.joined);
  const median = b.map((bucket) => (bucket.median_wait_ms == null ? null : bucket.median_wait_ms / 1000));
  const p90 = b.map((bucket) => (bucket.p90_wait_ms == null ? null : bucket.p90_wait_ms / 1000));
  const sum = (values) => values.reduce((total, v) => total + (v ?? 0), 0);
  const last = (values) => values[values.length - 1];

  drawChart($("chart-depth"), minutes, [{ kind: "area", values: depth, label: "queued", className: "depth" }], {
    summary: `Queue depth of ${history.room_id} per minute over the last ${history.minutes} minutes; now ${number.format(last(depth) ?? 0)}, highest ${number.format(Math.max(0, ...depth))}.`,
  });
  drawChart(
    $("chart-admissions"),
    minutes,
    [
      { kind: "bar", values: admitted, label: "admitted" },
      { kind: "line", values: joined, label: "joined", className: "dashed" },
    ],
    {
      summary: `Admissions per minute in ${history.room_id}: ${number.format(sum(admitted))} admitted and ${number.format(sum(joined))} joined in the last ${history.minutes} minutes.`,
    },
  );
  const medians = median.filter((v) => v != null);
  drawChart(
    $("chart-waits"),
    minutes,
    [
      { kind: "line", values: median, label: "median wait" },
      { kind: "line", values: p90, label: "90th percentile wait", className: "dotted" },
    ],
    {
      format: (v) => seconds(v),
      summary: medians.length
        ? `Wait before admission in ${history.room_id}: the latest median is ${seconds(last(medians))}.`
        : `No admissions in ${history.room_id} in the last ${history.minutes} minutes.`,
    },
  );

  const tbody = document.querySelector("#history-table tbody");
  tbody.replaceChildren(
    ...[...b]
      .reverse()
      .map((bucket) =>
        element(
          "tr",
          {},
          element("th", { scope: "row" }, clock.format(new Date(bucket.minute))),
          ...[bucket.depth, bucket.joined, bucket.admitted, bucket.left, bucket.expired].map((v) =>
            element("td", {}, number.format(v)),
          ),
          element("td", {}, bucket.median_wait_ms == null ? "–" : seconds(bucket.median_wait_ms / 1000)),
          element("td", {}, bucket.p90_wait_ms == null ? "–" : seconds(bucket.p90_wait_ms / 1000)),
        ),
      ),
  );
}

async function refreshHistory() {
  clearTimeout(historyTimer);
  if (!adminKey) return;
  const room = selectedRoom;
  try {
    if (room) {
      const history = await api(`/v1/rooms/${encodeURIComponent(room)}/history?minutes=60`);
      if (room === selectedRoom) drawHistory(history);
    }
  } catch (error) {
    if (handle(error)) return;
  }
  historyTimer = setTimeout(refreshHistory, HISTORY_EVERY_MS);
}

document.addEventListener("visibilitychange", () => {
  // Catch up at once when the tab comes back.
  if (document.visibilityState === "visible" && adminKey && !$("dashboard").hidden) {
    refreshRooms().catch(handle);
    void refreshHistory();
  }
});

if (adminKey) void signIn();
else showLogin();
