// msgkpi live page: polls /api/kpis every 2 s, counts the time left down every second.
// No build step, no library; every value is put in the page as text (never as HTML).
"use strict";

const POLL_MS = 2000;
const STALE_MS = 10000;
let data = null;
let clockOffsetMs = 0;      // server now - browser now
let lastOkMs = 0;
let selectedWindow = null;
let updates = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s % 86400 / 3600)}h`;
}

const percent = (ratio) => ratio === null || ratio === undefined ? "-" : `${(100 * ratio).toFixed(1)}%`;
const number = (value, digits = 0) => value === null || value === undefined ? "-" : Number(value).toFixed(digits);
const metricName = (metric) => metric.replace("_", " ");

function slaAttainment(sla) {
  let measured = 0, attained = 0;
  for (const metrics of Object.values(sla || {})) {
    for (const figures of Object.values(metrics)) {
      measured += figures.measured; attained += figures.attained;
    }
  }
  return measured ? attained / measured : null;
}

function chart(points) {
  const width = 240, height = 70, pad = 4, top = 15;  // room for the label above the lines
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const values = points.flatMap((p) => [p.p50, p.p90]).filter((v) => v !== null);
  if (points.length < 2 || !values.length) {
    const text = document.createElementNS(svg.namespaceURI, "text");
    text.setAttribute("x", pad); text.setAttribute("y", height / 2);
    text.textContent = "not enough first responses yet";
    svg.append(text);
    svg.setAttribute("aria-label", "no FRT data yet");
    return svg;
  }
  const first = points[0].window_end, last = points[points.length - 1].window_end;
  const highest = Math.max(...values) || 1;
  const x = (t) => pad + (width - 2 * pad) * (t - first) / Math.max(1, last - first);
  const y = (v) => height - pad - (height - pad - top) * v / highest;
  for (const stat of ["p50", "p90"]) {
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("class", stat);
    line.setAttribute("points", points.filter((p) => p[stat] !== null)
      .map((p) => `${x(p.window_end).toFixed(1)},${y(p[stat]).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  const label = document.createElementNS(svg.namespaceURI, "text");
  label.setAttribute("x", pad); label.setAttribute("y", 11);
  label.textContent = `max ${duration(Math.max(...values))}`;
  svg.append(label);
  svg.setAttribute("aria-label", `FRT p50 and p90 over ${points.length} windows`);
  return svg;
}

function tile(channel, info) {
  const summary = info.windows[selectedWindow];
  const node = el("article", {class: "tile", "data-channel": channel});
  node.append(el("h3", {}, channel, el("small", {}, summary ? `${summary.state} window` : "")));
  if (!summary) {
    node.append(el("p", {class: "empty"}, `no ${selectedWindow} snapshot yet`));
  } else {
    const frt = summary.first_response || {};
    const rows = [
      ["FRT p50 / p90", `${duration(frt.p50)} / ${duration(frt.p90)}`, "frt"],
      ["reply time avg", duration((summary.reply || {}).avg), "reply"],
      ["resolution p50", duration((summary.resolution || {}).p50), "resolution"],
      ["reply rate", `${percent(summary.reply_rate.ratio)} of ${summary.reply_rate.received}`, "reply-rate"],
      ["messages in / out", `${summary.messages.customer} / ${summary.messages.agent + summary.messages.bot}`, "messages"],
      ["cycles opened / resolved", `${summary.cycles.opened} / ${summary.cycles.resolved}`, "cycles"],
      ["unique customers", summary.unique_customers, "customers"],
      ["FCR", percent(summary.fcr.ratio), "fcr"],
      ["CSAT avg / NPS", `${number(summary.csat.average, 2)} / ${number(summary.nps.score)}`, "csat"],
      ["SLA attainment", percent(slaAttainment(summary.sla)), "sla"],
    ];
    const list = el("dl");
    for (const [name, value, key] of rows) list.append(el("dt", {}, name), el("dd", {"data-kpi": key}, value));
    node.append(list);
  }
  node.append(chart(info.frt_chart));
  return node;
}

function renderTiles() {
  const tiles = document.getElementById("tiles");
  const channels = Object.keys(data.channels);
  tiles.replaceChildren(...(channels.length
    ? channels.map((channel) => tile(channel, data.channels[channel]))
    : [el("p", {class: "empty"}, "No KPI snapshots yet.")]));
}

function renderAgents() {
  const rows = (data.agents[selectedWindow] || []).map((a) => el("tr", {"data-agent": a.agent},
    el("td", {}, a.agent), el("td", {class: "num", "data-field": "replies"}, a.replies),
    el("td", {class: "num"}, a.first_responses),
    el("td", {class: "num"}, duration(a.first_response_avg_s)),
    el("td", {class: "num", "data-field": "resolutions"}, a.resolutions),
    el("td", {class: "num"}, a.messages)));
  document.querySelector("#agents tbody").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", {colspan: 6, class: "empty"}, "no agent activity in this window"))]));
}

function conversationRow(alert) {
  const who = [alert.team, alert.priority].filter(Boolean).join(" / ") || "-";
  return el("tr", {"data-conversation": alert.conversation_id, "data-alert": alert.alert_id},
    el("td", {class: "conversation"}, alert.conversation_url
      ? el("a", {href: alert.conversation_url, rel: "noreferrer", target: "_blank"}, alert.conversation_id)
      : alert.conversation_id),
    el("td", {}, alert.channel),
    el("td", {}, `${metricName(alert.metric)} (${alert.policy})`), el("td", {}, who),
    el("td", {class: "num time-left", "data-due": alert.due_ms}, ""));
}

function renderAlerts(id, alerts, total, emptyText) {
  // the newest 100 come from the server; the most urgent (earliest deadline) first
  const rows = alerts.slice().sort((a, b) => a.due_ms - b.due_ms).map(conversationRow);
  document.querySelector(`#${id} tbody`).replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", {colspan: 5, class: "empty"}, emptyText))]));
  document.getElementById(`${id}-total`).textContent =
    total > alerts.length ? `(newest ${alerts.length} of ${total})` : `(${total})`;
}

function tick() {
  const now = Date.now() + clockOffsetMs;
  for (const cell of document.querySelectorAll("td[data-due]")) {
    const left = Number(cell.dataset.due) - now;
    cell.textContent = left >= 0 ? duration(left / 1000) : `${duration(-left / 1000)} over`;
  }
  const status = document.getElementById("status");
  if (lastOkMs && Date.now() - lastOkMs > STALE_MS) {
    status.textContent = `no update for ${duration((Date.now() - lastOkMs) / 1000)}`;
    status.classList.add("stale");
  }
}

function renderWindows() {
  const nav = document.getElementById("windows");
  nav.replaceChildren(...data.windows.map((name) => {
    const button = el("button", {type: "button", "aria-pressed": String(name === selectedWindow)}, name);
    button.addEventListener("click", () => { selectedWindow = name; render(); });
    return button;
  }));
  for (const span of document.querySelectorAll(".window-name")) span.textContent = selectedWindow;
}

function render() {
  if (!selectedWindow || !data.windows.includes(selectedWindow)) {
    selectedWindow = data.windows.includes("1h") ? "1h" : data.windows[data.windows.length - 1];
  }
  renderWindows();
  renderTiles();
  renderAgents();
  renderAlerts("at-risk", data.at_risk, data.totals.at_risk, "no conversation at risk");
  renderAlerts("breached", data.breached, data.totals.breached, "no open breach");
  tick();
  document.body.dataset.updates = String(++updates);
}

async function poll() {
  try {
    const response = await fetch("/api/kpis", {credentials: "same-origin", cache: "no-store"});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    data = await response.json();
    clockOffsetMs = data.now_ms - Date.now();
    lastOkMs = Date.now();
    const status = document.getElementById("status");
    status.classList.remove("stale");
    status.textContent = `${data.ready ? "live" : "rebuilding from Kafka"}, updated ${new Date(data.now_ms).toLocaleTimeString()}`;
    render();
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = `cannot load /api/kpis: ${error.message}`;
    status.classList.add("stale");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

setInterval(tick, 1000);
poll();
