//! `launch-config.yaml`, the subset the walking skeleton uses. Unknown keys
//! are refused. (The full W&B-compatible schema is a later issue.)

use serde::Deserialize;
use std::path::Path;

/// The agent's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Entity whose queues the agent serves.
    #[serde(default)]
    pub entity: Option<String>,
    #[serde(default)]
    pub queues: Vec<String>,
    /// Concurrent jobs; -1 = unlimited. Default 1.
    #[serde(default)]
    pub max_jobs: Option<i64>,
    /// Liftoff addition: the server's URL.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl LaunchConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Self::from_yaml(&text).map_err(|message| ConfigError::Invalid { path: shown, message })
    }

    pub fn from_yaml(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let cfg: Self = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if let Some(n) = cfg.max_jobs
            && (n < -1 || n == 0)
        {
            return Err(format!("max_jobs: must be -1 (unlimited) or at least 1, got {n}"));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let c = LaunchConfig::from_yaml("entity: acme\nqueues: [a, b]\nmax_jobs: -1\n").unwrap();
        assert_eq!(c.queues, vec!["a", "b"]);
        assert_eq!(c.max_jobs, Some(-1));
        let e = LaunchConfig::from_yaml("queuez: [a]\n").unwrap_err();
        assert!(e.contains("queuez"), "{e}");
        assert!(LaunchConfig::from_yaml("max_jobs: -2\n").unwrap_err().contains("max_jobs"));
    }
}
