//! The console's static files, embedded in the binary (`include_bytes!`): served with their
//! content type and cached for a day (their URLs do not change within a version; a reload after
//! an upgrade picks up the new ones).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::AppState;

/// The stylesheet.
static APP_CSS: &[u8] = include_bytes!("assets/app.css");
/// The script (progressive enhancements: copy buttons, confirmations, plugin upload).
static APP_JS: &[u8] = include_bytes!("assets/app.js");

fn asset(content_type: &'static str, bytes: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        bytes,
    )
}

/// `/console/assets/*`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/console/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/console/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
}
