//! [`BuildSetup`]: an agent's builder, where its images go, and the
//! settings every build shares.

use crate::builder::Builder;
use crate::docker_builder::DockerBuilder;
use crate::registry::{Destination, RegistryError};
use liftoff_cloud::CloudEnv;
use liftoff_core::launch_config::{AgentConfig, BuilderType, Platform};
use liftoff_run::SharedEngine;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Base image template of generated Dockerfiles; `{version}` is the job's Python (`3.11`).
pub const DEFAULT_PYTHON_BASE_IMAGE: &str = "python:{version}";

/// What an agent with a builder (`docker`) has. An agent without one
/// (`noop`, or no `builder` block) has none: it runs image jobs, and code
/// and git jobs on their `base_image` with the code mounted.
pub struct BuildSetup {
    pub builder: Arc<dyn Builder>,
    pub destination: Destination,
    /// `builder.platform`.
    pub platform: Option<String>,
    /// `builder.accelerator.base_image`.
    pub accelerator_base_image: Option<String>,
    /// See [`DEFAULT_PYTHON_BASE_IMAGE`].
    pub python_base_image: String,
    pub build_args: BTreeMap<String, String>,
    /// The agent's engine connection (shared with its `local-container` runner).
    pub engine: SharedEngine,
}

/// Why an agent's builder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A builder this agent cannot run yet.
    #[error("builder type '{0}' is not available in this agent yet: use docker or noop")]
    Unsupported(&'static str),
    /// The kaniko builder's needs are not met (no cluster, no store, no registry).
    #[error("the kaniko builder: {0}")]
    Kaniko(String),
}

impl BuildSetup {
    /// The agent's builder from its configuration: `None` for `noop` or no
    /// `builder` block (and then the `registry` block only serves pulls).
    /// Registries reached through `env`'s credentials; `docker_config`
    /// (`None`: `$DOCKER_CONFIG`, else `~/.docker`) for any other registry.
    /// Returns the setup and its warnings (a registry block ignored...).
    pub async fn from_config(
        cfg: &AgentConfig,
        env: &CloudEnv,
        engine: SharedEngine,
        docker_config: Option<PathBuf>,
    ) -> Result<Option<(BuildSetup, Vec<String>)>, SetupError> {
        #[cfg(feature = "kubernetes")]
        let cluster = liftoff_run::kubernetes::ClusterSource::detect();
        #[cfg(not(feature = "kubernetes"))]
        let cluster = None;
        Self::from_config_in(cfg, env, engine, docker_config, cluster).await
    }

    /// [`BuildSetup::from_config`] with the cluster kaniko builds in given
    /// (`None`: none found) rather than detected.
    pub async fn from_config_in(
        cfg: &AgentConfig,
        env: &CloudEnv,
        engine: SharedEngine,
        docker_config: Option<PathBuf>,
        cluster: Option<Cluster>,
    ) -> Result<Option<(BuildSetup, Vec<String>)>, SetupError> {
        let Some(b) = cfg.builder.as_ref() else { return Ok(None) };
        if b.builder_type == BuilderType::Noop {
            return Ok(None);
        }
        let chosen = crate::registry::from_config(cfg, env, docker_config.as_deref()).await?;
        let builder: Arc<dyn Builder> = match b.builder_type {
            BuilderType::Noop => return Ok(None),
            BuilderType::Docker => Arc::new(DockerBuilder::new(engine.clone(), docker_config.clone())),
            BuilderType::Kaniko => kaniko(b, env, &chosen.destination, docker_config.clone(), cluster).await?,
        };
        let platform = b.platform.map(|p| match p {
            Platform::LinuxAmd64 => "linux/amd64".to_string(),
            Platform::LinuxArm64 => "linux/arm64".to_string(),
        });
        let warnings = chosen.warnings;
        let setup = BuildSetup {
            builder,
            destination: chosen.destination,
            platform,
            accelerator_base_image: b.accelerator_base_image.clone(),
            python_base_image: DEFAULT_PYTHON_BASE_IMAGE.to_string(),
            build_args: BTreeMap::new(),
            engine,
        };
        Ok(Some((setup, warnings)))
    }
}

/// Where kaniko builds run: a cluster source with the `kubernetes` feature.
#[cfg(feature = "kubernetes")]
pub type Cluster = liftoff_run::kubernetes::ClusterSource;
/// Where kaniko builds run: nothing without the `kubernetes` feature.
#[cfg(not(feature = "kubernetes"))]
pub type Cluster = std::convert::Infallible;

#[cfg(feature = "kubernetes")]
async fn kaniko(
    b: &liftoff_core::launch_config::BuilderConfig,
    env: &CloudEnv,
    destination: &Destination,
    docker_config: Option<PathBuf>,
    cluster: Option<Cluster>,
) -> Result<Arc<dyn Builder>, SetupError> {
    use crate::kaniko::{KanikoBuilder, KanikoSettings};
    let Some(source) = cluster else {
        return Err(SetupError::Kaniko(
            "no Kubernetes cluster found: set LIFTOFF_KUBECONFIG or KUBECONFIG, or run the agent in a pod".into(),
        ));
    };
    let Destination::Registry(registry) = destination else {
        return Err(SetupError::Kaniko("it pushes what it builds: set builder.destination".into()));
    };
    let Some(uri) = &b.build_context_store else {
        return Err(SetupError::Kaniko("set builder.build-context-store".into()));
    };
    let store = liftoff_cloud::ContextStore::open(uri, env)
        .await
        .map_err(|e| SetupError::Kaniko(format!("builder.build-context-store: {e}")))?;
    let mut settings = KanikoSettings::from_config(b, registry.repository());
    #[cfg(feature = "aws")]
    if let CloudEnv::Aws(a) = env {
        settings.aws_region = Some(a.region().to_string());
        settings.s3_endpoint = a.endpoint_url().map(str::to_string);
    }
    Ok(Arc::new(KanikoBuilder::new(settings, store, source, registry.clone(), docker_config)))
}

#[cfg(not(feature = "kubernetes"))]
async fn kaniko(
    _b: &liftoff_core::launch_config::BuilderConfig,
    _env: &CloudEnv,
    _destination: &Destination,
    _docker_config: Option<PathBuf>,
    _cluster: Option<Cluster>,
) -> Result<Arc<dyn Builder>, SetupError> {
    Err(SetupError::Unsupported("kaniko"))
}

impl std::fmt::Debug for BuildSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let destination = match &self.destination {
            Destination::LocalEngine => "the local engine".to_string(),
            Destination::Registry(r) => r.describe(),
        };
        f.debug_struct("BuildSetup")
            .field("builder", &self.builder.name())
            .field("destination", &destination)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}
