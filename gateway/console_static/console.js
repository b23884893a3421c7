// Switchboard's web console: chat through the pipeline (SSE), and read-only admin views.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: localStorage.getItem("switchboard.key") || "", evals: null };

function conversationId() {
  let id = localStorage.getItem("switchboard.conversation");
  if (!id) {
    id = (crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2) + Date.now().toString(36));
    localStorage.setItem("switchboard.conversation", id);
  }
  return id;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { "content-type": "application/json", ...(options.headers || {}) };
  if (state.key) headers.authorization = "Bearer " + state.key;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("key-form").hidden = false;
    throw new Unauthorized("this server needs its API key");
  }
  return response;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
const mib = (bytes) => (bytes ? (bytes / 2 ** 20).toFixed(1) + " MiB" : "–");

// --- chat -------------------------------------------------------------------------------

function addMessage(kind, text) {
  const item = el("li", { class: kind });
  const body = el("span", { class: "text" }, text);
  item.append(body);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, body };
}

async function send(text) {
  addMessage("user", text);
  const { item, body } = addMessage("bot", "");
  item.classList.add("streaming");
  $("send").disabled = true;
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      body: JSON.stringify({
        model: $("department").value, stream: true, conversation_id: conversationId(),
        messages: [{ role: "user", content: text }],
      }),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      throw new Error(error.error ? error.error.message : response.statusText);
    }
    await readStream(response, item, body);
  } catch (error) {
    item.className = "error";
    body.textContent = error.message;
  } finally {
    item.classList.remove("streaming");
    $("send").disabled = false;
  }
}

async function readStream(response, item, body) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const choice = chunk.choices && chunk.choices[0];
        if (choice && choice.delta && choice.delta.content) body.textContent += choice.delta.content;
        if (chunk.switchboard) showRoute(item, chunk.switchboard);
      }
    }
  }
}

function showRoute(item, info) {
  const meta = el("span", { class: "meta" },
    `${info.department} · confidence ${info.confidence.toFixed(2)} · ${info.reason} · ${Math.round(info.latency_ms)} ms`);
  item.prepend(meta);
  if (info.sources && info.sources.length) {
    const list = el("ul", { class: "sources" });
    for (const source of info.sources) list.append(el("li", {}, `[${source.id}] ${source.text}`));
    item.append(list);
  }
}

// --- admin views ------------------------------------------------------------------------

function versionsOf(department) {
  const all = [...department.previous, ...(department.live ? [department.live] : []), ...department.candidates];
  return all.filter((v) => v && v.created);
}

function describe(version) {
  const name = version.path.split("/").pop();
  return `${version.method} ${name} · ${version.created.replace("T", " ")} · ${pct(version.accuracy)}`;
}

function renderModels(view) {
  const rows = $("models-rows");
  rows.replaceChildren();
  for (const d of view.departments) {
    const live = d.live ? describe(d.live) : "base model";
    const accuracy = d.accuracy ? `${pct(d.accuracy.base)} → ${pct(d.accuracy.live)}` : "no eval report yet";
    const versions = el("td", {});
    for (const [kind, list] of [["previous", d.previous], ["candidate", d.candidates]]) {
      for (const v of list) versions.append(el("div", {}, `${kind}: ${describe(v)}`));
    }
    if (!versions.childNodes.length) versions.append("–");
    const name = el("td", {}, el("strong", {}, d.name), ` (${d.id})`);
    if (d.note) name.append(el("div", { class: "note" }, d.note));
    rows.append(el("tr", { "data-department": d.id }, name, el("td", {}, d.serving), el("td", {}, mib(d.memory_bytes)),
      el("td", {}, live), el("td", {}, accuracy), versions));
  }
  renderChart(view.departments);
}

function renderChart(departments) {
  const box = $("history-chart");
  const series = departments.map((d) => ({ id: d.id, points: versionsOf(d).filter((v) => v.accuracy !== null) }))
    .filter((s) => s.points.length);
  if (!series.length) {
    box.replaceChildren(el("p", { class: "hint" }, "No trained versions yet: `switchboard train <department>` adds them."));
    return;
  }
  const times = series.flatMap((s) => s.points.map((p) => Date.parse(p.created)));
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const W = 640, H = 200, pad = 30;
  const x = (t) => pad + (t1 === t0 ? (W - 2 * pad) / 2 : ((t - t0) / (t1 - t0)) * (W - 2 * pad));
  const y = (a) => H - pad - a * (H - 2 * pad);
  const colors = ["#2457c5", "#16794c", "#b42318", "#9a6700", "#6941c6", "#0e7090"];
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    svg.append(node);
  };
  for (const a of [0, 0.5, 1]) {
    add("line", { x1: pad, x2: W - pad, y1: y(a), y2: y(a), stroke: "#d9dde5" });
    add("text", { x: 2, y: y(a) + 4 }, `${a * 100}%`);
  }
  series.forEach((s, i) => {
    const color = colors[i % colors.length];
    const pts = s.points.map((p) => `${x(Date.parse(p.created))},${y(p.accuracy)}`).join(" ");
    add("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2 });
    for (const p of s.points) add("circle", { cx: x(Date.parse(p.created)), cy: y(p.accuracy), r: 3, fill: color });
    add("text", { x: W - pad + 4 - 40, y: 14 + 13 * i, fill: color }, s.id);
  });
  box.replaceChildren(svg);
}

async function loadEvals() {
  const department = $("eval-department").value;
  const rows = $("eval-rows");
  rows.replaceChildren();
  const response = await api(`/console/api/evals/${encodeURIComponent(department)}`);
  const view = await response.json();
  if (!response.ok) {
    $("eval-summary").textContent = view.error.message;
    $("eval-model").replaceChildren();
    return;
  }
  state.evals = view;
  const select = $("eval-model");
  const chosen = select.value;
  select.replaceChildren(...view.evaluations.map((e, i) => el("option", { value: i }, `${e.title} (${pct(e.accuracy)})`)));
  if (chosen && chosen < view.evaluations.length) select.value = chosen;
  renderEval();
}

function renderEval() {
  const evaluation = state.evals && state.evals.evaluations[$("eval-model").value || 0];
  const rows = $("eval-rows");
  rows.replaceChildren();
  if (!evaluation) return;
  const answers = evaluation.answers.filter((a) => !$("misses").checked || !a.correct);
  const misses = evaluation.answers.filter((a) => !a.correct).length;
  $("eval-summary").textContent =
    `${state.evals.report}: ${evaluation.answers.length} questions, ${misses} missed, accuracy ${pct(evaluation.accuracy)}`;
  for (const a of answers) {
    rows.append(el("tr", {}, el("td", { class: a.correct ? "ok" : "bad" }, a.correct ? "✓" : "✗"),
      el("td", {}, a.question), el("td", {}, (a.expected || []).join(" | ")), el("td", {}, a.answer)));
  }
}

async function loadStatus() {
  const view = await (await api("/console/api/status")).json();
  const list = $("status-list");
  list.replaceChildren();
  const item = (term, value) => list.append(el("dt", {}, term), el("dd", {}, value));
  item("models", view.problem ? `failed: ${view.problem}` : view.ready ? `ready (${view.backend})` : "loading");
  const channels = Object.entries(view.channels);
  item("channels", channels.length ? channels.map(([k, v]) => `${k}: ${v}`).join(", ") : "none configured (the API and this page only)");
  item("queue", view.queue === null ? "in process (no Redis)" : view.queue.error ||
    `${view.queue.waiting} waiting, ${view.queue.in_flight} in flight, ${view.queue.dead_letters} dead letters`);
  const rows = $("metrics-rows");
  rows.replaceChildren();
  for (const [department, m] of Object.entries(view.departments)) {
    const total = Object.values(m.requests).reduce((a, b) => a + b, 0);
    rows.append(el("tr", {}, el("td", {}, department), el("td", {}, total), el("td", {}, m.requests.error || 0),
      el("td", {}, m.mean_reply_seconds ?? "–"), el("td", {}, m.tokens)));
  }
}

// --- wiring -----------------------------------------------------------------------------

function show(view) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.view === view);
  for (const section of document.querySelectorAll("main .view")) section.hidden = section.id !== view;
  const load = { models: loadModels, evals: loadEvals, status: loadStatus }[view];
  if (load) load().catch(report);
}

async function loadModels() {
  const response = await api("/console/api/models");
  if (!response.ok) return null;
  const view = await response.json();
  renderModels(view);
  return view;
}

function report(error) {
  if (!(error instanceof Unauthorized)) console.error(error);
}

async function start() {
  const response = await api("/v1/models");
  const models = (await response.json()).data.map((m) => m.id).filter((id) => id !== "auto");
  $("department").replaceChildren(el("option", { value: "auto" }, "auto (the router picks)"),
    ...models.map((id) => el("option", { value: id }, id)));
  const admin = await loadModels();
  for (const tab of document.querySelectorAll("#tabs .admin")) tab.hidden = !admin;
  if (admin) {
    $("eval-department").replaceChildren(...admin.departments.map((d) => el("option", { value: d.id }, d.name)));
  }
  $("key-form").hidden = true;
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = state.key;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    localStorage.setItem("switchboard.key", state.key);
    start().catch(report);
  });
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => show(button.dataset.view));
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("text").value = "";
    send(text);
  });
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });
  $("reset").addEventListener("click", async () => {
    await send("/reset");
    $("messages").replaceChildren();
  });
  $("eval-department").addEventListener("change", () => loadEvals().catch(report));
  $("eval-model").addEventListener("change", renderEval);
  $("misses").addEventListener("change", renderEval);
  start().catch(report);
});
