//! The Queues page (every queue at a glance, or the first-run empty state),
//! a queue's page (its items, filtered and keyset-paged; its saved filters),
//! and bulk stop.

use super::agent_names::{AgentLabel, AgentNames};
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
    agents: Vec<AgentLabel>,
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
                    .map(|a| AgentLabel { id: a.id.clone(), host: a.hostname.clone() })
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
    pub agent: Option<AgentLabel>,
    pub created: String,
    pub stoppable: bool,
    pub launched_by: Option<String>,
}

impl ItemRow {
    pub fn new(i: &ItemView, now: i64, agents: &AgentNames) -> Self {
        let queued_until = i.started_at_ms.or(i.ended_at_ms).unwrap_or(now);
        Self {
            id: i.id.clone(),
            run_id: i.run_id.clone(),
            state: i.state.as_str(),
            priority: i.priority.as_str(),
            job: i.spec.job.clone(),
            queued_for: span(queued_until - i.created_at_ms),
            ran_for: i.started_at_ms.map(|s| span(i.ended_at_ms.unwrap_or(now) - s)).unwrap_or_default(),
            agent: i.agent_id.as_deref().map(|a| agents.known(a)),
            created: utc(i.created_at_ms),
            stoppable: !i.state.is_terminal() && i.state != ItemState::Stopping,
            launched_by: i.launched_by.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    state: Option<String>,
    job: Option<String>,
    agent: Option<String>,
    launched_by: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The longest job, agent or launcher a filter takes (a saved filter stores it).
const MAX_FILTER_BYTES: usize = 512;

/// The longest `since`/`until`: ten years.
const MAX_AGO_MS: i64 = 3650 * 86_400_000;

/// A span back from now, as the launch-time filters take it: a whole number
/// and a unit, `m` (minutes), `h` (hours) or `d` (days): `30m`, `24h`, `7d`.
/// Relative, so that a saved filter keeps meaning "the last day".
pub fn parse_ago(field: &str, value: &str) -> Result<i64, String> {
    let bad =
        || format!("{field} must be a span back from now like 30m, 24h or 7d (minutes, hours, days), got '{value}'");
    let split = value.len().checked_sub(1).filter(|&i| value.is_char_boundary(i)).ok_or_else(bad)?;
    let (number, unit) = value.split_at(split);
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = number.parse().map_err(|_| bad())?;
    match n.checked_mul(unit_ms) {
        Some(ms) if ms <= MAX_AGO_MS => Ok(ms),
        _ => Err(format!("{field} reaches back at most 3650d, got '{value}'")),
    }
}

/// The filters of a queue page, as its query string has them (empty: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageFilters {
    state: Option<String>,
    job: Option<String>,
    agent: Option<String>,
    launched_by: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl PageFilters {
    /// Checks every value; an error names its field.
    fn parse(
        state: Option<String>,
        job: Option<String>,
        agent: Option<String>,
        launched_by: Option<String>,
        since: Option<String>,
        until: Option<String>,
    ) -> Result<Self, UiError> {
        let f = Self {
            state: non_empty(state),
            job: non_empty(job),
            agent: non_empty(agent),
            launched_by: non_empty(launched_by),
            since: non_empty(since),
            until: non_empty(until),
        };
        let texts = [("job", &f.job), ("agent", &f.agent), ("launched_by", &f.launched_by)];
        if let Some((field, _)) = texts.iter().find(|(_, v)| v.as_ref().is_some_and(|v| v.len() > MAX_FILTER_BYTES)) {
            return Err(UiError::BadRequest(format!("{field} must be at most {MAX_FILTER_BYTES} bytes")));
        }
        if let Some(s) = &f.state
            && !ItemState::ALL.iter().any(|v| v.as_str() == s)
        {
            let states: Vec<_> = ItemState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(UiError::BadRequest(format!("state must be one of {}, got '{s}'", states.join(", "))));
        }
        for (field, v) in [("since", &f.since), ("until", &f.until)] {
            if let Some(v) = v {
                parse_ago(field, v).map_err(UiError::BadRequest)?;
            }
        }
        Ok(f)
    }

    /// The store's filter, the spans taken back from `now`.
    fn item_filter(&self, now: i64) -> ItemFilter {
        let at = |v: &Option<String>| v.as_deref().and_then(|v| parse_ago("", v).ok()).map(|ago| now - ago);
        ItemFilter {
            state: self.state.clone(),
            job: self.job.clone(),
            agent: self.agent.clone(),
            launcher: self.launched_by.clone(),
            since_ms: at(&self.since),
            until_ms: at(&self.until),
        }
    }

    /// The query string of these filters (no `?`), in a fixed order.
    fn query(&self) -> String {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("state", &self.state),
            ("job", &self.job),
            ("agent", &self.agent),
            ("launched_by", &self.launched_by),
            ("since", &self.since),
            ("until", &self.until),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                qs.append_pair(k, v);
            }
        }
        qs.finish()
    }
}

struct VarRow {
    name: String,
    kind: &'static str,
    bounds: String,
    default: String,
}

/// A saved filter as a link.
pub struct SavedRow {
    name: String,
    query: String,
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
    launched_by: String,
    since: String,
    until: String,
    items: Vec<ItemRow>,
    /// The query string of the next page, when there is one.
    next: Option<String>,
    filtered: bool,
    /// The queue's change number the rows are at, where the live stream starts.
    live_after: i64,
    /// New launches join the top of the table live: an unfiltered first page.
    live_rows: bool,
    saved: Vec<SavedRow>,
}

pub async fn show(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<Response, UiError> {
    let queue = super::jobs::own_queue(&st, &s, &name).await?;
    let filters = PageFilters::parse(q.state, q.job, q.agent, q.launched_by, q.since, q.until)?;
    // before the rows: the live stream goes on from here, so a change made
    // while the page renders is sent (again), never lost
    let live_after = st.store.queue_history_head(&s.entity, &name).await?;
    let live_rows = q.before.is_none() && filters == PageFilters::default();
    let now = liftoff_store::now_ms();
    let filter = filters.item_filter(now);
    let page = st.store.queue_page(&s.entity, &name, &filter, q.before, PAGE_SIZE).await?;
    let agents = AgentNames::load(&st, &s.entity).await?;
    let query = filters.query();
    let next = page.next_before.map(|b| {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{query}{sep}before={b}")
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
    let saved = st
        .store
        .list_saved_filters(&s.entity, &name)
        .await?
        .into_iter()
        .map(|f| SavedRow { name: f.name, query: f.query })
        .collect();
    render(QueuePage {
        chrome: s.chrome("queues"),
        resource: queue.resource.as_str(),
        vars,
        states: ItemState::ALL.iter().map(|s| s.as_str()).collect(),
        filtered: filters != PageFilters::default(),
        state: filters.state.unwrap_or_default(),
        job: filters.job.unwrap_or_default(),
        agent: filters.agent.unwrap_or_default(),
        launched_by: filters.launched_by.unwrap_or_default(),
        since: filters.since.unwrap_or_default(),
        until: filters.until.unwrap_or_default(),
        items: page.items.iter().map(|i| ItemRow::new(i, now, &agents)).collect(),
        next,
        live_after,
        live_rows,
        saved,
        queue,
    })
}

fn to_queue(name: &str, query: &str) -> Response {
    let mut to = String::from("/queues/");
    to.extend(form_urlencoded::byte_serialize(name.as_bytes()));
    if !query.is_empty() {
        to.push('?');
        to.push_str(query);
    }
    Redirect::to(&to).into_response()
}

/// `POST /queues/{queue}/filters`: saves the filters in the form (the
/// page's own fields, checked and written back as a query string: never a
/// string the browser made up) under `name`.
pub async fn save_filter(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    s.check_csrf(form.get("csrf"))?;
    let queue = super::jobs::own_queue(&st, &s, &name).await?;
    let field = |k: &str| form.get(k).map(str::to_string);
    let filters = PageFilters::parse(
        field("state"),
        field("job"),
        field("agent"),
        field("launched_by"),
        field("since"),
        field("until"),
    )?;
    let label = form.get("name").unwrap_or("").trim();
    liftoff_core::api::check_label(label).map_err(|m| UiError::BadRequest(format!("the filter's name {m}")))?;
    let query = filters.query();
    let saved = liftoff_store::SavedFilter {
        entity: s.entity.clone(),
        queue: queue.name.clone(),
        name: label.to_string(),
        query: query.clone(),
        created_at_ms: liftoff_store::now_ms(),
    };
    match st.store.save_filter(&saved).await {
        Ok(()) => Ok(to_queue(&queue.name, &query)),
        Err(liftoff_store::StoreError::Conflict(m)) => Err(UiError::BadRequest(m)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /queues/{queue}/filters/delete`: deletes the saved filter `name`.
pub async fn delete_filter(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    s.check_csrf(form.get("csrf"))?;
    st.store.delete_saved_filter(&s.entity, &name, form.get("name").unwrap_or("")).await?;
    Ok(to_queue(&name, ""))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_back_from_now_name_their_field() {
        assert_eq!(parse_ago("since", "30m"), Ok(1_800_000));
        assert_eq!(parse_ago("since", "24h"), Ok(86_400_000));
        assert_eq!(parse_ago("until", "7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_ago("until", "0h"), Ok(0));
        for bad in ["", "h", "1", "1.5h", "-1h", "+1h", "1w", "1 h", "é", "1é", "99999999999999999999d"] {
            let err = parse_ago("since", bad).unwrap_err();
            assert!(err.starts_with("since must be") || err.starts_with("since reaches"), "{bad:?}: {err}");
        }
        assert!(parse_ago("until", "3651d").unwrap_err().contains("at most 3650d"));
    }

    #[test]
    fn filters_write_one_query_string() {
        let f = PageFilters::parse(
            Some(" failed ".into()),
            None,
            Some(String::new()),
            Some("a&b=c".into()),
            Some("24h".into()),
            None,
        )
        .unwrap();
        assert_eq!(f.query(), "state=failed&launched_by=a%26b%3Dc&since=24h");
        let store = f.item_filter(100_000_000);
        assert_eq!(
            (store.launcher.as_deref(), store.since_ms, store.until_ms),
            (Some("a&b=c"), Some(13_600_000), None)
        );
        assert!(PageFilters::parse(Some("nope".into()), None, None, None, None, None).is_err());
        let long = PageFilters::parse(None, Some("j".repeat(513)), None, None, None, None);
        assert!(matches!(long, Err(UiError::BadRequest(m)) if m == "job must be at most 512 bytes"));
    }
}
