//! A run's page: state, timeline, failure, warnings, image, launch spec and
//! the log, which grows while the run is active through its live stream
//! (`ui/live.rs`), or only the log's lines matching a search; and the stop
//! and re-launch actions.

use super::agent_names::{AgentLabel, AgentNames};
use super::page::{Chrome, Form, UiError, render, span, utc};
use super::session::UiSession;
use crate::app::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use liftoff_core::api::{ItemView, LogChunk, LogStream};
use liftoff_core::history::{ItemTransition, RunStreamPosition, TransitionCause};
use liftoff_core::{ItemEvent, ItemState, Priority};
use liftoff_store::NewItem;
use serde::Deserialize;

/// Chunks one log request shows at most.
const LOG_PAGE: i64 = 2000;

/// A piece of a log line in one ANSI style; askama escapes its text.
pub struct Seg {
    pub class: String,
    pub text: String,
}

pub struct LogLine {
    pub stream: &'static str,
    pub segs: Vec<Seg>,
}

/// Splits a line at ANSI SGR sequences (`ESC [ ... m`) into styled pieces:
/// colours 30-37 and 90-97 (foreground), 40-47 (background), bold; every
/// other escape sequence and control character is dropped, never passed on.
pub fn ansi_segments(line: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let (mut fg, mut bg, mut bold) = (None::<u8>, None::<u8>, false);
    let mut text = String::new();
    let class = |fg: Option<u8>, bg: Option<u8>, bold: bool| {
        let mut c = Vec::new();
        if let Some(f) = fg {
            c.push(format!("fg{f}"));
        }
        if let Some(b) = bg {
            c.push(format!("bg{b}"));
        }
        if bold {
            c.push("b".to_string());
        }
        c.join(" ")
    };
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '\u{1b}' {
            if !ch.is_control() || ch == '\t' {
                text.push(ch);
            }
            continue;
        }
        if chars.peek() != Some(&'[') {
            chars.next();
            continue;
        }
        chars.next();
        let mut params = String::new();
        let mut fin = None;
        for c in chars.by_ref() {
            if ('\u{40}'..='\u{7e}').contains(&c) {
                fin = Some(c);
                break;
            }
            params.push(c);
        }
        if fin != Some('m') {
            continue;
        }
        if !text.is_empty() {
            segs.push(Seg { class: class(fg, bg, bold), text: std::mem::take(&mut text) });
        }
        for p in params.split(';') {
            match p.parse::<u8>().unwrap_or(0) {
                0 => (fg, bg, bold) = (None, None, false),
                1 => bold = true,
                22 => bold = false,
                n @ 30..=37 => fg = Some(n - 30),
                39 => fg = None,
                n @ 40..=47 => bg = Some(n - 40),
                49 => bg = None,
                n @ 90..=97 => fg = Some(n - 90 + 8),
                _ => {}
            }
        }
    }
    if !text.is_empty() || segs.is_empty() {
        segs.push(Seg { class: class(fg, bg, bold), text });
    }
    segs
}

/// Log lines as the page shows them (`log_lines.html`), also the live
/// stream's fragments.
#[derive(Template)]
#[template(path = "log_lines.html")]
pub(super) struct LogLines {
    pub lines: Vec<LogLine>,
}

pub(super) fn log_lines(chunks: &[LogChunk]) -> Vec<LogLine> {
    let mut lines = Vec::new();
    for c in chunks {
        let stream = match c.stream {
            LogStream::Stdout => "out",
            LogStream::Stderr => "err",
            LogStream::Agent => "agent",
            _ => "build",
        };
        for line in c.data.strip_suffix('\n').unwrap_or(&c.data).split('\n') {
            lines.push(LogLine { stream, segs: ansi_segments(line) });
        }
    }
    lines
}

/// The item `id` (item or run id) of the session's entity: another entity's
/// run is "not found", like one that does not exist.
pub(super) async fn own_item(st: &AppState, s: &UiSession, id: &str) -> Result<ItemView, UiError> {
    st.store.get_item(&s.entity, id).await?.ok_or_else(|| UiError::NotFound(format!("run '{id}' not found")))
}

async fn read_chunks(st: &AppState, item: &ItemView, after: i64) -> Result<Vec<LogChunk>, UiError> {
    let archived = |e: crate::error::ApiError| UiError::Internal(e.message);
    if item.log_archived {
        return crate::log_archive::read_archived(st, &item.entity, &item.id, after, LOG_PAGE).await.map_err(archived);
    }
    let chunks = st.store.read_log(&item.entity, &item.id, after, LOG_PAGE).await?;
    if chunks.is_empty() && item.state.is_terminal() {
        // the archiver may have moved the rows since the item was read
        if let Some(now) = st.store.get_item(&item.entity, &item.id).await?.filter(|i| i.log_archived) {
            return crate::log_archive::read_archived(st, &now.entity, &now.id, after, LOG_PAGE)
                .await
                .map_err(archived);
        }
    }
    Ok(chunks)
}

/// A timeline entry: `what`, the agent that caused it (if one did), `after`.
pub struct Event {
    pub at: String,
    pub what: String,
    pub agent: Option<AgentLabel>,
    pub after: String,
}

impl Event {
    fn text(at: String, what: String) -> Self {
        Self { at, what, agent: None, after: String::new() }
    }
}

/// Every state change the store recorded (`item_transitions`), with its
/// time and cause; an item older than that record gets [`row_timeline`].
/// Also the `seq` of the last change shown, where a live stream goes on.
async fn timeline(
    st: &AppState,
    entity: &str,
    item: &ItemView,
    agents: &AgentNames,
) -> Result<(Vec<Event>, i64), UiError> {
    let history = st.store.item_history(entity, &item.id, 0, TIMELINE_LIMIT).await?;
    let Some(last) = history.last().map(|t| t.seq) else {
        return Ok((row_timeline(item, agents), 0));
    };
    Ok((history.iter().map(|t| timeline_entry(t, agents)).collect(), last))
}

/// One recorded state change as a timeline entry (`timeline_entry.html`).
pub(super) fn timeline_entry(t: &ItemTransition, agents: &AgentNames) -> Event {
    let change = match t.from {
        Some(from) => format!("{from} → {}", t.to),
        None => format!("{} in {}", t.to, t.queue),
    };
    let reason = t.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    match (t.cause, &t.agent_id) {
        (TransitionCause::Agent, Some(agent)) => Event {
            at: utc(t.at_ms),
            what: format!("{change} ({}, by agent ", t.event),
            agent: Some(agents.known(agent)),
            after: format!("){reason}"),
        },
        (cause, _) => Event::text(utc(t.at_ms), format!("{change} ({}, by {}){reason}", t.event, cause.as_str())),
    }
}

/// The most state changes a run page shows.
const TIMELINE_LIMIT: i64 = 200;

/// What the item's row tells of its life: enqueued, started (where, after
/// how long in the queue), ended (how, after how long), and the lease
/// expiries and preemptions it went through.
fn row_timeline(item: &ItemView, agents: &AgentNames) -> Vec<Event> {
    let mut timeline = vec![Event::text(utc(item.created_at_ms), format!("enqueued in {}", item.queue))];
    if let Some(t) = item.started_at_ms {
        let queued = span(t - item.created_at_ms);
        timeline.push(match item.agent_id.as_deref() {
            Some(agent) => Event {
                at: utc(t),
                what: "started on agent ".to_string(),
                agent: Some(agents.known(agent)),
                after: format!(" after {queued} in the queue"),
            },
            None => Event::text(utc(t), format!("started on an agent after {queued} in the queue")),
        });
    }
    if let Some(t) = item.ended_at_ms {
        let ran = item.started_at_ms.map(|s| format!(" after {}", span(t - s))).unwrap_or_default();
        timeline.push(Event::text(utc(t), format!("ended {}{ran}", item.state)));
    }
    if item.attempts > 0 || item.resumes > 0 {
        timeline.push(Event::text(
            String::new(),
            format!("{} lease expiries, {} resumes after preemption", item.attempts, item.resumes),
        ));
    }
    timeline
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Chrome,
    item: ItemView,
    state: &'static str,
    stoppable: bool,
    /// Pending: its priority can still change.
    pending: bool,
    priorities: Vec<&'static str>,
    timeline: Vec<Event>,
    /// The agent holding (or last holding) the run.
    agent: Option<AgentLabel>,
    stage: String,
    warnings: Vec<(String, String, String)>,
    image: String,
    spec: String,
    lines: Vec<LogLine>,
    /// Where the live stream goes on from what the page shows.
    live_from: String,
    /// The page follows the run's live stream (active, not a search).
    live: bool,
    search: Option<Search>,
}

#[derive(Deserialize)]
pub struct RunQuery {
    q: Option<String>,
}

pub async fn show(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
) -> Result<Response, UiError> {
    let item = own_item(&st, &s, &id).await?.without_credentials();
    let warnings = st
        .store
        .list_warnings(&s.entity, &item.id)
        .await?
        .into_iter()
        .map(|w| (utc(w.created_at_ms), w.stage.as_str().to_string(), w.message))
        .collect();
    let q: String = query.q.unwrap_or_default().trim().chars().take(SEARCH_MAX_QUERY).collect();
    // The log before the timeline, as the live stream reads them: the
    // stream then goes on from both without a gap.
    let (lines, next_seq, search) = if q.is_empty() {
        let chunks = read_chunks(&st, &item, 0).await?;
        (log_lines(&chunks), chunks.last().map_or(0, |c| c.seq + 1), None)
    } else {
        let (lines, search) = search_log(&st, &item, q).await?;
        (lines, 0, Some(search))
    };
    let agents = AgentNames::load(&st, &s.entity).await?;
    let (timeline, last_transition) = timeline(&st, &s.entity, &item, &agents).await?;
    // Read again, after the timeline: the state and facts shown are then at
    // least as new as its last entry, which the live stream goes on after.
    let item = own_item(&st, &s, &item.id).await?.without_credentials();
    let image = item
        .build
        .as_ref()
        .map(|b| format!("{} ({} by {} in {:.1}s)", b.image, b.how.as_str(), b.builder, b.seconds))
        .unwrap_or_default();
    render(RunPage {
        chrome: s.chrome("queues"),
        state: item.state.as_str(),
        stoppable: !item.state.is_terminal() && item.state != ItemState::Stopping,
        pending: item.state == ItemState::Pending,
        priorities: Priority::ALL.iter().map(|p| p.as_str()).collect(),
        timeline,
        agent: item.agent_id.as_deref().map(|a| agents.known(a)),
        stage: item.stage.map(|s| s.as_str().to_string()).unwrap_or_default(),
        warnings,
        image,
        spec: serde_json::to_string_pretty(&item.spec).unwrap_or_default(),
        lines,
        live_from: RunStreamPosition { transitions: last_transition, log: next_seq }.to_string(),
        live: !item.state.is_terminal() && search.is_none(),
        search,
        item,
    })
}

/// A search reads at most this many lines of the log, and this many bytes,
/// so that searching a huge log costs a bounded read; the page says when
/// it stopped before the end.
const SEARCH_MAX_LINES: usize = 50_000;
const SEARCH_MAX_BYTES: usize = 8 << 20;
/// Matching lines shown at most (all are counted).
const SEARCH_SHOWN: usize = 1000;
/// Characters of a query kept.
const SEARCH_MAX_QUERY: usize = 200;

/// What a log search found, for the page to say.
pub struct Search {
    q: String,
    matches: usize,
    searched: usize,
    /// The log goes on past what was searched.
    stopped: bool,
    shown: usize,
}

/// The log's lines containing `q` (case-insensitive), the matches marked
/// with the class `hit`, from at most [`SEARCH_MAX_LINES`] lines and
/// [`SEARCH_MAX_BYTES`] bytes of the log.
async fn search_log(st: &AppState, item: &ItemView, q: String) -> Result<(Vec<LogLine>, Search), UiError> {
    let needle: Vec<char> = q.chars().map(fold).collect();
    let mut found = Vec::new();
    let mut search = Search { q, matches: 0, searched: 0, stopped: false, shown: 0 };
    let (mut after, mut bytes) = (0, 0);
    'read: loop {
        let chunks = read_chunks(st, item, after).await?;
        for c in &chunks {
            bytes += c.data.len();
            if bytes > SEARCH_MAX_BYTES {
                search.stopped = true;
                break 'read;
            }
            for line in log_lines(std::slice::from_ref(c)) {
                if search.searched == SEARCH_MAX_LINES {
                    search.stopped = true;
                    break 'read;
                }
                search.searched += 1;
                if let Some(marked) = mark_matches(line, &needle) {
                    search.matches += 1;
                    if found.len() < SEARCH_SHOWN {
                        found.push(marked);
                    }
                }
            }
        }
        match chunks.last() {
            Some(last) if chunks.len() as i64 >= LOG_PAGE => after = last.seq + 1,
            _ => break,
        }
    }
    search.shown = found.len();
    Ok((found, search))
}

/// A character compared without case: its lowercase form when that is one
/// character (so positions in the line stay positions in the folded line).
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// The line with every match of `needle` in its text marked (`hit` added to
/// its pieces' classes, split where a match starts or ends), or `None`
/// when it does not match.
fn mark_matches(line: LogLine, needle: &[char]) -> Option<LogLine> {
    let text: Vec<char> = line.segs.iter().flat_map(|s| s.text.chars()).map(fold).collect();
    let mut hit = vec![false; text.len()];
    let mut any = false;
    let mut i = 0;
    while !needle.is_empty() && i + needle.len() <= text.len() {
        if text[i..i + needle.len()] == *needle {
            hit[i..i + needle.len()].fill(true);
            any = true;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    if !any {
        return None;
    }
    let mut segs: Vec<Seg> = Vec::new();
    let mut at = 0;
    for seg in line.segs {
        for ch in seg.text.chars() {
            let class = if hit[at] { format!("{} hit", seg.class).trim_start().to_string() } else { seg.class.clone() };
            match segs.last_mut() {
                Some(last) if last.class == class => last.text.push(ch),
                _ => segs.push(Seg { class, text: ch.to_string() }),
            }
            at += 1;
        }
    }
    Some(LogLine { stream: line.stream, segs })
}

/// `GET /runs/{id}/log.txt`: the whole log as plain text, every stream in
/// the order it was written, to save or search.
pub async fn log_download(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let item = own_item(&st, &s, &id).await?;
    let mut text = String::new();
    let mut after = 0;
    loop {
        let chunks = read_chunks(&st, &item, after).await?;
        for c in &chunks {
            text.push_str(&c.data);
        }
        match chunks.last() {
            Some(last) if chunks.len() as i64 >= LOG_PAGE => after = last.seq + 1,
            _ => break,
        }
    }
    let disposition = format!("attachment; filename=\"run-{}.log\"", item.run_id);
    let headers = [
        (axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
        (axum::http::header::CONTENT_DISPOSITION, disposition),
    ];
    Ok((headers, text).into_response())
}

fn to_run(id: &str) -> Response {
    let mut to = String::from("/runs/");
    to.extend(form_urlencoded::byte_serialize(id.as_bytes()));
    Redirect::to(&to).into_response()
}

/// `POST /runs/{id}/stop`.
pub async fn stop(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    s.check_csrf(Form::parse(&body).get("csrf"))?;
    let item = own_item(&st, &s, &id).await?;
    match st.store.apply_event(&s.entity, &item.id, None, &ItemEvent::RequestStop, liftoff_store::now_ms()).await {
        Ok(item) => st.metrics.transitioned(&item),
        Err(liftoff_store::StoreError::Transition(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(to_run(&item.run_id))
}

/// `POST /runs/{id}/priority`: a pending run's new priority (as the API's
/// `POST /items/{id}/priority`); a run claimed meanwhile says so.
pub async fn set_priority(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    s.check_csrf(form.get("csrf"))?;
    let value = form.get("priority").unwrap_or("");
    let priority: Priority = value.parse().map_err(|_| {
        let all: Vec<_> = Priority::ALL.iter().map(|p| p.as_str()).collect();
        UiError::BadRequest(format!("priority must be one of {}, got '{value}'", all.join(", ")))
    })?;
    let item = own_item(&st, &s, &id).await?;
    match st.store.set_priority(&s.entity, &item.id, priority, liftoff_store::now_ms()).await {
        Ok(item) => st.changes.item(&s.entity, &item.id, Some(&item.queue)),
        Err(e @ liftoff_store::StoreError::NotPending { .. }) => return Err(UiError::BadRequest(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    Ok(to_run(&item.run_id))
}

/// `POST /runs/{id}/relaunch`: a new run of the same launch spec, on the same
/// queue, with the same priority.
pub async fn relaunch(
    State(st): State<AppState>,
    s: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    s.check_csrf(Form::parse(&body).get("csrf"))?;
    let item = own_item(&st, &s, &id).await?;
    let queue = st
        .store
        .get_queue(&s.entity, &item.queue)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("queue '{}' not found", item.queue)))?;
    let new = NewItem {
        id: uuid::Uuid::new_v4().to_string(),
        run_id: crate::routes::items::new_run_id(),
        entity: s.entity.clone(),
        queue: item.queue,
        priority: item.priority,
        prioritized: queue.prioritization,
        spec: item.spec,
        now_ms: liftoff_store::now_ms(),
        launched_by: Some(s.launcher.clone()),
    };
    let view = st.store.enqueue(&new).await?;
    st.metrics.enqueued();
    st.dispatch.notify();
    Ok(to_run(&view.run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(segs: &[Seg]) -> Vec<(&str, &str)> {
        segs.iter().map(|s| (s.class.as_str(), s.text.as_str())).collect()
    }

    #[test]
    fn ansi_colours_become_classes_and_other_escapes_vanish() {
        let segs = ansi_segments("\u{1b}[1;31merror\u{1b}[0m: \u{1b}[92mok\u{1b}[39m done\u{1b}[2K\u{7}");
        assert_eq!(flat(&segs), [("fg1 b", "error"), ("", ": "), ("fg10", "ok"), ("", " done")]);
        assert_eq!(flat(&ansi_segments("")), [("", "")]);
        assert_eq!(flat(&ansi_segments("<script>alert(1)</script>")), [("", "<script>alert(1)</script>")]);
        // OSC: ESC and the next char dropped, the rest plain text without controls
        assert_eq!(flat(&ansi_segments("\u{1b}]0;title\u{7}x")), [("", "0;titlex")]);
    }

    fn marked(line: &str, q: &str) -> Option<Vec<(String, String)>> {
        let needle: Vec<char> = q.chars().map(fold).collect();
        let line = LogLine { stream: "out", segs: ansi_segments(line) };
        mark_matches(line, &needle).map(|l| l.segs.into_iter().map(|s| (s.class, s.text)).collect())
    }

    #[test]
    fn a_search_marks_every_match_in_any_case_across_colours() {
        let pieces = |p: &[(&str, &str)]| p.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect::<Vec<_>>();
        // the trailing "ab" is no match of "ba"; pieces of one class stay one
        assert_eq!(
            marked("Ab\u{1b}[31mAB\u{1b}[0mxab", "bA").unwrap(),
            pieces(&[("", "A"), ("hit", "b"), ("fg1 hit", "A"), ("fg1", "B"), ("", "xab")])
        );
        assert_eq!(marked("ÉTÉ été", "été").unwrap().iter().filter(|(c, _)| c == "hit").count(), 2);
        // matches do not overlap: "aaa" holds one "aa"
        assert_eq!(
            marked("aaa", "aa").unwrap(),
            [("hit".to_string(), "aa".to_string()), (String::new(), "a".to_string())]
        );
        assert!(marked("nothing here", "zzz").is_none());
        assert!(marked("", "a").is_none());
    }
}
