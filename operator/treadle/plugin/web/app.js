// The page of `kubectl treadle ui`: lists, a workflow's task graph (laid out by dagre), a
// task's attempts, output and logs, a sync job's status; kept live by server-sent events.
// Every value from the cluster is set as text (never as HTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { view: "workflows", namespace: "", selected: null, task: null, rows: new Map() };
let events = null;
let refreshTimer = null;
let logTimer = null;
const LOG_POLL_MS = 2000;
const IN_FLIGHT = ["Queued", "Running", "Retrying"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

async function api(path) {
  const reply = await fetch(path, { credentials: "same-origin" });
  const body = await reply.json().catch(() => ({ message: reply.statusText }));
  if (!reply.ok) throw new Error(body.message || `HTTP ${reply.status}`);
  return body;
}

function phase(text) {
  return el("span", { class: `phase ${text}`, "data-phase": text }, text);
}

function showError(where, error) {
  where.replaceChildren(el("p", { class: "error" }, String(error.message || error)));
}

// --- lists ---------------------------------------------------------------------------------

async function loadList() {
  const list = document.getElementById("list");
  const path = state.view === "workflows" ? "/api/workflows" : "/api/syncjobs";
  try {
    const rows = await api(`${path}?namespace=${encodeURIComponent(state.namespace)}`);
    state.rows = new Map(rows.map((row) => [row.name, row]));
    drawList();
  } catch (error) {
    showError(list, error);
  }
}

function drawList() {
  const list = document.getElementById("list");
  const rows = [...state.rows.values()].sort((a, b) =>
    state.view === "workflows"
      ? String(b.created).localeCompare(String(a.created))
      : String(a.name).localeCompare(String(b.name)));
  if (!rows.length) {
    const what = state.view === "workflows" ? "workflows" : "sync jobs";
    list.replaceChildren(el("p", { class: "empty" }, `No ${what} in ${state.namespace}.`));
    return;
  }
  const head = state.view === "workflows"
    ? ["Name", "Phase", "Progress", "Duration"]
    : ["Name", "Schedule", "Last outcome", "Running"];
  const body = rows.map((row) => {
    const cells = state.view === "workflows"
      ? [row.name, phase(row.phase), row.progress, row.duration]
      : [row.name, row.schedule + (row.suspended ? " (suspended)" : ""),
         row.degraded ? phase("Failed") : row.lastOutcome, row.running];
    const chosen = state.selected && state.selected.name === row.name;
    return el("tr", {
      class: `row${chosen ? " selected" : ""}`, "data-name": row.name,
      onclick: () => select(row.name),
    }, ...cells.map((cell) => el("td", {}, cell)));
  });
  list.replaceChildren(el("table", {},
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...body)));
}

function select(name) {
  const kind = state.view === "workflows" ? "Workflow" : "SyncJob";
  if (!state.selected || state.selected.name !== name) state.task = null;
  state.selected = { kind, name };
  drawList();
  loadDetail();
  history.replaceState(null, "", `#${state.view}/${state.namespace}/${name}`);
}

async function loadDetail() {
  const detail = document.getElementById("detail");
  if (!state.selected) return;
  const { kind, name } = state.selected;
  const where = `${encodeURIComponent(state.namespace)}/${encodeURIComponent(name)}`;
  try {
    if (kind === "Workflow") drawWorkflow(await api(`/api/workflows/${where}`));
    else drawSyncJob(await api(`/api/syncjobs/${where}`));
  } catch (error) {
    showError(detail, error);
  }
}

// --- a workflow ----------------------------------------------------------------------------

function drawWorkflow(view) {
  const detail = document.getElementById("detail");
  const { workflow, row, graph } = view;
  const status = workflow.status || {};
  const title = el("h2", {}, row.name, " ", phase(row.phase));
  const facts = el("dl", { class: "rows" },
    el("dt", {}, "Progress"), el("dd", {}, row.progress || "-"),
    el("dt", {}, "Started"), el("dd", {}, row.started || "-"),
    el("dt", {}, "Duration"), el("dd", {}, row.duration || "-"),
    el("dt", {}, "Message"), el("dd", {}, row.message || "-"));
  const parts = [title, facts, drawGraph(graph)];
  const chosen = graph.nodes.find((node) => node.id === state.task);
  if (chosen) parts.push(drawTask(workflow, chosen));
  const letters = status.deadLetters || [];
  if (letters.length) {
    parts.push(el("h3", {}, `Dead letters (${status.deadLetterCount || letters.length})`));
    parts.push(el("table", { class: "plain", id: "dead-letters" },
      el("tr", {}, ...["Task", "Item", "Attempts", "At", "Error"].map((h) => el("th", {}, h))),
      ...letters.map((d) => el("tr", {},
        ...[d.task, d.item ?? "", d.attempts, d.at, d.error].map((c) => el("td", {}, c))))));
  }
  detail.replaceChildren(...parts);
}

function drawGraph(graph) {
  const layout = new dagre.graphlib.Graph();
  layout.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 56, marginx: 8, marginy: 8 });
  layout.setDefaultEdgeLabel(() => ({}));
  for (const node of graph.nodes) {
    const width = Math.max(node.id.length, (node.phase + node.detail).length + 3) * 7.5 + 24;
    layout.setNode(node.id, { width, height: 46 });
  }
  for (const [from, to] of graph.edges) layout.setEdge(from, to);
  // Exit tasks run once the DAG has ended: drawn after its last tasks, with dashed links.
  const exits = graph.nodes.filter((n) => n.exit);
  const main = graph.nodes.filter((n) => !n.exit);
  const sinks = main.filter((n) => !graph.edges.some(([from]) => from === n.id));
  const roots = exits.filter((n) => !graph.edges.some(([, to]) => to === n.id));
  const after = [];
  for (const sink of sinks) for (const root of roots) after.push([sink.id, root.id]);
  for (const [from, to] of after) layout.setEdge(from, to, { after: true });
  dagre.layout(layout);
  const size = layout.graph();
  const picture = svg("svg", {
    class: "graph", id: "graph", width: Math.ceil(size.width), height: Math.ceil(size.height),
    viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`, role: "img",
    "aria-label": "the workflow's tasks",
  });
  const defs = svg("defs");
  const marker = svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse",
  });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }));
  defs.append(marker);
  picture.append(defs);
  for (const edge of layout.edges()) {
    const points = layout.edge(edge).points;
    const d = points.map((p, i) => `${i ? "L" : "M"} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`);
    const dashed = layout.edge(edge).after ? { "stroke-dasharray": "4 4" } : {};
    picture.append(svg("path", {
      d: d.join(" "), class: "edge", "marker-end": "url(#arrow)",
      "data-from": edge.v, "data-to": edge.w, ...dashed,
    }));
  }
  for (const node of graph.nodes) {
    const box = layout.node(node.id);
    const group = svg("g", {
      class: `node ${node.phase}${node.exit ? " exit" : ""}${node.id === state.task ? " chosen" : ""}`,
      "data-task": node.id, "data-phase": node.phase,
      transform: `translate(${(box.x - box.width / 2).toFixed(1)},${(box.y - box.height / 2).toFixed(1)})`,
      tabindex: 0,
    });
    group.addEventListener("click", () => { state.task = node.id; loadDetail(); });
    const title = svg("title");
    title.textContent = `${node.id}: ${node.phase}${node.detail ? ", " + node.detail : ""}`;
    group.append(title, svg("rect", { width: box.width, height: box.height, rx: 6 }));
    const name = svg("text", { x: 10, y: 19, class: "name" });
    name.textContent = node.id;
    const line = svg("text", { x: 10, y: 36 });
    line.textContent = node.phase + (node.detail ? " · " + node.detail : "");
    group.append(name, line);
    picture.append(group);
  }
  return picture;
}

function drawTask(workflow, node) {
  const entry = node.status || {};
  const facts = [["Phase", phase(node.phase)], ["Action", node.action]];
  for (const [label, key] of [["Attempts", "attempts"], ["Started", "startedAt"],
    ["Worker", "worker"], ["Attempt started", "attemptStartedAt"], ["Finished", "finishedAt"], ["Next retry", "nextRetryAt"], ["Reason", "reason"],
    ["Children", "items"], ["Succeeded", "succeeded"], ["Dead-lettered", "deadLettered"],
    ["Running children", "runningItems"], ["Output stored at", "outputRef"]]) {
    if (entry[key] !== undefined && entry[key] !== null && entry[key] !== "") {
      facts.push([label, entry[key]]);
    }
  }
  const panel = el("section", { class: "task", id: "task", "data-task": node.id },
    el("h3", {}, `Task ${node.id}${node.exit ? " (on exit)" : ""}`),
    el("dl", {}, ...facts.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)])));
  if (entry.error) panel.append(el("div", { class: "error" }, entry.error));
  if (entry.output !== undefined) {
    panel.append(el("h4", {}, "Output"), el("pre", { id: "output" }, JSON.stringify(entry.output, null, 2)));
  }
  const logs = el("div", { id: "logs" }, el("p", { class: "hint" }, "Loading logs…"));
  panel.append(el("h4", {}, "Logs"), logs);
  clearTimeout(logTimer);
  const follow = async () => {
    await loadLogs(workflow, node, logs);
    // A running attempt's log grows (its copy is refreshed every 2 s): read it again while
    // this task is the one shown.
    if (IN_FLIGHT.includes(node.phase) && state.task === node.id && logs.isConnected) {
      logTimer = setTimeout(follow, LOG_POLL_MS);
    }
  };
  follow();
  return panel;
}

async function loadLogs(workflow, node, where) {
  const name = workflow.metadata.name;
  const path = `/api/workflows/${encodeURIComponent(state.namespace)}/${encodeURIComponent(name)}/logs`;
  try {
    const answer = await api(`${path}?task=${encodeURIComponent(node.id)}`);
    const attempts = answer.attempts || [];
    if (!attempts.length) {
      where.replaceChildren(el("p", { class: "hint" }, "No attempt has run yet."));
      return;
    }
    where.replaceChildren(...attempts.flatMap((a) => [
      el("div", { class: "attempt-title" },
        (a.item !== undefined ? `[${a.item}] ` : "") + `attempt ${a.attempt}` + (a.live ? " (running)" : "")),
      el("pre", { class: "log" }, a.stored ? a.log
        : a.ended ? "(no log: the attempt wrote nothing, or its log expired)" : "(not ended yet)"),
    ]));
    if (answer.omitted) where.append(el("p", { class: "hint" }, `${answer.omitted} more attempts not shown (kubectl treadle logs ${name} ${node.id} --item N).`));
  } catch (error) {
    showError(where, error);
  }
}

// --- a sync job ----------------------------------------------------------------------------

function table(id, head, rows) {
  if (!rows.length) return el("p", { class: "hint" }, "None.");
  return el("table", { class: "plain", id },
    el("tr", {}, ...head.map((h) => el("th", {}, h))),
    ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c ?? "")))));
}

function drawSyncJob(page) {
  const detail = document.getElementById("detail");
  const job = page.job;
  const parts = [
    el("h2", {}, job.metadata.name),
    el("dl", { class: "rows", id: "status-rows" }, ...page.rows.flatMap(([label, value]) =>
      [el("dt", {}, label), el("dd", {}, value === null || value === undefined ? "-" : String(value))])),
    el("h3", {}, "Locks"),
    table("locks", ["Kind", "Name", "Holder", "Expires in", "Transitions"],
      page.locks.map((l) => [l.kind, l.name, l.holder, l.expiresIn, l.transitions])),
    el("h3", {}, "Runs under way"),
    table("active-runs", ["Name", "Kind", "Slot", "Holder", "Started"],
      page.activeRuns.map((r) => [r.name, r.kind, r.slot, r.holder, r.started])),
  ];
  if (page.backfill) {
    const b = page.backfill;
    parts.push(el("h3", {}, "Backfill"), el("dl", { class: "rows" },
      ...[["Range", b.range], ["Phase", b.phase], ["Done", b.done], ["Failed", b.failed],
        ["Skipped", b.skipped], ["Slots", b.slots], ["Parallel", b.parallel]]
        .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "-")])));
  }
  parts.push(el("h3", {}, "Succeeded slots"), el("p", {}, page.succeededSlots || "-"));
  const runs = page.runs.map((r) => [
    r.kind === "Workflow"
      ? el("a", { href: "#", onclick: (e) => { e.preventDefault(); openWorkflow(r.name); } }, r.name)
      : r.name,
    r.kind, r.slot, phase(r.phase), r.created]);
  parts.push(el("h3", {}, "Runs"), table("runs", ["Name", "Kind", "Slot", "Phase", "Created"], runs));
  detail.replaceChildren(...parts);
}

function openWorkflow(name) {
  switchView("workflows").then(() => select(name));
}

// --- live ----------------------------------------------------------------------------------

function listen() {
  if (events) events.close();
  const live = document.getElementById("live");
  events = new EventSource(`/api/events?namespace=${encodeURIComponent(state.namespace)}`);
  events.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  events.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  events.onmessage = (message) => {
    const change = JSON.parse(message.data);
    const wanted = state.view === "workflows" ? "Workflow" : "SyncJob";
    if (change.kind !== wanted || change.namespace !== state.namespace) return;
    if (change.type === "DELETED") state.rows.delete(change.name);
    else state.rows.set(change.name, change);
    drawList();
    if (state.selected && state.selected.name === change.name && change.type !== "DELETED") {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(loadDetail, 200);
    }
  };
}

async function switchView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  state.selected = null;
  state.task = null;
  document.getElementById("detail").replaceChildren(
    el("p", { class: "hint" }, "Choose a workflow or a sync job."));
  await loadList();
}

async function start() {
  const context = await api("/api/context");
  const [view, namespace, name] = location.hash.slice(1).split("/");
  state.namespace = namespace || context.namespace;
  document.getElementById("context").textContent = context.context ? `context ${context.context}` : "";
  const chooser = document.getElementById("namespace");
  for (const each of new Set([...context.namespaces, state.namespace])) {
    chooser.append(el("option", each === state.namespace ? { selected: "" } : {}, each));
  }
  chooser.addEventListener("change", () => {
    state.namespace = chooser.value;
    listen();
    switchView(state.view);
  });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => switchView(tab.dataset.view));
  }
  listen();
  await switchView(view === "syncjobs" ? "syncjobs" : "workflows");
  if (name) select(name);
}

start().catch((error) => showError(document.getElementById("detail"), error));
