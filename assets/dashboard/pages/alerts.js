// Alerts: what is firing now, silences (list, remove, create), the notification history, every
// delivery attempt, and the rules as the server understood them.
import { el, api, apiSend, range, setParams, fmt, section, table, badge, errorBox } from "../app.js";

const SEVERITY_STATE = { critical: "critical", warning: "warning", info: "none" };
const NOTICE_STATE = { firing: "critical", reminder: "warning", resolved: "ok" };
const DURATIONS = [["30m", 30], ["1h", 60], ["2h", 120], ["4h", 240], ["8h", 480], ["24h", 1440], ["3d", 4320], ["7d", 10080]];

const S = {
  form: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "6px 14px" },
  label: { display: "flex", alignItems: "center", gap: "6px", color: "var(--muted)" },
  chip: { display: "inline-block", padding: "0 6px", marginRight: "4px", borderRadius: "4px", background: "var(--bg)", border: "1px solid var(--border)", whiteSpace: "nowrap" },
  small: { fontSize: "0.86rem" },
  bad: { color: "var(--critical)" },
  nowrap: { whiteSpace: "nowrap" },
};

const severity = (s) => badge(s ?? "–", SEVERITY_STATE[s] ?? "none");
const toMs = (text) => (text ? Date.parse(text) : null);

// A rule's value in the unit of its expression's metric.
function valueFmt(expr = "") {
  if (/latency|stage_p95|ttft/.test(expr)) return fmt.ms;
  if (/error_rate|satisfaction_rate|budget_ratio|%/.test(expr)) return fmt.pct;
  if (/cost|budget\(/.test(expr)) return fmt.usd;
  if (/request_rate/.test(expr)) return (x) => (x == null ? fmt.num(x) : `${fmt.num(x)}/s`);
  if (/avg_quality|score_avg/.test(expr)) return fmt.score;
  return fmt.num;
}

function valueVsThreshold(a) {
  const f = valueFmt(a.expr);
  return el("span", { style: S.nowrap }, el("strong", {}, f(a.value)), el("span", { class: "muted" }, ` vs ${f(a.threshold)}`));
}

function labelChips(labels) {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) return el("span", { class: "muted" }, "(all)");
  return el("span", {}, entries.map(([k, v]) => el("code", { style: S.chip }, `${k}=${v}`)));
}

function when(text) {
  const ms = toMs(text);
  if (ms == null) return "–";
  return el("span", { style: S.nowrap, title: text }, fmt.datetime(ms), el("br"), el("span", { class: "muted" }, fmt.ago(ms)));
}

function duration(ms) {
  if (ms == null) return "–";
  if (ms === 0) return "0";
  const units = [["d", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]];
  for (const [u, size] of units) if (ms % size === 0) return `${fmt.int(ms / size)} ${u}`;
  return fmt.ms(ms);
}

// Long tables show their first rows (and any highlighted one: a failed delivery), with a toggle
// that survives auto-refresh.
const expanded = new Set();
function collapsible(key, node, limit = 20) {
  const rows = [...node.querySelectorAll("tbody tr")];
  if (rows.length <= limit) return node;
  const button = el("button", { type: "button", class: "button", style: { marginTop: "8px" } });
  const apply = () => {
    const open = expanded.has(key);
    rows.forEach((tr, i) => { tr.hidden = !open && i >= limit && !tr.classList.contains("highlight"); });
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

// ---- the silence form, kept across auto-refresh so typing survives

let silenceForm = null;
let refocus = null;

function buildSilenceForm() {
  const alertname = el("input", { type: "text", name: "alertname", list: "alert-rule-names", size: "24", placeholder: "rule name" });
  const sev = el("select", { name: "severity" }, el("option", { value: "" }, "any"), ["critical", "warning", "info"].map((s) => el("option", { value: s }, s)));
  const labels = el("input", { type: "text", name: "labels", size: "28", placeholder: "feature=chat, model=gpt-4o" });
  const dur = el("select", { name: "duration" }, DURATIONS.map(([label, min]) => el("option", { value: String(min) }, label)));
  dur.value = "60";
  const until = el("input", { type: "text", name: "until", size: "24", placeholder: "or until (RFC 3339)" });
  const comment = el("input", { type: "text", name: "comment", size: "30", placeholder: "why (e.g. ticket)" });
  const message = el("div", { "data-form-error": "silence", role: "status", style: { flexBasis: "100%" }, hidden: true });
  const submit = el("button", { type: "submit", class: "button" }, "Create silence");
  const form = el("form", { style: S.form, "data-form": "silence", autocomplete: "off" },
    el("label", { style: S.label }, "alertname", alertname),
    el("label", { style: S.label }, "severity", sev),
    el("label", { style: S.label }, "labels", labels),
    el("label", { style: S.label }, "for", dur),
    el("label", { style: S.label }, until),
    el("label", { style: S.label }, "comment", comment),
    submit,
    el("datalist", { id: "alert-rule-names" }),
    message,
  );
  const fail = (text) => {
    message.className = "error-box";
    message.textContent = text;
    message.hidden = false;
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const matchers = {};
    if (alertname.value.trim()) matchers.alertname = alertname.value.trim();
    if (sev.value) matchers.severity = sev.value;
    for (const part of labels.value.split(",").map((p) => p.trim()).filter(Boolean)) {
      const i = part.indexOf("=");
      if (i <= 0) return fail(`labels: expected label=value, got "${part}"`);
      matchers[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
    const body = {
      matchers,
      until: until.value.trim() || Date.now() + Number(dur.value) * 60000,
      comment: comment.value.trim() || null,
    };
    submit.disabled = true;
    try {
      const { id } = await apiSend("POST", "/api/v1/silences", body);
      form.reset();
      dur.value = "60";
      message.className = "muted";
      message.textContent = `silence #${id} created`;
      message.hidden = false;
      setParams({}, { replace: true });
    } catch (err) {
      fail(err.message);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function keptSilenceForm(ruleNames) {
  if (!silenceForm) silenceForm = buildSilenceForm();
  const active = document.activeElement;
  if (active && silenceForm.contains(active)) refocus = active;
  silenceForm.querySelector("datalist").replaceChildren(...ruleNames.map((n) => el("option", { value: n })));
  return silenceForm;
}

// Prefills the form to silence one alert (its rule and group labels).
function prefill(a) {
  const f = silenceForm;
  if (!f) return;
  f.elements.alertname.value = a.rule;
  f.elements.severity.value = "";
  f.elements.labels.value = Object.entries(a.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
  f.scrollIntoView({ behavior: "smooth", block: "center" });
  f.elements.comment.focus({ preventScroll: true });
}

// ---- sections

// The active silences whose every matcher matches the alert (alertname = its rule).
function silencedBy(a, silences) {
  const value = (k) => (k === "alertname" ? a.rule : k === "severity" ? a.severity : a.labels?.[k]);
  return silences.filter((s) => s.active && Object.entries(s.matchers ?? {}).every(([k, v]) => value(k) === v));
}

function activeSection(alerts, silences) {
  const order = { critical: 0, warning: 1, info: 2 };
  const rows = alerts.slice().sort((a, b) => (order[a.severity] ?? 3) - (order[b.severity] ?? 3) || toMs(a.since) - toMs(b.since));
  const firing = rows.filter((a) => a.state === "firing").length;
  return section(`Active alerts (${fmt.int(firing)} firing, ${fmt.int(rows.length - firing)} pending)`,
    table([
      { key: "severity", label: "severity", render: (a) => severity(a.severity) },
      { key: "state", label: "state", render: (a) => el("span", {}, badge(a.state, a.state === "firing" ? "critical" : "warning"),
        silencedBy(a, silences).map((s) => [" ", badge(`silenced #${s.id}`, "none")])) },
      { key: "rule", label: "alert", render: (a) => el("div", {}, el("strong", {}, a.rule), el("div", { class: "muted", style: S.small }, a.summary)) },
      { key: "labels", label: "labels", render: (a) => labelChips(a.labels) },
      { key: "value", label: "value vs threshold", align: "right", render: valueVsThreshold },
      { key: "since", label: "since", render: (a) => when(a.since) },
      { key: "last_notified", label: "last notified", render: (a) => el("div", {}, when(a.last_notified),
        a.state === "firing" && (a.last_notified == null || toMs(a.last_notified) < toMs(a.since))
          ? el("div", { style: { ...S.small, color: "var(--warning)" } }, "not announced since it started (cooldown or silence)") : null) },
      { key: "action", label: "", render: (a) => el("button", { type: "button", class: "button", on: { click: () => prefill(a) } }, "Silence…") },
    ], rows, { empty: "nothing pending or firing" }),
  );
}

function silencesSection(silences, ruleNames) {
  const remove = (s) => async (e) => {
    const button = e.currentTarget;
    button.disabled = true;
    try {
      await apiSend("DELETE", `/api/v1/silences/${encodeURIComponent(s.id)}`);
      setParams({}, { replace: true });
    } catch (err) {
      button.disabled = false;
      button.after(el("div", { class: "error-box", style: { marginTop: "4px" } }, err.message));
    }
  };
  const rows = silences.slice().sort((a, b) => Number(b.active) - Number(a.active) || toMs(b.until) - toMs(a.until));
  return section(`Silences (${fmt.int(silences.filter((s) => s.active).length)} active)`,
    table([
      { key: "id", label: "id", render: (s) => `#${s.id}` },
      { key: "matchers", label: "matches alerts with", render: (s) => labelChips(s.matchers) },
      { key: "active", label: "state", render: (s) => (s.active ? badge("active", "warning") : badge("expired", "none")) },
      { key: "until", label: "until", render: (s) => when(s.until) },
      { key: "comment", label: "comment", render: (s) => s.comment || el("span", { class: "muted" }, "–") },
      { key: "created", label: "created", render: (s) => when(s.created) },
      { key: "remove", label: "", render: (s) => el("button", { type: "button", class: "button", "data-silence": String(s.id), on: { click: remove(s) } }, "Remove") },
    ], rows, { empty: "no silences" }),
    el("h3", { style: { marginTop: "14px" } }, "New silence"),
    el("p", { class: "muted", style: { ...S.small, margin: "0 0 8px" } }, "An alert whose labels match every field given is recorded but not sent until the silence ends."),
    keptSilenceForm(ruleNames),
  );
}

function historySection(history, r) {
  return section(`Notification history (${fmt.int(history.length)}, ${r.label})`,
    collapsible("history", table([
      { key: "at", label: "at", render: (h) => when(h.at) },
      { key: "notice", label: "notice", render: (h) => badge(h.notice, NOTICE_STATE[h.notice] ?? "none") },
      { key: "severity", label: "severity", render: (h) => severity(h.severity) },
      { key: "rule", label: "alert", render: (h) => el("div", {}, el("strong", {}, h.rule), el("div", { class: "muted", style: S.small }, h.summary)) },
      { key: "labels", label: "labels", render: (h) => labelChips(h.labels) },
      { key: "value", label: "value vs threshold", align: "right", render: valueVsThreshold },
      { key: "channels", label: "channels", render: (h) => (h.channels ?? []).join(", ") || "–" },
      { key: "silenced_by", label: "silenced", render: (h) => (h.silenced_by != null ? badge(`by #${h.silenced_by}`, "none") : "") },
    ], history, { empty: "no notifications in this range" })),
  );
}

function deliveriesSection(deliveries, history, r) {
  const byId = new Map(history.map((h) => [h.id, h]));
  const failed = deliveries.filter((d) => !d.ok);
  const perChannel = {};
  for (const d of deliveries) {
    const c = (perChannel[d.channel] ??= { ok: 0, failed: 0 });
    c[d.ok ? "ok" : "failed"] += 1;
  }
  const summary = Object.entries(perChannel).map(([ch, c]) =>
    el("span", { style: S.chip }, `${ch}: ${fmt.int(c.ok)} delivered`, c.failed ? el("strong", { style: S.bad }, `, ${fmt.int(c.failed)} failed`) : ""));
  return section(`Deliveries (${fmt.int(deliveries.length)} attempts, ${fmt.int(failed.length)} failed, ${r.label})`,
    summary.length ? el("p", { style: { margin: "0 0 8px" } }, summary) : null,
    collapsible("deliveries", table([
      { key: "at", label: "at", render: (d) => when(d.at) },
      { key: "channel", label: "channel" },
      { key: "history_id", label: "notification", render: (d) => {
        const h = byId.get(d.history_id);
        return h ? el("span", {}, `#${d.history_id} `, el("strong", {}, h.rule), el("span", { class: "muted" }, ` (${h.notice})`)) : `#${d.history_id}`;
      } },
      { key: "attempt", label: "attempt", fmt: fmt.int, align: "right" },
      { key: "ok", label: "outcome", render: (d) => (d.ok ? badge("delivered", "ok") : badge("failed", "critical")) },
      { key: "status", label: "HTTP status", align: "right", render: (d) => (d.status == null ? "–" : String(d.status)) },
      { key: "duration_ms", label: "took", fmt: fmt.ms, align: "right" },
      { key: "error", label: "error", render: (d) => (d.error ? el("span", { style: S.bad }, d.error) : "") },
    ], deliveries, { empty: "no delivery attempts in this range", highlight: (d) => !d.ok })),
  );
}

function rulesSection(rules, alerts) {
  const firing = {};
  for (const a of alerts) if (a.state === "firing") firing[a.rule] = (firing[a.rule] ?? 0) + 1;
  const order = { critical: 0, warning: 1, info: 2 };
  const rows = (rules.rules ?? []).slice().sort((a, b) => Number(a.builtin) - Number(b.builtin) || (order[a.severity] ?? 3) - (order[b.severity] ?? 3));
  return section(`Rules (${fmt.int(rows.length)}, evaluated every ${duration(rules.eval_interval_ms)})`,
    table([
      { key: "name", label: "rule", render: (x) => el("span", {}, el("strong", {}, x.name), firing[x.name] ? [" ", badge(`${firing[x.name]} firing`, "critical")] : null) },
      { key: "severity", label: "severity", render: (x) => severity(x.severity) },
      { key: "expr", label: "expression", render: (x) => el("code", {}, x.expr) },
      { key: "for_ms", label: "for", align: "right", render: (x) => duration(x.for_ms) },
      { key: "cooldown_ms", label: "cooldown", align: "right", render: (x) => duration(x.cooldown_ms) },
      { key: "channels", label: "channels", render: (x) => (x.channels ?? []).join(", ") || "–" },
      { key: "builtin", label: "origin", render: (x) => (x.builtin ? "built-in" : "config") },
    ], rows, { empty: "no rules configured" }),
  );
}

async function settle(title, promise, build) {
  try {
    return build(await promise);
  } catch (err) {
    console.error(err);
    return section(title, errorBox(err));
  }
}

export default {
  title: "Alerts",
  async render(root) {
    const r = range();
    const q = { from: r.from, to: r.to };
    const alertsP = api("/api/v1/alerts").then((x) => x.alerts ?? []);
    const rulesP = api("/api/v1/alerts/rules");
    const historyP = api("/api/v1/alerts/history", { ...q, limit: 500 }).then((x) => x.history ?? []);
    const deliveriesP = api("/api/v1/alerts/deliveries", { ...q, limit: 500 }).then((x) => x.deliveries ?? []);
    const silencesP = api("/api/v1/silences").then((x) => x.silences ?? []);
    const ruleNamesP = rulesP.then((x) => (x.rules ?? []).map((rule) => rule.name)).catch(() => []);
    const alertsOrNone = alertsP.catch(() => []);
    const historyOrNone = historyP.catch(() => []);

    const parts = await Promise.all([
      settle("Active alerts", Promise.all([alertsP, silencesP.catch(() => [])]), ([a, s]) => activeSection(a, s)),
      settle("Silences", Promise.all([silencesP, ruleNamesP]), ([s, names]) => silencesSection(s, names)),
      settle("Notification history", historyP, (h) => historySection(h, r)),
      settle("Deliveries", Promise.all([deliveriesP, historyOrNone]), ([d, h]) => deliveriesSection(d, h, r)),
      settle("Rules", Promise.all([rulesP, alertsOrNone]), ([x, a]) => rulesSection(x, a)),
    ]);
    root.append(...parts);
    const a = refocus;
    refocus = null;
    if (a) setTimeout(() => a.isConnected && a.focus(), 0);
  },
};

