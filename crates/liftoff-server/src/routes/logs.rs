use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::log_archive::read_archived;
use crate::routes::items::readable_item;
use crate::routes::leases::observe;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use liftoff_core::api::{AppendLog, ItemView, LogChunk, LogPage};
use serde::Deserialize;

/// Largest log chunk accepted, in bytes.
pub const MAX_CHUNK: usize = 256 * 1024;

pub async fn append(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<AppendLog>,
) -> ApiResult<StatusCode> {
    caller.may(&entity, Action::Work)?;
    if req.data.len() > MAX_CHUNK {
        return Err(ApiError::bad_request(
            "data",
            format!("log chunk is {} bytes; the limit is {MAX_CHUNK}", req.data.len()),
        ));
    }
    if req.seq < 0 {
        return Err(ApiError::bad_request("seq", "seq must be >= 0"));
    }
    observe(&st, st.store.append_log(&entity, &id, req.fence, req.seq, req.stream, &req.data).await)?;
    st.changes.item(&entity, &id, None);
    st.metrics.log_chunk();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct ReadQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /items/{id}/logs?after=N`: chunks from sequence number N on.
pub async fn read(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<LogPage>> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
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
