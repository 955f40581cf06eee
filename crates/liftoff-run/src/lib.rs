//! Runners: where a claimed run actually executes, behind one seam
//! ([`Runner`], [`RunningJob`], [`RunnerRegistry`]). `local_process` runs
//! the entrypoint as a local process group under `supervise`;
//! `local_container` runs it in a container through the Docker Engine API
//! (`container`). With their features, `sagemaker` and `vertex` run it as
//! a cloud training job, watched by `remote_job`.

#[cfg(feature = "sagemaker")]
pub mod aws_json;
pub mod bollard_engine;
pub mod container;
pub mod engine;
pub mod job_error;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod lines;
pub mod local_container;
pub mod local_process;
pub mod process;
pub mod registry;
pub mod registry_auth;
#[cfg(any(feature = "sagemaker", feature = "vertex", feature = "kubernetes"))]
pub mod remote_job;
pub mod runner;
#[cfg(feature = "sagemaker")]
pub mod sagemaker;
pub mod shared_engine;
pub mod supervise;
#[cfg(feature = "vertex")]
pub mod vertex;

pub use engine::{ContainerEngine, EngineError};
pub use job_error::{JobError, JobErrorCode};
pub use lines::LineSplitter;
pub use registry::RunnerRegistry;
pub use runner::{
    Adoptable, AdoptedWork, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob, SourceCounter,
    StoredOutput,
};
pub use shared_engine::SharedEngine;
/// A line of a run's output, tagged with the stream it came from.
pub type LogLine = (liftoff_core::api::LogStream, String);
