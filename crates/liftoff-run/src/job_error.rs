//! Why a run failed before or while it ran, typed with the stage users see
//! (`agent`, `build`, `run`) and a code the agent matches on.

use liftoff_core::Stage;

/// What went wrong, independent of the words used to say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobErrorCode {
    /// The spec breaks a rule (allow-lists, secure mode, missing image or
    /// entrypoint); nothing was fetched or run.
    Spec,
    /// No runner for the queue's resource type on this agent.
    UnsupportedResource,
    /// The job's code could not be fetched or unpacked.
    SourceFetch,
    /// Registry credentials could not be read (config file, helper).
    Credentials,
    /// The image could not be pulled and is not present locally.
    ImagePull,
    /// The image could not be built (context, Dockerfile, base image).
    Build,
    /// The built image could not be pushed, or the registry not asked.
    Push,
    /// The engine or service the runner drives is unreachable.
    Engine,
    /// Fetching, pulling and starting took longer than `start_timeout`.
    StartTimeout,
    /// The run could not be started.
    Start,
    /// The run started but its end could not be observed.
    Wait,
    /// The run could not be stopped.
    Stop,
    /// A remote run ended failed; the message is the service's reason.
    RemoteFailed,
    /// A remote run was stopped by someone else (its console, its CLI).
    StoppedElsewhere,
    /// The resource took the run away (a spot interruption it will not
    /// resume by itself): the run is re-queued.
    Preempted,
    /// The server did not take a report about the run (its start).
    Report,
    /// A bug: e.g. a plan handed to a runner that did not make it.
    Internal,
}

/// A failed run: the stage it failed at, what kind of failure, and the
/// message users read in the run's log and its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub stage: Stage,
    pub code: JobErrorCode,
    pub message: String,
    /// The run's own exit code when it is known (a remote container that
    /// exited non-zero): reported with the failure.
    pub exit_code: Option<i32>,
}

impl JobError {
    pub fn new(stage: Stage, code: JobErrorCode, message: impl Into<String>) -> Self {
        Self { stage, code, message: message.into(), exit_code: None }
    }

    /// The same failure, carrying the run's exit code.
    pub fn with_exit_code(self, exit_code: Option<i32>) -> Self {
        Self { exit_code, ..self }
    }

    /// An `anyhow` error with its whole chain (`{:#}`) as the message.
    pub fn from_chain(stage: Stage, code: JobErrorCode, e: &anyhow::Error) -> Self {
        Self::new(stage, code, format!("{e:#}"))
    }
}
