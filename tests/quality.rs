//! The quality axis and the feedback loop through the HTTP API: scores (inline, separate,
//! before their request, corrected), aggregates, escalation streaks, heuristics, feedback,
//! complaint clusters, the golden dataset and release comparisons.

mod common;

use common::{TestServer, ms};
use serde_json::{Value, json};

const NOW: &str = "2026-05-10T12:00:00Z";
const MIN: i64 = 60_000;

fn event(id: &str, ts: i64, feature: &str, release: &str, scores: Option<Value>) -> Value {
    let mut e = json!({"request_id": id, "timestamp": ts, "model": "gpt-4o-mini",
        "feature": feature, "release": release, "input_tokens": 100, "output_tokens": 50,
        "duration_ms": 800});
    if let Some(s) = scores {
        e["scores"] = s;
    }
    e
}

/// Scores whose composite (mean of the three) is `c`.
fn trio(c: f64) -> Value {
    json!({"relevance": c, "completeness": c, "safety": c})
}

fn ndjson(items: &[Value]) -> String {
    items
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn post(server: &TestServer, path: &str, body: String) -> (u16, Value) {
    let (status, _, bytes) = server.post_raw(path, &[], body.into_bytes()).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn close(a: &Value, b: f64) {
    let x = a
        .as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {a}"));
    assert!((x - b).abs() < 1e-9, "expected {b}, got {x}");
}

#[tokio::test]
async fn escalation_counts_consecutive_bad_answers_per_feature_once_per_run() {
    let server = TestServer::start("", ms(NOW)).await;
    let t0 = ms(NOW) - 3_600_000;
    // Feature "chat": 6 bad, 1 good, 5 bad. Feature "search" interleaved: 4 bad, never 5.
    let chat = [0.5, 0.6, 0.3, 0.69, 0.1, 0.2, 0.9, 0.4, 0.4, 0.4, 0.4, 0.4];
    let mut events = Vec::new();
    for (i, c) in chat.iter().enumerate() {
        events.push(event(
            &format!("chat-{i}"),
            t0 + i as i64 * MIN,
            "chat",
            "v1",
            Some(trio(*c)),
        ));
        if i < 4 {
            events.push(event(
                &format!("search-{i}"),
                t0 + i as i64 * MIN + 1,
                "search",
                "v1",
                Some(trio(0.2)),
            ));
        }
    }
    let (status, body) = server.post_events(ndjson(&events)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 16);

    let (status, body) = server.get("/api/v1/quality/escalations").await;
    assert_eq!(status, 200, "{body}");
    let list = body["escalations"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    // Newest first: the second run (chat-7..chat-11), then the first (chat-0..chat-4).
    assert_eq!(list[0]["feature"], "chat");
    assert_eq!(
        list[0]["request_ids"],
        json!(["chat-7", "chat-8", "chat-9", "chat-10", "chat-11"])
    );
    assert_eq!(
        list[1]["request_ids"],
        json!(["chat-0", "chat-1", "chat-2", "chat-3", "chat-4"])
    );
    assert_eq!(list[1]["streak"], 5);
    // (0.5 + 0.6 + 0.3 + 0.69 + 0.1) / 5
    close(&list[1]["mean_composite"], 2.19 / 5.0);

    let (_, q) = server.get("/api/v1/quality?feature=chat").await;
    assert_eq!(q["streak"]["current"], 5, "{q}");
    assert_eq!(q["streak"]["longest"], 6);
    assert_eq!(q["streak"]["escalated"], true);
    let (_, q) = server.get("/api/v1/quality?feature=search").await;
    assert_eq!(q["streak"]["current"], 4, "{q}");
    assert_eq!(q["streak"]["escalated"], false);
    let (_, e) = server
        .get("/api/v1/quality/escalations?feature=search")
        .await;
    assert_eq!(e["escalations"], json!([]));

    // Escalations and streaks survive a restart; the next bad answer does not escalate again.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, "", ms(NOW)).await;
    let (status, _) = server
        .post_events(event("chat-12", t0 + 12 * MIN, "chat", "v1", Some(trio(0.1))).to_string())
        .await;
    assert_eq!(status, 200);
    let (_, body) = server.get("/api/v1/quality/escalations").await;
    assert_eq!(body["escalations"].as_array().unwrap().len(), 2, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn aggregates_count_each_request_once_with_scores_early_late_and_corrected() {
    let server = TestServer::start("", ms(NOW)).await;
    let t0 = ms(NOW) - 5 * 3_600_000 + 17 * MIN; // ragged: not on an hour boundary
    // r0: inline trio 0.9. r1: scores before the request. r2: partial (no composite).
    let (status, body) = post(
        &server,
        "/api/v1/scores",
        ndjson(&[
            json!({"request_id": "r1", "name": "relevance", "value": 0.2, "source": "model"}),
            json!({"request_id": "r1", "name": "completeness", "value": 0.4}),
            json!({"request_id": "r1", "name": "safety", "value": 0.6}),
            json!({"request_id": "r2", "name": "relevance", "value": 1.0}),
        ]),
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(4)), "{body}");
    let (_, q) = server
        .get("/api/v1/quality?from=2026-05-01T00:00:00Z")
        .await;
    assert_eq!(
        q["count"], 0,
        "scores without their request are not counted yet: {q}"
    );

    let events = [
        event("r0", t0, "chat", "v1", Some(trio(0.9))),
        event("r1", t0 + 61 * MIN, "chat", "v1", None),
        event("r2", t0 + 122 * MIN, "chat", "v1", None),
        event("r3", t0 + 123 * MIN, "chat", "v1", None), // never scored
    ];
    let (status, body) = server.post_events(ndjson(&events)).await;
    assert_eq!(status, 200, "{body}");

    let (_, q) = server
        .get("/api/v1/quality?from=2026-05-01T00:00:00Z")
        .await;
    assert_eq!(q["count"], 3, "{q}");
    assert_eq!(q["scores"]["relevance"]["count"], 3);
    close(&q["scores"]["relevance"]["mean"], (0.9 + 0.2 + 1.0) / 3.0);
    assert_eq!(q["composite"]["count"], 2);
    close(&q["composite"]["mean"], (0.9 + 0.4) / 2.0);
    close(&q["composite"]["below_threshold_share"], 0.5);

    // A person corrects r1's relevance: it outranks the judge's; counts do not grow.
    let (status, _) = post(
        &server,
        "/api/v1/scores",
        json!({"request_id": "r1", "name": "relevance", "value": 0.8, "source": "human"})
            .to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, q) = server
        .get("/api/v1/quality?from=2026-05-01T00:00:00Z")
        .await;
    assert_eq!(q["scores"]["relevance"]["count"], 3, "{q}");
    close(&q["scores"]["relevance"]["mean"], (0.9 + 0.8 + 1.0) / 3.0);
    close(&q["composite"]["mean"], (0.9 + 0.6) / 2.0);
    close(&q["composite"]["below_threshold_share"], 0.5);

    // The same answers through ranges cut mid-hour (raw edges) and by label.
    let from = t0 + 30 * MIN;
    let to = t0 + 122 * MIN + 1;
    let (_, q) = server
        .get(&format!("/api/v1/quality?from={from}&to={to}"))
        .await;
    assert_eq!(q["count"], 2, "r1 and r2 only: {q}");
    close(&q["scores"]["relevance"]["mean"], 0.9);
    assert_eq!(q["composite"]["count"], 1);
    let (_, q) = server
        .get("/api/v1/quality?from=2026-05-01T00:00:00Z&release=v2")
        .await;
    assert_eq!(q["count"], 0);

    // The request is corrected to another release: its scores move with it.
    let mut moved = event("r0", t0, "chat", "v2", None);
    moved["model"] = json!("gpt-4o");
    let (status, _) = server.post_events(moved.to_string()).await;
    assert_eq!(status, 200);
    let (_, q) = server
        .get("/api/v1/quality?from=2026-05-01T00:00:00Z&release=v2")
        .await;
    assert_eq!(q["count"], 1, "{q}");
    close(&q["composite"]["mean"], 0.9);
    let (_, q) = server
        .get("/api/v1/quality?from=2026-05-01T00:00:00Z&release=v1")
        .await;
    assert_eq!(q["count"], 2, "{q}");

    let (_, r) = server.get("/api/v1/requests/r1").await;
    assert_eq!(r["scores"]["relevance"], 0.8, "{r}");
    server.stop().await;
}

#[tokio::test]
async fn bad_scores_and_feedback_are_rejected_item_by_item_naming_the_field() {
    let server = TestServer::start("", ms(NOW)).await;
    let (status, body) = post(
        &server,
        "/api/v1/scores",
        ndjson(&[
            json!({"request_id": "a", "name": "relevance", "value": 0.5}),
            json!({"request_id": "a", "name": "relevance", "value": 1.5}),
            json!({"request_id": "a", "name": "relevance", "value": 0.5, "source": "robot"}),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    let fields: Vec<&str> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["value", "source"]);
    assert_eq!(body["rejected"][0]["index"], 1);

    let (status, body) = post(
        &server,
        "/api/v1/feedback",
        json!({"request_id": "a", "type": "correction"}).to_string(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["rejected"][0]["field"], "correction");
    let (status, body) = server.get("/api/v1/feedback/summary?days=0").await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("days")));
    let (status, body) = server.get("/api/v1/compare?by=user&a=x&b=y").await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("by")));
    server.stop().await;
}

#[tokio::test]
async fn heuristics_score_captured_answers_only() {
    let answers = [
        ("ok", "Your refund was issued yesterday."),
        ("refusal", "죄송하지만 그 요청은 도와드릴 수 없습니다."),
        ("blank", "   "),
        ("pii", "Call me at 010-1234-5678."),
    ];
    let events: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(i, (id, out))| {
            let mut e = event(id, ms(NOW) - 1000 - i as i64, "chat", "v1", None);
            e["input"] = json!("question");
            e["output"] = json!(out);
            e
        })
        .collect();

    let server = TestServer::start("capture_content = true", ms(NOW)).await;
    let (status, body) = server.post_events(ndjson(&events)).await;
    assert_eq!(status, 200, "{body}");
    let scores = |v: &Value| v["scores"].clone();
    let (_, r) = server.get("/api/v1/requests/ok").await;
    assert_eq!(
        scores(&r),
        json!({"non_empty": 1.0, "no_refusal": 1.0, "no_pii": 1.0})
    );
    let (_, r) = server.get("/api/v1/requests/refusal").await;
    assert_eq!(r["scores"]["no_refusal"], 0.0, "{r}");
    let (_, r) = server.get("/api/v1/requests/blank").await;
    assert_eq!(r["scores"]["non_empty"], 0.0, "{r}");
    let (_, r) = server.get("/api/v1/requests/pii").await;
    assert_eq!(r["scores"]["no_pii"], 0.0, "{r}");
    let (_, q) = server.get("/api/v1/quality").await;
    assert_eq!(q["scores"]["no_refusal"]["count"], 3, "{q}"); // the blank answer is not judged
    close(&q["scores"]["non_empty"]["mean"], 0.75);
    server.stop().await;

    // Without capture the texts are not kept and no heuristic runs.
    let server = TestServer::start("", ms(NOW)).await;
    server.post_events(ndjson(&events)).await;
    let (_, r) = server.get("/api/v1/requests/refusal").await;
    assert_eq!(r["scores"], json!({}), "{r}");
    server.stop().await;
}

#[tokio::test]
async fn feedback_satisfaction_complaints_and_golden_dataset() {
    let server = TestServer::start("capture_content = true", ms(NOW)).await;
    let now = ms(NOW);
    let mut events = Vec::new();
    for i in 0..6 {
        let mut e = event(&format!("q{i}"), now - 3_600_000 + i, "chat", "v1", None);
        e["input"] = json!(if i < 3 {
            "What is the refund window?"
        } else {
            "How do I reset my password?"
        });
        events.push(e);
    }
    server.post_events(ndjson(&events)).await;
    let day = 86_400_000;
    let feedback = [
        json!({"request_id": "q0", "type": "thumbs_up"}),
        json!({"request_id": "q1", "type": "thumbs_up"}),
        json!({"request_id": "q2", "type": "thumbs_up"}),
        json!({"request_id": "q3", "type": "thumbs_down", "comment": "The answer is too slow"}),
        json!({"request_id": "q4", "type": "report", "comment": "Offensive tone"}),
        json!({"request_id": "q5", "type": "report", "comment": "응답이 너무 느려요"}),
        json!({"request_id": "q0", "type": "correction", "correction": "30 days", "timestamp": now - 2000}),
        json!({"request_id": "q1", "type": "correction", "correction": "30 days from delivery", "timestamp": now - 1000}),
        json!({"request_id": "q3", "type": "correction", "correction": "Use the reset link", "comment": "step missing"}),
        json!({"request_id": "gone", "type": "correction", "correction": "?"}),
        // Outside the 7-day window, inside 30 days.
        json!({"request_id": "q0", "type": "thumbs_down", "timestamp": now - 10 * day}),
    ];
    let (status, body) = post(&server, "/api/v1/feedback", ndjson(&feedback)).await;
    assert_eq!((status, &body["accepted"]), (200, &json!(11)), "{body}");

    let (_, mut s) = server.get("/api/v1/feedback/summary").await;
    // The range answered: the 7 days up to and including now.
    let range = s.as_object_mut().unwrap();
    assert_eq!(
        range.remove("from"),
        Some(json!("2026-05-03T12:00:00.000Z"))
    );
    assert_eq!(range.remove("to"), Some(json!("2026-05-10T12:00:00.001Z")));
    // Reports and corrections are not votes: 3 up / (3 up + 1 down).
    assert_eq!(
        s,
        json!({"days": 7, "thumbs_up": 3, "thumbs_down": 1, "reports": 2, "corrections": 4,
               "satisfaction_rate": 0.75})
    );
    let (_, s) = server.get("/api/v1/feedback/summary?days=30").await;
    close(&s["satisfaction_rate"], 3.0 / 5.0);
    // Thumbs are users' ratings in the quality view too.
    let (_, q) = server.get("/api/v1/quality").await;
    assert_eq!(q["scores"]["user_rating"]["count"], 4, "{q}");

    let (status, c) = server
        .get("/api/v1/feedback/complaints?days=30&top=10")
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["complaints"], 3, "{c}");
    let total: u64 = c["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3);

    let resp = reqwest::get(format!("{}/api/v1/export/golden", server.url))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-llmwatch-skipped"], "1");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["input"], "What is the refund window?");
    assert_eq!(lines[0]["expected_output"], "30 days from delivery");
    assert_eq!(lines[0]["request_id"], "q1");
    assert_eq!(lines[0]["model"], "gpt-4o-mini");
    assert_eq!(lines[1]["expected_output"], "Use the reset link");
    assert_eq!(lines[1]["comment"], "step missing");
    for key in [
        "input",
        "expected_output",
        "original_output",
        "request_id",
        "model",
        "feature",
        "release",
        "comment",
        "timestamp",
    ] {
        assert!(lines[0].get(key).is_some(), "missing {key}");
    }
    let (status, _, body) = server
        .post_raw("/api/v1/feedback", &[], b"not json".to_vec())
        .await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    server.stop().await;
}

#[tokio::test]
async fn compare_sets_two_releases_side_by_side_with_z_tests() {
    let server = TestServer::start("", ms(NOW)).await;
    let now = ms(NOW);
    let mut events = Vec::new();
    // v1: 100 requests, 30 errors; v2: 100 requests, 45 errors.
    for (release, errors) in [("v1", 30), ("v2", 45)] {
        for i in 0..100 {
            let mut e = event(
                &format!("{release}-{i}"),
                now - 86_400_000 + i * 1000,
                "chat",
                release,
                Some(trio(if release == "v1" { 0.9 } else { 0.5 })),
            );
            if i < errors {
                e["status"] = json!("error");
            }
            events.push(e);
        }
    }
    let (status, _) = server.post_events(ndjson(&events)).await;
    assert_eq!(status, 200);
    let mut feedback = Vec::new();
    for i in 0..10 {
        let ts = now - 500; // `to` (now) is exclusive
        feedback.push(json!({"request_id": format!("v1-{i}"), "timestamp": ts, "type": if i < 8 { "thumbs_up" } else { "thumbs_down" }}));
        feedback.push(json!({"request_id": format!("v2-{i}"), "timestamp": ts, "type": if i < 4 { "thumbs_up" } else { "thumbs_down" }}));
    }
    post(&server, "/api/v1/feedback", ndjson(&feedback)).await;

    let (status, c) = server.get("/api/v1/compare?by=release&a=v1&b=v2").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["a"]["requests"], 100);
    close(&c["a"]["error_rate"], 0.30);
    close(&c["b"]["error_rate"], 0.45);
    close(&c["a"]["quality"]["mean"], 0.9);
    close(&c["b"]["quality"]["below_threshold_share"], 1.0);
    close(&c["a"]["satisfaction_rate"], 0.8);
    close(&c["b"]["satisfaction_rate"], 0.4);
    // Pooled z for 45/100 vs 30/100: 2.19089, two-sided p 0.028459 (scipy.stats.norm.sf * 2).
    let t = &c["tests"]["error_rate"];
    assert!((t["z"].as_f64().unwrap() - 2.190_890).abs() < 1e-5, "{t}");
    assert!(
        (t["p_value"].as_f64().unwrap() - 0.028_459).abs() < 1e-5,
        "{t}"
    );
    // 4/10 vs 8/10: p = 0.6, se = sqrt(0.24 * 0.2), z = -0.4 / 0.219089 = -1.825742,
    // p = 0.067889.
    let t = &c["tests"]["satisfaction_rate"];
    assert!((t["z"].as_f64().unwrap() + 1.825_742).abs() < 1e-5, "{t}");
    assert!(
        (t["p_value"].as_f64().unwrap() - 0.067_889).abs() < 1e-5,
        "{t}"
    );
    assert!(c["a"]["p95_latency_ms"].as_f64().unwrap() > 790.0);
    // Cost per request: every request of gpt-4o-mini, 100 in + 50 out tokens; errors too.
    assert!(c["a"]["cost_per_request_usd"].as_f64().unwrap() > 0.0);
    let (_, c) = server
        .get("/api/v1/compare?by=model&a=gpt-4o-mini&b=gpt-4o")
        .await;
    assert_eq!(c["b"]["requests"], 0, "{c}");
    assert_eq!(c["tests"]["error_rate"], Value::Null);
    server.stop().await;
}

/// A stand-in OpenAI-compatible judge: every criterion scores 0.8, 50 + 10 tokens per call.
async fn stand_in_judge() -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            Json(json!({
                "id": "x", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                    "content": "{\"score\": 0.8, \"reason\": \"fine\"}"}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn the_configured_judge_scores_captured_requests_and_its_cost_is_tracked() {
    let judge = stand_in_judge().await;
    let config = format!(
        "capture_content = true\n[judge]\nbase_url = \"{judge}\"\nmodel = \"gpt-4o-mini\"\nsample_rate = 1.0\n"
    );
    let server = TestServer::start(&config, ms(NOW)).await;
    let mut e = event("j1", ms(NOW) - 1000, "chat", "v1", None);
    e["input"] = json!("What is the refund window?");
    e["output"] = json!("30 days from delivery.");
    let (status, _) = server.post_events(e.to_string()).await;
    assert_eq!(status, 200);
    // Wait (not a timing assertion) for the background judge.
    let mut scores = Value::Null;
    for _ in 0..500 {
        let (_, r) = server.get("/api/v1/requests/j1").await;
        scores = r["scores"].clone();
        if scores.get("safety").is_some() && scores.get("relevance").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for name in ["relevance", "completeness", "safety"] {
        assert_eq!(scores[name], 0.8, "{scores}");
    }
    // Three calls of 50 + 10 tokens at gpt-4o-mini's $0.15 / $0.60 per 1M: 3 * 13.5e-6 USD.
    let (_, cost) = server
        // The judge's calls are stamped with the (frozen) clock: `to` just after it.
        .get(&format!(
            "/api/v1/reports/cost?group_by=feature&from={}&to={}",
            ms(NOW) - 86_400_000,
            ms(NOW) + 1
        ))
        .await;
    let judge_group = cost["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "llmwatch-judge")
        .unwrap_or_else(|| panic!("no judge group: {cost}"))
        .clone();
    assert_eq!(judge_group["requests"], 3, "{judge_group}");
    common::assert_usd(&judge_group["cost"], 3.0 * 13.5e-6);
    let (_, q) = server.get("/api/v1/quality").await;
    close(&q["composite"]["mean"], 0.8);
    let (_, h) = server.get("/healthz").await;
    assert_eq!(
        (&h["judge"]["judged"], &h["judge"]["calls"]),
        (&json!(1), &json!(3)),
        "{h}"
    );
    server.stop().await;
}

/// The streak of each feature over a range, computed here from the test's own data.
fn expected_streaks(data: &[(String, i64, String, f64)], from: i64, to: i64, length: u32) -> Value {
    let mut rows: Vec<&(String, i64, String, f64)> =
        data.iter().filter(|d| d.1 >= from && d.1 < to).collect();
    rows.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let mut out = serde_json::Map::new();
    let mut state: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    for (_, _, feature, c) in rows {
        let s = state.entry(feature.as_str()).or_default();
        if *c < 0.7 {
            s.0 += 1;
            s.1 = s.1.max(s.0);
        } else {
            s.0 = 0;
        }
    }
    for (f, (current, longest)) in state {
        out.insert(
            f.to_owned(),
            json!({"current": current, "longest": longest, "escalated": current >= length}),
        );
    }
    Value::Object(out)
}

#[tokio::test]
async fn streaks_over_any_range_match_a_recount_whatever_the_arrival_order() {
    let server = TestServer::start("", ms(NOW)).await;
    let t0 = ms(NOW) - 6 * 3_600_000;
    // 300 requests over 6 hours in two features, composites in runs, sent shuffled in batches,
    // some scored later, some corrected.
    let mut seed: u64 = 42;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut data: Vec<(String, i64, String, f64)> = Vec::new();
    let mut bad_run = false;
    for i in 0..300 {
        if rnd() < 0.15 {
            bad_run = !bad_run;
        }
        let c = if bad_run { 0.3 } else { 0.9 };
        let feature = if rnd() < 0.5 { "chat" } else { "search" };
        let ts = t0 + (rnd() * 6.0 * 3_600_000.0) as i64;
        data.push((format!("s{i:03}"), ts, feature.to_owned(), c));
    }
    let mut order: Vec<usize> = (0..data.len()).collect();
    for i in (1..order.len()).rev() {
        let j = (rnd() * (i + 1) as f64) as usize % (i + 1);
        order.swap(i, j);
    }
    for chunk in order.chunks(37) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let (id, ts, f, c) = &data[i];
                // A third get their scores later, through /api/v1/scores.
                let inline = (i % 3 != 0).then(|| trio(*c));
                event(id, *ts, f, "v1", inline)
            })
            .collect();
        let (status, body) = server.post_events(ndjson(&events)).await;
        assert_eq!(status, 200, "{body}");
    }
    let late: Vec<Value> = (0..data.len())
        .filter(|i| i % 3 == 0)
        .flat_map(|i| {
            let (id, _, _, c) = &data[i];
            ["relevance", "completeness", "safety"]
                .map(|n| json!({"request_id": id, "name": n, "value": c}))
        })
        .collect();
    let (status, _) = post(&server, "/api/v1/scores", ndjson(&late)).await;
    assert_eq!(status, 200);
    // Corrections: every tenth request flips, as a person re-scoring would.
    let corrections: Vec<Value> = (0..data.len())
        .filter(|i| i % 10 == 5)
        .flat_map(|i| {
            data[i].3 = if data[i].3 < 0.7 { 0.9 } else { 0.3 };
            let (id, _, _, c) = &data[i];
            ["relevance", "completeness", "safety"]
                .map(|n| json!({"request_id": id, "name": n, "value": c, "source": "human"}))
        })
        .collect();
    let (status, _) = post(&server, "/api/v1/scores", ndjson(&corrections)).await;
    assert_eq!(status, 200);

    let ranges = [
        (t0, t0 + 6 * 3_600_000),
        (t0 + 1_234_567, t0 + 5 * 3_600_000 - 98_765),
        (
            t0 + 3_600_000 - (t0 % 3_600_000),
            t0 + 4 * 3_600_000 - (t0 % 3_600_000),
        ),
        (t0 + 100, t0 + 2_000_000),
    ];
    for (from, to) in ranges {
        let want = expected_streaks(&data, from, to, 5);
        for extra in ["", "&model=gpt-4o-mini"] {
            let (_, q) = server
                .get(&format!("/api/v1/quality?from={from}&to={to}{extra}"))
                .await;
            assert_eq!(q["streak"]["by_feature"], want, "{from}..{to}{extra}");
        }
    }
    server.stop().await;
}
