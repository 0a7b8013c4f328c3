//! `POST /api/v1/events`: a JSON array or NDJSON of request records. Every valid item is stored,
//! every invalid one is named with its index and the field at fault; a body that cannot be
//! parsed at all is rejected whole and nothing is stored.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{ApiError, AppState, read_body};
use crate::core::quality::heuristic_scores;
use crate::core::record::parse_event;
use crate::core::rollup::PricedRecord;
use crate::store::DEFAULT_PROJECT;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events", post(ingest))
}

#[derive(Debug, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub field: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

/// Splits a body into the JSON texts of its items: a JSON array, or NDJSON (one item per
/// non-empty line). `Err` means the body as a whole is unusable; an NDJSON line that is not
/// valid JSON is rejected on its own when parsed.
pub fn split_items(text: &str) -> Result<Vec<&str>, ApiError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "empty body: send a JSON array or NDJSON of events",
        ));
    }
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|e| {
            ApiError::invalid("body", format!("body is not a valid JSON array: {e}"))
        })?;
        return Ok(items.into_iter().map(RawValue::get).collect());
    }
    Ok(text.lines().filter(|l| !l.trim().is_empty()).collect())
}

async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::invalid("body", format!("body is not valid UTF-8: {e}")))?;
    let items = split_items(text)?;

    let now = (state.clock)();
    let capture = state.config.capture_content;
    let pricing = &state.config.pricing;
    let mut records = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match parse_event(item, now) {
            Ok(mut record) => {
                if capture {
                    let verdicts = heuristic_scores(&record, &state.config.heuristics, now);
                    record.scores.extend(verdicts);
                } else {
                    // The texts go, their lengths (`input_chars`/`output_chars`, counted by
                    // `parse_event` from the texts) stay.
                    record.input = None;
                    record.output = None;
                }
                records.push(PricedRecord::new(record, pricing));
            }
            Err(e) => rejected.push(Rejection {
                index,
                error: e.to_string(),
                field: e.field,
            }),
        }
    }
    let accepted = records.len();
    state.writer.submit(DEFAULT_PROJECT, records).await?;
    // All rejected: 422, so a client that checks only the status still notices.
    let status = if accepted == 0 && !rejected.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(IngestResponse { accepted, rejected })).into_response())
}
