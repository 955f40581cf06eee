//! Builds: from a job's source to an image in a registry. `registry` says
//! where images go and how to reach it (OCI, ECR, Artifact Registry, ACR,
//! or the local engine); `builder` is the seam builders plug into
//! (`docker_builder`; `kaniko`, a Kubernetes Job, with the `kubernetes`
//! feature), `tag` the content-addressed tags. `context` turns a job's code into what a builder
//! gets: the Dockerfile (`dockerfile`, with the Python one generated from
//! `python`), the files `.dockerignore` (`dockerignore`) leaves in, as a
//! deterministic tar and a content digest. `append` makes instant images: a
//! generated build's code appended as one layer to its dependency image.

pub mod append;
pub mod builder;
pub mod context;
pub mod docker_builder;
pub mod dockerfile;
pub mod dockerignore;
#[cfg(feature = "kubernetes")]
pub mod kaniko;
pub mod python;
pub mod registry;
pub mod setup;
pub mod tag;

pub use builder::{BuildError, BuildRequest, Builder, Push, TarContext};
pub use context::{BuildContext, ContextError, ContextLimits, ContextRequest};
pub use docker_builder::DockerBuilder;
pub use dockerignore::DockerIgnore;
pub use registry::{Destination, Manifest, Registry, RegistryError};
pub use setup::{BuildSetup, DEFAULT_PYTHON_BASE_IMAGE};
