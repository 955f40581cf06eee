//! The Agents page: each agent's status, last contact, queues, running
//! items, host and version; and telling one to stop polling.

use super::page::{Chrome, Form, UiError, render, span};
use super::session::UiSession;
use crate::app::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use liftoff_core::ItemState;

struct AgentRow {
    id: String,
    host: String,
    version: Option<String>,
    status: &'static str,
    stop_polling: bool,
    last_contact: String,
    queues: String,
    max_jobs: i64,
    running: Vec<String>,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<AgentRow>,
    may_manage: bool,
}

/// Held items looked at to find what each agent runs.
const HELD_SCAN: i64 = 1000;

pub async fn index(State(st): State<AppState>, s: UiSession) -> Result<Response, UiError> {
    let now = liftoff_store::now_ms();
    let items = st.store.list_items(&s.entity, None, None, HELD_SCAN).await?;
    let held: Vec<_> = items
        .into_iter()
        .filter(|i| matches!(i.state, ItemState::Claimed | ItemState::Running | ItemState::Stopping))
        .collect();
    let agents = st
        .store
        .list_agents(&s.entity)
        .await?
        .into_iter()
        .map(|a| AgentRow {
            running: held.iter().filter(|i| i.agent_id.as_deref() == Some(&a.id)).map(|i| i.run_id.clone()).collect(),
            status: match a.status {
                liftoff_core::api::AgentStatus::Polling => "polling",
                liftoff_core::api::AgentStatus::Running => "running",
                liftoff_core::api::AgentStatus::Stopped => "stopped",
            },
            last_contact: format!("{} ago", span(now - a.heartbeat_at_ms)),
            queues: a.queues.join(", "),
            host: a.hostname,
            version: a.version,
            stop_polling: a.stop_polling,
            max_jobs: a.max_jobs,
            id: a.id,
        })
        .collect();
    render(AgentsPage { chrome: s.chrome("agents"), agents, may_manage: s.may_manage() })
}

/// `POST /agents/{id}/stop-polling` (admins only, as in the API).
pub async fn stop_polling(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    s.check_csrf(Form::parse(&body).get("csrf"))?;
    if !s.may_manage() {
        return Err(UiError::Forbidden("only an admin may tell agents to stop polling".into()));
    }
    st.store.set_agent_stop_polling(&s.entity, &id).await?;
    st.dispatch.notify();
    Ok(Redirect::to("/agents").into_response())
}
