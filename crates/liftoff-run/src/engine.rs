//! The container engine as the `local-container` runner needs it: the
//! handful of Docker Engine API calls [`crate::container`] makes, behind a
//! trait so that the runner's logic (spec to container, pull fallback, log
//! resumption) does not depend on how the engine is reached. The real one
//! is [`crate::bollard_engine::BollardEngine`]; the integration tests run
//! against it and a real engine.

use crate::container::{FoundContainer, RegistryAuth};
use async_trait::async_trait;
use bollard::models::ContainerCreateBody;
use futures::stream::BoxStream;
use liftoff_core::api::LogStream;

/// The engine refused or could not be asked; the message is the engine's
/// own words where it gave some.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    /// The HTTP status the engine answered with, if it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl EngineError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

/// One event of a pull: a layer's (or the whole pull's) new status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullProgress {
    /// The layer, if the status is about one.
    pub layer: Option<String>,
    pub status: Option<String>,
}

/// One entry of a container's log, with the engine's RFC 3339 timestamp
/// and a space before the bytes the container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: LogStream,
    pub bytes: bytes::Bytes,
}

/// The calls the `local-container` runner makes. Every method names the
/// container by the engine's id (or, for `create`, by the name to give it).
#[async_trait]
pub trait ContainerEngine: Send + Sync {
    /// The engine's address, for messages.
    fn host(&self) -> &str;

    /// Pulls `name:tag` (the tag may be a digest).
    fn pull(
        &self,
        name: &str,
        tag: &str,
        auth: Option<RegistryAuth>,
    ) -> BoxStream<'static, Result<PullProgress, EngineError>>;

    /// The id of a local image, `Err` (404) if there is none.
    async fn inspect_image(&self, image: &str) -> Result<String, EngineError>;

    /// Creates a container (not started); its id.
    async fn create(&self, name: &str, platform: &str, body: ContainerCreateBody) -> Result<String, EngineError>;

    async fn start(&self, id: &str) -> Result<(), EngineError>;

    /// Waits until the container is not running; its exit code.
    async fn wait(&self, id: &str) -> Result<i64, EngineError>;

    /// Log entries (stdout and stderr) from unix second `since`, with
    /// timestamps; with `follow`, until the container ends. Never times out.
    fn logs(&self, id: &str, since: i64, follow: bool) -> BoxStream<'static, Result<LogEntry, EngineError>>;

    /// SIGTERM (or the image's stop signal), SIGKILL after `grace_secs`.
    async fn stop(&self, id: &str, grace_secs: u64) -> Result<(), EngineError>;

    /// Removes the container and its anonymous volumes, forcefully; a
    /// container already gone is not an error.
    async fn remove(&self, id: &str) -> Result<(), EngineError>;

    /// Containers, running or exited but not removed, labelled `label=value`.
    async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<FoundContainer>, EngineError>;
}
