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
//! Streams wake on this server's changes ([`crate::changes`]) and look at
//! the store every second anyway (another server on the same PostgreSQL);
//! at most `max_event_streams` are open per server (503 beyond), each sends
//! a keep-alive comment every 15 s, and all end when the server stops.

use crate::app::AppState;
use crate::auth::{Action, Caller};
use crate::changes::{Change, StreamSlot};
use crate::error::{ApiError, ApiResult};
use crate::routes::items::readable_item;
use crate::routes::logs::read_chunks;
use axum::Json;
use crate::extract::bounded;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use liftoff_core::{ItemState, ItemTransition, RunStreamPosition};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Rows read from the store per look.
const PAGE: i64 = 500;
/// Chunks per look at an archived log, which is fetched whole each time.
const ARCHIVED_PAGE: i64 = 5000;
/// Comment lines that keep idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    description = "Events `transition` (an ItemTransition), `log` (a LogChunk) and `end` (a RunStreamEnd) with ids `<transitions>.<log>`; send the last id seen as `Last-Event-ID` to resume exactly there. Comment lines keep the connection open every 15 s; the stream ends with the run.",
    params(crate::openapi::ItemPath, ("Last-Event-ID" = Option<String>, Header, description = "`<transitions>.<log>` of the last event received", pattern = "^[0-9]+\\.[0-9]+$")),
    responses((status = 200, description = "the event stream", content_type = "text/event-stream", body = String), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 503, description = "too many event streams are open on this server", body = liftoff_core::api::ErrorBody)))]
pub async fn run_stream(
    State(st): State<AppState>,
    caller: Caller,
    Path((entity, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let item = readable_item(&st, &caller, &entity, &id, Action::Read).await?;
    let pos = match last_event_id(&headers)? {
        Some(id) if liftoff_core::rules::matches(liftoff_core::rules::RUN_EVENT_ID, &id) => {
            id.parse::<RunStreamPosition>().map_err(|m| ApiError::bad_request("Last-Event-ID", m))?
        }
        Some(id) => {
            return Err(ApiError::bad_request(
                "Last-Event-ID",
                format!("event id '{id}' is not <transitions>.<log> (two numbers of 1 to 18 digits)"),
            ));
        }
        None => RunStreamPosition::default(),
    };
    let slot = open_stream(&st)?;
    let run = RunStream {
        wake: st.changes.subscribe(),
        st,
        entity,
        id: item.id,
        run_id: item.run_id,
        pos,
        ready: VecDeque::new(),
        ended: false,
        _slot: slot,
    };
    Ok(sse(stream::unfold(run, |mut run| async move {
        loop {
            if let Some(event) = run.ready.pop_front() {
                return Some((Ok(event), run));
            }
            if run.ended {
                return None;
            }
            run.look().await;
        }
    })))
}

/// `GET /queues/{queue}/stream`: state changes of the queue's items, live.
/// Without `Last-Event-ID` it starts with the next change.
#[utoipa::path(get, path = "/entities/{entity}/queues/{queue}/stream", operation_id = "queueStream", tag = "events",
    summary = "State changes of a queue's items, live (server-sent events)",
    description = "Events `transition` (an ItemTransition) with the change's queue number as id; without `Last-Event-ID` the stream starts with the next change.",
    params(crate::openapi::QueuePath, ("Last-Event-ID" = Option<String>, Header, description = "the queue number of the last event received", pattern = "^[0-9]+$")),
    responses((status = 200, description = "the event stream", content_type = "text/event-stream", body = String), (status = 400, description = "invalid request: the field at fault is named", body = liftoff_core::api::ErrorBody), (status = 401, description = "no key, or an unknown or revoked one", body = liftoff_core::api::ErrorBody), (status = 403, description = "the key's role may not do this", body = liftoff_core::api::ErrorBody), (status = 404, description = "not found (another entity's objects answer 404 too)", body = liftoff_core::api::ErrorBody), (status = 503, description = "too many event streams are open on this server", body = liftoff_core::api::ErrorBody)))]
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
        Some(id) => Some(&id).filter(|id| liftoff_core::rules::matches(liftoff_core::rules::QUEUE_EVENT_ID, id)).and_then(|id| id.parse::<i64>().ok()).ok_or_else(|| {
            ApiError::bad_request("Last-Event-ID", format!("event id '{id}' is not a queue event number"))
        })?,
        None => st.store.queue_history_head(&entity, &queue).await?,
    };
    let slot = open_stream(&st)?;
    let q = QueueStream { wake, st, entity, queue, after, ready: VecDeque::new(), ended: false, _slot: slot };
    Ok(sse(stream::unfold(q, |mut q| async move {
        loop {
            if let Some(event) = q.ready.pop_front() {
                return Some((Ok(event), q));
            }
            if q.ended {
                return None;
            }
            q.look().await;
        }
    })))
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response()
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("Last-Event-ID", "Last-Event-ID is not visible ASCII"))
        })
        .transpose()
}

fn open_stream(st: &AppState) -> ApiResult<StreamSlot> {
    st.changes.open_stream().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "this server already serves {} event streams, its limit; retry later or ask another server",
                st.changes.max_streams()
            ),
        )
    })
}

/// Waits until something may have changed: a matching wake-up, the
/// periodic re-check, or the server stopping (`false`).
async fn wait(st: &AppState, wake: &mut broadcast::Receiver<Change>, concerns: impl Fn(&Change) -> bool) -> bool {
    let recheck = tokio::time::sleep(st.config.stream_recheck);
    tokio::pin!(recheck);
    loop {
        tokio::select! {
            got = wake.recv() => match got {
                Ok(change) if concerns(&change) => return true,
                Ok(_) => {}
                // missed some: look, to be safe
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            },
            _ = &mut recheck => return true,
            _ = st.dispatch.closed() => return false,
        }
    }
}

struct RunStream {
    st: AppState,
    wake: broadcast::Receiver<Change>,
    entity: String,
    id: String,
    run_id: String,
    pos: RunStreamPosition,
    ready: VecDeque<Event>,
    ended: bool,
    _slot: StreamSlot,
}

impl RunStream {
    /// Fills `ready` with what happened since `pos`, waiting until there is
    /// something; sets `ended` once the run ended and all of it was sent.
    async fn look(&mut self) {
        loop {
            match self.read().await {
                Ok(_) if !self.ready.is_empty() || self.ended => return,
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    // The client reconnects with its last id and loses nothing.
                    tracing::warn!(item = %self.id, error = e.message, "event stream read failed; ending it");
                    self.ended = true;
                    return;
                }
            }
            let (entity, id, run_id) = (&self.entity, &self.id, &self.run_id);
            if !wait(&self.st, &mut self.wake, |c| c.concerns_item(entity, id, run_id)).await {
                self.ended = true;
                return;
            }
        }
    }

    /// One look at the store; `true` when there is more to read at once.
    async fn read(&mut self) -> ApiResult<bool> {
        let Some(item) = self.st.store.get_item(&self.entity, &self.id).await? else {
            self.ended = true;
            return Ok(false);
        };
        // Ended before the reads below: they see everything it will ever have.
        let ended = item.state.is_terminal();
        // The log first: a transition committed before a chunk we read is
        // then visible to the second read, so none is sent out of place.
        let page = if item.log_archived { ARCHIVED_PAGE } else { PAGE };
        let chunks = read_chunks(&self.st, &item, self.pos.log, page).await?;
        let log_end = chunks.last().map_or(self.pos.log, |c| c.seq + 1);
        let transitions = self.st.store.item_history(&self.entity, &self.id, self.pos.transitions, PAGE).await?;
        let more = chunks.len() as i64 == page || transitions.len() as i64 == PAGE;
        let mut chunks = chunks.into_iter().peekable();
        let mut held_back = false;
        let mut last_state = None;
        for t in transitions {
            if t.log_seq > log_end {
                // chunks it follows are not read yet
                held_back = true;
                break;
            }
            while let Some(c) = chunks.next_if(|c| c.seq < t.log_seq) {
                self.pos.log = c.seq + 1;
                self.ready.push_back(event("log", self.pos, &c));
            }
            self.pos.transitions = t.seq;
            last_state = Some(t.to);
            self.ready.push_back(event("transition", self.pos, &t));
        }
        for c in chunks {
            self.pos.log = c.seq + 1;
            self.ready.push_back(event("log", self.pos, &c));
        }
        if ended && !more && !held_back {
            let state = last_state.unwrap_or(item.state);
            self.ready.push_back(end_event(self.pos, state));
            self.ended = true;
        }
        Ok(more || held_back)
    }
}

struct QueueStream {
    st: AppState,
    wake: broadcast::Receiver<Change>,
    entity: String,
    queue: String,
    after: i64,
    ready: VecDeque<Event>,
    ended: bool,
    _slot: StreamSlot,
}

impl QueueStream {
    async fn look(&mut self) {
        loop {
            match self.st.store.queue_history(&self.entity, &self.queue, self.after, PAGE).await {
                Ok(changes) => {
                    // numbered by the read itself: every one has its number
                    for t in changes {
                        let Some(n) = t.queue_seq else { continue };
                        self.after = n;
                        self.ready.push_back(json(Event::default().event("transition").id(n.to_string()), &t));
                    }
                    if !self.ready.is_empty() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "queue event stream read failed; ending it");
                    self.ended = true;
                    return;
                }
            }
            let (entity, queue) = (&self.entity, &self.queue);
            if !wait(&self.st, &mut self.wake, |c| c.concerns_queue(entity, queue)).await {
                self.ended = true;
                return;
            }
        }
    }
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
