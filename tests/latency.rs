//! The operations axis through the HTTP API and the store: quantiles from merged sketches
//! against exact rank-based quantiles, stage shares, time windows, error rates, time series.

mod common;

use std::sync::Arc;

use common::{TestServer, ms};
use llmwatch::config::Durability;
use llmwatch::core::record::{Record, parse_record};
use llmwatch::core::rollup::{PricedRecord, Scope};
use llmwatch::core::time::Range;
use llmwatch::store::Store;
use llmwatch::store::sqlite::SqliteStore;
use proptest::prelude::*;
use serde_json::{Value, json};

fn record(id: usize, ts: i64, model: &str, duration_ms: f64, guardrail_ms: f64) -> Record {
    parse_record(
        &json!({"request_id": format!("r{id}"), "timestamp": ts, "model": model,
                "input_tokens": 10, "output_tokens": 5, "duration_ms": duration_ms,
                "ttft_ms": duration_ms / 4.0,
                "stages": {"guardrail": guardrail_ms}}),
        0,
    )
    .unwrap()
}

/// The exact lower rank-based quantile: the value at index floor(q * (n - 1)) of the sorted set.
fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((q * (v.len() - 1) as f64).floor()) as usize]
}

fn within_one_percent(estimate: Option<f64>, exact: f64) -> bool {
    estimate.is_some_and(|e| (e - exact).abs() <= 0.01 * exact + 1e-9)
}

const T0: i64 = 1_772_409_600_000; // 2026-03-02T00:00:00Z

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random heavy-tailed latencies spread over ~3 hours, two models; any range and filter.
    #[test]
    fn merged_sketch_quantiles_are_within_one_percent_of_exact(
        samples in prop::collection::vec(
            (0i64..3 * 3_600_000, prop_oneof![Just("gpt-4o"), Just("claude-sonnet-4")],
             prop_oneof![0.5f64..50.0, 50.0f64..2_000.0, 2_000.0f64..80_000.0]),
            1..300),
        from_off in 0i64..3_600_000,
        len in 1i64..3 * 3_600_000,
        filter_model in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("p.db"), Durability::Normal).unwrap();
            let records: Vec<PricedRecord> = samples
                .iter()
                .enumerate()
                .map(|(i, (off, model, d))| PricedRecord {
                    record: record(i, T0 + off, model, *d, d / 10.0),
                    cost_nanos: Some(1),
                })
                .collect();
            // Several batches, as ingest would commit them.
            for chunk in records.chunks(37) {
                store.write("default", Arc::new(chunk.to_vec())).await.unwrap();
            }
            let range = Range::new(T0 + from_off, T0 + from_off + len);
            let scope = Scope {
                model: filter_model.then(|| "gpt-4o".to_owned()),
                ..Scope::default()
            };
            let chosen: Vec<&Record> = records
                .iter()
                .map(|p| &p.record)
                .filter(|r| range.contains(r.timestamp_ms))
                .filter(|r| !filter_model || r.model == "gpt-4o")
                .collect();
            let r = llmwatch::operations::latency(&store, "default", range, &scope).await.unwrap();
            prop_assert_eq!(r.count as usize, chosen.len());
            if chosen.is_empty() {
                prop_assert_eq!(r.p50, None);
                return Ok(());
            }
            let durations: Vec<f64> = chosen.iter().map(|r| r.duration_ms).collect();
            let guardrail: Vec<f64> = chosen.iter().map(|r| r.stages["guardrail"]).collect();
            let ttft: Vec<f64> = chosen.iter().filter_map(|r| r.ttft_ms).collect();
            for (q, got) in [(0.5, r.p50), (0.95, r.p95), (0.99, r.p99)] {
                prop_assert!(within_one_percent(got, exact_quantile(&durations, q)),
                    "q={} got {:?} exact {}", q, got, exact_quantile(&durations, q));
            }
            let g = &r.stages["guardrail"].percentiles;
            prop_assert!(within_one_percent(g.p99, exact_quantile(&guardrail, 0.99)));
            prop_assert!(within_one_percent(r.ttft.p95, exact_quantile(&ttft, 0.95)));
            let min = durations.iter().copied().fold(f64::INFINITY, f64::min);
            let max = durations.iter().copied().fold(0.0, f64::max);
            prop_assert_eq!((r.min, r.max), (Some(min), Some(max)));
            Ok(())
        })?;
    }
}

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| e.to_string() + "\n").collect()
}

#[tokio::test]
async fn old_samples_leave_by_time_not_by_value() {
    let s = TestServer::start("", ms("2026-03-02T12:00:00Z")).await;
    // Slow requests at 10:00-10:10, fast ones at 11:00-11:10.
    let mut events = Vec::new();
    for i in 0..100 {
        let slow = i < 50;
        let t = if slow {
            ms("2026-03-02T10:00:00Z")
        } else {
            ms("2026-03-02T11:00:00Z")
        } + i * 6_000;
        events.push(json!({"request_id": format!("q{i}"), "timestamp": t, "model": "gpt-4o",
            "input_tokens": 1, "output_tokens": 1, "duration_ms": if slow { 9000 + i } else { 100 + i }}));
    }
    s.post_events(ndjson(&events)).await;
    let (_, all) = s
        .get("/api/v1/latency?from=2026-03-02T09:00:00Z&to=2026-03-02T12:00:00Z")
        .await;
    assert_eq!(all["count"], 100);
    assert_eq!(all["min"], 150.0);
    assert_eq!(all["max"], 9049.0);
    // The window that excludes the slow hour reports only the fast requests.
    let (_, recent) = s
        .get("/api/v1/latency?from=2026-03-02T10:30:00Z&to=2026-03-02T12:00:00Z")
        .await;
    assert_eq!(recent["count"], 50);
    assert_eq!(recent["max"], 199.0);
    let p99 = recent["p99"].as_f64().unwrap();
    assert!((p99 - 198.0).abs() <= 1.98, "p99 {p99}");
}

#[tokio::test]
async fn stage_breakdown_names_the_bottleneck() {
    let s = TestServer::start("", ms("2026-03-02T12:00:00Z")).await;
    let e = |id: &str, guard: f64, model: f64, dur: f64| {
        json!({"request_id": id, "timestamp": "2026-03-02T10:00:00Z",
        "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "duration_ms": dur,
        "stages": {"guardrail": guard, "model_inference": model}})
    };
    // Total 3000 ms: guardrail 1500 (50%), model 900 (30%), unaccounted 600 (20%).
    s.post_events(ndjson(&[
        e("a", 1000.0, 600.0, 2000.0),
        e("b", 500.0, 300.0, 1000.0),
    ]))
    .await;
    let (status, r) = s
        .get("/api/v1/latency?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["bottleneck"], "guardrail");
    assert!((r["stages"]["guardrail"]["share"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert!((r["stages"]["model_inference"]["share"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!((r["unaccounted"]["share"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(r["unaccounted"]["mean"], 300.0);
    assert_eq!(r["stages"]["guardrail"]["count"], 2);
    assert_eq!(r["relative_accuracy"], 0.01);
    assert_eq!(r["mean"], 1500.0);
}

#[tokio::test]
async fn a_corrected_latency_replaces_the_old_one_in_the_sketches() {
    let s = TestServer::start("", ms("2026-03-02T12:00:00Z")).await;
    let e = |id: &str, d: f64| {
        json!({"request_id": id, "timestamp": "2026-03-02T10:00:30Z",
        "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, "duration_ms": d})
    };
    s.post_events(ndjson(&[e("a", 100.0), e("b", 200.0), e("c", 60_000.0)]))
        .await;
    // The 60 s outlier was a unit mistake: corrected to 300 ms.
    s.post_events(ndjson(&[e("c", 300.0)])).await;
    for (from, to) in [
        ("2026-03-02T10:00:00Z", "2026-03-02T10:01:00Z"), // minute tier
        ("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"), // hour tier
        ("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"), // day tier
    ] {
        let (_, r) = s.get(&format!("/api/v1/latency?from={from}&to={to}")).await;
        assert_eq!(r["count"], 3, "{from}");
        assert_eq!(r["max"], 300.0, "{from}..{to}");
        assert_eq!(r["mean"], 200.0, "{from}..{to}");
    }
}

#[tokio::test]
async fn operations_report_error_rate_throughput_and_error_types() {
    let s = TestServer::start("", ms("2026-03-02T12:00:00Z")).await;
    let mut events = Vec::new();
    for i in 0..40 {
        let mut e = json!({"request_id": format!("o{i}"), "timestamp": ms("2026-03-02T10:00:00Z") + i * 30_000,
            "model": if i % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" }, "input_tokens": 100, "output_tokens": 50});
        if i % 10 == 0 {
            e["status"] = json!("error");
            e["error_type"] = json!(if i == 0 { "timeout" } else { "rate_limit" });
        }
        events.push(e);
    }
    s.post_events(ndjson(&events)).await;
    // 20 minutes = 1200 s holding all 40 requests, 4 of them errors.
    let (status, r) = s
        .get("/api/v1/operations?from=2026-03-02T10:00:00Z&to=2026-03-02T10:20:00Z")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["requests"], 40);
    assert_eq!(r["errors"], 4);
    assert_eq!(r["error_rate"], 0.1);
    assert!((r["throughput_rps"].as_f64().unwrap() - 40.0 / 1200.0).abs() < 1e-12);
    assert!((r["tokens_per_s"].as_f64().unwrap() - 6000.0 / 1200.0).abs() < 1e-12);
    assert_eq!(r["errors_by_type"], json!({"rate_limit": 3, "timeout": 1}));
    // Filtered by model, through a sub-minute edge.
    let (_, r) = s
        .get("/api/v1/operations?from=2026-03-02T10:00:10Z&to=2026-03-02T10:20:00Z&model=gpt-4o")
        .await;
    // gpt-4o are the even i; i = 0 (t = 10:00:00) is outside; errors at i = 10, 20, 30.
    assert_eq!(
        (r["requests"].as_i64(), r["errors"].as_i64()),
        (Some(19), Some(3))
    );
    assert_eq!(r["errors_by_type"], json!({"rate_limit": 3}));
}

#[tokio::test]
async fn timeseries_buckets_align_to_the_step() {
    let s = TestServer::start("timezone = \"Asia/Seoul\"", ms("2026-03-03T00:00:00Z")).await;
    let mut events = Vec::new();
    // One request a minute from 10:00 to 10:59 UTC; model alternates; duration = 10 x minute.
    for m in 0..60 {
        events.push(json!({"request_id": format!("t{m}"), "timestamp": ms("2026-03-02T10:00:00Z") + m * 60_000 + 5_000,
            "model": if m % 2 == 0 { "a" } else { "b" }, "input_tokens": 1, "output_tokens": 0,
            "duration_ms": (m + 1) * 10}));
    }
    s.post_events(ndjson(&events)).await;
    let (status, r) = s
        .get("/api/v1/timeseries?metric=requests&from=2026-03-02T10:00:00Z&to=2026-03-02T10:30:00Z&step=5m")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["step_s"], 300);
    let points = r["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    assert_eq!(points[0], json!([ms("2026-03-02T10:00:00Z"), 5.0]));
    assert!(points.iter().all(|p| p[1] == 5.0));

    let (_, r) = s
        .get("/api/v1/timeseries?metric=p99&from=2026-03-02T09:00:00Z&to=2026-03-02T11:00:00Z&step=1h&group_by=model")
        .await;
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["labels"], json!({"model": "a"}));
    // No requests at 09:00: no point for a percentile. At 10:00, model a has 10, 30, ..., 590 ms.
    let pts = series[0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 1);
    let p99 = pts[0][1].as_f64().unwrap();
    assert!((p99 - 570.0).abs() <= 5.7, "p99 {p99}");

    // Calendar days in Seoul: 10:00 UTC on March 2nd is March 2nd in Seoul too.
    let (_, r) = s
        .get("/api/v1/timeseries?metric=requests&from=2026-03-01T00:00:00Z&to=2026-03-03T00:00:00Z&step=1d")
        .await;
    let pts = r["series"][0]["points"].as_array().unwrap();
    let nonzero: Vec<&Value> = pts.iter().filter(|p| p[1] != 0.0).collect();
    assert_eq!(nonzero, vec![&json!([ms("2026-03-01T15:00:00Z"), 60.0])]);

    let (status, r) = s.get("/api/v1/timeseries?metric=p42").await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (400, Some("metric"))
    );
    let (status, _) = s.get("/api/v1/timeseries?step=7s").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn prometheus_exposition_counts_ingested_requests() {
    let s = TestServer::start(
        "[[budgets]]\nname = \"daily\"\nperiod = \"day\"\nlimit_usd = 5.0",
        ms("2026-03-02T12:00:00Z"),
    )
    .await;
    let e = |id: &str, d: f64| {
        json!({"request_id": id, "timestamp": "2026-03-02T10:00:00Z", "model": "gpt-4o",
        "feature": "chat", "input_tokens": 1000, "output_tokens": 500, "duration_ms": d})
    };
    s.post_events(ndjson(&[e("a", 500.0), e("b", 3000.0)]))
        .await;
    s.post_events(ndjson(&[e("a", 500.0)])).await; // a retry is not counted again
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "llmwatch_requests_total{feature=\"chat\",model=\"gpt-4o\",status=\"ok\"} 2",
        "llmwatch_request_duration_seconds_bucket{feature=\"chat\",model=\"gpt-4o\",le=\"0.64\"} 1",
        "llmwatch_request_duration_seconds_bucket{feature=\"chat\",model=\"gpt-4o\",le=\"5.12\"} 2",
        "llmwatch_request_duration_seconds_count{feature=\"chat\",model=\"gpt-4o\"} 2",
        "llmwatch_cost_usd_total{feature=\"chat\",model=\"gpt-4o\"} 0.015",
        "llmwatch_budget_limit_usd{budget=\"daily\",period=\"day\"} 5",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}
