//! Ingest benchmark: `cargo bench --bench ingest` (env `BENCH_RECORDS`, default 1,000,000;
//! `BENCH_CONNECTIONS`, default 4).
//!
//! One run measures, on the same synthetic workload (`TrafficGenerator::new(42)`, 14 days
//! ending 2026-03-01T00:00:00Z, NDJSON bodies of 1,000 records serialized before any timing):
//! 1. a baseline: a plain bulk insert of the same rows into a fresh SQLite file with the same
//!    `requests` table and indexes (created by the server's own migrations) and pragmas as the
//!    server (WAL, synchronous=FULL), one prepared INSERT, one transaction per 1,000 rows;
//!    only the transactions are timed;
//! 2. llmwatch end to end: the release binary, `llmwatch serve`, fed over K keep-alive
//!    connections; timing ends when the last acknowledgement (= durable commit) has arrived;
//!    the server's RSS is sampled every 50 ms;
//! 3. report latency over HTTP (daily report of the busiest day, 14-day cost report by
//!    feature), and the same totals computed naively from raw rows in SQLite.
//!
//! Every count is checked: accepted == generated, no rejections, report totals == the
//! workload's own counts. Any disagreement aborts with an error (and stops the server).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, NaiveDate};
use llmwatch::config::{Config, Durability};
use llmwatch::core::record::{Record, parse_record};
use llmwatch::core::rollup::PricedRecord;
use llmwatch::core::time::DAY_MS;
use llmwatch::core::traffic::TrafficGenerator;
use llmwatch::store::sqlite::SqliteStore;
use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;
use serde_json::Value;

/// Records per NDJSON body and per baseline transaction.
const BATCH: usize = 1_000;
const SEED: u64 = 42;
const WINDOW_DAYS: i64 = 14;
const WINDOW_END: &str = "2026-03-01T00:00:00Z";
const REPORT_WARMUPS: usize = 3;
const REPORT_RUNS: usize = 50;
const NAIVE_RUNS: usize = 10;
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The `requests` columns the baseline binds, in `params!` order (checked against the schema).
const BASELINE_COLUMNS: [&str; 26] = [
    "project",
    "request_id",
    "ts_ms",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "user_id",
    "feature",
    "session_id",
    "release",
    "status",
    "error_type",
    "duration_ms",
    "unaccounted_ms",
    "ttft_ms",
    "stages",
    "attributes",
    "input",
    "output",
    "input_chars",
    "output_chars",
];

/// One event as sent to `POST /api/v1/events`: the field names of `parse_record`, timestamp as
/// unix milliseconds, absent optional fields left out.
#[derive(Serialize)]
struct Event<'a> {
    request_id: &'a str,
    timestamp: i64,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    stages: &'a BTreeMap<String, f64>,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft_ms: Option<f64>,
    attributes: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
}

impl<'a> Event<'a> {
    fn of(r: &'a Record) -> Self {
        Event {
            request_id: &r.request_id,
            timestamp: r.timestamp_ms,
            model: &r.model,
            provider: r.provider.as_deref(),
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            cached_input_tokens: r.usage.cached_input_tokens,
            cache_write_tokens: r.usage.cache_write_tokens,
            reasoning_tokens: r.usage.reasoning_tokens,
            user_id: r.user_id.as_deref(),
            feature: r.feature.as_deref(),
            session_id: r.session_id.as_deref(),
            release: r.release.as_deref(),
            status: r.status.as_str(),
            error_type: r.error_type.as_deref(),
            stages: &r.stages,
            duration_ms: r.duration_ms,
            ttft_ms: r.ttft_ms,
            attributes: &r.attributes,
            input: r.input.as_deref(),
            output: r.output.as_deref(),
        }
    }
}

/// The workload: pre-serialized bodies plus the counts every check compares against.
struct Workload {
    start_ms: i64,
    end_ms: i64,
    per_day: u64,
    bodies: Vec<Vec<u8>>,
    /// Records in each body.
    counts: Vec<usize>,
    records: usize,
    bytes: usize,
    /// Records per UTC day (day index since the epoch).
    per_utc_day: BTreeMap<i64, usize>,
    serialize_secs: f64,
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => {
            let n: usize = v
                .replace('_', "")
                .parse()
                .with_context(|| format!("{name}={v:?} is not a count"))?;
            ensure!(n > 0, "{name} must be at least 1");
            Ok(n)
        }
    }
}

fn build_workload(target: usize) -> Result<Workload> {
    let end_ms = DateTime::parse_from_rfc3339(WINDOW_END)?.timestamp_millis();
    // BENCH_SPAN_S: the window's length (default 14 days, a backfill); a short span such as 600
    // gives the density of live traffic, where many records share each rollup row.
    let span_ms = std::env::var("BENCH_SPAN_S")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s > 0)
        .map_or(WINDOW_DAYS * DAY_MS, |s| s * 1000);
    let start_ms = end_ms - span_ms;
    let per_day = ((target as u64).saturating_mul(DAY_MS as u64) / span_ms as u64).max(1);
    let t = Instant::now();
    let mut bodies = Vec::new();
    let mut counts = Vec::new();
    let mut per_utc_day = BTreeMap::new();
    let mut body: Vec<u8> = Vec::new();
    let mut in_body = 0;
    let mut records = 0;
    let mut generator = TrafficGenerator::new(SEED);
    for r in generator.history_iter(start_ms, end_ms, per_day) {
        let line_start = body.len();
        serde_json::to_writer(&mut body, &Event::of(&r))?;
        // Spot-check that the server will read back exactly this record.
        if records % 97 == 0 {
            let value: Value = serde_json::from_slice(&body[line_start..])?;
            let parsed = parse_record(&value, 0)
                .map_err(|e| anyhow::anyhow!("{} does not round-trip: {e}", r.request_id))?;
            ensure!(parsed == r, "{} does not round-trip exactly", r.request_id);
        }
        body.push(b'\n');
        *per_utc_day
            .entry(r.timestamp_ms.div_euclid(DAY_MS))
            .or_insert(0) += 1;
        records += 1;
        in_body += 1;
        if in_body == BATCH {
            counts.push(in_body);
            bodies.push(std::mem::take(&mut body));
            in_body = 0;
        }
    }
    if in_body > 0 {
        counts.push(in_body);
        bodies.push(body);
    }
    ensure!(records > 0, "the generator produced no records");
    let bytes = bodies.iter().map(Vec::len).sum();
    Ok(Workload {
        start_ms,
        end_ms,
        per_day,
        bodies,
        counts,
        records,
        bytes,
        per_utc_day,
        serialize_secs: t.elapsed().as_secs_f64(),
    })
}

struct BaselineResult {
    rows: usize,
    secs: f64,
    db_bytes: u64,
}

/// Opens a SQLite file with the server's pragmas (see `SqliteStore::open`).
fn open_like_server(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "no WAL (got {mode})");
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn map_json<T: Serialize>(map: &BTreeMap<String, T>) -> Result<Option<String>> {
    Ok(if map.is_empty() {
        None
    } else {
        Some(serde_json::to_string(map)?)
    })
}

/// Plain bulk insert of the workload's rows: the same record stream regenerated (same seed),
/// priced and with `input`/`output` dropped as the server does by default, stages/attributes
/// JSON text prepared outside the timed region. Only BEGIN..COMMIT of each 1,000-row
/// transaction is timed.
fn baseline(dir: &Path, w: &Workload, config: &Config) -> Result<BaselineResult> {
    let path = dir.join("baseline.db");
    // The server's own migrations create the schema, so the table and indexes are exactly the
    // server's; then a plain connection with the server's pragmas does the inserts.
    drop(SqliteStore::open(&path, Durability::Full)?);
    let mut conn = open_like_server(&path)?;
    let mut schema: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('requests')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // Columns events leave NULL (the spans of OTLP traces) are not bound by either side.
    schema.retain(|c| c != "spans");
    let mut bound: Vec<String> = BASELINE_COLUMNS.iter().map(|c| c.to_string()).collect();
    schema.sort();
    bound.sort();
    ensure!(
        schema == bound,
        "the baseline is out of date with the `requests` schema: table has {schema:?}, \
         benches/ingest.rs binds {bound:?}"
    );
    let placeholders: Vec<String> = (1..=BASELINE_COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect();
    let insert = format!(
        "INSERT INTO requests ({}) VALUES ({})",
        BASELINE_COLUMNS.join(", "),
        placeholders.join(", ")
    );
    let mut generator = TrafficGenerator::new(SEED);
    let mut records = generator.history_iter(w.start_ms, w.end_ms, w.per_day);
    let mut chunk: Vec<(PricedRecord, Option<String>, Option<String>)> = Vec::with_capacity(BATCH);
    let mut timed = Duration::ZERO;
    let mut rows = 0;
    loop {
        chunk.clear();
        for mut r in records.by_ref().take(BATCH) {
            r.input = None;
            r.output = None;
            let stages = map_json(&r.stages)?;
            let attributes = map_json(&r.attributes)?;
            chunk.push((PricedRecord::new(r, &config.pricing), stages, attributes));
        }
        if chunk.is_empty() {
            break;
        }
        let t = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(&insert)?;
            for (pr, stages, attributes) in &chunk {
                let r = &pr.record;
                stmt.execute(params![
                    "default",
                    r.request_id,
                    r.timestamp_ms,
                    r.model,
                    r.provider,
                    r.usage.input_tokens as i64,
                    r.usage.output_tokens as i64,
                    r.usage.cached_input_tokens as i64,
                    r.usage.cache_write_tokens as i64,
                    r.usage.reasoning_tokens as i64,
                    pr.cost_nanos,
                    r.user_id,
                    r.feature,
                    r.session_id,
                    r.release,
                    r.status.as_str(),
                    r.error_type,
                    r.duration_ms,
                    r.unaccounted_ms(),
                    r.ttft_ms,
                    stages,
                    attributes,
                    r.input,
                    r.output,
                    r.input_chars.map(|c| c as i64),
                    r.output_chars.map(|c| c as i64),
                ])?;
            }
        }
        tx.commit()?;
        timed += t.elapsed();
        rows += chunk.len();
    }
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))?;
    ensure!(
        rows == w.records && stored as usize == w.records,
        "baseline: regenerated {rows} rows, stored {stored}, workload has {}",
        w.records
    );
    drop(conn);
    let db_bytes = dir_bytes(dir, "baseline.db");
    Ok(BaselineResult {
        rows,
        secs: timed.as_secs_f64(),
        db_bytes,
    })
}

/// Total size of `dir`'s files whose name starts with `prefix` (database, -wal, -shm).
fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The server process; stopped (SIGTERM, then SIGKILL after 60 s) when dropped, so an aborted
/// run never leaves it behind.
struct Server {
    child: Child,
    pid: u32,
    base: String,
    db: PathBuf,
    stopped: bool,
}

impl Server {
    fn spawn(dir: &Path) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let db = dir.join("bench.db");
        // BENCH_LLMWATCH_BIN: another build to measure (e.g. an older commit), same workload.
        let bin = std::env::var("BENCH_LLMWATCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_llmwatch").to_owned());
        let child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .env("LLMWATCH_LOG", "warn")
            .env_remove("LLMWATCH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the llmwatch binary")?;
        Ok(Server {
            pid: child.id(),
            child,
            base: format!("http://127.0.0.1:{port}"),
            db,
            stopped: false,
        })
    }

    /// SIGTERM and wait: returns the time from the signal to the exit.
    fn stop(&mut self) -> Result<Duration> {
        self.stopped = true;
        let t = Instant::now();
        let status = Command::new("kill").arg(self.pid.to_string()).status()?;
        ensure!(status.success(), "kill {} failed", self.pid);
        let deadline = t + Duration::from_secs(60);
        loop {
            if let Some(exit) = self.child.try_wait()? {
                ensure!(exit.success(), "llmwatch exited with {exit} after SIGTERM");
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("llmwatch did not stop within 60 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped && matches!(self.child.try_wait(), Ok(None)) {
            eprintln!("stopping llmwatch (pid {}) after an aborted run", self.pid);
            if let Err(e) = self.stop() {
                eprintln!("{e:#}");
            }
        }
    }
}

/// A `/proc/<pid>/status` field in kB.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`, or `self`).
fn cpu_secs(pid: &str, ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3; utime, stime 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn wait_healthy(server: &mut Server, client: &reqwest::Client) -> Result<Duration> {
    let t = Instant::now();
    let url = format!("{}/healthz", server.base);
    loop {
        if let Some(exit) = server.child.try_wait()? {
            server.stopped = true;
            bail!("llmwatch exited before becoming healthy: {exit}");
        }
        let healthy = match client.get(&url).send().await {
            Ok(resp) => resp.status().is_success(),
            Err(_) => false,
        };
        if healthy {
            return Ok(t.elapsed());
        }
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "llmwatch not healthy after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Default)]
struct ConnStats {
    accepted: usize,
    posts: usize,
    retries: usize,
    latencies: Vec<Duration>,
}

/// POSTs bodies taken from a shared cursor over one keep-alive connection until none are left.
async fn feed(
    base: String,
    w: Arc<Workload>,
    cursor: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Result<ConnStats> {
    // One client per task, one idle connection each: exactly K keep-alive connections.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("{base}/api/v1/events");
    let mut stats = ConnStats::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(stats);
        }
        let i = cursor.fetch_add(1, Ordering::Relaxed);
        let Some(body) = w.bodies.get(i) else {
            return Ok(stats);
        };
        let mut attempt = 0;
        let answer = loop {
            let t = Instant::now();
            let resp = client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("POST body {i}"))?;
            let status = resp.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                attempt += 1;
                stats.retries += 1;
                ensure!(attempt <= 30, "body {i}: still 503 after 30 attempts");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let bytes = resp.bytes().await?;
            stats.latencies.push(t.elapsed());
            ensure!(
                status == reqwest::StatusCode::OK,
                "body {i}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            break serde_json::from_slice::<Value>(&bytes)
                .with_context(|| format!("body {i}: non-JSON answer"))?;
        };
        let accepted = answer["accepted"]
            .as_u64()
            .with_context(|| format!("body {i}: no `accepted` in {answer}"))?
            as usize;
        let rejected = answer["rejected"]
            .as_array()
            .with_context(|| format!("body {i}: no `rejected` in {answer}"))?;
        ensure!(
            rejected.is_empty(),
            "body {i}: {} rejections, first: {}",
            rejected.len(),
            rejected[0]
        );
        ensure!(
            accepted == w.counts[i],
            "body {i}: accepted {accepted} of {} records",
            w.counts[i]
        );
        stats.accepted += accepted;
        stats.posts += 1;
    }
}

struct IngestResult {
    secs: f64,
    accepted: usize,
    posts: usize,
    retries: usize,
    latencies: Vec<Duration>,
    peak_rss_kb: u64,
    rss_samples: u64,
    server_cpu_secs: Option<f64>,
    client_cpu_secs: Option<f64>,
}

async fn ingest(
    server: &Server,
    w: &Arc<Workload>,
    connections: usize,
    ticks: f64,
) -> Result<IngestResult> {
    let pid = server.pid;
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak, samples) = (done.clone(), peak.clone(), samples.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RSS_SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let cursor = Arc::new(AtomicUsize::new(0));
    let abort = Arc::new(AtomicBool::new(false));
    let server_cpu0 = cpu_secs(&pid.to_string(), ticks);
    let client_cpu0 = cpu_secs("self", ticks);
    let t = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(feed(
                server.base.clone(),
                w.clone(),
                cursor.clone(),
                abort.clone(),
            ))
        })
        .collect();
    let mut all = ConnStats::default();
    let mut first_error = None;
    for task in tasks {
        match task.await.context("a connection task panicked")? {
            Ok(s) => {
                all.accepted += s.accepted;
                all.posts += s.posts;
                all.retries += s.retries;
                all.latencies.extend(s.latencies);
            }
            Err(e) => {
                abort.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let server_cpu = server_cpu0
        .zip(cpu_secs(&pid.to_string(), ticks))
        .map(|(a, b)| b - a);
    let client_cpu = client_cpu0.zip(cpu_secs("self", ticks)).map(|(a, b)| b - a);
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    if let Some(e) = first_error {
        return Err(e.context("ingest failed"));
    }
    ensure!(
        all.accepted == w.records && all.posts == w.bodies.len(),
        "accepted {} records in {} answers; sent {} records in {} bodies",
        all.accepted,
        all.posts,
        w.records,
        w.bodies.len()
    );
    Ok(IngestResult {
        secs,
        accepted: all.accepted,
        posts: all.posts,
        retries: all.retries,
        latencies: all.latencies,
        peak_rss_kb: peak.load(Ordering::Relaxed),
        rss_samples: samples.load(Ordering::Relaxed),
        server_cpu_secs: server_cpu,
        client_cpu_secs: client_cpu,
    })
}

/// Times `runs` GETs after `warmups`, from sending the request to the last body byte. Returns
/// the sorted latencies in ms and the last answer.
async fn time_get(client: &reqwest::Client, url: &str) -> Result<(Vec<f64>, Value)> {
    let mut times = Vec::with_capacity(REPORT_RUNS);
    let mut last = Value::Null;
    for i in 0..REPORT_WARMUPS + REPORT_RUNS {
        let t = Instant::now();
        let resp = client.get(url).send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let elapsed = t.elapsed();
        ensure!(
            status.is_success(),
            "GET {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if i >= REPORT_WARMUPS {
            times.push(elapsed.as_secs_f64() * 1e3);
        }
        if i + 1 == REPORT_WARMUPS + REPORT_RUNS {
            last = serde_json::from_slice(&bytes)?;
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times, last))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The naive equivalent of a report: GROUP BY over raw rows. Returns the request count of the
/// first grouping (the total of the range).
fn naive_query(conn: &Connection, columns: &[&str], from: i64, to: i64) -> Result<i64> {
    let mut first_total = None;
    for col in columns {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {col}, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos) \
             FROM requests WHERE project = 'default' AND ts_ms >= ?1 AND ts_ms < ?2 \
             GROUP BY {col}"
        ))?;
        let mut rows = stmt.query(params![from, to])?;
        let mut total = 0i64;
        while let Some(row) = rows.next()? {
            let _key: Option<String> = row.get(0)?;
            total += row.get::<_, i64>(1)?;
            let _sums: (Option<i64>, Option<i64>, Option<i64>) =
                (row.get(2)?, row.get(3)?, row.get(4)?);
        }
        first_total.get_or_insert(total);
    }
    first_total.context("no columns")
}

/// Median of `NAIVE_RUNS` (after one warm-up) in ms, and the range's request count.
fn time_naive(conn: &Connection, columns: &[&str], from: i64, to: i64) -> Result<(f64, i64)> {
    let total = naive_query(conn, columns, from, to)?;
    let mut times = Vec::with_capacity(NAIVE_RUNS);
    for _ in 0..NAIVE_RUNS {
        let t = Instant::now();
        let n = naive_query(conn, columns, from, to)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(n == total, "naive query answered {n}, then {total}");
    }
    times.sort_by(f64::total_cmp);
    Ok((percentile(&times, 50.0), total))
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn nproc() -> String {
    Command::new("nproc")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

fn day_of(index: i64) -> Result<NaiveDate> {
    Ok(DateTime::from_timestamp_millis(index * DAY_MS)
        .context("day out of range")?
        .date_naive())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; this harness takes its settings from the environment.
    let target = env_usize("BENCH_RECORDS", 1_000_000)?;
    let connections = env_usize("BENCH_CONNECTIONS", 4)?;
    let ticks = clock_ticks();
    let config = Config::load(None)?;

    eprintln!("[1/5] generating and serializing ~{target} records...");
    let w = Arc::new(build_workload(target)?);
    eprintln!(
        "      {} records, {} bodies, {} bytes in {:.1} s",
        w.records,
        w.bodies.len(),
        w.bytes,
        w.serialize_secs
    );

    let dir = tempfile::tempdir()?;
    eprintln!("[2/5] baseline: plain SQLite bulk insert...");
    let base = baseline(dir.path(), &w, &config)?;
    let base_rate = base.rows as f64 / base.secs;
    eprintln!(
        "      {} rows in {:.2} s: {base_rate:.0} rows/s",
        base.rows, base.secs
    );
    let _ = std::fs::remove_file(dir.path().join("baseline.db"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut server = Server::spawn(dir.path())?;
    let client = reqwest::Client::new();
    let startup = runtime.block_on(wait_healthy(&mut server, &client))?;

    eprintln!("[3/5] llmwatch end to end over {connections} connections...");
    let ing = runtime.block_on(ingest(&server, &w, connections, ticks))?;
    let rate = ing.accepted as f64 / ing.secs;
    eprintln!(
        "      {} records in {:.2} s: {rate:.0} records/s",
        ing.accepted, ing.secs
    );
    // Database plus WAL as they stand when the last batch is acknowledged.
    let db_bytes_live = dir_bytes(dir.path(), "bench.db");

    eprintln!("[4/5] report latency...");
    let (busiest, busiest_count) = w
        .per_utc_day
        .iter()
        .max_by_key(|(day, n)| (**n, -**day))
        .map(|(d, n)| (*d, *n))
        .context("no days")?;
    let date = day_of(busiest)?;
    let daily_url = format!("{}/api/v1/reports/daily?date={date}", server.base);
    let (daily_ms, daily) = runtime.block_on(time_get(&client, &daily_url))?;
    let daily_total = daily["total_requests"].as_i64().unwrap_or(-1);
    ensure!(
        daily_total > 0 && daily_total as usize == busiest_count,
        "daily report for {date}: total_requests {daily_total}, the workload has {busiest_count}"
    );
    let cost_url = format!(
        "{}/api/v1/reports/cost?from={}&to={}&group_by=feature",
        server.base, w.start_ms, w.end_ms
    );
    let (cost_ms, cost) = runtime.block_on(time_get(&client, &cost_url))?;
    let cost_total = cost["total_requests"].as_i64().unwrap_or(-1);
    ensure!(
        cost_total as usize == w.records,
        "cost report: total_requests {cost_total}, the workload has {}",
        w.records
    );
    let hwm_kb = proc_status_kb(server.pid, "VmHWM").context("cannot read VmHWM")?;
    let shutdown = server.stop()?;
    drop(runtime);

    // After a clean shutdown (WAL checkpointed), comparable with the closed baseline file.
    let db_bytes_closed = dir_bytes(dir.path(), "bench.db");

    eprintln!("[5/5] naive SQL on raw rows...");
    let conn = Connection::open(&server.db)?;
    let stored: i64 = conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))?;
    ensure!(
        stored as usize == w.records,
        "bench.db holds {stored} rows, the workload has {}",
        w.records
    );
    let day_from = busiest * DAY_MS;
    let (naive_daily_ms, naive_daily_total) = time_naive(
        &conn,
        &["model", "feature", "user_id"],
        day_from,
        day_from + DAY_MS,
    )?;
    ensure!(
        naive_daily_total as usize == busiest_count,
        "naive daily total {naive_daily_total}, the workload has {busiest_count}"
    );
    let (naive_cost_ms, naive_cost_total) = time_naive(&conn, &["feature"], w.start_ms, w.end_ms)?;
    ensure!(
        naive_cost_total as usize == w.records,
        "naive 14-day total {naive_cost_total}, the workload has {}",
        w.records
    );
    drop(conn);

    let mut lat: Vec<f64> = ing
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    lat.sort_by(f64::total_cmp);
    let cores = nproc();
    let mb = w.bytes as f64 / 1e6;
    let cpu = |c: Option<f64>| {
        c.map(|s| format!("{s:.1} s ({:.2} cores)", s / ing.secs))
            .unwrap_or_else(|| "n/a".into())
    };

    println!("\n## llmwatch ingest benchmark\n");
    println!("| | |");
    println!("|---|---|");
    println!("| machine | nproc = {cores} |");
    println!(
        "| workload | {} records (`TrafficGenerator::new({SEED})`, per_day {}), {:.2} days ending {WINDOW_END} |",
        thousands(w.records as u64),
        thousands(w.per_day),
        (w.end_ms - w.start_ms) as f64 / DAY_MS as f64
    );
    println!(
        "| bodies | {} NDJSON bodies of ≤{BATCH} records, {:.1} MB total ({:.0} B/record), serialized in {:.1} s before timing |",
        thousands(w.bodies.len() as u64),
        mb,
        w.bytes as f64 / w.records as f64,
        w.serialize_secs
    );
    println!();
    println!("### Ingest\n");
    println!("| measurement | time | throughput | notes |");
    println!("|---|---:|---:|---|");
    println!(
        "| baseline: plain SQLite insert | {:.2} s | {} rows/s | WAL, synchronous=FULL, same table + indexes, 1 prepared INSERT, 1 tx / {BATCH} rows; only BEGIN..COMMIT timed; DB {:.0} MB after close |",
        base.secs,
        thousands(base_rate as u64),
        base.db_bytes as f64 / 1e6
    );
    println!(
        "| llmwatch end to end | {:.2} s | {} records/s, {:.1} MB/s | HTTP POST, K={connections} keep-alive connections, parse + validate + price + raw rows + rollups, acked after commit; DB {:.0} MB after shutdown ({:.0} MB with WAL at end of ingest) |",
        ing.secs,
        thousands(rate as u64),
        mb / ing.secs,
        db_bytes_closed as f64 / 1e6,
        db_bytes_live as f64 / 1e6
    );
    println!(
        "| **llmwatch / baseline** | | **{:.2}×** | |",
        rate / base_rate
    );
    println!();
    println!("| llmwatch ingest detail | value |");
    println!("|---|---|");
    println!(
        "| accepted / rejected | {} / 0 in {} answers |",
        thousands(ing.accepted as u64),
        thousands(ing.posts as u64)
    );
    println!("| 503 retries | {} |", ing.retries);
    println!(
        "| POST latency (per {BATCH}-record body) | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        percentile(&lat, 50.0),
        percentile(&lat, 95.0),
        percentile(&lat, 99.0),
        percentile(&lat, 100.0)
    );
    println!(
        "| server CPU during ingest | {} |",
        cpu(ing.server_cpu_secs)
    );
    println!(
        "| bench client CPU during ingest | {} |",
        cpu(ing.client_cpu_secs)
    );
    println!(
        "| server peak RSS (VmRSS every 50 ms during ingest) | {} ({} samples) |",
        mib(ing.peak_rss_kb),
        ing.rss_samples
    );
    println!(
        "| server VmHWM at end of run (ingest + reports) | {} |",
        mib(hwm_kb)
    );
    println!(
        "| server startup (spawn → /healthz) | {:.0} ms |",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "| server shutdown (SIGTERM → exit) | {:.0} ms |",
        shutdown.as_secs_f64() * 1e3
    );
    println!();
    println!(
        "### Reports ({REPORT_RUNS} runs after {REPORT_WARMUPS} warm-ups; HTTP round trip included)\n"
    );
    println!(
        "| query | llmwatch median | llmwatch p95 | naive SQL on raw rows (median of {NAIVE_RUNS}) | naive ÷ llmwatch |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| daily report {date} (busiest day, {} requests; naive = GROUP BY model + feature + user_id) | {:.2} ms | {:.2} ms | {:.2} ms | {:.1}× |",
        thousands(busiest_count as u64),
        percentile(&daily_ms, 50.0),
        percentile(&daily_ms, 95.0),
        naive_daily_ms,
        naive_daily_ms / percentile(&daily_ms, 50.0)
    );
    println!(
        "| cost report, 14 days, group_by=feature ({} requests; naive = GROUP BY feature) | {:.2} ms | {:.2} ms | {:.2} ms | {:.1}× |",
        thousands(w.records as u64),
        percentile(&cost_ms, 50.0),
        percentile(&cost_ms, 95.0),
        naive_cost_ms,
        naive_cost_ms / percentile(&cost_ms, 50.0)
    );
    println!();
    println!(
        "Checks passed: accepted == generated ({}), no rejections, daily total_requests == workload count for {date}, cost total_requests == generated, bench.db rows == generated, naive totals == workload counts.",
        thousands(w.records as u64)
    );
    println!("nproc: {cores}");
    Ok(())
}
