//! A faithful fake of the Vertex AI `CustomJob` REST resources and of
//! Cloud Logging's `entries:list`, with an OAuth token endpoint, for tests
//! and for trying Liftoff without GCP.
//!
//! Served: `POST /v1/projects/<p>/locations/<r>/customJobs` (create; the
//! job starts `JOB_STATE_QUEUED`, then `JOB_STATE_PENDING` at its first
//! read, as Vertex moves it on by itself), `GET .../customJobs/<id>`,
//! `GET .../customJobs?filter=labels.<k>="<v>"&pageSize=&pageToken=`,
//! `POST .../customJobs/<id>:cancel` (`JOB_STATE_CANCELLING`, then
//! `JOB_STATE_CANCELLED` after `cancel_delay`; an ended job is
//! `FAILED_PRECONDITION`), `POST /v2/entries:list` (the filter Liftoff and
//! the console use: `resource.type`, `resource.labels.job_id`, `timestamp`
//! with `>=`/`>`, joined by `AND`; `orderBy` `timestamp asc|desc`; pages),
//! and `POST /token` (the token endpoint a credentials file names). Every
//! API call needs a token it issued (else 401 `UNAUTHENTICATED`); errors
//! have Google's shape (`{"error": {"code", "message", "status"}}`).
//! Tests drive a job with [`VertexFake::drive`] and write its output with
//! [`VertexFake::emit`] (or `POST /_fake/jobs/<id>/state` and `/logs`).
//!
//! Differences from Vertex AI and Cloud Logging: no IAM (any issued token
//! may do anything in any project), the token endpoint does not verify the
//! JWT's signature (it checks the grant's shape; liftoff-cloud's tests
//! check signatures against their own fake); nothing runs (no images are
//! pulled, no machines started); only the fields Liftoff sends are checked
//! (worker pools with a container spec and an image); log filters beyond
//! the form above are refused with `INVALID_ARGUMENT`; state changes after
//! `PENDING` happen only when driven (or with `--auto`).

use super::changes::Changes;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TASK_LABEL: &str = "ml.googleapis.com/task_name";
pub const REFRESH_TOKEN: &str = "1//vertex-fake-refresh-token";

#[derive(Debug, Clone)]
pub struct VertexFakeOptions {
    pub listen: String,
    pub cancel_delay: Duration,
    /// `Some(d)`: each job runs at once, writes a line a second and succeeds after `d`.
    pub auto_complete: Option<Duration>,
}

impl Default for VertexFakeOptions {
    fn default() -> Self {
        Self { listen: "127.0.0.1:0".into(), cancel_delay: Duration::from_millis(300), auto_complete: None }
    }
}

#[derive(Debug, Clone)]
pub struct FakeCustomJob {
    /// `projects/<p>/locations/<r>/customJobs/<id>`
    pub name: String,
    /// The job as created (and as `get` answers, with its state).
    pub resource: Value,
    pub cancel_requested: Option<Instant>,
}

#[derive(Default)]
struct Store {
    jobs: BTreeMap<String, FakeCustomJob>,
    entries: Vec<Value>,
    tokens: Vec<String>,
    next_id: u64,
    next_insert: u64,
}

struct Shared {
    opts: VertexFakeOptions,
    store: Mutex<Store>,
    changed: Changes,
}

pub struct VertexFake {
    pub url: String,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for VertexFake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl VertexFake {
    pub async fn start(opts: VertexFakeOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Shared { opts, store: Mutex::new(Store::default()), changed: Changes::default() });
        let app = Router::new()
            .route("/token", axum::routing::post(token))
            .route("/v1/projects/{project}/locations/{location}/customJobs", axum::routing::post(create).get(list))
            .route("/v1/projects/{project}/locations/{location}/customJobs/{job}", axum::routing::get(get).post(cancel))
            .route("/v2/entries:list", axum::routing::post(entries_list))
            .route("/_fake/jobs", axum::routing::get(admin_list))
            .route("/_fake/jobs/{id}/state", axum::routing::post(admin_state))
            .route("/_fake/jobs/{id}/logs", axum::routing::post(admin_logs))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state, server })
    }

    /// An `authorized_user` credentials file (what `gcloud auth
    /// application-default login` writes) whose token endpoint is this fake.
    pub fn credentials_json(&self, quota_project: &str) -> Value {
        json!({
            "type": "authorized_user",
            "client_id": "vertex-fake.apps.googleusercontent.com",
            "client_secret": "vertex-fake-secret",
            "refresh_token": REFRESH_TOKEN,
            "quota_project_id": quota_project,
            "token_uri": format!("{}/token", self.url),
        })
    }

    /// The job whose id (last part of its name) is `id`.
    pub fn job(&self, id: &str) -> Option<FakeCustomJob> {
        self.state.store.lock().unwrap().jobs.get(id).cloned()
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.state.store.lock().unwrap().jobs.keys().cloned().collect()
    }

    pub async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        pred: impl Fn(&FakeCustomJob) -> bool,
    ) -> Option<FakeCustomJob> {
        self.state.changed.wait_until(within, || self.job(id).filter(|j| pred(j))).await
    }

    /// Waits until at least `n` jobs exist; all of them, in id order.
    pub async fn wait_for_jobs(&self, n: usize, within: Duration) -> Option<Vec<String>> {
        self.state.changed.wait_until(within, || Some(self.job_ids()).filter(|ids| ids.len() >= n)).await
    }

    /// Moves the job to `state` (`JOB_STATE_RUNNING`...), with an error message for failures.
    pub fn drive(&self, id: &str, state: &str, error: Option<&str>) -> Result<(), String> {
        self.state.set(id, state, error)
    }

    /// Writes `lines` as log entries of replica `task` (`workerpool0-0`) at `severity`.
    pub fn emit(&self, id: &str, task: &str, severity: &str, lines: &[&str]) -> Result<(), String> {
        self.state.emit(id, task, severity, lines.iter().map(|s| s.to_string()).collect())
    }
}

const STATES: [&str; 11] = [
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
];

fn ended(state: &str) -> bool {
    matches!(
        state,
        "JOB_STATE_SUCCEEDED"
            | "JOB_STATE_FAILED"
            | "JOB_STATE_CANCELLED"
            | "JOB_STATE_EXPIRED"
            | "JOB_STATE_PARTIALLY_SUCCEEDED"
    )
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

impl Shared {
    fn set(&self, id: &str, state: &str, error: Option<&str>) -> Result<(), String> {
        if !STATES.contains(&state) {
            return Err(format!("state must be one of {}", STATES.join(", ")));
        }
        {
            let mut store = self.store.lock().unwrap();
            let job = store.jobs.get_mut(id).ok_or_else(|| format!("no custom job {id}"))?;
            let r = &mut job.resource;
            r["state"] = json!(state);
            r["updateTime"] = json!(now_rfc3339());
            if state == "JOB_STATE_RUNNING" && r.get("startTime").is_none() {
                r["startTime"] = json!(now_rfc3339());
            }
            if ended(state) {
                r["endTime"] = json!(now_rfc3339());
            }
            if let Some(m) = error {
                r["error"] = json!({"code": 3, "message": m});
            }
        }
        self.changed.bump();
        Ok(())
    }

    fn emit(&self, id: &str, task: &str, severity: &str, lines: Vec<String>) -> Result<(), String> {
        {
            let mut store = self.store.lock().unwrap();
            let job = store.jobs.get(id).ok_or_else(|| format!("no custom job {id}"))?;
            let project = job.name.split('/').nth(1).unwrap_or("").to_string();
            let location = job.name.split('/').nth(3).unwrap_or("").to_string();
            for line in lines {
                store.next_insert += 1;
                let entry = json!({
                    "insertId": format!("{:012x}", store.next_insert * 7919),
                    "logName": format!("projects/{project}/logs/{task}"),
                    "resource": {"type": "ml_job", "labels": {"job_id": id, "project_id": project, "task_name": task}},
                    "labels": {TASK_LABEL: task, "ml.googleapis.com/location": location},
                    "timestamp": now_rfc3339(),
                    "receiveTimestamp": now_rfc3339(),
                    "severity": severity,
                    "textPayload": line,
                });
                store.entries.push(entry);
            }
        }
        self.changed.bump();
        Ok(())
    }
}

fn gerror(code: StatusCode, status: &str, message: &str) -> Response {
    (code, axum::Json(json!({"error": {"code": code.as_u16(), "message": message, "status": status}}))).into_response()
}

/// Whether the request carries a token this fake issued.
fn authorized(st: &Shared, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    st.store.lock().unwrap().tokens.iter().any(|t| t == bearer)
}

fn unauthenticated() -> Response {
    gerror(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    )
}

async fn token(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let ok = match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => form.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            form.get("assertion").is_some_and(|a| a.split('.').count() == 3)
        }
        _ => false,
    };
    if !ok {
        let body = json!({"error": "invalid_grant", "error_description": "Bad Request"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let mut store = st.store.lock().unwrap();
    let t = format!("ya29.vertex-fake-{}", store.tokens.len());
    store.tokens.push(t.clone());
    axum::Json(json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

async fn create(
    State(st): State<Arc<Shared>>,
    Path((project, location)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthenticated();
    }
    let Ok(mut job) = serde_json::from_slice::<Value>(&body) else {
        return gerror(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let pools = job["jobSpec"]["workerPoolSpecs"].as_array().cloned().unwrap_or_default();
    if job["displayName"].as_str().is_none_or(str::is_empty) {
        return gerror(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "List of found errors:\t1.Field: custom_job.display_name; Message: Required field is not set.\t",
        );
    }
    if pools.is_empty() {
        return gerror(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "List of found errors:\t1.Field: job_spec.worker_pool_specs; Message: Required field is not set.\t",
        );
    }
    if let Some(i) = pools.iter().position(|p| p["containerSpec"]["imageUri"].as_str().is_none_or(str::is_empty)) {
        return gerror(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!(
                "List of found errors:\t1.Field: job_spec.worker_pool_specs[{i}].container_spec.image_uri; Message: Required field is not set.\t"
            ),
        );
    }
    if let Some((k, _)) = job["labels"].as_object().into_iter().flatten().find(|(k, v)| {
        let ok = |s: &str| {
            s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        !ok(k) || !v.as_str().is_some_and(ok)
    }) {
        return gerror(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!(
                "Label keys and values can only contain lowercase letters, numeric characters, underscores and dashes ({k})"
            ),
        );
    }
    let resource = {
        let mut store = st.store.lock().unwrap();
        store.next_id += 1;
        let id = format!("{}", 1_000_000_000_000u64 + store.next_id);
        let name = format!("projects/{project}/locations/{location}/customJobs/{id}");
        job["name"] = json!(name);
        job["state"] = json!("JOB_STATE_QUEUED");
        job["createTime"] = json!(now_rfc3339());
        job["updateTime"] = json!(now_rfc3339());
        store.jobs.insert(id.clone(), FakeCustomJob { name, resource: job.clone(), cancel_requested: None });
        if let Some(d) = st.opts.auto_complete {
            tokio::spawn(auto_run(st.clone(), id, d));
        }
        job
    };
    st.changed.bump();
    axum::Json(resource).into_response()
}

async fn auto_run(st: Arc<Shared>, id: String, d: Duration) {
    let _ = st.set(&id, "JOB_STATE_RUNNING", None);
    let start = Instant::now();
    let mut step = 0;
    while start.elapsed() < d {
        let running =
            st.store.lock().unwrap().jobs.get(&id).is_some_and(|j| j.resource["state"] == "JOB_STATE_RUNNING");
        if !running {
            return;
        }
        step += 1;
        let _ = st.emit(&id, "workerpool0-0", "INFO", vec![format!("fake training step {step}")]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = st.set(&id, "JOB_STATE_SUCCEEDED", None);
}

async fn get(
    State(st): State<Arc<Shared>>,
    Path((project, location, job)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthenticated();
    }
    let out = {
        let mut store = st.store.lock().unwrap();
        match store
            .jobs
            .get_mut(&job)
            .filter(|j| j.name.starts_with(&format!("projects/{project}/locations/{location}/")))
        {
            Some(j) => {
                // Vertex takes a queued job to pending by itself
                if j.resource["state"] == "JOB_STATE_QUEUED" {
                    j.resource["state"] = json!("JOB_STATE_PENDING");
                }
                Ok(j.resource.clone())
            }
            None => Err(()),
        }
    };
    match out {
        Ok(r) => axum::Json(r).into_response(),
        Err(()) => gerror(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("The CustomJob does not exist: projects/{project}/locations/{location}/customJobs/{job}"),
        ),
    }
}

async fn cancel(
    State(st): State<Arc<Shared>>,
    Path((project, location, job)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthenticated();
    }
    let Some(id) = job.strip_suffix(":cancel").map(str::to_string) else {
        return gerror(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested URL was not found on this server.");
    };
    let result = {
        let mut store = st.store.lock().unwrap();
        match store.jobs.get_mut(&id) {
            None => Err(gerror(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("The CustomJob does not exist: projects/{project}/locations/{location}/customJobs/{id}"),
            )),
            Some(j) => {
                j.cancel_requested.get_or_insert_with(Instant::now);
                let state = j.resource["state"].as_str().unwrap_or("").to_string();
                if ended(&state) {
                    Err(gerror(
                        StatusCode::BAD_REQUEST,
                        "FAILED_PRECONDITION",
                        &format!("Cannot cancel CustomJob {} in state {state}.", j.name),
                    ))
                } else {
                    j.resource["state"] = json!("JOB_STATE_CANCELLING");
                    Ok(())
                }
            }
        }
    };
    st.changed.bump();
    if let Err(r) = result {
        return r;
    }
    let (st2, delay) = (st.clone(), st.opts.cancel_delay);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = st2.set(&id, "JOB_STATE_CANCELLED", Some("CANCELED"));
    });
    axum::Json(json!({})).into_response()
}

async fn list(
    State(st): State<Arc<Shared>>,
    Path((project, location)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthenticated();
    }
    let mut wanted = Vec::new();
    if let Some(f) = q.get("filter").filter(|f| !f.is_empty()) {
        for term in f.split(" AND ") {
            let parsed = term
                .trim()
                .strip_prefix("labels.")
                .and_then(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()));
            match parsed {
                Some(kv) => wanted.push(kv),
                None => {
                    return gerror(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &format!("Unsupported filter: {term}"));
                }
            }
        }
    }
    let size = q.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(100usize).clamp(1, 100);
    let offset = q.get("pageToken").and_then(|s| s.parse().ok()).unwrap_or(0usize);
    let prefix = format!("projects/{project}/locations/{location}/");
    let store = st.store.lock().unwrap();
    let matching: Vec<Value> = store
        .jobs
        .values()
        .filter(|j| j.name.starts_with(&prefix))
        .filter(|j| wanted.iter().all(|(k, v)| j.resource["labels"][k] == v.as_str()))
        .map(|j| j.resource.clone())
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(size).cloned().collect();
    let mut out = json!({"customJobs": page});
    if offset + size < matching.len() {
        out["nextPageToken"] = json!((offset + size).to_string());
    }
    axum::Json(out).into_response()
}

async fn entries_list(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&st, &headers) {
        return unauthenticated();
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return gerror(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let projects: Vec<String> = req["resourceNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .filter_map(|r| r.strip_prefix("projects/"))
        .map(str::to_string)
        .collect();
    if projects.is_empty() {
        return gerror(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "resourceNames must name at least one project");
    }
    let mut equals: Vec<(String, String)> = Vec::new();
    let mut since: Option<(jiff::Timestamp, bool)> = None;
    for term in req["filter"].as_str().unwrap_or("").split(" AND ").map(str::trim).filter(|t| !t.is_empty()) {
        let bound = term
            .strip_prefix("timestamp>=")
            .map(|t| (t, true))
            .or_else(|| term.strip_prefix("timestamp>").map(|t| (t, false)));
        if let Some((t, inclusive)) = bound {
            match t.trim_matches('"').parse() {
                Ok(ts) => since = Some((ts, inclusive)),
                Err(_) => {
                    return gerror(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        &format!("Invalid timestamp in filter: {t}"),
                    );
                }
            }
        } else if let Some((k, v)) = term.split_once('=') {
            equals.push((k.to_string(), v.trim_matches('"').to_string()));
        } else {
            return gerror(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &format!("Unparseable filter: {term}"));
        }
    }
    let field = |e: &Value, path: &str| -> Option<String> {
        let mut v = e;
        for part in path.split('.') {
            v = v.get(part)?;
        }
        v.as_str().map(str::to_string)
    };
    let size = req["pageSize"].as_u64().unwrap_or(50).clamp(1, 1000) as usize;
    let offset: usize = req["pageToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let store = st.store.lock().unwrap();
    let mut matching: Vec<&Value> = store
        .entries
        .iter()
        .filter(|e| projects.iter().any(|p| e["resource"]["labels"]["project_id"] == p.as_str()))
        .filter(|e| equals.iter().all(|(k, v)| field(e, k).as_deref() == Some(v.as_str())))
        .filter(|e| match since {
            None => true,
            Some((t, inclusive)) => {
                let ts: jiff::Timestamp = e["timestamp"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
                if inclusive { ts >= t } else { ts > t }
            }
        })
        .collect();
    let key = |e: &&Value| e["timestamp"].as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()).unwrap_or_default();
    matching.sort_by_key(key);
    if req["orderBy"].as_str() == Some("timestamp desc") {
        matching.reverse();
    }
    let page: Vec<Value> = matching.iter().skip(offset).take(size).map(|e| (*e).clone()).collect();
    let mut out = json!({"entries": page});
    if offset + size < matching.len() {
        out["nextPageToken"] = json!((offset + size).to_string());
    }
    axum::Json(out).into_response()
}

async fn admin_list(State(st): State<Arc<Shared>>) -> Response {
    let store = st.store.lock().unwrap();
    let jobs: Vec<Value> = store.jobs.values().map(|j| j.resource.clone()).collect();
    axum::Json(json!({"customJobs": jobs, "entries": store.entries.len()})).into_response()
}

async fn admin_state(
    State(st): State<Arc<Shared>>,
    Path(id): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    match st.set(&id, b["state"].as_str().unwrap_or(""), b["error"].as_str()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn admin_logs(
    State(st): State<Arc<Shared>>,
    Path(id): Path<String>,
    axum::Json(b): axum::Json<Value>,
) -> Response {
    let task = b["task"].as_str().unwrap_or("workerpool0-0");
    let severity = b["severity"].as_str().unwrap_or("INFO");
    let lines: Vec<String> =
        b["lines"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).map(str::to_string).collect();
    match st.emit(&id, task, severity, lines) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}
