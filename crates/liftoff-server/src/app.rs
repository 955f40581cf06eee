use crate::changes::Changes;
use crate::config::ServerConfig;
use crate::dispatch::Dispatch;
use crate::metrics::Metrics;
use crate::routes;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use liftoff_store::{BlobStore, Store};
use std::sync::{Arc, Mutex};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub dispatch: Dispatch,
    /// Wakes event streams; bounds how many are open.
    pub changes: Changes,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    /// Recently verified API keys by hash, so a request costs no key lookup.
    pub key_cache: Arc<Mutex<std::collections::HashMap<String, (liftoff_store::ApiKeyRecord, std::time::Instant)>>>,
    /// Agent ids already checked to exist, so claims skip that lookup
    /// (agents are never deleted).
    pub known_agents: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    /// Signs run keys (see `auth::RunKeys`).
    pub run_keys: crate::auth::RunKeys,
    /// Signs the web UI's session cookies and CSRF tokens.
    pub ui_sessions: crate::ui::session::Sessions,
    /// Seals git credentials before they are stored and opens them for the
    /// claiming agent (`--secrets-key-file`); `None`: stored plain.
    pub secrets_keys: Option<Arc<crate::secrets_key::SecretsKeys>>,
}

pub fn router(state: AppState) -> Router {
    let json_limit = state.config.max_json_body;
    let blob_limit = state.config.max_blob_body;
    let (api, doc) = api_routes(blob_limit).split_for_parts();
    let doc = Arc::new(crate::openapi::document(doc));
    let api = api
        .fallback(no_such_route)
        .layer(axum::middleware::from_fn(crate::extract::json_errors))
        .layer(axum::Extension(doc));
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::ui::routes::router())
        .route("/healthz", get(routes::meta::health))
        .route("/metrics", get(routes::meta::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), routes::meta::track_http))
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(state)
}

/// `/api/v1`: every route is registered from its `#[utoipa::path]`
/// annotation, which also gives its place in the OpenAPI document, so a
/// route and its documentation cannot part.
fn api_routes(blob_limit: usize) -> OpenApiRouter<AppState> {
    use routes::*;
    let (schemas, paths, blobs) = routes!(blobs::upload, blobs::download);
    let blobs = (schemas, paths, blobs.layer(DefaultBodyLimit::max(blob_limit)));
    OpenApiRouter::new()
        .routes(routes!(queues::create, queues::list))
        .routes(routes!(queues::show))
        .routes(routes!(items::launch))
        .routes(routes!(events::queue_stream))
        .routes(blobs)
        .routes(routes!(jobs::create, jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(items::list))
        .routes(routes!(items::show))
        .routes(routes!(items::stop))
        .routes(routes!(items::set_priority))
        .routes(routes!(leases::renew))
        .routes(routes!(leases::event, events::history))
        .routes(routes!(events::run_stream))
        .routes(routes!(items::add_warning))
        .routes(routes!(builds::record))
        .routes(routes!(builds::claim))
        .routes(routes!(builds::renew))
        .routes(routes!(builds::finish))
        .routes(routes!(logs::append, logs::read))
        .routes(routes!(agents::register, agents::list))
        .routes(routes!(agents::heartbeat))
        .routes(routes!(agents::stop_polling))
        .routes(routes!(agents::release))
        .routes(routes!(agents::claim))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(meta::whoami))
        .routes(routes!(meta::openapi))
}

/// An `/api/v1` path no route serves: the documented JSON error, not the
/// web UI's page.
async fn no_such_route(uri: axum::http::Uri) -> crate::error::ApiError {
    crate::error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no API operation at {}; see /api/v1/openapi.json", uri.path()),
    )
}
