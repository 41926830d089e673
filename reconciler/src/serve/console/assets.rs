//! The console's static assets, compiled into the binary: one stylesheet and one script, served with long cache lifetimes under a content-derived version.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub const CSS: &str = include_str!("console.css");
/// The live-update script.
pub const JS: &str = include_str!("console.js");

/// The first 12 hex digits of the SHA-256 of both assets: pages link `?v=<this>`, so a new
/// build's assets are fetched although the old ones are cached for a year.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let hex = novacron_schemas::sha256_hex(format!("{CSS}\0{JS}").as_bytes());
        hex[..12].to_string()
    });
    &VERSION
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        body,
    )
        .into_response()
}

/// `GET /static/console.css`.
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

/// `GET /static/console.js`.
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}
