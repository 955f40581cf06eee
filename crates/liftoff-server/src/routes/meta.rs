use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use liftoff_core::api::WhoAmI;

#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "meta", summary = "This document", security(()),
    responses((status = 200, description = "the OpenAPI 3.2 document of /api/v1", content_type = "application/json", body = Object)))]
pub async fn openapi(axum::Extension(doc): axum::Extension<std::sync::Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(doc.as_ref()).into_response()
}

pub async fn health() -> &'static str {
    "ok\n"
}

/// `GET /metrics`: OpenMetrics text when the scraper accepts it (Prometheus
/// does), else the Prometheus text format 0.0.4. With a scrape token
/// configured, only `Authorization: Bearer <token>` is answered (the
/// gauges name every entity's queues).
pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = &st.config.metrics_token {
        check_scrape_token(token, &headers)?;
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = st.metrics.render(st.store.as_ref(), openmetrics).await?;
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn check_scrape_token(token: &str, headers: &HeaderMap) -> Result<(), crate::error::ApiError> {
    use sha2::{Digest, Sha256};
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Digests compared, so the comparison's time tells nothing of the token.
    match given {
        Some(g) if Sha256::digest(g.trim().as_bytes()) == Sha256::digest(token.as_bytes()) => Ok(()),
        _ => Err(crate::error::ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "/metrics needs 'Authorization: Bearer <scrape token>' (the server's --metrics-token-file)",
        )),
    }
}

/// Times every request that matched a route, labelled with the route's
/// template (a raw path would put ids in a label).
pub async fn track_http(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    if let Some(route) = route {
        st.metrics.http_request(&method, &route, response.status().as_u16(), started.elapsed());
    }
    response
}

/// `GET /whoami`: the entity and role of the caller's key, so that clients
/// (an agent without `entity` in its config) need only the key.
#[utoipa::path(get, path = "/whoami", operation_id = "whoami", tag = "meta", summary = "The entity and role of the caller's key",
    responses((status = 200, description = "who the key is", body = liftoff_core::api::WhoAmI), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI { entity: caller.entity, role: caller.role.as_str().to_string() })
}
