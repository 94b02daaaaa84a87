// Weir's dashboard: reads the job's REST API every second and draws the job
// graph, per-subtask rates, checkpoints and exceptions. A route that answers
// 404 or a field that is missing shows "—". With `#token=...` in the URL
// every request carries `Authorization: Bearer <token>`. Text from the job
// (uids, messages) is only ever set as text, never parsed as HTML.
"use strict";

const REFRESH_MS = 1000;
const DASH = "—";
const SVG_NS = "http://www.w3.org/2000/svg";
const BOX = { w: 216, h: 104, gapX: 110, gapY: 26, pad: 18 };

const token = new URLSearchParams(location.hash.slice(1)).get("token");
let selected = null; // the uid whose subtasks are highlighted

// ---------- fetching ----------

/** GET `path` as JSON; null when the route answers 404 (not there yet). */
async function api(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${message}`);
  }
  return response.json();
}

/** Like `api`, but any failure gives null (optional panels). */
async function optional(path) {
  try { return await api(path); } catch (_) { return null; }
}

// ---------- formatting ----------

const isNum = (x) => typeof x === "number" && Number.isFinite(x);
const count = (n) => (isNum(n) ? Math.round(n).toLocaleString("en-US") : DASH);

function compact(n) {
  if (!isNum(n)) return DASH;
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(abs >= 1e10 ? 1 : 2)}G`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(abs >= 1e7 ? 1 : 2)}M`;
  if (abs >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
}

const rate = (n) => (isNum(n) ? `${compact(n)}/s` : DASH);

function duration(ms) {
  if (!isNum(ms)) return DASH;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (x) => String(x).padStart(2, "0");
  return h > 0 ? `${h}h ${two(m)}m ${two(sec)}s` : `${m}m ${two(sec)}s`;
}

function bytes(n) {
  if (!isNum(n)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}

/** Wall-clock time of day, local. */
const clock = (ms) => (isNum(ms) ? new Date(ms).toLocaleTimeString("en-GB") : DASH);

/** An event-time watermark: UTC date and time, to the second or (`exact`) millisecond. */
function watermark(ms, exact = false) {
  if (!isNum(ms)) return DASH;
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return DASH;
  const text = d.toISOString().replace("T", " ").replace("Z", "");
  return exact ? `${text} UTC` : text.slice(0, 19);
}

const level = (bp) => (bp === "ok" || bp === "low" || bp === "high" ? bp : "none");

// ---------- DOM helpers ----------

/** An HTML element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) node.setAttribute(k, v);
  node.append(...children.filter((c) => c != null));
  return node;
}

/** An SVG element with attributes and children. */
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) node.setAttribute(k, String(v));
  node.append(...children.filter((c) => c != null));
  return node;
}

const byId = (id) => document.getElementById(id);
const setText = (id, text) => { byId(id).textContent = text; };

// ---------- the header ----------

function renderHeader(job) {
  setText("job-name", job ? job.name ?? DASH : DASH);
  const state = byId("job-state");
  state.textContent = job ? job.state ?? DASH : DASH;
  state.className = `state ${job && job.state === "RUNNING" ? "running" : ""}`;
  setText("job-uptime", job ? duration(job.uptime_ms) : DASH);
  setText("job-id", job ? job.id ?? DASH : DASH);
  setText("updated", new Date().toLocaleTimeString("en-GB"));
  document.title = job && job.name ? `${job.name} · Weir` : "Weir";
}

function banner(message) {
  const node = byId("banner");
  node.hidden = !message;
  node.textContent = message || "";
}

// ---------- the graph ----------

/** Layer of each vertex: the length of the longest path from a source. */
function depths(vertices, edges) {
  const depth = Object.fromEntries(vertices.map((v) => [v.uid, 0]));
  for (let round = 0; round < vertices.length; round += 1) {
    let changed = false;
    for (const e of edges) {
      if (e.from in depth && e.to in depth && depth[e.to] < depth[e.from] + 1) {
        depth[e.to] = depth[e.from] + 1;
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

/** Boxes' positions, layered left to right, each layer centred vertically. */
function layout(vertices, edges) {
  const depth = depths(vertices, edges);
  const layers = [];
  for (const v of vertices) (layers[depth[v.uid]] ||= []).push(v);
  const tallest = Math.max(1, ...layers.map((l) => (l ? l.length : 0)));
  const height = BOX.pad * 2 + tallest * BOX.h + (tallest - 1) * BOX.gapY;
  const columns = Math.max(1, layers.length);
  const width = BOX.pad * 2 + columns * BOX.w + (columns - 1) * BOX.gapX;
  const at = {};
  layers.forEach((layer, i) => {
    if (!layer) return;
    const used = layer.length * BOX.h + (layer.length - 1) * BOX.gapY;
    layer.forEach((v, j) => {
      at[v.uid] = { x: BOX.pad + i * (BOX.w + BOX.gapX), y: (height - used) / 2 + j * (BOX.h + BOX.gapY) };
    });
  });
  return { at, width, height };
}

/** The figures a box shows for its kind: the main rate and the counts. */
function boxFigures(v) {
  const m = v.metrics || {};
  if (v.kind === "source") {
    return { rate: `${rate(m.records_out_per_second)} out`, records: `${count(m.records_out)} records out` };
  }
  if (v.kind === "sink") {
    return { rate: `${rate(m.records_in_per_second)} in`, records: `${count(m.records_in)} records in` };
  }
  return {
    rate: `${rate(m.records_in_per_second)} in`,
    records: `${compact(m.records_in)} in · ${compact(m.records_out)} out`,
  };
}

function vertexBox(v, p) {
  const m = v.metrics || {};
  const bp = level(m.backpressure);
  const wm = isNum(m.output_watermark_ms) ? m.output_watermark_ms : m.input_watermark_ms;
  const figures = boxFigures(v);
  const x0 = p.x + 16;
  const group = svg("g", { class: `vertex${selected === v.uid ? " selected" : ""}`, "data-uid": v.uid },
    svg("title", {}, `${v.uid}: ${v.kind}, parallelism ${v.parallelism}, backpressure ${m.backpressure ?? DASH}, ` +
      `watermark ${watermark(wm, true)}`),
    svg("rect", { class: "box", x: p.x, y: p.y, width: BOX.w, height: BOX.h, rx: 7 }),
    svg("rect", { class: `stripe ${bp}`, x: p.x, y: p.y, width: 6, height: BOX.h, rx: 3 }),
    svg("text", { class: "uid", x: x0, y: p.y + 21 }, clip(v.uid, 20)),
    svg("rect", { class: `dot ${bp}`, x: p.x + BOX.w - 44, y: p.y + 9, width: 34, height: 16, rx: 8 }),
    svg("text", { class: "bp-label", x: p.x + BOX.w - 27, y: p.y + 21, "text-anchor": "middle" }, m.backpressure ?? DASH),
    svg("text", { class: "kind", x: x0, y: p.y + 38 }, `${v.kind ?? DASH} · parallelism ${v.parallelism ?? DASH}`),
    svg("text", { class: "rate", x: x0, y: p.y + 60 }, figures.rate),
    svg("text", { class: "records", x: x0, y: p.y + 78 }, figures.records),
    svg("text", { class: "watermark", x: x0, y: p.y + 95 }, `watermark ${watermark(wm)}`),
  );
  group.addEventListener("click", () => select(v.uid));
  return group;
}

const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/** Where edges leave and enter boxes: spread along the box's side. */
function ports(edges, side) {
  const groups = {};
  edges.forEach((e, i) => (groups[e[side]] ||= []).push(i));
  const offset = [];
  for (const list of Object.values(groups)) {
    list.forEach((edgeIndex, k) => { offset[edgeIndex] = (BOX.h * (k + 1)) / (list.length + 1); });
  }
  return offset;
}

function renderGraph(vertices, edges) {
  const root = byId("graph");
  const { at, width, height } = layout(vertices, edges);
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  const defs = svg("defs", {},
    svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { class: "arrow", d: "M0,0 L10,5 L0,10 z" })));
  const drawn = edges.filter((e) => at[e.from] && at[e.to]);
  const out = ports(drawn, "from");
  const into = ports(drawn, "to");
  const lines = [];
  const labels = [];
  drawn.forEach((e, i) => {
    const [a, b] = [at[e.from], at[e.to]];
    const x1 = a.x + BOX.w;
    const y1 = a.y + out[i];
    const x2 = b.x - 2;
    const y2 = b.y + into[i];
    const bend = Math.max(30, (x2 - x1) / 2);
    lines.push(svg("path", {
      class: `edge${e.side_output ? " side" : ""}`,
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
      "marker-end": "url(#arrow)",
    }));
    const text = e.side_output ? `${e.partitioning ?? DASH} · ${e.side_output}` : e.partitioning ?? DASH;
    const w = text.length * 6 + 12;
    const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
    labels.push(svg("g", { class: "edge-label" },
      svg("rect", { x: mx - w / 2, y: my - 9, width: w, height: 17, rx: 8 }),
      svg("text", { x: mx, y: my + 3.5, "text-anchor": "middle" }, text)));
  });
  const boxes = vertices.filter((v) => at[v.uid]).map((v) => vertexBox(v, at[v.uid]));
  root.replaceChildren(defs, ...lines, ...boxes, ...labels);
}

// ---------- subtasks ----------

function select(uid) {
  selected = selected === uid ? null : uid;
  for (const node of document.querySelectorAll("[data-uid]")) {
    node.classList.toggle("selected", node.getAttribute("data-uid") === selected);
  }
  const card = selected && document.querySelector(`.card[data-uid="${CSS.escape(selected)}"]`);
  if (card) card.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function subtaskCard(v, detail) {
  const head = el("div", { class: "card-head" },
    el("strong", {}, v.uid),
    el("span", { class: "hint", title: `${v.kind ?? DASH}, parallelism ${v.parallelism ?? DASH}` }, `×${v.parallelism ?? DASH}`));
  const card = el("div", { class: `card${selected === v.uid ? " selected" : ""}`, "data-uid": v.uid }, head);
  card.addEventListener("click", () => select(v.uid));
  const subtasks = detail && Array.isArray(detail.subtasks) ? detail.subtasks : null;
  if (!subtasks || subtasks.length === 0) {
    card.append(el("p", { class: "empty" }, `per-subtask figures: ${DASH}`));
    return card;
  }
  const key = v.kind === "source" ? "records_out_per_second" : "records_in_per_second";
  const values = subtasks.map((s) => (isNum(s[key]) ? s[key] : null));
  const known = values.filter(isNum);
  const max = Math.max(0, ...known);
  const mean = known.length ? known.reduce((a, b) => a + b, 0) / known.length : 0;
  head.append(el("span", { class: "skew", title: "busiest subtask's rate over the mean" },
    mean > 0 ? `max/mean ${(max / mean).toFixed(2)}` : `max/mean ${DASH}`));
  subtasks.forEach((s, i) => {
    const bar = el("div", { class: `bar ${level(s.backpressure)}` });
    bar.style.width = `${max > 0 && isNum(values[i]) ? Math.max(1, (100 * values[i]) / max) : 0}%`;
    const busy = isNum(s.busy_ms_per_second) ? `busy ${Math.round(s.busy_ms_per_second / 10)}%` : DASH;
    card.append(el("div", {
      class: "bar-row",
      title: `subtask ${s.subtask ?? i}: backpressure ${s.backpressure ?? DASH}, watermark lag ${duration(s.watermark_lag_ms)}`,
    },
    el("span", { class: "sub" }, `#${s.subtask ?? i}`),
    el("div", { class: "bar-track" }, bar),
    el("span", { class: "value" }, rate(values[i])),
    el("span", { class: "busy" }, busy)));
  });
  return card;
}

function renderSubtasks(vertices, details) {
  const root = byId("subtasks");
  if (vertices.length === 0) {
    root.replaceChildren(el("p", { class: "empty" }, DASH));
    return;
  }
  root.replaceChildren(...vertices.map((v, i) => subtaskCard(v, details[i])));
}

// ---------- checkpoints and exceptions ----------

function renderCheckpoints(body) {
  const root = byId("checkpoints");
  const counts = body && body.counts;
  setText("checkpoint-counts", counts ? `${count(counts.completed)} completed · ${count(counts.failed)} failed` : DASH);
  const history = body && Array.isArray(body.history) ? body.history : null;
  if (!history) { root.replaceChildren(el("p", { class: "empty" }, DASH)); return; }
  if (history.length === 0) { root.replaceChildren(el("p", { class: "empty" }, "No checkpoints yet.")); return; }
  const head = el("tr", {}, ...["ID", "Status", "Type", "Triggered", "Duration", "Size", "Acknowledged"]
    .map((h, i) => el("th", { class: i >= 4 ? "num" : null }, h)));
  const rows = [];
  for (const c of history.slice(0, 10)) {
    const status = String(c.status ?? DASH);
    const acks = c.acknowledged && typeof c.acknowledged === "object" ? Object.entries(c.acknowledged) : null;
    const acked = acks ? acks.reduce((sum, [, n]) => sum + (isNum(n) ? n : 0), 0) : null;
    rows.push(el("tr", { class: status === "FAILED" ? "failed" : null },
      el("td", {}, c.id != null ? String(c.id) : DASH),
      el("td", {}, el("span", { class: `status ${status.toLowerCase()}` }, status)),
      el("td", {}, c.is_savepoint === true ? "savepoint" : c.is_savepoint === false ? "checkpoint" : DASH),
      el("td", {}, clock(c.trigger_timestamp)),
      el("td", { class: "num" }, duration(c.duration_ms)),
      el("td", { class: "num" }, bytes(c.size_bytes)),
      el("td", { class: "num", title: acks ? acks.map(([uid, n]) => `${uid}: ${n}`).join("\n") : null },
        acked != null ? `${acked} subtasks` : DASH)));
    if (c.failure_message) {
      rows.push(el("tr", { class: "failed" }, el("td", { class: "reason", colspan: "7" }, c.failure_message)));
    }
  }
  root.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function renderExceptions(body) {
  const root = byId("exceptions");
  setText("exception-total", body && isNum(body.total) ? `${count(body.total)} in all` : DASH);
  const list = body && Array.isArray(body.exceptions) ? body.exceptions : null;
  if (!list) { root.replaceChildren(el("p", { class: "empty" }, DASH)); return; }
  if (list.length === 0) { root.replaceChildren(el("p", { class: "empty" }, "No exceptions.")); return; }
  const items = list.slice(0, 10).map((x) => {
    const where = [x.operator, x.module].filter(Boolean).join(" · ");
    const restart = isNum(x.restart) ? `restart ${x.restart}` : null;
    const from = x.restarted_from != null ? `restarted from ${x.restarted_from}` : null;
    const meta = [clock(x.timestamp), restart, where || null, from].filter(Boolean).join(" · ");
    return el("li", {},
      el("div", { class: "meta" }, meta),
      el("div", { class: "what" }, String(x.exception ?? DASH)),
      x.cause ? el("pre", {}, String(x.cause)) : null);
  });
  root.replaceChildren(el("ul", { class: "exceptions" }, ...items));
}

// ---------- the loop ----------

async function refresh() {
  const jobs = await api("/jobs");
  const overview = jobs && Array.isArray(jobs.jobs) ? jobs.jobs[0] : null;
  if (!overview) {
    renderHeader(null);
    banner("The endpoint lists no job.");
    return;
  }
  const id = encodeURIComponent(overview.id);
  const [job, checkpoints, exceptions] = await Promise.all([
    api(`/jobs/${id}`), optional(`/jobs/${id}/checkpoints`), optional(`/jobs/${id}/exceptions`),
  ]);
  const details = job || overview;
  const vertices = Array.isArray(details.vertices) ? details.vertices : [];
  const edges = Array.isArray(details.edges) ? details.edges : [];
  const vertexDetails = await Promise.all(
    vertices.map((v) => optional(`/jobs/${id}/vertices/${encodeURIComponent(v.uid)}`)),
  );
  renderHeader(details);
  renderGraph(vertices, edges);
  renderSubtasks(vertices, vertexDetails);
  renderCheckpoints(checkpoints);
  renderExceptions(exceptions);
  banner(null);
}

async function loop() {
  try {
    await refresh();
  } catch (error) {
    banner(`Cannot reach the job: ${error.message}. Retrying every second.`);
  }
  setTimeout(loop, REFRESH_MS);
}

loop();
