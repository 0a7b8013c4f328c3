//! OTLP/HTTP trace ingest end to end: hand-built protobuf and JSON exports, gzip, split and
//! shuffled batches, malformed and oversize bodies, partial success, the grace period.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{TestServer, assert_usd, ms};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};

const NOW: &str = "2026-03-02T10:00:00Z";
const PROTOBUF: (&str, &str) = ("content-type", "application/x-protobuf");

fn kv(key: &str, value: V) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}
fn s(v: &str) -> V {
    V::StringValue(v.into())
}

/// Nanoseconds of `NOW` plus `ms` milliseconds.
fn at(ms_after: f64) -> u64 {
    (ms(NOW) as u64) * 1_000_000 + (ms_after * 1e6) as u64
}

fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, from: f64, to: f64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent
            .map(|p| vec![0, 0, 0, 0, 0, 0, 0, p])
            .unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: at(from),
        end_time_unix_nano: at(to),
        ..Default::default()
    }
}

/// The five-span request of an LLM app: root, preprocessing, guardrail, chat, postprocessing.
fn app_trace(trace: u8) -> Vec<Span> {
    let mut root = span(trace, 1, None, "handle_request", 0.0, 1000.0);
    root.attributes = vec![
        kv("user.id", s("user-7")),
        kv("session.id", s("sess-1")),
        kv("llmwatch.feature", s("support-bot")),
    ];
    let mut chat = span(trace, 4, Some(1), "chat gpt-4o", 122.5, 922.5);
    chat.attributes = vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.provider.name", s("openai")),
        kv("gen_ai.request.model", s("gpt-4o")),
        kv("gen_ai.response.model", s("gpt-4o-2024-08-06")),
        kv("gen_ai.usage.input_tokens", V::IntValue(1200)),
        kv("gen_ai.usage.output_tokens", V::IntValue(300)),
        kv("gen_ai.usage.cache_read.input_tokens", V::IntValue(200)),
    ];
    vec![
        root,
        span(trace, 2, Some(1), "preprocessing", 1.0, 21.0),
        span(trace, 3, Some(1), "guardrail", 21.5, 121.5),
        chat,
        span(trace, 5, Some(1), "postprocessing", 923.0, 953.0),
    ]
}

/// gpt-4o-2024-08-06 priced as gpt-4o: $2.50 / 1M input, $1.25 / 1M cached input, $10 / 1M
/// output: 1000 uncached x 2.5 + 200 cached x 1.25 + 300 x 10, per million.
const APP_TRACE_COST: f64 = (1000.0 * 2.5 + 200.0 * 1.25 + 300.0 * 10.0) / 1e6;

fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("support-api")),
                    kv("service.version", s("1.4.2")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn hex_id(trace: u8) -> String {
    format!("{trace:02x}").repeat(16)
}

async fn post_pb(
    server: &TestServer,
    req: &ExportTraceServiceRequest,
) -> ExportTraceServiceResponse {
    let (status, ct, body) = server
        .post_raw("/v1/traces", &[PROTOBUF], req.encode_to_vec())
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/x-protobuf");
    ExportTraceServiceResponse::decode(body.as_slice()).unwrap()
}

async fn request(server: &TestServer, id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(status, 200, "request {id}: {body}");
    body
}

/// The cost report of the hour around `NOW`.
async fn cost_report(server: &TestServer) -> Value {
    let (status, body) = server
        .get(&format!(
            "/api/v1/reports/cost?from={}&to={}",
            ms(NOW) - 3_600_000,
            ms(NOW) + 3_600_000
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn start() -> impl std::future::Future<Output = TestServer> {
    TestServer::start("", ms(NOW))
}

#[tokio::test]
async fn protobuf_trace_becomes_a_priced_record_with_stages() {
    let server = start().await;
    let resp = post_pb(&server, &export(app_trace(1))).await;
    assert_eq!(resp.partial_success, None);

    let r = request(&server, &hex_id(1)).await;
    assert_eq!(r["model"], "gpt-4o-2024-08-06");
    assert_eq!(r["provider"], "openai");
    assert_eq!(r["input_tokens"], 1200);
    assert_eq!(r["cached_input_tokens"], 200);
    assert_eq!(r["output_tokens"], 300);
    assert_eq!(r["user_id"], "user-7");
    assert_eq!(r["session_id"], "sess-1");
    assert_eq!(r["feature"], "support-bot");
    assert_eq!(
        r["release"], "1.4.2",
        "service.version without llmwatch.release"
    );
    assert_eq!(r["timestamp_ms"], ms(NOW));
    assert_eq!(r["duration_ms"], 1000.0);
    assert_eq!(
        r["stages"],
        json!({"preprocessing": 20.0, "guardrail": 100.0, "model_inference": 800.0, "postprocessing": 30.0})
    );
    assert_eq!(r["bottleneck_stage"], "model_inference");
    assert_eq!(r["unaccounted_ms"], 50.0);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["attributes"]["operation"], "chat");
    assert_usd(&r["cost"], APP_TRACE_COST);

    // The record feeds every report like an event would.
    let (_, cost) = server
        .get(&format!(
            "/api/v1/reports/cost?group_by=feature&from={}&to={}",
            ms(NOW) - 60_000,
            ms(NOW) + 60_000
        ))
        .await;
    assert_eq!(cost["groups"][0]["key"], "support-bot", "{cost}");
    assert_eq!(cost["groups"][0]["requests"], 1);
    server.stop().await;
}

#[tokio::test]
async fn json_encoding_with_string_integers_and_unknown_fields() {
    let server = start().await;
    let t0 = at(0.0);
    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chat-svc"}}]},
            "someFutureField": true,
            "scopeSpans": [{
                "scope": {"name": "my.instrumentation"},
                "spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "name": "chat gpt-4o-mini",
                    "kind": 3,
                    "startTimeUnixNano": t0.to_string(),
                    "endTimeUnixNano": (t0 + 640_000_000),
                    "attributes": [
                        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                        {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                        {"key": "gen_ai.usage.prompt_tokens", "value": {"intValue": "1000"}},
                        {"key": "gen_ai.usage.completion_tokens", "value": {"intValue": 100}}
                    ],
                    "status": {"code": 0}
                }]
            }]
        }]
    });
    let (status, ct, resp) = server
        .post_raw(
            "/v1/traces",
            &[("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(ct, "application/json");
    let resp: Value = serde_json::from_slice(&resp).unwrap();
    assert!(
        resp.get("partialSuccess").is_none_or(Value::is_null),
        "{resp}"
    );

    let r = request(&server, "5b8efff798038103d269b633813fc60c").await;
    assert_eq!(r["model"], "gpt-4o-mini");
    assert_eq!(r["provider"], "openai");
    assert_eq!(r["input_tokens"], 1000);
    assert_eq!(r["output_tokens"], 100);
    assert_eq!(
        r["feature"], "chat-svc",
        "service.name is the last feature fallback"
    );
    assert_eq!(r["duration_ms"], 640.0);
    assert_eq!(r["stages"], json!({"model_inference": 640.0}));
    // gpt-4o-mini: $0.15 / 1M input, $0.60 / 1M output.
    assert_usd(&r["cost"], (1000.0 * 0.15 + 100.0 * 0.60) / 1e6);
    server.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_bounded() {
    let server = TestServer::start("[otlp]\nmax_body_bytes = 4096", ms(NOW)).await;
    let body = export(app_trace(2)).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let (status, _, _) = server
        .post_raw(
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(request(&server, &hex_id(2)).await["input_tokens"], 1200);

    // 40 traces: small once compressed, over the 4 KiB limit once decompressed.
    let many: Vec<Span> = (10..50).flat_map(app_trace).collect();
    let raw = export(many).encode_to_vec();
    assert!(raw.len() > 4096);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw).unwrap();
    let small = gz.finish().unwrap();
    assert!(small.len() < 4096, "compressed {}", small.len());
    let (status, ct, body) = server
        .post_raw(
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "gzip")],
            small,
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(ct, "application/x-protobuf");
    let st = decode_status(&body);
    assert!(st.1.contains("after decompression"), "{st:?}");
    let count = cost_report(&server).await;
    assert_eq!(
        count["total_requests"], 1,
        "nothing of the rejected body stored"
    );
    server.stop().await;
}

/// Decodes a `google.rpc.Status` (code, message) by hand from its two fields.
fn decode_status(body: &[u8]) -> (i32, String) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let st = RpcStatus::decode(body).expect("a google.rpc.Status body");
    (st.code, st.message)
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_status_and_store_nothing() {
    let server = start().await;
    let (status, ct, body) = server
        .post_raw(
            "/v1/traces",
            &[PROTOBUF],
            vec![0xff, 0xff, 0xff, 0x01, 0x02],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(ct, "application/x-protobuf");
    let (code, message) = decode_status(&body);
    assert_eq!(code, 3, "INVALID_ARGUMENT");
    assert!(message.contains("ExportTraceServiceRequest"), "{message}");

    let (status, ct, body) = server
        .post_raw(
            "/v1/traces",
            &[("content-type", "application/json")],
            b"{\"resourceSpans\": [".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(ct, "application/json");
    let st: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(st["code"], 3);

    let (status, _, _) = server
        .post_raw(
            "/v1/traces",
            &[PROTOBUF, ("content-encoding", "gzip")],
            b"nope".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = server
        .post_raw(
            "/v1/traces",
            &[("content-type", "text/plain")],
            b"hi".to_vec(),
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(cost_report(&server).await["total_requests"], 0);
    server.stop().await;
}

#[tokio::test]
async fn invalid_spans_are_counted_in_partial_success_and_the_rest_stored() {
    let server = start().await;
    let mut bad = app_trace(3);
    for a in &mut bad[3].attributes {
        if a.key == "gen_ai.usage.output_tokens" {
            *a = kv("gen_ai.usage.output_tokens", V::IntValue(-4));
        }
    }
    let mut no_trace = span(4, 9, None, "x", 0.0, 1.0);
    no_trace.trace_id = vec![1, 2, 3];
    let mut spans = app_trace(5);
    spans.extend(bad);
    spans.push(no_trace);
    let resp = post_pb(&server, &export(spans)).await;
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 2);
    assert!(
        ps.error_message.contains("gen_ai.usage.output_tokens"),
        "{}",
        ps.error_message
    );
    assert!(
        ps.error_message.contains("trace_id"),
        "{}",
        ps.error_message
    );
    // The good trace is stored; the trace that lost its model call waits (no record yet).
    assert_eq!(request(&server, &hex_id(5)).await["output_tokens"], 300);
    assert_eq!(
        server
            .get(&format!("/api/v1/requests/{}", hex_id(3)))
            .await
            .0,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn split_and_shuffled_exports_converge_to_the_same_record() {
    let server = start().await;
    post_pb(&server, &export(app_trace(6))).await;
    let whole = request(&server, &hex_id(6)).await;

    // The same request as trace 7, sent in three exports: children out of order, then a
    // re-sent span, the root last.
    let mut spans = app_trace(7);
    let root = spans.remove(0);
    spans.reverse();
    post_pb(&server, &export(spans[..2].to_vec())).await;
    assert_eq!(
        server
            .get(&format!("/api/v1/requests/{}", hex_id(7)))
            .await
            .0,
        404,
        "no root yet"
    );
    post_pb(&server, &export(spans[1..].to_vec())).await;
    post_pb(&server, &export(vec![root])).await;
    let split = request(&server, &hex_id(7)).await;

    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(whole), strip(split));

    // A late span (after the record exists) re-assembles it: replaced, not counted twice.
    let mut late = span(7, 6, Some(1), "execute_tool lookup", 953.5, 990.0);
    late.attributes = vec![kv("gen_ai.operation.name", s("execute_tool"))];
    post_pb(&server, &export(vec![late])).await;
    let r = request(&server, &hex_id(7)).await;
    assert_eq!(r["stages"]["tool_execution"], 36.5);
    let cost = cost_report(&server).await;
    assert_eq!(cost["total_requests"], 2);
    assert_usd(&cost["total_cost"], 2.0 * APP_TRACE_COST);
    server.stop().await;
}

#[tokio::test]
async fn a_trace_without_root_becomes_a_record_after_the_grace_period() {
    let server = TestServer::start("[otlp]\ngrace_period_s = 5", ms(NOW)).await;
    let mut spans = app_trace(8);
    spans.remove(0);
    // The app's root lives upstream: another service's span id, never exported here.
    post_pb(&server, &export(spans)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server
            .get(&format!("/api/v1/requests/{}", hex_id(8)))
            .await
            .0,
        404
    );

    server
        .now
        .store(ms(NOW) + 6_000, std::sync::atomic::Ordering::SeqCst);
    let mut found = None;
    for _ in 0..50 {
        let (status, body) = server.get(&format!("/api/v1/requests/{}", hex_id(8))).await;
        if status == 200 {
            found = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = found.expect("record after the grace period");
    // Earliest start (1 ms) to latest end (953 ms).
    assert_eq!(r["duration_ms"], 952.0);
    assert_eq!(r["input_tokens"], 1200);
    assert_eq!(r["feature"], "support-api", "no root: service.name");

    // A trace of spans that are no model call is dropped, not recorded.
    post_pb(
        &server,
        &export(vec![span(9, 2, Some(1), "GET /health", 0.0, 3.0)]),
    )
    .await;
    server
        .now
        .store(ms(NOW) + 20_000, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server
            .get(&format!("/api/v1/requests/{}", hex_id(9)))
            .await
            .0,
        404
    );
    assert_eq!(cost_report(&server).await["total_requests"], 1);
    server.stop().await;
}

#[tokio::test]
async fn errors_request_ids_and_evaluations() {
    let server = start().await;
    let mut spans = app_trace(10);
    spans[0].status = Some(Status {
        code: StatusCode::Error as i32,
        message: "upstream failed".into(),
    });
    spans[0]
        .attributes
        .push(kv("error.type", s("RateLimitError")));
    spans[0]
        .attributes
        .push(kv("llmwatch.request_id", s("req-abc")));
    spans[0]
        .attributes
        .push(kv("llmwatch.attr.tenant", s("acme")));
    spans[4]
        .events
        .push(opentelemetry_proto::tonic::trace::v1::span::Event {
            name: "gen_ai.evaluation.result".into(),
            attributes: vec![
                kv("gen_ai.evaluation.name", s("relevance")),
                kv("gen_ai.evaluation.score.value", V::DoubleValue(0.75)),
            ],
            ..Default::default()
        });
    post_pb(&server, &export(spans)).await;
    let r = request(&server, "req-abc").await;
    assert_eq!(r["status"], "error");
    assert_eq!(r["error_type"], "RateLimitError");
    assert_eq!(r["attributes"]["tenant"], "acme");
    assert_eq!(r["scores"], json!({"relevance": 0.75}));
    server.stop().await;
}

#[tokio::test]
async fn pending_spans_survive_a_restart() {
    let server = start().await;
    let mut spans = app_trace(11);
    let root = spans.remove(0);
    post_pb(&server, &export(spans)).await;
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, "", ms(NOW)).await;
    post_pb(&server, &export(vec![root])).await;
    let r = request(&server, &hex_id(11)).await;
    assert_eq!(r["stages"]["guardrail"], 100.0);
    assert_eq!(r["input_tokens"], 1200);
    assert_usd(&r["cost"], APP_TRACE_COST);
    server.stop().await;
}

#[tokio::test]
async fn a_request_id_arriving_late_moves_the_record() {
    let server = start().await;
    post_pb(&server, &export(app_trace(12))).await;
    assert_eq!(request(&server, &hex_id(12)).await["input_tokens"], 1200);

    // A late span names the request: the record moves to that id, never counted twice.
    let mut named = span(12, 6, Some(1), "audit", 960.0, 970.0);
    named.attributes = vec![kv("llmwatch.request_id", s("order-77"))];
    post_pb(&server, &export(vec![named])).await;
    assert_eq!(
        server
            .get(&format!("/api/v1/requests/{}", hex_id(12)))
            .await
            .0,
        404
    );
    let r = request(&server, "order-77").await;
    assert_eq!(r["stages"]["audit"], 10.0);

    // Later spans still find the trace under its new id.
    let mut tool = span(12, 7, Some(1), "execute_tool x", 975.0, 985.0);
    tool.attributes = vec![kv("gen_ai.operation.name", s("execute_tool"))];
    post_pb(&server, &export(vec![tool])).await;
    let r = request(&server, "order-77").await;
    assert_eq!(r["stages"]["tool_execution"], 10.0);
    assert_eq!(r["stages"]["audit"], 10.0);
    let cost = cost_report(&server).await;
    assert_eq!(cost["total_requests"], 1);
    assert_usd(&cost["total_cost"], APP_TRACE_COST);
    server.stop().await;
}

mod metrics {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
        ScopeMetrics,
    };

    fn hist(name: &str, unit: &str, points: Vec<HistogramDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }
    }

    fn point(token_type: Option<&str>, count: u64, sum: f64, after_ms: f64) -> HistogramDataPoint {
        let mut attributes = vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.request.model", s("gpt-4o")),
        ];
        if let Some(t) = token_type {
            attributes.push(kv("gen_ai.token.type", s(t)));
        }
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: at(0.0),
            time_unix_nano: at(after_ms),
            count,
            sum: Some(sum),
            ..Default::default()
        }
    }

    /// One export of an app's cumulative GenAI client metrics so far.
    fn export(
        service: &str,
        ops: u64,
        seconds: f64,
        input: f64,
        output: f64,
        after_ms: f64,
    ) -> Vec<u8> {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s(service))],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        hist(
                            "gen_ai.client.operation.duration",
                            "s",
                            vec![point(None, ops, seconds, after_ms)],
                        ),
                        hist(
                            "gen_ai.client.token.usage",
                            "{token}",
                            vec![
                                point(Some("input"), ops, input, after_ms),
                                point(Some("output"), ops, output, after_ms),
                            ],
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    async fn post(server: &TestServer, body: Vec<u8>) {
        let (status, _, resp) = server.post_raw("/v1/metrics", &[PROTOBUF], body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        let resp = ExportMetricsServiceResponse::decode(resp.as_slice()).unwrap();
        assert_eq!(resp.partial_success, None);
    }

    #[tokio::test]
    async fn metrics_only_apps_are_counted_once_per_point() {
        let server = start().await;
        post(&server, export("faq-bot", 3, 1.5, 900.0, 120.0, 1000.0)).await;
        // gpt-4o: 900 x $2.50 + 120 x $10, per million tokens (hand-computed).
        let first = (900.0 * 2.5 + 120.0 * 10.0) / 1e6;
        let c = cost_report(&server).await;
        assert_eq!(c["total_requests"], 3);
        assert_usd(&c["total_cost"], first);
        assert_eq!(c["total_tokens"], 1020);

        // The same export again (an exporter retry) adds nothing.
        post(&server, export("faq-bot", 3, 1.5, 900.0, 120.0, 1000.0)).await;
        assert_eq!(cost_report(&server).await["total_requests"], 3);

        // The next cumulative export adds its difference.
        post(&server, export("faq-bot", 5, 2.5, 1500.0, 200.0, 61_000.0)).await;
        let c = cost_report(&server).await;
        assert_eq!(c["total_requests"], 5);
        assert_eq!(c["total_tokens"], 1700);
        assert_usd(&c["total_cost"], (1500.0 * 2.5 + 200.0 * 10.0) / 1e6);
        assert_eq!(c["groups"][0]["key"], "gpt-4o");
        server.stop().await;
    }

    #[tokio::test]
    async fn metrics_of_a_service_that_sends_traces_are_ignored() {
        let server = start().await;
        // app_trace's resource is service "support-api".
        post_pb(&server, &super::export(app_trace(20))).await;
        post(
            &server,
            export("support-api", 1, 0.8, 1200.0, 300.0, 1000.0),
        )
        .await;
        let c = cost_report(&server).await;
        assert_eq!(c["total_requests"], 1);
        assert_usd(&c["total_cost"], APP_TRACE_COST);
        server.stop().await;
    }

    #[tokio::test]
    async fn unusable_points_are_counted() {
        let server = start().await;
        let mut body = ExportMetricsServiceRequest::decode(
            export("faq-bot", 1, 0.5, 10.0, 5.0, 1000.0).as_slice(),
        )
        .unwrap();
        let Some(Data::Histogram(h)) =
            &mut body.resource_metrics[0].scope_metrics[0].metrics[1].data
        else {
            panic!()
        };
        h.data_points[0].sum = Some(-3.0);
        let (status, _, resp) = server
            .post_raw("/v1/metrics", &[PROTOBUF], body.encode_to_vec())
            .await;
        assert_eq!(status, 200);
        let ps = ExportMetricsServiceResponse::decode(resp.as_slice())
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(ps.rejected_data_points, 1);
        assert!(
            ps.error_message.contains("gen_ai.client.token.usage"),
            "{}",
            ps.error_message
        );
        let c = cost_report(&server).await;
        assert_eq!(
            (c["total_requests"].as_i64(), c["total_tokens"].as_i64()),
            (Some(1), Some(5))
        );
        server.stop().await;
    }
}
