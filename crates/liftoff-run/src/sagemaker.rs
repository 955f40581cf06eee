//! The `sagemaker` [`Runner`]: a run is a SageMaker training job
//! (`CreateTrainingJob`, watched with `DescribeTrainingJob`, stopped with
//! `StopTrainingJob`), its output read from CloudWatch Logs as it runs. The
//! calls are JSON 1.1, signed with the `aws` environment's credentials
//! ([`crate::aws_json`]). Jobs carry tags with their claim, so a restarted
//! agent finds them with `Search` and watches them again.

use crate::aws_json::{AwsError, AwsJson, JsonService};
use crate::lines::agent_line;
use crate::remote_job::{
    CloudCommand, FoundRemote, RemoteJob, RemoteService, RemoteState, agent_digest, check_cloud_run,
};
use crate::runner::{Adoptable, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob, StoredOutput};
use crate::{JobError, JobErrorCode, LogLine};
use async_trait::async_trait;
use liftoff_cloud::AwsEnv;
use liftoff_core::api::LogStream;
use liftoff_core::sagemaker_args::{self, TrainingRun, tags};
use liftoff_core::{ResourceType, Stage};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where SageMaker writes a training job's output.
pub const LOG_GROUP: &str = "/aws/sagemaker/TrainingJobs";

/// The SageMaker and CloudWatch Logs endpoints and how often to poll.
#[derive(Clone)]
pub struct SageMakerApi {
    aws: AwsJson,
    sagemaker: JsonService,
    logs: JsonService,
}

impl SageMakerApi {
    /// The regional endpoints, or `AWS_ENDPOINT_URL_SAGEMAKER` /
    /// `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` / the environment's override.
    pub fn new(env: AwsEnv) -> Self {
        let sagemaker = JsonService::resolve(
            &env,
            "sagemaker",
            "SageMaker",
            "AWS_ENDPOINT_URL_SAGEMAKER",
            "api.sagemaker.{region}.amazonaws.com",
        );
        let logs = JsonService::resolve(
            &env,
            "logs",
            "Logs_20140328",
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
            "logs.{region}.amazonaws.com",
        );
        Self { aws: AwsJson::new(env), sagemaker, logs }
    }

    /// Other endpoints (tests: the fake and moto).
    pub fn with_endpoints(mut self, sagemaker: &str, logs: &str) -> Self {
        self.sagemaker.endpoint = sagemaker.trim_end_matches('/').to_string();
        self.logs.endpoint = logs.trim_end_matches('/').to_string();
        self
    }

    pub async fn sagemaker(&self, op: &str, body: Value) -> Result<Value, AwsError> {
        self.aws.call(&self.sagemaker, op, &body).await
    }

    pub async fn logs(&self, op: &str, body: Value) -> Result<Value, AwsError> {
        self.aws.call(&self.logs, op, &body).await
    }
}

pub struct SageMakerRunner {
    api: SageMakerApi,
    poll: Duration,
}

impl SageMakerRunner {
    pub fn new(api: SageMakerApi, poll: Duration) -> Self {
        Self { api, poll }
    }
}

/// The checked options and what the run adds, until the image is known.
struct SageMakerPlan {
    options: Map<String, Value>,
    name: String,
    cmd: CloudCommand,
    env: BTreeMap<String, String>,
    tags: Vec<(&'static str, String)>,
}

/// A `CreateTrainingJob` body ready to send.
struct SageMakerStart {
    name: String,
    body: Value,
}

#[async_trait]
impl Runner for SageMakerRunner {
    fn resource(&self) -> ResourceType {
        ResourceType::Sagemaker
    }

    fn runs_remotely(&self) -> bool {
        true
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError> {
        let cmd = check_cloud_run(req, sagemaker_args::check_planned(&req.resource_args), "SageMaker", "ECR")?;
        let options = sagemaker_args::normalise(&req.resource_args).unwrap_or_default();
        let item = req.item;
        let plan = SageMakerPlan {
            options,
            name: sagemaker_args::job_name(&item.run_id, item.fence),
            cmd,
            env: req.env.clone(),
            tags: vec![
                (tags::RUN_ID, item.run_id.clone()),
                (tags::ITEM, item.id.clone()),
                (tags::FENCE, item.fence.to_string()),
                (tags::AGENT, agent_digest(req.agent_key)),
            ],
        };
        Ok(Plan::new(false, vec![], plan))
    }

    async fn prepare(&self, plan: Plan, built: Option<BuiltImage>, _logs: &LogSender) -> Result<Prepared, JobError> {
        let mut p: SageMakerPlan = plan.into_work()?;
        let image = p.cmd.apply(built);
        let role = p.options.get("RoleArn").and_then(Value::as_str).unwrap_or_default().to_string();
        if !role.starts_with("arn:") {
            // a bare role name: the caller's partition and account (STS GetCallerIdentity)
            let who = self.api.aws.env().identity().await.map_err(|e| {
                JobError::new(Stage::Run, JobErrorCode::Credentials, format!("could not expand RoleArn '{role}': {e}"))
            })?;
            let partition = liftoff_cloud::aws::partition(&who.who).unwrap_or("aws");
            let account = who.account.clone().unwrap_or_default();
            p.options.insert("RoleArn".into(), json!(sagemaker_args::role_arn(&role, partition, &account)));
        }
        let run = TrainingRun {
            name: Some(p.name.clone()),
            image: &image,
            entrypoint: &p.cmd.entrypoint,
            args: &p.cmd.args,
            env: &p.env,
            tags: &p.tags,
        };
        let (body, warnings) = sagemaker_args::training_job(&p.options, &run);
        let name = body["TrainingJobName"].as_str().unwrap_or(&p.name).to_string();
        let description = format!("SageMaker training job {name} from {image}");
        Ok(Prepared::new(warnings, description, SageMakerStart { name, body }))
    }

    async fn start(&self, prepared: Prepared, logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError> {
        let SageMakerStart { name, body } = prepared.into_work()?;
        let out = self.api.sagemaker("CreateTrainingJob", body).await.map_err(|e| {
            JobError::new(Stage::Run, JobErrorCode::Start, format!("SageMaker refused training job {name}: {e}"))
        })?;
        let arn = out["TrainingJobArn"].as_str().unwrap_or_default();
        agent_line(logs, format!("liftoff agent: created SageMaker training job {name} ({arn})")).await;
        let job = Arc::new(TrainingJob::new(self.api.clone(), name));
        Ok(Box::new(RemoteJob::follow(job, StoredOutput::default(), logs.clone(), self.poll)))
    }

    /// The training jobs tagged with this agent key's digest (`Search`).
    async fn adopt(&self, agent_key: &str) -> Result<Vec<Adoptable>, JobError> {
        let digest = agent_digest(agent_key);
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "Resource": "TrainingJob",
                "SearchExpression": {"Filters": [{"Name": format!("Tags.{}", tags::AGENT), "Operator": "Equals", "Value": digest}]},
                "MaxResults": 100,
            });
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let out = self.api.sagemaker("Search", body).await.map_err(|e| {
                JobError::new(
                    Stage::Agent,
                    JobErrorCode::Engine,
                    format!("could not search SageMaker for this agent's jobs: {e}"),
                )
            })?;
            for r in out["Results"].as_array().into_iter().flatten() {
                let job = &r["TrainingJob"];
                let tag = |k: &str| {
                    job["Tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|t| t["Key"] == k)
                        .and_then(|t| t["Value"].as_str())
                        .map(str::to_string)
                };
                let (Some(item_id), Some(fence), Some(run_id), Some(name)) = (
                    tag(tags::ITEM),
                    tag(tags::FENCE).and_then(|f| f.parse().ok()),
                    tag(tags::RUN_ID),
                    job["TrainingJobName"].as_str(),
                ) else {
                    continue;
                };
                let status = job["TrainingJobStatus"].as_str().unwrap_or("");
                let running = matches!(status, "InProgress" | "Stopping");
                let service = Arc::new(TrainingJob::new(self.api.clone(), name.to_string()));
                found.push(Adoptable {
                    item_id,
                    fence,
                    run_id,
                    kind: "SageMaker training job",
                    id: name.to_string(),
                    running,
                    work: Box::new(FoundRemote { service, poll: self.poll, running }),
                });
            }
            token = out["NextToken"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(found);
            }
        }
    }
}

/// One training job and its log streams.
pub struct TrainingJob {
    api: SageMakerApi,
    name: String,
    /// Instances (from `ResourceConfig`): with more than one, each line
    /// names the instance it came from.
    instances: std::sync::atomic::AtomicU64,
}

impl TrainingJob {
    fn new(api: SageMakerApi, name: String) -> Self {
        Self { api, name, instances: std::sync::atomic::AtomicU64::new(0) }
    }
}

/// Per log stream, the `nextForwardToken` to read from.
#[derive(Default)]
pub struct StreamCursors(BTreeMap<String, String>);

#[async_trait]
impl RemoteService for TrainingJob {
    type Cursor = StreamCursors;

    fn what(&self) -> String {
        format!("SageMaker training job {}", self.name)
    }

    async fn state(&self) -> Result<RemoteState, String> {
        let d = self
            .api
            .sagemaker("DescribeTrainingJob", json!({"TrainingJobName": self.name}))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(n) = d["ResourceConfig"]["InstanceCount"].as_u64() {
            self.instances.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(training_state(&d))
    }

    async fn request_stop(&self) -> Result<(), String> {
        match self.api.sagemaker("StopTrainingJob", json!({"TrainingJobName": self.name})).await {
            Ok(_) => Ok(()),
            // SageMaker refuses a stop once the job has ended (or is stopping): nothing to do
            Err(e) if e.code == "ValidationException" => match self.state().await {
                Ok(s) if s.is_end() || s == RemoteState::Stopping => Ok(()),
                _ => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every stream of the job (`DescribeLogStreams`, paginated), each read
    /// on from its token (`GetLogEvents`, paginated). A round's new events
    /// are merged by (timestamp, stream, position), the order a read from
    /// the start gives too.
    async fn read_logs(&self, cursor: &mut StreamCursors) -> Result<Vec<LogLine>, String> {
        let prefix = format!("{}/", self.name);
        let mut streams = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"logGroupName": LOG_GROUP, "logStreamNamePrefix": prefix});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let out = match self.api.logs("DescribeLogStreams", body).await {
                Ok(o) => o,
                // no log group until the first instance writes
                Err(e) if e.code == "ResourceNotFoundException" => return Ok(vec![]),
                Err(e) => return Err(e.to_string()),
            };
            streams.extend(
                out["logStreams"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["logStreamName"].as_str())
                    .map(str::to_string),
            );
            token = out["nextToken"].as_str().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        streams.sort();
        let mut events: Vec<(i64, String, usize, String)> = Vec::new();
        for stream in &streams {
            let mut index = 0usize;
            loop {
                let mut body = json!({"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": true});
                if let Some(t) = cursor.0.get(stream) {
                    body["nextToken"] = json!(t);
                }
                let out = self.api.logs("GetLogEvents", body).await.map_err(|e| e.to_string())?;
                let page = out["events"].as_array().cloned().unwrap_or_default();
                for e in &page {
                    let ts = e["timestamp"].as_i64().unwrap_or(0);
                    events.push((ts, stream.clone(), index, e["message"].as_str().unwrap_or("").to_string()));
                    index += 1;
                }
                let next = out["nextForwardToken"].as_str().map(str::to_string);
                let same = next.as_ref() == cursor.0.get(stream);
                if let Some(n) = next {
                    cursor.0.insert(stream.clone(), n);
                }
                // the end of a stream: the same token back, or an empty page
                if same || page.is_empty() {
                    break;
                }
            }
        }
        if streams.len() > 1 {
            events.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        }
        let several = self.instances.load(std::sync::atomic::Ordering::Relaxed) > 1;
        Ok(events
            .into_iter()
            .map(|(_, stream, _, message)| {
                let host = stream.strip_prefix(&prefix).unwrap_or(&stream);
                let host = host.rsplit_once('-').map_or(host, |(h, _)| h);
                let mut line = if several { format!("[{host}] {message}") } else { message };
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                (LogStream::Stdout, line)
            })
            .collect())
    }
}

/// `DescribeTrainingJob`'s answer in Liftoff's terms. A managed-spot job
/// that SageMaker gave up on after an interruption (it resumes one by
/// itself while `MaxWaitTimeInSeconds` allows) is preempted.
pub fn training_state(d: &Value) -> RemoteState {
    let secondary = d["SecondaryStatus"].as_str().unwrap_or("");
    let spot = d["EnableManagedSpotTraining"].as_bool().unwrap_or(false);
    let interrupted = spot && matches!(secondary, "Interrupted" | "MaxWaitTimeExceeded");
    match d["TrainingJobStatus"].as_str().unwrap_or("") {
        "InProgress"
            if matches!(
                secondary,
                "Starting"
                    | "Pending"
                    | "LaunchingMLInstances"
                    | "PreparingTrainingStack"
                    | "Downloading"
                    | "DownloadingTrainingImage"
            ) =>
        {
            RemoteState::Starting
        }
        "InProgress" => RemoteState::Running,
        "Stopping" => RemoteState::Stopping,
        "Completed" => RemoteState::Finished,
        "Failed" | "Stopped" if interrupted => RemoteState::Preempted(format!(
            "the managed spot instances were interrupted and SageMaker did not resume the job ({secondary}{})",
            d["FailureReason"].as_str().map(|r| format!(": {r}")).unwrap_or_default()
        )),
        "Failed" => RemoteState::Failed(
            d["FailureReason"]
                .as_str()
                .map_or_else(|| "the training job failed (no reason given)".to_string(), str::to_string),
        ),
        "Stopped" => RemoteState::Stopped,
        other => RemoteState::Failed(format!("unknown training job status '{other}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps() {
        let s = |status: &str, secondary: &str, spot: bool, reason: Option<&str>| {
            training_state(&json!({"TrainingJobStatus": status, "SecondaryStatus": secondary,
                "EnableManagedSpotTraining": spot, "FailureReason": reason}))
        };
        assert_eq!(s("InProgress", "Starting", false, None), RemoteState::Starting);
        assert_eq!(s("InProgress", "Training", false, None), RemoteState::Running);
        assert_eq!(s("InProgress", "Interrupted", true, None), RemoteState::Running, "SageMaker resumes it itself");
        assert_eq!(s("Stopping", "Stopping", false, None), RemoteState::Stopping);
        assert_eq!(s("Completed", "Completed", false, None), RemoteState::Finished);
        assert_eq!(s("Failed", "Failed", false, Some("OOM")), RemoteState::Failed("OOM".into()));
        assert_eq!(s("Stopped", "Stopped", false, None), RemoteState::Stopped);
        assert!(matches!(s("Stopped", "MaxWaitTimeExceeded", true, None), RemoteState::Preempted(_)));
        assert!(
            matches!(s("Failed", "Interrupted", true, Some("spot")), RemoteState::Preempted(m) if m.contains("spot"))
        );
    }
}
