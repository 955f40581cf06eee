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
#[utoipa::path(post, path = "/entities/{entity}/keys", operation_id = "createKey", tag = "keys",
    summary = "Create an API key (with an optional name, which its runs show as their launcher); its secret is shown only in this answer",
    params(crate::openapi::EntityPath), request_body = liftoff_core::api::CreateApiKey,
    responses((status = 201, description = "the key and its secret", body = liftoff_core::api::CreatedApiKey, links(
        ("revoke" = (operation_id = "revokeKey", parameters(("entity" = "$request.path.entity"), ("id" = "$response.body#/key/id"))))
    )), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 422, description = "a name of only spaces", body = liftoff_core::api::ErrorBody)))]
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
        liftoff_core::api::check_label(name).map_err(|m| {
            // only spaces is the one part of the rule the document cannot state
            if liftoff_core::rules::LABEL.is_match(name) && name.chars().count() <= liftoff_core::api::MAX_LABEL_CHARS {
                ApiError::unprocessable("name", format!("key name {m}"))
            } else {
                ApiError::bad_request("name", format!("key name {m}"))
            }
        })?;
    }
    let (secret, rec) = mint_key(st.store.as_ref(), &entity, role, req.name).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: view(&rec), secret })))
}

/// `GET /keys`: the entity's stored keys, without secrets.
#[utoipa::path(get, path = "/entities/{entity}/keys", operation_id = "listKeys", tag = "keys", summary = "List the entity's keys, without secrets",
    params(crate::openapi::EntityPath),
    responses((status = 200, description = "the keys", body = Vec<liftoff_core::api::ApiKeyView>), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
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
#[utoipa::path(delete, path = "/entities/{entity}/keys/{id}", operation_id = "revokeKey", tag = "keys",
    summary = "Revoke a key (not the entity's last admin key, nor the key making the request)",
    params(crate::openapi::IdPath),
    responses((status = 200, description = "the revoked key", body = liftoff_core::api::ApiKeyView), (status = 400, description = "the entity's last admin key", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
) -> ApiResult<Json<ApiKeyView>> {
    caller.may(&entity, Action::Manage)?;
    // An admin cannot lock itself out (nor can a client that walks the key
    // list, as API testers do): a key is revoked with another one.
    if caller.launcher.as_ref().is_some_and(|l| l.key_id == id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "self_revocation",
            "a key cannot revoke itself; revoke it with another admin key",
        )
        .field("id"));
    }
    let rec = st.store.revoke_api_key(&entity, &id).await?;
    st.key_cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.hash);
    Ok(Json(view(&rec)))
}
