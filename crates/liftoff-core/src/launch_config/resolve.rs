//! Defaults < file < environment < flags, and the two entry points.

use super::agent::{
    AgentConfig, DEFAULT_MAX_JOBS, DEFAULT_MAX_SCHEDULERS, DEFAULT_START_TIMEOUT, DEFAULT_STOPPED_RUN_TIMEOUT, dedup,
    name_problem, read_file, shown_url,
};
use super::consistency;
use super::issue::ConfigIssue;
use super::keys::MAX_COUNT;
use super::reader::{Issues, bounds_message, parse_decimal};
use super::yaml;
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest file accepted: 1 MiB.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The error for an agent with nothing to serve (the reference's wording).
pub const NO_QUEUES: &str =
    "To launch an agent please specify a queue or a list of queues in the configuration file or cli";

/// Command-line flags, which win over the file and the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--entity`.
    pub entity: Option<String>,
    /// `-q`, repeatable: when given, replaces every queue of the file.
    pub queues: Vec<String>,
    /// `--max-jobs`; -1 is unlimited.
    pub max_jobs: Option<i64>,
    /// `-v` count; applied only when above 0, as in the reference.
    pub verbosity: Option<u8>,
    /// `--base-url`.
    pub base_url: Option<String>,
}

/// A valid configuration and the warnings found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub config: AgentConfig,
    pub warnings: Vec<ConfigIssue>,
}

/// Builds the agent's configuration from the file text (`None`: no file), the
/// process environment (passed in, so this stays pure) and the flags. Every
/// problem is returned at once. Environment variables read, `LIFTOFF_*` first
/// and `WANDB_*` as fallback, empty values counting as unset:
/// `LIFTOFF_ENTITY`/`WANDB_ENTITY`, `LIFTOFF_LAUNCH_MAX_JOBS`/`WANDB_LAUNCH_MAX_JOBS`,
/// `LIFTOFF_LAUNCH_START_TIMEOUT`/`WANDB_LAUNCH_START_TIMEOUT`.
/// Unlike [`check_file_text`], no queue at all is an error ([`NO_QUEUES`]).
pub fn resolve(
    text: Option<&str>,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
) -> Result<Resolved, Vec<ConfigIssue>> {
    resolve_with(text, env, flags, true)
}

/// Checks the file alone, for `liftoff config check`: no environment, no
/// flags. A file without queues is valid with a warning, since `-q` may
/// supply them when the agent starts; everything else fails exactly as
/// [`resolve`] would.
pub fn check_file_text(text: &str) -> Result<Resolved, Vec<ConfigIssue>> {
    resolve_with(Some(text), &BTreeMap::new(), &Overrides::default(), false)
}

fn resolve_with(
    text: Option<&str>,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
    queues_required: bool,
) -> Result<Resolved, Vec<ConfigIssue>> {
    let mut is = Issues::default();
    let root = match text {
        Some(t) if t.len() > MAX_FILE_BYTES => {
            return Err(vec![ConfigIssue::new(
                "",
                None,
                format!("the file is {} bytes; a launch config may be at most {MAX_FILE_BYTES} bytes (1 MiB)", t.len()),
            )]);
        }
        Some(t) => {
            let mut parse_issues = Vec::new();
            let root = yaml::parse(t, &mut parse_issues);
            let fatal = root.is_none() && !parse_issues.is_empty();
            for i in parse_issues {
                is.push(i);
            }
            if fatal {
                return Err(is.errors);
            }
            root
        }
        None => None,
    };
    let file = read_file(&mut is, root.as_ref());
    consistency::check(&mut is, file.builder.as_ref(), file.environment.as_ref(), file.registry.as_ref());

    // entity: file < environment < flag
    let mut entity = file.entity;
    if let Some((var, v)) = env_var(env, &["LIFTOFF_ENTITY", "WANDB_ENTITY"]) {
        entity = checked(&mut is, var, v);
    }
    if let Some(v) = &flags.entity {
        entity = checked(&mut is, "--entity", v);
    }

    // max_jobs: file < environment < flag
    let mut max_jobs = file.max_jobs;
    if let Some((var, v)) = env_var(env, &["LIFTOFF_LAUNCH_MAX_JOBS", "WANDB_LAUNCH_MAX_JOBS"]) {
        max_jobs = env_integer(&mut is, var, v, -1, MAX_COUNT);
    }
    if let Some(n) = flags.max_jobs {
        max_jobs = match bounds_message(n, -1, MAX_COUNT) {
            None => Some(n),
            Some(m) => {
                is.error("--max-jobs", Some(&n.to_string()), m);
                None
            }
        };
    }
    let max_jobs = max_jobs.unwrap_or(DEFAULT_MAX_JOBS);
    if max_jobs == 0 {
        is.warn("max_jobs", Some("0"), "with max_jobs 0 the agent never runs a job");
    }

    let mut start_timeout = file.start_timeout;
    if let Some((var, v)) = env_var(env, &["LIFTOFF_LAUNCH_START_TIMEOUT", "WANDB_LAUNCH_START_TIMEOUT"]) {
        start_timeout = env_integer(&mut is, var, v, 1, i64::MAX);
    }

    // queues: `-q` replaces the file's `queues` and `queue` together
    let mut queues = file.queues;
    if !flags.queues.is_empty() {
        queues = flags.queues.iter().filter_map(|q| checked(&mut is, "--queue", q)).collect();
        dedup(&mut queues);
    }
    // (bad `-q` values are already errors of their own)
    if queues.is_empty() && flags.queues.is_empty() {
        if queues_required {
            is.error("queues", None, NO_QUEUES);
        } else {
            is.warn("queues", None, "no queues: the agent will need -q when it starts");
        }
    }

    let mut base_url = file.base_url;
    if let Some(u) = &flags.base_url {
        base_url = match super::agent::check_base_url(u) {
            Ok(()) => Some(u.clone()),
            Err(m) => {
                is.error("--base-url", Some(&shown_url(u)), m);
                None
            }
        };
    }
    let mut verbosity = file.verbosity.unwrap_or(0);
    if let Some(v) = flags.verbosity.filter(|v| *v > 0) {
        verbosity = i64::from(v);
    }

    if !is.errors.is_empty() {
        return Err(in_file_order(is.errors));
    }
    let count = |n: i64| (n >= 0).then(|| u32::try_from(n).unwrap_or(u32::MAX));
    let secs = |n: i64| Duration::from_secs(n.max(0).unsigned_abs());
    let config = AgentConfig {
        entity,
        project: file.project,
        queues,
        max_jobs: count(max_jobs),
        max_schedulers: count(file.max_schedulers.unwrap_or(DEFAULT_MAX_SCHEDULERS)),
        secure_mode: file.secure_mode.unwrap_or(false),
        verbosity: u8::try_from(verbosity).unwrap_or(u8::MAX),
        stopped_run_timeout: secs(file.stopped_run_timeout.unwrap_or(DEFAULT_STOPPED_RUN_TIMEOUT)),
        start_timeout: secs(start_timeout.unwrap_or(DEFAULT_START_TIMEOUT)),
        base_url,
        allow_http_git: file.allow_http_git.unwrap_or(false),
        builder: file.builder,
        environment: file.environment,
        registry: file.registry,
    };
    Ok(Resolved { config, warnings: in_file_order(is.warnings) })
}

/// The first of `names` set to a non-blank value.
fn env_var<'a>(env: &'a BTreeMap<String, String>, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|n| env.get(*n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v.as_str())))
}

fn checked(is: &mut Issues, path: &str, v: &str) -> Option<String> {
    match name_problem(v) {
        None => Some(v.to_string()),
        Some(m) => {
            is.error(path, Some(v), m);
            None
        }
    }
}

fn env_integer(is: &mut Issues, var: &str, v: &str, min: i64, max: i64) -> Option<i64> {
    let Some(n) = parse_decimal(v) else {
        is.error(var, Some(v), "expected an integer");
        return None;
    };
    match bounds_message(n, min, max) {
        None => Some(n),
        Some(m) => {
            is.error(var, Some(v), m);
            None
        }
    }
}

/// Issues with a position in file order, then the others (environment, flags)
/// in the order they were found.
fn in_file_order(mut issues: Vec<ConfigIssue>) -> Vec<ConfigIssue> {
    issues.sort_by_key(|i| (i.line.is_none(), i.line, i.column));
    issues
}
