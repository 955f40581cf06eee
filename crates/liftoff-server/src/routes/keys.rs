//! API keys of an entity: create one with a role, list them, revoke one.
//! Only admin keys manage keys; secrets are shown once, at creation.

use crate::app::AppState;
use crate::auth::{Action, Caller, mint_key};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use liftoff_core::api::{ApiKeyView, CreateApiKey, CreatedApiKey};
use liftoff_store::{ApiKeyRecord, KeyRole};

fn view(rec: &ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: rec.id.clone(),
        role: rec.role.as_str().to_string(),
        created_at_ms: rec.created_at_ms,
        name: rec.name.clone(),
    }
}

/// `POST /keys`: a new key with `role` (`admin`, `member` or `agent`) and
/// an optional `name`, which the runs it launches show as their launcher.
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    caller.may(&entity, Action::Manage)?;
    let role = KeyRole::parse_stored(&req.role).ok_or_else(|| {
        ApiError::bad_request("role", format!("unknown key role '{}': use admin, member or agent", req.role))
    })?;
    if let Some(name) = &req.name {
        liftoff_core::api::check_label(name).map_err(|m| ApiError::bad_request("name", format!("key name {m}")))?;
    }
    let (secret, rec) = mint_key(st.store.as_ref(), &entity, role, req.name).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: view(&rec), secret })))
}

/// `GET /keys`: the entity's stored keys, without secrets.
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(entity): Path<String>,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    caller.may(&entity, Action::Manage)?;
    Ok(Json(st.store.list_api_keys(&entity).await?.iter().map(view).collect()))
}

/// `DELETE /keys/{id}`: revokes a key. This server forgets it at once;
/// every other server within its key cache's lifetime (half a second).
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
) -> ApiResult<Json<ApiKeyView>> {
    caller.may(&entity, Action::Manage)?;
    let rec = st.store.revoke_api_key(&entity, &id).await?;
    st.key_cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.hash);
    Ok(Json(view(&rec)))
}
