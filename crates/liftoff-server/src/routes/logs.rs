use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, bounded};
use crate::log_archive::read_archived;
use crate::routes::items::readable_item;
use crate::routes::leases::observe;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use liftoff_core::api::{AppendLog, ItemView, LogChunk, LogPage};
use serde::Deserialize;

/// Largest log chunk accepted, in bytes.
pub const MAX_CHUNK: usize = liftoff_core::api::MAX_LOG_CHUNK_CHARS;

#[utoipa::path(post, path = "/entities/{entity}/items/{id}/logs", operation_id = "appendLog", tag = "logs",
    summary = "The holder appends a log chunk (`seq` must be the next; a repeat is ignored)",
    params(crate::openapi::ItemPath), request_body = liftoff_core::api::AppendLog,
    responses((status = 204, description = "stored, or already stored"), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 413, description = "body larger than the server accepts", body = liftoff_core::api::ErrorBody), (status = 415, description = "body is not application/json", body = liftoff_core::api::ErrorBody), (status = 409, description = "conflict", body = liftoff_core::api::ErrorBody)))]
pub async fn append(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<AppendLog>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    check_chunk("", req.seq, &req.data)?;
    observe(&st, st.store.append_log(&entity, &id, req.fence, req.seq, req.stream, &req.data).await)?;
    st.changes.item(&entity, &id, None);
    st.metrics.log_chunk();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// The first chunk wanted (default 0: from the start).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// Refuses a chunk too large or with a negative `seq`; fields are named
/// with `prefix` (`log.` for the chunk an event carries).
pub fn check_chunk(prefix: &str, seq: i64, data: &str) -> ApiResult<()> {
    let chars = data.chars().count();
    if chars > MAX_CHUNK {
        let message = format!("log chunk is {chars} characters; the limit is {MAX_CHUNK}");
        return Err(ApiError::bad_request(format!("{prefix}data"), message));
    }
    if seq < 0 {
        return Err(ApiError::bad_request(format!("{prefix}seq"), "seq must be >= 0"));
    }
    Ok(())
}

/// `GET /items/{id}/logs?after=N`: chunks from sequence number N on.
#[utoipa::path(get, path = "/entities/{entity}/items/{id}/logs", operation_id = "readLogs", tag = "logs",
    summary = "Read a run's log from chunk `after` on",
    params(crate::openapi::ItemPath, ReadQuery),
    responses((status = 200, description = "a page of chunks", body = liftoff_core::api::LogPage), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn read(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<LogPage>> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    let after = bounded("after", q.after, 0, 0, i64::MAX)?;
    let limit = bounded("limit", q.limit, 1000, 1, 5000)?;
    let chunks = read_chunks(&st, &item, after, limit).await?;
    let next_seq = chunks.last().map_or(after, |c| c.seq + 1);
    let complete = item.state.is_terminal() && (chunks.len() as i64) < limit;
    Ok(Json(LogPage { chunks, next_seq, complete }))
}

/// Chunks `seq >= after` of `item`'s log (at most `limit`), from the
/// database or, once archived, from the blob store.
pub async fn read_chunks(st: &AppState, item: &ItemView, after: i64, limit: i64) -> ApiResult<Vec<LogChunk>> {
    let entity = &item.entity;
    let mut chunks = if item.log_archived {
        read_archived(st, entity, &item.id, after, limit).await?
    } else {
        st.store.read_log(entity, &item.id, after, limit).await?
    };
    if !item.log_archived && item.state.is_terminal() && (chunks.len() as i64) < limit {
        // The archiver may have moved the rows between our two reads.
        let now = st.store.get_item(entity, &item.id).await?;
        if now.is_some_and(|i| i.log_archived) {
            chunks = read_archived(st, entity, &item.id, after, limit).await?;
        }
    }
    Ok(chunks)
}
