//! Item histories and the server-sent event streams of runs and queues.
//!
//! A run's stream carries its state changes (`transition`) and log chunks
//! (`log`) in the order they were committed, then `end`. Its event ids are
//! `<transitions>.<log>` ([`RunStreamPosition`]): the last transition sent
//! and the next log chunk, each counted in its own sequence, so a client
//! that reconnects with `Last-Event-ID` gets exactly what it missed. A
//! transition records how many chunks the log had when it happened, which
//! places it among the chunks; the stream reads the log before the
//! transitions, so it never sends a transition ahead of a chunk committed
//! before it.
//!
//! A queue's stream carries the state changes of its items (launches
//! included); its ids are their `queue_seq`, numbers the store hands out
//! to committed changes in increasing order (see `Store::queue_history`),
//! so a client past `n` never misses a change that shows up below `n`.
//!
//! Both are read through [`crate::streams`], which the web UI's live pages
//! share. Streams wake on this server's changes ([`crate::changes`]) and look at
//! the store every second anyway (another server on the same PostgreSQL);
//! at most `max_event_streams` are open per server (503 beyond), each sends
//! a keep-alive comment every 15 s, and all end when the server stops.

use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::changes::StreamSlot;
use crate::error::{ApiError, ApiResult};
use crate::routes::items::readable_item;
use crate::streams::{self, RunUpdate};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::Event;
use futures::StreamExt;
use liftoff_core::{ItemState, ItemTransition, RunStreamPosition};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct HistoryQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /items/{id}/events`: the item's state changes, oldest first.
pub async fn history(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Vec<ItemTransition>>> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
    Ok(Json(st.store.item_history(&entity, &item.id, q.after.unwrap_or(0).max(0), limit).await?))
}

/// `GET /items/{id}/stream`: the run's state changes and log, live.
pub async fn run_stream(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    let pos = match last_event_id(&headers)? {
        Some(id) => id.parse::<RunStreamPosition>().map_err(|m| ApiError::bad_request("Last-Event-ID", m))?,
        None => RunStreamPosition::default(),
    };
    let slot = open_stream(&st)?;
    let updates = streams::run_updates(st, slot, entity, item.id, item.run_id, pos);
    Ok(streams::sse(updates.map(|(pos, update)| {
        Ok(match update {
            RunUpdate::Log(c) => event("log", pos, &c),
            RunUpdate::Transition(t) => event("transition", pos, &t),
            RunUpdate::End(state) => end_event(pos, state),
        })
    })))
}

/// `GET /queues/{queue}/stream`: state changes of the queue's items, live.
/// Without `Last-Event-ID` it starts with the next change.
pub async fn queue_stream(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, queue)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.may(&entity, Action::Read)?;
    if st.store.get_queue(&entity, &queue).await?.is_none() {
        return Err(ApiError::not_found("queue", format!("queue '{queue}' not found")));
    }
    // before the head is read: a change committed after it wakes this stream
    let wake = st.changes.subscribe();
    let after = match last_event_id(&headers)? {
        Some(id) => streams::queue_event_number(id).map_err(|m| ApiError::bad_request("Last-Event-ID", m))?,
        None => st.store.queue_history_head(&entity, &queue).await?,
    };
    let slot = open_stream(&st)?;
    let updates = streams::queue_updates(st, slot, wake, entity, queue, after);
    Ok(streams::sse(updates.map(|(n, t)| Ok(json(Event::default().event("transition").id(n.to_string()), &t)))))
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    streams::last_event_id(headers).map_err(|m| ApiError::bad_request("Last-Event-ID", m))
}

fn open_stream(st: &AppState) -> ApiResult<StreamSlot> {
    st.changes
        .open_stream()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_streams", streams::too_many(st)))
}

fn event(kind: &'static str, pos: RunStreamPosition, data: &impl serde::Serialize) -> Event {
    json(Event::default().event(kind).id(pos.to_string()), data)
}

fn end_event(pos: RunStreamPosition, state: ItemState) -> Event {
    json(Event::default().event("end").id(pos.to_string()), &serde_json::json!({ "state": state }))
}

fn json(event: Event, data: &impl serde::Serialize) -> Event {
    // our types always serialise; an empty object beats a panic
    event.data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}
