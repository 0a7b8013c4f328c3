//! The dashboard: a browser client of the public API, its assets embedded in the binary.
//!
//! Every page path serves the same `index.html`; the page's script reads the path and the query
//! string (time range, filters) and fetches what it shows from `/api/v1/...`. For development,
//! `LLMWATCH_DASHBOARD_DIR` serves the same file names from a directory instead, so an edit shows
//! on reload without a rebuild.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// One embedded file: its name under `/assets/`, its media type and its bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/dashboard/",
                $name
            )),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `assets/dashboard/` (a test checks that none is missing).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("charts.js", JS),
    asset!("pages/overview.js", JS),
    asset!("pages/cost.js", JS),
    asset!("pages/latency.js", JS),
    asset!("pages/quality.js", JS),
    asset!("pages/drift.js", JS),
    asset!("pages/alerts.js", JS),
    asset!("pages/requests.js", JS),
];

/// The dashboard's pages; each path serves `index.html`.
pub const PAGES: &[&str] = &[
    "/",
    "/cost",
    "/latency",
    "/quality",
    "/drift",
    "/alerts",
    "/requests",
];

/// Scripts and styles come from this origin only; the API is same-origin.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    let mut r = Router::new().route("/assets/{*name}", get(asset));
    for page in PAGES {
        r = r.route(page, get(index));
    }
    r
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // Only the listed names are read from the development directory: no path traversal.
    let bytes = match std::env::var_os("LLMWATCH_DASHBOARD_DIR") {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(asset.name)) {
            Ok(b) => b,
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("LLMWATCH_DASHBOARD_DIR: cannot read {}: {e}", asset.name),
                )
                    .into_response();
            }
        },
        None => asset.bytes.to_vec(),
    };
    let mut resp = bytes.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Small files; revalidating on each load keeps a new binary's assets from mixing with old.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
