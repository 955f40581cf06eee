//! The Jobs page (versions and sources) and the launch form, built from a
//! queue's template variables; the server's own launch checks give the
//! errors, shown beside their field.

use super::page::{Chrome, Form, UiError, render, utc};
use super::session::UiSession;
use crate::app::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use liftoff_core::api::LaunchRequest;
use liftoff_core::{JobSource, Priority, Queue, TemplateVariable, VarKind};
use serde::Deserialize;
use std::collections::BTreeMap;

pub fn kind_name(kind: VarKind) -> &'static str {
    match kind {
        VarKind::Integer => "integer",
        VarKind::Number => "number",
        VarKind::String => "string",
    }
}

/// `1 ≤ x ≤ 8`, `one of a, b`, or nothing.
pub fn bounds_text(v: &TemplateVariable) -> String {
    if let Some(allowed) = &v.allowed {
        return format!("one of {}", allowed.iter().map(plain).collect::<Vec<_>>().join(", "));
    }
    match (v.min, v.max) {
        (Some(a), Some(b)) => format!("{a} ≤ x ≤ {b}"),
        (Some(a), None) => format!("≥ {a}"),
        (None, Some(b)) => format!("≤ {b}"),
        (None, None) => String::new(),
    }
}

/// A JSON value as a form shows it (strings without their quotes).
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct JobRow {
    name: String,
    version: i64,
    aliases: String,
    source: String,
    created: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    jobs: Vec<JobRow>,
    queues: Vec<String>,
}

pub async fn index(State(st): State<AppState>, s: UiSession) -> Result<Response, UiError> {
    let jobs = st
        .store
        .list_jobs(&s.entity)
        .await?
        .into_iter()
        .map(|j| j.without_credentials())
        .map(|j| JobRow {
            name: format!("{}/{}", j.project, j.name),
            version: j.version,
            aliases: j.aliases.join(", "),
            source: match &j.source {
                JobSource::Image(i) => format!("image {}", i.image),
                JobSource::Code(c) => format!("code {}", c.digest),
                JobSource::Git(g) => format!("git {} {}", g.remote, g.commit),
            },
            created: utc(j.created_at_ms),
        })
        .collect();
    let queues = st.store.list_queues(&s.entity).await?.into_iter().map(|q| q.name).collect();
    render(JobsPage { chrome: s.chrome("jobs"), jobs, queues })
}

/// One input of the launch form.
struct Field {
    name: String,
    /// `number`, `select` or `text`.
    input: &'static str,
    step: &'static str,
    min: String,
    max: String,
    options: Vec<String>,
    value: String,
    hint: String,
    description: String,
    error: String,
}

#[derive(Template)]
#[template(path = "launch.html")]
struct LaunchPage {
    chrome: Chrome,
    queue: String,
    jobs: Vec<String>,
    job: String,
    priority: String,
    priorities: Vec<&'static str>,
    fields: Vec<Field>,
    /// An error about the launch as a whole, or a field the form does not show.
    error: String,
    job_error: String,
}

fn fields(queue: &Queue, values: &BTreeMap<String, String>, errors: &BTreeMap<String, String>) -> Vec<Field> {
    queue
        .template_variables
        .iter()
        .map(|v| Field {
            input: if v.allowed.is_some() {
                "select"
            } else if v.kind == VarKind::String {
                "text"
            } else {
                "number"
            },
            step: if v.kind == VarKind::Integer { "1" } else { "any" },
            min: v.min.map(|m| m.to_string()).unwrap_or_default(),
            max: v.max.map(|m| m.to_string()).unwrap_or_default(),
            options: v.allowed.iter().flatten().map(plain).collect(),
            value: values.get(&v.name).cloned().or_else(|| v.default.as_ref().map(plain)).unwrap_or_default(),
            hint: format!("{} {}", kind_name(v.kind), bounds_text(v)).trim().to_string(),
            description: v.description.clone().unwrap_or_default(),
            error: errors.get(&v.name).cloned().unwrap_or_default(),
            name: v.name.clone(),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct FormQuery {
    job: Option<String>,
}

async fn form_page(
    st: &AppState,
    s: &UiSession,
    queue: &Queue,
    job: String,
    priority: String,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
) -> Result<Response, UiError> {
    let jobs = st.store.list_jobs(&s.entity).await?;
    let mut names: Vec<String> = jobs.iter().map(|j| format!("{}/{}", j.project, j.name)).collect();
    names.dedup();
    let mut resp = render(LaunchPage {
        chrome: s.chrome("jobs"),
        queue: queue.name.clone(),
        jobs: names,
        job,
        priority,
        priorities: ["critical", "high", "medium", "low"].to_vec(),
        fields: fields(queue, values, errors),
        error: errors.get("").cloned().unwrap_or_default(),
        job_error: errors.get("job").cloned().unwrap_or_default(),
    })?;
    if !errors.is_empty() {
        *resp.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// The session's entity's queue `name`, or the page's 404.
pub(super) async fn own_queue(st: &AppState, s: &UiSession, name: &str) -> Result<Queue, UiError> {
    st.store.get_queue(&s.entity, name).await?.ok_or_else(|| UiError::NotFound(format!("queue '{name}' not found")))
}

pub async fn launch_form(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    Query(q): Query<FormQuery>,
) -> Result<Response, UiError> {
    let queue = own_queue(&st, &s, &name).await?;
    form_page(&st, &s, &queue, q.job.unwrap_or_default(), "medium".into(), &BTreeMap::new(), &BTreeMap::new()).await
}

/// `POST /queues/{queue}/launch`: the form's values, typed by the
/// variables' kinds, go through the API's launch; an error naming a field
/// comes back beside that field.
pub async fn launch(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    s.check_csrf(form.get("csrf"))?;
    let queue = own_queue(&st, &s, &name).await?;
    let job = form.get("job").unwrap_or("").trim().to_string();
    let priority = form.get("priority").unwrap_or("medium").to_string();
    let mut values = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut vars = serde_json::Map::new();
    for v in &queue.template_variables {
        let raw = form.get(&format!("var.{}", v.name)).unwrap_or("").trim().to_string();
        values.insert(v.name.clone(), raw.clone());
        if raw.is_empty() {
            continue; // the default, or the server names the missing variable
        }
        let typed = match v.kind {
            VarKind::String => Some(serde_json::Value::String(raw.clone())),
            VarKind::Integer => raw.parse::<i64>().ok().map(Into::into),
            VarKind::Number => raw.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Into::into),
        };
        match typed {
            Some(t) => {
                vars.insert(v.name.clone(), t);
            }
            None => {
                errors.insert(v.name.clone(), format!("'{raw}' is not {}", kind_name(v.kind)));
            }
        }
    }
    let priority_value = match priority.as_str() {
        "critical" => Priority::Critical,
        "high" => Priority::High,
        "low" => Priority::Low,
        _ => Priority::Medium,
    };
    if job.is_empty() {
        errors.insert("job".into(), "choose a job".into());
    }
    if errors.is_empty() {
        let req: Result<LaunchRequest, _> = serde_json::from_value(serde_json::json!({
            "job": job,
            "template_variables": vars,
            "priority": priority_value,
        }));
        let req = req.map_err(|e| UiError::Internal(format!("launch request: {e}")))?;
        match crate::routes::items::launch_item(&st, s.entity.clone(), &queue.name, req, Some(s.launcher.clone())).await
        {
            Ok(launched) => {
                let mut to = String::from("/runs/");
                to.extend(form_urlencoded::byte_serialize(launched.run_id.as_bytes()));
                return Ok(Redirect::to(&to).into_response());
            }
            Err(e) => {
                let field = e.field.as_deref().unwrap_or("");
                let key = field.strip_prefix("template_variables.").unwrap_or(if field == "job" { "job" } else { "" });
                errors.insert(key.to_string(), e.message);
            }
        }
    }
    form_page(&st, &s, &queue, job, priority, &values, &errors).await
}
