//! What the cloud runners (`sagemaker`, `vertex`) share: a job that runs in
//! a service, watched by polling its state and its logs. [`RemoteJob`] is
//! the [`RunningJob`] (and, found again after a restart, the
//! [`AdoptedWork`]) over any [`RemoteService`].

use crate::lines::agent_line;
use crate::runner::{AdoptedWork, LogSender, RunningJob, StoredOutput};
use crate::{JobError, JobErrorCode, LogLine};
use async_trait::async_trait;
use liftoff_core::Stage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where a remote job is, in Liftoff's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    /// Queued or provisioning.
    Starting,
    Running,
    /// A stop was asked for and is under way.
    Stopping,
    Finished,
    /// Failed, with the service's reason.
    Failed(String),
    /// Stopped (by us or anyone else).
    Stopped,
    /// Taken away by the resource (a spot interruption not resumed), with why.
    Preempted(String),
}

impl RemoteState {
    pub fn is_end(&self) -> bool {
        matches!(self, Self::Finished | Self::Failed(_) | Self::Stopped | Self::Preempted(_))
    }
}

/// One job in a service: its state, a stop, its logs.
#[async_trait]
pub trait RemoteService: Send + Sync + 'static {
    /// Where its log reader is; starts at the log's beginning.
    type Cursor: Default + Send + 'static;

    /// `training job r1-3`, for messages.
    fn what(&self) -> String;

    async fn state(&self) -> Result<RemoteState, String>;

    /// Asks the service to stop the job; a job already ended is no error.
    async fn request_stop(&self) -> Result<(), String>;

    /// The lines written since `cursor`, in the log's order, moving it on.
    /// Reading from a fresh cursor gives the same lines in the same order
    /// (so a re-adopted job skips what the server holds, byte for byte).
    async fn read_logs(&self, cursor: &mut Self::Cursor) -> Result<Vec<LogLine>, String>;
}

/// A remote job being watched: a task polls its state and logs every
/// `poll` and publishes the end.
pub struct RemoteJob<S: RemoteService> {
    service: Arc<S>,
    end: watch::Receiver<Option<RemoteState>>,
    task: Option<JoinHandle<()>>,
    /// How often the service is asked.
    poll: Duration,
}

impl<S: RemoteService> RemoteJob<S> {
    /// Watches `service`'s job from its log's start, passing on only what
    /// `stored` says the server does not hold yet.
    pub fn follow(service: Arc<S>, stored: StoredOutput, logs: LogSender, poll: Duration) -> Self {
        let (tx, end) = watch::channel(None);
        let task = tokio::spawn(watch_loop(service.clone(), stored, logs, poll, tx));
        Self { service, end, task: Some(task), poll }
    }

    async fn ended(&mut self) -> Result<RemoteState, JobError> {
        let state = self.end.wait_for(Option::is_some).await.map(|s| s.clone());
        match state {
            Ok(Some(s)) => Ok(s),
            _ => Err(JobError::new(Stage::Run, JobErrorCode::Wait, format!("lost track of {}", self.service.what()))),
        }
    }
}

async fn watch_loop<S: RemoteService>(
    service: Arc<S>,
    mut stored: StoredOutput,
    logs: LogSender,
    poll: Duration,
    end: watch::Sender<Option<RemoteState>>,
) {
    let mut cursor = S::Cursor::default();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<RemoteState> = None;
    let mut log_error_shown = false;
    loop {
        tick.tick().await;
        // the state first: once it has ended, the read after it is the last
        let state = match service.state().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = %service.what(), error = %e, "could not read the job's state; will retry");
                continue;
            }
        };
        match service.read_logs(&mut cursor).await {
            Ok(lines) => {
                for (stream, line) in lines {
                    if let Some(line) = stored.pass(stream, line)
                        && logs.send((stream, line)).await.is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) if !log_error_shown => {
                log_error_shown = true;
                agent_line(&logs, format!("liftoff agent: could not read {}'s logs (will retry): {e}", service.what()))
                    .await;
            }
            Err(e) => tracing::warn!(job = %service.what(), error = %e, "could not read the job's logs"),
        }
        if last.as_ref() != Some(&state) {
            tracing::info!(job = %service.what(), state = ?state, "remote job state");
            last = Some(state.clone());
        }
        if state.is_end() {
            end.send_replace(Some(state));
            return;
        }
    }
}

/// How long after its grace period a stopped job may take to reach its end
/// before the agent reports it stopped anyway.
const STOP_BOUND: Duration = Duration::from_secs(60);

#[async_trait]
impl<S: RemoteService> RunningJob for RemoteJob<S> {
    async fn wait(&mut self) -> Result<i32, JobError> {
        match self.ended().await? {
            RemoteState::Finished => Ok(0),
            RemoteState::Failed(reason) => Err(JobError::new(Stage::Run, JobErrorCode::RemoteFailed, reason)),
            RemoteState::Preempted(why) => Err(JobError::new(Stage::Run, JobErrorCode::Preempted, why)),
            _ => Err(JobError::new(
                Stage::Run,
                JobErrorCode::StoppedElsewhere,
                format!("{} was stopped outside Liftoff", self.service.what()),
            )),
        }
    }

    async fn stop(&mut self, grace: Duration) -> Result<i32, JobError> {
        if let Err(e) = self.service.request_stop().await {
            return Err(JobError::new(
                Stage::Run,
                JobErrorCode::Stop,
                format!("could not stop {}: {e}", self.service.what()),
            ));
        }
        let bound = grace + STOP_BOUND + self.poll;
        match tokio::time::timeout(bound, self.ended()).await {
            Ok(Ok(RemoteState::Finished)) => Ok(0),
            Ok(Ok(_)) => Ok(143),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(JobError::new(
                Stage::Run,
                JobErrorCode::Stop,
                format!("{} had not stopped {} s after the stop request", self.service.what(), bound.as_secs()),
            )),
        }
    }

    async fn detach(mut self: Box<Self>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn cleanup(mut self: Box<Self>) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl<S: RemoteService> Drop for RemoteJob<S> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A job found again after an agent restart, before it is watched.
pub struct FoundRemote<S: RemoteService> {
    pub service: Arc<S>,
    pub poll: Duration,
    /// Not ended when found: an orphan must be stopped. (An ended job, one
    /// of the key's past runs, needs nothing.)
    pub running: bool,
}

#[async_trait]
impl<S: RemoteService> AdoptedWork for FoundRemote<S> {
    fn resume(self: Box<Self>, stored: StoredOutput, logs: LogSender) -> Box<dyn RunningJob> {
        Box::new(RemoteJob::follow(self.service, stored, logs, self.poll))
    }

    /// Its lease is gone: the run belongs to another claim now.
    async fn discard(self: Box<Self>) {
        if !self.running {
            return;
        }
        if let Err(e) = self.service.request_stop().await {
            tracing::warn!(job = %self.service.what(), error = %e, "could not stop an orphaned job");
        }
    }
}

/// What a cloud run executes: an image and its command, until the image
/// the agent builds (and its command) replaces them.
pub struct CloudCommand {
    pub image: Option<String>,
    /// Empty: the image's own entrypoint.
    pub entrypoint: Vec<String>,
    pub args: Vec<String>,
}

impl CloudCommand {
    /// Takes the image the agent built, with the command the build set, if
    /// any; the image to run.
    pub fn apply(&mut self, built: Option<crate::runner::BuiltImage>) -> String {
        if let Some(b) = built {
            self.image = Some(b.image);
            if !b.entrypoint.is_empty() {
                self.entrypoint = b.entrypoint;
                self.args.clear();
            }
        }
        self.image.clone().unwrap_or_default()
    }
}

/// The checks every cloud runner makes of a run before planning it: the
/// options' `problems` (fields named as `resource_args.<...>`) and an image
/// to run (`service` runs images from `registry`).
pub fn check_cloud_run(
    req: &crate::runner::RunRequest<'_>,
    problems: Vec<liftoff_core::resource::ConfigProblem>,
    service: &str,
    registry: &str,
) -> Result<CloudCommand, JobError> {
    let spec = &req.item.spec;
    let mut problems: Vec<String> = problems
        .into_iter()
        .map(|p| format!("{}: {}", p.field.replacen("config", "resource_args", 1), p.message))
        .collect();
    if req.image.is_none() && !req.will_build {
        problems.push(format!(
            "job '{}' has no image, and this agent has no builder to build one: {service} runs images; give the \
             agent a builder with a registry {service} can pull from ({registry}), or launch an image job",
            spec.job
        ));
    }
    if !problems.is_empty() {
        return Err(JobError::new(Stage::Agent, JobErrorCode::Spec, problems.join("; ")));
    }
    let args = match &spec.source {
        liftoff_core::JobSource::Image(i) if spec.args.is_empty() => i.args.clone(),
        _ => spec.args.clone(),
    };
    Ok(CloudCommand { image: req.image.clone(), entrypoint: spec.entrypoint.clone(), args })
}

/// A digest of the agent key, for tags and labels (whose values allow few
/// characters and should not spell out a host name).
pub fn agent_digest(agent_key: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(agent_key.as_bytes())[..8])
}

/// At most `limit` bytes of a response's body; more is an error.
pub async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.without_url().to_string())? {
        if out.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The poll interval of the cloud runners: `LIFTOFF_CLOUD_POLL_MS`, else 5 s.
pub fn poll_from_env() -> Duration {
    std::env::var("LIFTOFF_CLOUD_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms >= 10)
        .map_or(Duration::from_secs(5), Duration::from_millis)
}
