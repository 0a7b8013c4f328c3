//! The drift axis through the HTTP API: events in a baseline week and a current day, checks
//! against rolling, pinned and uploaded baselines, monitors from the config, and bad input.

mod common;

use common::{TestServer, ms};
use serde_json::{Value, json};

const NOW: &str = "2026-04-20T12:00:00Z";
const HOUR: i64 = 3_600_000;

/// The seed's KL divergence with add-one smoothing, written out again here as the judge.
fn seed_kl(p: &[(&str, u64)], q: &[(&str, u64)]) -> f64 {
    let mut keys: Vec<&str> = p.iter().chain(q).map(|(k, _)| *k).collect();
    keys.sort();
    keys.dedup();
    let total = |d: &[(&str, u64)]| d.iter().map(|(_, n)| *n).sum::<u64>() as f64;
    let get =
        |d: &[(&str, u64)], k: &str| d.iter().find(|(x, _)| *x == k).map_or(0, |(_, n)| *n) as f64;
    let k = keys.len() as f64;
    keys.iter()
        .map(|key| {
            let pp = (get(p, key) + 1.0) / (total(p) + k);
            let qq = (get(q, key) + 1.0) / (total(q) + k);
            pp * (pp / qq).ln()
        })
        .sum()
}

/// `n` events per category spread over the hours [from_h, to_h) before NOW, with output tokens
/// from `tokens`.
fn events(
    tag: &str,
    from_h: i64,
    to_h: i64,
    cats: &[(&str, u64)],
    tokens: impl Fn(usize) -> u64,
) -> String {
    let now = ms(NOW);
    let mut lines = Vec::new();
    let mut i = 0usize;
    for (cat, n) in cats {
        for _ in 0..*n {
            let span = (to_h - from_h) * HOUR;
            let ts = now - from_h * HOUR - 1 - (i as i64 * 7_919) % span.max(1);
            lines.push(
                json!({"request_id": format!("{tag}-{i}"), "timestamp": ts, "model": "gpt-4o-mini",
                       "feature": "chat", "input_tokens": 100, "output_tokens": tokens(i),
                       "attributes": {"question_category": cat}})
                .to_string(),
            );
            i += 1;
        }
    }
    lines.join("\n")
}

async fn drift(server: &TestServer, query: &str) -> (u16, Value) {
    server.get(&format!("/api/v1/drift?{query}")).await
}

const BASE: [(&str, u64); 3] = [("product", 120), ("billing", 90), ("support", 90)];
const CUR: [(&str, u64); 4] = [
    ("product", 40),
    ("billing", 20),
    ("support", 20),
    ("complaint", 40),
];

async fn seeded(config: &str) -> TestServer {
    let server = TestServer::start(config, ms(NOW)).await;
    // Baseline: the week before the current day (hours 24..192 before now); current: last 24 h.
    let (status, body) = server
        .post_events(events("b", 24, 192, &BASE, |i| 200 + (i % 50) as u64))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .post_events(events("c", 0, 24, &CUR, |i| 400 + (i % 50) as u64))
        .await;
    assert_eq!(status, 200, "{body}");
    server
}

#[tokio::test]
async fn a_new_category_against_the_rolling_week() {
    let server = seeded("").await;
    let (status, r) = drift(&server, "dimension=attributes.question_category&method=kl").await;
    assert_eq!(status, 200, "{r}");
    let want = seed_kl(&BASE, &CUR);
    let got = r["score"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-12 * want.abs(),
        "KL {got} vs {want}"
    );
    assert_eq!(r["drift_detected"], true);
    assert_eq!(r["threshold"], 0.1);
    assert_eq!(r["baseline_size"], 300);
    assert_eq!(r["current_size"], 120);
    assert_eq!(r["new_values"], json!(["complaint"]));
    assert_eq!(r["missing_values"], json!([]));
    assert_eq!(r["changes"][0]["value"], "complaint");
    assert!((r["changes"][0]["current_share"].as_f64().unwrap() - 40.0 / 120.0).abs() < 1e-12);
    assert_eq!(r["baseline"]["kind"], "rolling");

    // auto: a baseline of 300 is small: the chi-square test, with a p-value.
    let (_, r) = drift(&server, "dimension=attributes.question_category").await;
    assert_eq!(r["method"], "chi_square");
    assert!(r["p_value"].as_f64().unwrap() < 1e-6, "{r}");
    assert_eq!(r["drift_detected"], true);
    server.stop().await;
}

#[tokio::test]
async fn numeric_drift_on_output_tokens() {
    let server = seeded("").await;
    let (status, r) = drift(&server, "dimension=output_tokens").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["method"], "ks");
    // Every current value (400..449) is above every baseline value (200..249): KS statistic 1
    // (within the sketches' binning bound).
    assert!(r["score"].as_f64().unwrap() > 0.97, "{r}");
    assert_eq!(r["drift_detected"], true);
    let (_, r) = drift(&server, "dimension=output_tokens&method=wasserstein").await;
    // Shift 200 over the baseline's sd of a uniform 200..249 (14.43): 13.86; from sketches
    // within the documented bound: 1% of the two means (225 + 425) on the distance, 1% on the sd.
    let w = r["score"].as_f64().unwrap();
    let exact = 200.0 / 14.4309;
    assert!(
        (w - exact).abs() <= (0.01 * 650.0) / 14.4309 * 1.01 + 0.01 * exact,
        "{w} vs {exact}"
    );
    server.stop().await;
}

#[tokio::test]
async fn pinned_and_uploaded_baselines() {
    let server = seeded("").await;
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let c = client.clone();
        let url = format!("{}/api/v1/drift/baselines", server.url);
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // The seed's set_baseline: explicit values, identical to the current window -> no drift.
    let mut values = Vec::new();
    for (cat, n) in CUR {
        values.extend(std::iter::repeat_n(cat, n as usize));
    }
    let (status, _) = post(
        json!({"name": "same", "dimension": "attributes.question_category", "values": values}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, r) = drift(
        &server,
        "dimension=attributes.question_category&baseline=same&method=kl",
    )
    .await;
    assert_eq!(r["score"], 0.0, "{r}");
    assert_eq!(r["drift_detected"], false);
    assert_eq!(r["baseline"]["kind"], "counts");

    // A pinned range equal to the rolling week gives the rolling answer.
    let now = ms(NOW);
    let (status, _) = post(
        json!({"name": "week", "dimension": "attributes.question_category",
                                  "from": now - 192 * HOUR, "to": now - 24 * HOUR}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, pinned) = drift(
        &server,
        "dimension=attributes.question_category&baseline=week&method=kl",
    )
    .await;
    let (_, rolling) = drift(&server, "dimension=attributes.question_category&method=kl").await;
    assert_eq!(pinned["score"], rolling["score"]);
    assert_eq!(pinned["baseline"]["name"], "week");

    let (_, list) = server.get("/api/v1/drift/baselines").await;
    let names: Vec<&str> = list["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["same", "week"]);
    let del = client
        .delete(format!("{}/api/v1/drift/baselines/week", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 204);
    let (status, body) = drift(
        &server,
        "dimension=attributes.question_category&baseline=week",
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // A baseline of another dimension is refused, naming the parameter.
    let (status, body) = drift(&server, "dimension=model&baseline=same").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("baseline"))
    );
    server.stop().await;
}

#[tokio::test]
async fn no_verdict_below_the_minimum_sample_and_bad_parameters() {
    let server = seeded("").await;
    let (_, r) = drift(
        &server,
        "dimension=attributes.question_category&model=gpt-4o",
    )
    .await;
    assert_eq!(r["score"], Value::Null);
    assert_eq!(r["drift_detected"], false);
    assert!(
        r["reason"].as_str().unwrap().contains("insufficient data"),
        "{r}"
    );
    for (query, field) in [
        ("dimension=colour", "dimension"),
        ("", "dimension"),
        ("dimension=model&method=magic", "method"),
        ("dimension=model&method=ks", "method"),
        ("dimension=model&threshold=-1", "threshold"),
    ] {
        let (status, body) = drift(&server, query).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/drift/baselines", server.url))
        .json(&json!({"name": "x", "dimension": "output_tokens", "values": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["field"],
        "values[0]"
    );
    server.stop().await;
}

#[tokio::test]
async fn monitors_from_the_config() {
    let config = r#"
[[drift]]
name = "categories"
dimension = "attributes.question_category"
method = "kl"

[[drift]]
name = "models"
dimension = "model"
"#;
    let server = seeded(config).await;
    let (status, s) = server.get("/api/v1/drift/status").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["monitors"][0]["name"], "categories");
    assert_eq!(s["monitors"][0]["drift_detected"], true);
    // One model throughout: no drift.
    assert_eq!(s["monitors"][1]["name"], "models");
    assert_eq!(s["monitors"][1]["drift_detected"], false);
    assert_eq!(s["drifting"], 1);
    server.stop().await;
}
