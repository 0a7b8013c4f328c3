//! Alert evaluation benchmark: one evaluation of the example configuration's rules (the seed's
//! five plus the built-in budget, escalation and unpriced-usage rules: 19) over BENCH_RECORDS
//! (default 1,000,000) generated requests in 30 days, against the seed rules' metrics computed
//! from raw rows by SQL (what an evaluator without rollups would run every interval).
//!
//! `cargo bench --bench alerts` (env BENCH_RECORDS=N; BENCH_DB=PATH keeps the database).

use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{END_MS, env_u64, median, populated};

use llmwatch::alerting::engine::Engine;
use llmwatch::config::{EXAMPLE_CONFIG, RawConfig};
use llmwatch::store::DEFAULT_PROJECT;

/// The seed rules' metrics from raw rows: 5-minute error rate and p99, today's cost (UTC day),
/// the last hour's mean composite, the last day's and the week before's question categories.
fn raw_seed_metrics(db: &std::path::Path, now: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let five = now - 300_000;
    let _: (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(status = 'error') FROM requests WHERE project = ?1 \
             AND ts_ms >= ?2 AND ts_ms < ?3",
            rusqlite::params![DEFAULT_PROJECT, five, now],
            |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
        )
        .unwrap();
    let mut durations: Vec<f64> = conn
        .prepare(
            "SELECT duration_ms FROM requests WHERE project = ?1 AND ts_ms >= ?2 AND ts_ms < ?3",
        )
        .unwrap()
        .query_map(rusqlite::params![DEFAULT_PROJECT, five, now], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    durations.sort_by(f64::total_cmp);
    let day = now - now.rem_euclid(86_400_000);
    let _: Option<i64> = conn
        .query_row(
            "SELECT SUM(cost_nanos) FROM requests WHERE project = ?1 AND ts_ms >= ?2 AND ts_ms < ?3",
            rusqlite::params![DEFAULT_PROJECT, day, now],
            |r| r.get(0),
        )
        .unwrap();
    let _: Option<f64> = conn
        .query_row(
            "SELECT AVG(composite) FROM request_quality WHERE project = ?1 AND ts_ms >= ?2 \
             AND ts_ms < ?3",
            rusqlite::params![DEFAULT_PROJECT, now - 3_600_000, now],
            |r| r.get(0),
        )
        .unwrap();
    for (a, b) in [
        (now - 86_400_000, now),
        (now - 8 * 86_400_000, now - 86_400_000),
    ] {
        let _: Vec<(Option<String>, i64)> = conn
            .prepare(
                "SELECT json_extract(attributes, '$.question_category') AS c, COUNT(*) \
                 FROM requests WHERE project = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 GROUP BY c",
            )
            .unwrap()
            .query_map(rusqlite::params![DEFAULT_PROJECT, a, b], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let records = env_u64("BENCH_RECORDS", 1_000_000);
    let keep = std::env::var("BENCH_DB").ok();
    let tmp = tempfile::tempdir().unwrap();
    let db = keep
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("alerts.db"));
    let store = Arc::new(populated(&db, records).await);
    let config = Arc::new(
        RawConfig::parse(EXAMPLE_CONFIG)
            .unwrap()
            .validate()
            .unwrap(),
    );
    let rules = config.alerting.rules.len();
    let mut engine = Engine::new(
        Arc::clone(&config),
        store.clone(),
        store.clone(),
        Arc::new(|| END_MS - 1),
        "bench".into(),
    );
    let mut times = Vec::new();
    for i in 0..23 {
        let t = Instant::now();
        let summary = engine.evaluate_once().await.unwrap();
        for d in summary.deliveries {
            d.await.unwrap();
        }
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut raw = Vec::new();
    for i in 0..8 {
        let t = Instant::now();
        raw_seed_metrics(&db, END_MS - 1);
        if i >= 1 {
            raw.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let (eval, raw) = (median(times), median(raw));
    println!("| evaluation | time | ratio |");
    println!("|---|---:|---:|");
    println!(
        "| all {rules} rules of the example config, from rollups (median of 20) | {eval:.1} ms | |"
    );
    println!(
        "| the 5 seed rules' metrics from raw rows (median of 7) | {raw:.1} ms | {:.1}x |",
        raw / eval
    );
}
