//! One claimed item, from checking its spec to reporting its outcome, under
//! a lease kept alive by a side task. Also the re-adoption of a container
//! left running by an agent that died.

use crate::abort_on_drop::AbortOnDrop;
use crate::agent::AgentOptions;
use crate::build_step;
use crate::log_shipper::{LogShipper, ShipOutcome};
use crate::materialize::materialize;
use crate::runners;
use liftoff_client::{Client, ClientError};
use liftoff_core::api::{AppendLog, Claim, ItemView, LogStream, LogTail};
use liftoff_core::{ItemEvent, Stage};
pub use liftoff_run::lines::agent_line;
use liftoff_run::{JobError, JobErrorCode, Prepared, RunnerRegistry, RunningJob};
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Why a job is being asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Keep going.
    None,
    /// A user asked, through the server.
    Requested,
    /// The agent is shutting down (SIGTERM, or the server said stop polling).
    Shutdown,
    /// The server no longer recognises our lease: stop, report nothing.
    LeaseLost,
}

/// How a job ended, as the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub item_id: String,
    pub event: Option<ItemEvent>,
}

/// What one job's body gets: where to write its log, how to learn it must stop.
pub struct JobIo {
    pub logs: mpsc::Sender<(LogStream, String)>,
    pub stop: watch::Receiver<StopCause>,
}

/// The lease an agent holds on an item.
pub struct Lease {
    pub item_id: String,
    pub fence: i64,
    pub ttl_ms: i64,
    pub log_seq_start: i64,
}

/// Runs one claimed item to the end. Never panics on bad input: every
/// failure becomes a `fail` report with its stage.
pub async fn run_job(
    client: Client,
    claim: Claim,
    opts: AgentOptions,
    registry: RunnerRegistry,
    shutdown: watch::Receiver<bool>,
) -> JobOutcome {
    let lease = Lease {
        item_id: claim.item.id.clone(),
        fence: claim.fence,
        ttl_ms: claim.lease_ttl_ms,
        log_seq_start: claim.log_seq_start,
    };
    let item = claim.item;
    let run_key = claim.run_api_key;
    let c = client.clone();
    under_lease(client, lease, opts.clone(), shutdown, move |io| async move {
        drive(&c, &registry, &item, run_key.as_deref(), &opts, io).await
    })
    .await
}

/// Once the agent is shutting down (after its grace period), how long a job
/// may still spend flushing its log and reporting its outcome to a server
/// that does not answer. Past it the agent gives up: the lease runs out on
/// the server and the item is run again (the run itself is already stopped).
pub const FINAL_REPORT_BOUND: Duration = Duration::from_secs(10);

/// Holds the lease while `body` runs and until its outcome is reported:
/// renews it, turns stop requests and agent shutdown into a [`StopCause`],
/// ships the log, then reports the event `body` returns (unless the lease
/// was lost). Renewal runs in its own task, so it never waits on log
/// shipping or on the report.
pub async fn under_lease<F, Fut>(
    client: Client,
    lease: Lease,
    opts: AgentOptions,
    shutdown: watch::Receiver<bool>,
    body: F,
) -> JobOutcome
where
    F: FnOnce(JobIo) -> Fut,
    Fut: Future<Output = Option<ItemEvent>>,
{
    let (stop_tx, stop_rx) = watch::channel(StopCause::None);
    let keeper = AbortOnDrop(tokio::spawn(keep_lease(client.clone(), &lease, opts.heartbeat, stop_tx.clone())));
    // Shutdown of the agent becomes a stop of this job.
    let shutdown_watch = {
        let (stop_tx, mut shutdown) = (stop_tx.clone(), shutdown.clone());
        AbortOnDrop(tokio::spawn(async move {
            if shutdown.wait_for(|s| *s).await.is_ok() {
                stop_tx.send_if_modified(|c| replace_if_none(c, StopCause::Shutdown));
            }
        }))
    };

    let shipper = LogShipper::start(client.clone(), lease.item_id.clone(), lease.fence, lease.log_seq_start);
    let mut lost_rx = stop_rx.clone();
    let event = body(JobIo { logs: shipper.sender(), stop: stop_rx.clone() }).await;
    drop(shutdown_watch);
    // Every line before the outcome, and both while the lease is renewed.
    let finishing = async {
        // An outcome to report carries the log's last chunk (one request, not two).
        let (shipped, tail) = match event {
            Some(_) => shipper.finish_keeping_tail().await,
            None => (shipper.finish().await, None),
        };
        if shipped == ShipOutcome::LeaseLost {
            return None;
        }
        match event {
            Some(ev) => report(&client, &lease.item_id, lease.fence, ev, tail, &stop_rx).await,
            None => None,
        }
    };
    let mut shutdown = shutdown;
    let event = tokio::select! {
        reported = finishing => reported,
        _ = lost_rx.wait_for(|c| *c == StopCause::LeaseLost) => None,
        _ = async {
            let _ = shutdown.wait_for(|s| *s).await;
            tokio::time::sleep(FINAL_REPORT_BOUND).await;
        } => {
            tracing::error!(item = %lease.item_id, "the agent is stopping and the server did not take this run's \
                outcome within {FINAL_REPORT_BOUND:?}; giving up (its lease will run out on the server)");
            None
        }
    };
    drop(keeper);
    JobOutcome { item_id: lease.item_id, event }
}

/// Renews the lease every TTL/3 (at most every `heartbeat`) until aborted
/// or until the server says the lease is gone. Each renewal is bounded by
/// half the TTL, so a hung connection cannot outlast the lease.
fn keep_lease(
    client: Client,
    lease: &Lease,
    heartbeat: Duration,
    stop_tx: watch::Sender<StopCause>,
) -> impl Future<Output = ()> + Send + 'static {
    let renew_every = Duration::from_millis((lease.ttl_ms / 3).max(50) as u64).min(heartbeat);
    let bound = Duration::from_millis((lease.ttl_ms / 2).max(100) as u64);
    let (id, fence) = (lease.item_id.clone(), lease.fence);
    async move {
        // The first renewal is one period after the claim, not at once: the
        // claim has just set the lease (a renewal at once cost every run a
        // request and a write on the server).
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(bound, client.renew_lease(&id, fence)).await {
                Ok(Ok(r)) if r.stop_requested => {
                    stop_tx.send_if_modified(|c| replace_if_none(c, StopCause::Requested));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.is_conflict() || e.status() == Some(404) => {
                    tracing::warn!(item = %id, error = %e, "lease lost");
                    stop_tx.send_replace(StopCause::LeaseLost);
                    return;
                }
                Ok(Err(e)) => tracing::warn!(item = %id, error = %e, "lease renewal failed; will retry"),
                Err(_) => tracing::warn!(item = %id, "lease renewal took longer than {bound:?}; will retry"),
            }
        }
    }
}

/// Waits for a stop cause; the watch guard is released before returning.
pub async fn stop_cause(stop: &mut watch::Receiver<StopCause>) -> StopCause {
    stop.wait_for(|c| *c != StopCause::None).await.map(|c| *c).unwrap_or(StopCause::Shutdown)
}

fn replace_if_none(c: &mut StopCause, with: StopCause) -> bool {
    if *c == StopCause::None {
        *c = with;
        true
    } else {
        false
    }
}

/// Sends the final event. Transient failures (no connection, 5xx) are
/// retried for as long as the lease holds (the caller bounds it at
/// shutdown); a refusal is final. A 409 after a retry may mean that an
/// earlier attempt was stored and its answer lost (the outcome bumped the
/// fence): the item's state tells.
async fn report(
    client: &Client,
    id: &str,
    fence: i64,
    event: ItemEvent,
    tail: Option<LogTail>,
    stop: &watch::Receiver<StopCause>,
) -> Option<ItemEvent> {
    let mut tries = 0u32;
    let sent = retry_transient(id, "report the outcome", stop, || {
        tries += 1;
        client.report_with_log(id, fence, event.clone(), tail.clone())
    })
    .await;
    let refused = match sent {
        Ok(_) => return Some(event),
        Err(e) if e.is_conflict() && tries > 1 => match client.get_item(id).await {
            Ok(item) if Some(item.state) == event_end_state(&event) => return Some(event),
            _ => e,
        },
        Err(e) => e,
    };
    match tail {
        // Refused with the chunk (an older server knows no `log` field, or
        // it refused the chunk): the chunk goes on its own, then the outcome.
        Some(tail) if !refused.is_conflict() => {
            tracing::warn!(item = %id, error = %refused, "the outcome with the log's last chunk was refused; sending them apart");
            let chunk = AppendLog { fence, seq: tail.seq, stream: tail.stream, data: tail.data };
            if let Err(e) =
                retry_transient(id, "store the log's last chunk", stop, || client.append_log(id, &chunk)).await
            {
                tracing::error!(item = %id, error = %e, "the server refused the log's last chunk");
            }
            Box::pin(report(client, id, fence, event, None, stop)).await
        }
        _ => {
            tracing::error!(item = %id, error = %refused, "server refused the outcome");
            None
        }
    }
}

/// The state an outcome event leaves an item in, when it is fixed.
fn event_end_state(event: &ItemEvent) -> Option<liftoff_core::ItemState> {
    use liftoff_core::ItemState;
    match event {
        ItemEvent::Finish => Some(ItemState::Finished),
        ItemEvent::Fail { .. } => Some(ItemState::Failed),
        ItemEvent::Stopped { .. } => Some(ItemState::Stopped),
        _ => None,
    }
}

/// Calls `f` until it succeeds, fails for good (any answer but a 5xx or
/// 429), or the lease is lost; waits between tries, doubling up to 5 s.
/// No bound on tries: the caller bounds it (the lease, or shutdown).
async fn retry_transient<T, Fut>(
    id: &str,
    what: &str,
    stop: &watch::Receiver<StopCause>,
    f: impl FnMut() -> Fut,
) -> Result<T, ClientError>
where
    Fut: Future<Output = Result<T, ClientError>>,
{
    use backon::Retryable;
    let policy = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    f.retry(policy)
        .when(|e| e.is_transient() && *stop.borrow() != StopCause::LeaseLost)
        .notify(|e, after| tracing::warn!(item = %id, error = %e, "could not {what}; retrying in {after:?}"))
        .await
}

/// A failure at its stage: written to the run's log (the error log users
/// read with `liftoff run logs`), then reported.
async fn fail(logs: &mpsc::Sender<(LogStream, String)>, e: JobError) -> Option<ItemEvent> {
    agent_line(logs, format!("liftoff agent: {} failed: {}", e.stage, e.message)).await;
    Some(fail_event(e))
}

/// The event that reports `e`: its message is the item's reason.
fn fail_event(e: JobError) -> ItemEvent {
    ItemEvent::Fail { reason: e.message, exit_code: e.exit_code, stage: Some(e.stage) }
}

async fn drive(
    client: &Client,
    registry: &RunnerRegistry,
    item: &ItemView,
    run_key: Option<&str>,
    opts: &AgentOptions,
    io: JobIo,
) -> Option<ItemEvent> {
    let JobIo { logs, mut stop } = io;
    let spec = &item.spec;
    let dir = opts.work_dir.join(format!("{}-{}", item.run_id, item.fence));
    let _ = std::fs::remove_dir_all(&dir);
    agent_line(
        &logs,
        format!(
            "liftoff agent: preparing {} ({} source) on {}{}",
            spec.job,
            spec.source.kind(),
            spec.resource,
            if item.resumes > 0 { format!(", resume {} after preemption", item.resumes) } else { String::new() }
        ),
    )
    .await;

    // Everything up to a started run must finish within the start timeout.
    let start_timeout = opts.start_timeout;
    let build_watch = stop.clone();
    let prepare = async {
        let (runner, plan, will_build) = runners::plan(registry, item, &dir, run_key, client.base_url(), opts)?;
        for w in &plan.warnings {
            warn(client, item, &logs, Stage::Agent, w).await;
        }
        if plan.needs_source {
            let fetched =
                materialize(client, &opts.blobs, &spec.source, &dir, opts.allow_http_git).await.map_err(|e| {
                    JobError::new(
                        Stage::Agent,
                        JobErrorCode::SourceFetch,
                        format!("failed to prepare the source: {e:#}"),
                    )
                })?;
            agent_line(&logs, format!("liftoff agent: {fetched}")).await;
        }
        let built = match (&opts.build, will_build) {
            (Some(setup), true) => {
                let b = build_step::build(client, item, &dir, setup, opts, &logs).await?;
                for w in &b.warnings {
                    warn(client, item, &logs, Stage::Build, w).await;
                }
                agent_line(
                    &logs,
                    format!(
                        "liftoff agent: image {} ({} in {:.1} s)",
                        b.record.image,
                        b.record.how.as_str(),
                        b.record.seconds
                    ),
                )
                .await;
                // retried like the start: a server restarting must not lose the record
                let record = || client.record_build(&item.id, item.fence, b.record.clone());
                if let Err(e) = retry_transient(&item.id, "record the run's image", &build_watch, record).await {
                    tracing::warn!(item = %item.id, error = %e, "could not record the run's image");
                }
                Some(b.image)
            }
            _ => None,
        };
        let prepared = runner.prepare(plan, built, &logs).await?;
        Ok::<_, JobError>((runner, prepared))
    };
    let (runner, prepared): (_, Prepared) = tokio::select! {
        r = tokio::time::timeout(start_timeout, prepare) => match r {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = std::fs::remove_dir_all(&dir);
                return fail(&logs, e).await;
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(&dir);
                return fail(&logs, JobError::new(Stage::Run, JobErrorCode::StartTimeout, format!(
                    "run failed to start within {} seconds; to wait longer, raise start_timeout in \
                     launch-config.yaml or set LIFTOFF_LAUNCH_START_TIMEOUT",
                    start_timeout.as_secs()
                ))).await;
            }
        },
        cause = stop_cause(&mut stop) => {
            let _ = std::fs::remove_dir_all(&dir);
            return unstarted_outcome(cause);
        }
    };
    for w in &prepared.warnings {
        warn(client, item, &logs, Stage::Build, w).await;
    }
    // A transient failure (a 500, a dropped connection) is retried: the
    // lease keeper keeps the claim alive meanwhile.
    let lease_watch = stop.clone();
    let started = tokio::select! {
        r = retry_transient(&item.id, "report start", &lease_watch, || client.report(&item.id, item.fence, ItemEvent::Start)) => r,
        cause = stop_cause(&mut stop) => {
            let _ = std::fs::remove_dir_all(&dir);
            return unstarted_outcome(cause);
        }
    };
    // A retried start whose first try was stored (its answer lost, e.g. the
    // server died after committing) finds the item already running under
    // our fence: that is our start, not a stop.
    let started = match started {
        Err(ClientError::Api { body, .. }) if body.code == "invalid_transition" => {
            match client.get_item(&item.id).await {
                Ok(now) if now.state == liftoff_core::ItemState::Running && now.fence == item.fence => {
                    let line = "liftoff agent: the start was already recorded under this claim (its answer was lost)";
                    agent_line(&logs, line).await;
                    Ok(now)
                }
                _ => Err(ClientError::Api { status: 409, body }),
            }
        }
        other => other,
    };
    if let Err(e) = started {
        tracing::warn!(item = %item.id, error = %e, "could not report start");
        let _ = std::fs::remove_dir_all(&dir);
        return match &e {
            // Another claim superseded ours: the item is not ours to report on.
            ClientError::Api { body, .. } if body.code == "stale_fence" => None,
            // A stop arrived while we prepared (the item is `stopping`): it never ran.
            ClientError::Api { body, .. } if body.code == "invalid_transition" => {
                Some(ItemEvent::Stopped { exit_code: None })
            }
            _ => {
                fail(&logs, JobError::new(Stage::Agent, JobErrorCode::Report, format!("could not report start: {e}")))
                    .await
            }
        };
    }
    agent_line(&logs, format!("liftoff agent: starting {}", prepared.description)).await;
    let run = match runner.start(prepared, &logs).await {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return fail(&logs, e).await;
        }
    };
    let outcome =
        watch_with_warnings(run, runner.runs_remotely(), &mut stop, opts, &logs, client, &item.id, item.fence).await;
    drop(logs);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Watches the run to its end or to a stop cause, whichever comes first,
/// then cleans up after it. At agent shutdown a `remote` run (one that
/// lives outside this host) is detached instead of stopped: it goes on,
/// nothing is reported and its lease is left to the next agent with this
/// key, which re-adopts it (or, once the lease has run out, removes it).
pub async fn watch_run(
    mut run: Box<dyn RunningJob>,
    remote: bool,
    stop: &mut watch::Receiver<StopCause>,
    opts: &AgentOptions,
    logs: &mpsc::Sender<(LogStream, String)>,
) -> Option<ItemEvent> {
    let outcome = tokio::select! {
        status = run.wait() => match status {
            Ok(0) => Some(ItemEvent::Finish),
            Ok(code) => Some(ItemEvent::Fail {
                reason: format!("the run exited with code {code}"),
                exit_code: Some(code),
                stage: Some(Stage::Run),
            }),
            Err(e) if e.code == JobErrorCode::Preempted => {
                agent_line(logs, format!("liftoff agent: the run was preempted: {}", e.message)).await;
                Some(ItemEvent::Preempt)
            }
            Err(e) if e.code == JobErrorCode::StoppedElsewhere => {
                agent_line(logs, format!("liftoff agent: {}", e.message)).await;
                Some(ItemEvent::Stopped { exit_code: None })
            }
            Err(e) => fail(logs, e).await,
        },
        cause = stop_cause(stop) => {
            if cause == StopCause::Shutdown && remote {
                agent_line(logs, "liftoff agent: the agent is stopping; the run goes on where it runs, for the \
                    next agent to re-adopt").await;
                run.detach().await;
                return None;
            }
            // A requested stop gets `stopped_run_timeout` before the kill; at
            // shutdown the agent has already waited its grace period.
            let grace = match cause {
                StopCause::Requested => opts.stop_timeout,
                _ => Duration::from_secs(5),
            };
            agent_line(logs, format!("liftoff agent: stopping the run ({cause:?}); SIGTERM, then SIGKILL after {grace:?}")).await;
            let code = run.stop(grace).await.ok();
            stop_outcome(cause, code)
        }
    };
    run.cleanup().await;
    outcome
}

/// Records a warning on the item and in its log; a failure to record it is
/// only logged, never fatal.
async fn warn(client: &Client, item: &ItemView, logs: &mpsc::Sender<(LogStream, String)>, stage: Stage, msg: &str) {
    record_warning(client, &item.id, item.fence, logs, stage, msg).await;
}

async fn record_warning(
    client: &Client,
    item_id: &str,
    fence: i64,
    logs: &mpsc::Sender<(LogStream, String)>,
    stage: Stage,
    msg: &str,
) {
    agent_line(logs, format!("liftoff agent: warning ({stage}): {msg}")).await;
    if let Err(e) = client.add_warning(item_id, Some(fence), stage, msg).await {
        tracing::warn!(item = %item_id, error = %e, "could not record a warning");
    }
}

/// [`watch_run`], recording the runner's warnings while the run goes on (a
/// pod's pending reason) on the item as they come.
#[expect(clippy::too_many_arguments, reason = "watch_run's, and the item's identity for its warnings")]
pub async fn watch_with_warnings(
    mut run: Box<dyn RunningJob>,
    remote: bool,
    stop: &mut watch::Receiver<StopCause>,
    opts: &AgentOptions,
    logs: &mpsc::Sender<(LogStream, String)>,
    client: &Client,
    item_id: &str,
    fence: i64,
) -> Option<ItemEvent> {
    let warnings = run.warnings();
    let forward = async {
        if let Some(mut rx) = warnings {
            while let Some(w) = rx.recv().await {
                record_warning(client, item_id, fence, logs, Stage::Run, &w).await;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        o = watch_run(run, remote, stop, opts, logs) => o,
        () = forward => unreachable!("forwarding warnings never ends"),
    }
}

/// The event for an item stopped by `cause` before its run started: an
/// agent that is shutting down gives it back to its queue, a user's stop
/// ends it.
fn unstarted_outcome(cause: StopCause) -> Option<ItemEvent> {
    match cause {
        StopCause::Shutdown => Some(ItemEvent::Release),
        _ => stop_outcome(cause, None),
    }
}

/// The event for a run ended by `cause`: none when the lease was lost.
pub fn stop_outcome(cause: StopCause, exit_code: Option<i32>) -> Option<ItemEvent> {
    match cause {
        StopCause::LeaseLost => None,
        _ => Some(ItemEvent::Stopped { exit_code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_error_is_reported_with_its_stage_and_its_message_as_the_reason() {
        let e = JobError::new(Stage::Build, JobErrorCode::ImagePull, "failed to pull image 'x': not found");
        assert_eq!(
            fail_event(e),
            ItemEvent::Fail {
                reason: "failed to pull image 'x': not found".into(),
                exit_code: None,
                stage: Some(Stage::Build)
            }
        );
    }
}
