// Pollen operator console: plain JavaScript, no framework, nothing fetched
// but this seeder's /api. The bearer token is entered once (or handed in
// the URL fragment as #token=...) and kept in sessionStorage.
"use strict";

const POLL_MS = 3000;
const SVG = "http://www.w3.org/2000/svg";
const state = { token: null, who: null, selected: null, offset: 0, limit: 50, filters: {}, total: 0 };

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function say(text, error) {
  const m = $("message");
  m.textContent = text || "";
  m.className = error ? "error" : "";
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

async function api(path, method) {
  const resp = await fetch(path, {
    method: method || "GET",
    headers: { "Authorization": "Bearer " + state.token },
    cache: "no-store",
  });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (resp.status === 401) { signOut("The token was refused."); throw new Error("unauthorized"); }
  if (!resp.ok) throw new Error((body && body.error) || ("HTTP " + resp.status));
  return body;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
    else tr.appendChild(el("td", c === null || c === undefined ? "-" : c));
  }
  return tr;
}

function progressBar(c) {
  const bar = el("div", null, "bar");
  const seen = Math.max(c.seen, 1);
  for (const [n, cls] of [[c.installed, "c-installed"], [c.installing + c.downloading, "c-busy"],
                          [c.waiting, "c-waiting"], [c.failed + c.rolled_back, "c-failed"]]) {
    const s = el("span", null, cls);
    s.style.width = (100 * n / seen) + "%";
    bar.appendChild(s);
  }
  return bar;
}

function countsCells(c) {
  return [c.seen, c.downloading, c.waiting, c.installing, c.installed, c.failed, c.rolled_back];
}

function failureCell(r) {
  const td = el("span", r.failure_percent + "%", r.failure_percent > 0 ? "bad" : "");
  return td;
}

async function loadReleases() {
  const releases = await api("/api/releases");
  if (!state.selected && releases.length) {
    state.selected = { channel: releases[0].channel, release: releases[0].release };
  }
  fill($("releases").tBodies[0], releases.map((r) => {
    const st = el("span", r.state, "state-" + r.state);
    const tr = row([r.channel, r.release, r.version, st, r.open_stage, r.stages.map((s) => s.share_percent + "%").join(", "),
                    r.max_failures_percent === null ? "-" : r.max_failures_percent + "%"]);
    tr.dataset.channel = r.channel;
    tr.dataset.release = r.release;
    if (state.selected && state.selected.channel === r.channel && state.selected.release === r.release) tr.className = "selected";
    tr.addEventListener("click", () => { state.selected = { channel: r.channel, release: r.release }; refresh(); });
    return tr;
  }));
}

function drawChart(series) {
  const chart = $("chart");
  const W = 640, H = 180, L = 40, B = 20, T = 10, R = 10;
  const nodes = [];
  const max = Math.max(1, ...series.map((s) => s.seen));
  nodes.push(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#687385" }));
  nodes.push(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#687385" }));
  nodes.push(svg("text", { x: 4, y: T + 8 }, max));
  nodes.push(svg("text", { x: 4, y: H - B }, 0));
  if (series.length) {
    const t0 = series[0].time, t1 = Math.max(series[series.length - 1].time, t0 + 1);
    const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
    const y = (v) => H - B - (H - B - T) * v / max;
    for (const [key, cls] of [["installed", "c-installed"], ["failed", "c-failed"]]) {
      const pts = series.map((s) => x(s.time).toFixed(1) + "," + y(s[key]).toFixed(1)).join(" ");
      nodes.push(svg("polyline", { points: pts, fill: "none", "stroke-width": 2, class: cls }));
    }
    nodes.push(svg("text", { x: L, y: H - 4 }, new Date(t0 * 1000).toLocaleTimeString()));
    nodes.push(svg("text", { x: W - R - 60, y: H - 4 }, new Date(t1 * 1000).toLocaleTimeString()));
  }
  nodes.push(svg("text", { x: W - 150, y: T + 10, class: "c-installed" }, "installed"));
  nodes.push(svg("text", { x: W - 80, y: T + 10, class: "c-failed" }, "failed"));
  chart.replaceChildren(...nodes);
}

async function loadRelease() {
  const sel = state.selected;
  $("release").hidden = !sel;
  if (!sel) return;
  const v = await api("/api/releases/" + encodeURIComponent(sel.channel) + "/" + sel.release);
  $("release-name").textContent = v.release.release + " (" + v.release.version + ") on " + v.release.channel;
  const st = $("release-state");
  st.textContent = v.release.state + (v.auto_halted ? " (automatically)" : "");
  st.className = "state-" + v.release.state;
  fill($("stages").tBodies[0], v.stages.map((s) =>
    row([s.name, (s.share / 100) + "%", ...countsCells(s), failureCell(s), progressBar(s)])));
  fill($("sites").tBodies[0], v.sites.map((s) => row([s.name, ...countsCells(s), failureCell(s)])));
  drawChart(v.series);
  const can = state.who && state.who.can_act;
  const halted = v.release.halted;
  $("btn-halt").disabled = !can || halted;
  $("btn-resume").disabled = !can || !halted;
  $("btn-promote").disabled = !can;
  $("act-note").textContent = can ? "" : (state.who && state.who.scope === "operator"
    ? "the seeder holds no operator key" : "read-only token: actions disabled");
}

async function loadSavings() {
  const sites = await api("/api/savings");
  fill($("savings").tBodies[0], sites.map((s) =>
    row([s.site, s.devices, bytes(s.bytes_from_site), bytes(s.bytes_from_uplink), s.saved_percent + "%"])));
  const chart = $("savings-chart");
  const rowH = 18, L = 110, W = 640;
  chart.setAttribute("height", Math.max(40, sites.length * rowH + 24));
  const max = Math.max(1, ...sites.map((s) => s.bytes_from_site + s.bytes_from_uplink));
  const nodes = [];
  sites.forEach((s, i) => {
    const y = 4 + i * rowH;
    const lan = (W - L - 10) * s.bytes_from_site / max;
    const up = (W - L - 10) * s.bytes_from_uplink / max;
    nodes.push(svg("text", { x: 4, y: y + 12 }, s.site));
    nodes.push(svg("rect", { x: L, y, width: lan, height: rowH - 4, class: "c-lan" }));
    nodes.push(svg("rect", { x: L + lan, y, width: up, height: rowH - 4, class: "c-uplink" }));
  });
  const y = 4 + sites.length * rowH + 12;
  nodes.push(svg("text", { x: L, y, class: "c-lan" }, "from LAN (saved)"));
  nodes.push(svg("text", { x: L + 130, y, class: "c-uplink" }, "over the uplink"));
  chart.replaceChildren(...nodes);
}

async function loadDevices() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v) q.set(k, v);
  q.set("offset", state.offset);
  q.set("limit", state.limit);
  const page = await api("/api/devices?" + q.toString());
  state.total = page.total;
  $("devices-total").textContent = "(" + page.total + ")";
  fill($("devices").tBodies[0], page.devices.map((d) => {
    const err = el("span", d.last_error || "", d.last_error ? "bad" : "");
    return row([d.device, d.site, d.hardware, d.phase, d.installed, d.target, d.note, err, d.reported_seconds_ago + " s ago"]);
  }));
  const last = Math.min(page.total, state.offset + page.devices.length);
  $("page").textContent = page.total ? (state.offset + 1) + "–" + last + " of " + page.total : "none";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= page.total;
}

async function loadHistory() {
  const c = await api("/api/controls");
  fill($("history").tBodies[0], c.history.map((h) =>
    row([new Date(h.time * 1000).toLocaleString(), h.who, h.action, h.channel, h.release, h.result, h.seq])));
}

let busy = false;
async function refresh() {
  if (!state.token || busy) return;
  busy = true;
  try {
    await loadReleases();
    await Promise.all([loadRelease(), loadSavings(), loadDevices(), loadHistory()]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    if (e.message !== "unauthorized") say("Refresh failed: " + e.message, true);
  } finally {
    busy = false;
  }
}

async function act(action) {
  const sel = state.selected;
  if (!sel) return;
  if (!confirm(action + " release " + sel.release + " on " + sel.channel + "?")) return;
  try {
    const r = await api("/api/releases/" + encodeURIComponent(sel.channel) + "/" + sel.release + "/" + action, "POST");
    say(action + ": control " + r.seq + " issued by " + r.by + (r.halted ? " (halted)" : ""));
  } catch (e) {
    say(action + " refused: " + e.message, true);
  }
  refresh();
}

function signOut(why) {
  sessionStorage.removeItem("pollen-token");
  state.token = null;
  state.who = null;
  $("app").hidden = true;
  $("login").hidden = false;
  $("signout").hidden = true;
  $("who").textContent = "not signed in";
  say(why || "", !!why);
}

async function signIn(token) {
  state.token = token;
  try {
    state.who = await api("/api/whoami");
  } catch (e) {
    if (e.message !== "unauthorized") say("Sign-in failed: " + e.message, true);
    return;
  }
  sessionStorage.setItem("pollen-token", token);
  $("who").textContent = state.who.name + " (" + state.who.scope + ")";
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  say("");
  refresh();
}

function start() {
  $("login").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value.trim()); });
  $("signout").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll(".actions button")) {
    b.addEventListener("click", () => act(b.dataset.action));
  }
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.filters = Object.fromEntries(new FormData(ev.target).entries());
    state.offset = 0;
    refresh();
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); refresh(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; refresh(); });
  const hash = new URLSearchParams(location.hash.slice(1));
  const given = hash.get("token");
  if (given) history.replaceState(null, "", location.pathname + location.search);
  const token = given || sessionStorage.getItem("pollen-token");
  if (token) signIn(token); else signOut();
  setInterval(refresh, POLL_MS);
}

start();
