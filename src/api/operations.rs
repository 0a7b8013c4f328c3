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
use super::{ApiError, AppState, with_range};
use crate::core::rollup::Dimension;
use crate::core::time::{DAY_MS, HOUR_MS};
use crate::metrics::BudgetGauge;
use crate::operations::{self, MAX_POINTS, Metric, Series, SeriesRequest, TimeSeries, parse_step};
use crate::quality::{self, QualityMetric};
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

/// Most buckets of a quality or feedback series (each bucket is one range query).
const MAX_QUALITY_POINTS: i64 = 800;

async fn timeseries(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let name = p.get("metric").map(String::as_str).unwrap_or("requests");
    let metric = match (Metric::parse(name), QualityMetric::parse(name)) {
        (Some(m), _) => Ok(m),
        (None, Some(q)) => Err(q),
        (None, None) => {
            return Err(ApiError::invalid(
                "metric",
                format!(
                    "expected one of {}, {}",
                    Metric::NAMES,
                    QualityMetric::NAMES
                ),
            ));
        }
    };
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
    let max_points = if metric.is_ok() {
        MAX_POINTS
    } else {
        MAX_QUALITY_POINTS
    };
    if range.len_ms() / step > max_points {
        return Err(ApiError::invalid(
            "step",
            format!("the range holds more than {max_points} steps; use a larger step"),
        ));
    }
    let group_by = match p.get("group_by").map(String::as_str) {
        None | Some("") => None,
        Some("model") => Some(Dimension::Model),
        Some("feature") => Some(Dimension::Feature),
        Some("user") => Some(Dimension::User),
        Some("release") => Some(Dimension::Release),
        Some(_) => {
            return Err(ApiError::invalid(
                "group_by",
                "expected model, feature, user or release",
            ));
        }
    };
    let top = p
        .get("top")
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::invalid("top", "expected an integer >= 1"))
        })
        .transpose()?;
    let scope = parse_scope(&p);
    let tz = s.config.timezone;
    let metric = match metric {
        Ok(metric) => metric,
        Err(quality_metric) => {
            if group_by.is_some() || top.is_some() {
                return Err(ApiError::invalid(
                    "group_by",
                    format!("metric {name} is not grouped"),
                ));
            }
            if scope.user.is_some() {
                return Err(ApiError::invalid(
                    "user",
                    format!("metric {name} filters by model, feature and release only"),
                ));
            }
            let quality_scope = super::quality::quality_scope(&p);
            let series = quality::quality_series(
                s.store.as_ref(),
                DEFAULT_PROJECT,
                &operations::buckets(range, step, tz),
                &quality_scope,
                &s.config.quality,
                quality_metric,
                p.get("name").map(String::as_str).filter(|n| !n.is_empty()),
            )
            .await?;
            let series: Vec<Series> = series
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect();
            return Ok(Json(
                serde_json::to_value(TimeSeries {
                    metric: name.to_owned(),
                    step_s: step / 1000,
                    series,
                })
                .unwrap_or_default(),
            ));
        }
    };
    if metric == Metric::StageMean && group_by.is_some() {
        return Err(ApiError::invalid(
            "group_by",
            "stage_mean is one series per stage and is not grouped",
        ));
    }
    if top.is_some() && (group_by.is_none() || !metric.is_additive()) {
        return Err(ApiError::invalid(
            "top",
            "needs a group_by and an additive metric (requests, errors, cost, tokens)",
        ));
    }
    let request = SeriesRequest {
        range,
        scope,
        metric_name: name.to_owned(),
        metric,
        step_ms: step,
        group_by,
        top,
    };
    let r = operations::timeseries(s.store.as_ref(), DEFAULT_PROJECT, request, tz).await?;
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
