use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use liftoff_core::api::{FencedEvent, FencedHeartbeat, ItemHeartbeatResponse, ItemView};
use liftoff_core::{ItemEvent, ItemState};
use liftoff_store::StoreError;

/// Counts refused stale writes on the way out.
pub fn observe<T>(st: &AppState, r: Result<T, StoreError>) -> Result<T, ApiError> {
    if matches!(r, Err(StoreError::StaleFence { .. })) {
        st.metrics.stale_write();
    }
    Ok(r?)
}

/// `POST /items/{id}/lease`: the holder's heartbeat. Extends the lease and
/// tells the agent whether a stop was requested.
#[utoipa::path(post, path = "/entities/{entity}/items/{id}/lease", operation_id = "renewLease", tag = "leases",
    summary = "The holder's heartbeat: extends the lease, tells whether a stop was asked",
    params(crate::openapi::ItemPath), request_body = liftoff_core::api::FencedHeartbeat,
    responses((status = 200, description = "the lease and the item's state", body = liftoff_core::api::ItemHeartbeatResponse), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
pub async fn renew(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<FencedHeartbeat>,
) -> ApiResult<Json<ItemHeartbeatResponse>> {
    caller.may(&entity, Action::Work)?;
    let ttl = st.config.lease_ttl.as_millis() as i64;
    let renewed = {
        let _t = st.metrics.db_timer("renew_lease");
        st.store.renew_lease(&entity, &id, req.fence, ttl).await
    };
    let item = observe(&st, renewed)?;
    let log_position = if req.resume { Some(st.store.log_position(&entity, &item.id, req.fence).await?) } else { None };
    Ok(Json(ItemHeartbeatResponse {
        state: item.state,
        stop_requested: item.state == ItemState::Stopping,
        lease_expires_at_ms: item.lease_expires_at_ms.unwrap_or_default(),
        log_position,
    }))
}

/// `POST /items/{id}/events`: the holder reports progress or an outcome.
#[utoipa::path(post, path = "/entities/{entity}/items/{id}/events", operation_id = "reportEvent", tag = "leases",
    summary = "The holder reports progress or an outcome (start, finish, fail, stopped, preempt, release)",
    params(crate::openapi::ItemPath), request_body = liftoff_core::api::FencedEvent,
    responses((status = 200, description = "the item after the event", body = liftoff_core::api::ItemView), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody), (status = 422, description = "the request is what this document admits, but fails a rule it can only describe in words (named in `field`): the resource type's options, the queue's template variables, a git remote's form, a job the body names that does not exist", body = liftoff_core::api::ErrorBody)))]
pub async fn event(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<FencedEvent>,
) -> ApiResult<Json<ItemView>> {
    caller.may(&entity, Action::Work)?;
    match req.event {
        ItemEvent::Claim | ItemEvent::LeaseExpired | ItemEvent::RequestStop => {
            return Err(ApiError::unprocessable(
                "event",
                format!(
                    "'{}' is not an event an agent may report (use start, finish, fail, stopped or preempt)",
                    req.event.name()
                ),
            ));
        }
        _ => {}
    }
    if let Some(tail) = &req.log {
        super::logs::check_chunk("log.", tail.seq, &tail.data)?;
    }
    let applied = {
        let _t = st.metrics.db_timer("event");
        let now = liftoff_store::now_ms();
        match &req.log {
            Some(tail) => st.store.append_log_then_event(&entity, &id, req.fence, tail, &req.event, now).await,
            None => st.store.apply_event(&entity, &id, Some(req.fence), &req.event, now).await,
        }
    };
    let item = observe(&st, applied)?;
    if req.log.is_some() {
        st.metrics.log_chunk();
    }
    st.metrics.transitioned(&item);
    st.changes.item(&entity, &item.id, Some(&item.queue));
    if item.state == ItemState::Pending {
        // a preempted run went back on its queue: wake waiting agents
        st.dispatch.notify();
    }
    Ok(Json(item.without_credentials()))
}
