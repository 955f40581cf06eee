//! Build claims (one build per image content across agents) and the run's
//! build record. See `liftoff_store::sql_store::builds`.

use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use liftoff_core::api::{
    BuildClaimAnswer, BuildClaimRequest, BuildUpdate, FencedBuildRecord, MAX_BUILD_KEY, MAX_IMAGE_REF,
};

/// A build lease lasts as long as an item's.
fn ttl_ms(st: &AppState) -> i64 {
    st.config.lease_ttl.as_millis() as i64
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > MAX_BUILD_KEY || !liftoff_core::rules::IMAGE_REF.is_match(key) {
        return Err(ApiError::bad_request(
            "key",
            format!("a build key is an image reference of 1 to {MAX_BUILD_KEY} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn check_image(field: &str, image: &str) -> Result<(), ApiError> {
    if image.len() > MAX_IMAGE_REF || !liftoff_core::rules::IMAGE_REF.is_match(image) {
        return Err(ApiError::bad_request(
            field,
            format!("an image reference of 1 to {MAX_IMAGE_REF} visible ASCII characters"),
        ));
    }
    Ok(())
}

/// `POST /builds/claim`.
#[utoipa::path(post, path = "/entities/{entity}/builds/claim", operation_id = "claimBuild", tag = "builds",
    summary = "Claim the build of an image (one build per content across agents)",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::BuildClaimRequest,
    responses((status = 200, description = "won (build it), done (use the image) or held (wait)", body = liftoff_core::api::BuildClaimAnswer), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody)))]
pub async fn claim(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<BuildClaimRequest>,
) -> ApiResult<Json<BuildClaimAnswer>> {
    caller.may(&entity, Action::Work)?;
    check_key(&req.key)?;
    if req.agent_id.is_empty() || req.agent_id.chars().count() > 128 {
        return Err(ApiError::bad_request("agent_id", "an agent id of 1 to 128 bytes"));
    }
    Ok(Json(st.store.claim_build(&entity, &req.key, &req.agent_id, ttl_ms(&st), req.gone).await?))
}

/// `POST /builds/renew`: the holder's heartbeat; 409 once it lost the build.
#[utoipa::path(post, path = "/entities/{entity}/builds/renew", operation_id = "renewBuild", tag = "builds",
    summary = "The builder's heartbeat; 409 once it lost the build",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::BuildUpdate,
    responses((status = 204, description = "renewed"), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
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
#[utoipa::path(post, path = "/entities/{entity}/builds/finish", operation_id = "finishBuild", tag = "builds",
    summary = "End a build: with `image` it is done and waiters use it; without, it failed",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::BuildUpdate,
    responses((status = 204, description = "recorded"), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
pub async fn finish(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<BuildUpdate>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    check_key(&req.key)?;
    if let Some(image) = &req.image {
        check_image("image", image)?;
    }
    let finish = Some(req.image.as_deref());
    super::leases::observe(&st, st.store.update_build(&entity, &req.key, req.fence, ttl_ms(&st), finish).await)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /items/{id}/build`: the holder records the run's image.
#[utoipa::path(post, path = "/entities/{entity}/items/{id}/build", operation_id = "recordBuild", tag = "builds",
    summary = "The holder records the run's image and how it got it",
    params(crate::openapi::ItemPath), request_body = liftoff_core::api::FencedBuildRecord,
    responses((status = 204, description = "recorded"), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
pub async fn record(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<FencedBuildRecord>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    let b = &req.build;
    check_image("build.image", &b.image)?;
    if b.builder.chars().count() > 32 || !b.seconds.is_finite() || b.seconds < 0.0 {
        return Err(ApiError::bad_request(
            "build",
            "a builder name of at most 32 characters and a time of 0 s or more",
        ));
    }
    super::leases::observe(&st, st.store.set_build_record(&entity, &id, req.fence, b).await)?;
    st.metrics.build_recorded(b.how, b.seconds);
    Ok(StatusCode::NO_CONTENT)
}
