//! `liftoff agent`: claims items from queues and runs them until ctrl-c or SIGTERM.

use crate::connect::{DEFAULT_BASE_URL, DEFAULT_ENTITY, Globals};
use anyhow::{Context, bail};
use clap::Args;
use liftoff_agent::{AgentOptions, LaunchConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// launch-config.yaml (entity, queues, max_jobs, base_url).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Queue to serve (repeatable); replaces the config file's queues.
    #[arg(short, long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// Concurrent jobs, -1 for unlimited [default: 1].
    #[arg(short = 'j', long, value_name = "MAX_JOBS", allow_negative_numbers = true)]
    max_jobs: Option<i64>,
    /// Where jobs are unpacked and run [default: a new temporary directory].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds a stopped job gets to exit before it is killed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    grace: u64,
}

pub async fn run(globals: &Globals, args: AgentArgs) -> anyhow::Result<()> {
    // defaults < file < environment < flags (clap has already merged the last two)
    let file = match &args.config {
        Some(path) => LaunchConfig::from_file(path)?,
        None => LaunchConfig::default(),
    };
    let queues = if args.queues.is_empty() { file.queues } else { args.queues };
    if queues.is_empty() {
        bail!("no queues: pass -q or set queues in the config");
    }
    let max_jobs = args.max_jobs.or(file.max_jobs).unwrap_or(1);
    if max_jobs == 0 || max_jobs < -1 {
        bail!("max jobs must be -1 (unlimited) or at least 1, got {max_jobs}");
    }
    let entity = globals.entity.clone().or(file.entity).unwrap_or_else(|| DEFAULT_ENTITY.to_string());
    let base_url = globals.base_url.clone().or(file.base_url).unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let client = globals.client_for(&base_url, &entity)?;

    // held until the agent returns, so a temporary work dir outlives every job
    let (_temp, work_dir) = match args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
            (None, dir)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("liftoff-agent-")
                .tempdir()
                .context("failed to create a work directory")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    tracing::info!(%entity, %base_url, ?queues, max_jobs, work_dir = %work_dir.display(), "starting agent");
    let opts = AgentOptions {
        queues,
        max_jobs,
        work_dir,
        grace: Duration::from_secs(args.grace),
        claim_wait: Duration::from_secs(20),
        heartbeat: Duration::from_secs(5),
        hostname: hostname(),
    };
    liftoff_agent::run_agent(client, opts, crate::signal::shutdown_requested()).await
}

/// This machine's name, for the server's agent list.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
