// gslb status page: plain JavaScript, no build step, no CDN.
// Reads /v1/state and /v1/audit every 2 s with the token kept in sessionStorage, draws the
// datacenters on an offline world map (static/world.json), and drains/undrains through the
// api. Every text from the api goes through textContent: reasons are operator input.
"use strict";

const TOKEN_KEY = "gslb.token";
const REFRESH_MS = 2000;
const W = 720, H = 360;
const SVG_NS = "http://www.w3.org/2000/svg";

let timer = null;
let lastState = null;
let pendingDrain = null;

const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function project(lat, lon) { return [(lon + 180) * 2, (90 - lat) * 2]; }

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString();
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return seconds < 60 ? `${seconds.toFixed(1)} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function badge(state) { return el("span", { class: `badge ${state}` }, state); }

function drainText(drain) {
  if (!drain) return "";
  const until = drain.expires_at ? `, until ${when(drain.expires_at)}` : "";
  return `${drain.kind} ${drain.target}: “${drain.reason}” by ${drain.who}${until}`;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function showBanner(text, kind) {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = `banner ${kind || ""}`;
  banner.hidden = !text;
}

// -- token -----------------------------------------------------------------------------------

function askToken(message) {
  const dialog = $("token-dialog");
  $("token-error").textContent = message || "";
  $("token-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

function setupToken() {
  $("token-button").addEventListener("click", () => askToken(""));
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-dialog").close();
    $("whoami").textContent = "no token";
    refresh();
  });
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      const me = await api("GET", "/v1/whoami");
      $("token-dialog").close();
      $("whoami").textContent = `${me.token} (${me.role})`;
      refresh();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("token-error").textContent = e.message;
    }
  });
}

// -- drains ----------------------------------------------------------------------------------

function openDrain(kind, name) {
  pendingDrain = { kind, name };
  $("drain-title").textContent = `Drain ${kind} ${name}`;
  $("drain-reason").value = "";
  $("drain-expires").value = "";
  $("drain-force").checked = false;
  $("drain-force-label").hidden = true;
  $("drain-error").textContent = "";
  $("drain-dialog").showModal();
  $("drain-reason").focus();
}

const PLURAL = { region: "regions", datacenter: "datacenters", endpoint: "endpoints" };

function actionPath(kind, name, verb) {
  return `/v1/${PLURAL[kind]}/${encodeURIComponent(name)}/${verb}`;
}

function cachesText(result) {
  return `caches clear by ${when(result.caches_clear_by)} (TTL ${result.ttl} s)`;
}

async function submitDrain(event) {
  event.preventDefault();
  const { kind, name } = pendingDrain;
  const reason = $("drain-reason").value.trim();
  if (!reason) { $("drain-error").textContent = "a reason is required"; return; }
  const body = { reason };
  const expires = $("drain-expires").value;
  if (expires) body.expires_in_s = Number(expires);
  if ($("drain-force").checked) body.force = true;
  try {
    const result = await api("POST", actionPath(kind, name, "drain"), body);
    $("drain-dialog").close();
    showBanner(`Drained ${kind} ${name} (store version ${result.version}); ${cachesText(result)}.`, "ok");
    refresh();
  } catch (e) {
    if (e.status === 401) { $("drain-dialog").close(); askToken(e.message); return; }
    if (e.status === 409) $("drain-force-label").hidden = false;
    $("drain-error").textContent = e.message;
  }
}

async function undrain(kind, name) {
  try {
    const result = await api("POST", actionPath(kind, name, "undrain"), {});
    const still = result.still_drained_by.length ? ` Still drained by ${result.still_drained_by.map(drainText).join("; ")}.` : "";
    const text = result.removed
      ? `Undrained ${kind} ${name} (store version ${result.version}); ${cachesText(result)}.`
      : `${kind} ${name} was not drained.`;
    showBanner(text + still, "ok");
    refresh();
  } catch (e) {
    if (e.status === 401) { askToken(e.message); return; }
    showBanner(`Undrain ${kind} ${name} failed: ${e.message}`, "error");
  }
}

function actionButton(kind, name, drained) {
  const verb = drained ? "undrain" : "drain";
  return el("button", {
    type: "button",
    class: drained ? "" : "danger",
    "data-action": verb, "data-kind": kind, "data-name": name,
    onclick: () => (drained ? undrain(kind, name) : openDrain(kind, name)),
  }, drained ? "Undrain" : "Drain");
}

// -- drawing -----------------------------------------------------------------------------------

async function loadMap() {
  const graticule = $("graticule");
  for (let lon = -150; lon <= 150; lon += 30) {
    const [x] = project(0, lon);
    graticule.append(svg("line", { x1: x, y1: 0, x2: x, y2: H, class: "graticule" }));
  }
  for (let lat = -60; lat <= 60; lat += 30) {
    const [, y] = project(lat, 0);
    graticule.append(svg("line", { x1: 0, y1: y, x2: W, y2: y, class: "graticule" }));
  }
  try {
    const response = await fetch("/static/world.json");
    const world = await response.json();
    $("land").setAttribute("d", world.land);
  } catch (e) {
    $("land").setAttribute("d", "");
  }
}

function drawMarkers(state) {
  const group = $("markers");
  group.replaceChildren();
  for (const dc of state.datacenters) {
    const [x, y] = project(dc.latitude, dc.longitude);
    const marker = svg("g", {
      class: `marker ${dc.state}`, "data-dc": dc.name, "data-state": dc.state, transform: `translate(${x} ${y})`,
    });
    const title = svg("title", {});
    title.textContent = `${dc.name} (${dc.region}): ${dc.state}${dc.drain ? " — " + drainText(dc.drain) : ""}`;
    marker.append(title, svg("circle", { r: 7, class: "halo" }), svg("circle", { r: 4.5, class: "dot" }));
    const label = svg("text", { x: 9, y: 4, class: "label" });
    label.textContent = dc.name;
    marker.append(label);
    group.append(marker);
  }
}

function fill(tableId, rows) {
  $(tableId).querySelector("tbody").replaceChildren(...rows);
}

function render(state) {
  lastState = state;
  const sync = state.sync;
  const problems = [];
  if (!sync.connected) problems.push("state store unreachable");
  if (sync.stale) problems.push("state is stale");
  if (state.stale_probers.length) problems.push(`stale probers: ${state.stale_probers.join(", ")}`);
  const hold = state.hold;
  if (hold && hold.holding) {
    const entries = Object.entries(hold.endpoints);
    const held = entries.slice(0, 10).map(([id, health]) => `${id} ${health}`).join(", ") +
      (entries.length > 10 ? ` and ${entries.length - 10} more` : "");
    problems.push(`no fresh prober since ${when(hold.since)}: holding the last verdicts of ` +
      `${hold.probers.join(", ")} (held: ${held || "none"})`);
  } else if (hold && hold.released) {
    problems.push(`no fresh prober since ${when(hold.since)}: held verdicts released, every endpoint counts as up`);
  }
  $("summary").textContent =
    `${state.mode} mode · store version ${state.version.store} · synced ${ago(sync.age_s)}` +
    (problems.length ? ` · ${problems.join(" · ")}` : "");
  $("summary").className = problems.length ? "warn" : "muted";
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  drawMarkers(state);

  const byName = Object.fromEntries(state.datacenters.map((dc) => [dc.name, dc]));
  fill("regions", state.regions.map((region) => el("tr", { "data-region": region.name },
    el("td", {}, region.name),
    el("td", {}, region.datacenters.map((name) => el("span", { class: "dcname" }, name, " ", badge(byName[name].state)))),
    el("td", { class: "drain" }, drainText(region.drain)),
    el("td", {}, actionButton("region", region.name, Boolean(region.drain))),
  )));

  fill("datacenters", state.datacenters.map((dc) => {
    const up = dc.services.reduce((n, s) => n + s.endpoints_up, 0);
    const total = dc.services.reduce((n, s) => n + s.endpoints, 0);
    const own = dc.drain && dc.drain.kind === "datacenter";
    return el("tr", { "data-datacenter": dc.name },
      el("td", {}, dc.name),
      el("td", {}, dc.region),
      el("td", {}, badge(dc.state)),
      el("td", {}, `${up}/${total}`),
      el("td", { class: "drain" }, drainText(dc.drain)),
      el("td", {}, actionButton("datacenter", dc.name, own)),
    );
  }));

  fill("services", state.services.map((s) => el("tr", {},
    el("td", {}, s.name.replace(/\.$/, "")),
    el("td", {}, String(s.ttl)),
    el("td", {}, s.eligible_datacenters.length ? s.eligible_datacenters.join(", ") : el("span", { class: "warn" }, "none: when_all_down answers")),
    el("td", {}, s.when_all_down),
  )));

  fill("endpoints", state.endpoints.map((e) => {
    const probers = e.probers.map((p) =>
      `${p.prober}: ${p.health}` +
      (p.ewma_rtt_ms !== null ? `, ${p.ewma_rtt_ms.toFixed(1)} ms` : "") +
      (p.last_check_age_s !== null ? `, ${ago(p.last_check_age_s)}` : "")).join("; ");
    const own = e.drain && e.drain.kind === "endpoint";
    return el("tr", {},
      el("td", { class: "mono" }, e.id),
      el("td", {}, badge(e.drained ? "drained" : e.health), e.held ? el("span", { class: "warn", title: "no prober is fresh: this is the last verdict of a stale prober" }, " held") : null),
      el("td", {}, probers || el("span", { class: "muted" }, "no details")),
      el("td", { class: "drain" }, drainText(e.drain)),
      el("td", {}, actionButton("endpoint", e.id, own)),
    );
  }));

  fill("probers", state.probers.length ? state.probers.map((p) => el("tr", {},
    el("td", {}, p.id),
    el("td", {}, ago(p.heartbeat_age_s)),
    el("td", {}, p.stale ? badge("down") : badge("up"), p.stale && p.stale_since ? ` stale since ${when(p.stale_since)}` : null),
  )) : [el("tr", {}, el("td", { colspan: 3, class: "muted" }, "no prober is reporting"))]);
}

function renderAudit(entries) {
  fill("audit", entries.length ? entries.map((a) => el("tr", {},
    el("td", {}, when(a.at)),
    el("td", {}, a.token),
    el("td", {}, a.source),
    el("td", {}, a.action),
    el("td", { class: "mono" }, a.target),
    el("td", {}, a.result),
    el("td", {}, a.reason),
  )) : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "nothing yet"))]);
}

async function refresh() {
  clearTimeout(timer);
  try {
    if (!token()) {
      $("summary").textContent = "a read token is needed to show the state";
      if (!$("token-dialog").open && !$("drain-dialog").open) askToken("");
      return;
    }
    const [state, audit] = await Promise.all([api("GET", "/v1/state"), api("GET", "/v1/audit?limit=15")]);
    render(state);
    renderAudit(audit.entries);
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken(e.message);
      return;
    }
    $("summary").textContent = `cannot read the state: ${e.message}`;
    $("summary").className = "warn";
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  setupToken();
  $("drain-form").addEventListener("submit", submitDrain);
  $("drain-cancel").addEventListener("click", () => $("drain-dialog").close());
  await loadMap();
  if (token()) {
    api("GET", "/v1/whoami").then((me) => { $("whoami").textContent = `${me.token} (${me.role})`; }, () => {});
  }
  refresh();
});
