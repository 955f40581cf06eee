//! The agent's loop: one place that owns the claim in flight, the running
//! jobs and the shutdown state, fed by `tokio::select!`.

use crate::job_task::{JobOutcome, run_job};
use liftoff_client::Client;
use liftoff_core::api::{AgentStatus, Claim, RegisterAgent};
use liftoff_core::{ItemEvent, Stage};
use liftoff_run::RunnerRegistry;
use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Polled in round robin: the queue that yields an item moves to the back.
    pub queues: Vec<String>,
    /// Concurrent jobs; -1 = unlimited.
    pub max_jobs: i64,
    /// Per-run directories are made under it.
    pub work_dir: PathBuf,
    /// On shutdown, how long running jobs may go on before they are stopped.
    pub grace: Duration,
    /// `stopped_run_timeout`: after a user's stop request, how long a run may
    /// take to exit after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// A run that has not started (source fetched, image pulled, process or
    /// container started) this long after its claim is cancelled and failed.
    pub start_timeout: Duration,
    /// Refuse launches that override the entrypoint or the container command.
    pub secure_mode: bool,
    /// Allow plain `http://` git remotes (loopback test servers, trusted LANs).
    pub allow_http_git: bool,
    /// Labels this agent's containers, so that the agent started again after a
    /// crash finds and re-adopts them. Stable across restarts; one agent per
    /// key and host. Empty: `HOSTNAME/ENTITY/QUEUES`.
    pub agent_key: String,
    /// Where the per-key lock file lives.
    pub lock_dir: PathBuf,
    /// The Docker engine for local-container runs: `unix://...` or
    /// `tcp://...`; `None` means `DOCKER_HOST`, else the default socket.
    pub docker_host: Option<String>,
    /// The Docker client config dir whose `config.json` holds registry
    /// credentials; `None` means `DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config: Option<PathBuf>,
    /// The agent's builder and where its images go; `None` (no `builder`
    /// block, or `noop`): image jobs, and code and git jobs on a `base_image`.
    pub build: Option<std::sync::Arc<liftoff_build::BuildSetup>>,
    /// The supervisor binary (`liftoff-supervisor`, or `liftoff`), run as `BINARY __supervise` to start each
    /// local process (see `liftoff_run::supervise`); `None` starts them
    /// directly, which leaves a `setsid` child, or anything when the agent
    /// is killed with SIGKILL, running (the library's tests have no binary).
    pub supervisor: Option<PathBuf>,
    /// Local processes run as this user instead of the agent's.
    pub run_as: Option<liftoff_run::process::RunAs>,
    /// Filled in by [`run_agent`] once the server has registered the agent.
    pub agent_id: String,
    /// Long-poll bound of one claim request.
    pub claim_wait: Duration,
    /// Agent status and lease renewal period (renewal is also capped at TTL/3).
    pub heartbeat: Duration,
    /// How often the agent prints its status line (the reference: 300 s, or
    /// 20 s with `verbosity` ≥ 1).
    pub status_every: Duration,
    pub hostname: String,
    /// Code archives already downloaded, by digest; shared by every job.
    pub blobs: crate::blob_cache::BlobCache,
}

impl Default for AgentOptions {
    /// The reference's defaults: one job, 60 s to honour a stop, 1,800 s to start.
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            max_jobs: 1,
            work_dir: std::env::temp_dir().join("liftoff-agent"),
            grace: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(1800),
            secure_mode: false,
            allow_http_git: false,
            agent_key: String::new(),
            lock_dir: std::env::temp_dir(),
            docker_host: None,
            docker_config: None,
            build: None,
            supervisor: None,
            run_as: None,
            agent_id: String::new(),
            claim_wait: Duration::from_secs(20),
            heartbeat: Duration::from_secs(5),
            status_every: Duration::from_secs(300),
            hostname: String::new(),
            blobs: crate::blob_cache::BlobCache::default(),
        }
    }
}

type ClaimFuture = Pin<Box<dyn Future<Output = Result<Option<Claim>, liftoff_client::ClientError>> + Send>>;

/// Registers, then claims and runs items until `shutdown` resolves or the
/// server asks the agent to stop polling. Then stops claiming, gives running
/// jobs `grace` to end, stops the rest, and reports each outcome.
pub async fn run_agent(
    client: Client,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let registry = crate::runners::agent_runners(&opts, &liftoff_cloud::CloudEnv::Local);
    run_agent_with(client, opts, registry, shutdown).await
}

/// Why an agent could not start (once started, it does not fail: a job's
/// problem becomes that item's failure).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The work directory could not be created.
    #[error("cannot create the work directory {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Another agent with the same key runs on this host.
    #[error(transparent)]
    Lock(#[from] crate::agent_lock::AgentLockError),
    /// The server refused to register the agent (a missing queue, a bad key).
    #[error("could not start the agent: {0}")]
    Register(#[source] liftoff_client::ClientError),
}

/// [`run_agent`] with the runners of `registry` instead of the local ones.
pub async fn run_agent_with(
    client: Client,
    mut opts: AgentOptions,
    registry: RunnerRegistry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|source| AgentError::WorkDir { path: opts.work_dir.display().to_string(), source })?;
    if opts.agent_key.is_empty() {
        let mut queues = opts.queues.clone();
        queues.sort();
        opts.agent_key = format!("{}/{}/{}", opts.hostname, client.entity(), queues.join(","));
    }
    let _lock = crate::agent_lock::AgentLock::acquire(&opts.lock_dir, &opts.agent_key)?;
    let registered = client
        .register_agent(&RegisterAgent {
            queues: opts.queues.clone(),
            hostname: opts.hostname.clone(),
            max_jobs: opts.max_jobs,
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .await
        .map_err(AgentError::Register)?;
    let agent_id = registered.id;
    opts.agent_id = agent_id.clone();
    let max = opts.max_jobs;
    eprintln!(
        "liftoff agent {agent_id} polling on queues {}, running at most {} jobs",
        opts.queues.join(","),
        if max < 0 { "unlimited".to_string() } else { max.to_string() }
    );

    let (stop_jobs_tx, stop_jobs_rx) = watch::channel(false);
    let mut jobs: JoinSet<JobOutcome> = JoinSet::new();
    let adopted = crate::adopt::adopt_all(&client, &registry, &opts, &mut jobs, &stop_jobs_rx).await;
    if adopted > 0 {
        eprintln!("liftoff agent: re-adopted {adopted} run(s)");
    }
    let mut queues = opts.queues.clone();
    // Items this agent has received and not yet ended (their claims are ours).
    let mut held: HashSet<String> = HashSet::new();
    let mut in_flight: Option<ClaimFuture> = None;
    let mut heartbeat = tokio::time::interval(opts.heartbeat);
    let mut status_line = tokio::time::interval_at(tokio::time::Instant::now() + opts.status_every, opts.status_every);
    let mut backoff = Duration::from_millis(100);
    let mut paused_until = tokio::time::Instant::now();
    // When to ask once more for claims lost in flight (see below).
    let mut release_again: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);

    loop {
        let has_room = max < 0 || (jobs.len() as i64) < max;
        if has_room && in_flight.is_none() && tokio::time::Instant::now() >= paused_until {
            let (c, id, qs, wait) = (client.clone(), agent_id.clone(), queues.clone(), opts.claim_wait);
            in_flight = Some(Box::pin(async move { c.claim(&id, &qs, wait).await }));
        }
        tokio::select! {
            _ = &mut shutdown => {
                eprintln!("liftoff agent: shutting down; {} running job(s)", jobs.len());
                break;
            }
            Some(done) = jobs.join_next(), if !jobs.is_empty() => log_outcome(done, &mut held),
            claimed = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                match claimed {
                    Ok(Some(claim)) => {
                        backoff = Duration::from_millis(100);
                        rotate_after(&mut queues, &claim.item.queue);
                        tracing::info!(item = %claim.item.id, run = %claim.item.run_id, queue = %claim.item.queue, "claimed");
                        let (id, fence) = (claim.item.id.clone(), claim.fence);
                        held.insert(id.clone());
                        let job = run_job(client.clone(), claim, opts.clone(), registry.clone(), stop_jobs_rx.clone());
                        jobs.spawn(contain_panic(client.clone(), id, fence, job));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "claim failed; backing off {backoff:?}");
                        if e.is_transient() {
                            // The server may have granted a claim whose answer was lost.
                            release_lost_claims(&client, &agent_id, &held).await;
                            // A server that died after sending its claim's
                            // COMMIT may see it land only after this release:
                            // ask again once the database has settled.
                            release_again = Some(tokio::time::Instant::now() + RELEASE_AGAIN_AFTER);
                        }
                        paused_until = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            _ = tokio::time::sleep_until(paused_until), if in_flight.is_none() && has_room => {}
            _ = async { tokio::time::sleep_until(release_again.expect("guarded")).await }, if release_again.is_some() => {
                release_again = None;
                release_lost_claims(&client, &agent_id, &held).await;
            }
            _ = status_line.tick() => eprintln!(
                "liftoff agent {agent_id} polling on queues {}, running {} out of a maximum of {} jobs",
                queues.join(","),
                jobs.len(),
                if max < 0 { "unlimited".to_string() } else { max.to_string() }
            ),
            _ = heartbeat.tick() => {
                let status = if jobs.is_empty() { AgentStatus::Polling } else { AgentStatus::Running };
                match client.agent_heartbeat(&agent_id, status).await {
                    Ok(r) if r.stop_polling => {
                        eprintln!("liftoff agent: the server asked this agent to stop polling; shutting down");
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "agent heartbeat failed"),
                }
            }
        }
    }
    // A claim still in flight is dropped; if the server had just granted it,
    // the release below gives it back (else its lease runs out).
    drop(in_flight);
    let deadline = tokio::time::Instant::now() + opts.grace;
    while !jobs.is_empty() {
        tokio::select! {
            Some(done) = jobs.join_next() => log_outcome(done, &mut held),
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("liftoff agent: grace period over; stopping {} job(s)", jobs.len());
                let _ = stop_jobs_tx.send(true);
                while let Some(done) = jobs.join_next().await {
                    log_outcome(done, &mut held);
                }
            }
        }
    }
    release_lost_claims(&client, &agent_id, &held).await;
    // Bounded: an unreachable server must not keep a stopping agent alive.
    let _ = tokio::time::timeout(Duration::from_secs(5), client.agent_heartbeat(&agent_id, AgentStatus::Stopped)).await;
    Ok(())
}

/// A bug in one job's handling must not take the agent or the item down
/// silently: a panic becomes a failure of that item, stage `agent`.
async fn contain_panic(
    client: Client,
    item_id: String,
    fence: i64,
    job: impl Future<Output = JobOutcome> + Send,
) -> JobOutcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(job).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let event = ItemEvent::Fail {
                reason: format!("internal error in the agent while handling this run: {what}"),
                exit_code: None,
                stage: Some(Stage::Agent),
            };
            let reported = client.report(&item_id, fence, event.clone()).await.is_ok();
            JobOutcome { item_id, event: reported.then_some(event) }
        }
    }
}

/// After a claim failed in transit, when to release lost claims a second time.
const RELEASE_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// Asks the server to put back any item it granted this agent that the
/// agent never received (all but `held`). Best effort and bounded: if it
/// fails, the lease of such an item runs out instead.
async fn release_lost_claims(client: &Client, agent_id: &str, held: &HashSet<String>) {
    let keep: Vec<String> = held.iter().cloned().collect();
    match tokio::time::timeout(Duration::from_secs(5), client.release_claims(agent_id, &keep)).await {
        Ok(Ok(r)) if !r.released.is_empty() => {
            tracing::warn!(items = ?r.released, "gave back claims this agent never received");
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release lost claims"),
        Err(_) => tracing::warn!("could not release lost claims: the server did not answer in 5 s"),
    }
}

fn log_outcome(done: Result<JobOutcome, tokio::task::JoinError>, held: &mut HashSet<String>) {
    match done {
        Ok(o) => {
            tracing::info!(item = %o.item_id, outcome = ?o.event, "job ended");
            held.remove(&o.item_id);
        }
        Err(e) => tracing::error!(error = %e, "job task panicked"),
    }
}

/// Round robin, as the reference does it: the queue that yielded an item
/// moves to the back, so the others are asked first next time.
fn rotate_after(queues: &mut Vec<String>, yielded: &str) {
    if let Some(pos) = queues.iter().position(|q| q == yielded) {
        let q = queues.remove(pos);
        queues.push(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_that_yielded_goes_to_the_back() {
        let mut qs: Vec<String> = ["q1", "q2", "q3"].map(String::from).to_vec();
        rotate_after(&mut qs, "q1");
        assert_eq!(qs, ["q2", "q3", "q1"]);
        rotate_after(&mut qs, "q3");
        assert_eq!(qs, ["q2", "q1", "q3"]);
        rotate_after(&mut qs, "gone");
        assert_eq!(qs, ["q2", "q1", "q3"], "an unknown queue changes nothing");
    }
}
