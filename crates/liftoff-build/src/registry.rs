//! Where built images go: the [`Registry`] seam, one implementation per
//! kind in `registry/` (any OCI registry, ECR, Artifact Registry, ACR), all
//! speaking the Distribution API through one client (`distribution.rs`) and
//! differing only in where their login comes from ([`LoginSource`]).
//! [`from_config`] turns `builder.destination` or the `registry` block into
//! a [`Destination`].

use async_trait::async_trait;
use liftoff_run::container::RegistryAuth;
use std::sync::Arc;
use std::time::SystemTime;

mod acr;
mod challenge;
mod destination;
mod distribution;
#[cfg(feature = "aws")]
mod ecr;
mod gar;
mod oci;
mod token_source;

pub use acr::AcrRegistry;
pub use challenge::{Challenge, parse_challenges};
pub use destination::{ChosenDestination, Destination, RegistryTarget, check_environment, from_config, target};
#[cfg(feature = "aws")]
pub use ecr::{EcrRegistry, decode_authorization_token};
pub use gar::GarRegistry;
pub use oci::OciRegistry;
pub use token_source::TokenSource;

/// A registry images are pushed to and checked in.
#[async_trait]
pub trait Registry: Send + Sync {
    /// `host[:port]/path` that images are pushed to (no tag), e.g.
    /// `127.0.0.1:5000/team/app` or `123456789012.dkr.ecr.us-east-1.amazonaws.com/repo`.
    fn repository(&self) -> &str;

    /// For messages: the kind and the repository, e.g. `ECR 1234...amazonaws.com/repo`.
    fn describe(&self) -> String;

    /// Credentials for a push or pull (`auth: None`: anonymous) and where
    /// they came from.
    async fn login(&self) -> Result<Login, RegistryError>;

    /// [`Registry::login`]'s credentials alone.
    async fn credentials(&self) -> Result<Option<RegistryAuth>, RegistryError> {
        Ok(self.login().await?.auth)
    }

    /// The manifest digest of `tag` (`sha256:...`) if the registry has it:
    /// a manifest HEAD (or the cloud's own API where that is the rule).
    async fn manifest_digest(&self, tag: &str) -> Result<Option<String>, RegistryError>;

    /// For `doctor`: proves a push is accepted by uploading a tiny blob
    /// and deleting it again.
    async fn check_push(&self) -> Result<(), RegistryError> {
        self.push_check().await.map(|_| ())
    }

    /// [`Registry::check_push`], saying whether the blob could be deleted
    /// (a registry without deletes keeps it: the push is proven all the same).
    async fn push_check(&self) -> Result<PushCheck, RegistryError>;

    /// The manifest `reference` (a tag or digest) as stored, if present.
    async fn manifest(&self, reference: &str) -> Result<Option<Manifest>, RegistryError>;

    /// Blob `digest`, at most `limit` bytes, checked against its digest.
    async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, RegistryError>;

    /// Whether the repository has blob `digest` (a HEAD).
    async fn has_blob(&self, digest: &str) -> Result<bool, RegistryError>;

    /// Uploads blob `digest` in one piece.
    async fn put_blob(&self, digest: &str, blob: bytes::Bytes) -> Result<(), RegistryError>;

    /// Puts a manifest under `reference`; returns its digest.
    async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: bytes::Bytes,
    ) -> Result<String, RegistryError>;

    /// Every tag of the repository.
    async fn tags(&self) -> Result<Vec<String>, RegistryError>;

    /// Deletes the manifest `digest` and the tags on it.
    async fn delete_manifest(&self, digest: &str) -> Result<(), RegistryError>;
}

/// A manifest as the registry stores it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its `Content-Type` (`application/vnd.docker.distribution.manifest.v2+json`...).
    pub media_type: String,
    /// `sha256:` of `bytes`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// What a push check did with its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushCheck {
    /// Uploaded and deleted again.
    Deleted,
    /// Uploaded; the registry would not delete it (why, for `doctor`).
    Kept { reason: String },
}

/// A registry failure; every message names the registry and, for
/// credentials, the source tried, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry (or its token server) refused the credentials, or they
    /// do not allow the operation (a pull-only token asked to push).
    #[error("{registry}: credentials from {source_name} were refused: {message}")]
    Unauthorized { registry: String, source_name: String, message: String },
    /// Anything else: unreachable, an unexpected answer, a configuration
    /// that cannot work (a region that differs from the environment's).
    #[error("{registry}: {message}")]
    Other { registry: String, message: String },
    /// The environment's credentials could not be had.
    #[error(transparent)]
    Cloud(#[from] liftoff_cloud::CloudError),
}

/// Credentials for one registry and where they came from.
#[derive(Clone)]
pub struct Login {
    /// `None`: anonymous.
    pub auth: Option<RegistryAuth>,
    /// For messages: `credHelpers.x in /root/.docker/config.json`,
    /// `ECR GetAuthorizationToken (us-east-1)`, `anonymous`...
    pub source: String,
    /// When the credentials stop working, if the source says.
    pub expires: Option<SystemTime>,
}

/// Where a registry's [`Login`] comes from: the docker config, a cloud API.
#[async_trait]
pub trait LoginSource: Send + Sync {
    async fn login(&self) -> Result<Login, RegistryError>;
}

/// A shared registry, as [`Destination::Registry`] holds it.
pub type SharedRegistry = Arc<dyn Registry>;
