/*
 * The waiting-room page: join, watch the place live over the ticket's event
 * stream, claim the seat when admitted, leave when the page goes away.
 * Vanilla ES module, no build step. The ticket's id and token live in
 * sessionStorage (this tab only) so a reload resumes the same place.
 */

const root = document.getElementById("room");
// The service's root: "" on its own origin, "/.waitroom" where the gate's proxy serves it on the protected site.
const base = location.pathname.slice(0, location.pathname.lastIndexOf("/rooms/"));
const room = root.dataset.room;
// The page's language, and the room's own text and look (web/page.js), before anything is shown.
const { localize } = await import(root.dataset.i18nModule);
const { applyPage } = await import(root.dataset.pageModule);
// Handing the admission over to the protected site (web/handover.js).
const { arrivedFromGate, endHandover, handOver } = await import(root.dataset.handoverModule);
const words = localize(document.documentElement.lang);
const { t, number, percent: share, clock, when, duration, minutes } = words;
const page = applyPage(words);
const storageKey = `waitroom:ticket:${room}`;
const $ = (id) => document.getElementById(id);

const live = new Set(["queued", "admitted", "active", "draining"]);
const streamEvents = ["state", "admitted", "active", "draining", "ended", "superseded", "room"];

/** @type {{ticket_id: string, token: string, events_url: string, start_position: number, admission_token?: string, admission_expires_at?: string, expires_at?: string, left?: "unload" | "button"} | null} */
let ticket = readTicket();
/** @type {EventSource | undefined} */
let source;
let lastEventId = "";
let shown = { status: "connecting" };
let claiming = false;
let over = false;
let reloading = false;
let recoverDelay = 1000;
let recoverTimer;
let refreshTimer;

function readTicket() {
  try {
    const value = JSON.parse(sessionStorage.getItem(storageKey) ?? "null");
    return value && typeof value.ticket_id === "string" && typeof value.token === "string" ? value : null;
  } catch {
    return null;
  }
}

function saveTicket() {
  try {
    if (ticket) sessionStorage.setItem(storageKey, JSON.stringify(ticket));
    else sessionStorage.removeItem(storageKey);
  } catch {
    // Private mode without storage: the page still works, a reload joins again.
  }
}

/** One API call; never throws for HTTP errors: {status, ok, data}. Throws on network failure. */
async function api(path, { method = "GET", token, keepalive = false, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${base}${path}`, {
    method,
    headers,
    keepalive,
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return { status: response.status, ok: response.ok, data };
}

/* ---------- What the page shows ---------- */

/**
 * The estimate, and its range where the server gives one that spans more than a minute: two parts,
 * so the range goes on a line of its own rather than breaking anywhere.
 */
function eta(data) {
  if (data.eta_seconds == null) return { estimate: t("estimating"), range: "" };
  const low = data.eta_low_seconds;
  const high = data.eta_high_seconds;
  const estimate = duration(data.eta_seconds);
  if (low == null || high == null || Math.round(high / 60) <= Math.round(low / 60)) return { estimate, range: "" };
  return { estimate, range: minutes(Math.max(1, Math.round(low / 60)), Math.round(high / 60)) };
}

/** Each state's icon; its headline is the catalogue's state_<name>. */
const icons = {
  connecting: "…",
  queued: "◷",
  admitted: "➜",
  active: "✓",
  draining: "◔",
  ended: "■",
  expired: "✕",
  left: "←",
  superseded: "⇄",
  unknown: "?",
  closed: "✕",
  gone: "✕",
  error: "!",
  sold_out: "✕",
  over_quota: "◷",
};

let lastAnnounced = "";
let announceTimer;
let lastAnnouncedAt = 0;

/** The polite live region: state changes at once, position changes at most every 5 s. */
function announce(text, urgent = false) {
  if (text === lastAnnounced) return;
  clearTimeout(announceTimer);
  const wait = urgent ? 0 : Math.max(0, lastAnnouncedAt + 5000 - Date.now());
  announceTimer = setTimeout(() => {
    lastAnnounced = text;
    lastAnnouncedAt = Date.now();
    $("announcer").textContent = text;
  }, wait);
}

function setState(state, detail = "") {
  const known = state in icons ? state : "error";
  const view = { icon: icons[known], headline: t(`state_${known}`) };
  const panel = $("panel");
  const changed = panel.dataset.state !== state;
  panel.dataset.state = state;
  panel.setAttribute("aria-busy", String(state === "connecting" || state === "admitted"));
  panel.querySelector("#headline .icon").textContent = view.icon;
  $("headline-text").textContent = view.headline;
  $("detail").textContent = detail;
  $("waiting").hidden = state !== "queued";
  $("active").hidden = !(state === "active" || state === "draining");
  // A re-render of the same state (a stream event, a heartbeat) keeps an open "give up?" question open.
  if (changed) $("confirm-leave").hidden = true;
  $("leave").hidden = !live.has(state) || !$("confirm-leave").hidden;
  $("leave").textContent = t(state === "active" || state === "draining" ? "give_up_seat" : "leave_queue");
  // Nothing to join at an address with no room; a closed room may open again.
  $("rejoin").hidden = live.has(state) || ["connecting", "superseded", "unknown", "gone"].includes(state);
  $("rejoin").textContent = t(state === "closed" ? "try_again" : "join_again");
  // Without a ticket there is no connection to speak of.
  $("connection").hidden = ["unknown", "closed", "gone"].includes(state);
  if (changed && state !== "queued") announce(`${view.headline}. ${detail}`, true);
  document.title = `${state === "queued" && shown.position ? `(${number.format(shown.position)}) ` : ""}${view.headline} · ${page.title}`;
}

function setNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function setConnection(state, text) {
  const element = $("connection");
  element.dataset.connection = state;
  element.querySelector(".icon").textContent = { live: "●", reconnecting: "◐", closed: "○" }[state] ?? "○";
  $("connection-text").textContent = text;
}

function renderQueued(data) {
  // No position while the room's opening draw is to come: the draw gives every entrant its place.
  setState(
    "queued",
    t(data.position === null ? "detail_draw" : data.position === 1 ? "detail_next" : "detail_keep_open"),
  );
  const position = data.position ?? 0;
  $("position").textContent = position
    ? data.approximate
      ? t("about", { value: number.format(position) })
      : number.format(position)
    : "–";
  $("depth").textContent = number.format(data.depth ?? 0);
  const { estimate, range } = eta(data);
  $("eta-estimate").textContent = estimate;
  $("eta-range").textContent = range;
  $("eta-range").hidden = !range;
  // Progress: how much of the line that was ahead when we joined has gone in (100% = admitted).
  const start = Math.max(ticket?.start_position ?? position, position, 1);
  if (ticket && position > (ticket.start_position ?? 0)) {
    ticket.start_position = position;
    saveTicket();
  }
  const percent = position ? Math.round(((start - position) / start) * 100) : 0;
  $("progress").value = percent;
  $("progress").textContent = share.format(percent / 100);
  $("progress-text").textContent = `(${share.format(percent / 100)})`;
  if (position) {
    announce(position === 1 ? t("announce_next") : t("announce_position", { position: number.format(position) }));
  }
}

function renderActive(data) {
  const draining = data.status === "draining";
  const expires = data.expires_at ?? ticket?.expires_at;
  setState(
    draining ? "draining" : "active",
    draining ? t("detail_draining") : (page.admittedText ?? t("detail_active")),
  );
  $("expires").textContent = expires
    ? t(draining ? "grace_until" : "seat_until", { time: clock.format(new Date(expires)) })
    : "";
  $("token-details").hidden = !ticket?.admission_token;
  if (ticket?.admission_token) $("admission-token").value = ticket.admission_token;
  if (!draining) keepTokenFresh();
  // A seat resumed from an earlier visit: hand it over again with a fresh token (the old one may have lapsed).
  if (!handedOver && !claimedHere) void refreshToken();
}

let handedOver = false;
let claimedHere = false;
let continued = false;

/** Hand the current admission over to the protected site, then show (or follow) the way there. */
async function handOverSeat() {
  let next;
  try {
    next = await handOver(base, room, ticket.admission_token);
  } catch {
    return; // Offline: the next heartbeat hands over again.
  }
  if (!next || over) return;
  handedOver = true;
  if (!next.continue_url) return;
  $("continue").href = next.continue_url;
  $("continue-line").hidden = false;
  // Just admitted, or sent here by the gate: go on by itself unless the room says otherwise.
  if (next.auto_continue && (claimedHere || arrivedFromGate) && !continued && shown.status !== "draining") {
    continued = true;
    location.assign(next.continue_url);
  }
}

/**
 * Admission tokens are short-lived: while the seat is held, a heartbeat halfway to the token's expiry
 * brings a fresh one (and extends the seat where the room renews on heartbeat).
 */
function keepTokenFresh() {
  clearTimeout(refreshTimer);
  if (!ticket?.admission_expires_at) return;
  const wait = Math.max((new Date(ticket.admission_expires_at).getTime() - Date.now()) / 2, 5000);
  refreshTimer = setTimeout(refreshToken, wait);
}

async function refreshToken() {
  if (over || !ticket) return;
  let answer;
  try {
    answer = await api(`/v1/tickets/${ticket.ticket_id}/heartbeat`, { method: "POST", token: ticket.token });
  } catch {
    // Offline for a moment: try again soon.
  }
  if (answer?.ok && answer.data.admission_token) {
    keepAdmission(answer.data);
    return render(answer.data);
  }
  if (answer && !answer.ok && answer.status < 500) return; // the stream tells how the seat ended
  refreshTimer = setTimeout(refreshToken, 5000);
}

/** The admission token of a claim or heartbeat answer, kept for this tab (and shown). */
function keepAdmission(data) {
  ticket.admission_token = data.admission_token;
  ticket.admission_expires_at = data.admission_expires_at;
  ticket.expires_at = data.expires_at;
  saveTicket();
  void handOverSeat();
}

const endings = {
  ended: t("ended_ended"),
  expired: t("ended_expired"),
  left: t("ended_left"),
};

function renderEnded(status, reason) {
  over = true;
  closeStream();
  setConnection("closed", t("conn_closed"));
  if (reason === "sold_out") return setState("sold_out", t("detail_sold_out"));
  const detail = endings[status] ?? endings.ended;
  setState(status in endings ? status : "ended", reason === "claim_timeout" ? t("detail_claim_timeout") : detail);
}

/** Apply a ticket state from the stream or the API. */
function render(data) {
  if (over) return;
  shown = data;
  if (data.status === "queued") renderQueued(data);
  else if (data.status === "admitted") {
    setState("admitted", t("detail_admitted"));
    void claim();
  } else if (data.status === "active" || data.status === "draining") {
    // Our own claim's `active` event can beat the claim's answer (which carries the token): wait for it.
    if (claiming && data.status === "active") return;
    // A seat without its token here (the claim's answer was lost): a claim is idempotent, ask again.
    if (!ticket?.admission_token && data.status === "active") return void claim();
    renderActive(data);
  } else if (data.status === "superseded") superseded();
  else renderEnded(data.status, data.reason);
}

function superseded() {
  over = true;
  closeStream();
  setConnection("closed", t("conn_closed"));
  setState("superseded", t("detail_superseded"));
}

function roomEvent(change) {
  if (!change) return;
  if (change.event === "room_deleted") {
    over = true;
    closeStream();
    setConnection("closed", t("conn_closed"));
    setState("gone", t("detail_gone"));
    return;
  }
  if (change.event === "room_sold_out") return setNotice(t("notice_sold_out"));
  if (change.mode === "paused") setNotice(t("notice_paused"));
  else if (change.mode === "closed") setNotice(t("notice_closed"));
  else if (change.mode === "open" || change.mode === "passthrough") setNotice("");
}

/* ---------- The stream ---------- */

function closeStream() {
  clearTimeout(refreshTimer);
  source?.close();
  source = undefined;
  clearTimeout(recoverTimer);
}

function subscribe() {
  closeStream();
  if (!ticket || over) return;
  const query = new URLSearchParams({ token: ticket.token });
  // A stream we open again ourselves (EventSource gave up) resumes from the last ledger event seen.
  if (lastEventId) query.set("lastEventId", lastEventId);
  const stream = new EventSource(`${base}${ticket.events_url}?${query}`);
  source = stream;
  stream.onopen = () => {
    recoverDelay = 1000;
    setConnection("live", t("conn_live"));
  };
  stream.onerror = () => {
    if (stream !== source) return;
    if (stream.readyState === EventSource.CONNECTING) {
      // EventSource reconnects by itself, sending Last-Event-ID.
      setConnection("reconnecting", t("conn_reconnecting"));
      return;
    }
    // Closed: the ticket is over (204), or an error status. Ask the API what happened.
    closeStream();
    if (!over) recover();
  };
  for (const name of streamEvents) {
    stream.addEventListener(name, (event) => {
      if (stream !== source) return;
      if (event.lastEventId) lastEventId = event.lastEventId;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (name === "room") roomEvent(data.room);
      else if (name === "superseded") superseded();
      else if (name === "ended") renderEnded(data.status, data.reason);
      else render(data);
    });
  }
}

/** The stream stopped for good: read the ticket's state and carry on (or end) from there. */
async function recover() {
  clearTimeout(recoverTimer);
  if (!ticket || over) return;
  setConnection("reconnecting", t("conn_reconnecting"));
  try {
    const answer = await api(`/v1/tickets/${ticket.ticket_id}`, { token: ticket.token });
    if (answer.ok) {
      render(answer.data);
      if (!over && live.has(answer.data.status)) subscribe();
      return;
    }
    if (answer.data?.error?.code === "superseded") return superseded();
    if (answer.status === 404) {
      over = true;
      ticket = null;
      saveTicket();
      setConnection("closed", t("conn_closed"));
      return setState("expired", t("detail_forgotten"));
    }
  } catch {
    // Offline: try again below.
  }
  recoverTimer = setTimeout(recover, recoverDelay);
  recoverDelay = Math.min(recoverDelay * 2, 30_000);
}

/* ---------- Verbs ---------- */

async function claim() {
  if (claiming || !ticket) return;
  if (ticket.admission_token) return renderActive({ ...shown, status: "active", expires_at: ticket.expires_at });
  claiming = true;
  let answer;
  try {
    for (let attempt = 0; attempt < 5 && !over; attempt++) {
      try {
        answer = await api(`/v1/tickets/${ticket.ticket_id}/claim`, { method: "POST", token: ticket.token });
        if (answer.ok || answer.status < 500) break;
      } catch {
        answer = undefined; // Offline for a moment: try again.
      }
      await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
    }
  } finally {
    claiming = false;
  }
  if (!answer || over || !ticket) return;
  if (answer.ok) {
    claimedHere = true;
    keepAdmission(answer.data);
    return render({ ...shown, status: answer.data.status, position: null, expires_at: answer.data.expires_at });
  }
  const code = answer.data?.error?.code;
  if (code === "superseded") return superseded();
  if (code === "expired" || code === "ended" || code === "left") return renderEnded(code);
  // not_admitted: the stream says when. Anything else: the stream or a reload tries again.
}

/* ---------- Proof of work ---------- */

/**
 * Join; a room that asks anonymous joins for a proof of work answers
 * proof_required: solve its challenge in a worker (web/pow-worker.js), then
 * join with the solution. A worker that fails leaves the first answer.
 */
async function joinWithProof() {
  const path = `/v1/rooms/${encodeURIComponent(room)}`;
  const answer = await api(`${path}/tickets`, { method: "POST" });
  if (answer.data?.error?.code !== "proof_required") return answer;
  const challenge = await api(`${path}/challenge`);
  if (!challenge.ok) return challenge;
  const worker = new Worker(root.dataset.powWorker);
  const solved = await new Promise((resolve) => {
    worker.onmessage = ({ data }) => resolve(data);
    worker.onerror = () => resolve({ error: "the worker failed" });
    worker.postMessage({ challenge: challenge.data.challenge, bits: challenge.data.bits });
  });
  worker.terminate();
  if (!solved.nonce) return answer;
  return api(`${path}/tickets`, {
    method: "POST",
    body: { proof_of_work: { challenge: challenge.data.challenge, nonce: solved.nonce } },
  });
}

async function join(note = "") {
  over = false;
  lastEventId = "";
  setState("connecting", t("detail_joining"));
  setNotice(note);
  let answer;
  try {
    answer = await joinWithProof();
  } catch {
    setState("error", t("detail_unreachable"));
    return;
  }
  if (answer.status === 202) {
    const data = answer.data;
    ticket = {
      ticket_id: data.ticket_id,
      token: data.token,
      events_url: data.events_url,
      start_position: data.position ?? data.depth ?? 1,
    };
    saveTicket();
    render({ ...data, room_id: room, approximate: false, expires_at: null });
    subscribe();
    return;
  }
  const code = answer.data?.error?.code;
  if (code === "not_found") setState("unknown", t("detail_unknown", { room }));
  else if (code === "room_closed") setState("closed", t("detail_closed"));
  else if (code === "room_full") setState("error", t("detail_full"));
  else if (code === "sold_out") setState("sold_out", t("detail_sold_out"));
  else if (code === "quota_exceeded") {
    const at = answer.data.error.available_at;
    setState(
      "over_quota",
      at ? t("detail_come_back_at", { at: when.format(new Date(at)) }) : t("detail_come_back_later"),
    );
  } else if (code === "rate_limited") setState("error", t("detail_rate_limited"));
  else setState("error", answer.data?.error?.message ?? t("detail_status", { status: answer.status }));
}

async function leave({ unloading = false } = {}) {
  if (!ticket || over || ticket.left) return;
  const { ticket_id, token } = ticket;
  ticket.left = unloading ? "unload" : "button";
  saveTicket();
  closeStream();
  if (unloading) {
    // sendBeacon cannot DELETE; a keepalive fetch outlives the page.
    void endHandover(base, room);
    fetch(`${base}/v1/tickets/${ticket_id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}` },
      keepalive: true,
    }).catch(() => {});
    return;
  }
  void endHandover(base, room);
  try {
    await api(`/v1/tickets/${ticket_id}`, { method: "DELETE", token });
  } catch {
    // The place lapses by itself once the page stops being present.
  }
  renderEnded("left");
}

async function start() {
  if (!ticket) return join();
  if (ticket.left === "button") {
    over = true;
    return setState("left", endings.left);
  }
  if (ticket.left === "unload") {
    // The page was unloaded (and gave up its place) without us knowing it would come back.
    ticket = null;
    saveTicket();
    return join(t("notice_released"));
  }
  let answer;
  try {
    answer = await api(`/v1/tickets/${ticket.ticket_id}`, { token: ticket.token });
  } catch {
    return recover();
  }
  if (answer.ok) {
    render(answer.data);
    if (!over) subscribe();
    return;
  }
  if (answer.data?.error?.code === "superseded") return superseded();
  // Unknown (purged, or another database): start afresh.
  ticket = null;
  saveTicket();
  return join();
}

/* ---------- Page lifecycle ---------- */

// Leaving the queue is undone by joining again; a seat given up goes to someone else: ask first.
$("leave").addEventListener("click", () => {
  if (shown.status !== "active" && shown.status !== "draining") return void leave();
  $("leave").hidden = true;
  $("confirm-leave").hidden = false;
  $("confirm-leave-no").focus();
});
$("confirm-leave-yes").addEventListener("click", () => void leave());
$("confirm-leave-no").addEventListener("click", () => {
  $("confirm-leave").hidden = true;
  $("leave").hidden = false;
  $("leave").focus();
});
$("rejoin").addEventListener("click", () => {
  ticket = null;
  saveTicket();
  void join();
});

// A reload we can see coming keeps the place (the reloaded page resumes it); other unloads leave.
const markReload = () => {
  reloading = true;
  setTimeout(() => {
    reloading = false;
  }, 10_000);
};
addEventListener("keydown", (event) => {
  if (event.key === "F5" || ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "r")) markReload();
});
if ("navigation" in window) {
  window.navigation.addEventListener("navigate", (event) => {
    if (event.navigationType === "reload") markReload();
  });
}

addEventListener("pagehide", (event) => {
  if (event.persisted) {
    // Kept in the back/forward cache: stop streaming, pick up again on pageshow.
    closeStream();
    return;
  }
  // A seat already taken stays taken (the person is likely on their way to the site, via Continue).
  if (reloading || !(shown.status === "queued" || shown.status === "admitted")) {
    closeStream();
    return;
  }
  void leave({ unloading: true });
});
addEventListener("pageshow", (event) => {
  if (event.persisted && ticket && !over) void recover();
});

void start();
