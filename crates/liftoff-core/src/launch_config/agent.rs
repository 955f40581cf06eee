//! The top level of the file and the resolved agent configuration.

use super::builder::{self, BuilderConfig};
use super::environment::{self, EnvironmentConfig};
use super::issue::ConfigIssue;
use super::keys::AGENT_KEYS;
use super::reader::{Issues, flag, known_entries, mapping, shaped_integer, text_list, word};
use super::registry::{self, RegistryConfig};
use super::yaml::Node;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// The agent's settings, fully resolved (defaults < file < environment < flags).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentConfig {
    /// `None`: use the API key's entity.
    pub entity: Option<String>,
    pub project: Option<String>,
    /// Never empty after [`super::resolve`]; duplicates removed, order kept.
    pub queues: Vec<String>,
    /// `None` = unlimited (`-1`).
    pub max_jobs: Option<u32>,
    /// `None` = unlimited (`-1`).
    pub max_schedulers: Option<u32>,
    pub secure_mode: bool,
    pub verbosity: u8,
    #[serde(serialize_with = "seconds")]
    pub stopped_run_timeout: Duration,
    #[serde(serialize_with = "seconds")]
    pub start_timeout: Duration,
    pub base_url: Option<String>,
    pub allow_http_git: bool,
    pub builder: Option<BuilderConfig>,
    pub environment: Option<EnvironmentConfig>,
    pub registry: Option<RegistryConfig>,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Defaults of the reference (`max_jobs` 1, `stopped_run_timeout` 60 s) and of
/// `WANDB_LAUNCH_START_TIMEOUT` (1800 s).
pub(crate) const DEFAULT_MAX_JOBS: i64 = 1;
pub(crate) const DEFAULT_MAX_SCHEDULERS: i64 = 1;
pub(crate) const DEFAULT_STOPPED_RUN_TIMEOUT: i64 = 60;
pub(crate) const DEFAULT_START_TIMEOUT: i64 = 1800;

/// What the file says, before the environment and flags are applied.
#[derive(Debug, Default)]
pub(crate) struct FileValues {
    pub entity: Option<String>,
    pub project: Option<String>,
    pub queues: Vec<String>,
    pub max_jobs: Option<i64>,
    pub max_schedulers: Option<i64>,
    pub secure_mode: Option<bool>,
    pub verbosity: Option<i64>,
    pub stopped_run_timeout: Option<i64>,
    pub start_timeout: Option<i64>,
    pub base_url: Option<String>,
    pub allow_http_git: Option<bool>,
    pub builder: Option<BuilderConfig>,
    pub environment: Option<EnvironmentConfig>,
    pub registry: Option<RegistryConfig>,
}

/// Reads the top-level mapping; `None` (an empty file) reads as `{}`.
pub(crate) fn read_file(is: &mut Issues, root: Option<&Node>) -> FileValues {
    let mut f = FileValues::default();
    let Some(root) = root else { return f };
    if super::reader::is_null(root) {
        return f;
    }
    let Some(entries) = mapping(is, "", root) else { return f };
    let mut single_queue = None;
    for (k, e) in known_entries(is, "", entries, AGENT_KEYS, None, false) {
        let p = k.name;
        let v = &e.value;
        match p {
            "entity" => f.entity = name(is, p, v),
            "project" => f.project = name(is, p, v),
            "queues" => {
                for (q, n, qp) in text_list(is, p, v) {
                    if let Some(q) = checked_name(is, &qp, n, q) {
                        f.queues.push(q);
                    }
                }
            }
            "queue" => single_queue = name(is, p, v),
            "max_jobs" => f.max_jobs = shaped_integer(is, p, v, k),
            "max_schedulers" => f.max_schedulers = shaped_integer(is, p, v, k),
            "secure_mode" => f.secure_mode = flag(is, p, v),
            "verbosity" => f.verbosity = shaped_integer(is, p, v, k),
            "stopped_run_timeout" => f.stopped_run_timeout = shaped_integer(is, p, v, k),
            "start_timeout" => f.start_timeout = shaped_integer(is, p, v, k),
            "base_url" => {
                f.base_url = word(is, p, v).and_then(|s| match check_base_url(&s) {
                    Ok(()) => Some(s),
                    Err(m) => {
                        is.push(ConfigIssue::new(p, Some(shown_url(&s)), m).at(v.line, v.column));
                        None
                    }
                })
            }
            "allow_http_git" => f.allow_http_git = flag(is, p, v),
            "builder" => f.builder = builder::read(is, p, v),
            "environment" => f.environment = environment::read(is, p, v),
            "registry" => f.registry = registry::read(is, p, v),
            other => unreachable!("top-level key '{other}' is in the table but not read"),
        }
    }
    // `queue:` joins `queues` (the reference refuses the key although its CLI code reads it)
    f.queues.extend(single_queue);
    dedup(&mut f.queues);
    f
}

fn name(is: &mut Issues, path: &str, node: &Node) -> Option<String> {
    let s = word(is, path, node)?;
    checked_name(is, path, node, s)
}

fn checked_name(is: &mut Issues, path: &str, node: &Node, s: String) -> Option<String> {
    match name_problem(&s) {
        None => Some(s),
        Some(m) => {
            is.error_at(path, node, m);
            None
        }
    }
}

/// Why `s` is not a valid entity, project or queue name (the server's rule).
pub(crate) fn name_problem(s: &str) -> Option<String> {
    crate::queue::validate_name("name", s)
        .err()
        .map(|_| "use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'".to_string())
}

/// Removes repeats, keeping the first of each.
pub(crate) fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|q| seen.insert(q.clone()));
}

/// An `http://` or `https://` URL with a host and no credentials in it.
pub(crate) fn check_base_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials (user:password@); use the API key".into());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() { h } else { authority }
    });
    if host.is_empty() || host.trim_start_matches('[').trim_end_matches(']').is_empty() {
        return Err("has no host".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces".into());
    }
    Ok(())
}

/// A URL as shown in messages: redacted whole when it carries credentials.
pub(crate) fn shown_url(s: &str) -> String {
    if s.contains('@') { "<redacted>".to_string() } else { s.to_string() }
}
