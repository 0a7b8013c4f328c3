//! The HTTP API: shared state and the router. Each resource module owns its routes; handlers
//! are thin shims over the library (`report`, `pipeline`, `store`).

mod error;
mod events;
mod operations;
mod reports;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use error::ApiError;

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
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(events::router())
        .merge(reports::router())
        .merge(operations::router())
        // Ingest enforces its own, configured limit with the API's error shape.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
