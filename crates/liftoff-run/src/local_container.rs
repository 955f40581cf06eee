//! The `local-container` [`Runner`]: a run in a container on the agent's
//! engine (see [`crate::container`]). Its containers carry labels, so an
//! agent started again after a crash finds and re-adopts them.

use crate::container::{
    CODE_MOUNT, ContainerRunner, ContainerSpec, FoundContainer, IDENTITY_TOKEN_USER, RunningContainer,
};
use crate::lines::agent_line;
use crate::runner::{
    Adoptable, AdoptedWork, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob, StoredOutput,
};
use crate::{JobError, JobErrorCode, SharedEngine};
use async_trait::async_trait;
use liftoff_core::docker_options::{self, ContainerOptions};
use liftoff_core::{ImageRef, JobSource, ResourceType, Stage};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{OnceCell, mpsc};
use tokio::task::JoinHandle;

/// Container labels: how a restarted agent finds the runs it left behind.
pub mod labels {
    /// Stable per agent installation (`--agent-key`, default: host and entity).
    pub const AGENT_KEY: &str = "liftoff.agent-key";
    /// The id of the agent process that started the container.
    pub const AGENT_ID: &str = "liftoff.agent-id";
    pub const ITEM: &str = "liftoff.item";
    pub const FENCE: &str = "liftoff.fence";
    pub const RUN: &str = "liftoff.run";
}

/// Runs jobs in containers on one engine, connected on first use and then
/// shared by every job of the agent.
pub struct LocalContainerRunner {
    /// The agent's one engine connection (shared with its builder).
    shared: SharedEngine,
    /// The Docker client config dir with registry credentials; `None`:
    /// `DOCKER_CONFIG`, else `~/.docker`.
    docker_config: Option<PathBuf>,
    engine: OnceCell<ContainerRunner>,
}

impl LocalContainerRunner {
    pub fn new(shared: SharedEngine, docker_config: Option<PathBuf>) -> Self {
        Self { shared, docker_config, engine: OnceCell::new() }
    }

    /// The engine, connected once; a failed connection is tried again next time.
    async fn engine(&self) -> anyhow::Result<&ContainerRunner> {
        self.engine
            .get_or_try_init(|| async {
                Ok(ContainerRunner::with_engine(std::sync::Arc::new(self.shared.get().await?.clone())))
            })
            .await
    }
}

/// The checked container, ready to pull and start.
struct ContainerPlan(Box<ContainerSpec>);

#[async_trait]
impl Runner for LocalContainerRunner {
    fn resource(&self) -> ResourceType {
        ResourceType::LocalContainer
    }

    fn runs_remotely(&self) -> bool {
        false
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError> {
        let spec = &req.item.spec;
        let mut problems = Vec::new();
        let options = match docker_options::parse(&req.resource_args) {
            Ok(o) => o,
            Err(errors) => {
                problems.extend(errors.iter().map(ToString::to_string));
                ContainerOptions::default()
            }
        };
        if req.secure_mode && options.command.is_some() {
            problems.push(
                "this agent is configured to lock \"command\" in the container spec, but the job's resource_args \
                 set it"
                    .to_string(),
            );
        }
        match req.image.as_deref().map(|i| (i, ImageRef::parse(i))) {
            None if req.will_build => {}
            Some((_, Ok(_))) => {}
            Some((image, Err(e))) => problems.push(format!("image '{image}' is not a valid reference: {e}")),
            None => problems.push(format!(
                "job '{}' has no image, and this agent has no builder to build one (Attempted build with noop \
                 builder): give the agent a builder in launch-config.yaml (builder: {{type: docker}}), or give the \
                 job a base_image, which runs it with its code mounted at {CODE_MOUNT}. Jobs sourced from git \
                 repos and code archives need a builder; jobs sourced from images do not",
                spec.job
            )),
        }
        match (&req.image, problems.is_empty()) {
            (image, true) if image.is_some() || req.will_build => {
                let container = container_spec(req, image.clone().unwrap_or_default(), options);
                Ok(Plan::new(!matches!(spec.source, JobSource::Image(_)), vec![], ContainerPlan(Box::new(container))))
            }
            _ => Err(JobError::new(Stage::Agent, JobErrorCode::Spec, problems.join("; "))),
        }
    }

    async fn prepare(&self, plan: Plan, built: Option<BuiltImage>, logs: &LogSender) -> Result<Prepared, JobError> {
        let ContainerPlan(mut spec) = plan.into_work()?;
        let engine = self.engine().await.map_err(|e| JobError::from_chain(Stage::Run, JobErrorCode::Engine, &e))?;
        let mut built_auth = None;
        if let Some(b) = built {
            // the code is in the image: nothing is mounted, the image's WORKDIR holds
            spec.image = b.image;
            spec.code_mount = None;
            spec.workdir = None;
            if !b.entrypoint.is_empty() {
                spec.entrypoint = Some(b.entrypoint);
            }
            built_auth = b.auth;
        }
        let auth = match built_auth {
            Some(auth) => Some(auth),
            None => crate::registry_auth::pull_auth(&spec.image, self.docker_config.as_deref())
                .await
                .map_err(|e| JobError::from_chain(Stage::Build, JobErrorCode::Credentials, &e))?,
        };
        agent_line(
            logs,
            format!(
                "liftoff agent: pulling {}{}",
                spec.image,
                match auth.as_ref().map(|a| a.username.as_str()) {
                    None => String::new(),
                    Some(IDENTITY_TOKEN_USER) => " with an identity token".to_string(),
                    Some(user) => format!(" as {user}"),
                }
            ),
        )
        .await;
        let warnings = engine
            .ensure_image(&spec.image, auth, logs)
            .await
            .map_err(|e| JobError::from_chain(Stage::Build, JobErrorCode::ImagePull, &e))?
            .into_iter()
            .collect();
        let cmd: Vec<&str> = spec.entrypoint.iter().flatten().chain(spec.cmd.iter()).map(String::as_str).collect();
        let description = format!("container {} from {} ({})", spec.name, spec.image, cmd.join(" "));
        Ok(Prepared::new(warnings, description, ContainerPlan(spec)))
    }

    async fn start(&self, prepared: Prepared, logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError> {
        let ContainerPlan(spec) = prepared.into_work()?;
        let failed = |e: anyhow::Error| JobError::from_chain(Stage::Run, JobErrorCode::Start, &e);
        let engine = self.engine().await.map_err(failed)?;
        let container = engine.start(&spec).await.map_err(failed)?;
        Ok(Box::new(ContainerJob::follow(container, StoredOutput::default(), logs.clone())))
    }

    /// This key's containers, running or exited. Without an engine there is
    /// nothing to adopt, unless the agent was told where its engine is.
    async fn adopt(&self, agent_key: &str) -> Result<Vec<Adoptable>, JobError> {
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(_) if !self.shared.configured() => return Ok(vec![]),
            Err(e) => return Err(JobError::from_chain(Stage::Agent, JobErrorCode::Engine, &e)),
        };
        let found = engine
            .list_labelled(labels::AGENT_KEY, agent_key)
            .await
            .map_err(|e| JobError::from_chain(Stage::Agent, JobErrorCode::Engine, &e))?;
        Ok(found
            .into_iter()
            .map(|c| {
                let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
                Adoptable {
                    item_id: label(labels::ITEM),
                    fence: label(labels::FENCE).parse::<i64>().unwrap_or(-1),
                    run_id: label(labels::RUN),
                    kind: "container",
                    id: c.id[..c.id.len().min(12)].to_string(),
                    running: c.running,
                    work: Box::new(FoundWork { engine: engine.clone(), found: c }),
                }
            })
            .collect())
    }
}

fn container_spec(req: &RunRequest<'_>, image: String, options: ContainerOptions) -> ContainerSpec {
    let (item, spec) = (req.item, &req.item.spec);
    let mut env = req.env.clone();
    // `options.env` wins over the run's env, as `docker run -e` does
    for (k, v) in &options.env {
        env.insert(k.clone(), v.clone());
    }
    let is_image_job = matches!(spec.source, JobSource::Image(_));
    let cmd = match &spec.source {
        JobSource::Image(i) if spec.args.is_empty() => i.args.clone(),
        _ => spec.args.clone(),
    };
    let entrypoint = (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone());
    // A base-image job runs its code from the mount (and, unless told
    // otherwise, in it), as the reference does: see `CODE_MOUNT`.
    let code_mount = (!is_image_job).then(|| req.dir.to_path_buf());
    let labels = BTreeMap::from([
        (labels::AGENT_KEY.to_string(), req.agent_key.to_string()),
        (labels::AGENT_ID.to_string(), req.agent_id.to_string()),
        (labels::ITEM.to_string(), item.id.clone()),
        (labels::FENCE.to_string(), item.fence.to_string()),
        (labels::RUN.to_string(), item.run_id.clone()),
    ]);
    ContainerSpec {
        name: options.name.clone().unwrap_or_else(|| format!("liftoff-{}-{}", item.run_id, item.fence)),
        image,
        entrypoint,
        cmd,
        env,
        options,
        code_mount,
        workdir: None,
        host_network: is_loopback_url(req.base_url),
        labels,
    }
}

/// A server on loopback is reachable from a container only on the host's network.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A started or re-adopted container and the task following its output.
struct ContainerJob {
    container: RunningContainer,
    log_task: Option<JoinHandle<()>>,
}

impl ContainerJob {
    /// Follows the container's output from its start, skipping what
    /// `stored` says was shipped already (by an agent before a restart).
    fn follow(container: RunningContainer, stored: StoredOutput, logs: LogSender) -> Self {
        let follower = container.clone();
        let log_task = tokio::spawn(async move {
            let result = if stored == StoredOutput::default() {
                follower.stream_logs(0, logs.clone()).await
            } else {
                let (tx, mut rx) = mpsc::channel(256);
                let forward = async {
                    let mut stored = stored;
                    while let Some((stream, line)) = rx.recv().await {
                        if let Some(line) = stored.pass(stream, line)
                            && logs.send((stream, line)).await.is_err()
                        {
                            break; // dropping `rx` ends the follower too
                        }
                    }
                };
                tokio::join!(follower.stream_logs(0, tx), forward).0
            };
            if let Err(e) = result {
                agent_line(&logs, format!("liftoff agent: lost the container's output: {e:#}")).await;
            }
        });
        Self { container, log_task: Some(log_task) }
    }

    /// Waits for the log follower to pass on the last lines: the stream
    /// ends with the container, but a stuck one must not hang the job.
    async fn drain(&mut self) {
        if let Some(t) = self.log_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

#[async_trait]
impl RunningJob for ContainerJob {
    async fn wait(&mut self) -> Result<i32, JobError> {
        let code =
            self.container.wait().await.map_err(|e| {
                JobError::new(Stage::Run, JobErrorCode::Wait, format!("failed to wait for the run: {e:#}"))
            })?;
        self.drain().await;
        Ok(code as i32)
    }

    async fn stop(&mut self, grace: Duration) -> Result<i32, JobError> {
        let code =
            self.container.stop(grace).await.map_err(|e| JobError::from_chain(Stage::Run, JobErrorCode::Stop, &e))?;
        self.drain().await;
        Ok(code as i32)
    }

    async fn detach(mut self: Box<Self>) {
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
    }

    async fn cleanup(mut self: Box<Self>) {
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
        if let Err(e) = self.container.remove().await {
            tracing::warn!(container = %self.container.id(), error = %e, "could not remove the container");
        }
    }
}

/// A container found by label after a restart.
struct FoundWork {
    engine: ContainerRunner,
    found: FoundContainer,
}

#[async_trait]
impl AdoptedWork for FoundWork {
    fn resume(self: Box<Self>, stored: StoredOutput, logs: LogSender) -> Box<dyn RunningJob> {
        Box::new(ContainerJob::follow(self.engine.handle(&self.found.id), stored, logs))
    }

    async fn discard(self: Box<Self>) {
        let orphan = self.engine.handle(&self.found.id);
        if self.found.running {
            let _ = orphan.stop(Duration::from_secs(5)).await;
        }
        let _ = orphan.remove().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for u in ["http://127.0.0.1:7434", "http://localhost:1/x", "https://[::1]:8/", "http://u:p@127.0.0.2"] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in ["http://10.0.0.1:7434", "https://liftoff.example.com", "http://[2001:db8::1]:1"] {
            assert!(!is_loopback_url(u), "{u}");
        }
    }
}
