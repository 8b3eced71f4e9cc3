// gslb status page: plain JavaScript, no build step, no CDN.
// Reads /v1/state, /v1/traffic and /v1/audit every 2 s with the token kept in sessionStorage,
// draws the datacenters on an offline world map (static/world.json) sized by their answers per
// second, draws the last 15 minutes of answers per second as inline SVG charts, and
// drains/undrains through the api (buttons only for a token whose role may drain: /v1/whoami).
// Every text from the api goes through textContent: reasons are operator input.
"use strict";

const TOKEN_KEY = "gslb.token";
const REFRESH_MS = 2000;
const W = 720, H = 360;
const SVG_NS = "http://www.w3.org/2000/svg";

let timer = null;
let lastState = null;
let pendingDrain = null;
let me = null; // /v1/whoami of the token in use: {token, role, source}; null until known

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

// Who drained what, why and until when: the same words for every level of drain.
function drainText(drain) {
  if (!drain) return "";
  const until = drain.expires_at ? `until ${when(drain.expires_at)}` : "until undrained";
  return `${drain.kind} ${drain.target} drained by ${drain.who}: “${drain.reason}”, ${until}`;
}

// The drains given, each once (a datacenter's own drain may also be among its endpoints').
function uniqueDrains(drains) {
  const seen = new Set();
  return drains.filter((d) => d && !seen.has(`${d.kind}:${d.target}`) && seen.add(`${d.kind}:${d.target}`));
}

function drainCell(drains) {
  const list = uniqueDrains(drains);
  return el("td", { class: "drain" }, list.map((d) => el("div", {
    "data-drain-kind": d.kind, "data-drain-who": d.who, title: `since ${when(d.created_at)}`,
  }, drainText(d))));
}

function rateText(rate) {
  if (rate === null || rate === undefined) return "?";
  return rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
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

// The token's name and role. The role decides whether Drain/Undrain buttons are drawn: a
// read token gets none (the api would refuse it with 403 anyway).
async function loadWhoami() {
  me = await api("GET", "/v1/whoami");
  $("whoami").textContent = `${me.token} (${me.role})`;
  document.body.dataset.role = me.role;
  return me;
}

function mayDrain() { return Boolean(me && me.role === "operate"); }

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  delete document.body.dataset.role;
}

function setupToken() {
  $("token-button").addEventListener("click", () => askToken(""));
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("token-forget").addEventListener("click", () => {
    forgetToken();
    $("token-dialog").close();
    $("whoami").textContent = "no token";
    refresh();
  });
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    me = null;
    try {
      await loadWhoami();
      $("token-dialog").close();
      refresh();
    } catch (e) {
      forgetToken();
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
    showBanner(`Drained ${kind} ${name} (state version ${result.state_version}); ${cachesText(result)}.`, "ok");
    refresh();
  } catch (e) {
    if (e.status === 401) { $("drain-dialog").close(); askToken(e.message); return; }
    if (e.status === 409) $("drain-force-label").hidden = false;
    if (e.status === 403) { me = null; refresh(); }
    $("drain-error").textContent = e.message;
  }
}

async function undrain(kind, name) {
  try {
    const result = await api("POST", actionPath(kind, name, "undrain"), {});
    const still = result.still_drained_by.length ? ` Still drained by ${result.still_drained_by.map(drainText).join("; ")}.` : "";
    const text = result.removed
      ? `Undrained ${kind} ${name} (state version ${result.state_version}); ${cachesText(result)}.`
      : `${kind} ${name} was not drained.`;
    showBanner(text + still, "ok");
    refresh();
  } catch (e) {
    if (e.status === 401) { askToken(e.message); return; }
    if (e.status === 403) { me = null; refresh(); }
    showBanner(`Undrain ${kind} ${name} failed: ${e.message}`, "error");
  }
}

function actionButton(kind, name, drained) {
  if (!mayDrain()) return null;
  const verb = drained ? "undrain" : "drain";
  return el("button", {
    type: "button",
    class: drained ? "" : "danger",
    "data-action": verb, "data-kind": kind, "data-name": name,
    onclick: () => (drained ? undrain(kind, name) : openDrain(kind, name)),
  }, drained ? "Undrain" : "Drain");
}

// -- what each datacenter is, truthfully ------------------------------------------------------

// Per datacenter: its endpoints counted by what they are (up, degraded, down, drained) and the
// endpoint drains among them, so that a datacenter whose endpoints are all drained reads
// "drained" with who and why, never "down 0/1" with an empty drain column.
function datacenterViews(state) {
  const views = {};
  for (const dc of state.datacenters) {
    // The api calls a datacenter drained when only endpoint drains keep it out, and names them.
    views[dc.name] = { dc, state: dc.state, total: 0, up: 0, degraded: 0, down: 0, drained: 0, endpointDrains: dc.endpoint_drains };
  }
  for (const e of state.endpoints) {
    const v = views[e.datacenter];
    if (!v) continue;
    v.total += 1;
    if (e.drained) {
      v.drained += 1;
    } else {
      v[e.health] = (v[e.health] || 0) + 1;
    }
  }
  return views;
}

function countsText(v) {
  const parts = ["up", "degraded", "down", "drained"].filter((k) => v[k]).map((k) => `${v[k]} ${k}`);
  return `${parts.join(", ") || "none"} of ${v.total}`;
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

function ratesByDatacenter(traffic) {
  if (!traffic) return {};
  return Object.fromEntries(traffic.datacenters.map((d) => [d.name, d.answers_per_s]));
}

// A marker per datacenter: its colour is its state, its halo grows with its answers per
// second (the area with the rate, relative to the busiest datacenter), its label says the rate.
function drawMarkers(state, views, traffic) {
  const group = $("markers");
  group.replaceChildren();
  const rates = ratesByDatacenter(traffic);
  const busiest = Math.max(1, ...Object.values(rates).filter((r) => r !== null));
  for (const dc of state.datacenters) {
    const view = views[dc.name];
    const [x, y] = project(dc.latitude, dc.longitude);
    const rate = rates[dc.name];
    const known = rate !== undefined && rate !== null;
    const marker = svg("g", {
      class: `marker ${view.state}`, "data-dc": dc.name, "data-state": view.state,
      "data-rate": known ? String(rate) : "", transform: `translate(${x} ${y})`,
    });
    const title = svg("title", {});
    const drains = uniqueDrains([dc.drain, ...view.endpointDrains]).map(drainText);
    title.textContent = `${dc.name} (${dc.region}): ${view.state}` +
      (known ? `, ${rateText(rate)} answers/s` : "") + (drains.length ? " — " + drains.join("; ") : "");
    const halo = 7 + (known ? 11 * Math.sqrt(rate / busiest) : 0);
    marker.append(title, svg("circle", { r: halo.toFixed(1), class: "halo" }), svg("circle", { r: 4.5, class: "dot" }));
    const label = svg("text", { x: 9, y: 4, class: "label" });
    label.textContent = dc.name;
    if (rate !== undefined) {
      const tspan = svg("tspan", { class: "rate", "data-rate-label": dc.name });
      tspan.textContent = ` ${rateText(rate)}/s`;
      label.append(tspan);
    }
    marker.append(label);
    group.append(marker);
  }
}

function fill(tableId, rows) {
  $(tableId).querySelector("tbody").replaceChildren(...rows);
}

// Times (Unix s) of applied drains and undrains from the audit, per datacenter they touch:
// vertical marks on the traffic charts, so that answers moving line up with their cause.
function auditMarks(state, audit) {
  const marks = {};
  const dcsOf = {};
  for (const dc of state.datacenters) dcsOf[`datacenter:${dc.name}`] = [dc.name];
  for (const region of state.regions) dcsOf[`region:${region.name}`] = region.datacenters;
  for (const e of state.endpoints) dcsOf[`endpoint:${e.id}`] = [e.datacenter];
  for (const a of audit || []) {
    if (a.result !== "applied" || (a.action !== "drain" && a.action !== "undrain")) continue;
    for (const dc of dcsOf[a.target] || []) {
      (marks[dc] = marks[dc] || []).push({ at: Date.parse(a.at) / 1000, action: a.action, target: a.target });
    }
  }
  return marks;
}

// One small time series as inline SVG: a line (broken where a value is unknown) over a light
// area, on a fixed window ending now, with the same scale for every chart given the same max.
function sparkline(at, series, { from, to, max, marks = [], width = 240, height = 52, label = "" }) {
  const chart = svg("svg", {
    class: "spark", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
  });
  const title = svg("title", {});
  const known = series.filter((v) => v !== null);
  title.textContent = `${label}answers per second over the last ${Math.round((to - from) / 60)} min` +
    (known.length ? `: now ${rateText(series[series.length - 1])}, peak ${rateText(Math.max(...known))}` : ": nothing yet");
  chart.append(title);
  const base = height - 2;
  const x = (t) => Math.max(0, Math.min(width, ((t - from) / (to - from)) * width));
  const y = (v) => base - (v / max) * (height - 6);
  chart.append(svg("line", { x1: 0, y1: base, x2: width, y2: base, class: "axis" }));
  for (const mark of marks) {
    if (mark.at < from || mark.at > to) continue;
    const line = svg("line", { x1: x(mark.at), y1: 0, x2: x(mark.at), y2: height, class: `mark ${mark.action}` });
    const markTitle = svg("title", {});
    markTitle.textContent = `${mark.action} ${mark.target} at ${new Date(mark.at * 1000).toLocaleTimeString()}`;
    line.append(markTitle);
    chart.append(line);
  }
  const segments = [];
  let points = [];
  series.forEach((v, i) => {
    if (v === null || at[i] < from) {
      if (points.length) segments.push(points);
      points = [];
    } else {
      points.push([x(at[i]), y(v)]);
    }
  });
  if (points.length) segments.push(points);
  for (const seg of segments) {
    const d = seg.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)} ${py.toFixed(1)}`).join("");
    if (seg.length > 1) {
      const close = `L${seg[seg.length - 1][0].toFixed(1)} ${base}L${seg[0][0].toFixed(1)} ${base}Z`;
      chart.append(svg("path", { d: d + close, class: "area" }));
      chart.append(svg("path", { d, class: "line" }));
    } else {
      chart.append(svg("circle", { cx: seg[0][0].toFixed(1), cy: seg[0][1].toFixed(1), r: 1.8, class: "point" }));
    }
  }
  return chart;
}

// The charts' time axis: the api's window (15 min), or less while its history is younger
// (a restarted api), so that the first minutes fill the chart rather than its last pixels.
function trafficWindow(traffic) {
  const to = Date.parse(traffic.now) / 1000;
  const first = traffic.at.length ? traffic.at[0] : to;
  return { from: Math.max(to - traffic.window_s, Math.min(first, to - 60)), to };
}

function spanText(seconds) {
  return seconds >= 90 ? `${Math.round(seconds / 60)} min ago` : `${Math.round(seconds)} s ago`;
}

function sparkCard(attrs, name, sub, rate, chart, { from, to, max }) {
  return el("div", { class: "spark-card", ...attrs },
    el("div", { class: "spark-head" },
      el("b", {}, name), " ", el("span", { class: "muted" }, sub || ""),
      el("span", { class: "spacer" }),
      el("span", { class: "rate" }, `${rateText(rate)}/s`)),
    chart,
    el("div", { class: "spark-axis muted" },
      el("span", {}, spanText(to - from)), el("span", {}, `scale 0–${rateText(max)}/s`), el("span", {}, "now")));
}

// Answers per second per datacenter (and in all), the last 15 minutes, from /v1/traffic.
function renderTraffic(traffic, state, audit) {
  const box = $("traffic");
  if (!traffic) {
    box.replaceChildren(el("p", { class: "muted" }, "no traffic figures: this api does not serve /v1/traffic"));
    $("traffic-note").textContent = "";
    return;
  }
  const { from, to } = trafficWindow(traffic);
  const values = traffic.datacenters.flatMap((d) => d.series).filter((v) => v !== null);
  const max = Math.max(1, ...values);
  const marks = auditMarks(state, audit);
  const cards = traffic.datacenters.map((dc) => sparkCard(
    { "data-traffic-dc": dc.name, "data-rate": dc.answers_per_s === null ? "" : String(dc.answers_per_s) },
    dc.name, dc.region, dc.answers_per_s,
    sparkline(traffic.at, dc.series, { from, to, max, marks: marks[dc.name] || [], label: `${dc.name}: ` }),
    { from, to, max }));
  const total = traffic.total;
  const totalMax = Math.max(1, ...total.series.filter((v) => v !== null));
  cards.push(sparkCard(
    { "data-traffic-total": "", "data-rate": total.answers_per_s === null ? "" : String(total.answers_per_s), class: "spark-card total" },
    "all", "datacenters", total.answers_per_s,
    sparkline(traffic.at, total.series, { from, to, max: totalMax, label: "all: " }),
    { from, to, max: totalMax }));
  box.replaceChildren(...cards);
  $("traffic-note").textContent =
    `answers per second from the responders' counters, sampled every ${traffic.interval_s} s, ` +
    `up to the last ${Math.round(traffic.window_s / 60)} min (${traffic.at.length} sample${traffic.at.length === 1 ? "" : "s"}); ` +
    "vertical lines: drains (solid) and undrains (dashed)";
}

function proberCell(p) {
  // A check that failed has no round trip: the api sends no EWMA for it (the EWMA counts a
  // failure as a full timeout, which reads like a slow endpoint), and the reason instead.
  const parts = [`${p.prober}: ${p.health}`];
  if (p.ewma_rtt_ms !== null) parts.push(`${p.ewma_rtt_ms.toFixed(1)} ms`);
  if (p.last_check_age_s !== null) parts.push(`checked ${ago(p.last_check_age_s)}`);
  return el("div", { "data-prober": p.prober }, parts.join(", "));
}

function reasonCell(e) {
  const failing = e.probers.filter((p) => p.failure || p.last_ok === false);
  return el("td", { class: "reason" }, failing.map((p) => el("div", { "data-reason": p.prober },
    `${p.prober}: ${p.failure || p.detail || "check failed (no reason given)"}` +
    (p.fail_streak > 1 ? ` (${p.fail_streak} checks in a row)` : ""))));
}

function render(state, traffic, audit) {
  lastState = state;
  const sync = state.sync;
  const problems = [];
  if (!sync.connected) problems.push("state store unreachable");
  if (sync.stale) problems.push("state is stale");
  if (state.stale_probers.length) problems.push(`stale probers: ${state.stale_probers.join(", ")}`);
  if (state.fleet && state.fleet.problems.length) {
    problems.push(`responders: ${state.fleet.problems.length} problem${state.fleet.problems.length > 1 ? "s" : ""}`);
  }
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
  const total = traffic ? traffic.total.answers_per_s : null;
  $("summary").textContent =
    `${state.mode} mode · state version ${state.state_version} · synced ${ago(sync.age_s)}` +
    (total !== null ? ` · ${rateText(total)} answers/s` : "") +
    (problems.length ? ` · ${problems.join(" · ")}` : "");
  $("summary").className = problems.length ? "warn" : "muted";
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  const views = datacenterViews(state);
  drawMarkers(state, views, traffic);
  renderTraffic(traffic, state, audit);

  fill("regions", state.regions.map((region) => el("tr", { "data-region": region.name },
    el("td", {}, region.name),
    el("td", {}, region.datacenters.map((name) => el("span", { class: "dcname" }, name, " ", badge(views[name].state)))),
    drainCell([region.drain]),
    el("td", {}, actionButton("region", region.name, Boolean(region.drain))),
  )));

  const rates = ratesByDatacenter(traffic);
  fill("datacenters", state.datacenters.map((dc) => {
    const view = views[dc.name];
    const own = dc.drain && dc.drain.kind === "datacenter";
    const rate = rates[dc.name];
    return el("tr", { "data-datacenter": dc.name, "data-state": view.state },
      el("td", {}, dc.name),
      el("td", {}, dc.region),
      el("td", {}, badge(view.state)),
      el("td", { "data-endpoints": "" }, countsText(view)),
      el("td", { "data-rate": rate === undefined || rate === null ? "" : String(rate) }, rate === undefined ? "-" : rateText(rate)),
      drainCell([dc.drain, ...view.endpointDrains]),
      el("td", {}, actionButton("datacenter", dc.name, own)),
    );
  }));

  fill("services", state.services.map((s) => el("tr", {},
    el("td", {}, s.name.replace(/\.$/, "")),
    el("td", {}, String(s.ttl)),
    el("td", {}, s.eligible_datacenters.length ? s.eligible_datacenters.join(", ") : el("span", { class: "warn" }, "none: when_all_down answers")),
    el("td", {}, s.when_all_down),
  )));

  const counts = { drained: 0, down: 0, degraded: 0 };
  fill("endpoints", state.endpoints.map((e) => {
    const own = e.drain && e.drain.kind === "endpoint";
    const shown = e.drained ? "drained" : e.health;
    if (shown in counts) counts[shown] += 1;
    return el("tr", { "data-endpoint": e.id, "data-health": e.health, "data-state": shown },
      el("td", { class: "mono" }, e.id),
      el("td", {}, badge(shown),
        e.drained && e.health !== "up" ? el("span", { class: "muted" }, ` (checks: ${e.health})`) : null,
        e.held ? el("span", { class: "warn", title: "no prober is fresh: this is the last verdict of a stale prober" }, " held") : null),
      reasonCell(e),
      el("td", {}, e.probers.length ? e.probers.map(proberCell) : el("span", { class: "muted" }, "no details")),
      drainCell([e.drain]),
      el("td", {}, actionButton("endpoint", e.id, own)),
    );
  }));
  const notable = Object.entries(counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`);
  $("endpoints-summary").textContent = `${state.endpoints.length} endpoints` + (notable.length ? `: ${notable.join(", ")}` : ", all up");
  $("endpoints-summary").className = counts.down || counts.drained ? "warn" : "muted";

  fill("probers", state.probers.length ? state.probers.map((p) => el("tr", {},
    el("td", {}, p.id),
    el("td", {}, ago(p.heartbeat_age_s)),
    el("td", {}, p.stale ? badge("down") : badge("up"), p.stale && p.stale_since ? ` stale since ${when(p.stale_since)}` : null),
  )) : [el("tr", {}, el("td", { colspan: 3, class: "muted" }, "no prober is reporting"))]);
  renderResponders(state, traffic);
  renderAudit(audit || []);
}

// The fleet: every registered responder and what is wrong across them (serial or config
// drift, failed reloads, stale heartbeats), from `responders` and `fleet` of /v1/state; its
// answers per second (by datacenter, and the last 15 minutes) from /v1/traffic.
function renderResponders(state, traffic) {
  const responders = state.responders || [];
  const fleet = state.fleet || { problems: [], zone_serial_drift: {}, config_drift: {} };
  $("fleet-problems").replaceChildren(...fleet.problems.map((p) => el("li", {}, p)));
  const drifting = new Set(Object.keys(fleet.zone_serial_drift || {}));
  const configDrift = Object.keys(fleet.config_drift || {}).length > 0;
  const history = Object.fromEntries(((traffic && traffic.responders) || []).map((r) => [r.id, r]));
  const span = traffic ? trafficWindow(traffic) : null;
  const max = Math.max(1, ...Object.values(history).flatMap((r) => r.series).filter((v) => v !== null));
  fill("responders", responders.length ? responders.map((r) => {
    const status = r.status === "up" ? "up" : r.status === "stopped" ? "drained" : "down";
    const zones = Object.entries(r.zones).map(([zone, serial]) =>
      el("span", { class: drifting.has(zone) ? "warn" : null, title: drifting.has(zone) ? "serial drift" : null },
        `${zone.replace(/\.$/, "")} ${serial} `));
    const reload = r.last_reload;
    const seen = history[r.id];
    const byDc = seen && seen.by_datacenter ? seen.by_datacenter : r.answers_per_s;
    const rates = Object.entries(byDc).map(([dc, rate]) => `${dc} ${rateText(rate)}`).join(", ");
    return el("tr", { "data-responder": r.id },
      el("td", { class: "mono", title: `${r.host} pid ${r.pid}, gslb ${r.version}, ${r.listen.join(" ")}` }, r.id),
      el("td", {}, el("span", { class: `badge ${status}` }, r.status)),
      el("td", {}, ago(r.heartbeat_age_s)),
      el("td", {}, String(r.state_version)),
      el("td", {}, r.sync_age_s === null ? "never" : `${r.sync_age_s.toFixed(1)} s`),
      el("td", {}, zones),
      el("td", { class: configDrift ? "mono warn" : "mono", title: r.config_path }, r.config_hash.slice(0, 12)),
      el("td", { title: reload && !reload.ok ? reload.problem : null },
        reload ? el("span", { class: reload.ok ? null : "warn" }, `${reload.ok ? "ok" : "FAILED"} ${when(reload.at)}`) : "-"),
      el("td", { class: "responder-rate", "data-responder-rate": seen && seen.answers_per_s !== null ? String(seen.answers_per_s) : "" },
        el("div", {}, rates || "-"),
        seen && span ? sparkline(traffic.at, seen.series, { ...span, max, width: 160, height: 28, label: `${r.id}: ` }) : null),
    );
  }) : [el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no responder is registered"))]);
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
    if (!me) await loadWhoami();
    // A failed /v1/traffic read (other than 401) does not keep the state from showing.
    const traffic = api("GET", "/v1/traffic").catch((e) => { if (e.status === 401) throw e; return null; });
    const [state, audit, figures] = await Promise.all([api("GET", "/v1/state"), api("GET", "/v1/audit?limit=15"), traffic]);
    render(state, figures, audit.entries);
  } catch (e) {
    if (e.status === 401) {
      forgetToken();
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
  refresh();
});
