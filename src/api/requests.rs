//! Requests: a search (`GET /api/v1/requests`) and one request's detail.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::reports::{parse_range, parse_scope};
use super::{ApiError, AppState, with_range};
use crate::core::feedback::Feedback;
use crate::core::record::Status;
use crate::core::rollup::{PricedRecord, nanos_to_usd};
use crate::core::time::{DAY_MS, Range, format_rfc3339};
use crate::store::{DEFAULT_PROJECT, RequestSearch};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/requests", get(search))
        .route("/api/v1/requests/{request_id}", get(request_detail))
}

type Params = Query<HashMap<String, String>>;

/// Most rows of one search page.
const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;

/// A page cursor: the last row's time and id. Opaque to clients; the id may hold any character
/// after the first `.`.
fn cursor_of(r: &PricedRecord) -> String {
    format!("{}.{}", r.record.timestamp_ms, r.record.request_id)
}

fn parse_cursor(s: &str) -> Option<(i64, String)> {
    let (ts, id) = s.split_once('.')?;
    Some((ts.parse().ok()?, id.to_owned()))
}

async fn search(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let request_id_prefix = get("request_id").map(str::to_owned);
    // Looking up an id searches all time unless a range is given.
    let range = if request_id_prefix.is_some() && get("from").is_none() && get("to").is_none() {
        None
    } else {
        Some(parse_range(&p, (s.clock)(), DAY_MS)?)
    };
    let status = match get("status") {
        None => None,
        Some("ok") => Some(Status::Ok),
        Some("error") => Some(Status::Error),
        Some(_) => return Err(ApiError::invalid("status", "expected ok or error")),
    };
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("expected an integer 1..={MAX_LIMIT}"))
            })?,
    };
    let before = get("cursor")
        .map(|c| {
            parse_cursor(c).ok_or_else(|| {
                ApiError::invalid("cursor", "not a cursor this API returned (next_cursor)")
            })
        })
        .transpose()?;
    // One row more than asked tells whether an older page exists.
    let mut rows = s
        .store
        .search_requests(RequestSearch {
            project: DEFAULT_PROJECT.to_owned(),
            range,
            request_id_prefix,
            scope: parse_scope(&p),
            status,
            before,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    } else {
        None
    };
    let mut answer = json!({
        "requests": rows.iter().map(summary_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    });
    if let Some(Range { from_ms, to_ms }) = range {
        answer = with_range(answer, &s, from_ms, to_ms);
    }
    Ok(Json(answer))
}

/// One row of a search answer.
fn summary_json(pr: &PricedRecord) -> Value {
    let r = &pr.record;
    json!({
        "request_id": r.request_id,
        "timestamp": format_rfc3339(r.timestamp_ms, chrono_tz::UTC),
        "timestamp_ms": r.timestamp_ms,
        "model": r.model,
        "provider": r.provider,
        "feature": r.feature,
        "user_id": r.user_id,
        "release": r.release,
        "status": r.status,
        "error_type": r.error_type,
        "duration_ms": r.duration_ms,
        "ttft_ms": r.ttft_ms,
        "input_tokens": r.usage.input_tokens,
        "output_tokens": r.usage.output_tokens,
        "cost": pr.cost_nanos.map(nanos_to_usd),
        "priced": pr.cost_nanos.is_some(),
    })
}

fn feedback_json(f: &Feedback) -> Value {
    json!({
        "type": f.kind.as_str(),
        "comment": f.comment,
        "correction": f.correction,
        "user_id": f.user_id,
        "feedback_id": f.feedback_id,
        "timestamp": format_rfc3339(f.ts_ms, chrono_tz::UTC),
        "timestamp_ms": f.ts_ms,
    })
}

async fn request_detail(
    State(s): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = s
        .store
        .request(DEFAULT_PROJECT, &request_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no request with request_id {request_id:?}")))?;
    let scores = &stored.scores;
    let pr = stored.priced;
    let r = &pr.record;
    let price = s.config.pricing.resolve(&r.model, r.timestamp_ms);
    Ok(Json(json!({
        "request_id": r.request_id,
        "timestamp": format_rfc3339(r.timestamp_ms, chrono_tz::UTC),
        "timestamp_ms": r.timestamp_ms,
        "model": r.model,
        "provider": r.provider,
        "input_tokens": r.usage.input_tokens,
        "output_tokens": r.usage.output_tokens,
        "cached_input_tokens": r.usage.cached_input_tokens,
        "cache_write_tokens": r.usage.cache_write_tokens,
        "reasoning_tokens": r.usage.reasoning_tokens,
        "user_id": r.user_id,
        "feature": r.feature,
        "session_id": r.session_id,
        "release": r.release,
        "status": r.status,
        "error_type": r.error_type,
        "stages": r.stages,
        "duration_ms": r.duration_ms,
        "ttft_ms": r.ttft_ms,
        "attributes": r.attributes,
        "input": r.input,
        "output": r.output,
        "input_chars": r.input_chars,
        "output_chars": r.output_chars,
        "scores": scores,
        "feedback": stored.feedback.iter().map(feedback_json).collect::<Vec<_>>(),
        "cost": pr.cost_nanos.map(nanos_to_usd),
        "priced": pr.cost_nanos.is_some(),
        "price_model": price.filter(|_| pr.cost_nanos.is_some()).map(|p| p.model.clone()),
        "bottleneck_stage": r.bottleneck_stage(),
        "stages_sum_ms": r.stages_sum_ms(),
        "unaccounted_ms": r.unaccounted_ms(),
    })))
}
