//! Where built images go: the [`Registry`] seam, one implementation per
//! kind in `registry/` (OCI, ECR, Artifact Registry, ACR).
//! SKELETON: the trait is settled; the implementations and
//! `from_config` are filled in by the registries work.

use async_trait::async_trait;
use liftoff_run::container::RegistryAuth;

/// A registry images are pushed to and checked in.
#[async_trait]
pub trait Registry: Send + Sync {
    /// `host[:port]/path` that images are pushed to (no tag), e.g.
    /// `127.0.0.1:5000/team/app` or `123456789012.dkr.ecr.us-east-1.amazonaws.com/repo`.
    fn repository(&self) -> &str;

    /// For messages: the kind and the repository, e.g. `ECR 1234...amazonaws.com/repo`.
    fn describe(&self) -> String;

    /// Credentials for a push or pull (`None`: anonymous), with the
    /// source they came from named in [`RegistryError`]s.
    async fn credentials(&self) -> Result<Option<RegistryAuth>, RegistryError>;

    /// The manifest digest of `tag` (`sha256:...`) if the registry has it:
    /// a manifest HEAD (or the cloud's own API where that is the rule).
    async fn manifest_digest(&self, tag: &str) -> Result<Option<String>, RegistryError>;

    /// For `doctor`: proves a push is accepted by uploading a tiny blob
    /// and deleting it again.
    async fn check_push(&self) -> Result<(), RegistryError>;
}

/// A registry failure; every message names the registry and, for
/// credentials, the source tried, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: credentials from {source_name} were refused: {message}")]
    Unauthorized { registry: String, source_name: String, message: String },
    #[error("{registry}: {message}")]
    Other { registry: String, message: String },
    #[error(transparent)]
    Cloud(#[from] liftoff_cloud::CloudError),
}

/// Where an agent's built images go.
#[derive(Clone)]
pub enum Destination {
    /// No registry configured: images stay in the builder's engine and are
    /// not pushed (runs on the same host use them).
    LocalEngine,
    Registry(std::sync::Arc<dyn Registry>),
}
