//! The recording proxy against local upstream stand-ins: bodies and statuses pass through,
//! streams arrive chunk by chunk, usage is mapped, llmwatch's headers stay home, the API key is
//! never stored, budgets refuse calls in their scope, upstream failures are answered and
//! recorded.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{TestServer, ms};
use serde_json::{Value, json};

const NOW: &str = "2026-03-02T12:00:00Z";
const KEY: &str = "sk-test-SECRET-7f3a";

/// What the stand-in received last.
#[derive(Default)]
struct Seen {
    headers: Option<HeaderMap>,
    body: Option<Value>,
}

type Shared = Arc<Mutex<Seen>>;

/// One SSE event line.
fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

fn chat_chunk(content: Option<&str>, role: bool) -> Value {
    let mut delta = json!({});
    if role {
        delta["role"] = json!("assistant");
        delta["content"] = json!("");
    }
    if let Some(c) = content {
        delta["content"] = json!(c);
    }
    json!({"id": "chatcmpl-stream1", "object": "chat.completion.chunk", "model": "gpt-4o-2024-08-06",
           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

/// A stream whose events come 150 ms apart.
fn slow_stream(events: Vec<String>) -> Response {
    let stream = async_stream(events);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn async_stream(
    events: Vec<String>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            if tx.send(Ok(Bytes::from(e))).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream(rx)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

async fn openai_chat(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap();
    {
        let mut s = seen.lock().unwrap();
        s.headers = Some(headers);
        s.body = Some(req.clone());
    }
    match req["model"].as_str() {
        Some("rate-limited") => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json"), ("x-upstream", "yes")],
                json!({"error": {"message": "Rate limit reached", "type": "requests",
                                 "code": "rate_limit_exceeded", "param": null}})
                .to_string(),
            )
                .into_response();
        }
        Some("slow") => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    if req["stream"] == true {
        let mut events = vec![
            sse(&chat_chunk(None, true)),
            sse(&chat_chunk(Some("Hel"), false)),
            sse(&chat_chunk(Some("lo!"), false)),
        ];
        if req["stream_options"]["include_usage"] == true {
            events.push(sse(
                &json!({"id": "chatcmpl-stream1", "object": "chat.completion.chunk",
                "model": "gpt-4o-2024-08-06", "choices": [],
                "usage": {"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42,
                          "prompt_tokens_details": {"cached_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0}}}),
            ));
        }
        events.push("data: [DONE]\n\n".to_owned());
        if req["model"] == "linger" {
            // The body ends a moment after [DONE].
            events.push(": bye\n\n".to_owned());
        }
        return slow_stream(events);
    }
    (
        [
            ("content-type", "application/json"),
            ("x-request-id", "req_abc"),
        ],
        json!({"id": "chatcmpl-123", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
                         "prompt_tokens_details": {"cached_tokens": 1024},
                         "completion_tokens_details": {"reasoning_tokens": 64}}})
        .to_string(),
    )
        .into_response()
}

async fn anthropic_messages(
    State(seen): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap();
    {
        let mut s = seen.lock().unwrap();
        s.headers = Some(headers);
        s.body = Some(req.clone());
    }
    let usage = json!({"input_tokens": 100, "cache_read_input_tokens": 2000,
                       "cache_creation_input_tokens": 500, "output_tokens": 1});
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    if req["model"] == "overloaded" {
        // Anthropic reports overload inside a stream that started with 200.
        return slow_stream(vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_03",
                "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                "content": [], "usage": usage}}),
            ),
            ev(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error",
                "message": "Overloaded"}}),
            ),
        ]);
    }
    if req["stream"] == true {
        return slow_stream(vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_01",
                "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                "content": [], "usage": usage}}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "Bonjour"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 250}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ]);
    }
    let mut usage = usage;
    usage["output_tokens"] = json!(250);
    (
        [("content-type", "application/json")],
        json!({"id": "msg_02", "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-20250514",
               "content": [{"type": "text", "text": "Bonjour"}], "stop_reason": "end_turn",
               "usage": usage})
        .to_string(),
    )
        .into_response()
}

async fn models(State(seen): State<Shared>, headers: HeaderMap) -> Response {
    seen.lock().unwrap().headers = Some(headers);
    (
        [("content-type", "application/json")],
        json!({"object": "list", "data": [{"id": "gpt-4o"}]}).to_string(),
    )
        .into_response()
}

/// The stand-in upstream; returns its base URL and what it saw.
async fn upstream() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/models", get(models))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn proxy_server(extra: &str) -> (TestServer, Shared) {
    let (up, seen) = upstream().await;
    let config = format!(
        "capture_content = true\n{extra}\n[proxy]\nopenai_base_url = \"{up}/v1\"\n\
         anthropic_base_url = \"{up}\"\ntimeout = \"1s\"\n"
    );
    (TestServer::start(&config, ms(NOW)).await, seen)
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The stored request, waiting for the asynchronous recorder.
async fn recorded(server: &TestServer, id: &str) -> Value {
    for _ in 0..100 {
        let (status, r) = server.get(&format!("/api/v1/requests/{id}")).await;
        if status == 200 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("request {id} was not recorded");
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn a_chat_call_passes_through_and_is_recorded() {
    let (server, seen) = proxy_server("").await;
    let body =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of France?"}]});
    let resp = client()
        .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
        .bearer_auth(KEY)
        .header("x-llmwatch-user", "u-42")
        .header("x-llmwatch-feature", "geo")
        .header("x-llmwatch-attr-question_category", "travel")
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req_abc");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Paris.");
    {
        let s = seen.lock().unwrap();
        let h = s.headers.as_ref().unwrap();
        assert_eq!(h["authorization"], format!("Bearer {KEY}"));
        assert!(
            h.keys().all(|k| !k.as_str().starts_with("x-llmwatch")),
            "{h:?}"
        );
        assert_eq!(h["accept-encoding"], "identity");
        assert_eq!(s.body.as_ref().unwrap(), &body);
    }
    // No x-llmwatch-request-id: a generated id names the record; the upstream's is kept.
    let mut id = String::new();
    for _ in 0..100 {
        // The record is stamped with the test clock's now; `to` is exclusive.
        let (_, list) = server
            .get("/api/v1/requests?feature=geo&from=0&to=2026-03-02T12:00:01Z")
            .await;
        if let Some(found) = list["requests"][0]["request_id"].as_str() {
            id = found.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(id.starts_with("proxy-"), "{id}");
    let r = recorded(&server, &id).await;
    assert_eq!(r["attributes"]["llmwatch.response_id"], "chatcmpl-123");
    assert_eq!(
        (&r["model"], &r["provider"], &r["status"]),
        (&json!("gpt-4o-2024-08-06"), &json!("openai"), &json!("ok"))
    );
    assert_eq!(
        (
            &r["input_tokens"],
            &r["cached_input_tokens"],
            &r["output_tokens"],
            &r["reasoning_tokens"]
        ),
        (&json!(2000), &json!(1024), &json!(300), &json!(64))
    );
    // gpt-4o: $2.50 / $1.25 cached / $10 per 1M tokens.
    let expected = (976.0 * 2.50 + 1024.0 * 1.25 + 300.0 * 10.0) / 1e6;
    assert!(close(&r["cost"], expected), "{}", r["cost"]);
    assert_eq!(
        (&r["user_id"], &r["feature"]),
        (&json!("u-42"), &json!("geo"))
    );
    assert_eq!(r["attributes"]["question_category"], "travel");
    assert_eq!(r["input"], "Capital of France?");
    assert_eq!(r["output"], "Paris.");
    assert!(r["stages"]["model_inference"].as_f64().unwrap() <= r["duration_ms"].as_f64().unwrap());
    assert_eq!(r["ttft_ms"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn streams_arrive_chunk_by_chunk_with_usage_and_ttft() {
    let (server, _) = proxy_server("").await;
    let started = Instant::now();
    let mut resp = client()
        .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
        .bearer_auth(KEY)
        .header("x-llmwatch-request-id", "stream-1")
        .json(
            &json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = resp.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("chatcmpl-stream1"));
    let mut all = first.to_vec();
    while let Some(c) = resp.chunk().await.unwrap() {
        all.extend_from_slice(&c);
    }
    let total = started.elapsed();
    // Five events 150 ms apart: the first reached the client long before the last was sent.
    assert!(total >= Duration::from_millis(550), "{total:?}");
    assert!(
        first_at + Duration::from_millis(400) < total,
        "{first_at:?} vs {total:?}"
    );
    let text = String::from_utf8(all).unwrap();
    assert!(
        text.contains("\"usage\""),
        "the client asked for usage: it gets the chunk"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    let r = recorded(&server, "stream-1").await;
    assert_eq!(
        (&r["input_tokens"], &r["output_tokens"]),
        (&json!(40), &json!(2))
    );
    assert_eq!(r["output"], "Hello!");
    // TTFT: the first content chunk ("Hel") is the second event, ~150 ms in.
    let ttft = r["ttft_ms"].as_f64().unwrap();
    assert!(
        (140.0..r["duration_ms"].as_f64().unwrap()).contains(&ttft),
        "{r}"
    );
    server.stop().await;
}

async fn stream_without_usage(server: &TestServer, id: &str) -> String {
    client()
        .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
        .header("x-llmwatch-request-id", id)
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_stops_reading_at_done_completed_its_call() {
    let (server, _) = proxy_server("").await;
    let mut resp = client()
        .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
        .header("x-llmwatch-request-id", "stops-at-done")
        .json(
            &json!({"model": "linger", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    // Like the OpenAI SDK: read up to [DONE], then hang up.
    let mut text = String::new();
    while !text.contains("[DONE]") {
        let chunk = resp
            .chunk()
            .await
            .unwrap()
            .expect("the stream holds [DONE]");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let r = recorded(&server, "stops-at-done").await;
    assert_eq!(
        (&r["status"], &r["error_type"]),
        (&json!("ok"), &Value::Null),
        "{r}"
    );
    assert_eq!(r["output_tokens"], 2);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_without_usage_is_recorded_unpriced() {
    let (server, _) = proxy_server("").await;
    let text = stream_without_usage(&server, "no-usage").await;
    assert!(!text.contains("\"usage\""));
    let r = recorded(&server, "no-usage").await;
    assert_eq!(
        (&r["input_tokens"], &r["output_tokens"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(r["attributes"]["llmwatch.usage"], "unknown");
    assert_eq!((&r["cost"], &r["priced"]), (&Value::Null, &json!(false)));
    server.stop().await;
}

#[tokio::test]
async fn add_stream_usage_asks_for_usage_and_strips_its_chunk() {
    let (up, _) = upstream().await;
    let server = TestServer::start(
        &format!(
            "[proxy]\nopenai_base_url = \"{up}/v1\"\nanthropic_base_url = \"{up}\"\nadd_stream_usage = true\n"
        ),
        ms(NOW),
    )
    .await;
    let text = stream_without_usage(&server, "added").await;
    // The client did not ask for usage: the chunk the proxy asked for is not passed on.
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(
        text.contains("lo!") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    let r = recorded(&server, "added").await;
    assert_eq!(
        (&r["input_tokens"], &r["output_tokens"]),
        (&json!(40), &json!(2))
    );
    assert_eq!(r["attributes"].get("llmwatch.usage"), None);
    server.stop().await;
}

#[tokio::test]
async fn anthropic_messages_map_cache_tokens_into_input() {
    let (server, seen) = proxy_server("").await;
    for (id, stream) in [("anthropic-json", false), ("anthropic-stream", true)] {
        let resp = client()
            .post(format!("{}/proxy/anthropic/v1/messages", server.url))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .header("x-llmwatch-request-id", id)
            .json(&json!({"model": "claude-sonnet-4-20250514", "max_tokens": 300, "stream": stream,
                          "system": "Be brief.", "messages": [{"role": "user", "content": "Hello in French"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("Bonjour"));
        assert_eq!(
            seen.lock().unwrap().headers.as_ref().unwrap()["x-api-key"],
            KEY
        );
        let r = recorded(&server, id).await;
        // input = 100 uncached + 2000 read from cache + 500 written to it.
        assert_eq!(
            (
                &r["input_tokens"],
                &r["cached_input_tokens"],
                &r["cache_write_tokens"],
                &r["output_tokens"]
            ),
            (&json!(2600), &json!(2000), &json!(500), &json!(250)),
            "{id}"
        );
        // claude-sonnet-4: $3 input, $0.30 cache read, $3.75 cache write, $15 output per 1M.
        let expected = (100.0 * 3.0 + 2000.0 * 0.30 + 500.0 * 3.75 + 250.0 * 15.0) / 1e6;
        assert!(close(&r["cost"], expected), "{id}: {}", r["cost"]);
        assert_eq!(r["provider"], "anthropic");
        assert_eq!(r["output"], "Bonjour");
        assert_eq!(r["ttft_ms"].is_number(), stream, "{id}");
    }
    server.stop().await;
}

#[tokio::test]
async fn upstream_errors_pass_through_and_are_recorded() {
    let (server, _) = proxy_server("").await;
    let resp = client()
        .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
        .header("x-llmwatch-request-id", "limited")
        .json(&json!({"model": "rate-limited", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let r = recorded(&server, "limited").await;
    assert_eq!(
        (&r["status"], &r["error_type"]),
        (&json!("error"), &json!("rate_limit_exceeded"))
    );

    // The upstream takes 3 s; the proxy's timeout is 1 s.
    let resp = client()
        .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
        .header("x-llmwatch-request-id", "slow")
        .json(&json!({"model": "slow", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "timeout");
    let r = recorded(&server, "slow").await;
    assert_eq!(
        (&r["status"], &r["error_type"]),
        (&json!("error"), &json!("timeout"))
    );
    server.stop().await;

    // Nothing listens upstream.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let server = TestServer::start(
        &format!(
            "[proxy]\nopenai_base_url = \"{dead_url}/v1\"\nanthropic_base_url = \"{dead_url}\"\n"
        ),
        ms(NOW),
    )
    .await;
    let resp = client()
        .post(format!("{}/proxy/anthropic/v1/messages", server.url))
        .header("x-llmwatch-request-id", "unreachable")
        .json(&json!({"model": "claude-sonnet-4", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (&body["type"], &body["error"]["type"]),
        (&json!("error"), &json!("api_error"))
    );
    let r = recorded(&server, "unreachable").await;
    assert_eq!(r["error_type"], "connection_error");
    server.stop().await;
}

#[tokio::test]
async fn other_paths_pass_through_unrecorded() {
    let (server, seen) = proxy_server("").await;
    let resp = client()
        .get(format!("{}/proxy/openai/v1/models?limit=5", server.url))
        .bearer_auth(KEY)
        .header("x-llmwatch-user", "u")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"][0]["id"], "gpt-4o");
    let h = seen.lock().unwrap().headers.clone().unwrap();
    assert_eq!(h["authorization"], format!("Bearer {KEY}"));
    assert!(h.get("x-llmwatch-user").is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = server
        .get("/api/v1/requests?from=0&to=2026-03-03T00:00:00Z")
        .await;
    assert_eq!(list["requests"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn an_enforced_budget_refuses_calls_in_its_scope_only() {
    let budget = "[[budgets]]\nname = \"capped-daily\"\nperiod = \"day\"\nlimit_usd = 0.01\n\
                  feature = \"capped\"\nenforce = true\n";
    let (server, _) = proxy_server(budget).await;
    // Today's spend in the budget's scope: $0.025 (1,000 gpt-4o output tokens = $0.01 each).
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(
            json!({"request_id": format!("spent-{i}"), "timestamp": ms(NOW) - 60_000,
            "model": "gpt-4o", "feature": "capped", "input_tokens": 0, "output_tokens": 1000})
            .to_string(),
        );
    }
    let (status, _) = server.post_events(events.join("\n")).await;
    assert_eq!(status, 200);
    let call = |feature: &'static str, path: &'static str| {
        client()
            .post(format!("{}{path}", server.url))
            .header("x-llmwatch-feature", feature)
            .json(&json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    // The budget states refresh in the background within a second.
    let mut refused = None;
    for _ in 0..40 {
        let resp = call("capped", "/proxy/openai/v1/chat/completions")
            .await
            .unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = refused.expect("the exceeded budget refuses the call");
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capped-daily"),
        "{body}"
    );
    let resp = call("capped", "/proxy/anthropic/v1/messages")
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (&body["type"], &body["error"]["type"]),
        (&json!("error"), &json!("rate_limit_error"))
    );
    // Another feature is outside the budget's scope.
    let resp = call("uncapped", "/proxy/openai/v1/chat/completions")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn the_api_key_is_never_stored() {
    let (server, _) = proxy_server("").await;
    for id in ["k1", "k2"] {
        client()
            .post(format!("{}/proxy/openai/v1/chat/completions", server.url))
            .bearer_auth(KEY)
            .header("x-llmwatch-request-id", id)
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        recorded(&server, id).await;
    }
    let dir = server.stop().await;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()) {
            found.push(path);
        }
    }
    assert!(found.is_empty(), "the key is in {found:?}");
}
