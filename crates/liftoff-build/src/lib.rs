//! Builds: from a job's source to an image in a registry. `registry` says
//! where images go and how to reach it (OCI, ECR, Artifact Registry, ACR,
//! or the local engine). `context` turns a job's code into what a builder
//! gets: the Dockerfile (`dockerfile`, with the Python one generated from
//! `python`), the files `.dockerignore` (`dockerignore`) leaves in, as a
//! deterministic tar and a content digest.

pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod python;
pub mod registry;

pub use context::{BuildContext, ContextError, ContextLimits, ContextRequest};
pub use dockerignore::DockerIgnore;
pub use registry::{Registry, RegistryError};
