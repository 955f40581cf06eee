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
use crate::extract::bounded;
use crate::routes::items::readable_item;
use crate::streams::{self, RunUpdate};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::Event;
use futures::StreamExt;
use liftoff_core::{ItemState, ItemTransition, RunStreamEnd, RunStreamPosition, queue_event_number};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The first transition wanted (default 0: from the start).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (default 1000).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// `GET /items/{id}/events`: the item's state changes, oldest first.
#[utoipa::path(get, path = "/entities/{entity}/items/{id}/events", operation_id = "itemHistory", tag = "events",
    summary = "An item's state changes, oldest first, each with its time and cause",
    params(crate::openapi::ItemPath, HistoryQuery),
    responses((status = 200, description = "the transitions", body = Vec<liftoff_core::history::ItemTransition>), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody)))]
pub async fn history(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<Vec<ItemTransition>>> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    let after = bounded("after", q.after, 0, 0, i64::MAX)?;
    let limit = bounded("limit", q.limit, 1000, 1, 5000)?;
    Ok(Json(st.store.item_history(&entity, &item.id, after, limit).await?))
}

/// `GET /items/{id}/stream`: the run's state changes and log, live.
#[utoipa::path(get, path = "/entities/{entity}/items/{id}/stream", operation_id = "runStream", tag = "events",
    summary = "A run's state changes and log lines, live (server-sent events)",
    description = "Events `transition` (an ItemTransition), `log` (a LogChunk) and `end` (a RunStreamEnd), each with an id `<transitions>.<log>` and its data as JSON (the response's `itemSchema`); send the last id seen as `Last-Event-ID` to resume exactly there. Comment lines keep the connection open every 15 s; the stream ends with the run (at once, after `end`, for a run that has ended).",
    params(crate::openapi::ItemPath, ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "`<transitions>.<log>` of the last event received: two numbers of 1 to 18 digits", pattern = "^[0-9]{1,18}\\.[0-9]{1,18}$")),
    responses((status = 200, description = "the event stream", content_type = "text/event-stream", item_schema = crate::openapi::RunStreamEvent), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 503, description = "too many event streams are open on this server", body = liftoff_core::api::ErrorBody)))]
pub async fn run_stream(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    // the parser takes exactly the ids the document's pattern admits
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
#[utoipa::path(get, path = "/entities/{entity}/queues/{queue}/stream", operation_id = "queueStream", tag = "events",
    summary = "State changes of a queue's items, live (server-sent events)",
    description = "Events `transition` (an ItemTransition, as JSON) with the change's queue number as id (the response's `itemSchema`); without `Last-Event-ID` the stream starts with the next change. Comment lines keep the connection open every 15 s; the stream stays open until the client or the server leaves.",
    params(crate::openapi::QueuePath, ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "the queue number of the last event received: 1 to 18 digits", pattern = "^[0-9]{1,18}$")),
    responses((status = 200, description = "the event stream", content_type = "text/event-stream", item_schema = crate::openapi::QueueStreamEvent), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 503, description = "too many event streams are open on this server", body = liftoff_core::api::ErrorBody)))]
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
        Some(id) => queue_event_number(id).map_err(|m| ApiError::bad_request("Last-Event-ID", m))?,
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
    json(Event::default().event("end").id(pos.to_string()), &RunStreamEnd { state })
}

fn json(event: Event, data: &impl serde::Serialize) -> Event {
    // our types always serialise; an empty object beats a panic
    event.data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}
