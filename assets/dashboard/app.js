// llmwatch dashboard core: DOM helpers, URL state, API client, formatting, shared widgets, and the
// shell (router, toolbar, theme, auto-refresh). Pages live in pages/*.js and only use these exports.

/** Shared runtime context; `tz` is the server's IANA time zone, set at boot. */
export const ctx = { tz: "UTC" };

const PAGES = [
  { path: "/", name: "overview", label: "Overview" },
  { path: "/cost", name: "cost", label: "Cost" },
  { path: "/latency", name: "latency", label: "Latency" },
  { path: "/quality", name: "quality", label: "Quality" },
  { path: "/drift", name: "drift", label: "Drift" },
  { path: "/alerts", name: "alerts", label: "Alerts" },
  { path: "/requests", name: "requests", label: "Requests" },
];
const FILTERS = ["model", "feature", "user", "release"];
const KEPT = ["range", "from", "to", ...FILTERS];
const RANGES = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "14d": 14 * 86400e3, "30d": 30 * 86400e3 };
const RANGE_LABELS = { "1h": "last hour", "6h": "last 6 hours", "24h": "last 24 hours", "7d": "last 7 days", "14d": "last 14 days", "30d": "last 30 days" };
const REFRESH = { off: 0, "10s": 10e3, "30s": 30e3, "1m": 60e3, "5m": 300e3 };
const DASH = "–";

// ---------------------------------------------------------------------------------------------
// DOM

/** Builds an element. attrs: class, href, data-*, {on: {event: fn}}, anything else verbatim. */
export function el(tag, attrs, ...children) {
  const svg = SVG_TAGS.has(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k.startsWith("on:")) node.addEventListener(k.slice(3), v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}
const SVG_TAGS = new Set(["svg", "g", "path", "line", "rect", "circle", "text", "polyline", "title", "tspan"]);

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : String(c));
  }
}

// ---------------------------------------------------------------------------------------------
// URL state

export function params() {
  return new URLSearchParams(location.search);
}

export function param(name, fallback = null) {
  const v = params().get(name);
  return v === null || v === "" ? fallback : v;
}

function withChanges(search, changes) {
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === "") search.delete(k);
    else search.set(k, v);
  }
  const q = search.toString();
  return q ? `?${q}` : "";
}

/** Merges `changes` into the query string (null or "" deletes) and re-renders. */
export function setParams(changes, { replace = false } = {}) {
  const url = location.pathname + withChanges(params(), changes);
  history[replace ? "replaceState" : "pushState"](null, "", url);
  render({ keepScroll: true });
}

export function navigate(target) {
  const url = new URL(target, location.href);
  if (url.origin !== location.origin) {
    location.href = url.href;
    return;
  }
  history.pushState(null, "", url.pathname + url.search);
  render({ keepScroll: false });
}

/** A link to `path` keeping the range and filters, with `changes` applied. */
export function href(path, changes = {}) {
  const cur = params();
  const kept = new URLSearchParams();
  for (const k of KEPT) if (cur.get(k)) kept.set(k, cur.get(k));
  return path + withChanges(kept, changes);
}

export function filters() {
  const out = {};
  for (const k of FILTERS) {
    const v = param(k);
    if (v) out[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Time range

// "Now" is frozen for one render so every fetch of a page asks for the same range.
let renderNow = Date.now();

function parseTime(v) {
  if (v === null || v === "") return NaN;
  return /^\d+$/.test(v) ? Number(v) : Date.parse(v);
}

function stepMs(step) {
  const n = parseInt(step, 10);
  return n * { m: 60e3, h: 3600e3, d: 86400e3 }[step.slice(-1)];
}

function stepFor(spanMs) {
  if (spanMs <= 2 * 3600e3) return "1m";
  if (spanMs <= 12 * 3600e3) return "5m";
  if (spanMs <= 2 * 86400e3) return "15m";
  if (spanMs <= 8 * 86400e3) return "1h";
  return "1d";
}

/**
 * The selected range: {from, to} (unix-ms strings for the API), fromMs, toMs, label, step (a
 * timeseries step giving <= ~200 points), stepMs, stepHours (a whole-hours step for score series).
 * Relative ranges end now and start on a step boundary (a local midnight for "1d"), so the
 * first bucket of every series is a whole one.
 */
export function range() {
  const from = parseTime(param("from", ""));
  const to = parseTime(param("to", ""));
  const explicit = Number.isFinite(from) && Number.isFinite(to) && to > from;
  let fromMs, toMs, label;
  if (explicit) {
    fromMs = from;
    toMs = to;
    label = `${fmt.datetime(from).slice(0, 16)} – ${fmt.datetime(to).slice(0, 16)}`;
  } else {
    const key = RANGES[param("range")] ? param("range") : "24h";
    toMs = renderNow;
    fromMs = toMs - RANGES[key];
    label = RANGE_LABELS[key];
  }
  const span = toMs - fromMs;
  const step = stepFor(span);
  const ms = stepMs(step);
  if (!explicit) {
    fromMs = step === "1d" ? startOfDay(fromMs) : Math.floor(fromMs / ms) * ms;
  }
  const stepHours = span <= 2 * 86400e3 ? "1h" : span <= 8 * 86400e3 ? "6h" : "1d";
  return { from: String(fromMs), to: String(toMs), fromMs, toMs, label, step, stepMs: ms, stepHours };
}

// ---------------------------------------------------------------------------------------------
// Time zone arithmetic (charts need local boundaries in ctx.tz, not in the browser's zone)

let offsetFormatter = null;

/** The offset of ctx.tz from UTC at instant `ms`, in ms. */
export function tzOffset(ms) {
  if (!offsetFormatter || offsetFormatter.resolvedOptions().timeZone !== ctx.tz) {
    offsetFormatter = new Intl.DateTimeFormat("en-US", {
      timeZone: ctx.tz, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric",
      hour: "numeric", minute: "numeric", second: "numeric",
    });
  }
  const p = Object.fromEntries(offsetFormatter.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return asUtc - (ms - (ms % 1000));
}

/** The local midnight (in ctx.tz) at or before `ms`. */
function startOfDay(ms) {
  const local = ms + tzOffset(ms);
  const midnight = local - (((local % 86400e3) + 86400e3) % 86400e3);
  return midnight - tzOffset(midnight);
}

// ---------------------------------------------------------------------------------------------
// API

function qs(query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function request(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw Object.assign(new Error(`network error (${e.message})`), { path: path.split("?")[0], status: 0 });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below when the status is an error, else returned as null.
  }
  if (!res.ok) {
    const e = data && data.error;
    const msg = e ? `${e.message}${e.field ? ` (field: ${e.field})` : ""}` : `HTTP ${res.status}`;
    throw Object.assign(new Error(msg), { path: path.split("?")[0], status: res.status, code: e && e.code, field: e && e.field });
  }
  return data;
}

/**
 * GET `path` with `query` (empty values skipped). On a non-2xx answer throws an Error whose
 * message is the API's message (and field), with `path`, `status`, `code` and `field` attached.
 */
export function api(path, query = {}) {
  return request("GET", path + qs(query));
}

export function apiSend(method, path, body) {
  return request(method, path, body);
}

// ---------------------------------------------------------------------------------------------
// Formatting; every formatter returns "–" for null, undefined and NaN.

const bad = (x) => x === null || x === undefined || (typeof x === "number" && Number.isNaN(x));
const nf = (opts) => new Intl.NumberFormat("en-US", opts);
const dtFormatters = new Map();

function local(ms, opts) {
  const key = ctx.tz + JSON.stringify(opts);
  if (!dtFormatters.has(key)) dtFormatters.set(key, new Intl.DateTimeFormat("en-GB", { timeZone: ctx.tz, hourCycle: "h23", ...opts }));
  const t = typeof ms === "string" ? Date.parse(ms) : ms;
  return Number.isFinite(t) ? dtFormatters.get(key).formatToParts(new Date(t)) : null;
}

function partsMap(parts) {
  return Object.fromEntries(parts.map((p) => [p.type, p.value]));
}

export const fmt = {
  /** $1,234.56; below $1 keeps two significant digits ($0.0034). */
  usd(x) {
    if (bad(x)) return DASH;
    const a = Math.abs(x);
    const digits = a === 0 || a >= 1 ? 2 : Math.min(8, Math.max(2, 1 - Math.floor(Math.log10(a))));
    return (x < 0 ? "-$" : "$") + nf({ minimumFractionDigits: 2, maximumFractionDigits: digits }).format(a);
  },
  num(x) {
    if (bad(x)) return DASH;
    const a = Math.abs(x);
    if (a >= 1000) return nf({ maximumFractionDigits: 0 }).format(x);
    return nf({ maximumSignificantDigits: 3 }).format(x);
  },
  int(x) {
    return bad(x) ? DASH : nf({ maximumFractionDigits: 0 }).format(Math.round(x));
  },
  /** "840 ms", "3.2 s", "12 s", "2.5 min". */
  ms(x) {
    if (bad(x)) return DASH;
    const a = Math.abs(x);
    if (a < 10 && a > 0) return `${nf({ maximumFractionDigits: 1 }).format(x)} ms`;
    if (a < 1000) return `${Math.round(x)} ms`;
    if (a < 60e3) return `${nf({ maximumFractionDigits: a < 10e3 ? 1 : 0 }).format(x / 1000)} s`;
    return `${nf({ maximumFractionDigits: 1 }).format(x / 60e3)} min`;
  },
  /** A fraction as a percentage: 0.1234 -> "12.3%". */
  pct(x) {
    if (bad(x)) return DASH;
    const p = x * 100;
    const a = Math.abs(p);
    const digits = a === 0 || a >= 0.1 ? 1 : 2;
    return `${nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(p)}%`;
  },
  score(x) {
    return bad(x) ? DASH : x.toFixed(3);
  },
  /** HH:MM:SS in ctx.tz (accepts unix ms or an RFC 3339 string). */
  time(ms) {
    if (bad(ms)) return DASH;
    const p = local(ms, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return p ? p.map((x) => x.value).join("") : DASH;
  },
  /** YYYY-MM-DD HH:MM:SS in ctx.tz (accepts unix ms or an RFC 3339 string). */
  datetime(ms) {
    if (bad(ms)) return DASH;
    const p = local(ms, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    if (!p) return DASH;
    const m = partsMap(p);
    return `${m.year}-${m.month}-${m.day} ${m.hour}:${m.minute}:${m.second}`;
  },
  /** "5 min ago", "3 h ago", "in 2 d". */
  ago(ms) {
    if (bad(ms)) return DASH;
    const t = typeof ms === "string" ? Date.parse(ms) : ms;
    if (!Number.isFinite(t)) return DASH;
    const d = Date.now() - t;
    const a = Math.abs(d);
    const s = a < 60e3 ? `${Math.round(a / 1e3)} s` : a < 3600e3 ? `${Math.round(a / 60e3)} min` : a < 86400e3 ? `${Math.round(a / 3600e3)} h` : `${Math.round(a / 86400e3)} d`;
    return d >= 0 ? `${s} ago` : `in ${s}`;
  },
};

// ---------------------------------------------------------------------------------------------
// Widgets

export function section(title, ...children) {
  return el("section", { class: "section" }, title ? el("h2", {}, title) : null, ...children);
}

/** A summary tile; state: ok | warning | critical | none; a link when `href`. `extra`: a node (sparkline). */
export function tile({ title, value, sub, href: link, state = "none", extra }) {
  const body = [el("div", { class: "tile-title" }, title), el("div", { class: "tile-value" }, value ?? DASH), sub ? el("div", { class: "tile-sub" }, sub) : null, extra || null];
  const attrs = { class: `tile state-${state || "none"}`, "data-state": state || "none" };
  return link ? el("a", { ...attrs, href: link }, body) : el("div", attrs, body);
}

/**
 * A table. columns: [{key, label, fmt?(value, row), align?: "right", render?(row) -> node|string}].
 * opts: {empty: text when no rows, highlight?(row) -> bool (row drawn emphasised)}.
 */
export function table(columns, rows, { empty = "no data in this range", highlight } = {}) {
  if (!rows || rows.length === 0) return emptyState(empty);
  const cell = (tag, c, content) => el(tag, { class: c.align === "right" ? "num" : null }, content);
  return el("div", { class: "table-wrap" },
    el("table", { class: "table" },
      el("thead", {}, el("tr", {}, columns.map((c) => cell("th", c, c.label)))),
      el("tbody", {}, rows.map((r) => el("tr", { class: highlight && highlight(r) ? "highlight" : null },
        columns.map((c) => cell("td", c, c.render ? c.render(r) : c.fmt ? c.fmt(r[c.key], r) : r[c.key] ?? DASH)))))));
}

export function badge(text, state = "none") {
  return el("span", { class: `badge state-${state}` }, text);
}

export function errorBox(err) {
  const where = err && err.path ? ` ${err.path}` : "";
  return el("div", { class: "error-box", role: "alert" }, el("strong", {}, `Could not load${where}: `), (err && err.message) || String(err));
}

export function emptyState(text = "no data in this range") {
  return el("div", { class: "empty-state" }, text);
}

// ---------------------------------------------------------------------------------------------
// Shell: router, toolbar, theme, refresh

const $ = (sel) => document.querySelector(sel);
let renderSeq = 0;
let rendering = false;
let refreshTimer = null;

function currentPage() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  return PAGES.find((p) => p.path === path) || PAGES[0];
}

/** Mirrors the URL into the toolbar controls and the nav. */
function syncShell(page) {
  for (const a of document.querySelectorAll("#nav a")) {
    a.href = href(a.dataset.path);
    if (a.dataset.path === page.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const form = $("#toolbar");
  const explicit = param("from") && param("to");
  form.elements.range.value = explicit ? "custom" : RANGES[param("range")] ? param("range") : "24h";
  const custom = form.elements.range.querySelector('option[value="custom"]');
  custom.hidden = !explicit;
  custom.textContent = explicit ? range().label : "custom";
  // A field being typed in keeps its text through an auto-refresh.
  for (const k of FILTERS) if (form.elements[k] !== document.activeElement) form.elements[k].value = param(k, "");
  form.elements.refresh.value = REFRESH[param("refresh")] !== undefined ? param("refresh") : "30s";
  $("#clear-filters").hidden = Object.keys(filters()).length === 0;
}

/**
 * Renders the current page into a detached element and swaps it in when every fetch has
 * settled, so auto-refresh neither flickers nor loses the scroll position. A newer render
 * supersedes an older one still in flight.
 */
async function render({ keepScroll = true } = {}) {
  const seq = ++renderSeq;
  rendering = true;
  renderNow = Date.now();
  const page = currentPage();
  document.body.dataset.ready = "false";
  document.body.dataset.page = page.name;
  syncShell(page);
  const root = el("div", { class: "page", "data-page": page.name });
  let title = page.label;
  try {
    const mod = await import(`./pages/${page.name}.js`);
    title = mod.default.title || title;
    await mod.default.render(root);
  } catch (e) {
    console.error(e);
    root.append(errorBox(e));
  }
  if (seq !== renderSeq) return;
  const main = $("#page");
  main.replaceChildren(root);
  if (!keepScroll) window.scrollTo(0, 0);
  document.title = `${title} · llmwatch`;
  $("#last-updated").textContent = `last updated ${fmt.time(Date.now())}`;
  rendering = false;
  document.body.dataset.ready = "true";
  scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const every = REFRESH[param("refresh", "30s")] ?? REFRESH["30s"];
  if (!every) return;
  refreshTimer = setTimeout(() => {
    // A hidden tab skips the work and tries again next period.
    if (document.hidden || rendering) scheduleRefresh();
    else render({ keepScroll: true });
  }, every);
}

function applyTheme(theme) {
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  $("#theme-toggle").textContent = dark ? "☀ light" : "☾ dark";
  $("#theme-toggle").setAttribute("aria-label", `switch to ${dark ? "light" : "dark"} theme`);
}

function setupShell() {
  const nav = $("#nav");
  nav.replaceChildren(...PAGES.map((p) => el("a", { href: p.path, "data-path": p.path }, p.label)));
  // Same-origin links anywhere (nav, tiles, tables) navigate without a reload.
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[href]");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey || a.target) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/assets/")) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => render({ keepScroll: false }));

  const form = $("#toolbar");
  form.addEventListener("submit", (e) => e.preventDefault());
  form.elements.range.addEventListener("change", (e) => setParams({ range: e.target.value, from: null, to: null }));
  form.elements.refresh.addEventListener("change", (e) => setParams({ refresh: e.target.value === "30s" ? null : e.target.value }, { replace: true }));
  for (const k of FILTERS) {
    // "change" fires on Enter and when the field loses focus after an edit.
    form.elements[k].addEventListener("change", (e) => setParams({ [k]: e.target.value.trim() }));
  }
  $("#clear-filters").addEventListener("click", () => setParams(Object.fromEntries(FILTERS.map((k) => [k, null]))));

  const saved = localStorage.getItem("llmwatch-theme");
  applyTheme(saved);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(localStorage.getItem("llmwatch-theme")));
  $("#theme-toggle").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem("llmwatch-theme", next);
    applyTheme(next);
  });
}

/** Fills the filter datalists with the values seen in the last 30 days (best effort). */
async function loadSuggestions() {
  const to = Date.now();
  const from = to - 30 * 86400e3;
  await Promise.all(FILTERS.map(async (k) => {
    try {
      const r = await api("/api/v1/reports/cost", { group_by: k, from, to });
      const keys = r.groups.map((g) => g.key).filter((x) => x && x !== "(none)").sort();
      $(`#dl-${k}`).replaceChildren(...keys.map((v) => el("option", { value: v })));
    } catch (e) {
      console.warn(`filter suggestions for ${k}:`, e.message);
    }
  }));
}

async function boot() {
  setupShell();
  try {
    const b = await api("/api/v1/budgets");
    if (b && b.timezone) ctx.tz = b.timezone;
  } catch (e) {
    console.error("could not read the server time zone; showing UTC", e);
  }
  $("#tz").textContent = `times in ${ctx.tz}`;
  loadSuggestions();
  render({ keepScroll: false });
}

boot();
