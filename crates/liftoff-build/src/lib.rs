//! Builds: from a job's source to an image in a registry. `registry` says
//! where images go and how to reach it (OCI, ECR, Artifact Registry, ACR,
//! or the local engine).

pub mod registry;

pub use registry::{Registry, RegistryError};
