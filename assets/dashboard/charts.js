// SVG charts drawn by our own code. Every chart is a <figure class="chart" data-chart=ID
// data-empty data-points> with a caption, an SVG redrawn at the figure's real pixel width (so text
// never scales), gridlines on nice ticks, a legend for several series and a hover tooltip.
// Colours come from CSS variables (app.css), so both themes work without redrawing.

import { el, ctx, fmt, range, tzOffset } from "./app.js";

const PAD = { top: 12, right: 18, bottom: 24 };
const CHAR_W = 6.3; // average width of an 11px label character, for margins and truncation
const MIN = 60e3;
const HOUR = 3600e3;
const DAY = 86400e3;
const TIME_STEPS = [1, 2, 5, 10, 15, 30].map((m) => m * MIN)
  .concat([1, 2, 3, 6, 12].map((h) => h * HOUR), [1, 2, 7, 14].map((d) => d * DAY));

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Series colour: an explicit `color`, grey for the "(other)" and "(unaccounted)" remainders, else the palette. */
function colorOf(s, i) {
  if (s.color) return s.color;
  if (s.name === "(other)" || s.name === "(unaccounted)") return "var(--series-10)";
  return `var(--series-${(i % 9) + 1})`;
}

function figure({ id, title, unit, time, count }) {
  const sub = [unit, time ? `times in ${ctx.tz}` : null].filter(Boolean).join(" · ");
  return el("figure", { class: "chart", "data-chart": id, "data-empty": String(count === 0), "data-points": count },
    el("figcaption", {}, el("span", { class: "chart-title" }, title), sub ? el("span", { class: "chart-sub" }, sub) : null));
}

function empty(fig) {
  fig.append(el("div", { class: "empty-state" }, "no data in this range"));
  return fig;
}

function legend(series, highlight) {
  return el("div", { class: "legend" }, series.map((s) =>
    el("span", { class: s.name === highlight ? "emph" : null }, el("i", { style: { background: s.color } }), s.name)));
}

/**
 * Draws `draw(width, hover)` into the figure now (at a guess of the width, the page being
 * detached) and again whenever the real width changes. `hover` shows and hides the tooltip.
 */
function mount(fig, draw) {
  const body = el("div", { class: "chart-body", style: { position: "relative" } });
  const tip = el("div", { class: "tooltip", hidden: true });
  fig.append(body);
  let width = 0;
  const hover = {
    show(x, rows) {
      tip.replaceChildren(...rows.filter(Boolean));
      tip.hidden = false;
      const scale = body.clientWidth / width || 1;
      const px = x * scale;
      const left = px + 14 + tip.offsetWidth > body.clientWidth ? px - 14 - tip.offsetWidth : px + 14;
      tip.style.left = `${Math.max(0, left)}px`;
      tip.style.top = `${PAD.top}px`;
    },
    hide() {
      tip.hidden = true;
    },
  };
  const paint = (w) => {
    w = Math.max(280, Math.floor(w));
    if (w === width) return;
    width = w;
    body.replaceChildren(draw(w, hover), tip);
  };
  paint(640);
  new ResizeObserver((entries) => {
    const w = entries[0].contentRect.width;
    if (w > 0) paint(w);
  }).observe(body);
}

/** The pointer's x in SVG user units. */
function pointerX(svg, e, width) {
  const r = svg.getBoundingClientRect();
  return ((e.clientX - r.left) * width) / (r.width || width);
}

function tipRows(head, rows, total) {
  return [
    el("div", { class: "tt-head" }, head),
    ...rows.map((r) => el("div", { class: "tt-row" }, el("i", { style: { background: r.color } }), el("span", { class: "tt-name" }, r.name), el("span", {}, r.value))),
    total ? el("div", { class: "tt-row tt-total" }, el("span", { class: "tt-name" }, "total"), el("span", {}, total)) : null,
  ];
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

/** Tick labels: the caller's formatter, else a number with a short unit appended. */
function formatter(yFormat, unit) {
  if (yFormat) return yFormat;
  const suffix = unit && unit.length <= 3 ? ` ${unit}` : "";
  return (v) => fmt.num(v) + suffix;
}

/** A step of 1, 2 or 5 x 10^k giving about `count` intervals over `span`. */
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/** A linear scale on nice ticks; the domain widens to whole ticks unless `fixed`. */
function linear(lo, hi, count, fixed) {
  if (!(hi > lo)) hi = lo + (lo === 0 ? 1 : Math.abs(lo));
  const step = niceStep(hi - lo, count);
  if (!fixed) {
    lo = Math.floor(lo / step + 1e-9) * step;
    hi = Math.ceil(hi / step - 1e-9) * step;
  }
  const ticks = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo, hi, ticks };
}

function yAxis(g, ticks, yf, Y, L, R) {
  for (const t of ticks) {
    g.grid.append(el("line", { x1: L, x2: R, y1: Y(t), y2: Y(t) }));
    g.axis.append(el("text", { x: L - 6, y: Y(t) + 4, "text-anchor": "end" }, yf(t)));
  }
}

function labelWidth(labels) {
  return Math.max(...labels.map((s) => String(s).length)) * CHAR_W + 12;
}

function truncate(s, chars) {
  s = String(s);
  return s.length <= chars ? s : `${s.slice(0, Math.max(1, chars - 1))}…`;
}

// ---------------------------------------------------------------------------------------------
// Time in ctx.tz

const partFormatters = new Map();
function parts(ms, opts) {
  const key = ctx.tz + JSON.stringify(opts);
  if (!partFormatters.has(key)) partFormatters.set(key, new Intl.DateTimeFormat("en-US", { timeZone: ctx.tz, hourCycle: "h23", ...opts }));
  return Object.fromEntries(partFormatters.get(key).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
}

const dayLabel = (ms) => {
  const p = parts(ms, { month: "short", day: "numeric" });
  return `${p.month} ${p.day}`;
};
const hmLabel = (ms) => {
  const p = parts(ms, { hour: "2-digit", minute: "2-digit" });
  return `${p.hour}:${p.minute}`;
};

/** Ticks on local boundaries of ctx.tz (whole hours, local midnights...), at most `max`. */
function timeTicks(x0, x1, max) {
  const step = TIME_STEPS.find((s) => (x1 - x0) / s <= max) || Math.ceil((x1 - x0) / max / (7 * DAY)) * 7 * DAY;
  const off = tzOffset(x0);
  const ticks = [];
  for (let local = Math.ceil((x0 + off) / step) * step; ticks.length <= max + 1; local += step) {
    const t = local - tzOffset(local - off);
    if (t > x1) break;
    if (t >= x0) ticks.push(t);
  }
  const midnight = (t) => (t + tzOffset(t)) % DAY === 0;
  return ticks.map((t) => ({ t, label: step >= DAY || midnight(t) ? dayLabel(t) : hmLabel(t), strong: midnight(t) }));
}

/** The tooltip title of a time bucket: "2026-11-25 10:00–10:15" or the day. */
function bucketLabel(t, step) {
  const start = fmt.datetime(t);
  if (step >= DAY) return start.slice(0, 10) + (step > DAY ? ` – ${fmt.datetime(t + step - 1).slice(0, 10)}` : "");
  return `${start.slice(0, 16)}–${fmt.datetime(t + step).slice(11, 16)}`;
}

// ---------------------------------------------------------------------------------------------
// Time charts: lines, stacked bars, stacked areas

function prepareTime(opts) {
  const series = (opts.series || []).map((s, i) => ({
    name: s.name,
    color: colorOf(s, i),
    points: (s.points || []).filter((p) => finite(p[0]) && finite(p[1])).sort((a, b) => a[0] - b[0]),
  }));
  const count = series.reduce((n, s) => n + s.points.length, 0);
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const r = range();
  // The bucket width: given, else the smallest spacing of the data, else the range's step.
  let step = opts.step;
  if (!step) {
    step = Infinity;
    for (let i = 1; i < xs.length; i++) step = Math.min(step, xs[i] - xs[i - 1]);
    if (!Number.isFinite(step)) step = r.stepMs;
  }
  const x0 = Math.min(opts.from ?? r.fromMs, xs[0] ?? Infinity);
  const x1 = Math.max(opts.to ?? r.toMs, (xs.at(-1) ?? -Infinity) + step);
  for (const s of series) s.at = new Map(s.points);
  return { series, count, xs, step, x0, x1 };
}

function timeChart(opts, kind) {
  const d = prepareTime(opts);
  // Counts are 0 in empty buckets: a stack of nothing but zeros is no data.
  if (kind !== "line" && d.series.every((s) => s.points.every((p) => p[1] === 0))) d.count = 0;
  const fig = figure({ ...opts, time: true, count: d.count });
  if (!d.count) return empty(fig);
  if (kind === "area" && d.xs.length < 2) kind = "bars";
  mount(fig, (w, hover) => drawTime(w, hover, d, opts, kind));
  if (d.series.length > 1) fig.append(legend(d.series, opts.highlight));
  return fig;
}

function drawTime(w, hover, { series, xs, step, x0, x1 }, opts, kind) {
  const H = opts.height || 220;
  const stacked = kind !== "line";
  const yf = formatter(opts.yFormat, opts.unit);
  // Stack tops per bucket, bottom series first.
  const tops = stacked ? xs.map((x) => {
    let sum = 0;
    return series.map((s) => (sum += s.at.get(x) || 0));
  }) : null;
  let lo = 0;
  let hi = 0;
  if (stacked) hi = Math.max(...tops.map((t) => t.at(-1)));
  else {
    const vals = series.flatMap((s) => s.points.map((p) => p[1])).concat((opts.thresholds || []).map((t) => t.value));
    lo = Math.min(0, ...vals);
    hi = Math.max(...vals);
  }
  const fixed = opts.yMin != null && opts.yMax != null;
  const ys = linear(opts.yMin ?? lo, opts.yMax ?? hi, Math.max(3, Math.floor((H - 40) / 40)), fixed);
  const L = labelWidth(ys.ticks.map(yf));
  const R = w - PAD.right;
  const T = PAD.top;
  const B = H - PAD.bottom;
  const X = (t) => L + ((t - x0) / (x1 - x0)) * (R - L);
  const Y = (v) => B - ((v - ys.lo) / (ys.hi - ys.lo)) * (B - T);
  const mid = (t) => t + step / 2;

  const g = { grid: el("g", { class: "grid" }), axis: el("g", { class: "axis" }), plot: el("g", {}) };
  yAxis(g, ys.ticks, yf, Y, L, R);
  g.axis.append(el("line", { x1: L, x2: R, y1: B, y2: B }));
  for (const tk of timeTicks(x0, x1, Math.max(2, Math.floor((R - L) / 80)))) {
    const x = X(tk.t);
    g.grid.append(el("line", { x1: x, x2: x, y1: T, y2: B }));
    g.axis.append(el("line", { x1: x, x2: x, y1: B, y2: B + 4 }));
    if (x - tk.label.length * 3.2 > L - 8 && x + tk.label.length * 3.2 < w) {
      g.axis.append(el("text", { x, y: B + 16, "text-anchor": "middle", "font-weight": tk.strong ? 600 : null }, tk.label));
    }
  }

  if (kind === "line") {
    for (const s of series) {
      // Break the line across missing buckets: a rate or percentile has no point there.
      let path = "";
      let prev = null;
      const lone = [];
      s.points.forEach(([t, v], i) => {
        const joined = prev !== null && t - prev <= step * 1.5;
        const next = s.points[i + 1];
        if (!joined && !(next && next[0] - t <= step * 1.5)) lone.push([t, v]);
        path += `${joined ? "L" : "M"}${X(mid(t)).toFixed(1)},${Y(v).toFixed(1)}`;
        prev = t;
      });
      g.plot.append(el("path", { d: path, fill: "none", "stroke-width": 1.8, "stroke-linejoin": "round", style: { stroke: s.color } }));
      for (const [t, v] of xs.length <= 40 ? s.points : lone) g.plot.append(el("circle", { cx: X(mid(t)), cy: Y(v), r: 2.5, style: { fill: s.color } }));
    }
  } else if (kind === "bars") {
    const gap = X(x0 + step) - X(x0) > 6 ? 1 : 0;
    xs.forEach((t, i) => {
      series.forEach((s, j) => {
        const v = s.at.get(t) || 0;
        if (v <= 0) return;
        const top = tops[i][j];
        g.plot.append(el("rect", {
          x: X(t) + gap, width: Math.max(1, X(t + step) - X(t) - 2 * gap), y: Y(top), height: Math.max(0.5, Y(top - v) - Y(top)),
          class: opts.highlight && s.name !== opts.highlight ? "dimmed" : null, style: { fill: s.color },
        }));
      });
    });
  } else {
    series.forEach((s, j) => {
      const top = xs.map((t, i) => `${X(mid(t)).toFixed(1)},${Y(tops[i][j]).toFixed(1)}`);
      const bottom = xs.map((t, i) => `${X(mid(t)).toFixed(1)},${Y(j ? tops[i][j - 1] : 0).toFixed(1)}`).reverse();
      g.plot.append(el("path", { d: `M${top.join("L")}L${bottom.join("L")}Z`, "fill-opacity": 0.82, "stroke-width": 0.8, style: { fill: s.color, stroke: s.color } }));
    });
  }

  for (const th of opts.thresholds || []) {
    if (th.value < ys.lo || th.value > ys.hi) continue;
    g.plot.append(el("g", { class: "threshold" },
      el("line", { x1: L, x2: R, y1: Y(th.value), y2: Y(th.value) }),
      el("text", { x: R - 4, y: Y(th.value) - 4, "text-anchor": "end" }, `${th.label || "threshold"} ${yf(th.value)}`)));
  }

  // Hover: a guide (line charts) or band (bars) at the nearest bucket, with every series' value.
  const guide = el("line", { class: "guide", y1: T, y2: B, visibility: "hidden" });
  const band = el("rect", { class: "hover-band", y: T, height: B - T, visibility: "hidden" });
  const overlay = el("rect", { x: L, y: T, width: R - L, height: B - T, fill: "transparent" });
  const svg = el("svg", { viewBox: `0 0 ${w} ${H}`, role: "img", "aria-label": opts.title }, g.grid, g.plot, g.axis, band, guide, overlay);
  overlay.addEventListener("pointermove", (e) => {
    const xv = x0 + ((pointerX(svg, e, w) - L) / (R - L)) * (x1 - x0);
    let i = 0;
    for (let k = 1; k < xs.length; k++) if (Math.abs(mid(xs[k]) - xv) < Math.abs(mid(xs[i]) - xv)) i = k;
    const t = xs[i];
    if (kind === "bars") {
      band.setAttribute("x", X(t));
      band.setAttribute("width", Math.max(1, X(t + step) - X(t)));
      band.setAttribute("visibility", "visible");
    } else {
      guide.setAttribute("x1", X(mid(t)));
      guide.setAttribute("x2", X(mid(t)));
      guide.setAttribute("visibility", "visible");
    }
    const rows = series.map((s) => ({ name: s.name, color: s.color, value: s.at.has(t) ? yf(s.at.get(t)) : "–" }));
    if (stacked) rows.reverse(); // top of the stack first, as drawn
    hover.show(X(mid(t)), tipRows(bucketLabel(t, step), rows, stacked && series.length > 1 ? yf(tops[i].at(-1)) : null));
  });
  overlay.addEventListener("pointerleave", () => {
    guide.setAttribute("visibility", "hidden");
    band.setAttribute("visibility", "hidden");
    hover.hide();
  });
  return svg;
}

/** Lines over time. series: [{name, points: [[ms, v]], color?}]; thresholds: [{value, label}]. */
export function lineChart(opts) {
  return timeChart(opts, "line");
}

/** Stacked bars per time bucket; `highlight` names a series drawn emphasised. */
export function stackedBars(opts) {
  return timeChart(opts, "bars");
}

/** Stacked areas over time (same inputs as stackedBars). */
export function stackedArea(opts) {
  return timeChart(opts, "area");
}

// ---------------------------------------------------------------------------------------------
// Category charts: grouped bars, histograms

/** Grouped bars per category. series: [{name, values: [..]}] aligned with categories. */
export function barChart({ id, title, unit, categories = [], series = [], yFormat, horizontal = false, height, gapless = false }) {
  const ss = series.map((s, i) => ({ name: s.name, color: colorOf(s, i), values: s.values || [] }));
  const count = ss.reduce((n, s) => n + s.values.filter(finite).length, 0);
  const fig = figure({ id, title, unit, count });
  if (!count) return empty(fig);
  const yf = formatter(yFormat, unit);
  mount(fig, (w, hover) => (horizontal ? drawHBars : drawVBars)(w, hover, { categories, ss, yf, height, gapless, title }));
  if (ss.length > 1) fig.append(legend(ss));
  return fig;
}

function bandHover(svg, hover, bandRect, x, cat, ss, i, yf) {
  const shade = el("rect", { class: "hover-band", ...bandRect, visibility: "hidden" });
  const hit = el("rect", { ...bandRect, fill: "transparent" });
  hit.addEventListener("pointerenter", () => {
    shade.setAttribute("visibility", "visible");
    const rows = ss.map((s) => ({ name: s.name, color: s.color, value: finite(s.values[i]) ? yf(s.values[i]) : "–" }));
    hover.show(x, tipRows(cat, rows));
  });
  hit.addEventListener("pointerleave", () => {
    shade.setAttribute("visibility", "hidden");
    hover.hide();
  });
  svg.append(shade, hit);
}

function maxValue(ss) {
  return Math.max(0, ...ss.flatMap((s) => s.values.filter(finite)));
}

function drawVBars(w, hover, { categories, ss, yf, height, gapless, title }) {
  const H = height || 220;
  const ys = linear(Math.min(0, ...ss.flatMap((s) => s.values.filter(finite))), maxValue(ss), Math.max(3, Math.floor((H - 40) / 40)), false);
  const L = labelWidth(ys.ticks.map(yf));
  const R = w - PAD.right;
  const T = PAD.top;
  const B = H - PAD.bottom;
  const Y = (v) => B - ((v - ys.lo) / (ys.hi - ys.lo)) * (B - T);
  const band = (R - L) / Math.max(1, categories.length);
  const inner = gapless ? band - 1 : band * 0.78;
  const g = { grid: el("g", { class: "grid" }), axis: el("g", { class: "axis" }), plot: el("g", {}) };
  yAxis(g, ys.ticks, yf, Y, L, R);
  g.axis.append(el("line", { x1: L, x2: R, y1: Y(0), y2: Y(0) }));
  // Label every k-th category when they would collide.
  const longest = Math.max(...categories.map((c) => String(c).length));
  const every = Math.max(1, Math.ceil((Math.min(longest, 14) * CHAR_W + 6) / band));
  const svg = el("svg", { viewBox: `0 0 ${w} ${H}`, role: "img", "aria-label": title }, g.grid, g.plot, g.axis);
  categories.forEach((cat, i) => {
    const x = L + i * band + (band - inner) / 2;
    ss.forEach((s, j) => {
      const v = s.values[i];
      if (!finite(v)) return;
      const bw = inner / ss.length;
      g.plot.append(el("rect", { x: x + j * bw, width: Math.max(1, bw - (ss.length > 1 ? 1 : 0)), y: Math.min(Y(v), Y(0)), height: Math.max(0.5, Math.abs(Y(0) - Y(v))), style: { fill: s.color } }));
    });
    if (i % every === 0) g.axis.append(el("text", { x: L + (i + 0.5) * band, y: B + 16, "text-anchor": "middle" }, truncate(cat, Math.max(4, Math.floor((band * every) / CHAR_W) - 1))));
    bandHover(svg, hover, { x: L + i * band, y: T, width: band, height: B - T }, L + (i + 1) * band, String(cat), ss, i, yf);
  });
  return svg;
}

function drawHBars(w, hover, { categories, ss, yf, title }) {
  const barH = 13;
  const rowH = ss.length * barH + 10;
  const T = PAD.top;
  const B = T + categories.length * rowH;
  const H = B + PAD.bottom;
  const L = Math.min(200, labelWidth(categories));
  const R = w - PAD.right - 8;
  const xs = linear(0, maxValue(ss), Math.max(2, Math.floor((R - L) / 90)), false);
  const X = (v) => L + ((v - xs.lo) / (xs.hi - xs.lo)) * (R - L);
  const g = { grid: el("g", { class: "grid" }), axis: el("g", { class: "axis" }), plot: el("g", {}) };
  for (const t of xs.ticks) {
    g.grid.append(el("line", { x1: X(t), x2: X(t), y1: T, y2: B }));
    g.axis.append(el("text", { x: X(t), y: B + 16, "text-anchor": "middle" }, yf(t)));
  }
  g.axis.append(el("line", { x1: L, x2: L, y1: T, y2: B }));
  const svg = el("svg", { viewBox: `0 0 ${w} ${H}`, role: "img", "aria-label": title }, g.grid, g.plot, g.axis);
  categories.forEach((cat, i) => {
    const y = T + i * rowH + 5;
    g.axis.append(el("text", { x: L - 6, y: y + (ss.length * barH) / 2 + 4, "text-anchor": "end" }, truncate(cat, Math.floor((L - 12) / CHAR_W))));
    ss.forEach((s, j) => {
      const v = s.values[i];
      if (finite(v)) g.plot.append(el("rect", { x: L, y: y + j * barH, width: Math.max(0.5, X(v) - L), height: barH - 2, style: { fill: s.color } }));
    });
    bandHover(svg, hover, { x: L, y: T + i * rowH, width: R - L, height: rowH }, L + 10, String(cat), ss, i, yf);
  });
  return svg;
}

/** Bars per bin. bins: [{label, values: [one per series]}], series: [names]. */
export function histogram({ id, title, unit, bins = [], series = [], yFormat, height }) {
  return barChart({
    id, title, unit, yFormat, height, gapless: series.length === 1,
    categories: bins.map((b) => b.label),
    series: series.map((name, i) => ({ name, values: bins.map((b) => (b.values || [])[i]) })),
  });
}

// ---------------------------------------------------------------------------------------------
// Waterfall and sparkline

/** A request's stages: rows [{label, start, duration, highlight}] as bars offset by start (ms). */
export function waterfall({ id, title, rows = [], unit = "ms" }) {
  const ok = rows.filter((r) => finite(r.start) && finite(r.duration));
  const fig = figure({ id, title, unit, count: ok.length });
  if (!ok.length) return empty(fig);
  mount(fig, (w, hover) => {
    const rowH = 22;
    const T = PAD.top;
    const B = T + ok.length * rowH;
    const H = B + PAD.bottom;
    const L = Math.min(200, labelWidth(ok.map((r) => r.label)));
    const R = w - PAD.right - 60; // room for the duration printed after the last bar
    const xs = linear(0, Math.max(...ok.map((r) => r.start + r.duration)), Math.max(2, Math.floor((R - L) / 90)), false);
    const X = (v) => L + (v / xs.hi) * (R - L);
    const g = { grid: el("g", { class: "grid" }), axis: el("g", { class: "axis" }), plot: el("g", {}) };
    for (const t of xs.ticks) {
      g.grid.append(el("line", { x1: X(t), x2: X(t), y1: T, y2: B }));
      g.axis.append(el("text", { x: X(t), y: B + 16, "text-anchor": "middle" }, fmt.ms(t)));
    }
    const svg = el("svg", { viewBox: `0 0 ${w} ${H}`, role: "img", "aria-label": title }, g.grid, g.plot, g.axis);
    ok.forEach((r, i) => {
      const y = T + i * rowH;
      const color = r.highlight ? "var(--series-2)" : "var(--series-1)";
      g.axis.append(el("text", { x: L - 6, y: y + 15, "text-anchor": "end", "font-weight": r.highlight ? 700 : null }, truncate(r.label, Math.floor((L - 12) / CHAR_W))));
      g.plot.append(el("rect", { x: X(r.start), y: y + 4, width: Math.max(1, X(r.start + r.duration) - X(r.start)), height: rowH - 8, rx: 2, style: { fill: color } }));
      g.axis.append(el("text", { x: X(r.start + r.duration) + 5, y: y + 15 }, fmt.ms(r.duration)));
      const hit = el("rect", { x: L, y, width: w - L, height: rowH, fill: "transparent" });
      hit.addEventListener("pointerenter", () => hover.show(X(r.start + r.duration), tipRows(r.label, [
        { name: "start", color, value: fmt.ms(r.start) },
        { name: "duration", color, value: fmt.ms(r.duration) },
        { name: "end", color, value: fmt.ms(r.start + r.duration) },
      ])));
      hit.addEventListener("pointerleave", () => hover.hide());
      svg.append(hit);
    });
    return svg;
  });
  return fig;
}

/** A tiny inline trend line ([[x, v]]) for tiles; stretches to its box, no axes. */
export function sparkline(points) {
  const pts = (points || []).filter((p) => finite(p[0]) && finite(p[1]));
  const svg = el("svg", { class: "sparkline", viewBox: "0 0 100 26", preserveAspectRatio: "none", "aria-hidden": "true" });
  if (pts.length < 2) return svg;
  const x0 = pts[0][0];
  const x1 = pts.at(-1)[0];
  const hi = Math.max(...pts.map((p) => p[1]));
  const lo = Math.min(0, ...pts.map((p) => p[1]));
  const span = hi - lo || 1;
  const d = pts.map(([x, v], i) => `${i ? "L" : "M"}${(((x - x0) / (x1 - x0 || 1)) * 100).toFixed(2)},${(24 - ((v - lo) / span) * 22).toFixed(2)}`).join("");
  svg.append(el("path", { d, fill: "none", stroke: "currentColor", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
  return svg;
}
