//! What the API's event streams (`routes/events.rs`, JSON) and the web UI's
//! live pages (`ui/live.rs`, HTML fragments) share: reading a run's or a
//! queue's updates from a position, waking on this server's changes and
//! looking anyway every `stream_recheck`, the per-server cap, the
//! keep-alive, and the end at the run's end or the server's stop. Each side
//! only turns the updates into its events.

use crate::app::AppState;
use crate::changes::{Change, StreamSlot};
use crate::error::ApiResult;
use crate::routes::logs::read_chunks;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use liftoff_core::api::LogChunk;
use liftoff_core::{ItemState, ItemTransition, RunStreamPosition};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Rows read from the store per look.
const PAGE: i64 = 500;
/// Chunks per look at an archived log, which is fetched whole each time.
const ARCHIVED_PAGE: i64 = 5000;
/// Comment lines that keep idle connections (and proxies) open.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One thing that happened to a run, in commit order.
pub enum RunUpdate {
    Log(LogChunk),
    Transition(ItemTransition),
    /// The run ended and everything before was sent; nothing follows.
    End(ItemState),
}

/// The run's updates after `pos`, each with the position it leaves the
/// stream at (its event id), ending after [`RunUpdate::End`], when the
/// server stops, or when the store fails (the client resumes from its last
/// id and loses nothing). Holds `slot` while open.
pub fn run_updates(
    st: AppState,
    slot: StreamSlot,
    entity: String,
    id: String,
    run_id: String,
    pos: RunStreamPosition,
) -> impl Stream<Item = (RunStreamPosition, RunUpdate)> + Send + 'static {
    let run = RunFeed { wake: st.changes.subscribe(), st, entity, id, run_id, pos, _slot: slot };
    drain(run)
}

/// The queue's numbered state changes after `after` (`queue_seq`), until
/// the server stops. `wake` must be subscribed before `after` was read, so
/// that a change committed since wakes the stream.
pub fn queue_updates(
    st: AppState,
    slot: StreamSlot,
    wake: broadcast::Receiver<Change>,
    entity: String,
    queue: String,
    after: i64,
) -> impl Stream<Item = (i64, ItemTransition)> + Send + 'static {
    let q = QueueFeed { wake, st, entity, queue, after, _slot: slot };
    drain(q)
}

/// What a feed's looks found and was not sent yet, and whether it is over.
struct Found<U> {
    ready: VecDeque<U>,
    ended: bool,
}

/// A reader that, each time it looks, adds what happened since its last
/// look to `found` (waiting until there is something), or ends it.
trait Feed: Send + 'static {
    type Update: Send + 'static;
    fn look(&mut self, found: &mut Found<Self::Update>) -> impl Future<Output = ()> + Send;
}

/// Everything the feed finds, in order, until it ends.
fn drain<F: Feed>(feed: F) -> impl Stream<Item = F::Update> + Send + 'static {
    let found = Found { ready: VecDeque::new(), ended: false };
    stream::unfold((feed, found), |(mut feed, mut found)| async move {
        loop {
            if let Some(update) = found.ready.pop_front() {
                return Some((update, (feed, found)));
            }
            if found.ended {
                return None;
            }
            feed.look(&mut found).await;
        }
    })
}

/// A `text/event-stream` response with keep-alive comments.
pub fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response()
}

/// The `Last-Event-ID` a reconnecting client sent, if any.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    headers.get("last-event-id").map(|v| v.to_str().map_err(|_| "Last-Event-ID is not visible ASCII")).transpose()
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

struct RunFeed {
    st: AppState,
    wake: broadcast::Receiver<Change>,
    entity: String,
    id: String,
    run_id: String,
    pos: RunStreamPosition,
    _slot: StreamSlot,
}

impl Feed for RunFeed {
    type Update = (RunStreamPosition, RunUpdate);

    /// Fills `ready` with what happened since `pos`, waiting until there is
    /// something; sets `ended` once the run ended and all of it was sent.
    async fn look(&mut self, found: &mut Found<Self::Update>) {
        loop {
            match self.read(found).await {
                Ok(_) if !found.ready.is_empty() || found.ended => return,
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    // The client reconnects with its last id and loses nothing.
                    tracing::warn!(item = %self.id, error = e.message, "event stream read failed; ending it");
                    found.ended = true;
                    return;
                }
            }
            let (entity, id, run_id) = (&self.entity, &self.id, &self.run_id);
            if !wait(&self.st, &mut self.wake, |c| c.concerns_item(entity, id, run_id)).await {
                found.ended = true;
                return;
            }
        }
    }
}

impl RunFeed {
    /// One look at the store; `true` when there is more to read at once.
    async fn read(&mut self, found: &mut Found<(RunStreamPosition, RunUpdate)>) -> ApiResult<bool> {
        let Some(item) = self.st.store.get_item(&self.entity, &self.id).await? else {
            found.ended = true;
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
                found.ready.push_back((self.pos, RunUpdate::Log(c)));
            }
            self.pos.transitions = t.seq;
            last_state = Some(t.to);
            found.ready.push_back((self.pos, RunUpdate::Transition(t)));
        }
        for c in chunks {
            self.pos.log = c.seq + 1;
            found.ready.push_back((self.pos, RunUpdate::Log(c)));
        }
        if ended && !more && !held_back {
            let state = last_state.unwrap_or(item.state);
            found.ready.push_back((self.pos, RunUpdate::End(state)));
            found.ended = true;
        }
        Ok(more || held_back)
    }
}

struct QueueFeed {
    st: AppState,
    wake: broadcast::Receiver<Change>,
    entity: String,
    queue: String,
    after: i64,
    _slot: StreamSlot,
}

impl Feed for QueueFeed {
    type Update = (i64, ItemTransition);

    async fn look(&mut self, found: &mut Found<Self::Update>) {
        loop {
            match self.st.store.queue_history(&self.entity, &self.queue, self.after, PAGE).await {
                Ok(changes) => {
                    // numbered by the read itself: every one has its number
                    for t in changes {
                        let Some(n) = t.queue_seq else { continue };
                        self.after = n;
                        found.ready.push_back((n, t));
                    }
                    if !found.ready.is_empty() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "queue event stream read failed; ending it");
                    found.ended = true;
                    return;
                }
            }
            let (entity, queue) = (&self.entity, &self.queue);
            if !wait(&self.st, &mut self.wake, |c| c.concerns_queue(entity, queue)).await {
                found.ended = true;
                return;
            }
        }
    }
}

/// Why a stream is refused (503) when the server serves its limit.
pub fn too_many(st: &AppState) -> String {
    format!(
        "this server already serves {} event streams, its limit; retry later or ask another server",
        st.changes.max_streams()
    )
}
