use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use liftoff_core::api::{
    AgentHeartbeat, AgentHeartbeatResponse, AgentView, Claim, ClaimRequest, RegisterAgent, ReleaseClaims,
    ReleasedClaims,
};
use std::time::Duration;

#[utoipa::path(post, path = "/entities/{entity}/agents", operation_id = "registerAgent", tag = "agents",
    summary = "Register an agent polling some queues",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::RegisterAgent,
    responses((status = 201, description = "the agent", body = liftoff_core::api::AgentView, links(
        ("heartbeat" = (operation_id = "agentHeartbeat", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/id")))),
        ("stopPolling" = (operation_id = "stopPolling", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/id")))),
        ("release" = (operation_id = "releaseClaims", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/id"))))
    )), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody)))]
pub async fn register(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> ApiResult<(StatusCode, Json<AgentView>)> {
    caller.may(&entity, Action::Work)?;
    if req.max_jobs < -1 || req.max_jobs == 0 {
        return Err(ApiError::bad_request(
            "max_jobs",
            format!("max_jobs must be -1 (unlimited) or at least 1, got {}", req.max_jobs),
        ));
    }
    if req.queues.is_empty() {
        return Err(ApiError::bad_request("queues", "an agent needs at least one queue"));
    }
    if req.version.chars().count() > 64 || req.version.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "version",
            "version must be at most 64 characters, none a control character",
        ));
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
    Ok((StatusCode::CREATED, Json(agent)))
}

#[utoipa::path(post, path = "/entities/{entity}/agents/{id}/heartbeat", operation_id = "agentHeartbeat", tag = "agents",
    summary = "An agent's heartbeat; answers whether it was told to stop polling",
    params(crate::openapi::IdPath), request_body = liftoff_core::api::AgentHeartbeat,
    responses((status = 200, description = "what the agent must know", body = liftoff_core::api::AgentHeartbeatResponse), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody)))]
pub async fn heartbeat(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<AgentHeartbeat>,
) -> ApiResult<Json<AgentHeartbeatResponse>> {
    caller.may(&entity, Action::Work)?;
    let agent = st.store.agent_heartbeat(&entity, &id, req.status, liftoff_store::now_ms()).await?;
    Ok(Json(AgentHeartbeatResponse { stop_polling: agent.stop_polling }))
}

#[utoipa::path(get, path = "/entities/{entity}/agents", operation_id = "listAgents", tag = "agents", summary = "List agents",
    params(crate::openapi::EntityPath),
    responses((status = 200, description = "the agents", body = Vec<liftoff_core::api::AgentView>), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<AgentView>>> {
    caller.may(&entity, Action::Read)?;
    Ok(Json(st.store.list_agents(&entity).await?))
}

#[utoipa::path(post, path = "/entities/{entity}/agents/{id}/stop-polling", operation_id = "stopPolling", tag = "agents",
    summary = "Tell an agent to claim nothing more (its running items go on)",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "the agent", body = liftoff_core::api::AgentView), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn stop_polling(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
) -> ApiResult<Json<AgentView>> {
    caller.may(&entity, Action::Manage)?;
    let agent = st.store.set_agent_stop_polling(&entity, &id).await?;
    // wake its waiting claim, which then sees the flag and answers nothing
    st.dispatch.notify();
    Ok(Json(agent))
}

/// `POST /agents/{id}/release`: puts back in their queues the items this
/// agent claimed and never started, except those it says it holds. An agent
/// calls it when a claim's answer may have been lost, and when it stops.
#[utoipa::path(post, path = "/entities/{entity}/agents/{id}/release", operation_id = "releaseClaims", tag = "agents",
    summary = "Give back the items an agent claimed and never started, except those it keeps",
    params(crate::openapi::IdPath), request_body = liftoff_core::api::ReleaseClaims,
    responses((status = 200, description = "the items put back in their queues", body = liftoff_core::api::ReleasedClaims), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody)))]
pub async fn release(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<ReleaseClaims>,
) -> ApiResult<Json<ReleasedClaims>> {
    caller.may(&entity, Action::Work)?;
    if st.store.get_agent(&entity, &id).await?.is_none() {
        return Err(ApiError::not_found("id", format!("agent '{id}' is not registered")));
    }
    let released = st.store.release_unstarted(&entity, &id, &req.keep).await?;
    if !released.is_empty() {
        tracing::info!(agent = %id, items = ?released, "claims released");
        st.dispatch.notify();
        st.changes.any();
    }
    Ok(Json(ReleasedClaims { released }))
}

/// `POST /claims`: claims the next item of the first of `queues` that has
/// one. Waits up to `wait_ms` (capped by the server) for one to appear; an
/// enqueue wakes the wait at once. 204 when nothing came.
#[utoipa::path(post, path = "/entities/{entity}/claims", operation_id = "claim", tag = "agents",
    summary = "Claim the next item of the first of some queues that has one (long poll)",
    description = "Waits up to `wait_ms` (capped by the server) for an item; an enqueue wakes the wait at once. The claim carries a lease and a fencing token that every later write about the item must carry.",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::ClaimRequest,
    responses((status = 200, description = "the claimed item, its fence and lease", body = liftoff_core::api::Claim, links(
        ("getItem" = (operation_id = "getItem", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("renewLease" = (operation_id = "renewLease", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("reportEvent" = (operation_id = "reportEvent", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("appendLog" = (operation_id = "appendLog", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("readLogs" = (operation_id = "readLogs", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("addWarning" = (operation_id = "addWarning", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("recordBuild" = (operation_id = "recordBuild", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("itemHistory" = (operation_id = "itemHistory", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id")))),
        ("stopItem" = (operation_id = "stopItem", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/item/id"))))
    )), (status = 204, description = "nothing came within the wait, or the agent was told to stop polling"), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody)))]
pub async fn claim(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Response> {
    caller.may(&entity, Action::Work)?;
    if req.queues.is_empty() {
        return Err(ApiError::bad_request("queues", "name at least one queue to claim from"));
    }
    let key = (entity.clone(), req.agent_id.clone());
    let known = st.known_agents.lock().unwrap_or_else(|p| p.into_inner()).contains(&key);
    if !known {
        match st.store.get_agent(&entity, &req.agent_id).await? {
            None => {
                return Err(ApiError::not_found("agent_id", format!("agent '{}' is not registered", req.agent_id)));
            }
            Some(agent) if agent.stop_polling => return Ok(StatusCode::NO_CONTENT.into_response()),
            Some(_) => {
                st.known_agents.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
            }
        }
    }
    let ttl = st.config.lease_ttl.as_millis() as i64;
    let wait = Duration::from_millis(req.wait_ms).min(st.config.max_claim_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut wake = st.dispatch.subscribe();
    loop {
        wake.borrow_and_update();
        // The store gives an agent told to stop polling (through any server)
        // nothing, checked in the claim itself, so even a claim already
        // waiting gets nothing more.
        let claimed = {
            let _t = st.metrics.db_timer("claim");
            st.store.claim(&entity, &req.queues, &req.agent_id, ttl).await?
        };
        if let Some(claimed) = claimed {
            st.metrics.claimed(&claimed.item, liftoff_store::now_ms());
            st.changes.item(&entity, &claimed.item.id, Some(&claimed.item.queue));
            let fence = claimed.item.fence;
            let run_api_key = st.run_keys.mint(&entity, &claimed.item.id, fence);
            let mut item = claimed.item;
            // only the claiming agent sees the git credential, opened
            let what = format!("the git remote of run-queue item {}", item.id);
            item.spec.source = crate::secrets_at_rest::open_source(st.secrets_keys.as_deref(), &what, item.spec.source)
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot open a claimed run's git credential");
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "secrets_key", e.to_string())
                })?;
            let claim = Claim {
                item,
                fence,
                lease_ttl_ms: ttl,
                log_seq_start: claimed.log_seq_start,
                run_api_key: Some(run_api_key),
            };
            return Ok(Json(claim).into_response());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            st.metrics.claims_empty();
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Re-check at least every `claim_recheck` (1 s): with PostgreSQL,
        // another server may have taken the enqueue and its wake-up never
        // reaches us.
        let nap = (deadline - now).min(st.config.claim_recheck);
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = st.dispatch.closed() => {
                // The server is stopping: answer "nothing" now; the agent
                // polls again, on this server once it is back or on another.
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
        }
    }
}
