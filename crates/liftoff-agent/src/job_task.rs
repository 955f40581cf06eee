//! One claimed item, from materialising its source to reporting its outcome.

use crate::agent::AgentOptions;
use crate::log_shipper::{LogShipper, ShipOutcome};
use crate::materialize::materialize;
use liftoff_client::{Client, ClientError};
use liftoff_core::ItemEvent;
use liftoff_core::api::{Claim, LogStream};
use liftoff_run::process::{self as process_runner, exit_code};
use std::collections::BTreeMap;
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

/// Runs one claimed item to the end. Never panics on bad input: every
/// failure becomes a `fail` report with the stage in the reason.
pub async fn run_job(
    client: Client,
    claim: Claim,
    opts: AgentOptions,
    mut shutdown: watch::Receiver<bool>,
) -> JobOutcome {
    let item = claim.item;
    let fence = claim.fence;
    let (stop_tx, mut stop_rx) = watch::channel(StopCause::None);

    // Lease keeper: renews well within the TTL; learns of stop requests.
    let renew_every = Duration::from_millis((claim.lease_ttl_ms / 3).max(50) as u64).min(opts.heartbeat);
    let keeper = {
        let (client, id, stop_tx) = (client.clone(), item.id.clone(), stop_tx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(renew_every);
            loop {
                tick.tick().await;
                match client.renew_lease(&id, fence).await {
                    Ok(r) if r.stop_requested => {
                        stop_tx.send_if_modified(|c| replace_if_none(c, StopCause::Requested));
                    }
                    Ok(_) => {}
                    Err(e) if e.is_conflict() || e.status() == Some(404) => {
                        tracing::warn!(item = %id, error = %e, "lease lost");
                        stop_tx.send_replace(StopCause::LeaseLost);
                        return;
                    }
                    Err(e) => tracing::warn!(item = %id, error = %e, "lease renewal failed; will retry"),
                }
            }
        })
    };
    // Shutdown of the agent becomes a stop of this job.
    let shutdown_watch = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if shutdown.wait_for(|s| *s).await.is_ok() {
                stop_tx.send_if_modified(|c| replace_if_none(c, StopCause::Shutdown));
            }
        })
    };

    let shipper = LogShipper::start(client.clone(), item.id.clone(), fence, claim.log_seq_start);
    let logs = shipper.sender();
    let event = drive(&client, &item, fence, &opts, logs, &mut stop_rx).await;
    keeper.abort();
    shutdown_watch.abort();
    // Every line before the outcome: flush logs first.
    let shipped = shipper.finish().await;
    let lost = *stop_rx.borrow() == StopCause::LeaseLost || shipped == ShipOutcome::LeaseLost;
    let event = match event {
        Some(ev) if !lost => report(&client, &item.id, fence, ev).await,
        _ => None,
    };
    JobOutcome { item_id: item.id, event }
}

/// Waits for a stop cause; the watch guard is released before returning.
async fn stop_cause(stop: &mut watch::Receiver<StopCause>) -> StopCause {
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

/// Sends the final event, retrying transient failures for a while.
async fn report(client: &Client, id: &str, fence: i64, event: ItemEvent) -> Option<ItemEvent> {
    let mut backoff = Duration::from_millis(200);
    for _ in 0..20 {
        match client.report(id, fence, event.clone()).await {
            Ok(_) => return Some(event),
            Err(e) if e.is_transient() => {
                tracing::warn!(item = %id, error = %e, "could not report outcome; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(item = %id, error = %e, "server refused the outcome");
                return None;
            }
        }
    }
    None
}

async fn agent_line(logs: &mpsc::Sender<(LogStream, String)>, line: String) {
    let _ = logs.send((LogStream::Agent, format!("{line}\n"))).await;
}

async fn drive(
    client: &Client,
    item: &liftoff_core::api::ItemView,
    fence: i64,
    opts: &AgentOptions,
    logs: mpsc::Sender<(LogStream, String)>,
    stop: &mut watch::Receiver<StopCause>,
) -> Option<ItemEvent> {
    let spec = &item.spec;
    let fail = |reason: String| ItemEvent::Fail { reason, exit_code: None };
    let dir = opts.work_dir.join(format!("{}-{fence}", item.run_id));
    let _ = std::fs::remove_dir_all(&dir);
    agent_line(&logs, format!("liftoff agent: preparing {} ({} source)", spec.job, spec.source.kind())).await;
    let prepared = tokio::select! {
        r = materialize(client, &spec.source, &dir) => r,
        cause = stop_cause(stop) => {
            return stop_outcome(cause, None);
        }
    };
    if let Err(e) = prepared {
        let reason = format!("[agent] failed to prepare the source: {e:#}");
        agent_line(&logs, reason.clone()).await;
        let _ = std::fs::remove_dir_all(&dir);
        return Some(fail(reason));
    }
    if let Err(e) = client.report(&item.id, fence, ItemEvent::Start).await {
        tracing::warn!(item = %item.id, error = %e, "could not report start");
        let _ = std::fs::remove_dir_all(&dir);
        return match &e {
            // Another claim superseded ours: the item is not ours to report on.
            ClientError::Api { body, .. } if body.code == "stale_fence" => None,
            // A stop arrived while we prepared (the item is `stopping`): it never ran.
            ClientError::Api { body, .. } if body.code == "invalid_transition" => {
                Some(ItemEvent::Stopped { exit_code: None })
            }
            _ => Some(fail(format!("[agent] could not report start: {e}"))),
        };
    }
    let command: Vec<String> = spec.entrypoint.iter().chain(spec.args.iter()).cloned().collect();
    let env = BTreeMap::from([
        ("LIFTOFF_RUN_ID".to_string(), item.run_id.clone()),
        ("LIFTOFF_ITEM_ID".to_string(), item.id.clone()),
        ("LIFTOFF_ENTITY".to_string(), item.entity.clone()),
        ("LIFTOFF_PROJECT".to_string(), spec.project.clone()),
        ("LIFTOFF_QUEUE".to_string(), item.queue.clone()),
        ("LIFTOFF_JOB".to_string(), spec.job.clone()),
        ("LIFTOFF_CONFIG".to_string(), spec.run_config.to_string()),
        ("LIFTOFF_BASE_URL".to_string(), client.base_url().to_string()),
    ]);
    agent_line(
        &logs,
        format!("liftoff agent: starting {}", shlex::try_join(command.iter().map(String::as_str)).unwrap_or_default()),
    )
    .await;
    let mut proc = match process_runner::spawn(&command, &dir, &env, logs.clone()) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("[run] {e:#}");
            agent_line(&logs, reason.clone()).await;
            let _ = std::fs::remove_dir_all(&dir);
            return Some(fail(reason));
        }
    };
    let outcome = tokio::select! {
        status = proc.wait() => match status {
            Ok(s) if s.success() => Some(ItemEvent::Finish),
            Ok(s) => {
                let code = exit_code(s);
                Some(ItemEvent::Fail { reason: format!("[run] process exited with code {code}"), exit_code: Some(code) })
            }
            Err(e) => Some(fail(format!("[run] failed to wait for the process: {e}"))),
        },
        cause = stop_cause(stop) => {
            // A requested stop gets the full grace; at shutdown the agent has
            // already waited its grace period for the job to end by itself.
            let grace = if cause == StopCause::Requested { opts.grace } else { Duration::from_secs(5) };
            agent_line(&logs, format!("liftoff agent: stopping the run ({cause:?}); SIGTERM, then SIGKILL after {grace:?}")).await;
            let code = proc.stop(grace).await.ok().map(exit_code);
            stop_outcome(cause, code)
        }
    };
    drop(logs);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// The event for a run ended by `cause`: none when the lease was lost.
fn stop_outcome(cause: StopCause, exit_code: Option<i32>) -> Option<ItemEvent> {
    match cause {
        StopCause::LeaseLost => None,
        _ => Some(ItemEvent::Stopped { exit_code }),
    }
}
