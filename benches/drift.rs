//! Drift-check benchmark: a 7-day baseline against a 1-day window from the per-hour drift
//! rollups, on BENCH_RECORDS (default 10,000,000) requests over 30 days, against the same
//! distributions computed from raw rows (the baseline of the ratio, and the check that the
//! rollups count exactly what the raw rows hold).
//!
//! `cargo bench --bench drift` (env BENCH_RECORDS=N for a smaller run; BENCH_DB=PATH keeps and
//! reuses the populated database between runs).

use std::collections::BTreeMap;
use std::time::Instant;

mod common;

use common::{END_MS, env_u64, populated, timed};

use llmwatch::core::time::{DAY_MS, Range};
use llmwatch::drift::{DriftReport, DriftRequest, Method, check};
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{DEFAULT_PROJECT, DriftScope, Store};

/// Category counts of a range straight from raw rows (what one would do without rollups).
fn raw_counts(db: &std::path::Path, range: Range) -> BTreeMap<String, u64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT json_extract(attributes, '$.question_category') AS c, COUNT(*) FROM requests \
             WHERE project = 'default' AND ts_ms >= ?1 AND ts_ms < ?2 AND c IS NOT NULL GROUP BY c",
        )
        .unwrap();
    stmt.query_map(rusqlite::params![range.from_ms, range.to_ms], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

async fn time_check(store: &SqliteStore, req: &DriftRequest) -> (f64, DriftReport) {
    timed(|| async { check(store, DEFAULT_PROJECT, req).await.unwrap() }).await
}

#[tokio::main]
async fn main() {
    let records = env_u64("BENCH_RECORDS", 10_000_000);
    let keep = std::env::var("BENCH_DB").ok();
    let tmp = tempfile::tempdir().unwrap();
    let db = keep
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("drift.db"));
    let store = populated(&db, records).await;
    let stored = store.count_requests().await.unwrap();

    // The last day against the 7 days before it (the default rolling baseline).
    let window = Range::new(END_MS - DAY_MS, END_MS);
    let baseline = Range::new(END_MS - 8 * DAY_MS, END_MS - DAY_MS);
    let mut worst = 0.0f64;
    println!("| check | rollups (median of 20) | from raw rows | ratio | result |");
    println!("|---|---|---|---|---|");
    for (dimension, method) in [
        ("attributes.question_category", Method::Kl),
        ("attributes.question_category", Method::Auto),
        ("model", Method::ChiSquare),
        ("output_tokens", Method::Auto),
        ("duration_ms", Method::Ks),
    ] {
        let req = DriftRequest {
            dimension: dimension.into(),
            baseline: None,
            window,
            method,
            threshold: None,
            scope: DriftScope::default(),
            min_samples: 30,
        };
        let (ms, r) = time_check(&store, &req).await;
        let (raw_ms, raw_note) = if dimension == "attributes.question_category" {
            let t = Instant::now();
            let b = raw_counts(&db, baseline);
            let c = raw_counts(&db, window);
            let raw_ms = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(
                r.baseline_size,
                b.values().sum::<u64>(),
                "baseline counts differ from raw rows"
            );
            assert_eq!(
                r.current_size,
                c.values().sum::<u64>(),
                "window counts differ from raw rows"
            );
            (Some(raw_ms), "counts equal raw rows")
        } else {
            (None, "")
        };
        println!(
            "| {dimension}, {} | {ms:.2} ms | {} | {} | score {:.4}{} drift {} ({} vs {} obs) {raw_note} |",
            r.method,
            raw_ms.map_or("-".into(), |m| format!("{m:.0} ms")),
            raw_ms.map_or("-".into(), |m| format!("{:.0}x faster", m / ms)),
            r.score.unwrap_or(f64::NAN),
            r.p_value
                .map(|p| format!(", p {p:.2e}"))
                .unwrap_or_default(),
            r.drift_detected,
            r.baseline_size,
            r.current_size,
        );
        worst = worst.max(ms);
    }
    println!(
        "\nslowest check {worst:.2} ms: target < 100 ms {}",
        if worst < 100.0 { "met" } else { "NOT met" }
    );
    println!("\n{stored} requests in the database ({}).", db.display());
}
