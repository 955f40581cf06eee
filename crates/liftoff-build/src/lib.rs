//! Builds: from a job's source to an image in a registry. `registry` says
//! where images go and how to reach it (OCI, ECR, Artifact Registry, ACR,
//! or the local engine).

pub mod builder;
pub mod docker_builder;
pub mod registry;
pub mod setup;
pub mod tag;

pub use builder::{BuildError, BuildRequest, Builder, Push, TarContext};
pub use docker_builder::DockerBuilder;
pub use registry::{Destination, Registry, RegistryError};
pub use setup::{BuildSetup, DEFAULT_PYTHON_BASE_IMAGE};
