//! The real [`ContainerEngine`]: the Docker Engine API over a unix socket
//! or loopback TCP, through bollard.

use crate::container::{FoundContainer, IDENTITY_TOKEN_USER, RegistryAuth};
use crate::engine::{ContainerEngine, EngineError, LogEntry, PullProgress};
use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures::stream::{BoxStream, StreamExt};
use liftoff_core::api::LogStream;
use std::collections::HashMap;
use std::time::Duration;

/// Requests that return only when the container stops (wait, followed logs)
/// may legitimately take days; bollard's default of 2 minutes bounds only
/// the wait for response headers, which the engine sends at once, but a run
/// must never be cut off by it.
const LONG_REQUEST: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) const HOW_TO_START: &str = "start an engine (e.g. `dockerd`, or `source .ci/docker.sh` in a checkout) \
     or point DOCKER_HOST at a running one (unix:///path/to/docker.sock or tcp://127.0.0.1:<port>)";

/// A connection to one Docker engine; cheap to clone.
#[derive(Clone)]
pub struct BollardEngine {
    docker: Docker,
    host: String,
}

impl BollardEngine {
    /// Connects to one engine: `unix:///path`, an absolute socket path, or
    /// plain `tcp://`/`http://` on loopback only (no TLS is built in, and the
    /// Engine API is root on its host, so it is never sent over a network
    /// in the clear). Works with dockerd 20.10 (API 1.41) and later: bollard
    /// 0.21 sends paths without a `/v1.xx` prefix, so the engine answers at
    /// its own version, and `negotiate_version` lowers bollard's recorded
    /// version to the engine's should a prefix ever be sent.
    pub async fn connect_to(host: &str) -> anyhow::Result<Self> {
        let docker = open(host)?;
        docker.ping().await.map_err(|e| anyhow!("cannot reach the docker engine at '{host}': {e}; {HOW_TO_START}"))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| anyhow!("failed to agree an API version with the docker engine at '{host}': {e}"))?;
        Ok(Self { docker, host: host.to_string() })
    }

    /// The connection itself, for what the runner seam does not cover (builds, pushes).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

#[async_trait]
impl ContainerEngine for BollardEngine {
    fn host(&self) -> &str {
        &self.host
    }

    fn pull(
        &self,
        name: &str,
        tag: &str,
        auth: Option<RegistryAuth>,
    ) -> BoxStream<'static, Result<PullProgress, EngineError>> {
        let options =
            CreateImageOptions { from_image: Some(name.to_string()), tag: Some(tag.to_string()), ..Default::default() };
        let credentials = auth.map(|a| match a.username.as_str() {
            // Docker's convention (credential helpers, `docker login` with a
            // token): this user name means the secret is an identity token.
            IDENTITY_TOKEN_USER => DockerCredentials {
                identitytoken: Some(a.password),
                serveraddress: Some(a.serveraddress),
                ..Default::default()
            },
            _ => DockerCredentials {
                username: Some(a.username),
                password: Some(a.password),
                serveraddress: Some(a.serveraddress),
                ..Default::default()
            },
        });
        // bollard's streams own what they need (edition 2021: no borrow of `self`)
        self.docker
            .create_image(Some(options), None, credentials)
            .map(|event| {
                event.map(|info| PullProgress { layer: info.id, status: info.status }).map_err(|e| engine_error(&e))
            })
            .boxed()
    }

    async fn inspect_image(&self, image: &str) -> Result<String, EngineError> {
        let local = self.docker.inspect_image(image).await.map_err(|e| engine_error(&e))?;
        Ok(local.id.unwrap_or_default())
    }

    async fn create(&self, name: &str, platform: &str, body: ContainerCreateBody) -> Result<String, EngineError> {
        let options = CreateContainerOptions { name: Some(name.to_string()), platform: platform.to_string() };
        let created = self.docker.create_container(Some(options), body).await.map_err(|e| engine_error(&e))?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker.start_container(id, None).await.map_err(|e| engine_error(&e))
    }

    async fn wait(&self, id: &str) -> Result<i64, EngineError> {
        let options = WaitContainerOptions { condition: "not-running".to_string() };
        let docker = self.docker.clone().with_timeout(LONG_REQUEST);
        let mut wait = docker.wait_container(id, Some(options));
        let failed = |message: String| EngineError { status: None, message };
        match wait.next().await {
            Some(Ok(response)) => match response.error.and_then(|e| e.message).filter(|m| !m.is_empty()) {
                Some(message) => Err(failed(message)),
                None => Ok(response.status_code),
            },
            // bollard reports a non-zero exit as an error carrying the code
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(engine_error(&e)),
            None => Err(failed("the engine closed the stream".to_string())),
        }
    }

    fn logs(&self, id: &str, since: i64, follow: bool) -> BoxStream<'static, Result<LogEntry, EngineError>> {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            // bollard's field is i32 (seconds, good until 2038)
            since: i32::try_from(since).unwrap_or(i32::MAX),
            timestamps: true,
            ..Default::default()
        };
        let docker = self.docker.clone().with_timeout(LONG_REQUEST);
        docker
            .logs(id, Some(options))
            .filter_map(|frame| async move {
                match frame {
                    Err(e) => Some(Err(engine_error(&e))),
                    Ok(LogOutput::StdErr { message }) => {
                        Some(Ok(LogEntry { stream: LogStream::Stderr, bytes: message }))
                    }
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Some(Ok(LogEntry { stream: LogStream::Stdout, bytes: message }))
                    }
                    Ok(LogOutput::StdIn { .. }) => None,
                }
            })
            .boxed()
    }

    async fn stop(&self, id: &str, grace_secs: u64) -> Result<(), EngineError> {
        let options = StopContainerOptions { t: Some(i32::try_from(grace_secs).unwrap_or(i32::MAX)), signal: None };
        let docker = self.docker.clone().with_timeout(Duration::from_secs(grace_secs) + Duration::from_secs(60));
        docker.stop_container(id, Some(options)).await.map_err(|e| engine_error(&e))
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(engine_error(&e)),
        }
    }

    /// Errors carry their context here (listing, or inspecting one container).
    async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<FoundContainer>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = self.docker.list_containers(Some(options)).await.map_err(|e| {
            let e = engine_error(&e);
            EngineError { message: format!("failed to list containers labelled {label}={value}: {e}"), ..e }
        })?;
        let mut found = Vec::new();
        for summary in summaries {
            let Some(id) = summary.id else { continue };
            // the summary's status is prose ("Exited (3) 2 minutes ago"); inspect has the number
            let inspected = match self.docker.inspect_container(&id, None::<InspectContainerOptions>).await {
                Ok(i) => i,
                Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => continue,
                Err(e) => {
                    let e = engine_error(&e);
                    return Err(EngineError { message: format!("failed to inspect container {id}: {e}"), ..e });
                }
            };
            let state = inspected.state.unwrap_or_default();
            let exited =
                matches!(state.status, Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD));
            let running = !exited && state.status != Some(ContainerStateStatusEnum::CREATED);
            found.push(FoundContainer {
                id,
                name: inspected.name.unwrap_or_default().trim_start_matches('/').to_string(),
                labels: summary.labels.unwrap_or_default().into_iter().collect(),
                running,
                exit_code: if exited { state.exit_code } else { None },
            });
        }
        Ok(found)
    }
}

pub(crate) fn open(host: &str) -> anyhow::Result<Docker> {
    const TIMEOUT_SECS: u64 = 120;
    let version = bollard::API_DEFAULT_VERSION;
    if let Some(path) = host.strip_prefix("unix://").or_else(|| host.starts_with('/').then_some(host)) {
        if !std::path::Path::new(path).exists() {
            bail!("no docker engine socket at '{path}' (docker host '{host}'); {HOW_TO_START}");
        }
        return Docker::connect_with_unix(path, TIMEOUT_SECS, version)
            .with_context(|| format!("cannot use the docker engine socket '{path}'"));
    }
    if let Some(rest) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
        let authority = rest.split('/').next().unwrap_or(rest);
        let hostname = match authority.rsplit_once(':') {
            Some((h, port)) if port.parse::<u16>().is_ok() => h,
            _ => bail!("docker host '{host}' has no port (e.g. tcp://127.0.0.1:2375)"),
        };
        let hostname = hostname.trim_start_matches('[').trim_end_matches(']');
        let loopback = hostname == "localhost" || hostname.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            bail!(
                "docker host '{host}' is not on loopback: plain tcp (no TLS) is only used for 127.0.0.1, ::1 or \
                 localhost; use a unix socket or an SSH tunnel to a remote engine"
            );
        }
        return Docker::connect_with_http(&format!("tcp://{authority}"), TIMEOUT_SECS, version)
            .with_context(|| format!("cannot use the docker host '{host}'"));
    }
    bail!("unsupported docker host '{host}': expected unix:///path/to/docker.sock or tcp://127.0.0.1:<port>")
}

/// The engine's own words where there are some, without bollard's prefix.
fn engine_error(e: &BollardError) -> EngineError {
    match e {
        BollardError::DockerResponseServerError { message, status_code } if !message.is_empty() => {
            EngineError { status: Some(*status_code), message: format!("{message} (HTTP {status_code})") }
        }
        BollardError::DockerResponseServerError { status_code, .. } => {
            EngineError { status: Some(*status_code), message: e.to_string() }
        }
        BollardError::DockerStreamError { error } => EngineError { status: None, message: error.clone() },
        other => EngineError { status: None, message: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tcp_is_for_loopback_only() {
        let err = |h: &str| open(h).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("tcp://10.0.0.1:2375").contains("not on loopback"));
        assert!(err("tcp://docker.example.com:2375").contains("not on loopback"));
        assert!(err("ssh://host").contains("unsupported docker host 'ssh://host'"));
        assert!(err("tcp://127.0.0.1").contains("has no port"));
        assert!(
            err("unix:///nonexistent/docker.sock").contains("no docker engine socket at '/nonexistent/docker.sock'")
        );
        assert!(open("tcp://127.0.0.1:2375").is_ok());
        assert!(open("tcp://[::1]:2375").is_ok());
        assert!(open("http://localhost:2375").is_ok());
    }
}
