use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::metrics::Metrics;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use liftoff_core::api::{AgentHeartbeat, AgentHeartbeatResponse, AgentView, Claim, ClaimRequest, RegisterAgent};
use std::time::Duration;

pub async fn register(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> ApiResult<(StatusCode, Json<AgentView>)> {
    caller.admin(&entity)?;
    if req.max_jobs < -1 || req.max_jobs == 0 {
        return Err(ApiError::bad_request(
            "max_jobs",
            format!("max_jobs must be -1 (unlimited) or at least 1, got {}", req.max_jobs),
        ));
    }
    if req.queues.is_empty() {
        return Err(ApiError::bad_request("queues", "an agent needs at least one queue"));
    }
    let mut missing = vec![];
    for q in &req.queues {
        if st.store.get_queue(&entity, q).await?.is_none() {
            missing.push(q.clone());
        }
    }
    if !missing.is_empty() {
        let available: Vec<String> = st.store.list_queues(&entity).await?.into_iter().map(|q| q.name).collect();
        return Err(ApiError::not_found(
            "queues",
            format!(
                "not all requested queues exist: missing {}; available queues in entity '{entity}': {}",
                missing.join(", "),
                if available.is_empty() { "(none)".to_string() } else { available.join(", ") }
            ),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let agent = st.store.register_agent(&entity, &id, &req, liftoff_store::now_ms()).await?;
    st.known_agents.lock().unwrap_or_else(|p| p.into_inner()).insert((entity, id));
    Ok((StatusCode::CREATED, Json(agent)))
}

pub async fn heartbeat(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<AgentHeartbeat>,
) -> ApiResult<Json<AgentHeartbeatResponse>> {
    caller.admin(&entity)?;
    let agent = st.store.agent_heartbeat(&entity, &id, req.status, liftoff_store::now_ms()).await?;
    Ok(Json(AgentHeartbeatResponse { stop_polling: agent.stop_polling }))
}

pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<AgentView>>> {
    caller.admin(&entity)?;
    Ok(Json(st.store.list_agents(&entity).await?))
}

pub async fn stop_polling(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
) -> ApiResult<Json<AgentView>> {
    caller.admin(&entity)?;
    Ok(Json(st.store.set_agent_stop_polling(&entity, &id).await?))
}

/// `POST /claims`: claims the next item of the first of `queues` that has
/// one. Waits up to `wait_ms` (capped by the server) for one to appear; an
/// enqueue wakes the wait at once. 204 when nothing came.
pub async fn claim(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Response> {
    caller.admin(&entity)?;
    if req.queues.is_empty() {
        return Err(ApiError::bad_request("queues", "name at least one queue to claim from"));
    }
    let key = (entity.clone(), req.agent_id.clone());
    let known = st.known_agents.lock().unwrap_or_else(|p| p.into_inner()).contains(&key);
    if !known {
        if st.store.get_agent(&entity, &req.agent_id).await?.is_none() {
            return Err(ApiError::not_found("agent_id", format!("agent '{}' is not registered", req.agent_id)));
        }
        st.known_agents.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    }
    let ttl = st.config.lease_ttl.as_millis() as i64;
    let wait = Duration::from_millis(req.wait_ms).min(st.config.max_claim_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut wake = st.dispatch.subscribe();
    loop {
        wake.borrow_and_update();
        if let Some(claimed) = st.store.claim(&entity, &req.queues, &req.agent_id, ttl).await? {
            Metrics::inc(&st.metrics.items_claimed);
            let fence = claimed.item.fence;
            let run_api_key = st.run_keys.mint(&entity, &claimed.item.id, fence);
            let claim = Claim {
                item: claimed.item,
                fence,
                lease_ttl_ms: ttl,
                log_seq_start: claimed.log_seq_start,
                run_api_key: Some(run_api_key),
            };
            return Ok(Json(claim).into_response());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            Metrics::inc(&st.metrics.claims_empty);
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Re-check at least every second: with PostgreSQL, another server
        // may have taken the enqueue and its wake-up never reaches us.
        let nap = (deadline - now).min(Duration::from_secs(1));
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}
