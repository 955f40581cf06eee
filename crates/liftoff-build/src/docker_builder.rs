//! The `docker` builder: builds on the agent's Docker engine (its one
//! connection, shared with the `local-container` runner) through the
//! Engine API's `/build` with the context streamed as a tar body, then
//! pushes with the registry's credentials (`X-Registry-Auth`). The engine
//! here has no BuildKit, so this is the classic builder; its layer cache
//! still serves unchanged steps.

use crate::builder::{BuildError, BuildRequest, Builder};
use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptions, PushImageOptions};
use futures::StreamExt;
use liftoff_core::ImageRef;
use liftoff_core::api::LogStream;
use liftoff_run::container::{ContainerRunner, IDENTITY_TOKEN_USER};
use liftoff_run::{LogSender, SharedEngine};
use std::collections::HashMap;
use std::path::PathBuf;

pub struct DockerBuilder {
    engine: SharedEngine,
    /// Docker client config for base-image pulls; `None`: `DOCKER_CONFIG`, else `~/.docker`.
    docker_config: Option<PathBuf>,
}

impl DockerBuilder {
    pub fn new(engine: SharedEngine, docker_config: Option<PathBuf>) -> Self {
        Self { engine, docker_config }
    }

    async fn docker(&self) -> Result<bollard::Docker, BuildError> {
        Ok(self.engine.get().await.map_err(|e| BuildError::Engine(format!("{e:#}")))?.docker().clone())
    }
}

async fn say(logs: &LogSender, line: impl Into<String>) {
    let mut line = line.into();
    if !line.ends_with('\n') {
        line.push('\n');
    }
    let _ = logs.send((LogStream::Build, line)).await;
}

#[async_trait]
impl Builder for DockerBuilder {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn base_digest(&self, image: &str, logs: &LogSender) -> Result<String, BuildError> {
        let docker = self.docker().await?;
        let digest = |i: bollard::models::ImageInspect| {
            // a registry digest names the content wherever it is; a local-only image has its id
            i.repo_digests
                .unwrap_or_default()
                .iter()
                .find_map(|d| d.split_once('@').map(|(_, d)| d.to_string()))
                .or(i.id)
        };
        if let Ok(found) = docker.inspect_image(image).await
            && let Some(d) = digest(found)
        {
            return Ok(d);
        }
        // not here yet: pulled as the run's images are (the build would pull it anyway)
        let engine = self.engine.get().await.map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        let runner = ContainerRunner::with_engine(std::sync::Arc::new(engine.clone()));
        let auth = liftoff_run::registry_auth::pull_auth(image, self.docker_config.as_deref())
            .await
            .map_err(|e| BuildError::Base { image: image.into(), message: format!("{e:#}") })?;
        runner
            .ensure_image(image, auth, logs)
            .await
            .map_err(|e| BuildError::Base { image: image.into(), message: format!("{e:#}") })?;
        let found = docker
            .inspect_image(image)
            .await
            .map_err(|e| BuildError::Base { image: image.into(), message: e.to_string() })?;
        digest(found).ok_or_else(|| BuildError::Base { image: image.into(), message: "the engine gave no id".into() })
    }

    async fn local_image(&self, image: &str) -> Result<Option<String>, BuildError> {
        let docker = self.docker().await?;
        match docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(BuildError::Engine(format!("cannot inspect {image}: {e}"))),
        }
    }

    async fn build(&self, req: BuildRequest<'_>, logs: &LogSender) -> Result<(), BuildError> {
        let docker = self.docker().await?;
        let image = req.image.to_string();
        // streamed as the engine reads it: the context is never copied to disk or held whole
        let body = req.context.tar_stream();
        let options = BuildImageOptions {
            dockerfile: req.context.dockerfile_path().to_string(),
            t: Some(image.clone()),
            rm: true,
            forcerm: true,
            platform: req.platform.unwrap_or_default().to_string(),
            buildargs: (!req.build_args.is_empty())
                .then(|| req.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>()),
            ..Default::default()
        };
        say(logs, format!("liftoff build: building {image} on {}", self.engine.address())).await;
        let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
        let mut failure = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(info) => {
                    if let Some(text) = info.stream.filter(|s| !s.trim().is_empty()) {
                        say(logs, text.trim_end().to_string()).await;
                    }
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(e);
                    }
                }
                Err(e) => {
                    failure = Some(engine_message(e));
                    break;
                }
            }
        }
        if let Some(message) = failure {
            return Err(BuildError::Build { image, message });
        }
        let Some(push) = req.push else { return Ok(()) };
        let parsed = ImageRef::parse(&image).map_err(|e| BuildError::Build { image: image.clone(), message: e })?;
        say(logs, format!("liftoff build: pushing {image} to {} (credentials from {})", push.registry, push.source))
            .await;
        let credentials = push.auth.map(|a| {
            if a.username == IDENTITY_TOKEN_USER {
                DockerCredentials {
                    identitytoken: Some(a.password),
                    serveraddress: Some(a.serveraddress),
                    ..Default::default()
                }
            } else {
                DockerCredentials {
                    username: Some(a.username),
                    password: Some(a.password),
                    serveraddress: Some(a.serveraddress),
                    ..Default::default()
                }
            }
        });
        let options = PushImageOptions { tag: parsed.tag.clone(), ..Default::default() };
        let mut stream = docker.push_image(&parsed.name(), Some(options), credentials);
        let mut last = String::new();
        while let Some(event) = stream.next().await {
            let message = match event {
                Ok(info) => match info.error_detail.and_then(|d| d.message) {
                    Some(e) => Some(e),
                    None => {
                        // one line per status change, not per progress tick
                        if let Some(status) = info.status.filter(|s| *s != last) {
                            if !status.starts_with("Pushing") {
                                say(logs, format!("push: {status}")).await;
                            }
                            last = status;
                        }
                        None
                    }
                },
                Err(e) => Some(engine_message(e)),
            };
            if let Some(message) = message {
                return Err(BuildError::Push { image, registry: push.registry, source_name: push.source, message });
            }
        }
        Ok(())
    }
}

/// The engine's own words for a failure.
fn engine_message(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}
