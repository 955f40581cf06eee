//! The live parts of the run and queue pages: feeds of HTML fragments, read
//! through [`crate::streams`] exactly as the API's streams are (same ids,
//! resumable, same cap, same end), under the session cookie. htmx's SSE
//! extension swaps them in (`run.html`, `queue.html`); the page's script
//! carries them over a WebSocket (see [`super::live_socket`]). No page polls.

use super::agent_names::{AgentLabel, AgentNames};
use super::live_socket::{LiveEvent, Upgrade, respond, resume_id};
use super::page::UiError;
use super::runs::{LogLines, log_lines, own_item, timeline_entry};
use super::session::UiSession;
use crate::app::AppState;
use crate::changes::StreamSlot;
use crate::streams::{self, RunUpdate};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use liftoff_core::RunStreamPosition;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Deserialize)]
pub struct RunLiveQuery {
    /// Where the page's own render stopped (`<transitions>.<log>`); a
    /// reconnect's `Last-Event-ID` (or `last_event_id`) wins over it.
    from: Option<String>,
    /// The last event a reconnecting WebSocket received.
    last_event_id: Option<String>,
}

#[derive(Template)]
#[template(path = "run_transition.html")]
struct TransitionFragment {
    e: super::runs::Event,
    state: &'static str,
    /// The agent now holding the run (the page's "Agent" fact follows it).
    agent: Option<AgentLabel>,
}

/// `GET /runs/{id}/live?from=T.L`: the run's stream as fragments: `log`
/// (its lines, rendered as the page renders them, appended to the log),
/// `transition` (a timeline entry and the state, swapped out of band) and
/// `end` (the page then reloads its final state).
pub async fn run(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
    Query(q): Query<RunLiveQuery>,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Result<Response, UiError> {
    let item = own_item(&st, &s, &id).await?;
    let from = resume_id(&headers, q.last_event_id.as_deref())?;
    let pos = match from.or(q.from.as_deref()) {
        Some(p) => p.parse::<RunStreamPosition>().map_err(UiError::BadRequest)?,
        None => RunStreamPosition::default(),
    };
    let slot = open_stream(&st)?;
    let names = Arc::new(Mutex::new(AgentNames::lazy(&s.entity)));
    let reader = st.clone();
    let updates = streams::run_updates(st, slot, s.entity, item.id, item.run_id, pos);
    let events = updates.then(move |(pos, update)| {
        let (st, names) = (reader.clone(), names.clone());
        async move {
            let (kind, html) = match update {
                RunUpdate::Log(c) => ("log", fragment(LogLines { lines: log_lines(&[c]) })),
                RunUpdate::Transition(t) => {
                    let mut names = names.lock().await;
                    if let Some(a) = &t.agent_id {
                        names.label(&st, a).await;
                    }
                    let agent = t.agent_id.as_deref().filter(|_| t.to.is_leased()).map(|a| names.known(a));
                    let e = timeline_entry(&t, &names);
                    ("transition", fragment(TransitionFragment { e, state: t.to.as_str(), agent }))
                }
                // a browser drops an event without data
                RunUpdate::End(state) => ("end", state.as_str().to_string()),
            };
            LiveEvent { kind, id: pos.to_string(), data: html }
        }
    });
    respond(upgrade, &headers, events)
}

#[derive(Deserialize)]
pub struct QueueLiveQuery {
    /// The queue's change number the page was rendered at.
    after: Option<i64>,
    /// `new`: the page shows the newest items unfiltered, so a launch joins
    /// its table as a new row.
    rows: Option<String>,
    /// The last event a reconnecting WebSocket received.
    last_event_id: Option<String>,
}

/// A change to a row the page shows: its state, its agent once one holds
/// it, and its checkbox gone once it can no longer be stopped.
#[derive(Template)]
#[template(path = "queue_state.html")]
struct StateCells<'a> {
    item_id: &'a str,
    state: &'static str,
    agent: Option<AgentLabel>,
    stoppable: bool,
}

/// A launched item, as a row for the top of the table.
#[derive(Template)]
#[template(path = "queue_new_row.html")]
struct NewRow {
    i: super::queues::ItemRow,
}

/// `GET /queues/{queue}/live?after=N[&rows=new]`: each state change of the
/// queue's items after change `N` (or `Last-Event-ID`) as the cells of its
/// row that change, swapped out of band if the page shows the row; with
/// `rows=new`, a launch as a new row at the top of the table.
pub async fn queue(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    Query(q): Query<QueueLiveQuery>,
    headers: HeaderMap,
    upgrade: Upgrade,
) -> Result<Response, UiError> {
    if st.store.get_queue(&s.entity, &name).await?.is_none() {
        return Err(UiError::NotFound(format!("queue '{name}' not found")));
    }
    // before the head is read: a change committed after it wakes this stream
    let wake = st.changes.subscribe();
    let from = resume_id(&headers, q.last_event_id.as_deref())?;
    let after = match from {
        Some(id) => liftoff_core::queue_event_number(id).map_err(UiError::BadRequest)?,
        None => match q.after {
            Some(n) => n.max(0),
            None => st.store.queue_history_head(&s.entity, &name).await?,
        },
    };
    let new_rows = q.rows.as_deref() == Some("new");
    let slot = open_stream(&st)?;
    let reader = st.clone();
    let entity = s.entity.clone();
    let names = Arc::new(Mutex::new(AgentNames::lazy(&s.entity)));
    let updates = streams::queue_updates(st, slot, wake, s.entity, name, after);
    let events = updates.then(move |(n, t)| {
        let (st, entity, names) = (reader.clone(), entity.clone(), names.clone());
        async move {
            let mut names = names.lock().await;
            if let Some(a) = &t.agent_id {
                names.label(&st, a).await;
            }
            let launched = new_rows && t.event == liftoff_core::history::LAUNCH_EVENT;
            // the row as it is now (a later change to it follows as cells)
            let item = match launched {
                true => st.store.get_item(&entity, &t.item_id).await.unwrap_or_else(|e| {
                    // the page then gets the row's cells, which find no row: it shows the item on reload
                    tracing::warn!(item = %t.item_id, error = %e, "a launched row could not be read for a live queue page");
                    None
                }),
                false => None,
            };
            let html = match item {
                Some(item) => {
                    fragment(NewRow { i: super::queues::ItemRow::new(&item, liftoff_store::now_ms(), &names) })
                }
                None => fragment(StateCells {
                    item_id: &t.item_id,
                    state: t.to.as_str(),
                    agent: t.agent_id.as_deref().filter(|_| t.to.is_leased()).map(|a| names.known(a)),
                    stoppable: !t.to.is_terminal() && t.to != liftoff_core::ItemState::Stopping,
                }),
            };
            LiveEvent { kind: "transition", id: n.to_string(), data: html }
        }
    });
    respond(upgrade, &headers, events)
}

fn open_stream(st: &AppState) -> Result<StreamSlot, UiError> {
    st.changes.open_stream().ok_or_else(|| UiError::Unavailable(streams::too_many(st)))
}

fn fragment(t: impl Template) -> String {
    // rendering into a String fails only on a template's own error
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "live fragment did not render");
        String::new()
    })
}
