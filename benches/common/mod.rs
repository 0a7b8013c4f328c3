//! What the query benchmarks share: the populated database of N generated requests over 30 days.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use llmwatch::config::Durability;
use llmwatch::core::pricing::PriceTable;
use llmwatch::core::rollup::PricedRecord;
use llmwatch::core::time::DAY_MS;
use llmwatch::core::traffic::TrafficGenerator;
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{DEFAULT_PROJECT, Store};

pub const END_MS: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
pub const DAYS: i64 = 30;
pub const START_MS: i64 = END_MS - DAYS * DAY_MS;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs a query 23 times and returns the median milliseconds of the last 20 (the first 3 warm
/// the caches) with the last answer.
pub async fn timed<T, F: std::future::Future<Output = T>>(
    mut query: impl FnMut() -> F,
) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for i in 0..23 {
        let t = Instant::now();
        let r = query().await;
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        last = Some(r);
    }
    (median(times), last.expect("23 runs"))
}

/// Opens `db`, filling it first with about `records` requests of the demo generator (seed 7) over
/// the 30 days before `END_MS` unless it is already filled (a `BENCH_DB` kept from a run).
pub async fn populated(db: &std::path::Path, records: u64) -> SqliteStore {
    let store = SqliteStore::open(db, Durability::Normal).unwrap();
    let have = store.count_requests().await.unwrap();
    if have > 0 {
        eprintln!("reusing {} ({have} records)", db.display());
        return store;
    }
    let prices = PriceTable::builtin();
    let t = Instant::now();
    let mut generator = TrafficGenerator::new(7);
    let mut batch = Vec::with_capacity(10_000);
    for r in generator.history_iter(START_MS, END_MS, records / DAYS as u64) {
        batch.push(PricedRecord::new(r, &prices));
        if batch.len() == 10_000 {
            store
                .write(DEFAULT_PROJECT, Arc::new(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    }
    store.write(DEFAULT_PROJECT, Arc::new(batch)).await.unwrap();
    eprintln!(
        "populated {} records in {:.1} s",
        store.count_requests().await.unwrap(),
        t.elapsed().as_secs_f64()
    );
    store
}
