//! Dashboard benchmark: the API calls each dashboard page makes for a 7-day view, over HTTP
//! against a server on BENCH_RECORDS (default 1,000,000) generated requests in 30 days; and, for
//! the calls this issue added, the same answers computed from raw rows by SQL (what the API
//! would cost without rollups and cursors), in the same run.
//!
//! `cargo bench --bench dashboard` (env BENCH_RECORDS=N; BENCH_DB=PATH keeps the database).

use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{END_MS, env_u64, median, populated};

use llmwatch::app::App;
use llmwatch::config::RawConfig;
use llmwatch::core::time::DAY_MS;

/// Two drift monitors with rolling baselines (the bench data has no pinned ones).
const CONFIG: &str = r#"
timezone = "Asia/Seoul"

[[budgets]]
name = "weekly"
period = "week"
limit_usd = 5000.0

[[drift]]
name = "models"
dimension = "model"
method = "js"

[[drift]]
name = "output-tokens"
dimension = "output_tokens"
method = "wasserstein"
"#;

/// The API calls of each page for the 7 days before END_MS, as the dashboard makes them.
fn pages(from: i64, to: i64) -> Vec<(&'static str, Vec<String>)> {
    let r = format!("from={from}&to={to}");
    let ts = |q: &str| format!("/api/v1/timeseries?{r}&step=1h&{q}");
    vec![
        (
            "overview",
            vec![
                "/api/v1/budgets".into(),
                format!("/api/v1/operations?{r}"),
                format!("/api/v1/latency?{r}"),
                format!("/api/v1/quality?{r}"),
                format!("/api/v1/feedback/summary?{r}"),
                "/api/v1/alerts".into(),
                "/api/v1/drift/status".into(),
                ts("metric=requests"),
                ts("metric=errors"),
                ts("metric=cost&group_by=model&top=5"),
            ],
        ),
        (
            "cost",
            vec![
                ts("metric=cost&group_by=model&top=8"),
                format!("/api/v1/reports/cost?{r}&group_by=model"),
                format!("/api/v1/reports/cost?{r}&group_by=feature"),
                format!("/api/v1/reports/cost?{r}&group_by=user"),
                format!("/api/v1/reports/cost?{r}&group_by=release"),
                "/api/v1/budgets".into(),
            ],
        ),
        (
            "cost by user (top 8)",
            vec![ts("metric=cost&group_by=user&top=8")],
        ),
        (
            "latency",
            vec![
                ts("metric=p50"),
                ts("metric=p95"),
                ts("metric=p99"),
                ts("metric=stage_mean"),
                ts("metric=ttft_p50"),
                ts("metric=ttft_p95"),
                ts("metric=error_rate"),
                format!("/api/v1/latency?{r}"),
                format!("/api/v1/operations?{r}"),
                "/api/v1/alerts/rules".into(),
            ],
        ),
        (
            "quality",
            vec![
                format!("/api/v1/quality?{r}"),
                format!("/api/v1/timeseries?{r}&step=6h&metric=score"),
                format!("/api/v1/quality/escalations?{r}"),
                format!("/api/v1/feedback/summary?{r}"),
                format!("/api/v1/timeseries?{r}&step=6h&metric=satisfaction"),
                format!("/api/v1/feedback/complaints?{r}"),
            ],
        ),
        (
            "drift",
            vec![
                "/api/v1/drift/status".into(),
                format!("/api/v1/drift/history?monitor=models&{r}&step=6h"),
                format!("/api/v1/drift/history?monitor=output-tokens&{r}&step=6h"),
            ],
        ),
        (
            "alerts",
            vec![
                "/api/v1/alerts".into(),
                "/api/v1/alerts/history".into(),
                "/api/v1/alerts/deliveries".into(),
                "/api/v1/alerts/rules".into(),
                "/api/v1/silences".into(),
            ],
        ),
        (
            "requests (newest 50)",
            vec![format!("/api/v1/requests?{r}")],
        ),
        (
            "requests (feature + errors)",
            vec![format!("/api/v1/requests?{r}&feature=chat&status=error")],
        ),
    ]
}

/// Median milliseconds of 10 runs (after 2 warm-ups) of `calls`, one after another.
async fn time_calls(client: &reqwest::Client, base: &str, calls: &[String]) -> f64 {
    let mut times = Vec::new();
    for i in 0..12 {
        let t = Instant::now();
        for path in calls {
            let resp = client.get(format!("{base}{path}")).send().await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            resp.bytes().await.unwrap();
        }
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    median(times)
}

/// Median milliseconds of 5 runs of a raw-row computation.
fn time_raw(mut f: impl FnMut()) -> f64 {
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() {
    let records = env_u64("BENCH_RECORDS", 1_000_000);
    let keep = std::env::var("BENCH_DB").ok();
    let tmp = tempfile::tempdir().unwrap();
    let db = keep
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("dashboard.db"));
    drop(populated(&db, records).await);

    let mut config = RawConfig::parse(CONFIG).unwrap().validate().unwrap();
    config.db = db.clone();
    let app = App::build(config, Arc::new(|| END_MS)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let (from, to) = (END_MS - 7 * DAY_MS, END_MS);

    println!("| page (7-day view, {records} requests) | API calls | time (median of 10) |");
    println!("|---|---:|---:|");
    for (page, calls) in pages(from, to) {
        let ms = time_calls(&client, &base, &calls).await;
        println!("| {page} | {} | {ms:.1} ms |", calls.len());
    }

    // The new calls against raw rows.
    let conn = rusqlite::Connection::open(&db).unwrap();
    println!();
    println!("| answer | API | from raw rows | ratio |");
    println!("|---|---:|---:|---:|");
    let stage_api = time_calls(
        &client,
        &base,
        &[format!(
            "/api/v1/timeseries?from={from}&to={to}&step=1h&metric=stage_mean"
        )],
    )
    .await;
    let stage_raw = time_raw(|| {
        let n: i64 = conn
            .prepare(
                "SELECT (ts_ms / 3600000) * 3600000 AS b, s.key, SUM(s.value) / COUNT(DISTINCT request_id) \
                 FROM requests, json_each(requests.stages) AS s WHERE project = 'default' \
                 AND ts_ms >= ?1 AND ts_ms < ?2 GROUP BY b, s.key",
            )
            .unwrap()
            .query_map(rusqlite::params![from, to], |_| Ok(()))
            .unwrap()
            .count() as i64;
        assert!(n > 0);
    });
    println!(
        "| stage means per hour, 7 days | {stage_api:.1} ms | {stage_raw:.1} ms | {:.0}x |",
        stage_raw / stage_api
    );
    let user_api = time_calls(
        &client,
        &base,
        &[format!(
            "/api/v1/timeseries?from={from}&to={to}&step=1h&metric=cost&group_by=user&top=8"
        )],
    )
    .await;
    let user_raw = time_raw(|| {
        let n = conn
            .prepare(
                "SELECT (ts_ms / 3600000) * 3600000 AS b, user_id, SUM(cost_nanos) FROM requests \
                 WHERE project = 'default' AND ts_ms >= ?1 AND ts_ms < ?2 GROUP BY b, user_id",
            )
            .unwrap()
            .query_map(rusqlite::params![from, to], |_| Ok(()))
            .unwrap()
            .count();
        assert!(n > 0);
    });
    println!(
        "| cost per hour by user (top 8), 7 days | {user_api:.1} ms | {user_raw:.1} ms | {:.1}x |",
        user_raw / user_api
    );
    // Page 40 of the request list: a cursor seeks; OFFSET reads and drops 1,950 rows.
    let mut cursor = String::new();
    for _ in 0..39 {
        let v: serde_json::Value = client
            .get(format!("{base}{}", requests_page(from, to, &cursor)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cursor = v["next_cursor"].as_str().unwrap().to_owned();
    }
    let page_api = time_calls(&client, &base, &[requests_page(from, to, &cursor)]).await;
    let page_raw = time_raw(|| {
        let n = conn
            .prepare(
                "SELECT * FROM requests WHERE project = 'default' AND ts_ms >= ?1 AND ts_ms < ?2 \
                 ORDER BY ts_ms DESC, request_id DESC LIMIT 50 OFFSET 1950",
            )
            .unwrap()
            .query_map(rusqlite::params![from, to], |_| Ok(()))
            .unwrap()
            .count();
        assert_eq!(n, 50);
    });
    println!(
        "| requests page 40 (cursor vs OFFSET) | {page_api:.1} ms | {page_raw:.1} ms | {:.1}x |",
        page_raw / page_api
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

/// The path of a page of the request list (the cursor percent-encoded).
fn requests_page(from: i64, to: i64, cursor: &str) -> String {
    let mut url = reqwest::Url::parse("http://localhost/api/v1/requests").unwrap();
    url.query_pairs_mut()
        .append_pair("from", &from.to_string())
        .append_pair("to", &to.to_string())
        .append_pair("cursor", cursor);
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}
