//! `liftoff agent`: claims items from queues and runs them until ctrl-c or
//! SIGTERM; `liftoff agent list` shows the entity's agents.

use crate::connect::{DEFAULT_BASE_URL, Globals};
use crate::output::{self, FormatArg, Table};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use liftoff_agent::AgentOptions;
use liftoff_core::api::AgentView;
use liftoff_core::launch_config::{self, Overrides};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    action: Option<AgentCmd>,
    /// launch-config.yaml, as the reference agent reads it (see `liftoff config schema`).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Queue to serve (repeatable); replaces the config file's queues.
    #[arg(short, long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// Concurrent jobs, -1 for unlimited [default: 1].
    #[arg(short = 'j', long, value_name = "MAX_JOBS", allow_negative_numbers = true)]
    max_jobs: Option<i64>,
    /// More output (repeatable).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Where jobs are unpacked and run [default: a new temporary directory].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds running jobs may go on after SIGTERM before they are stopped.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    grace: u64,
    /// Names this agent's containers so that, started again after a crash,
    /// it re-adopts the ones still running; one agent per key and host
    /// [default: HOSTNAME/ENTITY/QUEUES].
    #[arg(long, value_name = "KEY")]
    agent_key: Option<String>,
    /// Read the agent's API key from FILE (mode 0600 or stricter) instead of
    /// LIFTOFF_API_KEY: a key given only in a file is in no process's
    /// environment, where a job running as the same user could read it.
    #[arg(long, env = "LIFTOFF_API_KEY_FILE", value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// Run local processes as this user (name or uid) rather than the
    /// agent's, so that they cannot read its key; the agent must be root.
    #[arg(long, env = "LIFTOFF_RUN_AS", value_name = "USER")]
    run_as: Option<String>,
    /// Answer `GET /healthz` on ADDR (e.g. 0.0.0.0:7435) while the agent
    /// runs: a probe for Kubernetes.
    #[arg(long, env = "LIFTOFF_HEALTH_LISTEN", value_name = "ADDR")]
    health_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum AgentCmd {
    /// List the entity's agents and what they are doing.
    List(FormatArg),
    /// Ask an agent to stop polling and shut down.
    StopPolling {
        /// Agent id (from `liftoff agent list`).
        id: String,
    },
}

pub async fn run(globals: &Globals, args: AgentArgs) -> anyhow::Result<()> {
    match args.action {
        Some(AgentCmd::List(format)) => {
            let agents = globals.client()?.list_agents().await.context("failed to list agents")?;
            return output::emit(format.format, &agents, |a| list_table(a));
        }
        Some(AgentCmd::StopPolling { id }) => {
            let a = globals
                .client()?
                .stop_agent_polling(&id)
                .await
                .with_context(|| format!("failed to stop agent '{id}'"))?;
            println!("agent {} will stop polling at its next heartbeat", a.id);
            return Ok(());
        }
        None => {}
    }
    // No other process of this user (a job) may read this one's memory or
    // /proc/<pid>/environ, where the key may be; root still can.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("warning: could not make the agent non-dumpable ({e}); jobs may read its environment");
    }
    let globals = match &args.api_key_file {
        Some(path) if globals.api_key.as_deref().is_some_and(|k| !k.trim().is_empty()) => bail!(
            "the agent's API key is given twice: in --api-key or LIFTOFF_API_KEY, and in {}; give one",
            path.display()
        ),
        Some(path) => &Globals { api_key: Some(read_private_key(path)?), ..globals.clone() },
        None => globals,
    };
    // defaults < file < environment < flags
    let text = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("could not read the launch config {}", path.display()))?,
        ),
        None => None,
    };
    // a variable that is not UTF-8 cannot be one of the config's
    let env: BTreeMap<String, String> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let flags = Overrides {
        entity: globals.entity.clone(),
        queues: args.queues.clone(),
        max_jobs: args.max_jobs,
        verbosity: (args.verbose > 0).then_some(args.verbose),
        base_url: globals.base_url.clone(),
    };
    let resolved = match launch_config::resolve(text.as_deref(), &env, &flags) {
        Ok(r) => r,
        Err(issues) => {
            let shown = args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the agent".into());
            for i in &issues {
                eprintln!("error: {i}");
            }
            bail!("invalid launch agent config in {shown}: {} error(s)", issues.len());
        }
    };
    for w in &resolved.warnings {
        eprintln!("warning: {w}");
    }
    let cfg = resolved.config;
    let base_url = cfg.base_url.clone().unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let client = globals.client_for(&base_url, "-")?;
    let entity = match cfg.entity.clone() {
        Some(e) => e,
        // the reference falls back to the key's default entity
        None => {
            client.whoami().await.with_context(|| format!("could not connect to {base_url} with this API key"))?.entity
        }
    };
    let client = client.with_entity(&entity);

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
    let run_as = match &args.run_as {
        Some(user) => {
            let run_as = run_as_user(user)?;
            // the run directories below it are the user's; the user must reach them
            std::fs::set_permissions(&work_dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                .with_context(|| format!("failed to open {} to user {user}", work_dir.display()))?;
            Some(run_as)
        }
        None => None,
    };
    let hostname = hostname();
    let environment = liftoff_cloud::CloudEnv::resolve(cfg.environment.as_ref())
        .await
        .context("could not set up the agent's environment")?;
    let engine = liftoff_run::SharedEngine::new(None);
    let build = match liftoff_build::BuildSetup::from_config(&cfg, &environment, engine, None)
        .await
        .context("could not set up the agent's builder")?
    {
        Some((setup, warnings)) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            tracing::info!(builder = ?setup, "builds enabled");
            Some(std::sync::Arc::new(setup))
        }
        None => None,
    };
    let opts = AgentOptions {
        queues: cfg.queues.clone(),
        max_jobs: cfg.max_jobs.map_or(-1, i64::from),
        work_dir,
        grace: Duration::from_secs(args.grace),
        stop_timeout: cfg.stopped_run_timeout,
        start_timeout: cfg.start_timeout,
        secure_mode: cfg.secure_mode,
        allow_http_git: cfg.allow_http_git,
        agent_key: args.agent_key.unwrap_or_default(),
        status_every: Duration::from_secs(if cfg.verbosity >= 1 { 20 } else { 300 }),
        hostname,
        supervisor: Some(supervisor()?),
        run_as,
        build,
        ..AgentOptions::default()
    };
    tracing::info!(%entity, %base_url, queues = ?opts.queues, max_jobs = opts.max_jobs, work_dir = %opts.work_dir.display(), "starting agent");
    if let Some(addr) = args.health_listen {
        crate::agent_health::serve(addr).await?;
    }
    let registry = liftoff_agent::agent_runners(&opts, &environment);
    tracing::info!(runners = ?registry.resources(), "runners");
    Ok(liftoff_agent::run_agent_with(client, opts, registry, crate::signal::shutdown_requested()).await?)
}

/// What the agent runs as `BINARY __supervise` for each local process:
/// `liftoff-supervisor` beside this binary, else this binary itself (with a
/// warning: it works the same, at about 2 ms more CPU per run).
pub fn supervisor() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("could not find the liftoff binary to supervise local processes")?;
    let small = me.with_file_name(liftoff_run::supervise::SUPERVISOR_BIN);
    if small.is_file() {
        return Ok(small);
    }
    tracing::warn!(
        "{} is not beside {} (install both); local runs are supervised by re-executing liftoff instead, \
         at about 2 ms more CPU per run",
        liftoff_run::supervise::SUPERVISOR_BIN,
        me.display()
    );
    Ok(me)
}

/// The user named `user` (or with that uid), which the agent can switch to.
fn run_as_user(user: &str) -> anyhow::Result<liftoff_run::process::RunAs> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    };
    let u = found
        .with_context(|| format!("failed to look up the user '{user}' of --run-as"))?
        .with_context(|| format!("--run-as: there is no user '{user}'"))?;
    if !Uid::effective().is_root() && u.uid != Uid::effective() {
        bail!("--run-as {user}: only an agent running as root can run jobs as another user");
    }
    Ok(liftoff_run::process::RunAs { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir })
}

/// The agent's key from `path`, refused unless only its owner can read it.
fn read_private_key(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("failed to read {}", path.display()))?;
    let mode = meta.permissions().mode();
    // Group read is allowed for the agent's own group only: a Kubernetes
    // Secret volume with an fsGroup is mode 0440, group the pod's.
    let own_group = meta.gid() == nix::unistd::getegid().as_raw() && mode & 0o020 == 0;
    if mode & 0o007 != 0 || (mode & 0o070 != 0 && !own_group) {
        bail!(
            "the API key file {} is open to other users (mode {:o}); run chmod 600 {} first",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    crate::connect::read_key_file(path)
}

fn list_table(agents: &[AgentView]) -> Table {
    let mut t =
        Table::with_header(["AGENT", "HOST", "VERSION", "STATUS", "QUEUES", "MAX JOBS", "HEARTBEAT", "STOP POLLING"]);
    for a in agents {
        t.row([
            a.id.clone(),
            a.hostname.clone(),
            output::opt(a.version.as_deref()),
            format!("{:?}", a.status).to_lowercase(),
            a.queues.join(","),
            if a.max_jobs < 0 { "unlimited".to_string() } else { a.max_jobs.to_string() },
            output::time_ms(a.heartbeat_at_ms),
            if a.stop_polling { "yes" } else { "no" }.to_string(),
        ]);
    }
    t
}

/// This machine's name, for the server's agent list.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
