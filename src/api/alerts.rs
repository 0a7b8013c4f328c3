//! Alerts over HTTP: the active alerts, the notification history, delivery attempts, the
//! rules as understood, and silences.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::reports::parse_range;
use super::{ApiError, AppState};
use crate::core::alert::Phase;
use crate::core::record::parse_timestamp;
use crate::core::time::{DAY_MS, format_rfc3339};
use crate::store::{DEFAULT_PROJECT, Silence};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(active))
        .route("/api/v1/alerts/history", get(history))
        .route("/api/v1/alerts/deliveries", get(deliveries))
        .route("/api/v1/alerts/rules", get(rules))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(delete_silence))
}

type Params = Query<HashMap<String, String>>;

fn limit(p: &HashMap<String, String>) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(200),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "expected 1..=10000")),
    }
}

async fn active(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let tz = s.config.timezone;
    let states = s.alerts.alert_states(DEFAULT_PROJECT).await?;
    let alerts: Vec<Value> = states
        .into_iter()
        .filter(|a| a.state.phase != Phase::Inactive)
        .map(|a| {
            json!({
                "rule": a.rule,
                "dedup_key": a.dedup_key,
                "severity": a.severity,
                "state": a.state.phase,
                "labels": a.group,
                "value": a.value,
                "threshold": a.threshold,
                "since": format_rfc3339(a.state.since_ms, tz),
                "summary": a.summary,
                "expr": a.expr,
                "last_notified": a.state.last_notified_ms.map(|t| format_rfc3339(t, tz)),
            })
        })
        .collect();
    Ok(Json(json!({"alerts": alerts})))
}

async fn history(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)() + 1, 7 * DAY_MS)?;
    let tz = s.config.timezone;
    let rows = s
        .alerts
        .alert_history(DEFAULT_PROJECT, range, limit(&p)?)
        .await?;
    let history: Vec<Value> = rows
        .into_iter()
        .map(|h| {
            let n = &h.notification;
            json!({
                "id": h.id,
                "rule": n.rule,
                "dedup_key": n.dedup_key,
                "severity": n.severity,
                "notice": n.notice,
                "labels": n.group,
                "summary": n.summary,
                "expr": n.expr,
                "value": n.value,
                "threshold": n.threshold,
                "starts_at": format_rfc3339(n.starts_ms, tz),
                "ends_at": n.ends_ms.map(|t| format_rfc3339(t, tz)),
                "at": format_rfc3339(n.at_ms, tz),
                "channels": h.channels,
                "silenced_by": h.silenced_by,
            })
        })
        .collect();
    Ok(Json(json!({"history": history})))
}

async fn deliveries(State(s): State<AppState>, Query(p): Params) -> Result<Json<Value>, ApiError> {
    let range = parse_range(&p, (s.clock)() + 1, 7 * DAY_MS)?;
    let tz = s.config.timezone;
    let rows = s
        .alerts
        .deliveries(DEFAULT_PROJECT, range, limit(&p)?)
        .await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|d| {
            json!({
                "history_id": d.history_id,
                "channel": d.channel,
                "attempt": d.attempt.attempt,
                "ok": d.attempt.ok,
                "status": d.attempt.status,
                "error": d.attempt.error,
                "duration_ms": d.attempt.duration_ms,
                "at": format_rfc3339(d.attempt.at_ms, tz),
            })
        })
        .collect();
    Ok(Json(json!({"deliveries": list})))
}

async fn rules(State(s): State<AppState>) -> Json<Value> {
    let a = &s.config.alerting;
    let rules: Vec<Value> = a
        .rules
        .iter()
        .map(|r| {
            let channels = r
                .channels
                .clone()
                .unwrap_or_else(|| a.routing.of(r.severity).to_vec());
            json!({
                "name": r.name,
                "expr": r.expr,
                "severity": r.severity,
                "for_ms": r.timing.for_ms,
                "cooldown_ms": r.timing.cooldown_ms,
                "channels": channels,
                "builtin": r.builtin,
            })
        })
        .collect();
    Json(json!({"eval_interval_ms": a.eval_interval_ms, "rules": rules}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: BTreeMap<String, String>,
    until: Value,
    comment: Option<String>,
}

async fn add_silence(
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: NewSilence = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("expected {{\"matchers\": {{label: value}}, \"until\", \"comment\"}}: {e}"),
        )
    })?;
    if req.matchers.is_empty() {
        return Err(ApiError::invalid(
            "matchers",
            "at least one label (alertname, severity or a group label)",
        ));
    }
    let now = (s.clock)();
    let until_ms = parse_timestamp(&req.until).map_err(|m| ApiError::invalid("until", m))?;
    if until_ms <= now {
        return Err(ApiError::invalid("until", "must be in the future"));
    }
    let id = s
        .alerts
        .add_silence(
            DEFAULT_PROJECT,
            Silence {
                id: 0,
                matchers: req.matchers,
                until_ms,
                comment: req.comment,
                created_ms: now,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn list_silences(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = (s.clock)();
    let tz = s.config.timezone;
    let list: Vec<Value> = s
        .alerts
        .silences(DEFAULT_PROJECT)
        .await?
        .into_iter()
        .map(|x| {
            json!({
                "id": x.id,
                "matchers": x.matchers,
                "until": format_rfc3339(x.until_ms, tz),
                "active": x.until_ms > now,
                "comment": x.comment,
                "created": format_rfc3339(x.created_ms, tz),
            })
        })
        .collect();
    Ok(Json(json!({"silences": list})))
}

async fn delete_silence(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if s.alerts.delete_silence(DEFAULT_PROJECT, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no silence {id}")))
    }
}
