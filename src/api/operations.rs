//! Operations endpoints: latency by stage, error rate and throughput, time series, and the
//! Prometheus exposition.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::reports::{parse_range, parse_scope};
use super::{ApiError, AppState};
use crate::core::rollup::Dimension;
use crate::core::time::{DAY_MS, HOUR_MS, format_rfc3339};
use crate::metrics::BudgetGauge;
use crate::operations::{self, MAX_POINTS, Metric, SeriesRequest, parse_step};
use crate::report;
use crate::store::DEFAULT_PROJECT;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/latency", get(latency))
        .route("/api/v1/operations", get(ops))
        .route("/api/v1/timeseries", get(timeseries))
        .route("/metrics", get(metrics))
}

type Params = Query<HashMap<String, String>>;

/// Adds the resolved range to a report object.
fn with_range(mut v: Value, s: &AppState, from_ms: i64, to_ms: i64) -> Value {
    if let Some(obj) = v.as_object_mut() {
        let tz = s.config.timezone;
        obj.insert("from".into(), format_rfc3339(from_ms, tz).into());
        obj.insert("to".into(), format_rfc3339(to_ms, tz).into());
    }
    v
}

async fn latency(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)(), HOUR_MS)?;
    let r = operations::latency(s.store.as_ref(), DEFAULT_PROJECT, range, &parse_scope(&p)).await?;
    let v = serde_json::to_value(r).unwrap_or_default();
    Ok(Json(with_range(v, &s, range.from_ms, range.to_ms)))
}

async fn ops(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)(), HOUR_MS)?;
    let r =
        operations::operations(s.store.as_ref(), DEFAULT_PROJECT, range, &parse_scope(&p)).await?;
    let v = serde_json::to_value(r).unwrap_or_default();
    Ok(Json(with_range(v, &s, range.from_ms, range.to_ms)))
}

async fn timeseries(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let name = p.get("metric").map(String::as_str).unwrap_or("requests");
    let metric = Metric::parse(name)
        .ok_or_else(|| ApiError::invalid("metric", format!("expected one of {}", Metric::NAMES)))?;
    let step = match p.get("step") {
        Some(step) => parse_step(step).map_err(|m| ApiError::invalid("step", m))?,
        None => 60_000,
    };
    let range = parse_range(
        &p,
        (s.clock)(),
        if step >= DAY_MS {
            30 * DAY_MS
        } else {
            24 * HOUR_MS
        },
    )?;
    if range.len_ms() / step > MAX_POINTS {
        return Err(ApiError::invalid(
            "step",
            format!("the range holds more than {MAX_POINTS} steps; use a larger step"),
        ));
    }
    let group_by = match p.get("group_by").map(String::as_str) {
        None | Some("") => None,
        Some("model") => Some(Dimension::Model),
        Some("feature") => Some(Dimension::Feature),
        Some("release") => Some(Dimension::Release),
        Some(_) => {
            return Err(ApiError::invalid(
                "group_by",
                "expected model, feature or release",
            ));
        }
    };
    let request = SeriesRequest {
        range,
        scope: parse_scope(&p),
        metric_name: name.to_owned(),
        metric,
        step_ms: step,
        group_by,
    };
    let r = operations::timeseries(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        request,
        s.config.timezone,
    )
    .await?;
    Ok(Json(serde_json::to_value(r).unwrap_or_default()))
}

async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let statuses = report::budget_statuses(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        &s.config.budgets,
        s.config.timezone,
        (s.clock)(),
    )
    .await?;
    let gauges: Vec<BudgetGauge> = statuses
        .iter()
        .map(|b| BudgetGauge {
            name: b.name.clone(),
            period: b.period.as_str(),
            spent_usd: b.spent_usd,
            limit_usd: b.limit_usd,
        })
        .collect();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&gauges),
    ))
}
