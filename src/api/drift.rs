//! Drift endpoints: a check (`GET /api/v1/drift`), named baselines, and the configured
//! monitors (`GET /api/v1/drift/status`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::reports::parse_range;
use super::{ApiError, AppState};
use crate::core::time::HOUR_MS;
use crate::drift::{self, DEFAULT_WINDOW_MS, DriftError, DriftRequest, Method};
use crate::operations::{self, parse_step};
use crate::store::{DEFAULT_PROJECT, DriftScope};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/drift", get(check))
        .route("/api/v1/drift/status", get(status))
        .route("/api/v1/drift/history", get(history))
        .route(
            "/api/v1/drift/baselines",
            get(list_baselines).post(put_baseline),
        )
        .route("/api/v1/drift/baselines/{name}", delete(delete_baseline))
}

type Params = Query<HashMap<String, String>>;

impl From<DriftError> for ApiError {
    fn from(e: DriftError) -> Self {
        match e {
            DriftError::Invalid { field, message } => ApiError::invalid(field, message),
            DriftError::UnknownBaseline(_) => ApiError::not_found(e.to_string()),
            DriftError::Store(e) => e.into(),
        }
    }
}

/// The parameters of a check.
fn drift_request(
    p: &HashMap<String, String>,
    now_ms: i64,
    min_samples: u64,
) -> Result<DriftRequest, ApiError> {
    let dimension = p
        .get("dimension")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "dimension",
                "is required (e.g. model, attributes.KEY, output_tokens)",
            )
        })?
        .clone();
    let method = match p.get("method").map(String::as_str) {
        None | Some("") => Method::Auto,
        Some(m) => Method::parse(m).ok_or_else(|| {
            ApiError::invalid("method", format!("expected one of {}", Method::NAMES))
        })?,
    };
    let threshold = p
        .get("threshold")
        .map(|t| {
            t.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(|| ApiError::invalid("threshold", "expected a number > 0"))
        })
        .transpose()?;
    let min_samples = p
        .get("min_samples")
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::invalid("min_samples", "expected an integer >= 1"))
        })
        .transpose()?
        .unwrap_or(min_samples);
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(DriftRequest {
        dimension,
        baseline: get("baseline"),
        window: parse_range(p, now_ms, DEFAULT_WINDOW_MS)?,
        method,
        threshold,
        scope: DriftScope {
            model: get("model"),
            feature: get("feature"),
        },
        min_samples,
    })
}

async fn check(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let req = drift_request(&p, (s.clock)(), s.config.drift_min_samples)?;
    let report = drift::check(s.store.as_ref(), DEFAULT_PROJECT, &req).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let results = drift::status(
        s.store.as_ref(),
        DEFAULT_PROJECT,
        &s.config.drift,
        (s.clock)(),
        s.config.drift_min_samples,
    )
    .await;
    let monitors: Vec<Value> = results
        .into_iter()
        .map(|(name, r)| match r {
            Ok(report) => {
                let mut v = serde_json::to_value(report).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("name".into(), name.into());
                }
                v
            }
            Err(e) => json!({"name": name, "error": e.to_string()}),
        })
        .collect();
    let drifting = monitors
        .iter()
        .filter(|m| m["drift_detected"] == Value::Bool(true))
        .count();
    Ok(Json(json!({"monitors": monitors, "drifting": drifting})))
}

/// Most points of a monitor's history (each point is one drift check).
const MAX_HISTORY_POINTS: i64 = 200;

/// A monitor evaluated at the end of each step, its window ending there: the score the alert
/// evaluator saw over time.
async fn history(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let name = p
        .get("monitor")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("monitor", "is required (a [[drift]] monitor's name)"))?;
    let monitor = s
        .config
        .drift
        .iter()
        .find(|m| &m.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no drift monitor named {name:?}")))?;
    let step = match p.get("step") {
        Some(step) => parse_step(step).map_err(|m| ApiError::invalid("step", m))?,
        None => HOUR_MS,
    };
    let range = parse_range(&p, (s.clock)(), 24 * HOUR_MS)?;
    if range.len_ms() / step > MAX_HISTORY_POINTS {
        return Err(ApiError::invalid(
            "step",
            format!("the range holds more than {MAX_HISTORY_POINTS} steps; use a larger step"),
        ));
    }
    let ends: Vec<i64> = operations::buckets(range, step, s.config.timezone)
        .into_iter()
        .map(|(_, bucket)| bucket.to_ms)
        .collect();
    // `auto` picks a method by sample size, which could change along the way: the whole
    // history uses what the latest point resolves to, so its scores are comparable.
    let mut monitor = monitor.clone();
    let mut threshold = monitor.threshold;
    let min = s.config.drift_min_samples;
    let mut points = Vec::with_capacity(ends.len());
    let mut p_values = Vec::new();
    for (i, &at) in ends.iter().enumerate().rev() {
        let report =
            drift::check(s.store.as_ref(), DEFAULT_PROJECT, &monitor.request(at, min)).await?;
        if i == ends.len() - 1 {
            monitor.method = Method::parse(report.method).unwrap_or(monitor.method);
            threshold = Some(report.threshold);
        }
        if let Some(score) = report.score {
            points.push((at, score));
        }
        if let Some(p) = report.p_value {
            p_values.push((at, p));
        }
    }
    points.reverse();
    p_values.reverse();
    Ok(Json(json!({
        "name": monitor.name,
        "dimension": monitor.dimension,
        "method": monitor.method.name(),
        "threshold": threshold,
        "step_s": step / 1000,
        "points": points,
        // Tests (chi-square, KS) compare their p-value with the threshold (alpha); the
        // distances compare the score.
        "threshold_applies_to": if monitor.method.has_p_value() { "p_value" } else { "score" },
        "p_values": p_values,
    })))
}

async fn list_baselines(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = s.store.baselines(DEFAULT_PROJECT).await?;
    Ok(Json(json!({"baselines": list})))
}

async fn put_baseline(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("body is not valid JSON: {e}")))?;
    let baseline = drift::parse_baseline(&body, (s.clock)())?;
    s.store
        .put_baseline(DEFAULT_PROJECT, baseline.clone())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(baseline).unwrap_or_default()),
    ))
}

async fn delete_baseline(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.store.delete_baseline(DEFAULT_PROJECT, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no baseline named {name:?}")))
    }
}
