//! [`BuildSetup`]: an agent's builder, where its images go, and the
//! settings every build shares.

use crate::builder::Builder;
use crate::registry::Destination;
use liftoff_run::SharedEngine;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Base image template of generated Dockerfiles; `{version}` is the job's Python (`3.11`).
pub const DEFAULT_PYTHON_BASE_IMAGE: &str = "python:{version}";

/// What an agent with a builder (`docker`) has. An agent without one
/// (`noop`, or no `builder` block) has none: it runs image jobs, and code
/// and git jobs on their `base_image` with the code mounted.
pub struct BuildSetup {
    pub builder: Arc<dyn Builder>,
    pub destination: Destination,
    /// `builder.platform`.
    pub platform: Option<String>,
    /// `builder.accelerator.base_image`.
    pub accelerator_base_image: Option<String>,
    /// See [`DEFAULT_PYTHON_BASE_IMAGE`].
    pub python_base_image: String,
    pub build_args: BTreeMap<String, String>,
    /// The agent's engine connection (shared with its `local-container` runner).
    pub engine: SharedEngine,
}

impl std::fmt::Debug for BuildSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let destination = match &self.destination {
            Destination::LocalEngine => "the local engine".to_string(),
            Destination::Registry(r) => r.describe(),
        };
        f.debug_struct("BuildSetup")
            .field("builder", &self.builder.name())
            .field("destination", &destination)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}
