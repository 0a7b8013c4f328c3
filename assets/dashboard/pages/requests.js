// Requests: search the stored requests (newest first, paged by cursor), and one request's
// detail (stage waterfall, tokens, cost, scores, feedback, attributes, captured texts).
import { el, api, params, param, setParams, range, fmt, section, tile, table, badge, errorBox } from "../app.js";
import { waterfall } from "../charts.js";

const PIPELINE = ["preprocessing", "guardrail", "model_inference", "tool_execution", "postprocessing"];
const SEARCH_KEYS = ["request_id", "user", "feature", "model", "release", "status"];
const PAGE_SIZE = 50;

const S = {
  form: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "6px 14px" },
  label: { display: "flex", alignItems: "center", gap: "6px", color: "var(--muted)" },
  nowrap: { whiteSpace: "nowrap" },
  text: { whiteSpace: "pre-wrap", wordBreak: "break-word", margin: "0", padding: "8px 10px", maxHeight: "320px", overflow: "auto", background: "var(--bg)", border: "1px solid var(--border)", borderRadius: "6px", fontFamily: "inherit" },
  facts: { display: "grid", gridTemplateColumns: "max-content 1fr", gap: "3px 14px", margin: "0" },
  dt: { color: "var(--muted)" },
  dd: { margin: "0", minWidth: "0", overflowWrap: "anywhere" },
};

// Forms survive auto-refresh (typing is not wiped) while the URL they were built for is unchanged.
const kept = new Map();
let refocus = null;
function keep(name, key, build) {
  const old = kept.get(name);
  if (old && old.key === key) {
    const active = document.activeElement;
    if (active && old.node.contains(active)) refocus = active;
    return old.node;
  }
  const node = build();
  kept.set(name, { key, node });
  return node;
}

// The current search as a query string, with `changes` applied ("" when empty).
function searchQuery(changes = {}) {
  const p = params();
  for (const [k, v] of Object.entries(changes)) {
    if (v == null || v === "") p.delete(k);
    else p.set(k, v);
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

// A request link keeping the search (id first, so the link reads /requests?id=...).
function requestHref(id) {
  const p = params();
  p.delete("id");
  const rest = p.toString();
  return `/requests?id=${encodeURIComponent(id)}${rest ? `&${rest}` : ""}`;
}

function requestLink(id) {
  return el("a", { class: "request-link", href: requestHref(id) }, id);
}

function statusBadge(row) {
  if (row.status === "ok") return badge("ok", "ok");
  return badge(row.error_type ? `error: ${row.error_type}` : row.status ?? "–", "critical");
}

function facts(pairs) {
  return el("dl", { style: S.facts }, pairs.filter(Boolean).flatMap(([k, v]) => [el("dt", { style: S.dt }, k), el("dd", { style: S.dd }, v ?? "–")]));
}

// ---- search

function searchForm() {
  const field = (name, label, size, placeholder) => {
    const input = el("input", { type: "text", name, size, placeholder, value: param(name, "") });
    if (name !== "request_id") input.setAttribute("list", `dl-${name}`); // the toolbar's suggestions
    return el("label", { style: S.label }, label, input);
  };
  const status = el("select", { name: "status" },
    el("option", { value: "" }, "any"), el("option", { value: "ok" }, "ok"), el("option", { value: "error" }, "error"));
  status.value = param("status", "");
  const form = el("form", { style: S.form, "data-form": "request-search", autocomplete: "off" },
    field("request_id", "request id", "22", "prefix, e.g. demo-42-84"),
    field("user", "user", "12", "any"),
    field("feature", "feature", "12", "any"),
    field("model", "model", "16", "any"),
    el("label", { style: S.label }, "status", status),
    el("button", { type: "submit" }, "Search"),
    Object.keys(searchParams()).length ? el("button", { type: "button", on: { click: () => setParams(Object.fromEntries([...SEARCH_KEYS, "cursor"].map((k) => [k, null]))) } }, "Clear") : null,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const changes = { cursor: null };
    for (const k of ["request_id", "user", "feature", "model", "status"]) changes[k] = form.elements[k].value.trim();
    setParams(changes);
  });
  return form;
}

function searchParams() {
  const out = {};
  for (const k of SEARCH_KEYS) if (param(k)) out[k] = param(k);
  return out;
}

async function searchSection() {
  const r = range();
  const s = searchParams();
  const cursor = param("cursor");
  // A request id prefix searches all time (the API's default then) unless a range was chosen.
  const explicitRange = param("range") || (param("from") && param("to"));
  const allTime = s.request_id && !explicitRange;
  const key = SEARCH_KEYS.map((k) => param(k, "")).join("|");
  const form = keep("search", key, searchForm);
  const scope = allTime ? "all time" : r.label;
  let body;
  try {
    const res = await api("/api/v1/requests", { ...s, from: allTime ? null : r.from, to: allTime ? null : r.to, limit: PAGE_SIZE, cursor });
    const rows = res.requests ?? [];
    const pager = el("div", { class: "row", style: { marginTop: "8px" } },
      cursor ? el("a", { href: `/requests${searchQuery({ cursor: null, id: null })}` }, "⇤ newest") : null,
      res.next_cursor ? el("a", { href: `/requests${searchQuery({ cursor: res.next_cursor, id: null })}`, "data-pager": "older" }, "older →") : el("span", { class: "muted" }, rows.length ? "no older requests" : ""),
    );
    body = [
      el("p", { class: "muted", style: { margin: "8px 0" } },
        `${fmt.int(rows.length)} request${rows.length === 1 ? "" : "s"}${cursor ? " (older page)" : ""}, newest first, ${scope}`),
      table([
        { key: "timestamp_ms", label: "time", render: (x) => el("span", { style: S.nowrap }, fmt.datetime(x.timestamp_ms)) },
        { key: "request_id", label: "request id", render: (x) => requestLink(x.request_id) },
        { key: "model", label: "model" },
        { key: "feature", label: "feature", render: (x) => x.feature ?? el("span", { class: "muted" }, "(none)") },
        { key: "user_id", label: "user", render: (x) => x.user_id ?? el("span", { class: "muted" }, "(none)") },
        { key: "status", label: "status", render: statusBadge },
        { key: "duration_ms", label: "duration", fmt: fmt.ms, align: "right" },
        { key: "tokens", label: "tokens in / out", align: "right", render: (x) => `${fmt.int(x.input_tokens)} / ${fmt.int(x.output_tokens)}` },
        { key: "cost", label: "cost", align: "right", render: (x) => (x.priced === false || x.cost == null ? el("span", { class: "muted" }, "unpriced") : fmt.usd(x.cost)) },
      ], rows, { empty: cursor ? "no older requests" : `no requests match in ${scope}` }),
      pager,
    ];
  } catch (err) {
    console.error(err);
    body = [errorBox(err)];
  }
  return section("Requests", form, body);
}

// ---- detail

// Stages in pipeline order, then the others by name, laid end to end, then the unaccounted time.
function waterfallRows(d) {
  const stages = Object.entries(d.stages ?? {});
  const rank = (name) => (PIPELINE.includes(name) ? PIPELINE.indexOf(name) : PIPELINE.length);
  stages.sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  let start = 0;
  const rows = stages.map(([label, duration]) => {
    const row = { label, start, duration, highlight: label === d.bottleneck_stage };
    start += duration;
    return row;
  });
  if (d.unaccounted_ms != null && d.unaccounted_ms > 0) rows.push({ label: "unaccounted", start, duration: d.unaccounted_ms, highlight: false });
  return rows;
}

function textBlock(title, text) {
  return el("div", {},
    el("h3", {}, title),
    text == null ? el("div", { class: "empty-state" }, "not captured (capture_content = false)") : el("pre", { style: S.text }, text));
}

function feedbackList(items) {
  const state = { thumbs_up: "ok", thumbs_down: "critical", report: "warning", correction: "warning" };
  return table([
    { key: "timestamp_ms", label: "time", render: (f) => el("span", { style: S.nowrap }, fmt.datetime(f.timestamp_ms ?? f.timestamp)) },
    { key: "type", label: "type", render: (f) => badge(f.type.replace("_", " "), state[f.type] ?? "none") },
    { key: "user_id", label: "by", render: (f) => f.user_id ?? "–" },
    { key: "comment", label: "comment", render: (f) => f.comment ?? el("span", { class: "muted" }, "–") },
    { key: "correction", label: "correction", render: (f) => (f.correction == null ? "" : el("pre", { style: { ...S.text, maxHeight: "160px" } }, f.correction)) },
  ], items, { empty: "no feedback on this request" });
}

async function detailSection(id) {
  const back = el("a", { href: `/requests${searchQuery({ id: null })}`, "data-link": "back" }, "← back to the search");
  let d;
  try {
    d = await api(`/api/v1/requests/${encodeURIComponent(id)}`);
  } catch (err) {
    console.error(err);
    return el("div", { class: "stack", "data-detail": "request" }, back, section(`Request ${id}`, errorBox(err)));
  }
  const tokens = [
    ["input", d.input_tokens], ["of which cached", d.cached_input_tokens], ["of which cache write", d.cache_write_tokens],
    ["output", d.output_tokens], ["of which reasoning", d.reasoning_tokens],
  ];
  const unpriced = d.priced === false || d.cost == null;
  const header = section(`Request ${d.request_id}`,
    el("div", { class: "tiles" },
      tile({ title: "Status", value: d.status === "ok" ? "ok" : d.error_type ?? d.status, state: d.status === "ok" ? "ok" : "critical" }),
      tile({ title: "Duration", value: fmt.ms(d.duration_ms), sub: `first token after ${fmt.ms(d.ttft_ms)}` }),
      tile({
        title: "Bottleneck stage",
        value: d.bottleneck_stage ? fmt.ms(d.stages?.[d.bottleneck_stage]) : "–",
        sub: d.bottleneck_stage ? `${d.bottleneck_stage}, ${fmt.pct(d.stages?.[d.bottleneck_stage] / d.duration_ms)} of wall time` : "no stages recorded",
      }),
      tile({ title: "Tokens", value: fmt.int((d.input_tokens ?? 0) + (d.output_tokens ?? 0)), sub: `${fmt.int(d.input_tokens)} in / ${fmt.int(d.output_tokens)} out` }),
      tile({ title: "Cost", value: unpriced ? "unpriced" : fmt.usd(d.cost), sub: unpriced ? `no price for ${d.model}` : `priced as ${d.price_model ?? d.model}`, state: unpriced ? "warning" : "none" }),
    ),
    el("div", { style: { marginTop: "12px" } }, facts([
      ["time", `${fmt.datetime(d.timestamp_ms)} (${fmt.ago(d.timestamp_ms)})`],
      ["model", `${d.model ?? "–"}${d.provider ? ` (${d.provider})` : ""}`],
      ["feature", d.feature ?? "(none)"],
      ["user", d.user_id ?? "(none)"],
      ["release", d.release ?? "(none)"],
      d.session_id ? ["session", d.session_id] : null,
    ])),
  );
  const stagesSum = d.stages_sum_ms;
  const timing = section("Where the time went",
    waterfall({ id: "waterfall", title: `Stages, end to end (${fmt.ms(d.duration_ms)} wall time)`, rows: waterfallRows(d), unit: "ms" }),
    el("p", { class: "muted", style: { margin: "6px 0 0" } },
      `stages measured ${fmt.ms(stagesSum)}; unaccounted ${fmt.ms(d.unaccounted_ms)} (wall time no stage measured)`,
      d.bottleneck_stage ? `; bottleneck: ${d.bottleneck_stage}` : ""),
  );
  const scores = Object.entries(d.scores ?? {}).map(([name, value]) => ({ name, value })).sort((a, b) => a.name.localeCompare(b.name));
  const attrs = Object.entries(d.attributes ?? {}).map(([key, value]) => ({ key, value: typeof value === "string" ? value : JSON.stringify(value) }));
  const numbers = el("div", { class: "grid-3" },
    section("Tokens", table([
      { key: 0, label: "kind" },
      { key: 1, label: "tokens", fmt: fmt.int, align: "right" },
    ], tokens), el("p", { class: "muted", style: { margin: "6px 0 0" } }, "Cost: ", unpriced ? "unpriced" : fmt.usd(d.cost))),
    section("Scores", table([
      { key: "name", label: "score" },
      { key: "value", label: "value (0..1)", align: "right", fmt: fmt.score },
    ], scores, { empty: "no scores" })),
    section("Attributes", table([
      { key: "key", label: "attribute" },
      { key: "value", label: "value" },
    ], attrs, { empty: "no attributes" })),
  );
  const feedback = section("Feedback", d.feedback === undefined ? el("div", { class: "empty-state" }, "feedback is not in this server's answer") : feedbackList(d.feedback));
  const texts = section("Captured texts", el("div", { class: "grid-2" }, textBlock("Input", d.input), textBlock("Output", d.output)));
  return el("div", { class: "stack", "data-detail": "request" }, back, header, timing, numbers, feedback, texts);
}

export default {
  title: "Requests",
  async render(root) {
    const id = param("id");
    root.append(id ? await detailSection(id) : await searchSection());
    const a = refocus;
    refocus = null;
    if (a) setTimeout(() => a.isConnected && a.focus(), 0);
  },
};
