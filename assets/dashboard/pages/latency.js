// Latency: percentiles over time, where request time goes (stages, the bottleneck), time to first
// token, and errors.

import { el, api, range, filters, href, fmt, section, tile, table, errorBox } from "../app.js";
import { lineChart, stackedBars } from "../charts.js";

const load = (p) => p.then((value) => ({ value }), (error) => {
  console.error(error);
  return { error };
});

const PCT_COLORS = { p50: "var(--series-1)", p95: "var(--series-2)", p99: "var(--series-4)" };

/**
 * Threshold lines from the alert rules on a metric, e.g. "p99_latency[5m] > 10000ms" or
 * "error_rate > 5%", so the chart shows where the pager goes off. Only plain comparisons of the
 * metric with a number are drawn; anything else is left to the alerts page.
 */
function ruleThresholds(rules, metric, toValue) {
  const re = new RegExp(`^${metric}(?:\\[(\\w+)\\])?\\s*>=?\\s*([\\d.]+)\\s*(ms|s|%)?(?:\\s+for\\s+\\w+)?$`);
  const out = [];
  for (const rule of rules || []) {
    const m = re.exec(rule.expr.trim());
    if (m) out.push({ value: toValue(Number(m[2]), m[3]), label: `alert "${rule.name}"${m[1] ? ` (${m[1]} window)` : ""}` });
  }
  return out;
}

function points(res) {
  return res.value && res.value.series[0] ? res.value.series[0].points : [];
}

function stageSection(lat, stageSeries, r) {
  if (lat.error) return section("Where the time goes", errorBox(lat.error));
  const l = lat.value;
  const rows = Object.entries(l.stages || {}).map(([name, s]) => ({ name, ...s }));
  if (l.unaccounted && l.unaccounted.share) rows.push({ name: "(unaccounted)", mean: l.unaccounted.mean, share: l.unaccounted.share });
  rows.sort((a, b) => (b.share || 0) - (a.share || 0));
  const bottleneck = l.bottleneck && l.stages[l.bottleneck];
  const headline = bottleneck
    ? el("p", { class: "bottleneck", "data-bottleneck": l.bottleneck }, "bottleneck: ", el("strong", {}, l.bottleneck), `, ${fmt.pct(bottleneck.share)} of request time (mean ${fmt.ms(bottleneck.mean)} per request that ran it)`)
    : null;
  const chart = stageSeries.error ? errorBox(stageSeries.error) : stackedBars({
    id: "latency-stages", title: "Mean request time by stage", unit: `ms per request, per ${r.step}`, yFormat: fmt.ms,
    highlight: l.bottleneck || undefined,
    // Stages in the server's order, the unmeasured remainder on top of the stack.
    series: stageSeries.value.series.map((s) => ({ name: s.labels.stage, points: s.points }))
      .sort((a, b) => (a.name === "(unaccounted)") - (b.name === "(unaccounted)")),
  });
  return section("Where the time goes", headline,
    el("div", { class: "grid-2 stages" },
      chart,
      table([
        { key: "name", label: "stage", render: (s) => (s.name === l.bottleneck ? el("span", { class: "nowrap" }, s.name, " ", el("span", { class: "badge state-warning" }, "bottleneck")) : s.name) },
        { key: "count", label: "count", align: "right", fmt: fmt.int },
        { key: "mean", label: "mean", align: "right", fmt: fmt.ms },
        { key: "p50", label: "p50", align: "right", fmt: fmt.ms },
        { key: "p95", label: "p95", align: "right", fmt: fmt.ms },
        { key: "p99", label: "p99", align: "right", fmt: fmt.ms },
        { key: "share", label: "share of time", align: "right", render: (s) => el("span", { class: "share" }, el("span", { class: "share-bar", style: { width: `${Math.round((s.share || 0) * 40)}px` } }), fmt.pct(s.share)) },
      ], rows, { empty: "no stage timings in this range", highlight: (s) => s.name === l.bottleneck })));
}

export default {
  title: "Latency",
  async render(root) {
    const r = range();
    const scoped = { from: r.from, to: r.to, ...filters() };
    const ts = (metric) => load(api("/api/v1/timeseries", { ...scoped, metric, step: r.step }));
    const [lat, ops, rules, p50, p95, p99, stages, ttft50, ttft95, errRate] = await Promise.all([
      load(api("/api/v1/latency", scoped)),
      load(api("/api/v1/operations", scoped)),
      load(api("/api/v1/alerts/rules")),
      ts("p50"), ts("p95"), ts("p99"),
      ts("stage_mean"),
      ts("ttft_p50"), ts("ttft_p95"),
      ts("error_rate"),
    ]);
    const ruleList = rules.value && rules.value.rules;
    const toMs = (v, unit) => (unit === "s" ? v * 1000 : v);

    // Headline numbers over the whole range.
    const tiles = [];
    if (lat.error) tiles.push(errorBox(lat.error));
    else {
      const l = lat.value;
      tiles.push(
        tile({ title: "Requests", value: fmt.int(l.count), sub: `min ${fmt.ms(l.min)} · max ${fmt.ms(l.max)}`, href: href("/requests") }),
        tile({ title: "P50", value: fmt.ms(l.p50), sub: `mean ${fmt.ms(l.mean)}` }),
        tile({ title: "P95", value: fmt.ms(l.p95) }),
        tile({ title: "P99", value: fmt.ms(l.p99), sub: "quantiles within 1%" }),
        tile({ title: "TTFT P95", value: fmt.ms(l.ttft.p95), sub: `p50 ${fmt.ms(l.ttft.p50)} · ${fmt.int(l.ttft.count)} streamed` }));
    }
    if (ops.error) tiles.push(errorBox(ops.error));
    else tiles.push(tile({ title: "Error rate", value: fmt.pct(ops.value.error_rate), sub: `${fmt.int(ops.value.errors)} of ${fmt.int(ops.value.requests)} requests` }));

    const pctErr = [p50, p95, p99].find((x) => x.error);
    const pctChart = pctErr ? errorBox(pctErr.error) : lineChart({
      id: "latency-percentiles", title: "Request duration percentiles", unit: `ms, per ${r.step}`, yFormat: fmt.ms,
      series: [["p50", p50], ["p95", p95], ["p99", p99]].map(([name, res]) => ({ name, points: points(res), color: PCT_COLORS[name] })),
      thresholds: ["p50", "p95", "p99"].flatMap((q) => ruleThresholds(ruleList, `${q}_latency`, toMs)),
    });

    const ttftErr = [ttft50, ttft95].find((x) => x.error);
    const ttftChart = ttftErr ? errorBox(ttftErr.error) : lineChart({
      id: "latency-ttft", title: "TTFT percentiles", unit: `ms, per ${r.step}`, yFormat: fmt.ms,
      series: [["p50", ttft50], ["p95", ttft95]].map(([name, res]) => ({ name, points: points(res), color: PCT_COLORS[name] })),
      thresholds: ruleThresholds(ruleList, "ttft_p95", toMs),
    });
    const ttftTable = lat.error ? null : table([
      { key: "count", label: "streamed requests", align: "right", fmt: fmt.int },
      { key: "mean", label: "mean", align: "right", fmt: fmt.ms },
      { key: "p50", label: "p50", align: "right", fmt: fmt.ms },
      { key: "p95", label: "p95", align: "right", fmt: fmt.ms },
      { key: "p99", label: "p99", align: "right", fmt: fmt.ms },
    ], lat.value.ttft.count ? [lat.value.ttft] : [], { empty: "no streamed request in this range" });

    const errChart = errRate.error ? errorBox(errRate.error) : lineChart({
      id: "latency-error-rate", title: "Error rate over time", unit: `% of requests, per ${r.step}`, yFormat: fmt.pct,
      series: [{ name: "error rate", points: points(errRate), color: "var(--critical)" }],
      thresholds: ruleThresholds(ruleList, "error_rate", (v, unit) => (unit === "%" ? v / 100 : v)),
    });
    let errTable;
    if (ops.error) errTable = errorBox(ops.error);
    else {
      const o = ops.value;
      const rows = Object.entries(o.errors_by_type || {}).map(([type, n]) => ({ type, n })).sort((a, b) => b.n - a.n);
      errTable = table([
        { key: "type", label: "error type" },
        { key: "n", label: "errors", align: "right", fmt: fmt.int },
        { key: "share", label: "share of errors", align: "right", render: (e) => fmt.pct(e.n / o.errors) },
        { key: "rate", label: "share of requests", align: "right", render: (e) => fmt.pct(e.n / o.requests) },
      ], rows, { empty: "no errors in this range" });
    }

    root.append(
      el("div", { class: "tiles" }, tiles),
      section(null, pctChart),
      stageSection(lat, stages, r),
      el("div", { class: "grid-2" },
        section("Time to first token", ttftChart, ttftTable),
        section("Errors", errChart, errTable)),
    );
  },
};
