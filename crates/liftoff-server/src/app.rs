use crate::changes::Changes;
use crate::config::ServerConfig;
use crate::dispatch::Dispatch;
use crate::metrics::Metrics;
use crate::routes;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use liftoff_store::{BlobStore, Store};
use std::sync::{Arc, Mutex};

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
}

pub fn router(state: AppState) -> Router {
    let json_limit = state.config.max_json_body;
    let blob_limit = state.config.max_blob_body;
    let api = Router::new()
        .route("/entities/{entity}/queues", post(routes::queues::create).get(routes::queues::list))
        .route("/entities/{entity}/queues/{queue}", get(routes::queues::show))
        .route("/entities/{entity}/queues/{queue}/items", post(routes::items::launch))
        .route("/entities/{entity}/queues/{queue}/stream", get(routes::events::queue_stream))
        .route(
            "/entities/{entity}/blobs/{digest}",
            put(routes::blobs::upload).get(routes::blobs::download).layer(DefaultBodyLimit::max(blob_limit)),
        )
        .route("/entities/{entity}/jobs", post(routes::jobs::create).get(routes::jobs::list))
        .route("/entities/{entity}/jobs/{project}/{name}", get(routes::jobs::show))
        .route("/entities/{entity}/items", get(routes::items::list))
        .route("/entities/{entity}/items/{id}", get(routes::items::show))
        .route("/entities/{entity}/items/{id}/stop", post(routes::items::stop))
        .route("/entities/{entity}/items/{id}/priority", post(routes::items::set_priority))
        .route("/entities/{entity}/items/{id}/lease", post(routes::leases::renew))
        .route("/entities/{entity}/items/{id}/events", post(routes::leases::event).get(routes::events::history))
        .route("/entities/{entity}/items/{id}/stream", get(routes::events::run_stream))
        .route("/entities/{entity}/items/{id}/warnings", post(routes::items::add_warning))
        .route("/entities/{entity}/items/{id}/build", post(routes::builds::record))
        .route("/entities/{entity}/builds/claim", post(routes::builds::claim))
        .route("/entities/{entity}/builds/renew", post(routes::builds::renew))
        .route("/entities/{entity}/builds/finish", post(routes::builds::finish))
        .route("/entities/{entity}/items/{id}/logs", post(routes::logs::append).get(routes::logs::read))
        .route("/entities/{entity}/agents", post(routes::agents::register).get(routes::agents::list))
        .route("/entities/{entity}/agents/{id}/heartbeat", post(routes::agents::heartbeat))
        .route("/entities/{entity}/agents/{id}/stop-polling", post(routes::agents::stop_polling))
        .route("/entities/{entity}/agents/{id}/release", post(routes::agents::release))
        .route("/entities/{entity}/claims", post(routes::agents::claim))
        .route("/entities/{entity}/keys", post(routes::keys::create).get(routes::keys::list))
        .route("/entities/{entity}/keys/{id}", delete(routes::keys::revoke))
        .route("/whoami", get(routes::meta::whoami))
        .route("/openapi.json", get(routes::meta::openapi));
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::ui::routes::router())
        .route("/healthz", get(routes::meta::health))
        .route("/metrics", get(routes::meta::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), routes::meta::track_http))
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(state)
}
