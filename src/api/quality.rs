//! The quality axis and the feedback loop over HTTP: scores in, quality aggregates and
//! escalations out; feedback in, satisfaction, complaint clusters and the golden dataset out;
//! and side-by-side comparisons of releases or models.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::events::{IngestResponse, Rejection, split_items};
use super::reports::parse_range;
use super::{ApiError, AppState, read_body, with_range};
use crate::core::feedback::parse_feedback_item;
use crate::core::quality::parse_score_item;
use crate::core::record::{RecordError, parse_timestamp_str};
use crate::core::time::{DAY_MS, Range, format_rfc3339};
use crate::quality::{self, CompareBy, QualityScope, range_days};
use crate::store::DEFAULT_PROJECT;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/scores", post(post_scores))
        .route("/api/v1/quality", get(get_quality))
        .route("/api/v1/quality/escalations", get(get_escalations))
        .route("/api/v1/feedback", post(post_feedback))
        .route("/api/v1/feedback/summary", get(feedback_summary))
        .route("/api/v1/feedback/complaints", get(complaints))
        .route("/api/v1/export/golden", get(export_golden))
        .route("/api/v1/compare", get(compare))
}

type Params = Query<HashMap<String, String>>;

/// Most days a feedback window may span.
const MAX_DAYS: u32 = 3_660;
/// Most complaint clusters returned.
const MAX_TOP: usize = 100;
/// Most escalations listed at once.
const MAX_ESCALATIONS: usize = 1_000;

/// Parses a batch item by item; a batch with none valid is a 422.
fn parse_batch<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, RecordError>,
) -> Result<(Vec<T>, Vec<Rejection>), ApiError> {
    // One object alone is a batch of one (the feedback example is a single object).
    let trimmed = text.trim();
    let single = trimmed.starts_with('{')
        && serde_json::from_str::<&serde_json::value::RawValue>(trimmed).is_ok();
    let items = if single {
        vec![trimmed]
    } else {
        split_items(text)?
    };
    let mut ok = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match parse(item) {
            Ok(v) => ok.push(v),
            Err(e) => rejected.push(Rejection {
                index,
                error: e.to_string(),
                field: e.field,
            }),
        }
    }
    Ok((ok, rejected))
}

fn batch_answer(accepted: usize, rejected: Vec<Rejection>) -> Response {
    let status = if accepted == 0 && !rejected.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (status, Json(IngestResponse { accepted, rejected })).into_response()
}

async fn body_text(s: &AppState, headers: &HeaderMap, body: Body) -> Result<String, ApiError> {
    let bytes = read_body(headers, body, s.config.max_body_bytes).await?;
    String::from_utf8(bytes.to_vec())
        .map_err(|e| ApiError::invalid("body", format!("body is not valid UTF-8: {e}")))
}

async fn post_scores(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let text = body_text(&s, &headers, body).await?;
    let now = (s.clock)();
    let (scores, rejected) = parse_batch(&text, |item| parse_score_item(item, now))?;
    let accepted = scores.len();
    s.writer.submit_scores(DEFAULT_PROJECT, scores).await?;
    Ok(batch_answer(accepted, rejected))
}

async fn post_feedback(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let text = body_text(&s, &headers, body).await?;
    let now = (s.clock)();
    let (items, rejected) = parse_batch(&text, |item| parse_feedback_item(item, now))?;
    let accepted = items.len();
    s.writer
        .submit_feedback(DEFAULT_PROJECT, items, now)
        .await?;
    Ok(batch_answer(accepted, rejected))
}

pub(super) fn quality_scope(p: &HashMap<String, String>) -> QualityScope {
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    QualityScope {
        model: get("model"),
        feature: get("feature"),
        release: get("release"),
    }
}

async fn get_quality(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)(), 7 * DAY_MS)?;
    let r = quality::quality_report(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        range,
        &quality_scope(&p),
        &s.config.quality,
    )
    .await?;
    let v = serde_json::to_value(r).unwrap_or_default();
    Ok(Json(with_range(v, &s, range.from_ms, range.to_ms)))
}

async fn get_escalations(
    State(s): State<AppState>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)(), 30 * DAY_MS)?;
    let limit = match p.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ESCALATIONS).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", format!("expected 1..={MAX_ESCALATIONS}")))?,
    };
    let feature = p.get("feature").cloned();
    let list = s
        .store
        .escalations(DEFAULT_PROJECT, range, feature, limit)
        .await?;
    let tz = s.config.timezone;
    let escalations: Vec<Value> = list
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "feature": if e.feature.is_empty() { Value::Null } else { e.feature.into() },
                "raised_at": format_rfc3339(e.raised_ms, tz),
                "detected_at": format_rfc3339(e.detected_ms, tz),
                "streak": e.streak,
                "threshold": e.threshold,
                "mean_composite": e.mean_composite,
                "request_ids": e.request_ids,
                "first_request_at": format_rfc3339(e.first_ts_ms, tz),
                "last_request_at": format_rfc3339(e.last_ts_ms, tz),
            })
        })
        .collect();
    Ok(Json(with_range(
        json!({"escalations": escalations}),
        &s,
        range.from_ms,
        range.to_ms,
    )))
}

fn parse_days(p: &HashMap<String, String>, default: u32) -> Result<u32, ApiError> {
    match p.get("days") {
        None => Ok(default),
        Some(d) => d
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_DAYS).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("days", format!("expected a whole number 1..={MAX_DAYS}"))
            }),
    }
}

/// `from`/`to` choose any range (the dashboard's); otherwise the last `days` days.
fn feedback_range(
    p: &HashMap<String, String>,
    now: i64,
    default_days: u32,
) -> Result<Range, ApiError> {
    if p.contains_key("from") || p.contains_key("to") {
        if p.contains_key("days") {
            return Err(ApiError::invalid("days", "give either days or from/to"));
        }
        parse_range(p, now, i64::from(default_days) * DAY_MS)
    } else {
        Ok(quality::last_days(now, parse_days(p, default_days)?))
    }
}

async fn feedback_summary(
    State(s): State<AppState>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let range = feedback_range(&p, (s.clock)(), 7)?;
    let scope = quality_scope(&p);
    let r = quality::feedback_summary(s.store.as_ref(), DEFAULT_PROJECT, range, &scope).await?;
    let v = serde_json::to_value(r).unwrap_or_default();
    Ok(Json(with_range(v, &s, range.from_ms, range.to_ms)))
}

async fn complaints(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = feedback_range(&p, (s.clock)(), 30)?;
    let top = match p.get("top") {
        None => 10,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| ApiError::invalid("top", format!("expected 1..={MAX_TOP}")))?,
    };
    let (n, clusters) = quality::complaints(s.store.as_ref(), DEFAULT_PROJECT, range, top).await?;
    let v = json!({"days": range_days(range), "complaints": n, "clusters": clusters});
    Ok(Json(with_range(v, &s, range.from_ms, range.to_ms)))
}

/// `since`: a date (YYYY-MM-DD, UTC midnight), RFC 3339 or unix ms; absent = everything.
pub fn parse_since(since: Option<&str>) -> Result<i64, String> {
    let Some(since) = since else {
        return Ok(i64::MIN);
    };
    if let Ok(d) = chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or(i64::MIN));
    }
    parse_timestamp_str(since)
}

async fn export_golden(State(s): State<AppState>, Query(p): Params) -> Result<Response, ApiError> {
    let since = parse_since(p.get("since").map(String::as_str))
        .map_err(|m| ApiError::invalid("since", m))?;
    let feature = p.get("feature").filter(|f| !f.is_empty()).cloned();
    let (rows, skipped) =
        quality::golden(s.store.as_ref(), DEFAULT_PROJECT, since, feature).await?;
    let tz = s.config.timezone;
    let mut out = String::new();
    for r in rows {
        out.push_str(&golden_line(&r, tz));
        out.push('\n');
    }
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        out,
    )
        .into_response();
    response
        .headers_mut()
        .insert("x-llmwatch-skipped", HeaderValue::from(skipped as u64));
    Ok(response)
}

/// One golden-dataset line, as the export contract names its fields.
pub fn golden_line(r: &crate::store::GoldenExample, tz: chrono_tz::Tz) -> String {
    json!({
        "input": r.input,
        "expected_output": r.expected_output,
        "original_output": r.original_output,
        "request_id": r.request_id,
        "model": r.model,
        "feature": r.feature,
        "release": r.release,
        "comment": r.comment,
        "timestamp": format_rfc3339(r.ts_ms, tz),
    })
    .to_string()
}

async fn compare(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let by_text = p.get("by").map(String::as_str).unwrap_or("release");
    let by = CompareBy::parse(by_text)
        .ok_or_else(|| ApiError::invalid("by", "expected \"release\" or \"model\""))?;
    let a = p
        .get("a")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("a", "is required: the first release or model"))?;
    let b = p
        .get("b")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("b", "is required: the second release or model"))?;
    let range = parse_range(&p, (s.clock)(), 30 * DAY_MS)?;
    let r = quality::compare(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        range,
        by,
        a,
        b,
        &s.config.quality,
    )
    .await?;
    let v = serde_json::to_value(r).unwrap_or_default();
    Ok(Json(with_range(v, &s, range.from_ms, range.to_ms)))
}
