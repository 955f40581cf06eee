use crate::app::AppState;
use crate::auth::Caller;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use liftoff_core::api::WhoAmI;

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

/// `GET /whoami`: the entity and role of the caller's key, so that clients
/// (an agent without `entity` in its config) need only the key.
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI { entity: caller.entity, role: caller.role.as_str().to_string() })
}
