use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::bytes_rejection;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use liftoff_archive::{ArchiveLimits, sha256_digest, verify};
use liftoff_core::api::BlobRef;
use liftoff_core::job::is_sha256_digest;

/// `PUT /blobs/{digest}`: stores a code archive after checking that its bytes
/// hash to `digest` and that every entry is safe. Refused archives leave no trace.
#[utoipa::path(put, path = "/entities/{entity}/blobs/{digest}", operation_id = "uploadBlob", tag = "blobs",
    summary = "Upload a code archive (gzipped tar); it must hash to `digest` and pass the safety checks",
    params(crate::openapi::BlobPath),
    request_body(content((Vec<u8> = "application/gzip"), (Vec<u8> = "application/octet-stream")), description = "the archive, a gzipped tar (any content type is read as bytes)"),
    responses((status = 201, description = "stored", body = liftoff_core::api::BlobRef, links(
        ("download" = (operation_id = "downloadBlob", parameters(("entity" = "$request.path.entity"), ("digest" = "$response.body#/digest"))))
    )), (status = 200, description = "already stored", body = liftoff_core::api::BlobRef), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 422, description = "the body does not hash to `digest`, or is not a safe gzipped tar (`field` says which)", body = liftoff_core::api::ErrorBody)))]
pub async fn upload(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, digest)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<BlobRef>)> {
    caller.may(&entity, Action::Launch)?;
    let body = body.map_err(bytes_rejection)?;
    if !is_sha256_digest(&digest) {
        return Err(ApiError::bad_request("digest", format!("'{digest}' is not a sha256:<64 hex> digest")));
    }
    let actual = sha256_digest(&body);
    if actual != digest {
        return Err(ApiError::unprocessable("digest", format!("body hashes to {actual}, not {digest}")));
    }
    let checked = body.clone();
    tokio::task::spawn_blocking(move || verify(&checked, ArchiveLimits::default()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::unprocessable("archive", e.to_string()))?;
    let size = body.len() as u64;
    // The blob first: a recorded digest must always be downloadable.
    st.blobs.put(&digest, body).await?;
    let created = st.store.add_blob(&entity, &digest, size, liftoff_store::now_ms()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(BlobRef { digest, size })))
}

#[utoipa::path(get, path = "/entities/{entity}/blobs/{digest}", operation_id = "downloadBlob", tag = "blobs",
    summary = "Download a code archive",
    params(crate::openapi::BlobPath),
    responses((status = 200, description = "the archive", body = Vec<u8>, content_type = "application/gzip"), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn download(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, digest)): Path<(String, String)>,
) -> ApiResult<Bytes> {
    caller.may(&entity, Action::Fetch)?;
    let missing = || ApiError::not_found("digest", format!("blob '{digest}' not found"));
    if !st.store.has_blob(&entity, &digest).await? {
        return Err(missing());
    }
    st.blobs.get(&digest).await?.ok_or_else(missing)
}
