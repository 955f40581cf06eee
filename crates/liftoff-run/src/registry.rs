//! The runners an agent has, by resource type: a new target is one
//! [`Runner`] and one [`RunnerRegistry::register`] call.

use crate::runner::Runner;
use liftoff_core::ResourceType;
use std::sync::Arc;

/// Built once per agent; shared by its jobs (so a runner holds one
/// connection to its engine or service, not one per job).
#[derive(Default, Clone)]
pub struct RunnerRegistry {
    /// In registration order; a handful at most, so a list.
    runners: Vec<Arc<dyn Runner>>,
}

impl RunnerRegistry {
    /// Adds `runner` under its resource type, replacing any runner there.
    pub fn register(&mut self, runner: Arc<dyn Runner>) -> &mut Self {
        self.runners.retain(|r| r.resource() != runner.resource());
        self.runners.push(runner);
        self
    }

    pub fn get(&self, resource: ResourceType) -> Option<&Arc<dyn Runner>> {
        self.runners.iter().find(|r| r.resource() == resource)
    }

    /// Every registered runner, in registration order.
    pub fn runners(&self) -> impl Iterator<Item = &Arc<dyn Runner>> {
        self.runners.iter()
    }

    /// The resource types served, in registration order.
    pub fn resources(&self) -> Vec<ResourceType> {
        self.runners.iter().map(|r| r.resource()).collect()
    }
}
