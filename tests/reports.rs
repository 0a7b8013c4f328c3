//! Reports, request detail and budgets, against hand-computed expectations.

mod common;

use common::{TestServer, assert_usd, ms};
use serde_json::{Value, json};

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| e.to_string() + "\n").collect()
}

/// Four requests on 2026-03-02 (UTC) with hand-computed costs.
fn day_events() -> Vec<Value> {
    vec![
        // gpt-4o: 1000 x 2.5/M + 500 x 10/M = 0.0025 + 0.005 = $0.0075
        json!({"request_id": "r1", "timestamp": "2026-03-02T01:00:00Z", "model": "gpt-4o",
               "input_tokens": 1000, "output_tokens": 500, "feature": "chat", "user_id": "u1"}),
        // gpt-4o-mini, 500 of 2000 input cached: 1500 x 0.15/M + 500 x 0.075/M + 1000 x 0.6/M
        //   = 225e-6 + 37.5e-6 + 600e-6 = $0.0008625
        json!({"request_id": "r2", "timestamp": "2026-03-02T02:30:00Z", "model": "openai/gpt-4o-mini-2024-07-18",
               "input_tokens": 2000, "cached_input_tokens": 500, "output_tokens": 1000,
               "feature": "search", "user_id": "u2", "status": "error", "error_type": "timeout"}),
        // claude-sonnet-4, 10000 input of which 4000 cached and 1000 cache writes:
        //   5000 x 3/M + 4000 x 0.3/M + 1000 x 3.75/M + 2000 x 15/M
        //   = 0.015 + 0.0012 + 0.00375 + 0.03 = $0.04995
        json!({"request_id": "r3", "timestamp": "2026-03-02T23:59:59.999Z", "model": "claude-sonnet-4-20250514",
               "input_tokens": 10000, "cached_input_tokens": 4000, "cache_write_tokens": 1000,
               "output_tokens": 2000, "user_id": "u1"}),
        // No price: unpriced, never $0.
        json!({"request_id": "r4", "timestamp": "2026-03-02T12:00:00Z", "model": "mystery-model",
               "input_tokens": 300, "output_tokens": 100, "feature": "chat"}),
        // Outside the day on both sides.
        json!({"request_id": "r5", "timestamp": "2026-03-01T23:59:59.999Z", "model": "gpt-4o",
               "input_tokens": 7, "output_tokens": 7}),
        json!({"request_id": "r6", "timestamp": "2026-03-03T00:00:00Z", "model": "gpt-4o",
               "input_tokens": 7, "output_tokens": 7}),
    ]
}

fn sum_field(groups: &Value, field: &str) -> f64 {
    groups
        .as_object()
        .unwrap()
        .values()
        .map(|g| g[field].as_f64().unwrap_or(0.0))
        .sum()
}

#[tokio::test]
async fn daily_report_prices_by_hand_and_groupings_add_up() {
    let s = TestServer::start("", ms("2026-03-04T00:00:00Z")).await;
    let (status, v) = s.post_events(ndjson(&day_events())).await;
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(6)), "{v}");

    let (status, r) = s.get("/api/v1/reports/daily?date=2026-03-02").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["date"], "2026-03-02");
    assert_eq!(r["timezone"], "UTC");
    assert_eq!(r["total_requests"], 4);
    assert_eq!(r["total_errors"], 1);
    assert_usd(&r["total_cost"], 0.0075 + 0.0008625 + 0.04995);
    assert_eq!(r["total_tokens"], 1500 + 3000 + 12000 + 400);

    assert_usd(&r["by_model"]["gpt-4o"]["cost"], 0.0075);
    assert_usd(
        &r["by_model"]["openai/gpt-4o-mini-2024-07-18"]["cost"],
        0.0008625,
    );
    assert_usd(&r["by_model"]["claude-sonnet-4-20250514"]["cost"], 0.04995);
    assert!(r["by_model"]["mystery-model"]["cost"].is_null());

    assert_usd(&r["by_feature"]["chat"]["cost"], 0.0075);
    assert_eq!(r["by_feature"]["chat"]["unpriced_requests"], 1);
    assert_usd(&r["by_feature"]["(none)"]["cost"], 0.04995);
    assert_usd(&r["by_user"]["u1"]["cost"], 0.0075 + 0.04995);
    assert!(r["by_user"]["(none)"]["cost"].is_null());

    for grouping in ["by_model", "by_feature", "by_user"] {
        assert_eq!(sum_field(&r[grouping], "requests"), 4.0, "{grouping}");
        assert_eq!(sum_field(&r[grouping], "tokens"), 16900.0, "{grouping}");
        assert!(
            (sum_field(&r[grouping], "cost") - 0.0583125).abs() < 1e-9,
            "{grouping}"
        );
    }
    assert_eq!(
        r["unpriced"],
        json!({"requests": 1, "tokens": 400, "models": ["mystery-model"]})
    );
}

#[tokio::test]
async fn days_follow_the_configured_time_zone() {
    let s = TestServer::start("timezone = \"Asia/Seoul\"", ms("2026-03-04T00:00:00Z")).await;
    // 14:59:59 UTC is 23:59:59 on March 1st in Seoul; 15:00 UTC is midnight of March 2nd.
    let events = [
        json!({"request_id": "late", "timestamp": "2026-03-01T14:59:59Z", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 0}),
        json!({"request_id": "early", "timestamp": "2026-03-01T15:00:00Z", "model": "gpt-4o", "input_tokens": 2, "output_tokens": 0}),
    ];
    s.post_events(ndjson(&events)).await;
    let (_, d1) = s.get("/api/v1/reports/daily?date=2026-03-01").await;
    let (_, d2) = s.get("/api/v1/reports/daily?date=2026-03-02").await;
    assert_eq!(
        (d1["total_tokens"].as_i64(), d2["total_tokens"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(d2["from"], "2026-03-02T00:00:00.000+09:00");

    let (_, c) = s
        .get("/api/v1/reports/cost?from=2026-02-28T00:00:00Z&to=2026-03-03T00:00:00Z&group_by=day")
        .await;
    let days: Vec<(&str, i64)> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap(), g["tokens"].as_i64().unwrap()))
        .collect();
    assert_eq!(days, vec![("2026-03-01", 1), ("2026-03-02", 2)]);
}

#[tokio::test]
async fn cost_report_ranges_are_exact_to_the_millisecond() {
    let s = TestServer::start("", ms("2026-03-04T00:00:00Z")).await;
    let at = |id: &str, t: &str| json!({"request_id": id, "timestamp": t, "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 0, "user_id": id});
    s.post_events(ndjson(&[
        at("a", "2026-03-02T10:00:10Z"),
        at("b", "2026-03-02T10:00:50Z"),
        at("c", "2026-03-02T10:30:00Z"),
        at("d", "2026-03-02T12:00:30Z"),
        at("e", "2026-03-02T12:00:40Z"),
    ]))
    .await;
    // [10:00:30, 12:00:40) holds b, c, d: raw edges, minute and hour rollups all contribute.
    let from = ms("2026-03-02T10:00:30Z");
    let to = ms("2026-03-02T12:00:40Z");
    for group_by in ["model", "user", "feature", "day"] {
        let (status, c) = s
            .get(&format!(
                "/api/v1/reports/cost?from={from}&to={to}&group_by={group_by}"
            ))
            .await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["total_requests"], 3, "{group_by}");
        assert_usd(&c["total_cost"], 3.0 * 0.0025);
    }
    let (_, c) = s
        .get(&format!(
            "/api/v1/reports/cost?from={from}&to={to}&group_by=user"
        ))
        .await;
    let users: Vec<&str> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec!["b", "c", "d"]);
    // A filter that no rollup carries alone (user and model) reads raw rows, same answer.
    let (_, c) = s
        .get(&format!(
            "/api/v1/reports/cost?from={from}&to={to}&group_by=user&model=gpt-4o&user=c"
        ))
        .await;
    assert_eq!(c["total_requests"], 1);
}

#[tokio::test]
async fn bad_query_parameters_are_named() {
    let s = TestServer::start("", ms("2026-03-04T00:00:00Z")).await;
    for (path, field) in [
        ("/api/v1/reports/daily?date=03-02-2026", "date"),
        ("/api/v1/reports/cost?from=yesterday", "from"),
        ("/api/v1/reports/cost?group_by=planet", "group_by"),
        ("/api/v1/reports/cost?from=2000&to=1000", "from"),
    ] {
        let (status, v) = s.get(path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["error"]["field"], field, "{path}");
    }
}

#[tokio::test]
async fn price_changes_apply_by_each_requests_date() {
    let config = r#"
[[pricing]]
model = "acme-ft"
input = 1.0
output = 2.0
[[pricing]]
model = "acme-ft"
input = 0.5
output = 1.0
effective_from = "2026-03-15"
"#;
    let s = TestServer::start(config, ms("2026-04-01T00:00:00Z")).await;
    let e = |id: &str, t: &str| json!({"request_id": id, "timestamp": t, "model": "acme-ft", "input_tokens": 1_000_000, "output_tokens": 1_000_000});
    s.post_events(ndjson(&[
        e("before", "2026-03-14T23:59:59Z"),
        e("after", "2026-03-15T00:00:00Z"),
    ]))
    .await;
    let (_, before) = s.get("/api/v1/requests/before").await;
    let (_, after) = s.get("/api/v1/requests/after").await;
    assert_usd(&before["cost"], 3.0);
    assert_usd(&after["cost"], 1.5);
    let (_, c) = s
        .get("/api/v1/reports/cost?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z")
        .await;
    assert_usd(&c["total_cost"], 4.5);
}

#[tokio::test]
async fn request_detail_shows_cost_bottleneck_and_unaccounted_time() {
    let s = TestServer::start("", ms("2026-03-04T00:00:00Z")).await;
    let e = json!({"request_id": "slow-1", "timestamp": "2026-03-02T10:00:00Z", "model": "gpt-4o",
        "input_tokens": 1000, "output_tokens": 500, "duration_ms": 2000,
        "stages": {"preprocessing": 50, "guardrail": 300, "model_inference": 1200, "postprocessing": 50},
        "attributes": {"question_category": "billing"}});
    s.post_events(e.to_string()).await;
    let (status, r) = s.get("/api/v1/requests/slow-1").await;
    assert_eq!(status, 200);
    assert_usd(&r["cost"], 0.0075);
    assert_eq!(r["bottleneck_stage"], "model_inference");
    assert_eq!(r["unaccounted_ms"], 400.0);
    assert_eq!(r["attributes"]["question_category"], "billing");
    assert_eq!(r["timestamp"], "2026-03-02T10:00:00.000Z");
    let (status, v) = s.get("/api/v1/requests/nope").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn budgets_report_period_bounds_spend_projection_and_state() {
    let config = r#"
timezone = "UTC"
[[budgets]]
name = "daily"
period = "day"
limit_usd = 0.01
[[budgets]]
name = "weekly"
period = "week"
limit_usd = 1.0
[[budgets]]
name = "monthly-chat"
period = "month"
limit_usd = 0.1
feature = "chat"
"#;
    // Thursday 2026-01-01, noon UTC.
    let s = TestServer::start(config, ms("2026-01-01T12:00:00Z")).await;
    let e = |id: &str, t: &str, feature: &str| {
        json!({"request_id": id, "timestamp": t, "model": "gpt-4o",
        "input_tokens": 1000, "output_tokens": 500, "feature": feature})
    };
    s.post_events(ndjson(&[
        e("mon", "2025-12-29T09:00:00Z", "chat"),   // this ISO week, last month
        e("sun", "2025-12-28T09:00:00Z", "chat"),   // last week
        e("today1", "2026-01-01T06:00:00Z", "chat"),
        e("today2", "2026-01-01T07:00:00Z", "search"),
        json!({"request_id": "x", "timestamp": "2026-01-01T08:00:00Z", "model": "mystery", "input_tokens": 10, "output_tokens": 10}),
    ]))
    .await;
    let (status, v) = s.get("/api/v1/budgets").await;
    assert_eq!(status, 200, "{v}");
    let b = |name: &str| {
        v["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()
            .clone()
    };

    let daily = b("daily");
    assert_eq!(daily["period_start"], "2026-01-01T00:00:00.000Z");
    assert_eq!(daily["period_end"], "2026-01-02T00:00:00.000Z");
    assert_usd(&daily["spent_usd"], 0.015); // two requests at $0.0075
    assert_usd(&daily["projected_usd"], 0.03); // half the day gone
    assert_eq!(daily["state"], "exceeded");
    assert_eq!(daily["unpriced_requests"], 1);
    assert_eq!(daily["unpriced_models"], json!(["mystery"]));

    let weekly = b("weekly");
    assert_eq!(weekly["period_start"], "2025-12-29T00:00:00.000Z");
    assert_eq!(weekly["period_end"], "2026-01-05T00:00:00.000Z");
    assert_usd(&weekly["spent_usd"], 0.0225);
    assert_eq!(weekly["state"], "ok");

    let monthly = b("monthly-chat");
    assert_eq!(monthly["period_start"], "2026-01-01T00:00:00.000Z");
    assert_eq!(monthly["period_end"], "2026-02-01T00:00:00.000Z");
    assert_usd(&monthly["spent_usd"], 0.0075); // only today's chat request
    assert_eq!(monthly["scope"]["feature"], "chat");

    // Time passes: the day budget resets with the new day.
    s.now.store(
        ms("2026-01-02T01:00:00Z"),
        std::sync::atomic::Ordering::SeqCst,
    );
    let (_, v) = s.get("/api/v1/budgets").await;
    let daily = v["budgets"][0].clone();
    assert_usd(&daily["spent_usd"], 0.0);
    assert_eq!(daily["state"], "ok");
}
