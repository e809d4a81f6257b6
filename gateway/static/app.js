// AI Ops Sentry dashboard. Plain JavaScript, no build step, no network access beyond the gateway.
// Live updates come over server-sent events (read with fetch, so the API token can travel in a header);
// when the stream is down the page polls, and a banner says what is unreachable.
"use strict";

const METRICS = [
  ["latency_p95", "latency p95", "ms"],
  ["error_rate", "errors", "%"],
  ["cpu_usage", "cpu", "%"],
  ["memory_usage", "memory", "MB"],
  ["request_rate", "requests", "/s"],
];
const HISTORY = 60; // points kept per service and metric for the sparklines
const POLL_MS = 5000;
const RECONCILE_MS = 30000; // a full reload even while live: anything a dropped stream missed comes back
const HEALTH_MS = 5000;
const TOKEN_KEY = "aiops-sentry.token";
const TARGET_KEY = "aiops-sentry.targets";

const state = {
  services: new Map(), // name -> services-list entry
  history: new Map(), // name -> {metric: [values]}
  lastSeen: new Map(), // name -> last_updated already recorded in history
  anomalies: [], // newest first
  anomalyIds: new Set(),
  actions: new Map(), // action_id -> action-log entry
  incidents: new Map(), // incident_id -> incidents-list entry (its latest event, duration, actions)
  fresh: new Set(), // ids to highlight once
  backendUp: null,
  kafkaUp: null,
  hasStore: false, // the gateway keeps raw metric history: sparklines can start from it
  catalog: {}, // service -> where it runs, from the policy file: fills the action dialog
  live: "unknown", // "up" | "polling" | "down"
  filter: "",
};

// ---------------------------------------------------------------------------------------------
// small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") {
      for (const [name, item] of Object.entries(value)) if (item !== null && item !== undefined) el.dataset[name] = item;
    }
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  return el;
}

function fmt(value, unit) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  const text = abs >= 1000 ? value.toFixed(0) : abs >= 100 ? value.toFixed(1) : value.toFixed(2);
  return `${text}${unit === "/s" ? "/s" : " " + unit}`;
}

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return new Date(iso).toISOString().slice(0, 16).replace("T", " ");
}

function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

function toast(message, level = "info") {
  const el = h("div", { class: "toast", dataset: { level } }, message);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), level === "error" ? 9000 : 5000);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function explain(status, body) {
  if (body && typeof body.message === "string") return body.message;
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      ...options,
      headers: { ...(options.body ? { "Content-Type": "application/json" } : {}), ...authHeaders(), ...(options.headers || {}) },
    });
  } catch (err) {
    setBackend(false);
    throw new ApiError(0, "the gateway does not answer");
  }
  setBackend(true);
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, explain(response.status, body));
  return body;
}

// ---------------------------------------------------------------------------------------------
// state updates

function recordHealth(service) {
  state.services.set(service.name, service);
  if (state.lastSeen.get(service.name) === service.last_updated) return;
  state.lastSeen.set(service.name, service.last_updated);
  const series = state.history.get(service.name) || {};
  for (const [metric] of METRICS) {
    const value = service[metric];
    if (value === null || value === undefined) continue;
    const points = (series[metric] = series[metric] || []);
    points.push(value);
    if (points.length > HISTORY) points.splice(0, points.length - HISTORY);
  }
  state.history.set(service.name, series);
}

// A page opened mid-incident draws its sparklines from the store's raw samples, averaged per
// SEED_BUCKET_MS, before the live health updates; without a store (see /api/v1/health) they start empty.
const SEED_BUCKET_MS = 10000;
const seeded = new Set();

async function seedHistory(name) {
  if (!state.hasStore || seeded.has(name)) return;
  seeded.add(name);
  let recent;
  try {
    recent = await api(`/api/v1/metrics/recent?service_name=${encodeURIComponent(name)}&limit=1000`);
  } catch (err) {
    return;
  }
  const buckets = {}; // metric -> Map(bucket -> [sum, count])
  for (const sample of recent.metrics) {
    const bucket = Math.floor(Date.parse(sample.timestamp) / SEED_BUCKET_MS);
    const sums = (buckets[sample.metric_name] = buckets[sample.metric_name] || new Map());
    const [sum, count] = sums.get(bucket) || [0, 0];
    sums.set(bucket, [sum + sample.value, count + 1]);
  }
  const series = state.history.get(name) || {};
  for (const [metric] of METRICS) {
    if (!buckets[metric]) continue;
    const past = [...buckets[metric].entries()].sort((a, b) => a[0] - b[0]).map(([, [sum, count]]) => sum / count);
    series[metric] = past.concat(series[metric] || []).slice(-HISTORY);
  }
  state.history.set(name, series);
  render();
}

function recordAnomaly(anomaly, live) {
  if (state.anomalyIds.has(anomaly.id)) return;
  state.anomalyIds.add(anomaly.id);
  state.anomalies.push(anomaly);
  state.anomalies.sort((a, b) => (a.timestamp < b.timestamp ? 1 : -1));
  if (state.anomalies.length > 300) {
    for (const dropped of state.anomalies.splice(300)) state.anomalyIds.delete(dropped.id);
  }
  if (live) state.fresh.add(anomaly.id);
}

function recordAction(entry, live) {
  state.actions.set(entry.action_id, entry);
  if (live) state.fresh.add(entry.action_id);
}

function recordIncident(incident, live) {
  const before = state.incidents.get(incident.incident_id);
  // Each event carries the whole incident; an older one (a slow poll's answer) never replaces a newer one.
  if (before && before.status === "resolved" && incident.status === "open") return;
  if (before && before.status === incident.status && Date.parse(before.updated_at) > Date.parse(incident.updated_at)) return;
  state.incidents.set(incident.incident_id, incident);
  if (live && (!before || before.updated_at !== incident.updated_at || before.status !== incident.status)) {
    state.fresh.add(incident.incident_id);
  }
  if (state.incidents.size > 500) {
    const oldest = [...state.incidents.values()]
      .filter((i) => i.status === "resolved")
      .sort((a, b) => Date.parse(a.updated_at) - Date.parse(b.updated_at));
    for (const dropped of oldest.slice(0, state.incidents.size - 500)) state.incidents.delete(dropped.incident_id);
  }
}

// ---------------------------------------------------------------------------------------------
// rendering (throttled to one frame)

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderSummary();
    renderServices();
    renderIncidents();
    renderAnomalies();
    renderApprovals();
    renderActions();
    state.fresh.clear();
  });
}

function renderSummary() {
  const counts = { healthy: 0, degraded: 0, critical: 0 };
  for (const service of state.services.values()) counts[service.status] = (counts[service.status] || 0) + 1;
  for (const status of Object.keys(counts)) document.getElementById(`count-${status}`).textContent = counts[status];
  document.getElementById("count-pending").textContent = pendingActions().length;
  const mark = document.querySelector(".brand-mark");
  const worst = counts.critical ? "--critical" : counts.degraded ? "--degraded" : "--healthy";
  mark.style.background = `var(${worst})`;
  mark.style.boxShadow = `0 0 8px var(${worst})`;
}

function sparkline(values) {
  const width = 100;
  const height = 20;
  const el = svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  if (!values || values.length < 2) return el;
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || Math.abs(max) || 1;
  // Fewer points than the window holds are spread over the full width: the shape matters, not the scale.
  const step = width / (values.length - 1);
  const points = values.map((v, i) => [i * step, height - 2 - ((v - min) / span) * (height - 4)]);
  const line = points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  el.append(svg("polygon", { class: "area", points: `0,${height} ${line} ${width},${height}` }));
  el.append(svg("polyline", { points: line }));
  return el;
}

const HOT = { cpu_usage: 80, error_rate: 5 };

function serviceCard(service) {
  const series = state.history.get(service.name) || {};
  const metrics = h("div", { class: "metrics" });
  for (const [metric, label, unit] of METRICS) {
    const value = service[metric];
    const hot = HOT[metric] !== undefined && value > HOT[metric];
    metrics.append(
      h("span", { class: "metric-name" }, label),
      sparkline(series[metric]),
      h("span", { class: `metric-value${hot ? " hot" : ""}`, title: metric }, fmt(value, unit)),
    );
  }
  const button = (type, label, title) =>
    h("button", { class: "btn btn-small", type: "button", dataset: { action: type }, title, onclick: () => openDialog(type, service.name) }, label);
  return h(
    "article",
    { class: "service", dataset: { status: service.status, service: service.name } },
    h(
      "div",
      { class: "service-head" },
      h("span", { class: "service-name", title: service.name }, service.name),
      h("span", { class: "score", title: "highest anomaly score of the latest windows" }, `score ${service.anomaly_score.toFixed(2)}`),
      h("span", { class: "status", dataset: { status: service.status } }, service.status),
    ),
    metrics,
    anomalyNote(service.name),
    h(
      "div",
      { class: "service-foot" },
      button("restart_deployment", "Restart", "delete the pods (GKE) or roll a new revision (Cloud Run)"),
      button("rollout_restart", "Rollout", "rolling restart, like kubectl rollout restart"),
      button("scale_deployment", "Scale", "set replicas or min/max"),
      h("span", { class: "updated" }, ago(service.last_updated)),
    ),
  );
}

function anomalyNote(name) {
  const recent = state.anomalies.filter((a) => a.service_name === name);
  if (!recent.length) return null;
  const worst = ["critical", "high", "medium", "low"].find((sev) => recent.some((a) => a.severity === sev));
  const metrics = [...new Set(recent.map((a) => a.metric_name))].join(", ");
  return h(
    "div",
    { class: "service-anomalies", dataset: { severity: worst } },
    `${recent.length} anomal${recent.length === 1 ? "y" : "ies"} (${metrics}), last at ${clock(recent[0].timestamp)}`,
  );
}

const STATUS_ORDER = { critical: 0, degraded: 1, healthy: 2 };

function renderServices() {
  const grid = document.getElementById("service-grid");
  const services = [...state.services.values()]
    .filter((s) => !state.filter || s.name.toLowerCase().includes(state.filter))
    .sort((a, b) => STATUS_ORDER[a.status] - STATUS_ORDER[b.status] || a.name.localeCompare(b.name));
  if (!services.length) {
    const text = state.services.size ? "No service matches the filter." : "Waiting for the first health events from the pipeline…";
    grid.replaceChildren(h("p", { class: "empty" }, text));
  } else {
    grid.replaceChildren(...services.map(serviceCard));
  }
  const newest = [...state.services.values()].map((s) => s.last_updated).sort().pop();
  document.getElementById("services-updated").textContent = newest ? `data ${ago(newest)}` : "";
}

function renderAnomalies() {
  const feed = document.getElementById("anomaly-feed");
  document.getElementById("anomaly-count").textContent = state.anomalies.length ? `${state.anomalies.length} recent` : "";
  if (!state.anomalies.length) {
    feed.replaceChildren(h("li", { class: "empty" }, "No anomalies seen."));
    return;
  }
  feed.replaceChildren(
    ...state.anomalies.slice(0, 150).map((a) =>
      h(
        "li",
        { class: `anomaly${state.fresh.has(a.id) ? " fresh" : ""}`, dataset: { id: a.id, service: a.service_name } },
        h("span", { class: "sev", dataset: { severity: a.severity } }, a.severity),
        h("span", { class: "anomaly-what", title: `${a.service_name} ${a.metric_name}` }, `${a.service_name} · ${a.metric_name}`),
        h("span", { class: "anomaly-when", title: a.timestamp }, clock(a.timestamp)),
        h(
          "span",
          { class: "anomaly-detail" },
          "actual ", h("b", {}, a.actual_value.toFixed(1)), " expected ", a.expected_value.toFixed(1), ` · score ${a.anomaly_score.toFixed(3)}`,
        ),
      ),
    ),
  );
}

// The policy's verdict on an action: its incident resolved in time (verified), or not (not_effective).
const VERDICTS = new Set(["verified", "not_effective"]);

function verdictChip(status) {
  return h("span", { class: `chip verdict ${status.replace("_", "-")}`, dataset: { status } }, status.replace("_", " "));
}

function statusChip(status) {
  return VERDICTS.has(status) ? verdictChip(status) : h("span", { class: "chip", dataset: { status } }, status.replace("_", " "));
}

function verdictOf(entry) {
  const found = (entry.results || []).filter((r) => VERDICTS.has(r.status));
  return found.length ? found[found.length - 1].status : null;
}

function incidentDuration(incident) {
  if (incident.status === "resolved") return incident.duration_seconds;
  // While open it keeps growing between events: counted here from its start, as the gateway does.
  const since = (Date.now() - Date.parse(incident.started_at)) / 1000;
  return Math.max(since, incident.duration_seconds);
}

function orderedIncidents() {
  const all = [...state.incidents.values()];
  const newest = (field) => (a, b) => Date.parse(b[field]) - Date.parse(a[field]);
  const open = all.filter((i) => i.status === "open").sort(newest("started_at"));
  const resolved = all.filter((i) => i.status === "resolved").sort(newest("updated_at"));
  return [open, resolved.slice(0, 50)];
}

function incidentItem(incident) {
  const open = incident.status === "open";
  const duration = span(incidentDuration(incident));
  const detail = [
    incident.metrics.join(", "),
    `${incident.anomaly_count} ${incident.anomaly_count === 1 ? "anomaly" : "anomalies"}`,
    `since ${clock(incident.started_at)}`,
  ];
  if (!open) detail.push(incident.resolution === "level_shift_accepted" ? "new level accepted" : "recovered");
  const actions = (incident.actions || []).map((a) =>
    h(
      "li",
      { class: "incident-action", dataset: { id: a.action_id, status: a.status, verification: a.verification } },
      h("span", {}, a.action_type),
      VERDICTS.has(a.status) ? null : statusChip(a.status),
      a.verification ? verdictChip(a.verification) : h("span", { class: "muted" }, "not judged yet"),
      h("span", { class: "by" }, a.triggered_by),
    ),
  );
  return h(
    "li",
    {
      class: `incident ${incident.status}${state.fresh.has(incident.incident_id) ? " fresh" : ""}`,
      dataset: { id: incident.incident_id, service: incident.service_name, status: incident.status },
      title: incident.reason,
    },
    h("span", { class: "sev", dataset: { severity: incident.worst_severity } }, incident.worst_severity),
    h("span", { class: "incident-what" }, incident.service_name),
    h("span", { class: "incident-duration", title: open ? "open for" : "lasted" }, open ? `open ${duration}` : duration),
    h("span", { class: "incident-detail" }, detail.join(" · ")),
    actions.length ? h("ul", { class: "incident-actions" }, actions) : null,
  );
}

function renderIncidents() {
  const list = document.getElementById("incident-list");
  const [open, resolved] = orderedIncidents();
  document.getElementById("incident-count").textContent = state.incidents.size ? `${open.length} open` : "";
  if (!open.length && !resolved.length) {
    list.replaceChildren(h("li", { class: "empty" }, "No incidents."));
    return;
  }
  list.replaceChildren(...open.map(incidentItem), ...resolved.map(incidentItem));
}

function pendingActions() {
  return [...state.actions.values()].filter((a) => a.status === "pending" && a.results && a.results.length);
}

function renderApprovals() {
  const list = document.getElementById("approval-queue");
  const pending = pendingActions().sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
  if (!pending.length) {
    list.replaceChildren(h("li", { class: "empty" }, "Nothing waits for approval."));
    return;
  }
  list.replaceChildren(
    ...pending.map((a) =>
      h(
        "li",
        { class: "approval", dataset: { id: a.action_id } },
        h("span", { class: "approval-what" }, `${a.action_type} ${a.service_name}`),
        h(
          "span",
          { class: "approval-buttons" },
          h("button", { class: "btn btn-small btn-ok", type: "button", onclick: () => decide(a, true) }, "Approve"),
          h("button", { class: "btn btn-small btn-danger", type: "button", onclick: () => decide(a, false) }, "Reject"),
        ),
        h("span", { class: "approval-why" }, `${a.message} — asked by ${a.triggered_by}, ${ago(a.requested_at || a.updated_at)}`),
      ),
    ),
  );
}

function targetText(entry) {
  const request = entry.request || {};
  if (entry.target_type === "cloud_run") return ["Cloud Run", request.region].filter(Boolean).join(" ");
  return ["GKE", [request.cluster_name, request.namespace].filter(Boolean).join("/")].filter(Boolean).join(" ");
}

function reasonText(entry) {
  const reason = entry.request && entry.request.reason;
  return reason ? h("div", { class: "reason" }, `reason: ${reason}`) : null;
}

function renderActions() {
  const body = document.querySelector("#action-log tbody");
  const entries = [...state.actions.values()].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1)).slice(0, 200);
  if (!entries.length) {
    body.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: "7" }, "No actions yet.")));
    return;
  }
  body.replaceChildren(
    ...entries.map((a) => {
      const trail = (a.results || []).map((r) => `${clock(r.timestamp)} ${r.status}: ${r.message}`).join("\n");
      const verdict = verdictOf(a);
      const classes = [state.fresh.has(a.action_id) ? "fresh" : "", verdict ? verdict.replace("_", "-") : ""].filter(Boolean);
      return h(
        "tr",
        { class: classes.join(" ") || null, dataset: { id: a.action_id, service: a.service_name, status: a.status, verification: verdict } },
        h("td", { class: "mono", title: a.updated_at }, clock(a.updated_at)),
        h("td", { class: "mono" }, a.action_type),
        h("td", { class: "mono" }, a.service_name),
        h("td", { class: "mono" }, targetText(a)),
        h("td", {}, statusChip(a.status), verdict && verdict !== a.status ? [" ", verdictChip(verdict)] : null),
        h("td", { class: "message", title: trail || a.message }, a.message, reasonText(a)),
        h("td", { class: "mono" }, a.triggered_by),
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// connection state and the banner

function setBackend(up) {
  if (state.backendUp === up) return;
  state.backendUp = up;
  renderConnection();
}

function renderConnection() {
  const set = (id, value) => (document.getElementById(id).dataset.state = value);
  set("conn-backend", state.backendUp === null ? "unknown" : state.backendUp ? "up" : "down");
  set("conn-kafka", state.kafkaUp === null ? "unknown" : state.kafkaUp ? "up" : "down");
  set("conn-live", state.live);
  document.getElementById("conn-live").title = state.live === "up" ? "live updates (server-sent events)" : "polling every 5 s";
  const banner = document.getElementById("banner");
  let text = "";
  let level = "error";
  if (state.backendUp === false) text = "The gateway is unreachable: the page shows the last data it received and keeps retrying.";
  else if (state.kafkaUp === false) text = `Kafka is unreachable from the gateway${state.kafkaError ? ` (${state.kafkaError})` : ""}: health, anomalies and actions may be stale, and actions cannot be sent.`;
  else if (state.authError) {
    text = state.authError;
    level = "warn";
  }
  banner.hidden = !text;
  banner.textContent = text;
  banner.dataset.level = level;
}

async function checkHealth() {
  try {
    const health = await api("/api/v1/health");
    state.kafkaUp = health.kafka.reachable;
    state.kafkaError = health.kafka.error;
    state.hasStore = health.store;
    for (const name of state.services.keys()) seedHistory(name);
  } catch (err) {
    state.kafkaUp = null;
  }
  renderConnection();
}

// ---------------------------------------------------------------------------------------------
// loading: a full load at start and while polling; the stream for everything after

async function loadAll() {
  try {
    const [services, anomalies, actions, catalog, incidents] = await Promise.all([
      api("/api/v1/services"),
      api("/api/v1/anomalies?limit=200"),
      api("/api/v1/actions?limit=300"),
      api("/api/v1/catalog"),
      api("/api/v1/incidents?limit=200"),
    ]);
    state.catalog = catalog.targets;
    state.authError = "";
    for (const service of services.services) recordHealth(service);
    for (const anomaly of anomalies.anomalies) recordAnomaly(anomaly, false);
    for (const entry of actions.actions) recordAction(entry, false);
    for (const incident of incidents.incidents) recordIncident(incident, false);
    render();
    for (const service of services.services) seedHistory(service.name);
  } catch (err) {
    if (err.status === 401 || err.status === 403) state.authError = `${err.message} — enter a token at the top right.`;
    renderConnection();
  }
}

let pollTimer = null;
function startPolling() {
  if (pollTimer) return;
  pollTimer = setInterval(loadAll, POLL_MS);
}
function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

let streamAbort = null;
async function followStream() {
  let backoff = 1000;
  for (;;) {
    streamAbort = new AbortController();
    try {
      const response = await fetch("/api/v1/stream", { headers: authHeaders(), signal: streamAbort.signal });
      if (!response.ok || !response.body) throw new ApiError(response.status, `stream: HTTP ${response.status}`);
      setBackend(true);
      state.live = "up";
      stopPolling();
      renderConnection();
      await loadAll(); // whatever happened while the stream was down
      backoff = 1000;
      await readEvents(response.body.getReader());
    } catch (err) {
      if (err.name === "AbortError") {
        // the token changed: reconnect at once
      } else if (err.status === undefined) setBackend(false);
    }
    state.live = state.backendUp === false ? "down" : "polling";
    renderConnection();
    startPolling();
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 15000);
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) handleEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function handleEvent(name, payload) {
  if (name === "health") recordHealth(payload);
  else if (name === "anomaly") recordAnomaly(payload, true);
  else if (name === "incident") recordIncident(payload, true);
  else if (name === "action") {
    const before = state.actions.get(payload.action_id);
    recordAction(payload, true);
    const latest = payload.results && payload.results[payload.results.length - 1];
    if (latest && (!before || before.status !== payload.status) && payload.triggered_by.startsWith("manual:")) {
      toast(`${payload.action_type} ${payload.service_name}: ${payload.status.replace("_", " ")} — ${payload.message}`, payload.status === "failed" || payload.status === "rejected" ? "error" : "ok");
    }
  }
  render();
}

// ---------------------------------------------------------------------------------------------
// actions: the confirmation dialog and approvals

let pending = null; // {type, service}

function savedTargets() {
  try {
    return JSON.parse(localStorage.getItem(TARGET_KEY) || "{}");
  } catch (err) {
    return {};
  }
}

function openDialog(type, service) {
  pending = { type, service };
  const target = state.catalog[service] || savedTargets()[service] || savedTargets()["*"] || {};
  const dialog = document.getElementById("action-dialog");
  document.getElementById("dialog-lead").replaceChildren(h("b", {}, type.replace("_", " ")), " of ", service);
  document.getElementById("f-target").value = target.target_type || "gke";
  document.getElementById("f-cluster").value = target.cluster_name || "";
  document.getElementById("f-namespace").value = target.namespace || "default";
  document.getElementById("f-region").value = target.region || "";
  document.getElementById("f-project").value = target.project || "";
  for (const id of ["f-replicas", "f-min", "f-max", "f-reason"]) document.getElementById(id).value = "";
  document.getElementById("dialog-error").hidden = true;
  document.getElementById("dialog-confirm").disabled = false;
  syncDialogFields();
  dialog.showModal();
  (document.getElementById("f-target").value === "gke" ? document.getElementById("f-cluster") : document.getElementById("f-region")).focus();
}

function syncDialogFields() {
  const target = document.getElementById("f-target").value;
  for (const label of document.querySelectorAll("#action-form [data-for]")) {
    const kind = label.dataset.for;
    label.hidden = kind === "scale" ? !pending || pending.type !== "scale_deployment" : kind !== target;
  }
}

function dialogBody() {
  const value = (id) => document.getElementById(id).value.trim();
  const target = value("f-target");
  const body = { service_name: pending.service, target_type: target };
  if (target === "gke") {
    if (value("f-cluster")) body.cluster_name = value("f-cluster");
    if (value("f-namespace")) body.namespace = value("f-namespace");
  } else {
    if (value("f-region")) body.region = value("f-region");
    if (value("f-project")) body.project = value("f-project");
  }
  if (pending.type === "scale_deployment") {
    for (const [id, field] of [["f-replicas", "replicas"], ["f-min", "min_replicas"], ["f-max", "max_replicas"]]) {
      if (value(id) !== "") body[field] = Number(value(id));
    }
  }
  if (value("f-reason")) body.reason = value("f-reason");
  return body;
}

async function confirmAction(event) {
  event.preventDefault();
  if (!pending) return;
  const body = dialogBody();
  const error = document.getElementById("dialog-error");
  const confirm = document.getElementById("dialog-confirm");
  confirm.disabled = true;
  try {
    const answer = await api(`/api/v1/${pending.type}`, { method: "POST", body: JSON.stringify(body) });
    const targets = savedTargets();
    const { service_name, reason, replicas, min_replicas, max_replicas, ...target } = body;
    targets[pending.service] = target;
    targets["*"] = target;
    localStorage.setItem(TARGET_KEY, JSON.stringify(targets));
    document.getElementById("action-dialog").close();
    toast(`${answer.action_type} of ${answer.service_name} requested (${answer.action_id.slice(0, 8)})`, "ok");
    loadAll();
  } catch (err) {
    error.textContent = err.status === 401 || err.status === 403 ? `${err.message}` : err.message;
    error.hidden = false;
    confirm.disabled = false;
  }
}

async function decide(entry, approve) {
  const verb = approve ? "Approve" : "Reject";
  if (!window.confirm(`${verb} ${entry.action_type} of ${entry.service_name}?`)) return;
  try {
    await api(`/api/v1/actions/${encodeURIComponent(entry.action_id)}/${approve ? "approve" : "reject"}`, {
      method: "POST",
      body: JSON.stringify({}),
    });
    toast(`${verb}d ${entry.action_type} of ${entry.service_name}`, "ok");
  } catch (err) {
    toast(err.message, "error");
  }
}

// ---------------------------------------------------------------------------------------------
// start

function setupToken() {
  // A link like /#token=... (what `make demo` prints) carries a token; the fragment never reaches
  // the server, and it is dropped from the address bar once saved.
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    localStorage.setItem(TOKEN_KEY, fromLink);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  input.value = token();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    toast(value ? "token saved in this browser" : "token removed", "ok");
    state.authError = "";
    if (streamAbort) streamAbort.abort();
    loadAll();
  });
}

function start() {
  setupToken();
  document.getElementById("service-filter").addEventListener("input", (event) => {
    state.filter = event.target.value.trim().toLowerCase();
    render();
  });
  document.getElementById("f-target").addEventListener("change", syncDialogFields);
  document.getElementById("action-form").addEventListener("submit", confirmAction);
  document.getElementById("dialog-cancel").addEventListener("click", () => document.getElementById("action-dialog").close());
  checkHealth();
  setInterval(checkHealth, HEALTH_MS);
  setInterval(render, 10000); // keeps the "ago" labels current
  setInterval(() => state.live === "up" && loadAll(), RECONCILE_MS);
  loadAll();
  followStream();
}

start();
