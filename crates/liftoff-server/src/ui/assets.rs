//! Static files compiled into the binary, and the headers every page gets.

use axum::extract::{Path, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// htmx 2.0.11 from the `htmx.org` npm package (`dist/htmx.min.js`), 0BSD.
const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
/// htmx's SSE extension 2.2.4 from the `htmx-ext-sse` npm package (`dist/sse.js`), 0BSD.
const SSE: &[u8] = include_bytes!("../../assets/sse.js");
const CSS: &[u8] = include_bytes!("../../assets/app.css");
const JS: &[u8] = include_bytes!("../../assets/app.js");

/// Asset URLs carry a version, so they can be cached for a year: a new
/// build that changes them serves them under a new name.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /assets/{version}/{file}`.
pub async fn serve(Path((version, file)): Path<(String, String)>) -> Response {
    let (body, kind) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "sse.js" => (SSE, "text/javascript; charset=utf-8"),
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if version != VERSION {
        return StatusCode::NOT_FOUND.into_response();
    }
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    ([(CONTENT_TYPE, HeaderValue::from_static(kind)), (CACHE_CONTROL, cache)], body).into_response()
}

/// No inline script or style, nothing from elsewhere, no framing: an
/// injected `<script>` that escaping missed would still not run.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every UI response (pages are never cached).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
