//! The Queues page (every queue at a glance, or the first-run empty state),
//! a queue's page (its items, filtered and keyset-paged), and bulk stop.

use super::page::{Chrome, Form, UiError, render, span, utc};
use super::session::UiSession;
use crate::app::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use liftoff_core::api::{AgentStatus, ItemView};
use liftoff_core::{ItemEvent, ItemState, Queue};
use liftoff_store::ItemFilter;
use serde::Deserialize;

/// Items per queue page.
pub const PAGE_SIZE: i64 = 50;

struct QueueRow {
    name: String,
    resource: &'static str,
    pending: i64,
    running: i64,
    oldest_pending: String,
    agents: Vec<String>,
}

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    chrome: Chrome,
    queues: Vec<QueueRow>,
    base_url: String,
}

pub async fn index(
    State(st): State<AppState>,
    s: UiSession,
    headers: axum::http::HeaderMap,
) -> Result<Response, UiError> {
    let now = liftoff_store::now_ms();
    let stats = st.store.queue_stats().await?;
    let agents = st.store.list_agents(&s.entity).await?;
    let queues = stats
        .into_iter()
        .filter(|q| q.entity == s.entity)
        .map(|q| {
            let count = |states: &[ItemState]| states.iter().map(|st| q.items.get(st).copied().unwrap_or(0)).sum();
            QueueRow {
                pending: count(&[ItemState::Pending]),
                running: count(&[ItemState::Claimed, ItemState::Running, ItemState::Stopping]),
                oldest_pending: q.oldest_pending_created_ms.map(|t| span(now - t)).unwrap_or_default(),
                agents: agents
                    .iter()
                    .filter(|a| a.queues.contains(&q.queue) && a.status != AgentStatus::Stopped && !a.stop_polling)
                    .map(|a| a.hostname.clone())
                    .collect(),
                resource: q.resource.as_str(),
                name: q.queue,
            }
        })
        .collect();
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:7434");
    render(QueuesPage { chrome: s.chrome("queues"), queues, base_url: format!("http://{host}") })
}

/// One item as a row of a table.
pub struct ItemRow {
    pub id: String,
    pub run_id: String,
    pub state: &'static str,
    pub priority: &'static str,
    pub job: String,
    pub queued_for: String,
    pub ran_for: String,
    pub agent: String,
    pub created: String,
    pub stoppable: bool,
}

impl ItemRow {
    pub fn new(i: &ItemView, now: i64) -> Self {
        let queued_until = i.started_at_ms.or(i.ended_at_ms).unwrap_or(now);
        Self {
            id: i.id.clone(),
            run_id: i.run_id.clone(),
            state: i.state.as_str(),
            priority: i.priority.as_str(),
            job: i.spec.job.clone(),
            queued_for: span(queued_until - i.created_at_ms),
            ran_for: i.started_at_ms.map(|s| span(i.ended_at_ms.unwrap_or(now) - s)).unwrap_or_default(),
            agent: i.agent_id.clone().unwrap_or_default(),
            created: utc(i.created_at_ms),
            stoppable: !i.state.is_terminal() && i.state != ItemState::Stopping,
        }
    }
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    state: Option<String>,
    job: Option<String>,
    agent: Option<String>,
    before: Option<i64>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

struct VarRow {
    name: String,
    kind: &'static str,
    bounds: String,
    default: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    queue: Queue,
    resource: &'static str,
    vars: Vec<VarRow>,
    states: Vec<&'static str>,
    state: String,
    job: String,
    agent: String,
    items: Vec<ItemRow>,
    /// The query string of the next page, when there is one.
    next: Option<String>,
    filtered: bool,
    /// The queue's change number the rows are at, where the live stream starts.
    live_after: i64,
}

pub async fn show(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Response, UiError> {
    let queue = st
        .store
        .get_queue(&s.entity, &name)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("queue '{name}' not found")))?;
    let state = non_empty(q.state).filter(|v| ItemState::ALL.iter().any(|s| s.as_str() == v));
    let filter = ItemFilter { state, job: non_empty(q.job), agent: non_empty(q.agent) };
    // before the rows: the live stream goes on from here, so a change made
    // while the page renders is sent (again), never lost
    let live_after = st.store.queue_history_head(&s.entity, &name).await?;
    let page = st.store.queue_page(&s.entity, &name, &filter, q.before, PAGE_SIZE).await?;
    let now = liftoff_store::now_ms();
    let next = page.next_before.map(|b| {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("state", &filter.state), ("job", &filter.job), ("agent", &filter.agent)] {
            if let Some(v) = v {
                qs.append_pair(k, v);
            }
        }
        qs.append_pair("before", &b.to_string());
        qs.finish()
    });
    let vars = queue
        .template_variables
        .iter()
        .map(|v| VarRow {
            name: v.name.clone(),
            kind: super::jobs::kind_name(v.kind),
            bounds: super::jobs::bounds_text(v),
            default: v.default.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        })
        .collect();
    render(QueuePage {
        chrome: s.chrome("queues"),
        resource: queue.resource.as_str(),
        vars,
        states: ItemState::ALL.iter().map(|s| s.as_str()).collect(),
        filtered: filter != ItemFilter::default(),
        state: filter.state.unwrap_or_default(),
        job: filter.job.unwrap_or_default(),
        agent: filter.agent.unwrap_or_default(),
        items: page.items.iter().map(|i| ItemRow::new(i, now)).collect(),
        next,
        live_after,
        queue,
    })
}

/// `POST /queues/{queue}/stop`: stops the selected items of the queue.
/// Items already ended are left alone.
pub async fn bulk_stop(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    s.check_csrf(form.get("csrf"))?;
    let now = liftoff_store::now_ms();
    for id in form.all("item") {
        let Some(item) = st.store.get_item(&s.entity, id).await? else { continue };
        if item.queue != name || item.state.is_terminal() || item.state == ItemState::Stopping {
            continue;
        }
        match st.store.apply_event(&s.entity, &item.id, None, &ItemEvent::RequestStop, now).await {
            Ok(item) => st.metrics.transitioned(&item),
            // it ended meanwhile
            Err(liftoff_store::StoreError::Transition(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let back = form.get("back").filter(|b| b.starts_with("?")).unwrap_or("");
    let mut to = String::from("/queues/");
    to.extend(form_urlencoded::byte_serialize(name.as_bytes()));
    Ok(Redirect::to(&format!("{to}{back}")).into_response())
}
