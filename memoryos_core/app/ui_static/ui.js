// The memory inspector's page: reads the JSON API with the token kept in this tab's sessionStorage.
// Stored text is hostile: every value reaches the page as textContent or an attribute, never as markup.
"use strict";

const PARTS = ["lexical", "dense", "session", "neighbours", "date", "late"];
const COLORS = { lexical: "#2563eb", dense: "#16a34a", session: "#9333ea", neighbours: "#f59e0b", date: "#0891b2", late: "#db2777" };
const SVG = "http://www.w3.org/2000/svg";
const state = { token: null, user: null, admin: false, pageId: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function status(message, ok) {
  $("status").textContent = message || "";
  $("status").className = ok ? "ok" : "";
}

async function api(path, options) {
  const init = Object.assign({ method: "GET" }, options || {});
  init.headers = { Authorization: "Bearer " + state.token };
  if (init.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(init.body);
  }
  const response = await fetch(path, init);
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  if (response.status === 401) {
    showLogin();
    throw new Error("The token was not accepted: paste a valid one.");
  }
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

const userPath = (rest) => "/api/users/" + encodeURIComponent(state.user) + rest;
const fixed = (value, digits) => Number(value).toFixed(digits === undefined ? 2 : digits);

function pageLink(pageId) {
  const link = el("a", { href: "#", class: "page-link", "data-page": pageId }, pageId);
  link.addEventListener("click", (event) => { event.preventDefault(); openPage(pageId); });
  return link;
}

function confirmThen(message, action) {
  $("confirm-text").textContent = message;
  const dialog = $("confirm-dialog");
  const done = async (yes) => {
    $("confirm-yes").onclick = $("confirm-no").onclick = null;
    dialog.close();
    if (!yes) return;
    try { await action(); } catch (error) { status(error.message); }
  };
  $("confirm-yes").onclick = () => done(true);
  $("confirm-no").onclick = () => done(false);
  dialog.showModal();
}

// --- login ------------------------------------------------------------------------------------
function showLogin(message) {
  sessionStorage.removeItem("memoryos-token");
  state.token = null;
  $("main").hidden = true;
  $("login").hidden = false;
  status(message || "");
}

async function start(token) {
  state.token = token;
  sessionStorage.setItem("memoryos-token", token);
  const session = await api("/api/session");
  state.admin = session.admin;
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  const users = (await api("/api/users")).users;
  renderUsers(users);
  const wanted = new URLSearchParams(location.hash.slice(1)).get("user");
  const first = users.find((u) => u.user_id === wanted) || users[0];
  if (first) await selectUser(first.user_id);
  else status("This store has no users yet.", true);
}

function renderUsers(users) {
  $("users-view").hidden = !state.admin;
  $("user-picker").hidden = users.length < 2;
  const body = $("users").tBodies[0];
  body.replaceChildren();
  $("user-select").replaceChildren();
  for (const user of users) {
    const link = el("a", { href: "#", "data-user": user.user_id }, user.user_id);
    link.addEventListener("click", (event) => { event.preventDefault(); selectUser(user.user_id); });
    body.append(el("tr", {}, el("td", {}, link), el("td", {}, user.pages)));
    $("user-select").append(el("option", { value: user.user_id }, user.user_id));
  }
}

async function selectUser(user) {
  state.user = user;
  $("user-select").value = user;
  $("current-user").textContent = user;
  history.replaceState(null, "", "#user=" + encodeURIComponent(user));
  $("results").replaceChildren();
  await refresh();
}

async function refresh() {
  try {
    const [overview, segments, profile] = await Promise.all([
      api(userPath("/overview")), api(userPath("/segments")), api(userPath("/profile")),
    ]);
    renderTiers(overview);
    renderSegments(segments);
    renderProfile(profile);
  } catch (error) { status(error.message); }
}

// --- views ------------------------------------------------------------------------------------
function renderTiers(overview) {
  const s = overview.stats;
  const tiles = [
    ["short-term pages", s.short_term_pages], ["pending pages", s.pending_pages],
    ["mid-term pages", s.mid_term_pages], ["archived pages", s.archived_pages],
    ["segments", s.segments], ["hot segments", s.hot_segments], ["profile traits", s.profile_traits],
    ["user knowledge", s.user_knowledge], ["assistant knowledge", s.assistant_knowledge],
    ["LLM calls", s.cost.llm_calls], ["LLM tokens", s.cost.prompt_tokens + s.cost.completion_tokens],
    ["skipped LLM steps", s.skipped_llm_steps],
  ];
  $("tiers").replaceChildren(...tiles.map(([name, value]) =>
    el("div", { class: "tile", "data-tile": name }, el("b", {}, value), el("span", {}, name))));
  $("recent").replaceChildren(...overview.recent_pages.map((page) =>
    el("li", {}, pageLink(page.id), el("span", { class: "text" }, page.text))));
}

function renderSegments(data) {
  const segments = data.segments;
  const body = $("segments").tBodies[0];
  body.replaceChildren();
  for (const seg of segments) {
    const heat = el("td", { class: "heat" }, fixed(seg.heat));
    if (seg.is_hot) heat.append(" ", el("span", { class: "badge hot" }, "hot"));
    const more = seg.page_ids.length > 3 ? ` +${seg.page_ids.length - 3} more` : "";
    const pages = el("td", { class: "pages" }, el("b", {}, seg.page_ids.length), " ",
      ...seg.page_ids.slice(0, 3).map(pageLink), more);
    body.append(el("tr", { class: seg.is_hot ? "segment hot" : "segment", "data-segment": seg.id },
      heat, el("td", {}, el("div", { class: "summary" }, seg.summary)), el("td", {}, seg.keywords.join(", ")), pages));
  }
  $("heat-chart").replaceChildren(heatChart(segments, data.heat_threshold));
}

function heatChart(segments, threshold) {
  // Ranked bars, hottest first; the dashed line is the heat threshold of promotion.
  const shown = segments.slice(0, 20);
  const row = 18, left = 190, width = 720, height = Math.max(1, shown.length) * row + 24;
  const top = Math.max(threshold, ...shown.map((s) => s.heat), 1e-9);
  const scale = (value) => (Math.max(0, value) / top) * (width - left - 50);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "heat by segment" });
  shown.forEach((seg, i) => {
    const y = i * row + 4;
    const label = seg.keywords.slice(0, 3).join(", ") || seg.id;
    chart.append(svg("text", { x: left - 6, y: y + 12, "text-anchor": "end" }, label.slice(0, 30)));
    const bar = svg("rect", { x: left, y, width: Math.max(1, scale(seg.heat)), height: row - 5,
      fill: seg.is_hot ? "#c2410c" : "#2563eb", class: seg.is_hot ? "bar hot" : "bar" });
    bar.append(svg("title", {}, `${seg.id}: heat ${fixed(seg.heat)}${seg.is_hot ? " (hot)" : ""}`));
    chart.append(bar, svg("text", { x: left + scale(seg.heat) + 4, y: y + 12 }, fixed(seg.heat)));
  });
  const x = left + scale(threshold);
  chart.append(svg("line", { x1: x, x2: x, y1: 0, y2: height - 16, stroke: "#c2410c", "stroke-dasharray": "4 3" }),
    svg("text", { x, y: height - 4, "text-anchor": "middle" }, `threshold ${fixed(threshold, 1)}`));
  return chart;
}

function deleteButton(label, message, path) {
  const button = el("button", { type: "button", class: "small danger" }, label);
  button.addEventListener("click", () => confirmThen(message, async () => {
    await api(userPath(path), { method: "DELETE" });
    status("Deleted.", true);
    await refresh();
  }));
  return button;
}

function renderProfile(profile) {
  $("traits").replaceChildren(...profile.traits.map((trait) =>
    el("li", { class: "trait", "data-trait": trait.name }, el("b", {}, trait.name + ": "),
      el("span", { class: "text" }, trait.value), " ", ...trait.page_ids.map(pageLink),
      deleteButton("delete", `Delete the trait "${trait.name}"? Its pages stay.`,
        "/traits/" + encodeURIComponent(trait.name)))));
  for (const kind of ["user", "assistant"]) {
    $(kind + "-knowledge").replaceChildren(...profile[kind + "_knowledge"].map((item) =>
      el("li", { class: "knowledge", "data-knowledge": item.id }, el("span", { class: "text" }, item.text),
        " ", ...item.page_ids.map(pageLink),
        deleteButton("delete", `Delete this ${kind} knowledge? Its pages stay.`,
          "/knowledge/" + encodeURIComponent(item.id)))));
  }
}

// --- search -----------------------------------------------------------------------------------
function partsBar(parts) {
  // One bar per part from a zero line: right for what raised the score, left for what lowered it.
  const width = 300, zero = 150, unit = 22, chart = svg("svg", { viewBox: `0 0 ${width} 14`, width, height: 14 });
  let plus = zero, minus = zero;
  for (const name of PARTS) {
    const value = parts[name] || 0, size = Math.min(Math.abs(value) * unit, zero);
    const x = value >= 0 ? plus : minus - size;
    if (value >= 0) plus += size; else minus -= size;
    const rect = svg("rect", { x, y: 2, width: size, height: 10, fill: COLORS[name] });
    rect.append(svg("title", {}, `${name} ${fixed(value)}`));
    chart.append(rect);
  }
  chart.append(svg("line", { x1: zero, x2: zero, y1: 0, y2: 14, stroke: "#111827" }));
  return chart;
}

function renderResults(data) {
  // The ranked units and the short-term pages (which come with every recall), best score first.
  const units = [...data.units, ...data.short_term].sort((a, b) => b.score - a.score);
  if (!units.length) { $("results").replaceChildren(el("li", {}, "Nothing recalled.")); return; }
  $("results").replaceChildren(...units.map((unit, rank) => {
    const parts = unit.score_parts || {};
    const breakdown = el("div", { class: "parts" }, partsBar(parts),
      ...PARTS.filter((name) => name in parts).map((name) =>
        el("span", { "data-part": name }, `${name} ${fixed(parts[name])}`)));
    const provenance = el("div", { class: "muted" }, "from ", ...unit.page_ids.map(pageLink),
      unit.source_ids.length ? "sources " + unit.source_ids.join(", ") : "",
      unit.segment_id ? " segment " + unit.segment_id : "");
    return el("li", { class: "unit", "data-unit": unit.id, "data-tier": unit.tier },
      el("span", { class: "badge" }, unit.tier), ` #${rank + 1} score ${fixed(unit.score)} `,
      unit.tier === "short_term" ? el("span", { class: "muted" }, "(recent: comes with every recall)") : "",
      el("div", { class: "text" }, unit.text), breakdown, provenance);
  }));
}

async function search(event) {
  event.preventDefault();
  const query = $("search-input").value;
  const topK = Number($("search-k").value) || 7;
  try {
    renderResults(await api(userPath("/search"), { method: "POST", body: { query, top_k: topK } }));
    status("");
  } catch (error) { status(error.message); }
}

// --- one page: view, edit, delete ---------------------------------------------------------------
async function openPage(pageId) {
  try {
    const pages = (await api(userPath("/pages?ids=" + encodeURIComponent(pageId)))).pages;
    if (!pages.length) { status(`Page ${pageId} is not in this user's memory (deleted?).`); return; }
    const page = pages[0];
    state.pageId = page.id;
    $("page-id").textContent = page.id;
    $("page-meta").textContent = [page.tier, page.timestamp, page.segment_id && "segment " + page.segment_id,
      page.source_ids.length && "sources " + page.source_ids.join(", ")].filter(Boolean).join(" · ");
    $("page-user").value = page.user_input;
    $("page-assistant").value = page.agent_response;
    editing(false);
    if (!$("page-dialog").open) $("page-dialog").showModal();
  } catch (error) { status(error.message); }
}

function editing(on) {
  $("page-user").readOnly = $("page-assistant").readOnly = !on;
  $("page-save").hidden = !on;
  $("page-edit").hidden = on;
}

function savePage() {
  const pageId = state.pageId;
  confirmThen(`Save the edited page ${pageId}? It is embedded again; summaries made from it stay.`, async () => {
    const body = { user_input: $("page-user").value, agent_response: $("page-assistant").value };
    await api(userPath("/pages/" + encodeURIComponent(pageId)), { method: "PATCH", body });
    status(`Page ${pageId} saved.`, true);
    await openPage(pageId);
    await refresh();
  });
}

function deletePage() {
  const pageId = state.pageId;
  confirmThen(`Delete page ${pageId}? Its segment is rebuilt without it, and knowledge and traits citing it go too.`,
    async () => {
      const result = await api(userPath("/pages/" + encodeURIComponent(pageId)), { method: "DELETE" });
      $("page-dialog").close();
      status(`Deleted ${result.deleted_pages} page: ${pageId}.`, true);
      $("results").querySelectorAll(`li[data-unit="${CSS.escape(pageId)}"]`).forEach((li) => li.remove());
      await refresh();
    });
}

// --- start ------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("token-input").value.trim()).catch((error) => status(error.message));
  });
  $("logout").addEventListener("click", () => showLogin("Token forgotten."));
  $("user-select").addEventListener("change", () => selectUser($("user-select").value));
  $("search-form").addEventListener("submit", search);
  $("page-edit").addEventListener("click", () => editing(true));
  $("page-save").addEventListener("click", savePage);
  $("page-delete").addEventListener("click", deletePage);
  $("page-close").addEventListener("click", () => $("page-dialog").close());
  $("legend").replaceChildren(...PARTS.map((name) => {
    const swatch = svg("svg", { width: 12, height: 12, class: "swatch" });
    swatch.append(svg("rect", { width: 12, height: 12, fill: COLORS[name] }));
    return el("span", {}, swatch, name);
  }));
  // A token in the address (#token=...) is taken once, then removed from the address bar and history.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname);
  const token = fromHash || sessionStorage.getItem("memoryos-token");
  if (token) start(token).catch((error) => status(error.message));
  else showLogin();
});
