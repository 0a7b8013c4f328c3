// Drift: each configured monitor's verdict, baseline vs current distribution, its score over
// time and the biggest movers; plus an ad-hoc check of any dimension.
import { el, api, range, filters, param, setParams, fmt, section, table, badge, errorBox } from "../app.js";
import { lineChart, barChart, histogram } from "../charts.js";

// The dimensions every store has (README "Drift"); attribute keys come from monitors and baselines.
const BUILTIN_DIMENSIONS = ["model", "feature", "release", "status", "error_type", "input_tokens", "output_tokens", "duration_ms", "ttft_ms", "cost", "input_chars", "output_chars"];
const METHODS = ["auto", "kl", "js", "psi", "chi_square", "ks", "wasserstein"];
const UNITS = { input_tokens: "tokens", output_tokens: "tokens", duration_ms: "ms", ttft_ms: "ms", cost: "USD", input_chars: "chars", output_chars: "chars" };
const MAX_CATEGORIES = 20;
const S = {
  form: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "6px 14px" },
  label: { display: "flex", alignItems: "center", gap: "6px", color: "var(--muted)" },
  facts: { display: "grid", gridTemplateColumns: "max-content 1fr", gap: "3px 14px", margin: "0 0 12px" },
  dt: { color: "var(--muted)" },
  dd: { margin: "0", minWidth: "0" },
};

async function guarded(title, build) {
  try {
    return await build();
  } catch (err) {
    console.error(err);
    return section(title, errorBox(err));
  }
}

// Forms survive auto-refresh (typing is not wiped) while the URL they were built for is unchanged.
const keptForms = new Map();
let refocus = null;
function keep(name, key, build) {
  const old = keptForms.get(name);
  if (old && old.key === key) {
    const active = document.activeElement;
    if (active && old.node.contains(active)) refocus = active;
    return old.node;
  }
  const node = build();
  keptForms.set(name, { key, node });
  return node;
}
// Called once the page is assembled: focus returns to the kept field after the shell's swap.
function restoreFocus() {
  const a = refocus;
  refocus = null;
  if (a) setTimeout(() => a.isConnected && a.focus(), 0);
}

// "[450, inf)" -> {lo: 450, hi: Infinity}; null for a category.
function parseBin(value) {
  const m = /^\[(-?inf|[-+0-9.eE]+), (-?inf|[-+0-9.eE]+)\)$/.exec(value);
  if (!m) return null;
  const num = (s) => (s === "inf" ? Infinity : s === "-inf" ? -Infinity : Number(s));
  return { lo: num(m[1]), hi: num(m[2]) };
}

function binLabel(bin) {
  const n = (x) => fmt.num(x);
  if (bin.lo === -Infinity) return `< ${n(bin.hi)}`;
  if (bin.hi === Infinity) return `≥ ${n(bin.lo)}`;
  return `${n(bin.lo)}–${n(bin.hi)}`;
}

const isTest = (r) => r.p_value != null || r.method === "chi_square" || r.method === "ks";
const unitOf = (dimension) => UNITS[dimension] ?? "";

function verdict(r) {
  if (r.error) return badge("error", "critical");
  if (r.reason || r.score == null) return badge("insufficient data", "none");
  return r.drift_detected ? badge("DRIFT", "critical") : badge("ok", "ok");
}

// A p-value: tiny ones read "< 0.001" rather than a long run of zeros.
const pFmt = (p) => (p != null && p < 0.001 ? "< 0.001" : fmt.num(p));

// Tests (chi-square, KS) decide by p-value < alpha; distances by score > threshold.
function scoreText(r) {
  if (r.score == null) return "no score";
  if (isTest(r)) return `statistic ${fmt.num(r.score)}, p-value ${pFmt(r.p_value)} ${r.drift_detected ? "<" : "≥"} alpha ${fmt.num(r.threshold)} (${r.method})`;
  return `score ${fmt.num(r.score)} ${r.drift_detected ? ">" : "≤"} threshold ${fmt.num(r.threshold)} (${r.method})`;
}

function scoreShort(r) {
  if (r.score == null) return "–";
  if (isTest(r)) return `p ${pFmt(r.p_value)} ${r.drift_detected ? "<" : "≥"} ${fmt.num(r.threshold)}`;
  return `${fmt.num(r.score)} ${r.drift_detected ? ">" : "≤"} ${fmt.num(r.threshold)}`;
}

function span(fromMs, toMs) {
  return `${fmt.datetime(fromMs)} → ${fmt.datetime(toMs)}`;
}

function meta(r) {
  const b = r.baseline ?? {};
  const baselineName = b.name ? `${b.name} (${b.kind})` : `${b.kind ?? "rolling"}: the 7 days before the window`;
  return el("dl", { style: S.facts },
    el("dt", { style: S.dt }, "dimension"), el("dd", { style: S.dd }, el("code", {}, r.dimension)),
    el("dt", { style: S.dt }, "verdict"), el("dd", { style: S.dd }, verdict(r), " ", scoreText(r)),
    el("dt", { style: S.dt }, "baseline"), el("dd", { style: S.dd }, baselineName, b.from_ms != null ? el("span", { class: "muted" }, ` · ${span(b.from_ms, b.to_ms)}`) : null,
      ` · ${fmt.int(r.baseline_size)} observations`),
    el("dt", { style: S.dt }, "window"), el("dd", { style: S.dd }, r.window ? span(r.window.from_ms, r.window.to_ms) : "–", ` · ${fmt.int(r.current_size)} observations`),
    r.reason ? [el("dt", { style: S.dt }, "note"), el("dd", { style: S.dd }, r.reason)] : null,
  );
}

// Baseline vs current shares: a histogram over ordered bins for numbers, bars for categories.
function distribution(id, r) {
  const changes = r.changes ?? [];
  const bins = changes.map((c) => ({ c, bin: parseBin(c.value) }));
  const numeric = bins.length > 0 && bins.every((b) => b.bin);
  const unit = unitOf(r.dimension);
  if (numeric) {
    bins.sort((a, b) => a.bin.lo - b.bin.lo);
    return histogram({
      id: `${id}-distribution`,
      title: `${r.dimension}: share of requests per baseline-decile bin${unit ? ` (${unit})` : ""}`,
      unit: "% of requests",
      bins: bins.map(({ c, bin }) => ({ label: binLabel(bin), values: [c.baseline_share, c.current_share] })),
      series: ["baseline", "current"],
      yFormat: fmt.pct,
    });
  }
  const top = changes
    .slice()
    .sort((a, b) => Math.max(b.baseline_share, b.current_share) - Math.max(a.baseline_share, a.current_share))
    .slice(0, MAX_CATEGORIES);
  const more = changes.length - top.length;
  return barChart({
    id: `${id}-distribution`,
    title: `${r.dimension}: share of requests per value${more > 0 ? ` (largest ${top.length}; ${more} more)` : ""}`,
    unit: "% of requests",
    categories: top.map((c) => c.value),
    series: [
      { name: "baseline", values: top.map((c) => c.baseline_share) },
      { name: "current", values: top.map((c) => c.current_share) },
    ],
    yFormat: fmt.pct,
    horizontal: top.length > 8,
  });
}

function movers(r) {
  const fresh = new Set(r.new_values ?? []);
  const gone = new Set(r.missing_values ?? []);
  const numeric = (r.changes ?? []).length > 0 && r.changes.every((c) => parseBin(c.value));
  const rows = (r.changes ?? [])
    .slice()
    .sort((a, b) => Math.abs(b.delta) - Math.abs(a.delta))
    .slice(0, 10);
  const callouts = [];
  if (fresh.size) callouts.push(el("p", {}, badge("new", "warning"), " values absent from the baseline: ", [...fresh].join(", ")));
  if (gone.size) callouts.push(el("p", {}, badge("missing", "warning"), " baseline values absent now: ", [...gone].join(", ")));
  return el("div", { style: { maxWidth: "820px" } },
    el("h3", { style: { marginTop: "12px" } }, "Biggest movers"),
    callouts,
    table([
      { key: "value", label: numeric ? `bin (${unitOf(r.dimension) || "value"})` : "value", render: (c) => {
        const bin = parseBin(c.value);
        return el("span", {}, bin ? binLabel(bin) : c.value,
          fresh.has(c.value) ? [" ", badge("new", "warning")] : null,
          gone.has(c.value) ? [" ", badge("missing", "warning")] : null);
      } },
      { key: "baseline_share", label: "baseline", fmt: fmt.pct, align: "right" },
      { key: "current_share", label: "current", fmt: fmt.pct, align: "right" },
      { key: "delta", label: "change", align: "right", render: (c) => `${c.delta > 0 ? "+" : c.delta < 0 ? "−" : ""}${(Math.abs(c.delta) * 100).toFixed(1)} pp` },
    ], rows, { empty: "no values on either side" }),
  );
}

// The monitor's score at the end of each step against its threshold. The tests (chi-square,
// KS) decide by p-value < alpha, so for them the chart shows the p-value and the alpha line.
async function historyChart(m, r) {
  const h = await api("/api/v1/drift/history", { monitor: m.name, from: r.from, to: r.to, step: r.stepHours });
  const byP = h.threshold_applies_to === "p_value";
  return lineChart({
    id: `drift-history-${m.name}`,
    title: `${byP ? "p-value" : "Score"} over time (window ending at each ${r.stepHours} step)`,
    unit: byP ? `${h.method} p-value; drift below alpha ${fmt.num(h.threshold)}` : `${h.method} score`,
    series: [{ name: byP ? "p-value" : "score", points: (byP ? h.p_values : h.points) ?? [] }],
    yFormat: fmt.num,
    // Points sit at window ends, the last one at "now": the step, not their spacing, joins them.
    step: h.step_s * 1000,
    yMin: 0,
    yMax: byP ? 1 : undefined,
    thresholds: h.threshold == null ? [] : [{ value: h.threshold, label: byP ? "alpha" : "threshold" }],
  });
}

async function monitorSection(m, r) {
  if (m.error) {
    return section(m.name, el("p", {}, verdict(m), " ", m.error));
  }
  const history = await historyChart(m, r).catch((err) => {
    console.error(err);
    return errorBox(err);
  });
  return section(`Monitor: ${m.name}`,
    meta(m),
    el("div", { class: "grid-2" }, distribution(`drift-${m.name}`, m), history),
    movers(m),
  );
}

function checkForm(dims, baselines) {
  const dimension = param("dimension", "");
  const method = param("method", "");
  const baseline = param("baseline", "");
  const listId = "drift-dimensions";
  const input = el("input", { type: "text", name: "dimension", value: dimension, list: listId, placeholder: "e.g. model, output_tokens, attributes.KEY", size: "34", required: "" });
  const methodSelect = el("select", { name: "method" }, METHODS.map((m) => el("option", { value: m === "auto" ? "" : m }, m)));
  methodSelect.value = method;
  const baselineSelect = el("select", { name: "baseline" },
    el("option", { value: "" }, "rolling: 7 days before"),
    baselines.map((b) => el("option", { value: b.name }, `${b.name} (${b.dimension})`)));
  baselineSelect.value = baseline;
  const form = el("form", { style: S.form, "data-form": "drift-check", autocomplete: "off" },
    el("label", { style: S.label }, "dimension", input),
    el("datalist", { id: listId }, dims.map((d) => el("option", { value: d }))),
    el("label", { style: S.label }, "method", methodSelect),
    el("label", { style: S.label }, "baseline", baselineSelect),
    el("button", { type: "submit" }, "Check"),
    dimension ? el("button", { type: "button", on: { click: () => setParams({ dimension: null, method: null, baseline: null }) } }, "Clear") : null,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setParams({ dimension: input.value.trim(), method: methodSelect.value, baseline: baselineSelect.value });
  });
  return form;
}

async function adHocSection(r, f, status, baselines) {
  const dims = [...new Set([
    ...BUILTIN_DIMENSIONS,
    ...(status?.monitors ?? []).map((m) => m.dimension).filter(Boolean),
    ...baselines.map((b) => b.dimension),
  ])];
  const dimension = param("dimension", "");
  const key = `${dimension}|${param("method", "")}|${param("baseline", "")}|${baselines.map((b) => b.name).join(",")}`;
  const form = keep("drift-check", key, () => checkForm(dims, baselines));
  const parts = [
    el("p", { class: "muted" }, `Compares the toolbar's range (${r.label}) with a baseline${f.model || f.feature ? ", within the model/feature filter" : ""}.`),
    form,
  ];
  if (dimension) {
    try {
      const rep = await api("/api/v1/drift", {
        dimension, method: param("method"), baseline: param("baseline"), from: r.from, to: r.to, model: f.model, feature: f.feature,
      });
      parts.push(el("div", { "data-drift": "check", style: { marginTop: "12px" } }, meta(rep), el("div", { class: "grid-2" }, distribution("drift-check", rep), movers(rep))));
    } catch (err) {
      console.error(err);
      parts.push(errorBox(err));
    }
  }
  return section("Check a dimension", parts);
}

export default {
  title: "Drift",
  async render(root) {
    const r = range();
    const f = filters();
    const [status, baselines] = await Promise.allSettled([api("/api/v1/drift/status"), api("/api/v1/drift/baselines")]);
    const parts = [];
    const known = baselines.status === "fulfilled" ? baselines.value.baselines ?? [] : [];
    if (baselines.status === "rejected") console.error(baselines.reason);

    const adHoc = adHocSection(r, f, status.value, known);
    if (status.status === "fulfilled") {
      const monitors = status.value.monitors ?? [];
      const sections = await Promise.all(monitors.map((m) => guarded(m.name, () => monitorSection(m, r))));
      const jump = (i) => (e) => { e.preventDefault(); sections[i].scrollIntoView({ behavior: "smooth", block: "start" }); };
      const rows = monitors.map((m, i) => ({ ...m, i }));
      const summary = table([
        { key: "name", label: "monitor", render: (m) => el("a", { href: "", on: { click: jump(m.i) } }, m.name) },
        { key: "verdict", label: "verdict", render: verdict },
        { key: "dimension", label: "dimension", render: (m) => (m.dimension ? el("code", {}, m.dimension) : "–") },
        { key: "method", label: "method", render: (m) => m.method ?? "–" },
        { key: "score", label: "score vs threshold", align: "right", render: scoreShort },
        { key: "baseline_size", label: "baseline n", align: "right", render: (m) => fmt.int(m.baseline_size) },
        { key: "current_size", label: "window n", align: "right", render: (m) => fmt.int(m.current_size) },
      ], rows, { empty: "no [[drift]] monitors configured" });
      parts.push(section(`Monitors (${fmt.int(status.value.drifting)} drifting of ${fmt.int(monitors.length)})`, summary));
      parts.push(...sections);
    } else {
      console.error(status.reason);
      parts.push(section("Monitors", errorBox(status.reason)));
    }
    parts.push(await adHoc);
    root.append(...parts);
    restoreFocus();
  },
};

