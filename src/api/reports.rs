//! Read endpoints: daily and ranged cost reports, budget states.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::core::record::parse_timestamp_str;
use crate::core::rollup::Scope;
use crate::core::time::{DAY_MS, Range, format_rfc3339, local_date};
use crate::report::{self, CostGroup};
use crate::store::DEFAULT_PROJECT;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports/daily", get(daily))
        .route("/api/v1/reports/cost", get(cost))
        .route("/api/v1/budgets", get(budgets))
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
