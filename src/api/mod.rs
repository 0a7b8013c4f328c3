//! The HTTP API: shared state and the router. Each resource module owns its routes; handlers
//! are thin shims over the library (`report`, `pipeline`, `store`).

mod alerts;
mod dashboard;
mod drift;
mod error;
mod events;
mod operations;
mod otlp;
mod quality;
mod reports;
mod requests;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;

pub use dashboard::{ASSETS, PAGES};
pub use error::ApiError;
pub use quality::{golden_line, parse_since};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Writer;
use crate::store::Store;

/// Reads the current time in unix ms. A parameter so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// Everything a handler needs. Cloning is shallow.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Alert states, history and silences (the same database).
    pub alerts: Arc<dyn crate::store::AlertStore>,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// The LLM judge, when configured (its counters show on /healthz).
    pub judge: Option<crate::judge::Judge>,
    /// The recording proxy, when `[proxy]` is configured.
    pub proxy: Option<Arc<crate::proxy::Proxy>>,
}

pub fn router(state: AppState) -> Router {
    let proxy = if state.proxy.is_some() {
        crate::proxy::router()
    } else {
        Router::new()
    };
    Router::new()
        .merge(proxy)
        .route("/healthz", get(healthz))
        .merge(events::router())
        .merge(reports::router())
        .merge(requests::router())
        .merge(operations::router())
        .merge(otlp::router())
        .merge(drift::router())
        .merge(quality::router())
        .merge(alerts::router())
        .merge(dashboard::router())
        // Ingest enforces its own, configured limit with the API's error shape.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::Json<serde_json::Value> {
    let mut v = serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")});
    if let Some(judge) = &s.judge {
        v["judge"] = serde_json::to_value(judge.stats()).unwrap_or_default();
    }
    if let Some(proxy) = &s.proxy {
        v["proxy"] = serde_json::json!({
            "records_dropped": proxy.dropped.load(std::sync::atomic::Ordering::Relaxed),
        });
    }
    axum::Json(v)
}

/// Adds the resolved range (`from`, `to`, in the configured zone) to an answer object.
pub(crate) fn with_range(
    mut v: serde_json::Value,
    s: &AppState,
    from_ms: i64,
    to_ms: i64,
) -> serde_json::Value {
    if let Some(obj) = v.as_object_mut() {
        let tz = s.config.timezone;
        obj.insert(
            "from".into(),
            crate::core::time::format_rfc3339(from_ms, tz).into(),
        );
        obj.insert(
            "to".into(),
            crate::core::time::format_rfc3339(to_ms, tz).into(),
        );
    }
    v
}

/// Reads a request body of at most `limit` bytes: a larger one (declared or actual) is a 413.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body exceeds {limit} bytes; send smaller batches"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError::invalid("body", format!("could not read body: {e}"))
        }
    })
}
