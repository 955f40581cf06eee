//! `launch-config.yaml`, the agent's config file: every key W&B Launch accepts
//! plus Liftoff's own (`base_url`, `allow_http_git`, `start_timeout`), read
//! strictly. Unknown keys are refused with a suggestion, every error names the
//! field, its value and its line and column, and all errors come back at once.
//! Resolution order: defaults < file < environment < flags ([`resolve`]).
//!
//! YAML is read as 1.2 (`queues: [no, on]` are strings), aliases are refused
//! and files over 1 MiB are refused before parsing. An empty value (`key:` or
//! `null`) counts as a key left out.

mod agent;
mod builder;
mod consistency;
mod environment;
mod image;
mod issue;
mod keys;
mod reader;
mod registry;
mod resolve;
mod schema;
mod store;
mod suggest;
mod yaml;

pub use crate::image_ref::ImageRef;
pub use agent::AgentConfig;
pub use builder::{
    BuilderConfig, BuilderType, DEFAULT_BUILD_DEADLINE_SECS, DEFAULT_BUILD_JOB_NAME, DEFAULT_KANIKO_IMAGE,
    KanikoSecret, MAX_BUILD_JOB_NAME, Platform,
};
pub use environment::EnvironmentConfig;
pub use image::ImageDestination;
pub use issue::ConfigIssue;
pub use registry::{RegistryConfig, RegistryType};
pub use resolve::{MAX_FILE_BYTES, NO_QUEUES, Overrides, Resolved, check_file_text, resolve};
pub use schema::json_schema;
pub use store::BuildContextStore;
