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

/// A value of the form as typed, and the error beside it.
#[derive(Default)]
struct Input {
    value: String,
    error: String,
}

/// One version in the form's version list.
struct VersionOption {
    /// `project/name`, which the page's script filters on.
    job: String,
    /// `vN`.
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "launch.html")]
struct LaunchPage {
    chrome: Chrome,
    queue: String,
    jobs: Vec<String>,
    job: Input,
    version: String,
    versions: Vec<VersionOption>,
    entrypoint: Input,
    args: Input,
    run_config: Input,
    priority: Input,
    priorities: Vec<&'static str>,
    fields: Vec<Field>,
    /// An error about the launch as a whole, or a field the form does not show.
    error: String,
}

/// What the form was sent with (or starts with).
#[derive(Default)]
struct Sent {
    job: String,
    version: String,
    entrypoint: String,
    args: String,
    run_config: String,
    priority: String,
    vars: BTreeMap<String, String>,
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
            error: errors.get(&format!("var.{}", v.name)).cloned().unwrap_or_default(),
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
    sent: Sent,
    errors: &BTreeMap<String, String>,
) -> Result<Response, UiError> {
    let mut jobs = st.store.list_jobs(&s.entity).await?;
    let mut names: Vec<String> = jobs.iter().map(|j| format!("{}/{}", j.project, j.name)).collect();
    names.dedup();
    // newest version first within each job
    jobs.sort_by(|a, b| (&a.project, &a.name, b.version).cmp(&(&b.project, &b.name, a.version)));
    let version = if sent.version.is_empty() { "latest".to_string() } else { sent.version };
    let versions = jobs
        .iter()
        .map(|j| {
            let job = format!("{}/{}", j.project, j.name);
            let value = format!("v{}", j.version);
            let aliases: Vec<&str> = j.aliases.iter().map(String::as_str).filter(|a| *a != value).collect();
            let aliases = if aliases.is_empty() { String::new() } else { format!(" ({})", aliases.join(", ")) };
            let selected = value == version && job == sent.job;
            let label = format!("{value}{aliases} · {} · {}", source_text(&j.source), utc(j.created_at_ms));
            VersionOption { job, value, label, selected }
        })
        .collect();
    let input = |value: String, name: &str| Input { value, error: errors.get(name).cloned().unwrap_or_default() };
    let mut resp = render(LaunchPage {
        chrome: s.chrome("jobs"),
        queue: queue.name.clone(),
        jobs: names,
        job: input(sent.job, "job"),
        version,
        versions,
        entrypoint: input(sent.entrypoint, "entrypoint"),
        args: input(sent.args, "args"),
        run_config: input(sent.run_config, "run_config"),
        priority: input(if sent.priority.is_empty() { "medium".into() } else { sent.priority }, "priority"),
        priorities: ["critical", "high", "medium", "low"].to_vec(),
        fields: fields(queue, &sent.vars, errors),
        error: errors.get("").cloned().unwrap_or_default(),
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
    form_page(&st, &s, &queue, Sent { job: q.job.unwrap_or_default(), ..Default::default() }, &BTreeMap::new()).await
}

/// `POST /queues/{queue}/launch`: the form's values (the job and version,
/// command and arguments, run config, priority, and the variables typed by
/// their kinds) are checked here as far as the form can, then go through the
/// API's launch; an error naming a field comes back beside that field.
pub async fn launch(
    State(st): State<AppState>,
    s: UiSession,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body);
    s.check_csrf(form.get("csrf"))?;
    let queue = own_queue(&st, &s, &name).await?;
    let text = |name: &str| form.get(name).unwrap_or("").trim().to_string();
    let mut sent = Sent {
        job: text("job"),
        version: text("version"),
        entrypoint: text("entrypoint"),
        args: text("args"),
        // kept as typed: YAML's indentation matters
        run_config: form.get("run_config").unwrap_or("").to_string(),
        priority: text("priority"),
        vars: BTreeMap::new(),
    };
    let mut errors = BTreeMap::new();
    let mut vars = serde_json::Map::new();
    for v in &queue.template_variables {
        let raw = form.get(&format!("var.{}", v.name)).unwrap_or("").trim().to_string();
        sent.vars.insert(v.name.clone(), raw.clone());
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
                errors.insert(format!("var.{}", v.name), format!("'{raw}' is not {}", kind_name(v.kind)));
            }
        }
    }
    let priority = match sent.priority.as_str() {
        "critical" => Some(Priority::Critical),
        "high" => Some(Priority::High),
        "medium" | "" => Some(Priority::Medium),
        "low" => Some(Priority::Low),
        other => {
            errors.insert("priority".into(), format!("'{other}' is not one of critical, high, medium, low"));
            None
        }
    };
    let job = match (sent.job.as_str(), sent.version.as_str()) {
        ("", _) => {
            errors.insert("job".into(), "choose a job".into());
            String::new()
        }
        (job, "" | "latest") => job.to_string(),
        (job, _) if job.contains(':') => {
            errors.insert("job".into(), "give the version in one place: the job names one already".into());
            String::new()
        }
        (job, version) => format!("{job}:{version}"),
    };
    let entrypoint = words(&sent.entrypoint, "entrypoint", &mut errors);
    let args = words(&sent.args, "args", &mut errors).unwrap_or_default();
    let run_config = match parse_run_config(&sent.run_config) {
        Ok(config) => config,
        Err(e) => {
            errors.insert("run_config".into(), e);
            serde_json::Value::Object(Default::default())
        }
    };
    if errors.is_empty() {
        let req: Result<LaunchRequest, _> = serde_json::from_value(serde_json::json!({
            "job": job,
            "entrypoint": entrypoint,
            "args": args,
            "run_config": run_config,
            "template_variables": vars,
            "priority": priority,
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
                errors.insert(form_field(e.field.as_deref()), e.message);
            }
        }
    }
    form_page(&st, &s, &queue, sent, &errors).await
}

/// The form's field for the field an API error names: `var.NAME` for a
/// template variable, "" for the error above the form.
fn form_field(api_field: Option<&str>) -> String {
    let field = api_field.unwrap_or("");
    if let Some(var) = field.strip_prefix("template_variables.") {
        return format!("var.{var}");
    }
    // `entrypoint[0]`, `run_config.x`: the form's field they are in
    let head = field.split(['.', '[']).next().unwrap_or("");
    match head {
        "job" | "entrypoint" | "args" | "run_config" | "priority" => head.to_string(),
        _ => String::new(),
    }
}

/// A command line split as a shell would; `None` when empty.
fn words(text: &str, field: &str, errors: &mut BTreeMap<String, String>) -> Option<Vec<String>> {
    if text.is_empty() {
        return None;
    }
    match shlex::split(text) {
        Some(w) if !w.is_empty() => Some(w),
        _ => {
            errors.insert(field.to_string(), "cannot be split into words: check its quotes".to_string());
            None
        }
    }
}

/// The run config as typed: a JSON object (when it starts with `{`) or a
/// YAML mapping; empty is `{}`.
fn parse_run_config(text: &str) -> Result<serde_json::Value, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    let value: serde_json::Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?
    };
    match value {
        serde_json::Value::Object(_) => Ok(value),
        _ => Err("must be an object (JSON `{...}` or YAML `key: value` lines)".to_string()),
    }
}

fn source_text(source: &JobSource) -> String {
    match source {
        JobSource::Image(i) => format!("image {}", i.image),
        JobSource::Code(c) => format!("code {}", c.digest.get(..19).unwrap_or(&c.digest)),
        JobSource::Git(g) => format!("git {}", g.commit.get(..12).unwrap_or(&g.commit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_config_is_a_json_or_yaml_object() {
        assert_eq!(parse_run_config("").unwrap(), serde_json::json!({}));
        assert_eq!(parse_run_config("{\"lr\": 0.1}").unwrap(), serde_json::json!({"lr": 0.1}));
        assert_eq!(
            parse_run_config("lr: 0.1\nlayers: [1, 2]\n").unwrap(),
            serde_json::json!({"lr": 0.1, "layers": [1, 2]})
        );
        assert!(parse_run_config("{\"lr\": ").unwrap_err().starts_with("not valid JSON"));
        assert!(parse_run_config("a: [1,").unwrap_err().starts_with("not valid YAML"));
        assert!(parse_run_config("- 1\n- 2\n").unwrap_err().contains("must be an object"));
    }

    #[test]
    fn api_errors_land_beside_the_form_field_they_name() {
        assert_eq!(form_field(Some("template_variables.gpus")), "var.gpus");
        assert_eq!(form_field(Some("entrypoint[0]")), "entrypoint");
        assert_eq!(form_field(Some("run_config")), "run_config");
        assert_eq!(form_field(Some("job")), "job");
        assert_eq!(form_field(Some("resource_config.env")), "");
        assert_eq!(form_field(None), "");
    }
}
