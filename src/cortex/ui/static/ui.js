// Cortex's web view: draws a run from /api/runs/<id> and keeps it live from /api/runs/<id>/stream (server-sent
// events), without reloading. No library, no network beyond this server.
"use strict";

const PHASES = ["preflight", "activation", "distribution", "execution", "aggregation", "reporting"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text = "") {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function secs(s) {
  s = Math.max(0, s);
  return s < 120 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, "0")} s`;
}

function localTimes() {
  for (const t of document.querySelectorAll("time[data-ts]")) {
    t.textContent = new Date(parseFloat(t.dataset.ts) * 1000).toLocaleString();
  }
}

function table(node, head, rows) {
  node.replaceChildren();
  const tr = el("tr");
  head.forEach((h) => tr.append(el("th", {}, h)));
  node.append(el("thead"));
  node.firstChild.append(tr);
  const body = el("tbody");
  for (const row of rows) {
    const r = el("tr", row.attrs || {});
    for (const cell of row.cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      r.append(td);
    }
    body.append(r);
  }
  node.append(body);
}

function meter(fraction, mark) {
  const m = el("div", { class: "meter" });
  const fill = el("span");
  fill.style.width = `${Math.min(100, fraction * 100).toFixed(1)}%`;
  m.append(fill);
  if (mark !== undefined) {
    const i = el("i");
    i.style.left = `${Math.min(100, mark * 100).toFixed(1)}%`;
    m.append(i);
  }
  return m;
}

function drawPhases(state) {
  const node = document.getElementById("phases");
  node.replaceChildren();
  const times = state.phase_times || {};
  PHASES.forEach((name, i) => {
    const start = times[name];
    const next = PHASES.slice(i + 1).map((n) => times[n]).find((t) => t !== undefined);
    const end = next ?? (state.finished_at || state.updated_at);
    const cls = start === undefined ? "phase" : i === state.phase && !state.finished_at ? "phase now" : "phase done";
    const took = start === undefined ? "" : ` ${secs(end - start)}`;
    node.append(el("div", { class: cls, "data-phase": name }, `${i} ${name}${took}`));
  });
}

function drawGantt(view) {
  const node = document.getElementById("gantt");
  const ran = view.tasks.filter((t) => t.worker && t.started_at && t.finished_at);
  const running = view.state.running_tasks || [];
  const planned = view.plan ? view.plan.schedule : [];
  const execution = (view.state.phase_times || {}).execution;
  const starts = ran.map((t) => t.started_at).concat(running.map((r) => r.since).filter(Boolean));
  const t0 = execution || (starts.length ? Math.min(...starts) : view.state.started_at);
  const now = view.state.finished_at || view.state.updated_at;
  const workers = [...new Set(ran.map((t) => t.worker).concat(running.map((r) => r.worker)).concat(planned.map((e) => e.worker_id)))].sort();
  const end = Math.max(now - t0, ...planned.map((e) => e.end_s), 1);
  const left = 150, width = Math.max(600, node.clientWidth - left - 10), row = 22;
  const x = (s) => left + (s / end) * width;
  const svg = el("svg:svg", { width: left + width + 10, height: workers.length * row + 24, "data-tasks-ran": ran.length });
  workers.forEach((w, i) => {
    const y = i * row + 4;
    svg.append(el("svg:text", { x: 4, y: y + 13 }, w));
    for (const e of planned.filter((e) => e.worker_id === w)) {
      const r = el("svg:rect", { class: "bar planned", x: x(e.start_s), y: y, width: Math.max(2, x(e.end_s) - x(e.start_s)), height: 7 });
      r.append(el("svg:title", {}, `${e.task_id} planned ${secs(e.start_s)}–${secs(e.end_s)} (estimate)`));
      svg.append(r);
    }
    for (const t of ran.filter((t) => t.worker === w)) {
      const cls = t.state === "failed" ? "bar actual failed" : "bar actual";
      const r = el("svg:rect", { class: cls, "data-task": t.id, x: x(t.started_at - t0), y: y + 8, width: Math.max(2, x(t.finished_at - t0) - x(t.started_at - t0)), height: 10 });
      r.append(el("svg:title", {}, `${t.id}: ${t.state} in ${secs(t.finished_at - t.started_at)}${t.error ? " — " + t.error : ""}`));
      svg.append(r);
    }
    for (const r of running.filter((r) => r.worker === w && r.since)) {
      svg.append(el("svg:rect", { class: "bar running", "data-task": r.task, x: x(r.since - t0), y: y + 8, width: Math.max(2, x(now - t0) - x(r.since - t0)), height: 10 }));
    }
  });
  svg.append(el("svg:text", { x: left, y: workers.length * row + 18 }, `0 s … ${secs(end)} from the start of execution`));
  node.replaceChildren(svg);
}

const burn = {};  // master -> [[seconds since start, tokens used]], from each snapshot (or the report's calls)

function burnSeries(view) {
  const s = view.state;
  if (view.report && view.report.token_spend) {
    const out = {};
    for (const spend of view.report.token_spend) {
      const series = (out[spend.master] = out[spend.master] || [[0, 0]]);
      series.push([spend.at - s.started_at, series[series.length - 1][1] + spend.tokens]);
    }
    return out;
  }
  for (const [m, t] of Object.entries(s.tokens || {})) {
    if (m === "run") continue;
    const series = (burn[m] = burn[m] || [[0, 0]]);
    const at = s.updated_at - s.started_at;
    if (at > series[series.length - 1][0]) series.push([at, t.used]);
  }
  return burn;
}

function sparkline(points, allocated, expected, end) {
  // tokens left of the master's allocation over the run (the dashed line: what the plan expects to be left)
  const w = 160, h = 28, svg = el("svg:svg", { width: w, height: h, class: "burn" });
  if (!allocated) return svg;
  const x = (t) => (t / Math.max(end, 1)) * w, y = (used) => h - ((allocated - used) / allocated) * (h - 2) - 1;
  svg.append(el("svg:polyline", { points: points.map(([t, u]) => `${x(t)},${y(u)}`).join(" "), fill: "none", stroke: "#2f6fd0" }));
  svg.append(el("svg:line", { x1: 0, y1: y(0), x2: w, y2: y(expected), stroke: "#9aa3b5", "stroke-dasharray": "3 2" }));
  return svg;
}

function drawRun(view) {
  const s = view.state;
  drawProcesses(view);
  document.getElementById("title").textContent = `Run ${s.run_id}: ${s.status}, phase ${s.phase} (${s.phase_name})`;
  const elapsed = (s.finished_at || Date.now() / 1000) - s.started_at;
  document.getElementById("clock").textContent =
    `${s.goal} — elapsed ${secs(elapsed)} of ${secs(s.estimated_s || 0)} planned (an estimate); started ${new Date(s.started_at * 1000).toLocaleString()}`;
  drawPhases(s);
  drawGantt(view);
  const masters = Object.entries(s.tasks).sort();
  table(document.getElementById("masters"), ["master", "done", "running", "failed", "of", ""], masters.map(([m, c]) => {
    const total = Object.values(c).reduce((a, b) => a + b, 0);
    const done = c.succeeded + c.failed + c.skipped;
    return { attrs: { "data-master": m }, cells: [m, String(done), String(c.running), String(c.failed), String(total), meter(total ? done / total : 0)] };
  }));
  const budget = view.plan ? view.plan.budget : {};
  const tokens = Object.entries(s.tokens || {}).filter(([k]) => k !== "run").sort();
  const series = burnSeries(view);
  const span = (s.finished_at || s.updated_at) - s.started_at;
  table(document.getElementById("tokens"), ["master", "used", "allocated", "plan expects", "used (| plan)", "left over time"], tokens.map(([m, t]) => {
    const expected = budget[m] ? budget[m].expected_usage : 0;
    return { cells: [m, t.used.toLocaleString(), t.allocated.toLocaleString(), expected.toLocaleString(), meter(t.allocated ? t.used / t.allocated : 0, t.allocated ? expected / t.allocated : undefined), sparkline(series[m] || [[0, 0]], t.allocated, expected, span)] };
  }));
  const now = s.finished_at || s.updated_at;
  table(document.getElementById("running"), ["task", "worker", "for"], (s.running_tasks || []).map((r) => ({
    attrs: { id: `task-${r.task}` }, cells: [r.task, r.worker, r.since ? secs(now - r.since) : "?"] })));
  const failed = view.tasks.filter((t) => t.state === "failed" || (t.errors && t.errors.length));
  table(document.getElementById("failures"), ["task", "state", "reason"], failed.map((t) => ({
    attrs: { id: `task-${t.id}`, class: "failure", "data-task": t.id },
    cells: [t.id, t.state, t.error || (t.errors || []).slice(-1)[0] || ""] })));
  const alive = s.workers_alive || {};
  table(document.getElementById("nodes"), ["node", "heartbeat", "workers alive", "runs", "CPU s", "memory MiB"], (view.nodes.length ? view.nodes : Object.keys(alive).map((n) => ({ name: n }))).map((n) => ({
    cells: [n.name, n.alive === undefined ? "" : n.alive ? "alive" : "lapsed", String(alive[n.name] ?? ""), (n.runs || []).length ? String(n.runs.length) : "", n.cpu_s !== undefined ? n.cpu_s.toFixed(1) : "", n.rss_mib !== undefined ? n.rss_mib.toFixed(0) : ""] })));
}

function drawProcesses(view) {
  table(document.getElementById("processes"), ["process", "kind", "node", "heartbeat", "restarts"], (view.processes || []).map((p) => ({
    attrs: { "data-process": p.id, class: p.alive ? "" : "failed" },
    cells: [p.id, p.kind, p.node, p.alive ? "alive" : "none", String(p.restarts)] })));
}

function addFeed(entries) {
  const feed = document.getElementById("feed");
  for (const e of entries) {
    const what = (e.context && (e.context.event || e.context.command)) || e.type;
    const when = new Date((e.ts || parseFloat(e.entry) / 1000) * 1000).toLocaleTimeString();
    // a message about several tasks (a turn's results, a dispatch, a claim) lists them in context.tasks
    const listed = e.context && Array.isArray(e.context.tasks) ? e.context.tasks.length : 0;
    const about = e.task_id ? " " + e.task_id : listed ? ` (${listed} tasks)` : "";
    feed.prepend(el("li", { "data-entry": e.entry }, `${when} ${e.channel.replace("cortex:", "")} ${e.from} ${what}${about}`));
  }
  while (feed.children.length > 300) feed.lastChild.remove();
}

function initRun(runId) {
  window.cortexLoadedAt = Date.now();  // a reload would reset it: the tests check it never changes
  fetch(`/api/runs/${encodeURIComponent(runId)}`).then((r) => r.json()).then((view) => {
    drawRun(view);
    addFeed(view.events || []);
    const stream = new EventSource(`/api/runs/${encodeURIComponent(runId)}/stream`);
    stream.addEventListener("snapshot", (m) => drawRun(JSON.parse(m.data)));
    stream.addEventListener("feed", (m) => addFeed(JSON.parse(m.data)));
    stream.addEventListener("end", () => { stream.close(); document.body.dataset.finished = "1"; });
  });
}

function drawGraph(node, g) {
  // layered drawing: a node's layer is the longest chain of edges leading to it
  const edges = g.edges.length ? g.edges : g.deps.flatMap((t) => t.depends_on.map((d) => [d, "before", t.id]));
  const nodes = g.nodes.length ? g.nodes : [];
  const layer = Object.fromEntries(nodes.map((n) => [n, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let moved = false;
    for (const [a, , b] of edges) if (a in layer && b in layer && layer[b] < layer[a] + 1) { layer[b] = layer[a] + 1; moved = true; }
    if (!moved) break;
  }
  const columns = {};
  nodes.forEach((n) => (columns[layer[n]] = columns[layer[n]] || []).push(n));
  const colW = 260, rowH = 20, pos = {};
  Object.entries(columns).forEach(([c, ns]) => ns.forEach((n, i) => (pos[n] = [c * colW + 10, i * rowH + 16])));
  const height = Math.max(...Object.values(columns).map((ns) => ns.length)) * rowH + 24;
  const svg = el("svg:svg", { width: Object.keys(columns).length * colW + 20, height: height, "data-nodes": nodes.length });
  for (const [a, rel, b] of edges) {
    if (!(a in pos && b in pos)) continue;
    const line = el("svg:line", { x1: pos[a][0] + 200, y1: pos[a][1] - 4, x2: pos[b][0], y2: pos[b][1] - 4, stroke: "#9aa3b5" });
    line.append(el("svg:title", {}, `${a} ${rel} ${b}`));
    svg.append(line);
  }
  const critical = new Set(g.critical || []);
  for (const n of nodes) {
    const t = el("svg:text", { x: pos[n][0], y: pos[n][1], "data-node": n, fill: critical.has(n) || n === g.root ? "#c43d3d" : "#1d2330" }, n.length > 36 ? n.slice(0, 35) + "…" : n);
    t.append(el("svg:title", {}, n));
    svg.append(t);
  }
  node.replaceChildren(svg);
}
