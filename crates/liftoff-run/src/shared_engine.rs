//! One Docker Engine connection per agent, made on first use and shared by
//! the `local-container` runner and the docker builder.

use crate::bollard_engine::BollardEngine;
use crate::container::DEFAULT_DOCKER_HOST;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A lazily made connection; cheap to clone. A failed connection is tried
/// again on the next use.
#[derive(Clone, Default)]
pub struct SharedEngine {
    /// `unix://...` or `tcp://...`; `None`: `DOCKER_HOST`, else the default socket.
    host: Option<String>,
    cell: Arc<OnceCell<BollardEngine>>,
}

impl SharedEngine {
    pub fn new(host: Option<String>) -> Self {
        Self { host, cell: Arc::default() }
    }

    /// Whether the agent was told where its engine is (a flag or `DOCKER_HOST`).
    pub fn configured(&self) -> bool {
        self.host.is_some() || std::env::var_os("DOCKER_HOST").is_some_and(|h| !h.is_empty())
    }

    /// The address used: the given host, else `DOCKER_HOST`, else the default socket.
    pub fn address(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }

    /// The connection, made (and pinged) on first use.
    pub async fn get(&self) -> anyhow::Result<&BollardEngine> {
        self.cell.get_or_try_init(|| async { BollardEngine::connect_to(&self.address()).await }).await
    }
}
