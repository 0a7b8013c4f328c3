//! The storage side of drift: per-hour value counts and numeric sketches written with the
//! records, the queries that read them, the cardinality cap (also across a restart), sketch
//! rebuilds after corrections, the migration's backfill, and named baselines.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use llmwatch::config::Durability;
use llmwatch::core::record::{Record, Status, parse_record};
use llmwatch::core::rollup::{MAX_DRIFT_ATTRIBUTE_KEYS, MAX_DRIFT_VALUES, PricedRecord};
use llmwatch::core::sketch::Sketch;
use llmwatch::core::time::{HOUR_MS, Range};
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{DriftScope, Store, StoredBaseline};
use proptest::prelude::*;
use serde_json::{Value, json};

const T0: i64 = 1_772_409_600_000; // 2026-03-02T00:00:00Z
const P: &str = "default";

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("drift.db"), Durability::Normal).unwrap()
}

fn priced(v: Value, cost_nanos: Option<i64>) -> PricedRecord {
    PricedRecord {
        record: parse_record(&v, 0).unwrap(),
        cost_nanos,
    }
}

/// A record with the labels drift counts.
#[allow(clippy::too_many_arguments)]
fn labelled(
    id: &str,
    ts: i64,
    model: &str,
    feature: Option<&str>,
    release: Option<&str>,
    error_type: Option<&str>,
    failed: bool,
    attributes: &[(&str, &str)],
) -> PricedRecord {
    let mut v = json!({"request_id": id, "timestamp": ts, "model": model,
                       "input_tokens": 10, "output_tokens": 5});
    if let Some(f) = feature {
        v["feature"] = json!(f);
    }
    if let Some(r) = release {
        v["release"] = json!(r);
    }
    if failed {
        v["status"] = json!("error");
    }
    if let Some(e) = error_type {
        v["error_type"] = json!(e);
    }
    let attrs: serde_json::Map<String, Value> = attributes
        .iter()
        .map(|(k, val)| ((*k).to_owned(), json!(val)))
        .collect();
    v["attributes"] = Value::Object(attrs);
    priced(v, Some(1_000))
}

async fn write(store: &SqliteStore, records: &[PricedRecord]) {
    store
        .write(P, Arc::new(records.to_vec()))
        .await
        .expect("write");
}

/// The hours a drift query reads: the range widened to whole hours.
fn widened(range: Range) -> Range {
    let from = range.from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    if range.to_ms <= from {
        return Range::new(from, from);
    }
    let to = (range.to_ms - 1).div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
    Range::new(from, to)
}

fn in_scope(r: &Record, scope: &DriftScope) -> bool {
    scope.model.as_ref().is_none_or(|m| *m == r.model)
        && scope
            .feature
            .as_ref()
            .is_none_or(|f| r.feature.as_ref() == Some(f))
}

/// The categorical values of one record, computed independently of the store.
fn values_of(r: &Record) -> Vec<(String, String)> {
    let mut out = vec![
        ("model".to_owned(), r.model.clone()),
        (
            "status".to_owned(),
            if r.status == Status::Error {
                "error"
            } else {
                "ok"
            }
            .to_owned(),
        ),
    ];
    if let Some(f) = &r.feature {
        out.push(("feature".into(), f.clone()));
    }
    if let Some(rel) = &r.release {
        out.push(("release".into(), rel.clone()));
    }
    if r.status == Status::Error
        && let Some(e) = &r.error_type
    {
        out.push(("error_type".into(), e.clone()));
    }
    for (k, v) in &r.attributes {
        out.push((format!("attributes.{k}"), v.clone()));
    }
    out
}

fn expected_counts(
    records: &[PricedRecord],
    range: Range,
    scope: &DriftScope,
    dimension: &str,
) -> BTreeMap<String, u64> {
    let hours = widened(range);
    let mut out = BTreeMap::new();
    for r in records.iter().map(|p| &p.record) {
        if !hours.contains(r.timestamp_ms) || !in_scope(r, scope) {
            continue;
        }
        for (d, v) in values_of(r) {
            if d == dimension {
                *out.entry(v).or_insert(0) += 1;
            }
        }
    }
    out
}

fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((q * (v.len() - 1) as f64).floor()) as usize]
}

fn check_sketch(s: &Sketch, values: &[f64], what: &str) {
    assert_eq!(s.count(), values.len() as u64, "{what}: count");
    if values.is_empty() {
        return;
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    assert_eq!(s.min(), Some(min), "{what}: min");
    assert_eq!(s.max(), Some(max), "{what}: max");
    for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0] {
        let exact = exact_quantile(values, q);
        let est = s.quantile(q).unwrap();
        // Relative 1%; values below 1e-6 share the sketch's exact zero bucket.
        assert!(
            (est - exact).abs() <= 0.01 * exact + 1e-6,
            "{what}: q{q} estimate {est} exact {exact}"
        );
    }
    let bins = s.bins();
    assert_eq!(
        bins.iter().map(|b| b.1).sum::<u64>(),
        s.count(),
        "{what}: bins"
    );
}

const MODELS: [&str; 3] = ["gpt-4o", "claude-sonnet-4", "gemini-2.5-pro"];
const FEATURES: [Option<&str>; 3] = [Some("chat"), Some("search"), None];
const RELEASES: [Option<&str>; 3] = [Some("v1"), Some("v2"), None];
const ERRORS: [Option<&str>; 3] = [Some("timeout"), Some("rate_limit"), None];
const REASONS: [&str; 3] = ["stop", "length", "tool_calls"];

type Sample = (i64, usize, usize, usize, Option<usize>, usize, bool);

fn sample() -> impl Strategy<Value = Sample> {
    (
        0i64..4 * HOUR_MS,
        0usize..3,
        0usize..3,
        0usize..3,
        prop::option::of(0usize..3),
        0usize..3,
        any::<bool>(),
    )
}

fn build(samples: &[Sample]) -> Vec<PricedRecord> {
    samples
        .iter()
        .enumerate()
        .map(|(i, &(off, m, f, rel, err, reason, lang))| {
            let mut attrs = vec![("finish_reason", REASONS[reason])];
            if lang {
                attrs.push(("language", "ko"));
            }
            labelled(
                &format!("r{i}"),
                T0 + off,
                MODELS[m],
                FEATURES[f],
                RELEASES[rel],
                err.and_then(|e| ERRORS[e]),
                err.is_some(),
                &attrs,
            )
        })
        .collect()
}

const DIMENSIONS: [&str; 8] = [
    "model",
    "feature",
    "release",
    "status",
    "error_type",
    "attributes.finish_reason",
    "attributes.language",
    "attributes.missing",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Counts per dimension, value and scope equal the counts computed from the records, over
    /// any range (widened to whole hours), with records written in several commits and some
    /// of them replaced by corrected versions.
    #[test]
    fn value_counts_equal_the_records(
        samples in prop::collection::vec(sample(), 1..200),
        corrections in prop::collection::vec((any::<prop::sample::Index>(), sample()), 0..20),
        from_off in -HOUR_MS..4 * HOUR_MS,
        len in 0i64..5 * HOUR_MS,
        scope_model in prop::option::of(0usize..3),
        scope_feature in prop::option::of(0usize..2),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let mut records = build(&samples);
            for chunk in records.chunks(29) {
                write(&store, chunk).await;
            }
            // Corrections: the same request id with other labels and time.
            for (at, s) in &corrections {
                let i = at.index(records.len());
                let mut new = build(std::slice::from_ref(s)).remove(0);
                new.record.request_id = records[i].record.request_id.clone();
                write(&store, std::slice::from_ref(&new)).await;
                records[i] = new;
            }
            let range = Range::new(T0 + from_off, T0 + from_off + len);
            let scope = DriftScope {
                model: scope_model.map(|m| MODELS[m].to_owned()),
                feature: scope_feature.and_then(|f| FEATURES[f]).map(str::to_owned),
            };
            for dim in DIMENSIONS {
                let got = store.drift_counts(P, range, scope.clone(), dim).await.unwrap();
                let want = expected_counts(&records, range, &scope, dim);
                prop_assert_eq!(got, want, "dimension {}", dim);
            }
            // Dimensions listed: those with a value in the range.
            let all = DriftScope::default();
            let mut want = BTreeSet::new();
            for dim in DIMENSIONS {
                if !expected_counts(&records, range, &all, dim).is_empty() {
                    want.insert(dim.to_owned());
                }
            }
            let got: BTreeSet<String> =
                store.drift_dimensions(P, range).await.unwrap().into_iter().collect();
            // (A dimension whose records all moved away keeps zero rows: not listed.)
            prop_assert_eq!(got, want);
            Ok(())
        })?;
    }

    /// Numeric sketches: per dimension, the count is the number of records having the value,
    /// quantiles are within 1% of the exact ones, min and max are exact, after corrections too.
    #[test]
    fn numeric_sketches_match_the_records(
        rows in prop::collection::vec(
            (0i64..3 * HOUR_MS, 0usize..2,
             prop_oneof![Just(0u64), 1u64..200_000],
             prop_oneof![Just(0u64), 1u64..8_000],
             0.0f64..60_000.0,
             prop::option::of(0.1f64..5_000.0),
             prop::option::of(prop_oneof![Just(0i64), 1_000i64..50_000_000]),
             prop::option::of("[a-zé🌍 ]{1,40}"),
             prop::option::of(0u64..100_000)),
            1..150),
        replace in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        scope_model in prop::option::of(0usize..2),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let mut records: Vec<PricedRecord> = rows
                .iter()
                .enumerate()
                .map(|(i, (off, m, inp, out, d, ttft, cost, text, chars))| {
                    let mut v = json!({"request_id": format!("n{i}"), "timestamp": T0 + off,
                        "model": MODELS[*m], "input_tokens": inp, "output_tokens": out,
                        "duration_ms": d});
                    if let Some(t) = ttft { v["ttft_ms"] = json!(t); }
                    if let Some(t) = text { v["input"] = json!(t); }
                    if let Some(c) = chars { v["output_chars"] = json!(c); }
                    priced(v, *cost)
                })
                .collect();
            for chunk in records.chunks(23) {
                write(&store, chunk).await;
            }
            // Corrections: halve the duration and drop the cost (sketch rows are rebuilt).
            for at in &replace {
                let i = at.index(records.len());
                let mut new = records[i].clone();
                new.record.duration_ms /= 2.0;
                new.cost_nanos = None;
                write(&store, std::slice::from_ref(&new)).await;
                records[i] = new;
            }
            let scope = DriftScope { model: scope_model.map(|m| MODELS[m].to_owned()), feature: None };
            let range = Range::new(T0, T0 + 3 * HOUR_MS);
            let chosen: Vec<&PricedRecord> =
                records.iter().filter(|p| in_scope(&p.record, &scope)).collect();
            let column = |f: &dyn Fn(&PricedRecord) -> Option<f64>| -> Vec<f64> {
                chosen.iter().filter_map(|p| f(p)).collect()
            };
            let expected: [(&str, Vec<f64>); 7] = [
                ("input_tokens", column(&|p| Some(p.record.usage.input_tokens as f64))),
                ("output_tokens", column(&|p| Some(p.record.usage.output_tokens as f64))),
                ("duration_ms", column(&|p| Some(p.record.duration_ms))),
                ("ttft_ms", column(&|p| p.record.ttft_ms)),
                ("cost", column(&|p| p.cost_nanos.map(|n| n as f64 / 1e9))),
                ("input_chars", column(&|p| p.record.input.as_ref().map(|t| t.chars().count() as f64))),
                ("output_chars", column(&|p| p.record.output_chars.map(|c| c as f64))),
            ];
            for (dim, values) in &expected {
                let s = store.drift_sketch(P, range, scope.clone(), dim).await.unwrap();
                check_sketch(&s, values, dim);
            }
            let none = store.drift_sketch(P, range, scope.clone(), "no_such").await.unwrap();
            prop_assert!(none.is_empty());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_replaced_record_moves_its_counts_and_a_retry_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = labelled(
        "a",
        T0 + 10,
        "gpt-4o",
        Some("chat"),
        Some("v1"),
        Some("timeout"),
        true,
        &[("finish_reason", "length")],
    );
    write(&store, &[a.clone(), a.clone()]).await; // a retry in the same batch
    write(&store, std::slice::from_ref(&a)).await; // and in a later one
    let hour = Range::new(T0, T0 + HOUR_MS);
    let all = DriftScope::default();
    let counts = |dim: &'static str| {
        let store = &store;
        let all = all.clone();
        async move { store.drift_counts(P, hour, all, dim).await.unwrap() }
    };
    let one = |v: &str| BTreeMap::from([(v.to_owned(), 1u64)]);
    assert_eq!(counts("model").await, one("gpt-4o"));
    assert_eq!(counts("error_type").await, one("timeout"));
    assert_eq!(counts("attributes.finish_reason").await, one("length"));

    // Corrected: another model, no feature, succeeded, another finish reason.
    let b = labelled(
        "a",
        T0 + 20,
        "claude-sonnet-4",
        None,
        Some("v1"),
        None,
        false,
        &[("finish_reason", "stop")],
    );
    write(&store, &[b]).await;
    assert_eq!(counts("model").await, one("claude-sonnet-4"));
    assert_eq!(counts("status").await, one("ok"));
    assert_eq!(counts("feature").await, BTreeMap::new());
    assert_eq!(counts("error_type").await, BTreeMap::new());
    assert_eq!(counts("attributes.finish_reason").await, one("stop"));
    assert_eq!(counts("release").await, one("v1"));
    let by_model = |m: &str| DriftScope {
        model: Some(m.to_owned()),
        feature: None,
    };
    assert!(
        store
            .drift_counts(P, hour, by_model("gpt-4o"), "status")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .drift_counts(P, hour, by_model("claude-sonnet-4"), "status")
            .await
            .unwrap(),
        one("ok")
    );
    // Moved to another hour: the first hour is empty, the other has it.
    let c = labelled(
        "a",
        T0 + 3 * HOUR_MS,
        "gpt-4o",
        None,
        None,
        None,
        false,
        &[],
    );
    write(&store, &[c]).await;
    assert!(counts("model").await.is_empty());
    let later = Range::new(T0 + 3 * HOUR_MS, T0 + 4 * HOUR_MS);
    assert_eq!(
        store
            .drift_counts(P, later, DriftScope::default(), "model")
            .await
            .unwrap(),
        one("gpt-4o")
    );
}

#[tokio::test]
async fn the_cardinality_cap_counts_overflow_as_other_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let topic = |i: usize| format!("t{i:03}");
    let rec = |id: String, ts: i64, t: &str| {
        labelled(&id, ts, "gpt-4o", None, None, None, false, &[("topic", t)])
    };
    {
        let store = open(dir.path());
        // 60 values in hour 0, in two commits.
        let first: Vec<PricedRecord> = (0..60)
            .map(|i| rec(format!("a{i}"), T0 + i as i64, &topic(i)))
            .collect();
        write(&store, &first[..30]).await;
        write(&store, &first[30..]).await;
        // Attribute keys: 40 distinct keys in hour 1, one record.
        let keys: Vec<(String, String)> =
            (0..40).map(|k| (format!("k{k:02}"), "x".into())).collect();
        let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let many = labelled(
            "keys",
            T0 + HOUR_MS,
            "gpt-4o",
            None,
            None,
            None,
            false,
            &refs,
        );
        write(&store, &[many]).await;
    }
    // Restart: the admitted values and keys come back from the table.
    let store = open(dir.path());
    let hour0 = Range::new(T0, T0 + HOUR_MS);
    let all = DriftScope::default();
    // 80 new values (t060..t139) and again t000..t009: 40 new values fit under the cap.
    let mut second: Vec<PricedRecord> = (60..140)
        .map(|i| rec(format!("b{i}"), T0 + 1_000 + i as i64, &topic(i)))
        .collect();
    second.extend((0..10).map(|i| rec(format!("c{i}"), T0 + 2_000 + i as i64, &topic(i))));
    for chunk in second.chunks(25) {
        write(&store, chunk).await;
    }
    let counts = store
        .drift_counts(P, hour0, all.clone(), "attributes.topic")
        .await
        .unwrap();
    assert_eq!(counts.len(), MAX_DRIFT_VALUES + 1, "{counts:?}");
    assert_eq!(counts.get("(other)"), Some(&40));
    for i in 0..60 {
        let n = if i < 10 { 2 } else { 1 };
        assert_eq!(counts.get(&topic(i)), Some(&n), "{}", topic(i));
    }
    let own_new = (60..140)
        .filter(|&i| counts.contains_key(&topic(i)))
        .count();
    assert_eq!(own_new, MAX_DRIFT_VALUES - 60);
    assert_eq!(counts.values().sum::<u64>(), 150);
    // A correction of a record counted as (other) subtracts from (other).
    let overflowed = (60..140)
        .find(|&i| !counts.contains_key(&topic(i)))
        .unwrap();
    let moved = rec(format!("b{overflowed}"), T0 + 2 * HOUR_MS, "elsewhere");
    write(&store, &[moved]).await;
    let after = store
        .drift_counts(P, hour0, all.clone(), "attributes.topic")
        .await
        .unwrap();
    assert_eq!(after.get("(other)"), Some(&39));
    assert_eq!(after.values().sum::<u64>(), 149);
    // Other dimensions of the same hour have their own cap.
    assert_eq!(
        store
            .drift_counts(P, hour0, all.clone(), "model")
            .await
            .unwrap(),
        BTreeMap::from([("gpt-4o".to_owned(), 149)])
    );

    // Attribute keys: 32 of the 40 were counted; after the restart a new key is not, the
    // counted ones still are.
    let hour1 = Range::new(T0 + HOUR_MS, T0 + 2 * HOUR_MS);
    let attribute_dims = |dims: Vec<String>| {
        dims.into_iter()
            .filter(|d| d.starts_with("attributes."))
            .collect::<Vec<_>>()
    };
    let counted = attribute_dims(store.drift_dimensions(P, hour1).await.unwrap());
    assert_eq!(counted.len(), MAX_DRIFT_ATTRIBUTE_KEYS);
    let uncounted = (0..40)
        .map(|k| format!("attributes.k{k:02}"))
        .find(|d| !counted.contains(d))
        .unwrap();
    let again = labelled(
        "keys2",
        T0 + HOUR_MS + 5,
        "gpt-4o",
        None,
        None,
        None,
        false,
        &[
            (&counted[0]["attributes.".len()..], "y"),
            ("brand_new", "z"),
        ],
    );
    write(&store, &[again]).await;
    let dims = attribute_dims(store.drift_dimensions(P, hour1).await.unwrap());
    assert_eq!(dims, counted);
    assert!(
        store
            .drift_counts(P, hour1, all.clone(), &uncounted)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .drift_counts(P, hour1, all.clone(), &counted[0])
            .await
            .unwrap(),
        BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 1)])
    );
    // A new hour starts afresh.
    let fresh = rec("d".into(), T0 + 5 * HOUR_MS, "t139");
    write(&store, &[fresh]).await;
    assert_eq!(
        store
            .drift_counts(
                P,
                Range::new(T0 + 5 * HOUR_MS, T0 + 6 * HOUR_MS),
                all,
                "attributes.topic"
            )
            .await
            .unwrap(),
        BTreeMap::from([("t139".to_owned(), 1)])
    );
}

#[tokio::test]
async fn a_correction_rebuilds_sketches_with_exact_min_and_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rec = |id: &str, model: &str, d: f64, tokens: u64| {
        priced(
            json!({"request_id": id, "timestamp": T0 + 100, "model": model,
                   "input_tokens": tokens, "output_tokens": 0, "duration_ms": d}),
            Some(5_000),
        )
    };
    let records: Vec<PricedRecord> = (0..50)
        .map(|i| rec(&format!("r{i}"), "gpt-4o", 100.0 + i as f64, i))
        .collect();
    write(&store, &records).await;
    write(&store, &[rec("big", "gpt-4o", 9_999.5, 77_777)]).await;
    let hour = Range::new(T0, T0 + HOUR_MS);
    let all = DriftScope::default();
    let d = store
        .drift_sketch(P, hour, all.clone(), "duration_ms")
        .await
        .unwrap();
    assert_eq!((d.count(), d.max()), (51, Some(9_999.5)));
    // The slow request is corrected: the maximum is the next one, exactly.
    write(&store, &[rec("big", "gpt-4o", 42.25, 3)]).await;
    let d = store
        .drift_sketch(P, hour, all.clone(), "duration_ms")
        .await
        .unwrap();
    assert_eq!(
        (d.count(), d.min(), d.max()),
        (51, Some(42.25), Some(149.0))
    );
    let t = store
        .drift_sketch(P, hour, all.clone(), "input_tokens")
        .await
        .unwrap();
    assert_eq!((t.count(), t.min(), t.max()), (51, Some(0.0), Some(49.0)));
    // Moved to another model: both rows rebuilt.
    write(&store, &[rec("big", "claude-sonnet-4", 1.5, 3)]).await;
    let scope = |m: &str| DriftScope {
        model: Some(m.to_owned()),
        feature: None,
    };
    let g = store
        .drift_sketch(P, hour, scope("gpt-4o"), "duration_ms")
        .await
        .unwrap();
    assert_eq!(
        (g.count(), g.min(), g.max()),
        (50, Some(100.0), Some(149.0))
    );
    let c = store
        .drift_sketch(P, hour, scope("claude-sonnet-4"), "duration_ms")
        .await
        .unwrap();
    assert_eq!((c.count(), c.min(), c.max()), (1, Some(1.5), Some(1.5)));
    let cost = store.drift_sketch(P, hour, all, "cost").await.unwrap();
    assert_eq!((cost.count(), cost.min()), (51, Some(5e-6)));
}

#[tokio::test]
async fn baselines_are_stored_listed_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let b = |name: &str, dim: &str, spec: Value| StoredBaseline {
        name: name.into(),
        dimension: dim.into(),
        spec,
        created_ms: T0,
    };
    {
        let store = SqliteStore::open(&dir.path().join("drift.db"), Durability::Full).unwrap();
        assert!(store.baselines(P).await.unwrap().is_empty());
        store
            .put_baseline(
                P,
                b("launch", "model", json!({"kind": "range", "from_ms": 1})),
            )
            .await
            .unwrap();
        store
            .put_baseline(P, b("april", "duration_ms", json!({"values": [1.0, 2.5]})))
            .await
            .unwrap();
        store
            .put_baseline("other", b("launch", "feature", json!(null)))
            .await
            .unwrap();
        let mut replaced = b("launch", "status", json!({"kind": "rolling"}));
        replaced.created_ms = T0 + 1;
        store.put_baseline(P, replaced).await.unwrap();
    }
    let store = open(dir.path());
    let list = store.baselines(P).await.unwrap();
    assert_eq!(
        list,
        vec![
            b("april", "duration_ms", json!({"values": [1.0, 2.5]})),
            StoredBaseline {
                created_ms: T0 + 1,
                ..b("launch", "status", json!({"kind": "rolling"}))
            },
        ]
    );
    assert!(store.delete_baseline(P, "april").await.unwrap());
    assert!(!store.delete_baseline(P, "april").await.unwrap());
    assert_eq!(store.baselines(P).await.unwrap().len(), 1);
    assert_eq!(store.baselines("other").await.unwrap().len(), 1);
}

#[tokio::test]
async fn character_counts_survive_when_texts_are_not_kept() {
    let server = common::TestServer::start("", T0).await; // capture_content defaults to off
    let body = [
        json!({"request_id": "x1", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 2,
               "input": "héllo wörld", "output": "🌍!"}),
        json!({"request_id": "x2", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 2,
               "input_chars": 500}),
        json!({"request_id": "x3", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 2}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>();
    let (status, _) = server.post_events(body).await;
    assert_eq!(status, 200);
    let dir = server.stop().await;
    let store = SqliteStore::open(&dir.path().join("llmwatch.db"), Durability::Normal).unwrap();
    let x1 = store.request(P, "x1").await.unwrap().unwrap().priced.record;
    assert_eq!((x1.input, x1.output), (None, None));
    assert_eq!((x1.input_chars, x1.output_chars), (Some(11), Some(2)));
    let x2 = store.request(P, "x2").await.unwrap().unwrap().priced.record;
    assert_eq!((x2.input_chars, x2.output_chars), (Some(500), None));
    let hour = Range::new(T0, T0 + HOUR_MS);
    let s = store
        .drift_sketch(P, hour, DriftScope::default(), "input_chars")
        .await
        .unwrap();
    assert_eq!((s.count(), s.min(), s.max()), (2, Some(11.0), Some(500.0)));
    let s = store
        .drift_sketch(P, hour, DriftScope::default(), "output_chars")
        .await
        .unwrap();
    assert_eq!((s.count(), s.min()), (1, Some(2.0)));
}

/// Reverts a database to schema version 2 (as a release before drift left it; the later
/// quality tables go too).
fn downgrade_to_v2(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TABLE alert_state; DROP TABLE alert_history; DROP TABLE alert_deliveries;
         DROP TABLE alert_silences; DROP TABLE alert_lease; DROP TABLE anomaly_baselines;
         DROP TABLE request_quality; DROP TABLE rollup_quality_1h; DROP TABLE rollup_quality_1d;
         DROP TABLE rollup_streak_1h; DROP TABLE quality_streaks;
         DROP TABLE quality_escalations; DROP TABLE feedback;
         DROP TABLE rollup_values_1h; DROP TABLE rollup_numeric_1h; DROP TABLE drift_baselines;
         ALTER TABLE requests DROP COLUMN input_chars; ALTER TABLE requests DROP COLUMN output_chars;
         PRAGMA user_version = 2;",
    )
    .unwrap();
}

#[tokio::test]
async fn the_migration_backfills_drift_rollups_from_stored_requests() {
    let dir = tempfile::tempdir().unwrap();
    // Hour 0: 120 topics, t000..t099 twice, t100..t119 once (the most frequent keep their rows,
    // online and in the backfill alike); hour 2: labels, texts, tokens, costs.
    let mut records = Vec::new();
    for i in 0..120usize {
        for rep in 0..(if i < 100 { 2 } else { 1 }) {
            records.push(labelled(
                &format!("t{i}-{rep}"),
                T0 + i as i64,
                "gpt-4o",
                Some("chat"),
                None,
                None,
                false,
                &[("topic", &format!("t{i:03}"))],
            ));
        }
    }
    records.extend(build(
        &(0..40)
            .map(|i| {
                (
                    2 * HOUR_MS + i * 1000,
                    (i % 3) as usize,
                    (i % 3) as usize,
                    (i % 2) as usize,
                    (i % 4 != 0).then_some((i % 3) as usize),
                    (i % 3) as usize,
                    i % 2 == 0,
                )
            })
            .collect::<Vec<_>>(),
    ));
    for (i, r) in records.iter_mut().enumerate() {
        r.record.input = Some("é".repeat(i % 7 + 1));
        r.record.input_chars = Some((i % 7 + 1) as u64);
        r.record.usage.output_tokens = (i % 5) as u64;
        r.record.duration_ms = 10.0 + i as f64;
    }
    let range = Range::new(T0, T0 + 3 * HOUR_MS);
    let all = DriftScope::default();
    let scopes = [
        all.clone(),
        DriftScope {
            model: Some("gpt-4o".into()),
            feature: Some("chat".into()),
        },
    ];
    let snapshot = |store: SqliteStore| {
        let scopes = scopes.clone();
        async move {
            let mut out = Vec::new();
            for scope in &scopes {
                for dim in DIMENSIONS.iter().chain(&["attributes.topic"]) {
                    let c = store
                        .drift_counts(P, range, scope.clone(), dim)
                        .await
                        .unwrap();
                    out.push(format!("{dim}: {c:?}"));
                }
                for dim in [
                    "input_tokens",
                    "output_tokens",
                    "duration_ms",
                    "cost",
                    "input_chars",
                ] {
                    let s = store
                        .drift_sketch(P, range, scope.clone(), dim)
                        .await
                        .unwrap();
                    out.push(format!("{dim}: {:?}", s.bins()));
                }
            }
            out.push(format!(
                "{:?}",
                store.drift_dimensions(P, range).await.unwrap()
            ));
            out
        }
    };
    let online = {
        let store = open(dir.path());
        write(&store, &records).await;
        snapshot(store).await
    };
    assert!(online.iter().any(|l| l.contains("\"(other)\": 20")));
    downgrade_to_v2(&dir.path().join("drift.db"));
    let backfilled = snapshot(open(dir.path())).await;
    assert_eq!(online, backfilled);
}
