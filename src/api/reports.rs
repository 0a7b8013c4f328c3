//! Read endpoints: daily and ranged cost reports, budget states, one request's detail.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::core::record::parse_timestamp_str;
use crate::core::rollup::{Scope, nanos_to_usd};
use crate::core::time::{DAY_MS, Range, format_rfc3339, local_date};
use crate::report::{self, CostGroup};
use crate::store::DEFAULT_PROJECT;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports/daily", get(daily))
        .route("/api/v1/reports/cost", get(cost))
        .route("/api/v1/budgets", get(budgets))
        .route("/api/v1/requests/{request_id}", get(request_detail))
}

type Params = Query<HashMap<String, String>>;

/// Reads `from`/`to` (RFC 3339 or unix ms; `to` exclusive), defaulting to the `default_span_ms`
/// before now.
pub fn parse_range(
    params: &HashMap<String, String>,
    now_ms: i64,
    default_span_ms: i64,
) -> Result<Range, ApiError> {
    let get = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(name)
            .map(|v| parse_timestamp_str(v).map_err(|m| ApiError::invalid(name, m)))
            .transpose()
    };
    let to = get("to")?.unwrap_or(now_ms);
    let from = get("from")?.unwrap_or(to - default_span_ms);
    if from >= to {
        return Err(ApiError::invalid(
            "from",
            "`from` must be before `to` (`to` is exclusive)",
        ));
    }
    Ok(Range::new(from, to))
}

/// Reads the optional `model`, `feature`, `user` and `release` filters.
pub fn parse_scope(params: &HashMap<String, String>) -> Scope {
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    Scope {
        model: get("model"),
        feature: get("feature"),
        user: get("user"),
        release: get("release"),
    }
}

async fn daily(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let tz = s.config.timezone;
    let date = match p.get("date") {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|e| {
            ApiError::invalid("date", format!("expected YYYY-MM-DD, got {d:?}: {e}"))
        })?,
        None => local_date((s.clock)(), tz),
    };
    let r = report::daily_report(s.store.as_ref(), DEFAULT_PROJECT, date, tz).await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

async fn cost(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)(), 7 * DAY_MS)?;
    let group = match p.get("group_by") {
        None => CostGroup::parse("model"),
        Some(g) => CostGroup::parse(g),
    }
    .ok_or_else(|| {
        ApiError::invalid(
            "group_by",
            "expected one of model, feature, user, release, day",
        )
    })?;
    if group == CostGroup::Day && range.len_ms() > report::MAX_REPORT_DAYS * DAY_MS {
        return Err(ApiError::invalid(
            "from",
            format!(
                "group_by=day covers at most {} days",
                report::MAX_REPORT_DAYS
            ),
        ));
    }
    let r = report::cost_report(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        range,
        &parse_scope(&p),
        group,
        s.config.timezone,
    )
    .await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

async fn budgets(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = (s.clock)();
    let tz = s.config.timezone;
    let statuses = report::budget_statuses(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        &s.config.budgets,
        tz,
        now,
    )
    .await?;
    Ok(Json(json!({
        "timezone": tz.name(),
        "now": format_rfc3339(now, tz),
        "budgets": statuses,
    })))
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
    let scores = stored.scores;
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
        "cost": pr.cost_nanos.map(nanos_to_usd),
        "priced": pr.cost_nanos.is_some(),
        "price_model": price.filter(|_| pr.cost_nanos.is_some()).map(|p| p.model.clone()),
        "bottleneck_stage": r.bottleneck_stage(),
        "stages_sum_ms": r.stages_sum_ms(),
        "unaccounted_ms": r.unaccounted_ms(),
    })))
}
