//! Quality benchmark.
//!
//! 1. Ingest cost of scores: BENCH_RECORDS (default 1,000,000) generated requests over 30 days
//!    written through the store in batches of 10,000, once bare and once each with the three
//!    composite scores inline (the settling of per-request quality, the hourly histograms and
//!    the streaks), in the same run: the ratio is the price of the quality axis at ingest.
//! 2. A month-long quality report (`quality::quality_report`) from the hourly histograms
//!    against the same answer computed by SQL from the raw score rows (the ratio's baseline,
//!    and the check that the rollups hold exactly what the raw rows hold).
//!
//! `cargo bench --bench quality` (env BENCH_RECORDS=N for a smaller run).

use std::sync::Arc;
use std::time::Instant;

mod common;

use common::{DAYS, END_MS, START_MS, env_u64, timed};

use llmwatch::config::Durability;
use llmwatch::core::pricing::PriceTable;
use llmwatch::core::quality::{QualityRules, Score, ScoreSource};
use llmwatch::core::rollup::PricedRecord;
use llmwatch::core::time::Range;
use llmwatch::core::traffic::TrafficGenerator;
use llmwatch::quality::{QualityScope, quality_report};
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{DEFAULT_PROJECT, Store};

/// A deterministic score in 0..1 with two decimals from a request id and a criterion.
fn score_of(id: &str, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Skewed towards good answers, as real evaluations are.
    let u = (h % 10_000) as f64 / 10_000.0;
    ((1.0 - u * u) * 100.0).round() / 100.0
}

fn with_scores(mut pr: PricedRecord) -> PricedRecord {
    let id = pr.record.request_id.clone();
    pr.record.scores = ["relevance", "completeness", "safety"]
        .iter()
        .enumerate()
        .map(|(i, name)| Score {
            request_id: id.clone(),
            name: (*name).to_owned(),
            value: score_of(&id, i as u64),
            source: ScoreSource::Model,
            comment: None,
            ts_ms: pr.record.timestamp_ms,
        })
        .collect();
    pr
}

/// Writes the generated history; returns records per second.
async fn fill(store: &SqliteStore, records: u64, scored: bool) -> f64 {
    let prices = PriceTable::builtin();
    let mut generator = TrafficGenerator::new(7);
    let all: Vec<PricedRecord> = generator
        .history_iter(START_MS, END_MS, records / DAYS as u64)
        .map(|r| {
            let pr = PricedRecord::new(r, &prices);
            if scored { with_scores(pr) } else { pr }
        })
        .collect();
    let n = all.len();
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for pr in all {
        batch.push(pr);
        if batch.len() == 10_000 {
            store
                .write(DEFAULT_PROJECT, Arc::new(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    }
    store.write(DEFAULT_PROJECT, Arc::new(batch)).await.unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

/// The report's numbers straight from raw score rows: per-name count and mean, composite
/// count, mean and share below 0.7.
type RawReport = (Vec<(String, i64, f64)>, (i64, f64, f64));

fn raw_report(db: &std::path::Path, range: Range) -> RawReport {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT s.name, COUNT(*), AVG(s.value) FROM scores s JOIN requests r \
             ON r.project = s.project AND r.request_id = s.request_id \
             WHERE s.project = 'default' AND r.ts_ms >= ?1 AND r.ts_ms < ?2 \
             GROUP BY s.name ORDER BY s.name",
        )
        .unwrap();
    let names = stmt
        .query_map(rusqlite::params![range.from_ms, range.to_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let composite = conn
        .query_row(
            // Below 0.7 by more than float noise: (0.7 + 0.7 + 0.7) / 3 is 0.6999999999999998.
            "SELECT COUNT(*), AVG(c), AVG(c < 0.7 - 1e-9) FROM (SELECT AVG(s.value) AS c FROM scores s \
             JOIN requests r ON r.project = s.project AND r.request_id = s.request_id \
             WHERE s.project = 'default' AND r.ts_ms >= ?1 AND r.ts_ms < ?2 \
             AND s.name IN ('relevance', 'completeness', 'safety') \
             GROUP BY s.request_id HAVING COUNT(*) = 3)",
            rusqlite::params![range.from_ms, range.to_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    (names, composite)
}

#[tokio::main]
async fn main() {
    let records = env_u64("BENCH_RECORDS", 1_000_000);
    let tmp = tempfile::tempdir().unwrap();

    let bare = SqliteStore::open(&tmp.path().join("bare.db"), Durability::Normal).unwrap();
    let bare_rate = fill(&bare, records, false).await;
    drop(bare);
    let db = tmp.path().join("scored.db");
    let store = SqliteStore::open(&db, Durability::Normal).unwrap();
    let scored_rate = fill(&store, records, true).await;
    let stored = store.count_requests().await.unwrap();
    println!("| ingest through the store ({stored} records, batches of 10,000) | records/s |");
    println!("|---|---|");
    println!("| without scores | {bare_rate:.0} |");
    println!(
        "| with 3 scores each (quality settled in the same transaction) | {scored_rate:.0} ({:.2}x) |",
        scored_rate / bare_rate
    );

    // Month-long and ragged (mid-hour edges) ranges.
    let rules = QualityRules::default();
    println!();
    println!("| quality report | rollups (median of 20) | from raw rows | ratio |");
    println!("|---|---|---|---|");
    for (label, range) in [
        ("30 days", Range::new(START_MS, END_MS)),
        (
            "29.5 days, ragged edges",
            Range::new(START_MS + 1_234_567, END_MS - 11 * 3_600_000 - 7_654),
        ),
        ("last day", Range::new(END_MS - 86_400_000, END_MS)),
    ] {
        let (ms, report) = timed(|| async {
            quality_report(
                &store,
                DEFAULT_PROJECT,
                range,
                &QualityScope::default(),
                &rules,
            )
            .await
            .unwrap()
        })
        .await;
        let t = Instant::now();
        let (names, (c_count, c_mean, c_below)) = raw_report(&db, range);
        let raw_ms = t.elapsed().as_secs_f64() * 1000.0;
        // The rollups must hold exactly what the raw rows hold.
        for (name, count, mean) in &names {
            let got = &report.scores[name];
            assert_eq!(got.count, *count, "{name} count");
            assert!((got.mean.unwrap() - mean).abs() < 1e-9, "{name} mean");
        }
        assert_eq!(report.composite.count, c_count, "composite count");
        // Sums are kept in millionths: a mean of three two-decimal scores rounds by < 5e-7.
        assert!((report.composite.mean.unwrap() - c_mean).abs() < 1e-6);
        assert!((report.composite.below_threshold_share.unwrap() - c_below).abs() < 1e-9);
        println!(
            "| {label} ({c_count} scored requests) | {ms:.1} ms | {raw_ms:.0} ms | {:.0}x |",
            raw_ms / ms
        );
    }
}
