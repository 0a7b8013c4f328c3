//! `POST /v1/traces` (and `POST /v1/metrics`, below): OTLP/HTTP trace export (protobuf or JSON, optionally gzip), answered in
//! the request's content type. Spans are read into summaries, grouped by trace and handed to
//! the writer, which assembles each complete trace into a request record. Spans that cannot be
//! read are counted in `partial_success`; the rest are stored.

use std::collections::HashMap;
use std::io::Read;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::{ApiError, AppState, read_body};
use crate::config::OtlpConfig;
use crate::core::metric::read_points;
use crate::core::span::{ExtractOptions, ResourceFacts, SpanError, extract_span, trace_id_of};
use crate::store::{DEFAULT_PROJECT, TraceFragment};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/metrics", post(export_metrics))
}

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the error body OTLP/HTTP specifies (details are never sent).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC status codes used in error bodies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// An error answered as a `google.rpc.Status` in the request's encoding.
struct OtlpError {
    encoding: Encoding,
    status: StatusCode,
    message: String,
    retry_after_s: Option<u32>,
}

impl OtlpError {
    fn bad_request(encoding: Encoding, message: impl Into<String>) -> Self {
        OtlpError {
            encoding,
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            retry_after_s: None,
        }
    }

    fn from_api(encoding: Encoding, e: ApiError) -> Self {
        OtlpError {
            encoding,
            status: e.status,
            message: e.message,
            retry_after_s: e.retry_after_s,
        }
    }
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => INVALID_ARGUMENT,
            StatusCode::PAYLOAD_TOO_LARGE => RESOURCE_EXHAUSTED,
            StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
            _ => INTERNAL,
        };
        let status = RpcStatus {
            code,
            message: self.message,
        };
        let body = match self.encoding {
            Encoding::Protobuf => status.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, self.encoding.content_type())],
            body,
        )
            .into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// Reads the encoding from `Content-Type` (parameters such as `charset` are ignored).
fn encoding_of(headers: &HeaderMap) -> Result<Encoding, OtlpError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf")
        || essence.eq_ignore_ascii_case("application/protobuf")
    {
        Ok(Encoding::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(OtlpError {
            encoding: Encoding::Json,
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!(
                "content-type {ct:?} is not supported: send application/x-protobuf or application/json"
            ),
            retry_after_s: None,
        })
    }
}

/// Decompresses a gzip body, refusing to produce more than `limit` bytes.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity((compressed.len() * 4).min(limit));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("body is not valid gzip: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "body exceeds {limit} bytes after decompression; send smaller batches"
        ));
    }
    Ok(out)
}

/// Decodes the body of an export request (decompressed per `Content-Encoding`); `what` names
/// the message in errors.
fn decode<M: Message + Default + serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    encoding: Encoding,
    raw: Bytes,
    limit: usize,
    what: &str,
) -> Result<M, OtlpError> {
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let body: Bytes = match content_encoding.as_str() {
        "" | "identity" => raw,
        "gzip" | "x-gzip" => gunzip(&raw, limit)
            .map_err(|m| {
                if m.starts_with("body exceeds") {
                    OtlpError {
                        encoding,
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        message: m,
                        retry_after_s: None,
                    }
                } else {
                    OtlpError::bad_request(encoding, m)
                }
            })?
            .into(),
        other => {
            return Err(OtlpError {
                encoding,
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!("content-encoding {other:?} is not supported: send gzip or none"),
                retry_after_s: None,
            });
        }
    };
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| {
            OtlpError::bad_request(encoding, format!("body is not a valid {what}: {e}"))
        }),
        Encoding::Json => serde_json::from_slice(&body).map_err(|e| {
            OtlpError::bad_request(
                encoding,
                format!("body is not a valid OTLP/JSON {what}: {e}"),
            )
        }),
    }
}

/// Reads and decodes an export request body: its encoding, then the message (`what` names it
/// in errors), bounded by `[otlp] max_body_bytes` before and after decompression.
async fn read_export<M: Message + Default + serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<(Encoding, M), OtlpError> {
    let encoding = encoding_of(headers)?;
    let limit = state.config.otlp.max_body_bytes;
    let raw = read_body(headers, body, limit)
        .await
        .map_err(|e| OtlpError::from_api(encoding, e))?;
    Ok((encoding, decode(headers, encoding, raw, limit, what)?))
}

/// Spans of an export grouped by trace, and the spans that could not be read.
#[derive(Debug, Default)]
pub struct ReadSpans {
    pub fragments: Vec<TraceFragment>,
    pub rejected: Vec<SpanError>,
}

/// Reads every span of an export request.
pub fn read_spans(request: &ExportTraceServiceRequest, options: &ExtractOptions) -> ReadSpans {
    let mut out = ReadSpans::default();
    let mut index: HashMap<[u8; 16], usize> = HashMap::new();
    for rs in &request.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| ResourceFacts::from_attributes(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let Some(trace_id) = trace_id_of(span) else {
                    out.rejected.push(SpanError {
                        span: crate::core::span::hex(&span.span_id),
                        field: "trace_id".into(),
                        message: "must be 16 bytes, not all zero".into(),
                    });
                    continue;
                };
                match extract_span(span, &resource, options) {
                    Ok(summary) => {
                        let i = *index.entry(trace_id).or_insert_with(|| {
                            out.fragments.push(TraceFragment {
                                trace_id,
                                spans: Vec::new(),
                            });
                            out.fragments.len() - 1
                        });
                        out.fragments[i].spans.push(summary);
                    }
                    Err(e) => out.rejected.push(e),
                }
            }
        }
    }
    out
}

/// The `partial_success` message: how many items were rejected and why (the first few).
fn rejection_message(item: &str, rejected: &[impl std::fmt::Display]) -> String {
    const SHOWN: usize = 5;
    let mut msg = format!(
        "{} {item}(s) rejected: {}",
        rejected.len(),
        rejected
            .iter()
            .take(SHOWN)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    if rejected.len() > SHOWN {
        msg.push_str(&format!("; and {} more", rejected.len() - SHOWN));
    }
    msg
}

async fn export_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (encoding, request): (_, ExportTraceServiceRequest) =
        read_export(&state, &headers, body, "ExportTraceServiceRequest").await?;
    let otlp: &OtlpConfig = &state.config.otlp;
    let ReadSpans {
        fragments,
        rejected,
    } = read_spans(&request, &otlp.extract);
    drop(request);
    for e in rejected.iter().take(3) {
        tracing::debug!(error = %e, "span rejected");
    }
    state
        .writer
        .submit_traces(DEFAULT_PROJECT, fragments, (state.clock)())
        .await
        .map_err(|e| OtlpError::from_api(encoding, e.into()))?;

    let response = ExportTraceServiceResponse {
        partial_success: (!rejected.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected.len() as i64,
            error_message: rejection_message("span", &rejected),
        }),
    };
    respond(encoding, &response)
}

/// A 200 with an export response in the request's encoding.
fn respond<M: Message + serde::Serialize>(
    encoding: Encoding,
    response: &M,
) -> Result<Response, OtlpError> {
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(response).map_err(|e| OtlpError {
            encoding,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
            retry_after_s: None,
        })?,
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response())
}

/// `POST /v1/metrics`: the GenAI client metrics of applications that send no traces, folded
/// into the rollups; other metrics are accepted and ignored.
async fn export_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (encoding, request): (_, ExportMetricsServiceRequest) =
        read_export(&state, &headers, body, "ExportMetricsServiceRequest").await?;
    let (points, rejected) = read_points(&request);
    drop(request);
    state
        .writer
        .submit_metrics(DEFAULT_PROJECT, points, (state.clock)())
        .await
        .map_err(|e| OtlpError::from_api(encoding, e.into()))?;
    let response = ExportMetricsServiceResponse {
        partial_success: (!rejected.is_empty()).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: rejected.len() as i64,
            error_message: rejection_message("data point", &rejected),
        }),
    };
    respond(encoding, &response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(encoding_of(&h).ok(), Some(Encoding::Json));
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf".parse().unwrap(),
        );
        assert_eq!(encoding_of(&h).ok(), Some(Encoding::Protobuf));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(
            encoding_of(&h).err().map(|e| e.status),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
    }

    #[test]
    fn gunzip_is_bounded() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 10_000).unwrap().len(), 10_000);
        assert!(gunzip(&gz, 9_999).unwrap_err().starts_with("body exceeds"));
        assert!(gunzip(b"not gzip", 100).unwrap_err().contains("gzip"));
    }

    #[test]
    fn rejection_message_lists_the_first_few() {
        let errs: Vec<SpanError> = (0..7)
            .map(|i| SpanError {
                span: format!("{i:016x}"),
                field: "gen_ai.usage.input_tokens".into(),
                message: "token count must be >= 0, got -1".into(),
            })
            .collect();
        let m = rejection_message("span", &errs);
        assert!(
            m.starts_with("7 span(s) rejected: span 0000000000000000: gen_ai.usage.input_tokens"),
            "{m}"
        );
        assert!(m.ends_with("and 2 more"), "{m}");
    }
}
