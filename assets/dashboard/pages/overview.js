// Overview: budgets with their projections, the range's headline numbers (each tile links to its
// page), the alerts firing now, and requests and cost over the range.

import { el, api, range, filters, href, fmt, section, tile, table, badge, errorBox } from "../app.js";
import { stackedBars, stackedArea, sparkline } from "../charts.js";

/** Settles a fetch: {value} or {error} (logged, so a failure is never silent). */
const load = (p) => p.then((value) => ({ value }), (error) => {
  console.error(error);
  return { error };
});

/** Cost series grouped and capped at `top`; a server without `top` gets asked without it. */
export async function groupedCost(query) {
  try {
    return await api("/api/v1/timeseries", query);
  } catch (e) {
    if (!query.top) throw e;
    console.warn(`timeseries top= rejected (${e.message}); asking without it`);
    return api("/api/v1/timeseries", { ...query, top: undefined });
  }
}

const STATE_OF_SEVERITY = { critical: "critical", warning: "warning", info: "none" };

/** The state of the worst firing alert whose expression matches `re` (so a tile turns red with its alert). */
function alertState(alerts, re) {
  const firing = (alerts || []).filter((a) => a.state === "firing" && re.test(a.expr));
  if (firing.some((a) => a.severity === "critical")) return "critical";
  return firing.some((a) => a.severity === "warning") ? "warning" : "none";
}

function budgetRow(b) {
  const state = b.state === "exceeded" ? "critical" : b.state === "warning" ? "warning" : "ok";
  const scale = Math.max(1, b.ratio || 0, b.projected_ratio || 0) * 1.06;
  const at = (ratio) => `${Math.min(100, ((ratio || 0) / scale) * 100).toFixed(2)}%`;
  const over = (b.projected_ratio || 0) > 1;
  const scope = Object.entries(b.scope || {}).filter(([, v]) => v).map(([k, v]) => `${k} = ${v}`);
  const projTitle = `projected ${fmt.usd(b.projected_usd)} (${fmt.pct(b.projected_ratio)} of the limit) at ${fmt.datetime(b.period_end)}`;
  return el("div", { class: "budget", "data-budget": b.name },
    el("div", { class: "budget-head" },
      el("span", { class: "budget-name" }, b.name),
      el("span", { class: "muted" }, `${b.period} · ${scope.length ? scope.join(", ") : "all traffic"}`),
      badge(b.state, state),
      over && b.state !== "exceeded" ? badge("projected over limit", "warning") : null),
    el("div", { class: "budget-track", title: projTitle },
      el("div", { class: `budget-fill state-${state}`, style: { width: at(b.ratio) } }),
      el("div", { class: "budget-limit", style: { left: at(1) }, title: `limit ${fmt.usd(b.limit_usd)}` }),
      el("div", { class: `budget-projection${over ? " over" : ""}`, style: { left: at(b.projected_ratio) }, title: projTitle })),
    el("div", { class: "budget-foot" },
      el("span", {}, el("strong", {}, fmt.usd(b.spent_usd)), ` of ${fmt.usd(b.limit_usd)} (${fmt.pct(b.ratio)})`),
      el("span", {}, `projected ${fmt.usd(b.projected_usd)} (${fmt.pct(b.projected_ratio)}) by ${fmt.datetime(b.period_end).slice(0, 16)}`),
      b.unpriced_requests > 0
        ? el("span", { class: "unpriced" }, `+ ${fmt.int(b.unpriced_requests)} unpriced requests (${b.unpriced_models.join(", ")}): real spend is higher`)
        : null));
}

function budgetsSection(res) {
  const body = res.error ? errorBox(res.error) : res.value.budgets.length
    ? el("div", { class: "budgets" }, res.value.budgets.map(budgetRow))
    : el("div", { class: "empty-state" }, "no budgets configured");
  return section("Budgets",
    el("p", { class: "section-note" }, "Current periods in ", el("span", {}, res.value ? res.value.timezone : "the server's zone"), "; the filled bar is spent so far, the solid line the limit, the dashed line the projected period-end spend. Not affected by the range or filters."),
    body);
}

function alertsSection(res) {
  if (res.error) return section("Active alerts", errorBox(res.error));
  const alerts = res.value.alerts;
  const order = { critical: 0, warning: 1, info: 2 };
  const rows = [...alerts].sort((a, b) => (order[a.severity] ?? 3) - (order[b.severity] ?? 3) || Date.parse(b.since) - Date.parse(a.since));
  const shown = rows.slice(0, 7);
  return section("Active alerts",
    table([
      { key: "severity", label: "severity", render: (a) => badge(a.severity, STATE_OF_SEVERITY[a.severity] || "none") },
      { key: "rule", label: "alert", render: (a) => el("div", {}, el("div", {}, a.rule, a.state === "pending" ? el("span", { class: "muted" }, " (pending)") : null), el("div", { class: "muted" }, a.summary)) },
      { key: "since", label: "since", align: "right", fmt: (v) => fmt.ago(v) },
    ], shown, { empty: "no alert is pending or firing" }),
    rows.length > shown.length ? el("p", {}, el("a", { href: href("/alerts") }, `${rows.length - shown.length} more on the alerts page →`)) : null);
}

export default {
  title: "Overview",
  async render(root) {
    const r = range();
    const f = filters();
    const span = { from: r.from, to: r.to };
    const scoped = { ...span, ...f }; // operations, latency, timeseries take every filter
    const days = Math.max(1, Math.round((r.toMs - r.fromMs) / 86400e3));
    const [budgets, ops, lat, quality, feedback, alerts, drift, requests, errors, cost] = await Promise.all([
      load(api("/api/v1/budgets")),
      load(api("/api/v1/operations", scoped)),
      load(api("/api/v1/latency", scoped)),
      load(api("/api/v1/quality", { ...span, model: f.model, feature: f.feature, release: f.release })),
      load(api("/api/v1/feedback/summary", { days })),
      load(api("/api/v1/alerts")),
      load(api("/api/v1/drift/status")),
      load(api("/api/v1/timeseries", { ...scoped, metric: "requests", step: r.step })),
      load(api("/api/v1/timeseries", { ...scoped, metric: "errors", step: r.step })),
      load(groupedCost({ ...scoped, metric: "cost", group_by: "model", top: 5, step: r.step })),
    ]);

    const tiles = [];
    const all = (res) => (res.value && res.value.series[0] ? res.value.series[0].points : []);
    if (ops.error) tiles.push(errorBox(ops.error));
    else {
      const o = ops.value;
      tiles.push(
        tile({ title: "Requests", value: fmt.int(o.requests), sub: `${fmt.num(o.throughput_rps)} req/s`, href: href("/requests"), extra: sparkline(all(requests)) }),
        tile({ title: "Error rate", value: fmt.pct(o.error_rate), sub: `${fmt.int(o.errors)} errors`, href: href("/latency"), state: alertState(alerts.value && alerts.value.alerts, /error_rate/) }),
        tile({ title: "Cost", value: fmt.usd(o.cost), sub: `${fmt.num((o.input_tokens + o.output_tokens) / 1e6)} M tokens`, href: href("/cost") }));
    }
    if (lat.error) tiles.push(errorBox(lat.error));
    else {
      const l = lat.value;
      const a = alerts.value && alerts.value.alerts;
      tiles.push(
        tile({ title: "Latency P50", value: fmt.ms(l.p50), sub: `mean ${fmt.ms(l.mean)}`, href: href("/latency"), state: alertState(a, /p50_latency/) }),
        tile({ title: "Latency P95", value: fmt.ms(l.p95), sub: `TTFT p95 ${fmt.ms(l.ttft && l.ttft.p95)}`, href: href("/latency"), state: alertState(a, /p95_latency/) }),
        tile({ title: "Latency P99", value: fmt.ms(l.p99), sub: `max ${fmt.ms(l.max)}`, href: href("/latency"), state: alertState(a, /p99_latency/) }));
    }
    if (quality.error) tiles.push(errorBox(quality.error));
    else {
      const q = quality.value;
      const c = q.composite || {};
      const bad = c.mean != null && c.mean < q.threshold;
      tiles.push(tile({
        title: f.user ? "Quality (all users)" : "Quality (composite)",
        value: fmt.score(c.mean),
        sub: c.count ? `${fmt.pct(c.below_threshold_share)} below ${q.threshold} · ${fmt.int(c.count)} scored` : "no scored requests",
        href: href("/quality"),
        state: c.count ? (bad || q.streak.escalated ? "critical" : "ok") : "none",
      }));
    }
    if (feedback.error) tiles.push(errorBox(feedback.error));
    else {
      const fb = feedback.value;
      tiles.push(tile({ title: "Satisfaction", value: fmt.pct(fb.satisfaction_rate), sub: `${fmt.int(fb.thumbs_up)} up · ${fmt.int(fb.thumbs_down)} down · last ${fb.days} d, all traffic`, href: href("/quality") }));
    }
    if (alerts.error) tiles.push(errorBox(alerts.error));
    else {
      const list = alerts.value.alerts;
      const firing = list.filter((a) => a.state === "firing");
      const crit = firing.filter((a) => a.severity === "critical").length;
      tiles.push(tile({
        title: "Active alerts", value: fmt.int(firing.length),
        sub: `${crit} critical · ${firing.length - crit} other · ${list.length - firing.length} pending`,
        href: href("/alerts"), state: crit ? "critical" : firing.length ? "warning" : "ok",
      }));
    }
    if (drift.error) tiles.push(errorBox(drift.error));
    else {
      const m = drift.value.monitors;
      const names = m.filter((x) => x.drift_detected).map((x) => x.name);
      tiles.push(tile({
        title: "Drift monitors", value: `${drift.value.drifting} of ${m.length}`,
        sub: names.length ? `drifting: ${names.join(", ")}` : m.length ? "none drifting" : "no monitors configured",
        href: href("/drift"), state: names.length ? "warning" : m.length ? "ok" : "none",
      }));
    }

    let requestsChart;
    if (requests.error || errors.error) requestsChart = errorBox(requests.error || errors.error);
    else {
      const errAt = new Map(all(errors));
      requestsChart = stackedBars({
        id: "overview-requests", title: "Requests", unit: `requests per ${r.step}`, yFormat: fmt.num,
        series: [
          { name: "ok", points: all(requests).map(([t, v]) => [t, v - (errAt.get(t) || 0)]), color: "var(--series-1)" },
          { name: "errors", points: all(errors), color: "var(--critical)" },
        ],
      });
    }
    const costChart = cost.error ? errorBox(cost.error) : stackedArea({
      id: "overview-cost", title: "Cost by model", unit: `USD per ${r.step}`, yFormat: fmt.usd,
      series: cost.value.series.map((s) => ({ name: s.labels.model ?? "(all)", points: s.points })),
    });

    root.append(
      el("div", { class: "tiles tiles-5" }, tiles),
      el("div", { class: "grid-2" }, budgetsSection(budgets), alertsSection(alerts)),
      el("div", { class: "grid-2" }, section(null, requestsChart), section(null, costChart)));
  },
};
