// Quality & feedback: score means over time, the current composite and streaks, escalations,
// satisfaction, complaint clusters and the latest corrections (the golden dataset).
import { el, api, range, filters, href, fmt, section, tile, table, badge, errorBox } from "../app.js";
import { lineChart } from "../charts.js";

const DAY_MS = 86400000;
const S = {
  text: { whiteSpace: "pre-wrap", overflowWrap: "anywhere", maxWidth: "32ch", maxHeight: "7.5em", overflow: "auto" },
  bad: { color: "var(--muted)" },
  good: { borderLeft: "3px solid var(--ok)", paddingLeft: "6px" },
  examples: { margin: "0", paddingLeft: "1.1em" },
};

// Runs one section's fetch-and-build; a failure becomes an error box in its place.
async function guarded(title, build) {
  try {
    return await build();
  } catch (err) {
    console.error(err);
    return section(title, errorBox(err));
  }
}

// The shell turns same-origin link clicks into navigate().
function requestLink(id) {
  return el("a", { class: "request-link", href: href("/requests", { id }), style: { whiteSpace: "nowrap" } }, id);
}

// A few request links, then "+N more".
function requestLinks(ids, max = 5) {
  const shown = ids.slice(0, max).flatMap((id, i) => (i ? [" ", requestLink(id)] : [requestLink(id)]));
  if (ids.length > max) shown.push(el("span", { class: "muted" }, ` +${fmt.int(ids.length - max)} more`));
  return el("span", {}, shown);
}

const toMs = (text) => (text ? Date.parse(text) : null);

// The feedback endpoints take whole days back from now: the range's span in days (at least 1).
function feedbackDays(r) {
  return Math.max(1, Math.round((r.toMs - r.fromMs) / DAY_MS));
}

function scoreSeries(ts, composite) {
  const order = (name) => (name === "composite" ? 0 : composite.includes(name) ? 1 : 2);
  return ts.series
    .map((s) => ({ name: s.labels.score ?? "score", points: s.points }))
    .sort((a, b) => order(a.name) - order(b.name) || a.name.localeCompare(b.name));
}

async function qualitySections(r, f) {
  const scope = { from: r.from, to: r.to, model: f.model, feature: f.feature, release: f.release };
  const [q, ts] = await Promise.allSettled([
    api("/api/v1/quality", scope),
    api("/api/v1/timeseries", { metric: "score", step: r.stepHours, ...scope }),
  ]);

  let summary;
  if (q.status === "fulfilled") {
    summary = summarySection(q.value);
  } else {
    console.error(q.reason);
    summary = section("Answer quality", errorBox(q.reason));
  }

  let chart;
  const title = "Score means over time";
  if (ts.status === "fulfilled") {
    const quality = q.status === "fulfilled" ? q.value : null;
    const threshold = quality?.threshold;
    chart = section(title, lineChart({
      id: "quality-scores",
      title: `Mean score per ${r.stepHours} bucket`,
      unit: "score 0..1",
      series: scoreSeries(ts.value, quality?.composite_names ?? []),
      yFormat: fmt.score,
      yMin: 0,
      yMax: 1,
      thresholds: threshold == null ? [] : [{ value: threshold, label: "composite threshold" }],
    }));
  } else {
    console.error(ts.reason);
    chart = section(title, errorBox(ts.reason));
  }
  return [summary, chart];
}

function summarySection(q) {
  const c = q.composite ?? {};
  const s = q.streak ?? {};
  const below = c.mean != null && q.threshold != null && c.mean < q.threshold;
  const tiles = el("div", { class: "tiles" },
    tile({
      title: "Composite mean",
      value: fmt.score(c.mean),
      sub: `${fmt.int(c.count)} fully scored requests · threshold ${fmt.score(q.threshold)}`,
      state: c.mean == null ? "none" : below ? "critical" : "ok",
    }),
    tile({ title: "Composite p10", value: fmt.score(c.p10), sub: "10% of answers score at or below", state: c.p10 == null ? "none" : c.p10 < q.threshold ? "warning" : "ok" }),
    tile({ title: "Below threshold", value: fmt.pct(c.below_threshold_share), sub: `composite < ${fmt.score(q.threshold)}`, state: c.below_threshold_share == null ? "none" : undefined }),
    tile({
      title: "Bad-answer streak",
      value: `${fmt.int(s.current)} now`,
      sub: `longest ${fmt.int(s.longest)} · escalates at ${fmt.int(s.length)} in a row`,
      state: !c.count ? "none" : s.escalated ? "critical" : s.current > 0 ? "warning" : "ok",
    }),
    tile({ title: "Scored requests", value: fmt.int(q.count), sub: "with any score in range", state: "none" }),
  );

  const composite = q.composite_names ?? [];
  const rows = [{ name: "composite", ...c, kind: `mean of ${composite.join(", ")}` }].concat(
    Object.entries(q.scores ?? {})
      .map(([name, v]) => ({ name, ...v, kind: composite.includes(name) ? "in composite" : "" }))
      .sort((a, b) => (b.kind ? 1 : 0) - (a.kind ? 1 : 0) || a.name.localeCompare(b.name)),
  );
  const scores = table([
    { key: "name", label: "score" },
    { key: "kind", label: "" },
    { key: "count", label: "requests", fmt: fmt.int, align: "right" },
    { key: "mean", label: "mean", fmt: fmt.score, align: "right" },
    { key: "p10", label: "p10", fmt: fmt.score, align: "right" },
    { key: "state", label: "", render: (row) => (row.kind && row.mean != null && row.mean < q.threshold ? badge("below threshold", "warning") : "") },
  ], rows, { empty: "no scores in this range" });

  const byFeature = Object.entries(s.by_feature ?? {})
    .map(([feature, v]) => ({ feature: feature || "(none)", ...v }))
    .sort((a, b) => b.current - a.current || b.longest - a.longest);
  const streaks = table([
    { key: "feature", label: "feature" },
    { key: "current", label: "current run", fmt: fmt.int, align: "right" },
    { key: "longest", label: "longest run", fmt: fmt.int, align: "right" },
    { key: "escalated", label: "", render: (row) => (row.escalated ? badge("escalated", "critical") : row.current > 0 ? badge("bad run", "warning") : badge("ok", "ok")) },
  ], byFeature, { empty: "no composites in this range" });

  return section("Answer quality",
    tiles,
    el("div", { class: "grid-2", style: { marginTop: "14px" } },
      el("div", {}, el("h3", {}, "Scores (mean, p10)"), scores),
      el("div", {}, el("h3", {}, "Bad-answer runs by feature"), streaks)),
  );
}

// Long tables show their first rows, with a toggle that survives auto-refresh.
const expanded = new Set();
function collapsible(key, node, limit = 15) {
  const rows = [...node.querySelectorAll("tbody tr")];
  if (rows.length <= limit) return node;
  const button = el("button", { type: "button", class: "button", style: { marginTop: "8px" } });
  const apply = () => {
    const open = expanded.has(key);
    rows.forEach((tr, i) => { tr.hidden = !open && i >= limit; });
    button.textContent = open ? `Show the latest ${limit} only` : `Show all ${fmt.int(rows.length)}`;
  };
  button.addEventListener("click", () => {
    if (expanded.has(key)) expanded.delete(key);
    else expanded.add(key);
    apply();
  });
  apply();
  return el("div", {}, node, button);
}

const MAX_ESCALATIONS = 200;

async function escalationsSection(r, f) {
  const { escalations } = await api("/api/v1/quality/escalations", { from: r.from, to: r.to, feature: f.feature, limit: MAX_ESCALATIONS });
  const rows = escalations.map((e) => ({ ...e, raised_ms: toMs(e.raised_at), first_ms: toMs(e.first_request_at) }));
  const count = rows.length >= MAX_ESCALATIONS ? `latest ${fmt.int(rows.length)}` : fmt.int(rows.length);
  const scope = f.model || f.release || f.user ? ", feature filter only" : "";
  return section(`Escalations (${count}, ${r.label}${scope})`,
    collapsible("escalations", table([
      { key: "raised_ms", label: "raised", fmt: fmt.datetime },
      { key: "feature", label: "feature", render: (e) => e.feature || "(none)" },
      { key: "streak", label: "run length", align: "right", render: (e) => `${fmt.int(e.streak)} requests` },
      { key: "mean_composite", label: "mean composite", align: "right", render: (e) => `${fmt.score(e.mean_composite)} < ${fmt.score(e.threshold)}` },
      { key: "first_ms", label: "run started", fmt: fmt.datetime },
      { key: "request_ids", label: "requests (oldest first)", render: (e) => requestLinks(e.request_ids ?? [], 5) },
    ], rows, { empty: "no escalations in this range" })),
  );
}

async function feedbackSection(r, f) {
  const scope = { from: r.from, to: r.to, model: f.model, feature: f.feature, release: f.release };
  const [sum, ts] = await Promise.allSettled([
    api("/api/v1/feedback/summary", scope),
    api("/api/v1/timeseries", { metric: "satisfaction", step: r.stepHours, ...scope }),
  ]);
  const parts = [];
  if (sum.status === "fulfilled") {
    const s = sum.value;
    // A server that answers with from/to honoured the range and the filters; an older one
    // counts the last `days` days of all traffic.
    const label = s.from ? r.label : `last ${fmt.int(s.days)} day${s.days === 1 ? "" : "s"}${unfiltered(f)}`;
    parts.push(el("div", { class: "tiles" },
      tile({ title: "Satisfaction", value: fmt.pct(s.satisfaction_rate), sub: `thumbs up / (up + down), ${label}`, state: s.satisfaction_rate == null ? "none" : undefined }),
      tile({ title: "Thumbs up", value: fmt.int(s.thumbs_up), sub: label, state: "none" }),
      tile({ title: "Thumbs down", value: fmt.int(s.thumbs_down), sub: label, state: "none" }),
      tile({ title: "Reports", value: fmt.int(s.reports), sub: label, state: "none" }),
      tile({ title: "Corrections", value: fmt.int(s.corrections), sub: label, state: "none" }),
    ));
  } else {
    console.error(sum.reason);
    parts.push(errorBox(sum.reason));
  }
  if (ts.status === "fulfilled") {
    parts.push(el("div", { style: { height: "14px" } }), lineChart({
      id: "satisfaction",
      title: `Satisfaction per ${r.stepHours} bucket (thumbs up share of votes)`,
      unit: "%",
      series: ts.value.series.map((s) => ({ name: "satisfaction", points: s.points })),
      yFormat: fmt.pct,
      yMin: 0,
      yMax: 1,
    }));
  } else {
    console.error(ts.reason);
    parts.push(errorBox(ts.reason));
  }
  return section("User feedback", parts);
}

// The complaint clusters (and an older server's feedback summary) take no filters: say so.
function unfiltered(f) {
  return Object.keys(f).length ? ", all traffic (not filtered)" : "";
}

async function complaintsSection(r, f) {
  const days = feedbackDays(r);
  const c = await api("/api/v1/feedback/complaints", { days, top: 10 });
  const title = `Complaint clusters (${fmt.int(c.complaints)} complaints, last ${fmt.int(c.days)} day${c.days === 1 ? "" : "s"}${unfiltered(f)})`;
  return section(title,
    table([
      { key: "label", label: "about", render: (k) => el("strong", {}, (k.label ?? []).join(" · ")) },
      { key: "count", label: "complaints", fmt: fmt.int, align: "right" },
      { key: "share", label: "share", align: "right", render: (k) => (c.complaints ? fmt.pct(k.count / c.complaints) : "–") },
      { key: "examples", label: "examples", render: (k) => el("ul", { style: S.examples }, (k.examples ?? []).map((x) => el("li", {}, `“${x}”`))) },
      { key: "request_ids", label: "requests", render: (k) => requestLinks(k.request_ids ?? [], 3) },
    ], c.clusters ?? [], { empty: "no thumbs-down or report comments in this period" }),
  );
}

// The export is NDJSON, which api() cannot parse: fetch it directly.
async function fetchGolden(query) {
  const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v != null && v !== ""));
  const url = `/api/v1/export/golden${qs.size ? `?${qs}` : ""}`;
  const res = await fetch(url);
  const text = await res.text();
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { message = JSON.parse(text).error.message; } catch { /* not JSON */ }
    throw new Error(`${url}: ${message}`);
  }
  const lines = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  return { url, lines, skipped: Number(res.headers.get("X-Llmwatch-Skipped") || 0) };
}

function clipped(text, style) {
  if (text == null) return el("span", { class: "muted" }, "–");
  return el("div", { style: { ...S.text, ...style } }, text);
}

async function correctionsSection(f) {
  const { url, lines, skipped } = await fetchGolden({ feature: f.feature });
  const latest = lines
    .map((l) => ({ ...l, ms: toMs(l.timestamp) }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 20);
  const exportLink = el("a", { class: "button", href: url, download: f.feature ? `golden-${f.feature}.jsonl` : "golden.jsonl" }, "Export golden dataset (.jsonl)");
  const note = el("span", { class: "muted" },
    `${fmt.int(lines.length)} corrected inputs in the dataset${f.feature ? ` for feature ${f.feature}` : ""} (all time, newest correction per input)`,
    skipped ? `; ${fmt.int(skipped)} corrections left out (request or captured input unknown)` : "",
    latest.length ? `. Showing the latest ${fmt.int(latest.length)}.` : ".");
  return section("Latest corrections",
    el("div", { class: "row", style: { justifyContent: "space-between", marginBottom: "8px" } }, note, exportLink),
    table([
      { key: "ms", label: "corrected", fmt: fmt.datetime },
      { key: "request_id", label: "request", render: (l) => requestLink(l.request_id) },
      { key: "feature", label: "feature / model", render: (l) => el("span", {}, l.feature || "(none)", el("br"), el("span", { class: "muted" }, l.model ?? "–")) },
      { key: "input", label: "input", render: (l) => clipped(l.input) },
      { key: "original_output", label: "original output", render: (l) => clipped(l.original_output, S.bad) },
      { key: "expected_output", label: "correction", render: (l) => clipped(l.expected_output, S.good) },
      { key: "comment", label: "comment", render: (l) => clipped(l.comment) },
    ], latest, { empty: "no corrections yet" }),
  );
}

export default {
  title: "Quality & feedback",
  async render(root) {
    const r = range();
    const f = filters();
    const note = f.user ? el("div", { class: "callout" }, "The user filter does not apply to this page: scores filter by model, feature and release.") : null;
    const [[summary, chart], escalations, feedback, complaints, corrections] = await Promise.all([
      qualitySections(r, f),
      guarded("Escalations", () => escalationsSection(r, f)),
      guarded("User feedback", () => feedbackSection(r, f)),
      guarded("Complaint clusters", () => complaintsSection(r, f)),
      guarded("Latest corrections", () => correctionsSection(f)),
    ]);
    root.append(...[note, summary, chart, escalations, feedback, complaints, corrections].filter(Boolean));
  },
};

