//! Build claims (one build per image content across agents) and the run's
//! build record. See `liftoff_store::sql_store::builds`.

use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use liftoff_core::api::{BuildClaimAnswer, BuildClaimRequest, BuildUpdate, FencedBuildRecord, MAX_BUILD_KEY};

/// A build lease lasts as long as an item's.
fn ttl_ms(st: &AppState) -> i64 {
    st.config.lease_ttl.as_millis() as i64
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_BUILD_KEY || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad_request(
            "key",
            format!("a build key is an image reference of 1 to {MAX_BUILD_KEY} bytes without spaces"),
        ));
    }
    Ok(())
}

/// `POST /builds/claim`.
pub async fn claim(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<BuildClaimRequest>,
) -> ApiResult<Json<BuildClaimAnswer>> {
    caller.may(&entity, Action::Work)?;
    check_key(&req.key)?;
    if req.agent_id.is_empty() || req.agent_id.len() > 128 {
        return Err(ApiError::bad_request("agent_id", "an agent id of 1 to 128 bytes"));
    }
    Ok(Json(st.store.claim_build(&entity, &req.key, &req.agent_id, ttl_ms(&st)).await?))
}

/// `POST /builds/renew`: the holder's heartbeat; 409 once it lost the build.
pub async fn renew(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<BuildUpdate>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    check_key(&req.key)?;
    super::leases::observe(&st, st.store.update_build(&entity, &req.key, req.fence, ttl_ms(&st), None).await)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /builds/finish`: with `image`, the build is done and every waiter
/// uses it; without, it failed and the next agent to ask builds it.
pub async fn finish(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<BuildUpdate>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    check_key(&req.key)?;
    if let Some(image) = &req.image {
        check_key(image).map_err(|_| ApiError::bad_request("image", "an image reference without spaces"))?;
    }
    let finish = Some(req.image.as_deref());
    super::leases::observe(&st, st.store.update_build(&entity, &req.key, req.fence, ttl_ms(&st), finish).await)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /items/{id}/build`: the holder records the run's image.
pub async fn record(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<FencedBuildRecord>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    let b = &req.build;
    if b.image.is_empty() || b.image.len() > MAX_BUILD_KEY + 80 {
        return Err(ApiError::bad_request("build.image", "an image reference of at most 592 bytes"));
    }
    if b.builder.len() > 32 || !b.seconds.is_finite() || b.seconds < 0.0 {
        return Err(ApiError::bad_request("build", "a builder name of at most 32 bytes and a time of 0 s or more"));
    }
    super::leases::observe(&st, st.store.set_build_record(&entity, &id, req.fence, b).await)?;
    st.metrics.build_recorded(b.how, b.seconds);
    Ok(StatusCode::NO_CONTENT)
}
