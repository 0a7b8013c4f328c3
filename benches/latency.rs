//! Latency-query benchmark: P50/P95/P99 from merged rollup sketches vs exact percentiles
//! computed from raw rows, on BENCH_RECORDS (default 10,000,000) requests over 30 days.
//!
//! `cargo bench --bench latency` (env BENCH_RECORDS=N for a smaller run; BENCH_DB=PATH keeps
//! and reuses the populated database between runs).

use std::time::Instant;

mod common;

use common::{DAYS, END_MS, START_MS, env_u64, populated, timed};
use llmwatch::core::rollup::Scope;
use llmwatch::core::time::{DAY_MS, Range};
use llmwatch::operations::{LatencyReport, latency};
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{DEFAULT_PROJECT, Store};

/// Exact lower rank-based percentiles from raw rows, the way one would without sketches.
fn exact_from_raw(db: &std::path::Path, range: Range, model: Option<&str>) -> (f64, f64, f64, u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let sql = "SELECT duration_ms FROM requests WHERE project = 'default' AND ts_ms >= ?1 AND ts_ms < ?2 \
               AND (?3 IS NULL OR model = ?3) ORDER BY duration_ms";
    let mut stmt = conn.prepare(sql).unwrap();
    let values: Vec<f64> = stmt
        .query_map(rusqlite::params![range.from_ms, range.to_ms, model], |r| {
            r.get(0)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let at = |q: f64| values[((q * (values.len() - 1) as f64).floor()) as usize];
    (at(0.5), at(0.95), at(0.99), values.len() as u64)
}

async fn time_sketch(store: &SqliteStore, range: Range, scope: &Scope) -> (f64, LatencyReport) {
    timed(|| async { latency(store, DEFAULT_PROJECT, range, scope).await.unwrap() }).await
}

#[tokio::main]
async fn main() {
    let records = env_u64("BENCH_RECORDS", 10_000_000);
    let keep = std::env::var("BENCH_DB").ok();
    let tmp = tempfile::tempdir().unwrap();
    let db = keep
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("latency.db"));
    let start = START_MS;
    let store = populated(&db, records).await;
    let stored = store.count_requests().await.unwrap();

    let whole = Range::new(start, END_MS);
    let day = Range::new(END_MS - 2 * DAY_MS, END_MS - DAY_MS);
    let one_model = Scope {
        model: Some("gpt-4o".into()),
        ..Scope::default()
    };
    // A range with ragged edges (sub-minute and sub-hour) exercises every tier plus raw rows.
    let ragged = Range::new(start + 3 * DAY_MS + 1_234_567, END_MS - 7_654_321);

    println!(
        "| query | sketches (median of 20) | exact from raw rows | ratio | p50 / p95 / p99 sketch vs exact | n |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, range, scope, model) in [
        ("whole 30 days", whole, Scope::default(), None),
        ("one model, one day", day, one_model.clone(), Some("gpt-4o")),
        ("ragged 26.9 days", ragged, Scope::default(), None),
    ] {
        let (ms_sketch, r) = time_sketch(&store, range, &scope).await;
        let t = Instant::now();
        let (e50, e95, e99, n) = exact_from_raw(&db, range, model);
        let ms_exact = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(r.count, n, "{name}: sketch count differs from raw rows");
        for (got, exact) in [(r.p50, e50), (r.p95, e95), (r.p99, e99)] {
            let got = got.unwrap();
            assert!(
                (got - exact).abs() <= 0.01 * exact + 1e-9,
                "{name}: {got} vs exact {exact}"
            );
        }
        println!(
            "| {name} | {ms_sketch:.2} ms | {ms_exact:.0} ms | {:.0}x faster | {:.0}/{:.0}/{:.0} vs {e50:.0}/{e95:.0}/{e99:.0} ms | {n} |",
            ms_exact / ms_sketch,
            r.p50.unwrap(),
            r.p95.unwrap(),
            r.p99.unwrap(),
        );
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "\n{stored} records over {DAYS} days; database {:.0} MB; nproc {}",
        size as f64 / 1e6,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
