// Cost: spend over time stacked by a chosen dimension, breakdown tables (each key drills down by
// setting the filter), unpriced usage called out, and the budgets.

import { el, api, range, filters, param, setParams, href, fmt, section, tile, table, badge, errorBox } from "../app.js";
import { stackedArea } from "../charts.js";
import { groupedCost } from "./overview.js";

const GROUPS = ["model", "feature", "user", "release"];
const compactFormat = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const compact = (n) => (n === null || n === undefined ? "–" : compactFormat.format(n));

const load = (p) => p.then((value) => ({ value }), (error) => {
  console.error(error);
  return { error };
});

/** A cost report's groups as a table; a key links to this page filtered by it. */
function groupTable(report, dim, limit) {
  const total = report.total_cost || 0;
  const rows = report.groups.slice(0, limit);
  const more = report.groups.length - rows.length;
  return [
    table([
      { key: "key", label: dim, render: (g) => (g.key === "(none)" ? el("span", { class: "muted" }, `(no ${dim})`) : el("a", { class: "nowrap", href: href("/cost", { [dim]: g.key }), title: `filter by ${dim} = ${g.key}` }, g.key)) },
      { key: "requests", label: "requests", align: "right", fmt: fmt.int },
      { key: "tokens", label: "tokens", align: "right", render: (g) => el("span", { title: fmt.int(g.tokens) }, compact(g.tokens)) },
      { key: "cost", label: "cost", align: "right", render: (g) => (g.cost === null ? el("span", { class: "muted" }, "unpriced") : fmt.usd(g.cost)) },
      { key: "share", label: "share", align: "right", render: (g) => (total && g.cost !== null ? fmt.pct(g.cost / total) : "–") },
      { key: "per", label: "per req.", align: "right", render: (g) => {
        const priced = g.requests - g.unpriced_requests;
        return g.cost !== null && priced > 0 ? fmt.usd(g.cost / priced) : "–";
      } },
      { key: "unpriced_requests", label: "unpriced", align: "right", render: (g) => (g.unpriced_requests ? el("span", { class: "unpriced" }, fmt.int(g.unpriced_requests)) : "0") },
    ], rows),
    more > 0 ? el("p", { class: "muted" }, `${fmt.int(more)} more ${dim}s with less spend`) : null,
  ];
}

function unpricedCallout(u) {
  if (!u || !u.requests) return null;
  return el("div", { class: "callout state-warning", "data-unpriced": u.requests },
    el("strong", {}, `${fmt.int(u.requests)} requests (${fmt.int(u.tokens)} tokens) in this range could not be priced`),
    ": models ", u.models.map((m, i) => [i ? ", " : "", el("code", {}, m)]),
    ". They are not in the cost figures, so the real spend is higher than shown. Add their prices in the config (",
    el("code", {}, "[[pricing]]"), ") to price new requests.");
}

function budgetsTable(res) {
  if (res.error) return errorBox(res.error);
  return table([
    { key: "name", label: "budget" },
    { key: "period", label: "period" },
    { key: "scope", label: "scope", render: (b) => Object.entries(b.scope || {}).filter(([, v]) => v).map(([k, v]) => `${k} = ${v}`).join(", ") || "all traffic" },
    { key: "spent_usd", label: "spent", align: "right", fmt: fmt.usd },
    { key: "limit_usd", label: "limit", align: "right", fmt: fmt.usd },
    { key: "ratio", label: "used", align: "right", fmt: fmt.pct },
    { key: "projected_usd", label: "projected", align: "right", fmt: fmt.usd },
    { key: "projected_ratio", label: "projected used", align: "right", render: (b) => el("span", { class: b.projected_ratio > 1 ? "over" : null }, fmt.pct(b.projected_ratio)) },
    { key: "period_end", label: "period ends", align: "right", fmt: (v) => fmt.datetime(v).slice(0, 16) },
    { key: "state", label: "state", render: (b) => badge(b.state, b.state === "exceeded" ? "critical" : b.state === "warning" ? "warning" : "ok") },
    { key: "unpriced_requests", label: "unpriced req.", align: "right", render: (b) => (b.unpriced_requests ? el("span", { class: "unpriced", title: b.unpriced_models.join(", ") }, fmt.int(b.unpriced_requests)) : "0") },
  ], res.value.budgets, { empty: "no budgets configured" });
}

export default {
  title: "Cost",
  async render(root) {
    const r = range();
    const f = filters();
    const groupBy = GROUPS.includes(param("group_by")) ? param("group_by") : "model";
    const scoped = { from: r.from, to: r.to, ...f };
    const report = (g) => load(api("/api/v1/reports/cost", { ...scoped, group_by: g }));
    const [series, byModel, byFeature, byUser, byRelease, budgets] = await Promise.all([
      load(groupedCost({ ...scoped, metric: "cost", group_by: groupBy, top: 8, step: r.step })),
      report("model"), report("feature"), report("user"), report("release"),
      load(api("/api/v1/budgets")),
    ]);

    const select = el("select", { name: "group_by", on: { change: (e) => setParams({ group_by: e.target.value === "model" ? null : e.target.value }) } },
      GROUPS.map((g) => el("option", { value: g, selected: g === groupBy }, g)));
    const chart = series.error ? errorBox(series.error) : stackedArea({
      id: "cost-over-time", title: `Cost by ${groupBy}`, unit: `USD per ${r.step}`, yFormat: fmt.usd,
      series: series.value.series.map((s) => ({ name: s.labels[groupBy] ?? "(all)", points: s.points })),
    });

    // Totals come from one report; every grouping adds up to the same total.
    const head = byModel.error ? [errorBox(byModel.error)] : (() => {
      const m = byModel.value;
      const priced = m.total_requests - m.unpriced.requests;
      return [
        el("div", { class: "tiles" },
          tile({ title: "Cost", value: fmt.usd(m.total_cost), sub: r.label }),
          tile({ title: "Requests", value: fmt.int(m.total_requests), sub: `${fmt.int(m.unpriced.requests)} unpriced`, state: m.unpriced.requests ? "warning" : "none" }),
          tile({ title: "Tokens", value: fmt.int(m.total_tokens), sub: `${fmt.num(m.total_tokens / 1e6)} M` }),
          tile({ title: "Cost per request", value: priced > 0 ? fmt.usd(m.total_cost / priced) : "–", sub: "priced requests" }),
          tile({ title: "Cost per 1M tokens", value: m.total_tokens ? fmt.usd((m.total_cost / m.total_tokens) * 1e6) : "–", sub: "all tokens, blended" })),
        unpricedCallout(m.unpriced),
      ];
    })();

    const part = (res, dim, limit) => (res.error ? errorBox(res.error) : groupTable(res.value, dim, limit));
    root.append(
      ...head,
      section(null, el("div", { class: "row chart-controls" }, el("label", { class: "muted" }, "stack by ", select)), chart),
      el("div", { class: "grid-2" },
        section("By model", part(byModel, "model", 20)),
        section("By feature", part(byFeature, "feature", 20))),
      el("div", { class: "grid-2" },
        section("Top users", part(byUser, "user", 15)),
        section("By release", part(byRelease, "release", 20))),
      section("Budgets", el("p", { class: "section-note" }, "Current periods; not affected by the range or filters."), budgetsTable(budgets)),
    );
  },
};
