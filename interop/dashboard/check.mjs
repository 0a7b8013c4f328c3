// The dashboard in a real browser: Debian's chromium, headless, driven by playwright-core,
// against a running `llmwatch demo`. Run by interop/dashboard.sh, which sets:
//   LLMWATCH_URL         the demo server (http://127.0.0.1:PORT)
//   DASHBOARD_NODE_DIR   the directory whose node_modules holds playwright-core
//   SCREENSHOT_DIR       where the screenshots go (target/screenshots)
//   CHROMIUM             the browser (default /usr/bin/chromium)
// Prints one line per check, `ok   NAME` or `FAIL NAME: why`, and keeps going after a failure;
// the caller counts them (indented lines in parentheses are information). Exits 1 if any check
// failed. Every wait is bounded.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

const base = (process.env.LLMWATCH_URL || "").replace(/\/$/, "");
const nodeDir = resolve(process.env.DASHBOARD_NODE_DIR || ".");
const shots = process.env.SCREENSHOT_DIR || "target/screenshots";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!base) {
  console.log("FAIL setup: LLMWATCH_URL is not set");
  process.exit(1);
}
const { chromium } = createRequire(join(nodeDir, "package.json"))("playwright-core");
mkdirSync(shots, { recursive: true });

const READY_MS = 30_000; // a page's first render
const CHECK_MS = 60_000; // one whole check
const TOTAL_MS = 200_000; // the whole run (dashboard.sh also bounds it from outside)

let passed = 0;
let failed = 0;
const ok = (name) => { passed++; console.log(`ok   ${name}`); };
const bad = (name, why) => { failed++; console.log(`FAIL ${name}: ${String(why).replace(/\s+/g, " ").trim()}`); };

const hardStop = setTimeout(() => {
  bad("total time", `the run took longer than ${TOTAL_MS / 1000} s; stopped`);
  process.exit(1);
}, TOTAL_MS);
hardStop.unref();

// A check: fn throws (or rejects) with the reason; bounded by CHECK_MS.
async function check(name, fn) {
  let timer;
  try {
    const info = await Promise.race([
      fn(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_MS / 1000} s`)), CHECK_MS); }),
    ]);
    ok(name);
    if (typeof info === "string" && info) console.log(`     (${info})`);
    return true;
  } catch (e) {
    bad(name, e && e.message ? e.message.split("\n")[0] : e);
    return false;
  } finally {
    clearTimeout(timer);
  }
}
const assert = (cond, why) => { if (!cond) throw new Error(why); };

async function apiJson(path) {
  const r = await fetch(base + path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// ---- browser ----------------------------------------------------------------------------
let browser;
await check(`chromium launches (${executablePath}, headless)`, async () => {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30_000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
  return `${browser.version()}, playwright-core ${createRequire(join(nodeDir, "package.json"))("playwright-core/package.json").version}`;
});
if (!browser) process.exit(1);
const newContext = () => browser.newContext({
  viewport: { width: 1366, height: 900 },
  colorScheme: "light", // the default theme follows prefers-color-scheme
  timezoneId: "UTC", // the dashboard must label times in the server's zone, not the browser's
  locale: "en-US",
});
const context = await newContext();

// A fresh tab with its problems recorded: console errors, uncaught exceptions, failed requests
// and HTTP errors. Each check uses its own tab, so nothing of one check leaks into the next.
async function openPage(ctx = context) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  const api = []; // every /api/ request: {url, method, at}
  page.on("console", (m) => {
    if (m.type() === "error") {
      const loc = m.location();
      problems.push({ kind: "console", text: `console error: ${m.text()}${loc && loc.url ? ` (${loc.url.replace(base, "")}:${loc.lineNumber})` : ""}` });
    }
  });
  page.on("pageerror", (e) => problems.push({ kind: "pageerror", text: `uncaught: ${e.message}` }));
  page.on("requestfailed", (r) => problems.push({
    kind: "requestfailed", aborted: /ERR_ABORTED/.test(r.failure()?.errorText || ""),
    text: `request failed: ${r.method()} ${r.url().replace(base, "")} (${r.failure()?.errorText})`,
  }));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push({ kind: "http", text: `HTTP ${r.status()}: ${r.request().method()} ${r.url().replace(base, "")}` });
  });
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/api/")) api.push({ url: u, method: r.method(), at: Date.now() });
  });
  page.on("dialog", (d) => d.accept().catch(() => {})); // a "really delete?" confirm()
  return { page, problems, api };
}
async function closePage(p) {
  p.page.removeAllListeners();
  await p.page.close().catch(() => {});
}
// The problems recorded so far, as one message; `tolerateAborted` lets a check that changes
// filters mid-render accept the app cancelling its own superseded fetches.
function problemText(p, { tolerateAborted = false } = {}) {
  const list = p.problems.filter((x) => !(tolerateAborted && x.kind === "requestfailed" && x.aborted));
  const uniq = [...new Set(list.map((x) => x.text))];
  return uniq.length ? uniq.slice(0, 6).join("; ") + (uniq.length > 6 ? `; ... (${uniq.length} in all)` : "") : "";
}
function assertNoProblems(p, opts) {
  const t = problemText(p, opts);
  assert(!t, t);
}

async function bodyState(page) {
  return page.evaluate(() => `body data-page=${document.body?.dataset.page ?? "(unset)"} data-ready=${document.body?.dataset.ready ?? "(unset)"}`).catch((e) => `(${e.message})`);
}
async function waitReady(p, name, timeout = READY_MS) {
  try {
    await p.page.waitForSelector(`body[data-page="${name}"][data-ready="true"]`, { state: "attached", timeout });
  } catch {
    const extra = problemText(p);
    throw new Error(`body[data-page="${name}"][data-ready="true"] not reached within ${timeout / 1000} s (${await bodyState(p.page)})${extra ? `; ${extra}` : ""}`);
  }
}
// Let the page's last fetches settle (bounded; the live demo may keep it from ever idling).
async function settle(page, ms = 5_000) {
  await page.waitForLoadState("networkidle", { timeout: ms }).catch(() => {});
}

// Every chart on the page: its markers and how many drawn marks its svg has: shapes outside the
// axes, gridlines, thresholds, legend and tooltip that are visible, painted (a fill or stroke that
// is not none/transparent: hover overlays are transparent) and have a non-zero size.
async function charts(page) {
  return page.$$eval("figure.chart", (figs) => figs.map((f) => {
    const svg = f.querySelector("svg");
    const skip = ".axis, .axes, .grid, .gridlines, .legend, .tooltip, .threshold, .guide, .hover-band, defs, clipPath, mask, marker, pattern";
    const clear = (c) => !c || c === "none" || c === "transparent" || /^rgba\(.*,\s*0\)$/.test(c);
    let marks = 0;
    if (svg) {
      for (const e of svg.querySelectorAll("path, rect, circle, polyline, polygon, ellipse")) {
        if (e.closest(skip)) continue;
        const cs = getComputedStyle(e);
        if (cs.visibility === "hidden" || cs.display === "none" || Number(cs.opacity) === 0) continue;
        const filled = !clear(cs.fill) && Number(cs.fillOpacity) > 0;
        const stroked = !clear(cs.stroke) && Number(cs.strokeOpacity) > 0 && parseFloat(cs.strokeWidth) > 0;
        if (!filled && !stroked) continue;
        let b;
        try { b = e.getBBox(); } catch { continue; }
        if (b.width > 0 || b.height > 0) marks++;
      }
    }
    const legend = [...f.querySelectorAll(".legend")].map((x) => x.textContent).join(" ");
    const box = f.getBoundingClientRect();
    return {
      id: f.dataset.chart || "(no data-chart)",
      empty: f.dataset.empty,
      points: Number(f.dataset.points),
      hasSvg: !!svg,
      marks,
      caption: f.querySelector("figcaption")?.textContent?.trim() || "",
      legend,
      text: [...f.querySelectorAll("svg text, .legend")].map((x) => x.textContent).join(" "),
      visible: box.height > 0 && box.width > 0,
    };
  }));
}
function assertChartsDrawn(list, { need }) {
  const full = list.filter((c) => c.empty === "false");
  if (need) assert(full.length > 0, `no figure.chart[data-empty="false"] (charts: ${list.map((c) => `${c.id}:${c.empty}`).join(", ") || "none"})`);
  for (const c of list) {
    assert(c.empty === "true" || c.empty === "false", `figure ${c.id}: data-empty is ${JSON.stringify(c.empty)}, not "true"/"false"`);
    assert(c.caption, `figure ${c.id}: no figcaption text`);
  }
  for (const c of full) {
    assert(c.hasSvg, `figure ${c.id}: data-empty="false" but no svg`);
    assert(c.points > 0, `figure ${c.id}: data-empty="false" but data-points=${c.points}`);
    assert(c.marks > 0, `figure ${c.id}: data-empty="false" but its svg draws no marks beyond axes/grid`);
  }
  return full;
}
// What the page shows (its main element, without the shell's toolbar and "last updated").
async function mainText(page) {
  return page.evaluate(() => (document.querySelector("main") || document.body).innerText);
}
async function visibleErrorBoxes(page) {
  return page.$$eval(".error, .error-box, .errorbox, [role='alert']", (els) => els
    .filter((e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden")
    .map((e) => e.textContent.trim().slice(0, 160)));
}

// ---- reference data from the API ----------------------------------------------------------
let models = [];
let features = [];
await check("demo API answers (models and features for the filter checks)", async () => {
  models = (await apiJson("/api/v1/reports/cost?group_by=model")).groups.map((g) => g.key).filter((k) => k && k !== "(none)");
  features = (await apiJson("/api/v1/reports/cost?group_by=feature")).groups.map((g) => g.key).filter((k) => k && k !== "(none)");
  assert(models.length > 0 && features.length > 0, `models ${models.length}, features ${features.length}`);
});

// ---- 1. every page loads clean, charts drawn, screenshot ---------------------------------
const pages = [
  { name: "overview", path: "/", charts: true },
  { name: "cost", path: "/cost", charts: true },
  { name: "latency", path: "/latency", charts: true },
  { name: "quality", path: "/quality", charts: true },
  { name: "drift", path: "/drift", charts: true },
  { name: "alerts", path: "/alerts", charts: false },
  { name: "requests", path: "/requests", charts: false },
];
for (const pg of pages) {
  const p = await openPage();
  try {
    const loaded = await check(`${pg.name}: loads (${pg.path}?range=7d) with no console error and no failed request`, async () => {
      const resp = await p.page.goto(`${base}${pg.path}?range=7d`, { waitUntil: "load", timeout: READY_MS });
      assert(resp && resp.status() === 200, `GET ${pg.path}: HTTP ${resp && resp.status()}`);
      await waitReady(p, pg.name);
      await settle(p.page);
      assertNoProblems(p);
    });
    if (!loaded) {
      await p.page.screenshot({ path: join(shots, `${pg.name}.png`), fullPage: true }).catch(() => {});
      continue;
    }
    await check(`${pg.name}: ${pg.charts ? "charts render non-empty with drawn marks" : "any chart present is drawn"}`, async () => {
      const list = await charts(p.page);
      const full = assertChartsDrawn(list, { need: pg.charts });
      if (pg.charts) assert(full.some((c) => c.visible), "no non-empty chart is visible");
      return list.length ? `charts: ${list.map((c) => `${c.id} ${c.empty === "false" ? `${c.points} points, ${c.marks} marks` : "empty"}`).join("; ")}` : "no charts";
    });
    await check(`${pg.name}: no error box shown`, async () => {
      const boxes = await visibleErrorBoxes(p.page);
      assert(boxes.length === 0, `${boxes.length} shown: ${boxes.slice(0, 3).join(" | ")}`);
    });
    await check(`${pg.name}: the nav marks it as the current page`, async () => {
      const cur = await p.page.$$eval("a[aria-current='page']", (as) => as.map((a) => new URL(a.href).pathname));
      assert(cur.length === 1 && cur[0] === pg.path, `a[aria-current="page"] hrefs: ${JSON.stringify(cur)}`);
    });
    await check(`${pg.name}: screenshot ${join(shots, `${pg.name}.png`)}`, async () => {
      await p.page.screenshot({ path: join(shots, `${pg.name}.png`), fullPage: true, timeout: 20_000 });
      assertNoProblems(p); // nothing went wrong after the first checks either
    });
  } finally {
    await closePage(p);
  }
}

// ---- 2. dark theme: toggled, persisted, screenshots (own context: its own localStorage) ----
{
  const darkCtx = await newContext();
  const p = await openPage(darkCtx);
  const bg = () => p.page.evaluate(() => {
    const b = getComputedStyle(document.body).backgroundColor;
    const transparent = (c) => c === "transparent" || /rgba\(.*,\s*0\)$/.test(c);
    return transparent(b) ? getComputedStyle(document.documentElement).backgroundColor : b;
  });
  try {
    let lightBg;
    const toggled = await check("theme: #theme-toggle switches the overview to dark (dataset.theme, background)", async () => {
      await p.page.goto(`${base}/?range=7d`, { waitUntil: "load", timeout: READY_MS });
      await waitReady(p, "overview");
      await settle(p.page);
      const before = await p.page.evaluate(() => document.documentElement.dataset.theme);
      assert(before === "light", `with prefers-color-scheme: light, documentElement.dataset.theme is ${JSON.stringify(before)}, not "light"`);
      lightBg = await bg();
      await p.page.click("#theme-toggle", { timeout: 5_000 });
      await p.page.waitForFunction(() => document.documentElement.dataset.theme === "dark", null, { timeout: 5_000 })
        .catch(async () => { throw new Error(`after clicking #theme-toggle dataset.theme is ${JSON.stringify(await p.page.evaluate(() => document.documentElement.dataset.theme))}`); });
      await p.page.waitForTimeout(400); // CSS transitions, if any
      const darkBg = await bg();
      assert(darkBg !== lightBg, `the page background stayed ${darkBg}`);
      await p.page.screenshot({ path: join(shots, "overview-dark.png"), fullPage: true, timeout: 20_000 });
      assertNoProblems(p);
    });
    if (toggled) {
      await check("theme: dark is remembered on the next page (cost), screenshot cost-dark.png", async () => {
        await p.page.goto(`${base}/cost?range=7d`, { waitUntil: "load", timeout: READY_MS });
        await waitReady(p, "cost");
        await settle(p.page);
        const t = await p.page.evaluate(() => document.documentElement.dataset.theme);
        assert(t === "dark", `after loading /cost dataset.theme is ${JSON.stringify(t)}`);
        assertChartsDrawn(await charts(p.page), { need: true });
        await p.page.screenshot({ path: join(shots, "cost-dark.png"), fullPage: true, timeout: 20_000 });
        await p.page.click("#theme-toggle", { timeout: 5_000 });
        await p.page.waitForFunction(() => document.documentElement.dataset.theme === "light", null, { timeout: 5_000 })
          .catch(() => { throw new Error("clicking #theme-toggle again did not return to light"); });
        await p.page.waitForTimeout(400);
        assert((await bg()) === lightBg, `back in light the background is ${await bg()}, was ${lightBg}`);
        assertNoProblems(p);
      });
    }
  } finally {
    await closePage(p);
    await darkCtx.close().catch(() => {});
  }
}

// ---- 3. filters: the URL and the data follow the toolbar -----------------------------------
// (refresh=off from here on: an auto-refresh in the middle of a check would be a second cause
// for the requests a check waits for.)
const q = (u, k) => u.url.searchParams.get(k);
{
  const p = await openPage();
  try {
    const loaded = await check("cost filters: /cost?range=7d&refresh=off loads", async () => {
      await p.page.goto(`${base}/cost?range=7d&refresh=off`, { waitUntil: "load", timeout: READY_MS });
      await waitReady(p, "cost");
      await settle(p.page);
    });
    if (loaded) {
      await check("cost: group_by=feature updates the URL, the timeseries request and the chart's series", async () => {
        const sel = p.page.locator('select[name="group_by"]');
        assert(await sel.count() > 0, 'no select[name="group_by"] on /cost');
        const options = await sel.locator("option").evaluateAll((os) => os.map((o) => o.value));
        assert(options.includes("feature"), `select[name="group_by"] options: ${JSON.stringify(options)}`);
        const mark = p.api.length;
        const req = p.page.waitForRequest((r) => r.url().includes("/api/v1/timeseries") && new URL(r.url()).searchParams.get("group_by") === "feature", { timeout: 15_000 })
          .catch(() => { throw new Error(`no /api/v1/timeseries request with group_by=feature (API requests after the change: ${p.api.slice(mark).map((a) => a.url.pathname + a.url.search).join(" ") || "none"})`); });
        await sel.selectOption("feature");
        const r = await req;
        await p.page.waitForURL((u) => u.searchParams.get("group_by") === "feature", { timeout: 5_000 })
          .catch(() => { throw new Error(`URL has no group_by=feature: ${p.page.url()}`); });
        const resp = await r.response();
        assert(resp && resp.ok(), `timeseries group_by=feature: HTTP ${resp && resp.status()}`);
        const body = await resp.json();
        const labels = (body.series || []).map((s) => s.labels && s.labels.feature);
        assert(labels.some((l) => features.includes(l)), `the timeseries answer has no feature series: ${JSON.stringify(labels).slice(0, 200)}`);
        await waitReady(p, "cost");
        await settle(p.page, 3_000);
        const list = assertChartsDrawn(await charts(p.page), { need: true });
        const byFeature = list.filter((c) => features.some((f) => (c.legend || c.text).includes(f)));
        assert(byFeature.length > 0, `no non-empty chart names a feature (${features.join(", ")}) after group_by=feature; charts: ${list.map((c) => `${c.id}: ${c.legend.slice(0, 80)}`).join(" | ")}`);
        const stillModels = byFeature.filter((c) => models.some((m) => (c.legend || c.text).includes(m)));
        assert(stillModels.length < byFeature.length, `the charts naming features also name models: ${stillModels.map((c) => c.id).join(", ")}`);
        assertNoProblems(p, { tolerateAborted: true });
      });
      await check("cost: range 7d -> 24h updates the URL and requests a different `from`", async () => {
        const sel = p.page.locator('select[name="range"]');
        assert(await sel.count() > 0, 'no select[name="range"] in the toolbar');
        const before = new Set(p.api.map((a) => q(a, "from")).filter(Boolean));
        const shownBefore = await mainText(p.page);
        const pointsBefore = (await charts(p.page)).map((c) => `${c.id}=${c.points}`).join(" ");
        assert(before.size > 0, "no API request carried a `from` at range=7d");
        const mark = p.api.length;
        const req = p.page.waitForRequest((r) => {
          const u = new URL(r.url());
          return u.pathname.startsWith("/api/v1/") && u.searchParams.get("from") && !before.has(u.searchParams.get("from"));
        }, { timeout: 15_000 }).catch(() => { throw new Error(`no API request with a new \`from\` (after the change: ${p.api.slice(mark).map((a) => a.url.pathname + a.url.search).join(" ") || "none"})`); });
        await sel.selectOption("24h");
        const r = await req;
        await p.page.waitForURL((u) => u.searchParams.get("range") === "24h", { timeout: 5_000 })
          .catch(() => { throw new Error(`URL has no range=24h: ${p.page.url()}`); });
        const from = Number(new URL(r.url()).searchParams.get("from"));
        const old = Math.min(...[...before].map(Number));
        assert(Number.isFinite(from) && from > old, `new from=${from} is not later than the 7-day from=${old}`);
        assert(Date.now() - from < 25 * 3600e3 && Date.now() - from > 23 * 3600e3 - 60e3, `from=${new Date(from).toISOString()} is not ~24 h ago`);
        await waitReady(p, "cost");
        assert(new URL(p.page.url()).searchParams.get("group_by") === "feature", `changing the range lost group_by: ${p.page.url()}`);
        await settle(p.page, 3_000);
        const list = assertChartsDrawn(await charts(p.page), { need: true });
        const pointsAfter = list.map((c) => `${c.id}=${c.points}`).join(" ");
        assert(pointsAfter !== pointsBefore, `the charts' data-points did not change with the range (${pointsAfter})`);
        assert((await mainText(p.page)) !== shownBefore, "the page shows the same text for 24h as for 7d");
        assertNoProblems(p, { tolerateAborted: true });
      });
    }
  } finally {
    await closePage(p);
  }
}
{
  const p = await openPage();
  try {
    await check(`latency: typing a model (${models[0]}) + Enter filters the URL and the API requests`, async () => {
      assert(models.length > 0, "no model from /api/v1/reports/cost?group_by=model");
      const model = models[0];
      await p.page.goto(`${base}/latency?range=7d&refresh=off`, { waitUntil: "load", timeout: READY_MS });
      await waitReady(p, "latency");
      await settle(p.page);
      const input = p.page.locator('input[name="model"]');
      assert(await input.count() > 0, 'no input[name="model"] in the toolbar');
      const shownBefore = await mainText(p.page);
      const mark = p.api.length;
      const req = p.page.waitForRequest((r) => {
        const u = new URL(r.url());
        return /^\/api\/v1\/(latency|timeseries)$/.test(u.pathname) && u.searchParams.get("model") === model;
      }, { timeout: 15_000 }).catch(() => { throw new Error(`no /api/v1/latency or /api/v1/timeseries request with model=${model} (after Enter: ${p.api.slice(mark).map((a) => a.url.pathname + a.url.search).join(" ") || "none"})`); });
      await input.fill(model);
      await input.press("Enter");
      await req;
      await p.page.waitForURL((u) => u.searchParams.get("model") === model, { timeout: 5_000 })
        .catch(() => { throw new Error(`URL has no model=${model}: ${p.page.url()}`); });
      await waitReady(p, "latency");
      await settle(p.page, 3_000);
      const unfiltered = p.api.slice(mark).filter((a) => /^\/api\/v1\/(latency|timeseries)$/.test(a.url.pathname) && q(a, "model") !== model);
      assert(unfiltered.length === 0, `requests after the filter without model=${model}: ${unfiltered.map((a) => a.url.pathname + a.url.search).join(" ")}`);
      assertChartsDrawn(await charts(p.page), { need: true });
      assert((await input.inputValue()) === model, `the input shows ${JSON.stringify(await input.inputValue())}`);
      assert((await mainText(p.page)) !== shownBefore, `the page shows the same text with model=${model} as without`);
      assertNoProblems(p, { tolerateAborted: true });
    });
  } finally {
    await closePage(p);
  }
}

// ---- 4. a request's detail from the Requests page -------------------------------------------
{
  const p = await openPage();
  try {
    await check("requests: the list has rows; a.request-link opens the detail with its waterfall; the back link returns", async () => {
      await p.page.goto(`${base}/requests?range=24h&refresh=off`, { waitUntil: "load", timeout: READY_MS });
      await waitReady(p, "requests");
      await settle(p.page);
      const links = p.page.locator("a.request-link");
      const n = await links.count();
      assert(n > 0, `no a.request-link (table rows: ${await p.page.locator("table tbody tr").count()})`);
      const href = await links.first().getAttribute("href");
      const id = new URL(href, base).searchParams.get("id");
      assert(id, `the first a.request-link's href has no id: ${href}`);
      await links.first().click();
      await p.page.waitForURL((u) => u.searchParams.get("id") === id, { timeout: 10_000 })
        .catch(() => { throw new Error(`after the click the URL is ${p.page.url()}, not ...id=${id}`); });
      await waitReady(p, "requests");
      const detail = p.page.locator('[data-detail="request"]');
      await detail.first().waitFor({ state: "visible", timeout: 10_000 })
        .catch(() => { throw new Error('no visible [data-detail="request"] after opening a request'); });
      const text = await detail.first().textContent();
      assert(text.includes(id), `the detail does not show the request id ${id}`);
      const wf = p.page.locator('[data-detail="request"] figure.chart[data-chart="waterfall"]');
      if (await wf.count() === 0) {
        const ids = await p.page.$$eval('[data-detail="request"] figure.chart', (fs) => fs.map((f) => f.dataset.chart));
        throw new Error(`no figure.chart[data-chart="waterfall"] in the detail (its charts: ${ids.length ? ids.map((x) => `data-chart="${x}"`).join(", ") : "none"})`);
      }
      assert((await wf.first().getAttribute("data-empty")) === "false", `the waterfall has data-empty=${await wf.first().getAttribute("data-empty")}`);
      const list = (await charts(p.page)).filter((c) => c.id === "waterfall");
      assertChartsDrawn(list, { need: true });
      await p.page.screenshot({ path: join(shots, "request-detail.png"), fullPage: true, timeout: 20_000 });
      // The back link: a link (inside the detail first) to /requests without an id.
      const back = await p.page.evaluateHandle(() => {
        const isBack = (a) => { const u = new URL(a.href, location.href); return u.pathname === "/requests" && !u.searchParams.get("id"); };
        const inDetail = [...document.querySelectorAll('[data-detail="request"] a[href]')].filter(isBack);
        if (inDetail.length) return inDetail[0];
        return [...document.querySelectorAll("main a[href], #page a[href]")].filter((a) => isBack(a) && /back|all requests|←/i.test(a.textContent))[0] || null;
      });
      assert(await back.evaluate((a) => !!a), "no back link (an <a> to /requests without id) in the detail");
      await back.asElement().click();
      await p.page.waitForURL((u) => u.pathname === "/requests" && !u.searchParams.get("id"), { timeout: 10_000 })
        .catch(() => { throw new Error(`after the back link the URL is ${p.page.url()}`); });
      await waitReady(p, "requests");
      assert(await p.page.locator('[data-detail="request"]').count() === 0, "the detail is still shown after the back link");
      assert(await p.page.locator("a.request-link").count() > 0, "the list has no a.request-link after the back link");
      assertNoProblems(p, { tolerateAborted: true });
    });
  } finally {
    await closePage(p);
  }
}

// ---- 5. alerts: create a silence through the form, see it listed, remove it -----------------
{
  const p = await openPage();
  const comment = `interop silence ${process.pid}-${Date.now()}`;
  let createdId = null;
  try {
    const made = await check("alerts: a silence created through the form is listed", async () => {
      await p.page.goto(`${base}/alerts?range=7d&refresh=off`, { waitUntil: "load", timeout: READY_MS });
      await waitReady(p, "alerts");
      await settle(p.page);
      const form = await p.page.evaluateHandle(() => document.querySelector('form[data-form="silence"]')
        || [...document.querySelectorAll("form")].find((f) => f.id !== "toolbar" && /silenc/i.test(f.outerHTML)) || null);
      assert(await form.evaluate((f) => !!f), "no <form> for silences on /alerts");
      const f = form.asElement();
      // Fill what the form asks for, as a user would: the alert name (a select's first real
      // option, or a rule name) and a comment; the duration/until keep their defaults.
      const rules = await apiJson("/api/v1/alerts/rules").catch(() => ({}));
      const ruleNames = (Array.isArray(rules) ? rules : rules.rules || []).map((r) => r.name).filter(Boolean);
      const fields = await f.$$eval("input, select, textarea", (els) => els.map((e) => ({ name: e.name, tag: e.tagName.toLowerCase(), type: e.type, value: e.value, options: e.tagName === "SELECT" ? [...e.options].map((o) => o.value) : null })));
      const named = fields.filter((fd) => fd.name && !["hidden", "submit", "button"].includes(fd.type));
      const comm = named.find((fd) => /comment|reason|note/i.test(fd.name));
      assert(comm, `the silence form has no comment field (fields: ${named.map((x) => x.name).join(", ")})`);
      await f.$(`[name="${comm.name}"]`).then((e) => e.fill(comment));
      const an = named.find((fd) => /alertname|alert|rule/i.test(fd.name));
      if (an && an.tag === "select") await f.$(`[name="${an.name}"]`).then((e) => e.selectOption(an.options.find((o) => o) || an.options[0]));
      else if (an) await f.$(`[name="${an.name}"]`).then((e) => e.fill(ruleNames[0] || "interop-test-alert"));
      const post = p.page.waitForResponse((r) => new URL(r.url()).pathname === "/api/v1/silences" && r.request().method() === "POST", { timeout: 10_000 })
        .catch(() => { throw new Error(`submitting the form sent no POST /api/v1/silences (fields: ${fields.map((x) => x.name).join(", ")})`); });
      const submit = await f.$('button[type="submit"], input[type="submit"], button:not([type])');
      assert(submit, "the silence form has no submit button");
      await submit.click();
      const r = await post;
      const sent = r.request().postDataJSON();
      assert(r.status() === 201, `POST /api/v1/silences: HTTP ${r.status()} ${(await r.text()).slice(0, 200)} (sent ${JSON.stringify(sent)})`);
      createdId = (await r.json()).id;
      assert(sent && sent.comment === comment, `the POST body's comment is ${JSON.stringify(sent && sent.comment)}`);
      await p.page.getByText(comment).first().waitFor({ state: "visible", timeout: 10_000 })
        .catch(() => { throw new Error(`the new silence ("${comment}") is not listed on the page`); });
      const listed = (await apiJson("/api/v1/silences")).silences || [];
      assert(listed.some((s) => s.id === createdId), `GET /api/v1/silences does not list id ${createdId}`);
      assertNoProblems(p, { tolerateAborted: true });
    });
    if (made) {
      await check("alerts: the listed silence is removed through its button", async () => {
        const row = p.page.locator("tr, li, .silence, [data-silence]").filter({ hasText: comment }).last();
        const btn = row.locator("button").filter({ hasText: /remove|delete|expire|unsilence|end/i });
        assert(await btn.count() > 0, `no remove/delete/expire button next to the silence "${comment}"`);
        const del = p.page.waitForResponse((r) => r.request().method() === "DELETE" && new URL(r.url()).pathname.startsWith("/api/v1/silences/"), { timeout: 10_000 })
          .catch(() => { throw new Error("clicking the button sent no DELETE /api/v1/silences/{id}"); });
        await btn.first().click();
        const r = await del;
        assert(r.ok(), `DELETE ${new URL(r.url()).pathname}: HTTP ${r.status()}`);
        assert(new URL(r.url()).pathname.endsWith(`/${createdId}`), `DELETE ${new URL(r.url()).pathname}, created id ${createdId}`);
        await p.page.getByText(comment).first().waitFor({ state: "detached", timeout: 10_000 })
          .catch(() => { throw new Error(`the silence "${comment}" is still shown after removing it`); });
        const listed = (await apiJson("/api/v1/silences")).silences || [];
        const still = listed.find((s) => s.id === createdId);
        assert(!still || still.active === false || (still.until && Date.parse(still.until) <= Date.now() + 1000), `the API still has silence ${createdId} active`);
        createdId = null;
        assertNoProblems(p, { tolerateAborted: true });
      });
    }
  } finally {
    if (createdId != null) await fetch(`${base}/api/v1/silences/${createdId}`, { method: "DELETE" }).catch(() => {});
    await closePage(p);
  }
}

// ---- 6. auto-refresh: refresh=10s fetches again within ~15 s and still shows data ----------
{
  const p = await openPage();
  try {
    await check("auto-refresh: refresh=10s re-fetches within 15 s and the page still shows data", async () => {
      await p.page.goto(`${base}/latency?range=24h&refresh=10s`, { waitUntil: "load", timeout: READY_MS });
      await waitReady(p, "latency");
      await settle(p.page, 3_000);
      const sel = p.page.locator('select[name="refresh"]');
      assert(await sel.count() > 0, 'no select[name="refresh"] in the toolbar');
      assert((await sel.inputValue()) === "10s", `select[name="refresh"] shows ${JSON.stringify(await sel.inputValue())} for refresh=10s`);
      const first = p.api.length;
      const t0 = Date.now();
      await p.page.waitForRequest((r) => new URL(r.url()).pathname.startsWith("/api/v1/"), { timeout: 15_000 })
        .catch(() => { throw new Error("no API request within 15 s with refresh=10s"); });
      const waited = Date.now() - t0;
      await p.page.waitForTimeout(300);
      await waitReady(p, "latency", 15_000);
      await settle(p.page, 5_000);
      const again = p.api.slice(first).map((a) => a.url.pathname);
      assert(again.some((x) => x === "/api/v1/latency" || x === "/api/v1/timeseries"), `the refresh fetched only ${[...new Set(again)].join(", ")}`);
      assertChartsDrawn(await charts(p.page), { need: true });
      const boxes = await visibleErrorBoxes(p.page);
      assert(boxes.length === 0, `error boxes after the refresh: ${boxes.join(" | ")}`);
      assert(new URL(p.page.url()).searchParams.get("refresh") === "10s", `the URL lost refresh=10s: ${p.page.url()}`);
      assertNoProblems(p);
      return `the refresh came ${(waited / 1000).toFixed(1)} s after the page settled`;
    });
  } finally {
    await closePage(p);
  }
}

await context.close().catch(() => {});
await browser.close().catch(() => {});
process.exit(failed ? 1 : 0);
