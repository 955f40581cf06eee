//! The UI's routes, mounted at `/` beside `/api/v1`.

use super::{agents, assets, jobs, live, queues, runs, session};
use crate::app::AppState;
use axum::Router;
use axum::routing::{get, post};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(queues::index))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/queues/{queue}", get(queues::show))
        .route("/queues/{queue}/live", get(live::queue))
        .route("/queues/{queue}/stop", post(queues::bulk_stop))
        .route("/queues/{queue}/filters", post(queues::save_filter))
        .route("/queues/{queue}/filters/delete", post(queues::delete_filter))
        .route("/queues/{queue}/launch", get(jobs::launch_form).post(jobs::launch))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/live", get(live::run))
        .route("/runs/{id}/log.txt", get(runs::log_download))
        .route("/runs/{id}/stop", post(runs::stop))
        .route("/runs/{id}/relaunch", post(runs::relaunch))
        .route("/runs/{id}/priority", post(runs::set_priority))
        .route("/agents", get(agents::index))
        .route("/agents/{id}/stop-polling", post(agents::stop_polling))
        .route("/jobs", get(jobs::index))
        .route("/assets/{version}/{file}", get(assets::serve))
        .layer(axum::middleware::from_fn(assets::security_headers))
}
