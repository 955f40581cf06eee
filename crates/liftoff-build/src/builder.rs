//! The builder seam: how a build context becomes an image. `docker` builds
//! on the agent's engine ([`crate::docker_builder`]); a kaniko or
//! daemonless builder implements the same trait (it resolves base digests
//! from the registry and pushes itself), and the agent does not change.

use crate::registry::RegistryError;
use async_trait::async_trait;
use liftoff_run::LogSender;
use liftoff_run::container::RegistryAuth;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a builder needs of a build context: its Dockerfile's path inside it
/// and the context as a tar, streamed (no temporary copy of the tree).
pub trait TarContext: Send + Sync {
    fn dockerfile_path(&self) -> &str;
    fn tar_stream(&self) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;
}

/// Where the image goes after the build.
pub struct Push {
    /// For messages: `OCI 127.0.0.1:5000/team/app`.
    pub registry: String,
    /// The credentials (`None`: anonymous).
    pub auth: Option<RegistryAuth>,
    /// Where they came from, for messages (`docker config.json auths`, `ECR GetAuthorizationToken`).
    pub source: String,
}

/// One build.
pub struct BuildRequest<'a> {
    pub context: Arc<dyn TarContext>,
    /// `repository:tag`.
    pub image: &'a str,
    /// `linux/amd64`; `None`: the engine's own.
    pub platform: Option<&'a str>,
    pub build_args: &'a BTreeMap<String, String>,
    /// `None`: the image stays in the builder's engine.
    pub push: Option<Push>,
}

/// A builder of images.
#[async_trait]
pub trait Builder: Send + Sync {
    /// `docker`, `kaniko`.
    fn name(&self) -> &'static str;

    /// The digest (or image id) of base image `image` as this builder will
    /// use it: what makes a moved base tag give a new content tag.
    async fn base_digest(&self, image: &str, logs: &LogSender) -> Result<String, BuildError>;

    /// The id of `image` in the builder's own engine, if it has it: how a
    /// build that is not pushed is found again.
    async fn local_image(&self, image: &str) -> Result<Option<String>, BuildError>;

    /// Builds `req.image`, streaming the build's output to `logs`, then
    /// pushes it if asked.
    async fn build(&self, req: BuildRequest<'_>, logs: &LogSender) -> Result<(), BuildError>;
}

/// Why a build failed; every message names what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The builder's engine could not be reached.
    #[error("{0}")]
    Engine(String),
    /// A base image could not be found or pulled.
    #[error("base image '{image}': {message}")]
    Base { image: String, message: String },
    /// The Dockerfile failed.
    #[error("the build of {image} failed: {message}")]
    Build { image: String, message: String },
    /// The registry refused the push.
    #[error("the push of {image} to {registry} failed (credentials from {source_name}): {message}")]
    Push { image: String, registry: String, source_name: String, message: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl TarContext for crate::context::BuildContext {
    fn dockerfile_path(&self) -> &str {
        crate::context::BuildContext::dockerfile_path(self)
    }

    fn tar_stream(&self) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
        Box::pin(crate::context::BuildContext::tar_stream(self))
    }
}
