//! Ingest over HTTP: item-by-item acceptance, whole-body rejection, limits, idempotency.

mod common;

use common::{TestServer, assert_usd, ms};
use serde_json::json;

const NOW: &str = "2026-03-02T12:00:00Z";

fn event(id: &str, model: &str, input: u64, output: u64) -> serde_json::Value {
    json!({"request_id": id, "timestamp": "2026-03-02T10:00:00Z", "model": model,
           "input_tokens": input, "output_tokens": output})
}

#[tokio::test]
async fn ndjson_batch_is_accepted_item_by_item_with_fields_named() {
    let s = TestServer::start("", ms(NOW)).await;
    let body = [
        event("a", "gpt-4o", 100, 10).to_string(),
        json!({"request_id": "b", "model": "gpt-4o", "input_tokens": -5, "output_tokens": 1})
            .to_string(),
        "{not json".to_owned(),
        event("c", "gpt-4o", 100, 10).to_string(),
        json!({"request_id": "d", "input_tokens": 1, "output_tokens": 1}).to_string(),
        json!({"request_id": "e", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
               "stages": {"guardrail": "slow"}})
        .to_string(),
        "".to_owned(),
    ]
    .join("\n");
    let (status, v) = s.post_events(body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    let rejected: Vec<(u64, &str)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "input_tokens"),
            (2, "(item)"),
            (4, "model"),
            (5, "stages.guardrail")
        ]
    );
    // The accepted ones are stored and the rejected ones are not.
    assert_eq!(s.get("/api/v1/requests/a").await.0, 200);
    assert_eq!(s.get("/api/v1/requests/c").await.0, 200);
    assert_eq!(s.get("/api/v1/requests/b").await.0, 404);
}

#[tokio::test]
async fn json_array_is_accepted_and_all_rejected_is_422() {
    let s = TestServer::start("", ms(NOW)).await;
    let body = json!([event("a", "gpt-4o", 1, 1), event("b", "gpt-4o", 2, 2)]).to_string();
    let (status, v) = s.post_events(body).await;
    assert_eq!((status, v["accepted"].as_u64()), (200, Some(2)));

    let body = json!([{"request_id": "x"}]).to_string();
    let (status, v) = s.post_events(body).await;
    assert_eq!(status, 422);
    assert_eq!(v["accepted"], 0);
    assert_eq!(v["rejected"][0]["field"], "model");
}

#[tokio::test]
async fn unparseable_bodies_are_rejected_whole_and_store_nothing() {
    let s = TestServer::start("", ms(NOW)).await;
    let broken_array = format!("[{}, {{", event("a", "gpt-4o", 1, 1));
    for body in [
        broken_array.into_bytes(),
        Vec::new(),
        b"  \n ".to_vec(),
        vec![b'{', 0xff, 0xfe, b'}'],
    ] {
        let (status, v) = s.post_events(body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["field"], "body");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    assert_eq!(s.get("/api/v1/requests/a").await.0, 404);
    // The server keeps serving.
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn oversize_body_gets_413_and_stores_nothing() {
    let s = TestServer::start("max_body_bytes = 2048", ms(NOW)).await;
    let big: String = (0..40)
        .map(|i| event(&format!("r{i}"), "gpt-4o", 1, 1).to_string() + "\n")
        .collect();
    assert!(big.len() > 2048);
    let (status, v) = s.post_events(big).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], "body_too_large");
    assert_eq!(s.get("/api/v1/requests/r0").await.0, 404);
}

#[tokio::test]
async fn resending_the_same_request_id_never_counts_twice() {
    let s = TestServer::start("", ms(NOW)).await;
    let batch: String = (0..50)
        .map(|i| event(&format!("r{i}"), "gpt-4o", 1000, 100).to_string() + "\n")
        .collect();
    for _ in 0..3 {
        let (status, v) = s.post_events(batch.clone()).await;
        assert_eq!((status, v["accepted"].as_u64()), (200, Some(50)));
    }
    let (_, r) = s.get("/api/v1/reports/daily?date=2026-03-02").await;
    assert_eq!(r["total_requests"], 50);
    // gpt-4o: 1000 x $2.5/M + 100 x $10/M = $0.0035 per request.
    assert_usd(&r["total_cost"], 50.0 * 0.0035);

    // A corrected record replaces the earlier one everywhere: other model, other tokens.
    let fix = json!({"request_id": "r0", "timestamp": "2026-03-02T10:00:00Z", "model": "gpt-4o-mini",
                     "input_tokens": 2000, "output_tokens": 0, "feature": "chat"});
    s.post_events(fix.to_string()).await;
    let (_, r) = s.get("/api/v1/reports/daily?date=2026-03-02").await;
    assert_eq!(r["total_requests"], 50);
    assert_eq!(r["by_model"]["gpt-4o"]["requests"], 49);
    assert_eq!(r["by_model"]["gpt-4o-mini"]["requests"], 1);
    assert_eq!(r["by_feature"]["chat"]["requests"], 1);
    assert_eq!(r["by_feature"]["(none)"]["requests"], 49);
    // 49 x $0.0035 + 2000 x $0.15/M.
    assert_usd(&r["total_cost"], 49.0 * 0.0035 + 0.0003);
    assert_eq!(r["total_tokens"], 49 * 1100 + 2000);
}

#[tokio::test]
async fn content_is_dropped_unless_capture_is_on() {
    let mut e = event("a", "gpt-4o", 1, 1);
    e["input"] = json!("what is my balance?");
    e["output"] = json!("$12");
    let off = TestServer::start("", ms(NOW)).await;
    off.post_events(e.to_string()).await;
    let (_, r) = off.get("/api/v1/requests/a").await;
    assert_eq!((r["input"].is_null(), r["output"].is_null()), (true, true));

    let on = TestServer::start("capture_content = true", ms(NOW)).await;
    on.post_events(e.to_string()).await;
    let (_, r) = on.get("/api/v1/requests/a").await;
    assert_eq!(r["input"], "what is my balance?");
}
