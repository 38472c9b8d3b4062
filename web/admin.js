/*
 * The admin dashboard: a card per room with its live numbers and controls, fed by the rooms stream
 * (GET /v1/events/rooms, read with fetch so the admin key stays in a header), and charts of a room's
 * history (GET /v1/rooms/{room}/history) drawn by uPlot, which the service serves from its npm
 * package. Vanilla ES module, no build step. The admin key lives in sessionStorage (this tab only).
 */

const keyStorage = "waitroom:admin-key";
const $ = (id) => document.getElementById(id);
/** Waits, abandonment and p90 on the cards cover this many minutes of history. */
const GLANCE_MINUTES = 15;
/** A room's history is read again on a stream update at most this often: per window, for the charts. */
const CHART_REFRESH_MS = { 5: 5_000, 60: 15_000, 1440: 60_000 };
const GLANCE_REFRESH_MS = 15_000;
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 15_000;

let adminKey = readKey();
/** Aborts the stream on sign-out. */
let streamControl;
/** @type {Map<string, ReturnType<typeof createCard>>} */
const cards = new Map();
/** The latest rooms, by id, as the stream sent them. */
const rooms = new Map();
let selectedRoom = "";
let windowMinutes = 60;

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

/** Throws SignedOut for a refused key, an Error with the API's message for anything else not ok. */
async function check(response) {
  if (response.ok) return;
  const data = await response.json().catch(() => null);
  if (response.status === 401) throw new SignedOut("The admin key was refused.");
  if (response.status === 403) throw new SignedOut(data?.error?.message ?? "The admin API is disabled.");
  throw new Error(data?.error?.message ?? `HTTP ${response.status}`);
}

/** An admin API call: the data (null for 204), or throws. */
async function api(path, { method = "GET", body } = {}) {
  const headers = { authorization: `Bearer ${adminKey}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  await check(response);
  return response.status === 204 ? null : response.json();
}

function say(text) {
  $("status").textContent = text;
}

/* ---------- Formatting: waits in s, min or h, never ms ---------- */

const number = new Intl.NumberFormat();
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const clockSeconds = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** The unit a wait of this many seconds reads best in. */
function waitUnit(seconds) {
  if (seconds >= 7200) return { name: "h", per: 3600 };
  if (seconds >= 120) return { name: "min", per: 60 };
  return { name: "s", per: 1 };
}

function duration(seconds) {
  if (seconds == null) return "–";
  const unit = waitUnit(seconds);
  const value = seconds / unit.per;
  return `${value < 10 ? oneDecimal.format(value) : number.format(Math.round(value))} ${unit.name}`;
}

/* ---------- Sign in / out ---------- */

function showLogin(message = "") {
  streamControl?.abort();
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("live").hidden = true;
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
  for (const card of cards.values()) card.root.remove();
  cards.clear();
  rooms.clear();
  showLogin();
});

async function signIn() {
  try {
    // One plain read first: a refused key gets its message, and the cards appear before the stream opens.
    showRooms((await api("/v1/rooms")).rooms);
  } catch (error) {
    if (error instanceof SignedOut) {
      saveKey("");
      return showLogin(error.message);
    }
    say(`Could not load the rooms: ${error.message}`);
  }
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  $("live").hidden = false;
  say("Signed in.");
  void watchRooms();
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

/* ---------- The rooms stream ---------- */

function setLive(live, text) {
  $("live").dataset.live = live ? "on" : "off";
  $("live").querySelector(".icon").textContent = live ? "●" : "○";
  $("live-text").textContent = text;
}

/** One Server-Sent Events message: its event name and data. */
function parseMessage(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return { event, data: data.join("\n") };
}

/** Reads the stream until sign-out, reconnecting with a growing pause when it drops. */
async function watchRooms() {
  streamControl?.abort();
  const control = new AbortController();
  streamControl = control;
  let retry = RETRY_FIRST_MS;
  while (!control.signal.aborted) {
    try {
      const response = await fetch("/v1/events/rooms", {
        headers: { authorization: `Bearer ${adminKey}`, accept: "text/event-stream" },
        cache: "no-store",
        signal: control.signal,
      });
      await check(response);
      setLive(true, "Live");
      retry = RETRY_FIRST_MS;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replaceAll("\r\n", "\n");
        for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
          const message = parseMessage(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (message.event === "rooms") showRooms(JSON.parse(message.data).rooms);
        }
      }
    } catch (error) {
      if (control.signal.aborted) return;
      if (error instanceof SignedOut) return void handle(error);
    }
    setLive(false, "Reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, retry));
    retry = Math.min(retry * 2, RETRY_MAX_MS);
  }
}

/* ---------- Room cards ---------- */

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** Asks before a change that turns people away or stops admission; resolves true to go ahead. */
function confirmAction(text, verb) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = verb;
  dialog.showModal();
  $("confirm-cancel").focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").removeEventListener("click", yes);
      $("confirm-cancel").removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    $("confirm-ok").addEventListener("click", yes);
    $("confirm-cancel").addEventListener("click", no);
    dialog.addEventListener("cancel", no);
  });
}

/** A change to a room, from its answer (the room) straight onto its card; the stream confirms it. */
async function change(id, request, what) {
  try {
    const changed = await api(`/v1/rooms/${encodeURIComponent(id)}${request.path ?? ""}`, {
      method: request.method ?? "PUT",
      body: request.body,
    });
    if (changed) showRoom(changed);
    say(`${id}: ${what}.`);
  } catch (error) {
    handle(error);
  }
}

const stats = [
  ["queued", "Queued"],
  ["offered", "Offered"],
  ["active", "Active"],
  ["rate", "Admitted / min"],
  ["median", "Median wait"],
  ["p90", "p90 wait"],
  ["abandoned", "Abandoned"],
  ["oldest", "Oldest wait"],
];

/** A labelled number input with its Set button, in a form of its own. */
function settingForm(id, action, label, attributes) {
  const inputId = `${action}-${id}`;
  const input = element("input", { id: inputId, type: "number", min: "0", ...attributes });
  input.addEventListener("input", () => {
    input.dataset.dirty = "true";
  });
  const form = element(
    "form",
    { "data-action": action, class: "setting" },
    element("label", { for: inputId }, label),
    element(
      "span",
      { class: "field" },
      input,
      element("button", { type: "submit", "aria-label": `Set ${label.toLowerCase()} of ${id}` }, "Set"),
    ),
  );
  return { form, input };
}

function createCard(room) {
  const id = room.id;
  const root = element("article", { class: "room-card", "data-room": id, "aria-labelledby": `card-${id}` });
  const mode = element("span", { class: "mode", "data-field": "mode" });
  const health = element("span", { class: "health", "data-field": "health" });
  const stock = element("span", { class: "stock", "data-field": "stock" });
  root.append(
    element(
      "header",
      {},
      element("h3", { id: `card-${id}` }, element("a", { href: `/rooms/${encodeURIComponent(id)}` }, id)),
      element("span", { class: "badges" }, mode, health, stock),
    ),
  );
  const values = {};
  const notes = {};
  const list = element("dl", { class: "stats" });
  for (const [key, label] of stats) {
    values[key] = element("dd", { "data-stat": key });
    notes[key] = element("span", { class: "of" });
    list.append(element("div", {}, element("dt", {}, label), values[key], notes[key]));
  }
  root.append(list);

  const pause = element("button", { type: "button", "data-action": "pause" });
  pause.addEventListener("click", async () => {
    const paused = rooms.get(id)?.mode === "paused";
    if (paused) return change(id, { method: "POST", path: "/resume" }, "resumed");
    const room = rooms.get(id);
    const waiting = room ? room.stats.queued : 0;
    if (
      !(await confirmAction(
        `Pause ${id}? Nobody is admitted until you resume; ${number.format(waiting)} queued keep waiting.`,
        "Pause",
      ))
    )
      return;
    return change(id, { method: "POST", path: "/pause" }, "paused");
  });

  const capacity = settingForm(id, "capacity", "Capacity", { required: "" });
  capacity.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = Number(capacity.input.value);
    const current = rooms.get(id)?.capacity ?? 0;
    if (
      value < current &&
      !(await confirmAction(
        `Lower the capacity of ${id} from ${number.format(current)} to ${number.format(value)}? Fewer people get in at once.`,
        "Lower capacity",
      ))
    ) {
      return;
    }
    capacity.input.dataset.dirty = "";
    return change(id, { body: { capacity: value } }, `capacity ${value}`);
  });

  const rate = settingForm(id, "rate", "Rate", { placeholder: "no limit" });
  rate.form.addEventListener("submit", (event) => {
    event.preventDefault();
    rate.input.dataset.dirty = "";
    const value = rate.input.value === "" ? null : Number(rate.input.value);
    return change(id, { body: { admit_per_minute: value } }, value === null ? "no rate limit" : `rate ${value} / min`);
  });

  const modeId = `mode-${id}`;
  const modeSelect = element(
    "select",
    { id: modeId },
    ...["open", "paused", "passthrough", "closed"].map((value) => element("option", { value }, value)),
  );
  modeSelect.addEventListener("change", () => {
    modeSelect.dataset.dirty = "true";
  });
  const modeForm = element(
    "form",
    { "data-action": "mode", class: "setting" },
    element("label", { for: modeId }, "Mode"),
    element(
      "span",
      { class: "field" },
      modeSelect,
      element("button", { type: "submit", "aria-label": `Set mode of ${id}` }, "Set"),
    ),
  );
  modeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = modeSelect.value;
    const warnings = {
      closed: `Close ${id}? Nobody can join, and everyone queued is turned away.`,
      paused: `Pause ${id}? Nobody is admitted until you resume.`,
    };
    if (
      warnings[value] &&
      value !== rooms.get(id)?.mode &&
      !(await confirmAction(warnings[value], value === "closed" ? "Close" : "Pause"))
    ) {
      return;
    }
    modeSelect.dataset.dirty = "";
    return change(id, { body: { mode: value } }, `mode ${value}`);
  });

  const remove = element(
    "button",
    { type: "button", class: "delete", "data-action": "delete", "aria-label": `Delete ${id}` },
    "Delete",
  );
  remove.addEventListener("click", async () => {
    if (!(await confirmAction(`Delete ${id} and all its tickets? This cannot be undone.`, "Delete"))) return;
    try {
      await api(`/v1/rooms/${encodeURIComponent(id)}`, { method: "DELETE" });
      rooms.delete(id);
      showRooms([...rooms.values()]);
      say(`${id}: deleted.`);
    } catch (error) {
      handle(error);
    }
  });

  const chart = element("button", { type: "button", "data-action": "chart", "aria-label": `Chart ${id}` }, "Chart");
  chart.addEventListener("click", () => {
    select(id);
    $("charts-title").scrollIntoView({ behavior: "smooth", block: "start" });
  });

  root.append(
    element(
      "div",
      { class: "controls" },
      element("span", { class: "buttons" }, pause, chart, remove),
      capacity.form,
      rate.form,
      modeForm,
    ),
  );
  return {
    root,
    values,
    notes,
    mode,
    health,
    stock,
    pause,
    capacity: capacity.input,
    rate: rate.input,
    modeSelect,
    glance: undefined,
    glancedAt: 0,
  };
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** A room's stock at a glance: nothing without stock, "sold out", or units left and reserved. */
function stockText(s) {
  if (s.sold_out) return "sold out";
  if (s.stock_available === null) return "";
  const reserved = s.stock_outstanding ? ` (${number.format(s.stock_outstanding)} reserved)` : "";
  return `${number.format(s.stock_available)} in stock${reserved}`;
}

/** The card's numbers from the room (the stream) and its last minutes (history). */
function updateCard(card, room) {
  const s = room.stats;
  setText(card.values.queued, number.format(s.queued));
  setText(card.values.offered, number.format(s.admitted));
  setText(card.notes.offered, `${number.format(s.free_seats)} seats free`);
  setText(card.values.active, number.format(s.active));
  setText(
    card.notes.active,
    `of ${number.format(room.capacity)} seats${s.draining ? `, ${number.format(s.draining)} leaving` : ""}`,
  );
  setText(card.values.rate, number.format(s.admitted_last_minute));
  setText(
    card.notes.rate,
    room.admit_per_minute == null ? "no rate limit" : `limit ${number.format(room.admit_per_minute)}`,
  );
  setText(card.values.median, duration(s.median_wait_seconds));
  setText(card.values.oldest, duration(s.oldest_wait_seconds));
  const glance = card.glance;
  setText(card.values.p90, glance ? duration(glance.p90) : "…");
  setText(
    card.values.abandoned,
    glance ? (glance.joined ? `${Math.round((100 * glance.gone) / glance.joined)} %` : "–") : "…",
  );
  setText(
    card.notes.abandoned,
    glance ? `${number.format(glance.gone)} of ${number.format(glance.joined)} joined` : "",
  );

  setText(card.mode, room.mode);
  card.mode.dataset.mode = room.mode;
  const gate = s.health ?? "none";
  setText(card.health, gate === "none" ? "no health gate" : `gate ${gate}`);
  card.health.dataset.health = gate;
  setText(card.stock, stockText(s));
  card.stock.dataset.stock = s.sold_out ? "sold-out" : s.stock_available === null ? "none" : "some";
  card.root.dataset.mode = room.mode;

  const paused = room.mode === "paused";
  setText(card.pause, paused ? "Resume" : "Pause");
  card.pause.setAttribute("aria-label", `${paused ? "Resume" : "Pause"} ${room.id}`);
  card.pause.classList.toggle("danger", !paused);
  // Never overwrite what someone is typing.
  const keep = (input) => document.activeElement === input || input.dataset.dirty;
  if (!keep(card.capacity)) card.capacity.value = String(room.capacity);
  if (!keep(card.rate)) card.rate.value = room.admit_per_minute == null ? "" : String(room.admit_per_minute);
  if (!keep(card.modeSelect)) card.modeSelect.value = room.mode;
}

/** p90 (the worst minute's) and abandonment over the last minutes, read at most every GLANCE_REFRESH_MS. */
async function refreshGlance(id) {
  const card = cards.get(id);
  if (!card || Date.now() - card.glancedAt < GLANCE_REFRESH_MS) return;
  card.glancedAt = Date.now();
  try {
    const { buckets } = await api(`/v1/rooms/${encodeURIComponent(id)}/history?minutes=${GLANCE_MINUTES}`);
    const p90s = buckets.map((b) => b.p90_wait_ms).filter((v) => v != null);
    card.glance = {
      p90: p90s.length ? Math.max(...p90s) / 1000 : null,
      joined: buckets.reduce((sum, b) => sum + b.joined, 0),
      gone: buckets.reduce((sum, b) => sum + b.left + b.expired, 0),
    };
    const room = rooms.get(id);
    if (room && cards.get(id) === card) updateCard(card, room);
  } catch (error) {
    card.glancedAt = 0;
    handle(error);
  }
}

function showRoom(room) {
  rooms.set(room.id, room);
  let card = cards.get(room.id);
  if (!card) {
    card = createCard(room);
    cards.set(room.id, card);
    $("rooms").append(card.root);
  }
  updateCard(card, room);
  void refreshGlance(room.id);
  if (room.id === selectedRoom) {
    showLiveDepth(room);
    void refreshHistory();
  }
}

/** The whole list, as the stream sends it: cards in id order, gone rooms removed. */
function showRooms(list) {
  const seen = new Set(list.map((room) => room.id));
  for (const id of [...rooms.keys()]) if (!seen.has(id)) rooms.delete(id);
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  for (const room of list) showRoom(room);
  $("rooms").append(...list.map((room) => cards.get(room.id).root));
  $("no-rooms").hidden = list.length > 0;
  updateRoomPicker(list.map((room) => room.id));
  $("updated").textContent = `Updated ${clockSeconds.format(new Date())}`;
}

function updateRoomPicker(ids) {
  const picker = $("chart-room");
  if ([...picker.options].map((option) => option.value).join("\n") !== ids.join("\n")) {
    picker.replaceChildren(...ids.map((id) => element("option", { value: id }, id)));
  }
  if (!ids.includes(selectedRoom)) select(ids[0] ?? "");
  picker.value = selectedRoom;
}

function select(id) {
  selectedRoom = id;
  $("chart-room").value = id;
  chartState.fetchedAt = 0;
  void refreshHistory();
}

$("chart-room").addEventListener("change", (event) => select(event.target.value));

for (const button of document.querySelectorAll(".windows button")) {
  button.addEventListener("click", () => {
    windowMinutes = Number(button.dataset.minutes);
    for (const other of document.querySelectorAll(".windows button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    chartState.fetchedAt = 0;
    void refreshHistory();
  });
}

$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("create-id").value.trim();
  const capacity = Number($("create-capacity").value);
  try {
    const created = await api(`/v1/rooms/${encodeURIComponent(id)}`, { method: "PUT", body: { capacity } });
    $("create-id").value = "";
    showRooms([...rooms.values(), created].sort((a, b) => (a.id < b.id ? -1 : 1)));
    select(id);
    say(`Room ${id} saved.`);
  } catch (error) {
    handle(error);
  }
});

/* ---------- Charts (uPlot) ---------- */

const colours = { accent: "#0b5cad", ink: "#1b1f24", muted: "#57606a", line: "#d0d7de", warn: "#b35900" };
const CHART_HEIGHT = 190;

/** The wait chart's unit follows its largest value, so its axis never mixes units. */
let chartWaitUnit = waitUnit(0);

const axis = (format) => ({
  stroke: colours.muted,
  grid: { stroke: colours.line, width: 1 },
  ticks: { stroke: colours.line, width: 1 },
  size: 48,
  values: (_, splits) => splits.map(format),
});

const integerAxis = axis((v) => (Number.isInteger(v) ? number.format(v) : ""));

function chartOptions(series, yAxis, plot) {
  return {
    width: plot.clientWidth,
    height: CHART_HEIGHT,
    legend: { show: false },
    cursor: { y: false, points: { size: 6 } },
    // Half a minute either side: the first and last minutes' bars are drawn whole.
    scales: {
      x: { time: true, range: (_chart, min, max) => [min - 30, max + 30] },
      y: { range: (_chart, _min, max) => [0, Math.max(max, 1) * 1.1] },
    },
    axes: [{ stroke: colours.muted, grid: { show: false }, ticks: { stroke: colours.line } }, yAxis],
    series: [{}, ...series],
  };
}

const charts = {
  depth: {
    figure: "chart-depth",
    series: [{ label: "queued", stroke: colours.accent, width: 2, fill: "rgba(11, 92, 173, 0.12)" }],
    axis: integerAxis,
  },
  admissions: {
    figure: "chart-admissions",
    series: [
      { label: "admitted", stroke: colours.accent, fill: colours.accent, bars: true },
      { label: "joined", stroke: colours.ink, width: 1.5, dash: [5, 4] },
      { label: "limit", stroke: colours.warn, width: 1.5, dash: [2, 3] },
    ],
    axis: integerAxis,
  },
  waits: {
    figure: "chart-waits",
    series: [
      { label: "median", stroke: colours.ink, width: 2, spanGaps: false, points: { show: true, size: 4 } },
      {
        label: "p90",
        stroke: colours.accent,
        width: 2,
        dash: [1, 4],
        spanGaps: false,
        points: { show: true, size: 4 },
      },
    ],
    axis: axis((v) => `${oneDecimal.format(v)} ${chartWaitUnit.name}`),
  },
};

/** Bars for admissions: uPlot's bar path builder, made once it has loaded. */
function barPaths() {
  return window.uPlot.paths.bars({ size: [0.7, 24], align: 0 });
}

const chartState = { fetchedAt: 0, pending: false, plots: {}, depth: undefined };

function draw(name, data, summary) {
  const chart = charts[name];
  const figure = $(chart.figure);
  const plot = figure.querySelector(".plot");
  figure.dataset.points = String(data[0].length);
  figure.dataset.values = JSON.stringify(data.slice(1));
  figure.querySelector(".summary").textContent = summary;
  let drawn = chartState.plots[name];
  if (!drawn) {
    const series = chart.series.map(({ bars, ...s }) => (bars ? { ...s, paths: barPaths() } : s));
    drawn = new window.uPlot(chartOptions(series, chart.axis, plot), data, plot);
    chartState.plots[name] = drawn;
  } else {
    drawn.setData(data);
  }
}

/** Redraws at the width the layout gives the charts (a phone, a resized window). */
new ResizeObserver(() => {
  for (const [name, drawn] of Object.entries(chartState.plots)) {
    const plot = $(charts[name].figure).querySelector(".plot");
    if (plot.clientWidth && plot.clientWidth !== drawn.width)
      drawn.setSize({ width: plot.clientWidth, height: CHART_HEIGHT });
  }
}).observe($("charts-title").parentElement);

/** The depth chart's current minute follows the stream, between reads of the history. */
function showLiveDepth(room) {
  const depth = chartState.depth;
  if (!depth || depth.room !== room.id || depth.data[1].at(-1) === room.stats.queued) return;
  depth.data[1][depth.data[1].length - 1] = room.stats.queued;
  chartState.plots.depth?.setData(depth.data);
  $("chart-depth").dataset.values = JSON.stringify(depth.data.slice(1));
}

function drawHistory(result, room) {
  const b = result.buckets;
  const times = b.map((bucket) => Date.parse(bucket.minute) / 1000);
  const depth = b.map((bucket) => bucket.depth);
  // The current minute's depth is the live one.
  if (room && depth.length) depth[depth.length - 1] = room.stats.queued;
  const admitted = b.map((bucket) => bucket.admitted);
  const joined = b.map((bucket) => bucket.joined);
  const limit = b.map(() => room?.admit_per_minute ?? null);
  const p90Seconds = b.map((bucket) => (bucket.p90_wait_ms == null ? null : bucket.p90_wait_ms / 1000));
  const medianSeconds = b.map((bucket) => (bucket.median_wait_ms == null ? null : bucket.median_wait_ms / 1000));
  chartWaitUnit = waitUnit(
    Math.max(0, ...p90Seconds.filter((v) => v != null), ...medianSeconds.filter((v) => v != null)),
  );
  const inUnit = (values) => values.map((v) => (v == null ? null : v / chartWaitUnit.per));
  const sum = (values) => values.reduce((total, v) => total + v, 0);
  const span = result.minutes >= 60 ? `${result.minutes / 60} h` : `${result.minutes} min`;
  const medians = medianSeconds.filter((v) => v != null);

  chartState.depth = { room: result.room_id, data: [times, depth] };
  draw(
    "depth",
    [times, depth],
    `Queue depth of ${result.room_id} over the last ${span}: now ${number.format(depth.at(-1) ?? 0)}, highest ${number.format(Math.max(0, ...depth))}.`,
  );
  draw(
    "admissions",
    [times, admitted, joined, limit],
    `${result.room_id} over the last ${span}: ${number.format(sum(admitted))} admitted and ${number.format(sum(joined))} joined.`,
  );
  draw(
    "waits",
    [times, inUnit(medianSeconds), inUnit(p90Seconds)],
    medians.length
      ? `Wait before admission in ${result.room_id}: the latest median is ${duration(medians.at(-1))}.`
      : `No admissions in ${result.room_id} in the last ${span}.`,
  );
  $("chart-waits").dataset.unit = chartWaitUnit.name;

  const wait = (ms) => (ms == null ? "–" : duration(ms / 1000));
  $("history-table")
    .querySelector("tbody")
    .replaceChildren(
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
            element("td", {}, wait(bucket.median_wait_ms)),
            element("td", {}, wait(bucket.p90_wait_ms)),
          ),
        ),
    );
}

/** The selected room's history, on a stream update at most every CHART_REFRESH_MS of the window. */
async function refreshHistory() {
  const room = selectedRoom;
  if (!room || !adminKey || chartState.pending) return;
  if (Date.now() - chartState.fetchedAt < CHART_REFRESH_MS[windowMinutes]) return;
  chartState.pending = true;
  chartState.fetchedAt = Date.now();
  const minutes = windowMinutes;
  try {
    const result = await api(`/v1/rooms/${encodeURIComponent(room)}/history?minutes=${minutes}`);
    if (room === selectedRoom && minutes === windowMinutes) drawHistory(result, rooms.get(room));
    else chartState.fetchedAt = 0;
  } catch (error) {
    chartState.fetchedAt = 0;
    handle(error);
  } finally {
    chartState.pending = false;
  }
  // A window or room chosen while this one loaded.
  if (chartState.fetchedAt === 0) void refreshHistory();
}

if (adminKey) void signIn();
else showLogin();
