//! What the dashboard reads, through the HTTP API: the embedded pages and assets, the request
//! search, a request's feedback, and the time series the charts draw (stages, users folded
//! beyond a top N, scores, satisfaction, a drift monitor's history).

mod common;

use common::{TestServer, ms};
use serde_json::{Value, json};

const NOW: &str = "2026-03-03T00:00:00Z";

fn ndjson(values: &[Value]) -> String {
    values
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn get_text(server: &TestServer, path: &str) -> (u16, String, String, String) {
    let resp = reqwest::get(format!("{}{path}", server.url)).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (ct, csp) = (header("content-type"), header("content-security-policy"));
    (resp.status().as_u16(), ct, csp, resp.text().await.unwrap())
}

async fn post(server: &TestServer, path: &str, body: String) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .body(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_page_serves_the_app_and_every_asset_is_embedded() {
    let server = TestServer::start("", ms(NOW)).await;
    for page in llmwatch::api::PAGES {
        let (status, ct, csp, body) = get_text(&server, page).await;
        assert_eq!(status, 200, "{page}");
        assert!(ct.starts_with("text/html"), "{page}: {ct}");
        assert!(csp.contains("default-src 'self'"), "{page}: {csp}");
        assert!(body.contains("/assets/app.js"), "{page}");
    }
    // Every file under assets/dashboard is embedded (a new file must be listed) and served
    // byte for byte with its media type.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard");
    let mut on_disk = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(&root).unwrap().to_string_lossy();
                on_disk.push(name.replace('\\', "/"));
            }
        }
    }
    on_disk.sort();
    let mut embedded: Vec<String> = llmwatch::api::ASSETS
        .iter()
        .map(|a| a.name.to_owned())
        .collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
    for asset in llmwatch::api::ASSETS {
        let (status, ct, _, body) = get_text(&server, &format!("/assets/{}", asset.name)).await;
        assert_eq!(status, 200, "{}", asset.name);
        let expected_type = match asset.name.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("html") => "text/html",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert!(ct.starts_with(expected_type), "{}: {ct}", asset.name);
        assert!(
            body.as_bytes() == asset.bytes,
            "{} served as embedded",
            asset.name
        );
        let on_disk = std::fs::read(root.join(asset.name)).unwrap();
        assert!(
            on_disk == asset.bytes,
            "{}: rebuild to embed the file",
            asset.name
        );
    }
    // Every module a script imports, and every asset index.html loads, is embedded.
    let embedded = |name: &str| llmwatch::api::ASSETS.iter().any(|a| a.name == name);
    for asset in llmwatch::api::ASSETS {
        let text = String::from_utf8_lossy(asset.bytes);
        let dir = asset.name.rsplit_once('/').map_or("", |(d, _)| d);
        for quoted in text.split("from \"").skip(1) {
            let target = quoted.split('"').next().unwrap();
            let resolved = resolve(dir, target);
            assert!(
                embedded(&resolved),
                "{} imports {target}: not embedded",
                asset.name
            );
        }
        for quoted in text.split("\"/assets/").skip(1) {
            let target = quoted.split('"').next().unwrap();
            if asset.name == "index.html" {
                assert!(
                    embedded(target),
                    "index.html loads /assets/{target}: not embedded"
                );
            }
        }
    }
    // The router loads pages/NAME.js for each page.
    for page in llmwatch::api::PAGES {
        let name = match page.trim_start_matches('/') {
            "" => "overview",
            other => other,
        };
        assert!(embedded(&format!("pages/{name}.js")), "{page}");
    }
    let (status, _, _, _) = get_text(&server, "/assets/../Cargo.toml").await;
    assert_eq!(status, 404);
    let (status, _, _, _) = get_text(&server, "/assets/nope.js").await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// Ten requests a minute apart from 22:00, alternating users u0/u1/u2, every third an error.
fn requests() -> Vec<Value> {
    let t0 = ms("2026-03-02T22:00:00Z");
    (0..10)
        .map(|i| {
            json!({"request_id": format!("req-{i:02}"), "timestamp": t0 + i * 60_000,
                   "model": if i < 5 { "gpt-4o" } else { "gpt-4o-mini" }, "feature": "chat",
                   "user_id": format!("u{}", i % 3), "input_tokens": 100 * (i + 1),
                   "output_tokens": 10, "status": if i % 3 == 0 { "error" } else { "ok" },
                   "error_type": if i % 3 == 0 { json!("timeout") } else { Value::Null },
                   "stages": {"guardrail": 10 * (i + 1), "model_inference": 100},
                   "duration_ms": 10 * (i + 1) + 100 + 5})
        })
        .collect()
}

#[tokio::test]
async fn request_search_filters_and_pages_newest_first() {
    let server = TestServer::start("", ms(NOW)).await;
    let (status, body) = server.post_events(ndjson(&requests())).await;
    assert_eq!(status, 200, "{body}");
    let ids = |v: &Value| -> Vec<String> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = server.get("/api/v1/requests").await;
    assert_eq!(status, 200, "{all}");
    let expected: Vec<String> = (0..10).rev().map(|i| format!("req-{i:02}")).collect();
    assert_eq!(ids(&all), expected);
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["requests"][0];
    assert_eq!(first["model"], "gpt-4o-mini");
    assert_eq!(first["status"], "error");
    assert_eq!(first["duration_ms"], 205.0);
    assert_eq!(first["timestamp_ms"], ms("2026-03-02T22:09:00Z"));

    // Pages of 4 cover every request once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            None => "/api/v1/requests?limit=4".to_owned(),
            Some(c) => {
                let mut url =
                    reqwest::Url::parse("http://localhost/api/v1/requests?limit=4").unwrap();
                url.query_pairs_mut().append_pair("cursor", c);
                format!("{}?{}", url.path(), url.query().unwrap_or_default())
            }
        };
        let (status, page) = server.get(&q).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let (_, r) = server
        .get("/api/v1/requests?status=error&model=gpt-4o-mini")
        .await;
    assert_eq!(ids(&r), ["req-09", "req-06"]);
    let (_, r) = server.get("/api/v1/requests?user=u1&feature=chat").await;
    assert_eq!(ids(&r), ["req-07", "req-04", "req-01"]);
    // An id prefix searches all time; with a range, only that range.
    server
        .post_events(
            json!({"request_id": "req-old", "timestamp": "2026-01-01T00:00:00Z", "model": "gpt-4o",
                   "input_tokens": 1, "output_tokens": 1})
            .to_string(),
        )
        .await;
    let (_, r) = server.get("/api/v1/requests?request_id=req-0").await;
    assert_eq!(ids(&r), expected);
    let (_, r) = server.get("/api/v1/requests?request_id=req-o").await;
    assert_eq!(ids(&r), ["req-old"]);
    let (_, r) = server
        .get("/api/v1/requests?request_id=req-o&from=2026-03-01T00:00:00Z")
        .await;
    assert_eq!(ids(&r), Vec::<String>::new());
    let (_, r) = server
        .get("/api/v1/requests?from=2026-03-02T22:03:00Z&to=2026-03-02T22:05:00Z")
        .await;
    assert_eq!(ids(&r), ["req-04", "req-03"]);

    for (query, field) in [
        ("status=maybe", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=garbage", "cursor"),
        ("from=yesterday", "from"),
    ] {
        let (status, r) = server.get(&format!("/api/v1/requests?{query}")).await;
        assert_eq!(
            (status, r["error"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {r}"
        );
    }
    server.stop().await;
}

/// A relative module path resolved against a directory of the assets.
fn resolve(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[tokio::test]
async fn request_detail_lists_its_feedback() {
    let server = TestServer::start("", ms(NOW)).await;
    server.post_events(ndjson(&requests())).await;
    let t = ms("2026-03-02T23:00:00Z");
    let feedback = [
        json!({"request_id": "req-03", "type": "thumbs_down", "comment": "too slow", "user_id": "u0", "timestamp": t}),
        json!({"request_id": "req-03", "type": "correction", "correction": "42", "timestamp": t + 1000}),
        json!({"request_id": "req-04", "type": "thumbs_up", "timestamp": t}),
    ];
    let (status, body) = post(&server, "/api/v1/feedback", ndjson(&feedback)).await;
    assert_eq!(status, 200, "{body}");
    let (status, r) = server.get("/api/v1/requests/req-03").await;
    assert_eq!(status, 200, "{r}");
    let fb = r["feedback"].as_array().unwrap();
    assert_eq!(fb.len(), 2);
    assert_eq!(
        (&fb[0]["type"], &fb[0]["comment"], &fb[0]["user_id"]),
        (&json!("thumbs_down"), &json!("too slow"), &json!("u0"))
    );
    assert_eq!(fb[0]["timestamp_ms"], t);
    assert_eq!(
        (&fb[1]["type"], &fb[1]["correction"]),
        (&json!("correction"), &json!("42"))
    );
    let (_, r) = server.get("/api/v1/requests/req-05").await;
    assert_eq!(r["feedback"], json!([]));
    server.stop().await;
}

fn series_by<'a>(r: &'a Value, label: &str, value: &str) -> &'a Value {
    r["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"][label] == value)
        .unwrap_or_else(|| panic!("no series {label}={value} in {r}"))
}

#[tokio::test]
async fn stage_means_stack_to_the_mean_duration() {
    let server = TestServer::start("", ms(NOW)).await;
    server.post_events(ndjson(&requests())).await;
    let q = "from=2026-03-02T22:00:00Z&to=2026-03-02T22:10:00Z&step=5m";
    let (status, r) = server
        .get(&format!("/api/v1/timeseries?metric=stage_mean&{q}"))
        .await;
    assert_eq!(status, 200, "{r}");
    // First 5 minutes: requests 0..4, guardrail 10..50 ms (sum 150), inference 100 each,
    // 5 ms unaccounted each.
    let point = |s: &Value, i: usize| s["points"][i][1].as_f64().unwrap();
    let guard = series_by(&r, "stage", "guardrail");
    assert_eq!(guard["points"][0][0], ms("2026-03-02T22:00:00Z"));
    assert!((point(guard, 0) - 30.0).abs() < 1e-9);
    assert!((point(guard, 1) - 80.0).abs() < 1e-9); // (60+70+80+90+100) / 5
    let inference = series_by(&r, "stage", "model_inference");
    assert!((point(inference, 0) - 100.0).abs() < 1e-9);
    let unaccounted = series_by(&r, "stage", "(unaccounted)");
    assert!((point(unaccounted, 0) - 5.0).abs() < 1e-9);
    let (_, mean) = server
        .get(&format!("/api/v1/timeseries?metric=mean&{q}"))
        .await;
    for i in 0..2 {
        let stacked = point(guard, i) + point(inference, i) + point(unaccounted, i);
        assert!((stacked - point(&mean["series"][0], i)).abs() < 1e-9);
    }
    let (status, r) = server
        .get(&format!(
            "/api/v1/timeseries?metric=stage_mean&group_by=model&{q}"
        ))
        .await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (400, Some("group_by"))
    );
    server.stop().await;
}

#[tokio::test]
async fn users_beyond_the_top_fold_into_other() {
    let server = TestServer::start("", ms(NOW)).await;
    server.post_events(ndjson(&requests())).await;
    let q = "metric=tokens&group_by=user&from=2026-03-02T22:00:00Z&to=2026-03-02T22:10:00Z&step=5m";
    let (status, r) = server.get(&format!("/api/v1/timeseries?{q}&top=1")).await;
    assert_eq!(status, 200, "{r}");
    // Tokens = 100 (i+1) + 10. u0: i = 0,3,6,9 -> 100+400+700+1000 + 40 = 2240;
    // u1: 1,4,7 -> 200+500+800 + 30 = 1530; u2: 2,5,8 -> 300+600+900 + 30 = 1830.
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{r}");
    assert_eq!(series[0]["labels"], json!({"user": "u0"}));
    assert_eq!(series[1]["labels"], json!({"user": "(other)"}));
    let sum = |s: &Value| -> f64 {
        s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum(&series[0]), 2240.0);
    assert_eq!(sum(&series[1]), 1530.0 + 1830.0);
    // First bucket (i = 0..4): u1 has i = 1 and 4 (210 + 510), u2 has i = 2 (310).
    assert_eq!(series[1]["points"][0][1], 210.0 + 510.0 + 310.0);
    let (_, r) = server.get(&format!("/api/v1/timeseries?{q}")).await;
    assert_eq!(r["series"].as_array().unwrap().len(), 3);
    let (status, r) = server
        .get("/api/v1/timeseries?metric=p95&group_by=user&top=1")
        .await;
    assert_eq!((status, r["error"]["field"].as_str()), (400, Some("top")));
    server.stop().await;
}

#[tokio::test]
async fn score_and_satisfaction_series_per_bucket() {
    let server = TestServer::start("", ms(NOW)).await;
    server.post_events(ndjson(&requests())).await;
    // Relevance 0.2, 0.4 in the first five minutes, 0.9 in the next; complete composites
    // (relevance, completeness, safety) only for req-01.
    let scores = [
        json!({"request_id": "req-01", "name": "relevance", "value": 0.2}),
        json!({"request_id": "req-01", "name": "completeness", "value": 0.5}),
        json!({"request_id": "req-01", "name": "safety", "value": 0.8}),
        json!({"request_id": "req-02", "name": "relevance", "value": 0.4}),
        json!({"request_id": "req-07", "name": "relevance", "value": 0.9}),
    ];
    let (status, body) = post(&server, "/api/v1/scores", ndjson(&scores)).await;
    assert_eq!(status, 200, "{body}");
    let t = ms("2026-03-02T22:00:00Z");
    let feedback = [
        json!({"request_id": "req-01", "type": "thumbs_up", "timestamp": t + 1_000}),
        json!({"request_id": "req-02", "type": "thumbs_up", "timestamp": t + 2_000}),
        json!({"request_id": "req-03", "type": "thumbs_down", "timestamp": t + 3_000}),
        json!({"request_id": "req-04", "type": "report", "timestamp": t + 4_000}),
        json!({"request_id": "req-08", "type": "thumbs_down", "timestamp": t + 400_000}),
    ];
    let (status, body) = post(&server, "/api/v1/feedback", ndjson(&feedback)).await;
    assert_eq!(status, 200, "{body}");
    let q = "from=2026-03-02T22:00:00Z&to=2026-03-02T22:15:00Z&step=5m";
    let (status, r) = server
        .get(&format!("/api/v1/timeseries?metric=score&{q}"))
        .await;
    assert_eq!(status, 200, "{r}");
    let relevance = series_by(&r, "score", "relevance");
    let pts = relevance["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2, "no point in the empty third bucket: {r}");
    assert!((pts[0][1].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert_eq!(pts[1][0], t + 300_000);
    assert!((pts[1][1].as_f64().unwrap() - 0.9).abs() < 1e-9);
    let composite = series_by(&r, "score", "composite");
    assert_eq!(composite["points"].as_array().unwrap().len(), 1);
    assert!((composite["points"][0][1].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let (_, r) = server
        .get(&format!("/api/v1/timeseries?metric=score&name=safety&{q}"))
        .await;
    assert_eq!(r["series"].as_array().unwrap().len(), 1);

    let (status, r) = server
        .get(&format!("/api/v1/timeseries?metric=satisfaction&{q}"))
        .await;
    assert_eq!(status, 200, "{r}");
    // 2 up / 3 votes, then 0 up / 1 vote, then no votes (no point); reports are not votes.
    let pts = r["series"][0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2, "{r}");
    assert!((pts[0][1].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(pts[1][1], 0.0);
    let (_, r) = server
        .get(&format!("/api/v1/timeseries?metric=reports&{q}"))
        .await;
    assert_eq!(
        r["series"][0]["points"],
        json!([[t, 1.0], [t + 300_000, 0.0], [t + 600_000, 0.0]])
    );
    let (status, r) = server
        .get(&format!(
            "/api/v1/timeseries?metric=score&group_by=model&{q}"
        ))
        .await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (400, Some("group_by"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_drift_monitor_history_scores_each_window() {
    let config = r#"
[[drift]]
name = "models"
dimension = "model"
window = "1h"
method = "kl"

[[drift]]
name = "models-tested"
dimension = "model"
window = "1h"
method = "chi2"
"#;
    let server = TestServer::start(config, ms(NOW)).await;
    let hour = 3_600_000;
    let now = ms(NOW);
    // A baseline week of gpt-4o only, then the last two hours all gpt-4o-mini.
    let mut events = Vec::new();
    for i in 0..200 {
        events.push(
            json!({"request_id": format!("b{i}"), "timestamp": now - 3 * hour - i * 3_000_000,
            "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}),
        );
    }
    for i in 0..66 {
        events.push(
            json!({"request_id": format!("c{i}"), "timestamp": now - 2 * hour + i * 100_000,
            "model": "gpt-4o-mini", "input_tokens": 1, "output_tokens": 1}),
        );
    }
    let (status, body) = server.post_events(ndjson(&events)).await;
    assert_eq!(status, 200, "{body}");
    let (status, h) = server
        .get("/api/v1/drift/history?monitor=models&from=2026-03-02T20:00:00Z&step=1h")
        .await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(
        (&h["name"], &h["dimension"], &h["method"], &h["step_s"]),
        (
            &json!("models"),
            &json!("model"),
            &json!("kl"),
            &json!(3600)
        )
    );
    let points = h["points"].as_array().unwrap();
    // Windows ending 21:00 and 22:00 hold one baseline request each (too few for a verdict);
    // those ending 23:00 and 00:00 hold 36 and 30 current requests.
    let ends: Vec<i64> = points.iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(ends, [now - hour, now]);
    // Each point is the same check as GET /api/v1/drift over that window.
    for p in points {
        let end = p[0].as_i64().unwrap();
        let (_, check) = server
            .get(&format!(
                "/api/v1/drift?dimension=model&method=kl&from={}&to={end}",
                end - hour
            ))
            .await;
        assert_eq!(p[1], check["score"], "{check}");
    }
    assert_eq!(h["threshold"], 0.1);
    assert_eq!(h["threshold_applies_to"], "score");
    assert_eq!(h["p_values"], json!([]));
    // A test compares its p-value with the threshold (alpha): the history carries them.
    let (_, h) = server
        .get("/api/v1/drift/history?monitor=models-tested&from=2026-03-02T20:00:00Z&step=1h")
        .await;
    assert_eq!(h["threshold_applies_to"], "p_value");
    let p_values = h["p_values"].as_array().unwrap();
    assert_eq!(p_values.len(), 2, "{h}");
    for p in p_values {
        let end = p[0].as_i64().unwrap();
        let (_, check) = server
            .get(&format!(
                "/api/v1/drift?dimension=model&method=chi2&from={}&to={end}",
                end - hour
            ))
            .await;
        assert_eq!(p[1], check["p_value"], "{check}");
    }
    let (status, _) = server.get("/api/v1/drift/history?monitor=nope").await;
    assert_eq!(status, 404);
    let (status, r) = server.get("/api/v1/drift/history").await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (400, Some("monitor"))
    );
    server.stop().await;
}

#[tokio::test]
async fn feedback_summary_over_a_range_and_unpriced_operations() {
    let server = TestServer::start("", ms(NOW)).await;
    let mut events = requests();
    events.push(
        json!({"request_id": "ft-1", "timestamp": "2026-03-02T22:30:00Z",
        "model": "our-own-finetune", "feature": "search", "input_tokens": 70, "output_tokens": 7}),
    );
    server.post_events(ndjson(&events)).await;
    let t = ms("2026-03-02T22:00:00Z");
    let feedback = [
        json!({"request_id": "req-01", "type": "thumbs_up", "timestamp": t}),
        json!({"request_id": "ft-1", "type": "thumbs_down", "timestamp": t + 60_000}),
        json!({"request_id": "ft-1", "type": "thumbs_up", "timestamp": t + 120_000}),
        json!({"request_id": "req-02", "type": "thumbs_down", "timestamp": t - 86_400_000}),
    ];
    post(&server, "/api/v1/feedback", ndjson(&feedback)).await;
    let (status, r) = server
        .get("/api/v1/feedback/summary?from=2026-03-02T21:00:00Z&to=2026-03-03T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((&r["thumbs_up"], &r["thumbs_down"]), (&json!(2), &json!(1)));
    let (_, r) = server
        .get("/api/v1/feedback/summary?from=2026-03-02T21:00:00Z&feature=search")
        .await;
    assert_eq!((&r["thumbs_up"], &r["thumbs_down"]), (&json!(1), &json!(1)));
    assert_eq!(r["satisfaction_rate"], 0.5);
    // The default is still the last 7 days, which hold the older thumbs down too.
    let (_, r) = server.get("/api/v1/feedback/summary").await;
    assert_eq!((&r["thumbs_up"], &r["thumbs_down"]), (&json!(2), &json!(2)));
    let (status, r) = server
        .get("/api/v1/feedback/summary?days=3&from=2026-03-02T21:00:00Z")
        .await;
    assert_eq!((status, r["error"]["field"].as_str()), (400, Some("days")));
    // Complaints over a range: the day-old report is outside it, inside the default 30 days.
    let comments = [
        json!({"request_id": "req-05", "type": "report", "comment": "wrong refund policy", "timestamp": t}),
        json!({"request_id": "req-06", "type": "report", "comment": "wrong refund amount", "timestamp": t - 86_400_000}),
    ];
    post(&server, "/api/v1/feedback", ndjson(&comments)).await;
    let (status, r) = server
        .get("/api/v1/feedback/complaints?from=2026-03-02T21:00:00Z")
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["complaints"], 1);
    let (_, r) = server.get("/api/v1/feedback/complaints").await;
    assert_eq!(r["complaints"], 2);

    let (_, ops) = server
        .get("/api/v1/operations?from=2026-03-02T21:00:00Z&to=2026-03-03T00:00:00Z")
        .await;
    assert_eq!(
        (&ops["requests"], &ops["unpriced_requests"]),
        (&json!(11), &json!(1))
    );
    assert_eq!(ops["unpriced_tokens"], 77);
    server.stop().await;
}
