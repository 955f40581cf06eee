use crate::app::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 description of `/api/v1`, kept beside the routes and
/// checked against them by the API tests.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn health() -> &'static str {
    "ok\n"
}

pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render())
}
