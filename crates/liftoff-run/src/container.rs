//! The `local-container` runner: a run's entrypoint in a container, through
//! the Docker Engine API (bollard) rather than the `docker` CLI, so no shell
//! and no command line is ever built from job input.
//!
//! Containers are never privileged and get no host mounts except the run's
//! code directory at [`CODE_MOUNT`] (base-image jobs). They are not removed
//! on exit (no `AutoRemove`): the exit code and logs stay readable until
//! [`RunningContainer::remove`], and an agent that crashed can find its
//! containers again by label ([`ContainerRunner::list_labelled`]).

use crate::LogLine;
use crate::bollard_engine::BollardEngine;
use crate::engine::{ContainerEngine, PullProgress};
use crate::lines::LineSplitter;
use anyhow::{anyhow, bail};
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType, ResourcesUlimits};
use futures::StreamExt;
use liftoff_core::ImageRef;
use liftoff_core::api::LogStream;
use liftoff_core::docker_options::ContainerOptions;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where a base-image job's code directory is mounted (read-write), like the
/// reference's `/mnt/wandb`; also the default working directory then.
pub const CODE_MOUNT: &str = "/mnt/liftoff";

/// The engine used when `DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Pull-progress statuses longer than this are cut (the engine's are short).
const MAX_STATUS_CHARS: usize = 300;

/// Layers remembered for de-duplicating pull progress; an image has far fewer.
const MAX_TRACKED_LAYERS: usize = 1024;

/// Containers on one engine, through [`ContainerEngine`]; cheap to clone.
#[derive(Clone)]
pub struct ContainerRunner {
    engine: Arc<dyn ContainerEngine>,
}

/// The [`RegistryAuth::username`] that makes the password an identity token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Registry credentials for a pull, as the engine's `X-Registry-Auth` wants them.
#[derive(Clone)]
pub struct RegistryAuth {
    /// [`IDENTITY_TOKEN_USER`] when `password` is an identity token.
    pub username: String,
    pub password: String,
    /// The registry host, e.g. `registry.example.com` or `127.0.0.1:5000`.
    pub serveraddress: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("serveraddress", &self.serveraddress)
            .finish()
    }
}

/// What to run in a new container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Container name; `options.name` (the user's `--name`) wins over it.
    pub name: String,
    pub image: String,
    /// `None` keeps the image's entrypoint. `options.command` replaces both
    /// this and `cmd`.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments after the entrypoint; empty keeps the image's `CMD` when
    /// `entrypoint` is `None`.
    pub cmd: Vec<String>,
    /// The run's environment; `options.env` (the user's `-e`) is applied on
    /// top, later wins, as with `docker run`.
    pub env: BTreeMap<String, String>,
    /// Validated `resource_args.local-container`.
    pub options: ContainerOptions,
    /// Host directory bind-mounted read-write at [`CODE_MOUNT`]; must be absolute.
    pub code_mount: Option<PathBuf>,
    /// Working directory in the container. Precedence: `options.workdir`,
    /// then this, then [`CODE_MOUNT`] when `code_mount` is set, then the image's.
    pub workdir: Option<String>,
    /// `network_mode: host`, for a server on the agent's loopback. Otherwise
    /// the engine's default network (`bridge` normally; `none` on an engine
    /// started with `--bridge=none`, as in CI).
    pub host_network: bool,
    /// Labels on the container, e.g. `liftoff.agent-host`, for re-adoption.
    pub labels: BTreeMap<String, String>,
}

/// A container found by [`ContainerRunner::list_labelled`].
#[derive(Debug, Clone, PartialEq)]
pub struct FoundContainer {
    pub id: String,
    /// The name without the engine's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Running (or paused/restarting). Neither running nor an exit code:
    /// created but never started (the agent died in between).
    pub running: bool,
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
}

/// A created container, started or found again; cheap to clone.
#[derive(Clone)]
pub struct RunningContainer {
    engine: Arc<dyn ContainerEngine>,
    id: String,
}

impl ContainerRunner {
    /// Connects to `DOCKER_HOST` (unix://… or tcp://127.0.0.1:…), else
    /// `/var/run/docker.sock`, and pings it; the error says how to start an engine.
    pub async fn connect() -> anyhow::Result<Self> {
        let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        Self::connect_to(host.as_deref().unwrap_or(DEFAULT_DOCKER_HOST)).await
    }

    /// Connects to one Docker engine (see [`BollardEngine::connect_to`]).
    pub async fn connect_to(host: &str) -> anyhow::Result<Self> {
        Ok(Self::with_engine(Arc::new(BollardEngine::connect_to(host).await?)))
    }

    pub fn with_engine(engine: Arc<dyn ContainerEngine>) -> Self {
        Self { engine }
    }

    /// The engine address this runner talks to.
    pub fn host(&self) -> &str {
        self.engine.host()
    }

    /// Makes sure the engine has `image`. Pull policy: an image pinned by
    /// digest, or by a tag other than `latest`, that the engine already has
    /// is used as it is (a progress line says so; a digest cannot change,
    /// and re-pulling a fixed tag on every run only costs time and fails
    /// when the registry is away). Otherwise it is pulled, with one
    /// progress line per layer status change. If that pull fails but the
    /// image exists locally, the local copy is used, a progress line says
    /// so, and the same words come back as `Ok(Some(warning))`; otherwise
    /// the error names the image and carries the engine's message.
    pub async fn ensure_image(
        &self,
        image: &str,
        auth: Option<RegistryAuth>,
        progress: &mpsc::Sender<LogLine>,
    ) -> anyhow::Result<Option<String>> {
        let reference = ImageRef::parse(image)
            .map_err(|e| anyhow!("failed to pull image '{image}': not a valid reference: {e}"))?;
        let say = |line: String| progress.send((LogStream::Agent, format!("pull {image}: {line}\n")));
        if (reference.digest.is_some() || reference.tag_or_digest() != "latest")
            && let Ok(id) = self.engine.inspect_image(image).await
        {
            let _ = say(format!("present in the engine as {id}; not pulled again")).await;
            return Ok(None);
        }
        let mut pull = self.engine.pull(&reference.name(), reference.tag_or_digest(), auth);
        let mut layers: HashMap<String, String> = HashMap::new();
        let mut failure = None;
        while let Some(event) = pull.next().await {
            match event {
                Ok(info) => {
                    if let Some(line) = progress_line(&mut layers, &info) {
                        // a closed receiver only means nobody is listening
                        let _ = say(line).await;
                    }
                }
                Err(e) => {
                    failure = Some(e.message);
                    break;
                }
            }
        }
        let Some(message) = failure else { return Ok(None) };
        match self.engine.inspect_image(image).await {
            Ok(id) => {
                let warning = format!("pull of {image} failed ({message}); using the local image {id}");
                let _ = say(format!("pull failed ({message}); using the local image {id}")).await;
                Ok(Some(warning))
            }
            Err(_) => bail!("failed to pull image '{image}': {message}"),
        }
    }

    /// Creates and starts a container for `spec` (see [`ContainerSpec`] for
    /// how its fields and the user's options combine). A container that was
    /// created but failed to start is removed again.
    pub async fn start(&self, spec: &ContainerSpec) -> anyhow::Result<RunningContainer> {
        let (name, body) = create_body(spec)?;
        let o = &spec.options;
        let platform = o.platform.clone().unwrap_or_default();
        let id = self
            .engine
            .create(&name, &platform, body)
            .await
            .map_err(|e| anyhow!("failed to create container '{name}' from image '{}': {e}", spec.image))?;
        if let Err(e) = self.engine.start(&id).await {
            let _ = self.handle(&id).remove().await;
            if let Some(gpus) = &o.gpus {
                bail!(
                    "failed to start container '{name}' with gpus '{}': {e} (does this engine have a GPU \
                     runtime, e.g. nvidia-container-toolkit?)",
                    gpus.spec
                );
            }
            bail!("failed to start container '{name}': {e}");
        }
        Ok(self.handle(&id))
    }
    /// Containers, running or exited but not removed, whose label `label`
    /// equals `value`: what an agent restarted after a crash re-adopts.
    pub async fn list_labelled(&self, label: &str, value: &str) -> anyhow::Result<Vec<FoundContainer>> {
        self.engine.list_labelled(label, value).await.map_err(|e| anyhow!("{e}"))
    }

    /// A handle on an existing container (e.g. one found by [`Self::list_labelled`]).
    pub fn handle(&self, id: &str) -> RunningContainer {
        RunningContainer { engine: self.engine.clone(), id: id.to_string() }
    }
}

/// The engine's create request for `spec`, and the container's name.
fn create_body(spec: &ContainerSpec) -> anyhow::Result<(String, ContainerCreateBody)> {
    let o = &spec.options;
    let name = o.name.clone().unwrap_or_else(|| spec.name.clone());
    let (entrypoint, cmd) = match &o.command {
        Some(words) if !words.is_empty() => (Some(words[..1].to_vec()), words[1..].to_vec()),
        _ => (spec.entrypoint.clone(), spec.cmd.clone()),
    };
    let mut env = spec.env.clone();
    env.extend(o.env.iter().cloned());
    let mounts = match &spec.code_mount {
        Some(dir) if !dir.is_absolute() => bail!("code mount '{}' is not an absolute path", dir.display()),
        Some(dir) => Some(vec![Mount {
            target: Some(CODE_MOUNT.to_string()),
            source: Some(dir.to_str().ok_or_else(|| anyhow!("code mount '{}' is not UTF-8", dir.display()))?.into()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            ..Default::default()
        }]),
        None => None,
    };
    let workdir = o
        .workdir
        .clone()
        .or_else(|| spec.workdir.clone())
        .or_else(|| spec.code_mount.as_ref().map(|_| CODE_MOUNT.to_string()));
    let host_config = HostConfig {
        privileged: Some(false),
        // tini as PID 1: the job gets SIGTERM with its default action
        // (PID 1 would ignore it) and its orphans are reaped
        init: Some(true),
        auto_remove: Some(false),
        mounts,
        network_mode: spec.host_network.then(|| "host".to_string()),
        memory: o.memory_bytes,
        memory_reservation: o.memory_reservation_bytes,
        memory_swap: o.memory_swap_bytes,
        nano_cpus: o.nano_cpus,
        cpu_shares: o.cpu_shares,
        cpu_period: o.cpu_period,
        cpu_quota: o.cpu_quota,
        cpuset_cpus: o.cpuset_cpus.clone(),
        cpuset_mems: o.cpuset_mems.clone(),
        pids_limit: o.pids_limit,
        shm_size: o.shm_size_bytes,
        ulimits: (!o.ulimits.is_empty()).then(|| {
            o.ulimits
                .iter()
                .map(|(name, soft, hard)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(*soft),
                    hard: Some(*hard),
                })
                .collect()
        }),
        device_requests: o.gpus.as_ref().map(|g| {
            vec![DeviceRequest {
                driver: Some(g.driver.clone()),
                count: Some(g.count),
                device_ids: (!g.device_ids.is_empty()).then(|| g.device_ids.clone()),
                capabilities: Some(vec![g.capabilities.clone()]),
                options: None,
            }]
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint,
        cmd: (!cmd.is_empty()).then_some(cmd),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: workdir,
        labels: Some(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    };
    Ok((name, body))
}

impl RunningContainer {
    /// The engine's container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Follows stdout and stderr (kept apart) from `since` (unix seconds;
    /// 0 = from the start) until the container exits and its output is read
    /// to the end. Lines go through [`LineSplitter`], so they are bounded.
    /// Returns early, without error, if `to` is closed.
    pub async fn stream_logs(&self, since: i64, to: mpsc::Sender<LogLine>) -> anyhow::Result<()> {
        let since = since.max(0);
        let mut cursor = LogCursor::default();
        if !self.read_logs(since, true, 0, &mut cursor, &to).await? {
            return Ok(());
        }
        // dockerd (seen with 20.10) may end a followed stream before the
        // container's last entries; once it has exited its log is complete,
        // so read the tail again, from the newest second already seen, and
        // skip the entries of that second that were passed on.
        self.wait().await?;
        let (from, skip) = match cursor.newest {
            Some((second, seen)) if second >= since => (second, seen),
            _ => (since, 0),
        };
        if !self.read_logs(from, false, skip, &mut cursor, &to).await? {
            return Ok(());
        }
        for (stream, splitter) in [(LogStream::Stdout, &mut cursor.out), (LogStream::Stderr, &mut cursor.err)] {
            if let Some(rest) = splitter.finish()
                && to.send((stream, rest)).await.is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One logs request from `since`, dropping the first `skip` entries;
    /// `false` when `to` was closed.
    async fn read_logs(
        &self,
        since: i64,
        follow: bool,
        mut skip: u64,
        cursor: &mut LogCursor,
        to: &mpsc::Sender<LogLine>,
    ) -> anyhow::Result<bool> {
        let mut logs = self.engine.logs(&self.id, since, follow);
        while let Some(entry) = logs.next().await {
            let entry = entry.map_err(|e| anyhow!("failed to read the logs of container {}: {e}", self.id))?;
            let (stream, bytes) = (entry.stream, entry.bytes);
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let (second, text) = split_timestamp(&bytes)
                .ok_or_else(|| anyhow!("a log entry of container {} has no timestamp", self.id))?;
            cursor.newest = match cursor.newest {
                Some((newest, seen)) if second == newest => Some((newest, seen + 1)),
                Some((newest, seen)) if second < newest => Some((newest, seen)),
                _ => Some((second, 1)),
            };
            let splitter = if stream == LogStream::Stderr { &mut cursor.err } else { &mut cursor.out };
            for line in splitter.push(text) {
                if to.send((stream, line)).await.is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Waits for the container to exit and returns its exact exit code
    /// (`3` stays `3`; killed by SIGKILL gives `137`).
    pub async fn wait(&self) -> anyhow::Result<i64> {
        self.engine.wait(&self.id).await.map_err(|e| anyhow!("failed to wait for container {}: {e}", self.id))
    }

    /// Stops the container: SIGTERM (or the image's stop signal), SIGKILL
    /// after `grace` (whole seconds, rounded up); returns the exit code.
    /// Stopping an exited container just returns its code.
    pub async fn stop(&self, grace: Duration) -> anyhow::Result<i64> {
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        self.engine.stop(&self.id, seconds).await.map_err(|e| anyhow!("failed to stop container {}: {e}", self.id))?;
        self.wait().await
    }

    /// Removes the container (forcefully, should it still run). Removing one
    /// that is already gone is not an error.
    pub async fn remove(&self) -> anyhow::Result<()> {
        self.engine.remove(&self.id).await.map_err(|e| anyhow!("failed to remove container {}: {e}", self.id))
    }
}

/// How far [`RunningContainer::stream_logs`] got: partial lines per stream,
/// and the newest whole second of the entries passed on, with how many
/// entries of that second there were. The engine's `since` keeps entries not
/// before it, in log order, so reading again from that second and skipping
/// that many entries resumes exactly, even if timestamps are out of order.
#[derive(Default)]
struct LogCursor {
    out: LineSplitter,
    err: LineSplitter,
    newest: Option<(i64, u64)>,
}

/// Splits the engine's `2026-11-28T14:55:01.123456789Z ` prefix off a log
/// entry and returns its whole unix second.
fn split_timestamp(entry: &[u8]) -> Option<(i64, &[u8])> {
    let space = entry.iter().position(|b| *b == b' ')?;
    let stamp: jiff::Timestamp = std::str::from_utf8(&entry[..space]).ok()?.parse().ok()?;
    Some((stamp.as_second(), &entry[space + 1..]))
}

/// One line per change of a layer's status ("Downloading", "Extracting",
/// "Pull complete"), not per progress tick; lines without a layer always.
fn progress_line(layers: &mut HashMap<String, String>, info: &PullProgress) -> Option<String> {
    let status: String = info.status.as_deref()?.chars().take(MAX_STATUS_CHARS).collect();
    match &info.layer {
        None => Some(status),
        Some(id) => {
            if layers.get(id) == Some(&status) {
                return None;
            }
            if layers.len() < MAX_TRACKED_LAYERS || layers.contains_key(id) {
                layers.insert(id.clone(), status.clone());
            }
            let id: String = id.chars().take(80).collect();
            Some(format!("{id}: {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_request_is_unprivileged_and_options_win() {
        let spec = ContainerSpec {
            name: "liftoff-r-1".into(),
            image: "busybox:1".into(),
            entrypoint: Some(vec!["sh".into()]),
            cmd: vec!["run.sh".into()],
            env: BTreeMap::from([("A".into(), "run".into()), ("B".into(), "run".into())]),
            options: ContainerOptions {
                env: vec![("B".into(), "user".into())],
                command: Some(vec!["python".into(), "-u".into()]),
                ..Default::default()
            },
            code_mount: Some("/tmp/run-1".into()),
            ..Default::default()
        };
        let (name, body) = create_body(&spec).unwrap();
        assert_eq!(name, "liftoff-r-1");
        assert_eq!(body.entrypoint, Some(vec!["python".to_string()]), "the user's command replaces both");
        assert_eq!(body.cmd, Some(vec!["-u".to_string()]));
        assert_eq!(body.env, Some(vec!["A=run".to_string(), "B=user".to_string()]), "-e wins, as with docker run");
        assert_eq!(body.working_dir.as_deref(), Some(CODE_MOUNT), "a base-image job runs in its code");
        let host = body.host_config.unwrap();
        assert_eq!((host.privileged, host.init, host.auto_remove), (Some(false), Some(true), Some(false)));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "only the code directory");
        assert_eq!((mounts[0].source.as_deref(), mounts[0].target.as_deref()), (Some("/tmp/run-1"), Some(CODE_MOUNT)));
        let relative = ContainerSpec { code_mount: Some("run-1".into()), ..spec };
        assert!(create_body(&relative).unwrap_err().to_string().contains("code mount 'run-1' is not an absolute path"));
    }

    #[test]
    fn pull_progress_reports_status_changes_only() {
        let mut layers = HashMap::new();
        let info = |id: Option<&str>, status: &str| PullProgress {
            layer: id.map(str::to_string),
            status: Some(status.to_string()),
        };
        let mut lines = Vec::new();
        for (id, status) in [
            (None, "Pulling from a/b"),
            (Some("l1"), "Pulling fs layer"),
            (Some("l1"), "Downloading"),
            (Some("l1"), "Downloading"),
            (Some("l1"), "Downloading"),
            (Some("l1"), "Pull complete"),
            (None, "Digest: sha256:x"),
        ] {
            lines.extend(progress_line(&mut layers, &info(id, status)));
        }
        assert_eq!(
            lines,
            ["Pulling from a/b", "l1: Pulling fs layer", "l1: Downloading", "l1: Pull complete", "Digest: sha256:x"]
        );
    }

    #[test]
    fn log_timestamps_give_the_unix_second() {
        let t = |s: &str| {
            split_timestamp(s.as_bytes()).map(|(sec, rest)| (sec, String::from_utf8_lossy(rest).into_owned()))
        };
        assert_eq!(t("1970-01-01T00:00:00Z x"), Some((0, "x".into())));
        assert_eq!(t("2026-11-28T14:55:01.123456789Z out 1\n"), Some((1_795_877_701, "out 1\n".into())));
        assert_eq!(t("2000-02-29T23:59:59.5Z "), Some((951_868_799, "".into())));
        assert_eq!(t("2026-11-28T16:55:01+02:00 a b"), Some((1_795_877_701, "a b".into())));
        assert_eq!(t("no-timestamp here"), None);
        assert_eq!(t("2026-11-28T14:55:01Z"), None, "no separator");
    }
}
