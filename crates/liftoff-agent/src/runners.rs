//! From a launch spec to a running run: the checks every job passes
//! (`plan`), the slow preparation (`prepare`: pulling an image), and the
//! start, on the `local-process` or `local-container` runner.

use crate::agent::AgentOptions;
use liftoff_core::api::{ItemView, LogStream};
use liftoff_core::docker_options::{self, ContainerOptions};
use liftoff_core::macros;
use liftoff_core::process_options::{self, ProcessOptions};
use liftoff_core::run_env::{MAX_ENV_VALUE, RunFacts, run_env};
use liftoff_core::{JobSource, ResourceType, Stage};
use liftoff_run::container::{ContainerRunner, ContainerSpec, RunningContainer};
use liftoff_run::process::{self, ProcessSpec, RunAs, RunningProcess};
use liftoff_run::{JobError, JobErrorCode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use liftoff_run::container::CODE_MOUNT;

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

/// A checked job, ready to prepare.
pub struct Plan {
    /// The job's code must be fetched into the run directory first.
    pub needs_source: bool,
    /// Worth telling the user, not worth failing for.
    pub warnings: Vec<String>,
    kind: Kind,
}

enum Kind {
    Process { command: Vec<String>, env: BTreeMap<String, String> },
    Container(Box<ContainerSpec>),
}

/// Checks the spec against the agent's rules and builds what to run. Every
/// problem found is reported at once.
pub fn plan(
    item: &ItemView,
    dir: &Path,
    run_key: Option<&str>,
    base_url: &str,
    opts: &AgentOptions,
) -> Result<Plan, JobError> {
    let spec = &item.spec;
    let mut problems = Vec::new();
    if opts.secure_mode && spec.entrypoint_overridden {
        problems.push(
            "this agent is configured to lock the \"entrypoint\" override, but the launch overrides it".to_string(),
        );
    }
    let image = match &spec.source {
        JobSource::Image(i) => Some(i.image.clone()),
        JobSource::Git(g) => g.base_image.clone(),
        JobSource::Code(c) => c.base_image.clone(),
    };
    // `${image_uri}` and friends, then the agent's environment variables.
    let facts = BTreeMap::from([
        ("run_id", item.run_id.clone()),
        ("run_name", item.run_id.clone()),
        ("project_name", spec.project.clone()),
        ("entity_name", item.entity.clone()),
        ("queue_name", item.queue.clone()),
        ("image_uri", image.clone().unwrap_or_default()),
    ]);
    let agent_env = |name: &str| std::env::var(name).ok().filter(|_| !looks_secret(name));
    let resource_args = macros::expand(&spec.resource_config, &macros::run_lookup(&facts, &agent_env));
    let env = run_env(
        &RunFacts {
            run_id: &item.run_id,
            item_id: &item.id,
            entity: &item.entity,
            project: &spec.project,
            queue: &item.queue,
            job: &spec.job,
            base_url,
            api_key: run_key,
            run_config: &spec.run_config,
            file_overrides: &spec.file_overrides,
            resumes: item.resumes,
            image: image.as_deref(),
        },
        MAX_ENV_VALUE,
    );
    let mut warnings = Vec::new();
    let mut code = JobErrorCode::Spec;
    let kind = match spec.resource {
        ResourceType::LocalProcess => {
            if let JobSource::Image(i) = &spec.source {
                problems.push(format!("cannot run image '{}' with the local-process runner", i.image));
            }
            let options = match process_options::parse(&resource_args) {
                Ok(o) => o,
                Err(errors) => {
                    problems.extend(errors.iter().map(ToString::to_string));
                    ProcessOptions::default()
                }
            };
            if !options.ignored.is_empty() {
                warnings.push(format!(
                    "the local-process runner takes only \"env\" in resource_args; ignored: {}",
                    options.ignored.join(", ")
                ));
            }
            let command: Vec<String> = spec.entrypoint.iter().chain(spec.args.iter()).cloned().collect();
            if command.is_empty() {
                problems.push("the job has no entrypoint to run".to_string());
            }
            // the run's own variables win: a queue cannot change who the run is
            let mut with_queue_env: BTreeMap<String, String> = options.env.into_iter().collect();
            with_queue_env.extend(env);
            Kind::Process { command, env: with_queue_env }
        }
        ResourceType::LocalContainer => {
            let options = match docker_options::parse(&resource_args) {
                Ok(o) => o,
                Err(errors) => {
                    problems.extend(errors.iter().map(ToString::to_string));
                    ContainerOptions::default()
                }
            };
            if opts.secure_mode && options.command.is_some() {
                problems.push(
                    "this agent is configured to lock \"command\" in the container spec, but the job's \
                     resource_args set it"
                        .to_string(),
                );
            }
            match image {
                Some(image) => {
                    Kind::Container(Box::new(container_spec(item, dir, image, env, options, base_url, opts)))
                }
                None => {
                    problems.push(format!(
                        "job '{}' has no image: the local-container runner runs image jobs, or code and git jobs \
                         with a base_image (mounted at {CODE_MOUNT}); this agent has no builder to build one",
                        spec.job
                    ));
                    Kind::Process { command: vec![], env: BTreeMap::new() }
                }
            }
        }
        other => {
            if other == ResourceType::Kubernetes
                && let Err(errors) = liftoff_core::kube_args::check(&resource_args, opts.secure_mode)
            {
                problems.extend(errors);
            }
            code = JobErrorCode::UnsupportedResource;
            problems
                .push(format!("this agent cannot run resource '{other}' yet (local-process and local-container only)"));
            Kind::Process { command: vec![], env: BTreeMap::new() }
        }
    };
    if !problems.is_empty() {
        return Err(JobError::new(Stage::Agent, code, problems.join("; ")));
    }
    let needs_source = !matches!(spec.source, JobSource::Image(_));
    Ok(Plan { needs_source, warnings, kind })
}

fn container_spec(
    item: &ItemView,
    dir: &Path,
    image: String,
    mut env: BTreeMap<String, String>,
    options: ContainerOptions,
    base_url: &str,
    opts: &AgentOptions,
) -> ContainerSpec {
    let spec = &item.spec;
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
    let code_mount = (!is_image_job).then(|| dir.to_path_buf());
    let labels = BTreeMap::from([
        (labels::AGENT_KEY.to_string(), opts.agent_key.clone()),
        (labels::AGENT_ID.to_string(), opts.agent_id.clone()),
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
        host_network: is_loopback_url(base_url),
        labels,
    }
}

/// Agent variables that `${NAME}` never expands: a launcher can put a macro
/// in a template variable's value, and must not read the agent's secrets
/// through its run's environment. URLs and DSNs are in: they carry
/// passwords (`DATABASE_URL`). (The reference expands any variable.)
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "URL", "URI", "DSN"]
        .iter()
        .any(|w| n.contains(w))
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

/// A plan whose slow parts (pulling an image) are done.
pub struct Prepared {
    pub warnings: Vec<String>,
    kind: Ready,
}

enum Ready {
    Process { command: Vec<String>, env: BTreeMap<String, String>, supervisor: Option<PathBuf>, run_as: Option<RunAs> },
    Container { runner: ContainerRunner, spec: Box<ContainerSpec> },
}

/// Pulls the image a container run needs. Failures carry their stage.
pub async fn prepare(
    plan: Plan,
    opts: &AgentOptions,
    logs: &mpsc::Sender<(LogStream, String)>,
) -> Result<Prepared, JobError> {
    let mut warnings = Vec::new();
    let kind = match plan.kind {
        Kind::Process { command, env } => {
            Ready::Process { command, env, supervisor: opts.supervisor.clone(), run_as: opts.run_as.clone() }
        }
        Kind::Container(spec) => {
            let runner = connect(opts).await.map_err(|e| JobError::from_chain(Stage::Run, JobErrorCode::Engine, &e))?;
            let auth = match opts.docker_config.clone().or_else(crate::registry_auth::default_config_dir) {
                Some(dir) => crate::registry_auth::registry_auth(&spec.image, &dir)
                    .await
                    .map_err(|e| JobError::from_chain(Stage::Build, JobErrorCode::Credentials, &e))?,
                None => None,
            };
            crate::job_task::agent_line(
                logs,
                format!(
                    "liftoff agent: pulling {}{}",
                    spec.image,
                    match auth.as_ref().map(|a| a.username.as_str()) {
                        None => String::new(),
                        Some(liftoff_run::container::IDENTITY_TOKEN_USER) => " with an identity token".to_string(),
                        Some(user) => format!(" as {user}"),
                    }
                ),
            )
            .await;
            if let Some(w) = runner
                .ensure_image(&spec.image, auth, logs)
                .await
                .map_err(|e| JobError::from_chain(Stage::Build, JobErrorCode::ImagePull, &e))?
            {
                warnings.push(w);
            }
            Ready::Container { runner, spec }
        }
    };
    Ok(Prepared { warnings, kind })
}

/// The engine `opts` names, else the environment's.
pub async fn connect(opts: &AgentOptions) -> anyhow::Result<ContainerRunner> {
    match &opts.docker_host {
        Some(host) => ContainerRunner::connect_to(host).await,
        None => ContainerRunner::connect().await,
    }
}

impl Prepared {
    /// What is about to start, for the run's log.
    pub fn describe(&self) -> String {
        match &self.kind {
            Ready::Process { command, .. } => {
                shlex::try_join(command.iter().map(String::as_str)).unwrap_or_else(|_| command.join(" "))
            }
            Ready::Container { spec, .. } => {
                let cmd: Vec<&str> =
                    spec.entrypoint.iter().flatten().chain(spec.cmd.iter()).map(String::as_str).collect();
                format!("container {} from {} ({})", spec.name, spec.image, cmd.join(" "))
            }
        }
    }

    pub async fn start(self, dir: &Path, logs: &mpsc::Sender<(LogStream, String)>) -> Result<RunHandle, JobError> {
        let failed = |e: anyhow::Error| JobError::from_chain(Stage::Run, JobErrorCode::Start, &e);
        match self.kind {
            Ready::Process { command, env, supervisor, run_as } => {
                let spec = ProcessSpec { command, dir: dir.to_path_buf(), env, supervisor, run_as };
                Ok(RunHandle::Process(process::spawn(&spec, logs.clone()).map_err(failed)?))
            }
            Ready::Container { runner, spec } => {
                let container = runner.start(&spec).await.map_err(failed)?;
                Ok(RunHandle::container(container, StoredOutput::default(), logs.clone()))
            }
        }
    }
}

/// How many bytes of a run's stdout and stderr the server holds already.
/// Reading a container's output again from its start gives the same bytes
/// in the same order, so skipping that many per stream continues the log
/// exactly where it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredOutput {
    pub stdout: u64,
    pub stderr: u64,
}

impl StoredOutput {
    /// `line` less whatever of it is already stored; `None` if all of it is.
    pub fn pass(&mut self, stream: LogStream, line: String) -> Option<String> {
        let left = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
            LogStream::Agent => return Some(line),
        };
        if *left == 0 {
            return Some(line);
        }
        if line.len() as u64 <= *left {
            *left -= line.len() as u64;
            return None;
        }
        let mut cut = *left as usize;
        // stored counts end between characters; stay on one if they do not
        while !line.is_char_boundary(cut) {
            cut += 1;
        }
        *left = 0;
        Some(line[cut..].to_string())
    }
}

/// A started run on either runner.
pub enum RunHandle {
    Process(RunningProcess),
    Container { container: RunningContainer, log_task: Option<JoinHandle<()>> },
}

impl RunHandle {
    /// Follows a container's output from its start, skipping what `stored`
    /// says was shipped already (by an agent before a restart).
    pub fn container(
        container: RunningContainer,
        stored: StoredOutput,
        logs: mpsc::Sender<(LogStream, String)>,
    ) -> Self {
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
                crate::job_task::agent_line(&logs, format!("liftoff agent: lost the container's output: {e:#}")).await;
            }
        });
        Self::Container { container, log_task: Some(log_task) }
    }

    /// The exit code once the run ends, after all its output was read.
    pub async fn wait(&mut self) -> Result<i32, JobError> {
        self.wait_inner()
            .await
            .map_err(|e| JobError::new(Stage::Run, JobErrorCode::Wait, format!("failed to wait for the run: {e:#}")))
    }

    async fn wait_inner(&mut self) -> anyhow::Result<i32> {
        match self {
            Self::Process(p) => Ok(process::exit_code(p.wait().await?)),
            Self::Container { container, log_task } => {
                let code = container.wait().await?;
                drain(log_task).await;
                Ok(code as i32)
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; the exit code.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<i32> {
        match self {
            Self::Process(p) => Ok(process::exit_code(p.stop(grace).await?)),
            Self::Container { container, log_task } => {
                let code = container.stop(grace).await?;
                drain(log_task).await;
                Ok(code as i32)
            }
        }
    }

    /// Removes what the run left (a container); a process is already gone.
    pub async fn cleanup(self) {
        if let Self::Container { container, log_task } = self {
            if let Some(t) = log_task {
                t.abort();
            }
            if let Err(e) = container.remove().await {
                tracing::warn!(container = %container.id(), error = %e, "could not remove the container");
            }
        }
    }
}

/// Waits for the container's log follower to pass on the last lines: the
/// stream ends with the container, but a stuck one must not hang the job.
async fn drain(log_task: &mut Option<JoinHandle<()>>) {
    if let Some(t) = log_task.take() {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_output_is_skipped_per_stream_and_exactly() {
        let mut stored = StoredOutput { stdout: 8, stderr: 2 };
        let mut pass = |stream, line: &str| stored.pass(stream, line.to_string());
        assert_eq!(pass(LogStream::Stdout, "one\n"), None);
        assert_eq!(pass(LogStream::Agent, "agent\n").as_deref(), Some("agent\n"), "not the run's output");
        assert_eq!(pass(LogStream::Stderr, "é\n").as_deref(), Some("\n"), "two of é's bytes were stored");
        assert_eq!(pass(LogStream::Stdout, "two\n"), None);
        assert_eq!(pass(LogStream::Stdout, "three\n").as_deref(), Some("three\n"));
        assert_eq!(pass(LogStream::Stderr, "x\n").as_deref(), Some("x\n"));
        let mut split = StoredOutput { stdout: 3, stderr: 0 };
        assert_eq!(split.pass(LogStream::Stdout, "abcdef".into()).as_deref(), Some("def"), "a line stored in part");
        let mut mid = StoredOutput { stdout: 1, stderr: 0 };
        assert_eq!(mid.pass(LogStream::Stdout, "éa".into()).as_deref(), Some("a"), "never cut inside a character");
    }

    #[test]
    fn secret_looking_agent_variables_are_not_expanded() {
        for name in [
            "LIFTOFF_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "AZURE_STORAGE_KEY",
            "DATABASE_URL",
            "MONGO_URI",
            "SENTRY_DSN",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["CUDA_VISIBLE_DEVICES", "HOME", "AWS_REGION", "HOSTNAME"] {
            assert!(!looks_secret(name), "{name}");
        }
    }

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
