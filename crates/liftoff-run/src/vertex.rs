//! The `vertex` [`Runner`]: a run is a Vertex AI `CustomJob`, created,
//! read and cancelled through the REST API with the `gcp` environment's
//! tokens, its output read from Cloud Logging (`entries:list`) as it runs.
//! Jobs carry labels with their claim, so a restarted agent finds them by
//! label and watches them again.

use crate::lines::agent_line;
use crate::remote_job::{
    CloudCommand, FoundRemote, RemoteJob, RemoteService, RemoteState, agent_digest, check_cloud_run, read_bounded,
};
use crate::runner::{Adoptable, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob, StoredOutput};
use crate::{JobError, JobErrorCode, LogLine};
use async_trait::async_trait;
use liftoff_cloud::GcpEnv;
use liftoff_core::api::LogStream;
use liftoff_core::vertex_args::{self, CustomJobRun, labels};
use liftoff_core::{ResourceType, Stage};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const MAX_ANSWER: usize = 8 * 1024 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The label Vertex puts on each log entry: which replica wrote it.
pub const TASK_LABEL: &str = "ml.googleapis.com/task_name";

/// The Vertex AI and Cloud Logging endpoints, with the environment's tokens.
#[derive(Clone)]
pub struct VertexApi {
    env: GcpEnv,
    http: reqwest::Client,
    /// `https://<region>-aiplatform.googleapis.com`
    vertex: String,
    /// `https://logging.googleapis.com`
    logging: String,
}

/// A refused call: Google's `error.status` (`NOT_FOUND`...) and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct GcpError {
    pub code: u16,
    pub status: String,
    pub message: String,
}

impl GcpError {
    fn local(status: &str, message: String) -> Self {
        Self { code: 0, status: status.into(), message }
    }
}

impl VertexApi {
    /// The regional endpoint, or `LIFTOFF_VERTEX_ENDPOINT` and `LIFTOFF_LOGGING_ENDPOINT`.
    pub fn new(env: GcpEnv) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let vertex = var("LIFTOFF_VERTEX_ENDPOINT")
            .unwrap_or_else(|| format!("https://{}-aiplatform.googleapis.com", env.region()));
        let logging = var("LIFTOFF_LOGGING_ENDPOINT").unwrap_or_else(|| "https://logging.googleapis.com".into());
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().unwrap_or_default();
        Self { env, http, vertex: vertex.trim_end_matches('/').into(), logging: logging.trim_end_matches('/').into() }
    }

    /// Other endpoints (tests: the fake).
    pub fn with_endpoints(mut self, vertex: &str, logging: &str) -> Self {
        self.vertex = vertex.trim_end_matches('/').into();
        self.logging = logging.trim_end_matches('/').into();
        self
    }

    /// `projects/<p>/locations/<r>`.
    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.env.project(), self.env.region())
    }

    pub fn project(&self) -> &str {
        self.env.project()
    }

    /// `GET` or `POST` `/v1/<path>` on Vertex.
    pub async fn vertex(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, GcpError> {
        self.call(method, format!("{}/v1/{path}", self.vertex), body).await
    }

    /// `POST /v2/entries:list` on Cloud Logging.
    pub async fn list_entries(&self, body: &Value) -> Result<Value, GcpError> {
        self.call(reqwest::Method::POST, format!("{}/v2/entries:list", self.logging), Some(body)).await
    }

    async fn call(&self, method: reqwest::Method, url: String, body: Option<&Value>) -> Result<Value, GcpError> {
        let token = self.env.access_token().await.map_err(|e| GcpError::local("CREDENTIALS", e.to_string()))?;
        let mut req = self.http.request(method, &url).bearer_auth(token.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GcpError::local("UNAVAILABLE", format!("cannot reach {url}: {}", e.without_url())))?;
        let code = resp.status().as_u16();
        let bytes = read_bounded(resp, MAX_ANSWER).await.map_err(|e| GcpError::local("UNAVAILABLE", e))?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&code) {
            return Ok(json);
        }
        let e = &json["error"];
        Err(GcpError {
            code,
            status: e["status"].as_str().map_or_else(|| format!("HTTP {code}"), str::to_string),
            message: e["message"].as_str().unwrap_or("").to_string(),
        })
    }
}

pub struct VertexRunner {
    api: VertexApi,
    poll: Duration,
}

impl VertexRunner {
    pub fn new(api: VertexApi, poll: Duration) -> Self {
        Self { api, poll }
    }
}

struct VertexPlan {
    args: Value,
    run_id: String,
    cmd: CloudCommand,
    env: BTreeMap<String, String>,
    labels: Vec<(&'static str, String)>,
}

#[async_trait]
impl Runner for VertexRunner {
    fn resource(&self) -> ResourceType {
        ResourceType::Vertex
    }

    fn runs_remotely(&self) -> bool {
        true
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError> {
        let cmd =
            check_cloud_run(req, vertex_args::check_planned(&req.resource_args), "Vertex AI", "Artifact Registry")?;
        let item = req.item;
        Ok(Plan::new(
            false,
            vec![],
            VertexPlan {
                args: vertex_args::unwrap(&req.resource_args).clone(),
                run_id: item.run_id.clone(),
                cmd,
                env: req.env.clone(),
                labels: vec![
                    (labels::RUN_ID, vertex_args::label_value(&item.run_id)),
                    (labels::FENCE, item.fence.to_string()),
                    (labels::AGENT, agent_digest(req.agent_key)),
                ],
            },
        ))
    }

    async fn prepare(&self, plan: Plan, built: Option<BuiltImage>, _logs: &LogSender) -> Result<Prepared, JobError> {
        let mut p: VertexPlan = plan.into_work()?;
        let image = p.cmd.apply(built);
        let job = vertex_args::custom_job(
            &p.args,
            &CustomJobRun {
                display_name: &p.run_id,
                image: &image,
                command: &p.cmd.entrypoint,
                args: &p.cmd.args,
                env: &p.env,
                labels: &p.labels,
            },
        );
        let description = format!("Vertex AI custom job {} from {image} in {}", p.run_id, self.api.parent());
        Ok(Prepared::new(vec![], description, job))
    }

    async fn start(&self, prepared: Prepared, logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError> {
        let job: Value = prepared.into_work()?;
        let path = format!("{}/customJobs", self.api.parent());
        let created = self.api.vertex(reqwest::Method::POST, &path, Some(&job)).await.map_err(|e| {
            JobError::new(Stage::Run, JobErrorCode::Start, format!("Vertex AI refused the custom job: {e}"))
        })?;
        let name = created["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(JobError::new(
                Stage::Run,
                JobErrorCode::Start,
                "Vertex AI created a custom job without a name",
            ));
        }
        agent_line(logs, format!("liftoff agent: created Vertex AI custom job {name}")).await;
        let service = Arc::new(CustomJob::new(self.api.clone(), name, replicas(&created)));
        Ok(Box::new(RemoteJob::follow(service, StoredOutput::default(), logs.clone(), self.poll)))
    }

    /// The custom jobs labelled with this agent key's digest; their item
    /// and run ids come from the variables the job was given.
    async fn adopt(&self, agent_key: &str) -> Result<Vec<Adoptable>, JobError> {
        let filter = format!("labels.{}=\"{}\"", labels::AGENT, agent_digest(agent_key));
        let mut found = Vec::new();
        let mut token = String::new();
        loop {
            let mut path = format!("{}/customJobs?filter={}", self.api.parent(), encode(&filter));
            if !token.is_empty() {
                path.push_str(&format!("&pageToken={}", encode(&token)));
            }
            let out = self.api.vertex(reqwest::Method::GET, &path, None).await.map_err(|e| {
                JobError::new(
                    Stage::Agent,
                    JobErrorCode::Engine,
                    format!("could not list this agent's Vertex AI jobs: {e}"),
                )
            })?;
            for job in out["customJobs"].as_array().into_iter().flatten() {
                let env_of = |k: &str| {
                    job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["name"] == k)
                        .and_then(|e| e["value"].as_str())
                        .map(str::to_string)
                };
                let (Some(item_id), Some(run_id), Some(fence), Some(name)) = (
                    env_of("LIFTOFF_ITEM_ID"),
                    env_of("LIFTOFF_RUN_ID"),
                    job["labels"][labels::FENCE].as_str().and_then(|f| f.parse().ok()),
                    job["name"].as_str(),
                ) else {
                    continue;
                };
                let running = !job_state(job).is_end();
                let service = Arc::new(CustomJob::new(self.api.clone(), name.to_string(), replicas(job)));
                found.push(Adoptable {
                    item_id,
                    fence,
                    run_id,
                    kind: "Vertex AI custom job",
                    id: name.rsplit('/').next().unwrap_or(name).to_string(),
                    running,
                    work: Box::new(FoundRemote { service, poll: self.poll, running }),
                });
            }
            token = out["nextPageToken"].as_str().unwrap_or("").to_string();
            if token.is_empty() {
                return Ok(found);
            }
        }
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Replicas across the job's pools.
fn replicas(job: &Value) -> u64 {
    job["jobSpec"]["workerPoolSpecs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            p["replicaCount"].as_u64().or_else(|| p["replicaCount"].as_str().and_then(|s| s.parse().ok())).unwrap_or(1)
        })
        .sum()
}

/// A custom job: `projects/<p>/locations/<r>/customJobs/<id>`.
pub struct CustomJob {
    api: VertexApi,
    name: String,
    /// With more than one replica, each line names the replica it came from.
    replicas: u64,
}

impl CustomJob {
    fn new(api: VertexApi, name: String, replicas: u64) -> Self {
        Self { api, name, replicas }
    }

    fn id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// Cloud Logging's position: the last timestamp read, and the entries
/// already passed on at it (the next read starts at that timestamp, so as
/// to miss none written in the same instant).
#[derive(Default)]
pub struct EntryCursor {
    since: Option<jiff::Timestamp>,
    seen_at_since: HashSet<String>,
}

#[async_trait]
impl RemoteService for CustomJob {
    type Cursor = EntryCursor;

    fn what(&self) -> String {
        format!("Vertex AI custom job {}", self.id())
    }

    async fn state(&self) -> Result<RemoteState, String> {
        let job = self.api.vertex(reqwest::Method::GET, &self.name, None).await.map_err(|e| e.to_string())?;
        Ok(job_state(&job))
    }

    async fn request_stop(&self) -> Result<(), String> {
        match self.api.vertex(reqwest::Method::POST, &format!("{}:cancel", self.name), Some(&json!({}))).await {
            Ok(_) => Ok(()),
            // cancelling an ended job is refused: nothing to do
            Err(e) if e.status == "FAILED_PRECONDITION" => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn read_logs(&self, cursor: &mut EntryCursor) -> Result<Vec<LogLine>, String> {
        let mut filter = format!("resource.type=\"ml_job\" AND resource.labels.job_id=\"{}\"", self.id());
        if let Some(t) = cursor.since {
            filter.push_str(&format!(" AND timestamp>=\"{t}\""));
        }
        let mut entries: Vec<(jiff::Timestamp, String, Value)> = Vec::new();
        let mut token = String::new();
        loop {
            let mut body = json!({
                "resourceNames": [format!("projects/{}", self.api.project())],
                "filter": filter,
                "orderBy": "timestamp asc",
                "pageSize": 1000,
            });
            if !token.is_empty() {
                body["pageToken"] = json!(token);
            }
            let out = self.api.list_entries(&body).await.map_err(|e| e.to_string())?;
            for e in out["entries"].as_array().into_iter().flatten() {
                let (Some(ts), Some(id)) =
                    (e["timestamp"].as_str().and_then(|t| t.parse().ok()), e["insertId"].as_str())
                else {
                    continue;
                };
                entries.push((ts, id.to_string(), e.clone()));
            }
            token = out["nextPageToken"].as_str().unwrap_or("").to_string();
            if token.is_empty() {
                break;
            }
        }
        entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut lines = Vec::new();
        for (ts, id, e) in entries {
            if Some(ts) < cursor.since || (Some(ts) == cursor.since && cursor.seen_at_since.contains(&id)) {
                continue;
            }
            if Some(ts) != cursor.since {
                cursor.since = Some(ts);
                cursor.seen_at_since.clear();
            }
            cursor.seen_at_since.insert(id);
            lines.push(entry_line(&e, self.replicas > 1));
        }
        Ok(lines)
    }
}

/// A log entry as a line: ERROR and worse to stderr (Vertex logs a
/// container's stderr at ERROR), prefixed with the replica when there are several.
fn entry_line(e: &Value, name_replica: bool) -> LogLine {
    let text = e["textPayload"].as_str().map(str::to_string).unwrap_or_else(|| {
        e["jsonPayload"]["message"].as_str().map_or_else(|| e["jsonPayload"].to_string(), str::to_string)
    });
    let stream = match e["severity"].as_str().unwrap_or("") {
        "ERROR" | "CRITICAL" | "ALERT" | "EMERGENCY" => LogStream::Stderr,
        _ => LogStream::Stdout,
    };
    let mut line = match e["labels"][TASK_LABEL].as_str() {
        Some(task) if name_replica => format!("[{task}] {text}"),
        _ => text,
    };
    if !line.ends_with('\n') {
        line.push('\n');
    }
    (stream, line)
}

/// A custom job's `state` in Liftoff's terms (every `JobState`).
pub fn job_state(job: &Value) -> RemoteState {
    let error = || job["error"]["message"].as_str().filter(|m| !m.is_empty()).map(str::to_string);
    match job["state"].as_str().unwrap_or("") {
        "JOB_STATE_QUEUED" | "JOB_STATE_PENDING" | "JOB_STATE_UNSPECIFIED" => RemoteState::Starting,
        "JOB_STATE_RUNNING" | "JOB_STATE_UPDATING" | "JOB_STATE_PAUSED" => RemoteState::Running,
        "JOB_STATE_SUCCEEDED" => RemoteState::Finished,
        "JOB_STATE_FAILED" => {
            RemoteState::Failed(error().unwrap_or_else(|| "the custom job failed (no message given)".into()))
        }
        "JOB_STATE_CANCELLING" => RemoteState::Stopping,
        "JOB_STATE_CANCELLED" => RemoteState::Stopped,
        "JOB_STATE_EXPIRED" => {
            RemoteState::Failed(error().unwrap_or_else(|| "the custom job expired before it ran".into()))
        }
        "JOB_STATE_PARTIALLY_SUCCEEDED" => {
            RemoteState::Failed(error().unwrap_or_else(|| "the custom job only partially succeeded".into()))
        }
        other => RemoteState::Failed(format!("unknown custom job state '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_maps() {
        let s = |state: &str| job_state(&json!({"state": state, "error": {"message": "boom"}}));
        assert_eq!(s("JOB_STATE_QUEUED"), RemoteState::Starting);
        assert_eq!(s("JOB_STATE_PENDING"), RemoteState::Starting);
        assert_eq!(s("JOB_STATE_RUNNING"), RemoteState::Running);
        assert_eq!(s("JOB_STATE_SUCCEEDED"), RemoteState::Finished);
        assert_eq!(s("JOB_STATE_FAILED"), RemoteState::Failed("boom".into()));
        assert_eq!(s("JOB_STATE_CANCELLING"), RemoteState::Stopping);
        assert_eq!(s("JOB_STATE_CANCELLED"), RemoteState::Stopped);
        assert_eq!(s("JOB_STATE_EXPIRED"), RemoteState::Failed("boom".into()));
        assert_eq!(
            job_state(&json!({"state": "JOB_STATE_EXPIRED"})),
            RemoteState::Failed("the custom job expired before it ran".into())
        );
    }

    #[test]
    fn entries_become_lines_by_severity_and_replica() {
        let e = json!({"textPayload": "hi", "severity": "ERROR", "labels": {TASK_LABEL: "workerpool0-1"}});
        assert_eq!(entry_line(&e, true), (LogStream::Stderr, "[workerpool0-1] hi\n".to_string()));
        assert_eq!(entry_line(&e, false), (LogStream::Stderr, "hi\n".to_string()));
        let j = json!({"jsonPayload": {"message": "m"}, "severity": "INFO"});
        assert_eq!(entry_line(&j, false), (LogStream::Stdout, "m\n".to_string()));
    }
}
