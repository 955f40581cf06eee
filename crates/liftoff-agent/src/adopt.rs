//! Re-adoption: an agent that died (SIGKILL, OOM, a host reboot of the agent
//! only) leaves its containers running. Started again with the same agent
//! key, it finds them by label, takes their leases back with the fencing
//! token written on each, and watches them to the end as if it had never
//! left. A container whose lease is gone (the item was re-queued or ended
//! meanwhile) is an orphan: it is stopped and removed, since another claim
//! owns the run now.

use crate::agent::AgentOptions;
use crate::job_task::{JobIo, JobOutcome, Lease, agent_line, under_lease, watch_run};
use crate::runners::{RunHandle, StoredOutput, labels};
use liftoff_client::Client;
use liftoff_run::container::{ContainerRunner, FoundContainer};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Finds this agent key's containers and adopts or removes each. Returns how
/// many were adopted (they run in `jobs`). Without a container engine there
/// is nothing to adopt. The caller holds the key's [`crate::agent_lock::AgentLock`],
/// so no live agent owns these containers.
pub async fn adopt_containers(
    client: &Client,
    opts: &AgentOptions,
    jobs: &mut JoinSet<JobOutcome>,
    shutdown: &watch::Receiver<bool>,
) -> usize {
    let runner = match crate::runners::connect(opts).await {
        Ok(r) => r,
        Err(e) => {
            // An agent without an engine has no containers to take back; one
            // told where its engine is must say why it could not look.
            if opts.docker_host.is_some() || std::env::var_os("DOCKER_HOST").is_some() {
                eprintln!("liftoff agent: warning: could not look for containers to re-adopt: {e:#}");
            }
            return 0;
        }
    };
    let found = match runner.list_labelled(labels::AGENT_KEY, &opts.agent_key).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "could not list containers to re-adopt");
            return 0;
        }
    };
    let mut adopted = 0;
    for c in found {
        let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
        let (item_id, fence) = (label(labels::ITEM), label(labels::FENCE).parse::<i64>().unwrap_or(-1));
        match client.resume_lease(&item_id, fence).await {
            Ok(resp) => {
                eprintln!("liftoff agent: re-adopting container {} of run {}", short(&c.id), label(labels::RUN));
                let position = resp.log_position.unwrap_or_default();
                let lease = Lease {
                    item_id,
                    fence,
                    ttl_ms: 3 * opts.heartbeat.as_millis() as i64,
                    log_seq_start: position.next_seq,
                };
                let stored = StoredOutput {
                    stdout: position.stdout_bytes.max(0) as u64,
                    stderr: position.stderr_bytes.max(0) as u64,
                };
                jobs.spawn(adopt(client.clone(), runner.clone(), c, lease, stored, opts.clone(), shutdown.clone()));
                adopted += 1;
            }
            // The server knows the item and says our claim is over (it was
            // re-queued, re-claimed or ended): the container is an orphan.
            Err(e) if e.is_conflict() => {
                eprintln!(
                    "liftoff agent: removing orphaned container {} of run {}: its lease is gone ({e})",
                    short(&c.id),
                    label(labels::RUN)
                );
                let orphan = runner.handle(&c.id);
                if c.running {
                    let _ = orphan.stop(Duration::from_secs(5)).await;
                }
                let _ = orphan.remove().await;
            }
            // Unknown here (another server or entity using the same agent
            // key?) or unreachable: not ours to remove.
            Err(e) => eprintln!(
                "liftoff agent: warning: leaving container {} of run {} alone: {e}",
                short(&c.id),
                label(labels::RUN)
            ),
        }
    }
    adopted
}

async fn adopt(
    client: Client,
    runner: ContainerRunner,
    found: FoundContainer,
    lease: Lease,
    stored: StoredOutput,
    opts: AgentOptions,
    shutdown: watch::Receiver<bool>,
) -> JobOutcome {
    let o = opts.clone();
    under_lease(client, lease, opts, shutdown, move |io: JobIo| async move {
        let JobIo { logs, mut stop } = io;
        agent_line(
            &logs,
            if found.running {
                "liftoff agent: re-adopted this run's container after an agent restart; its output continues from \
                 where this log stopped"
            } else {
                "liftoff agent: the container ended while no agent was watching; shipping the rest of its output and \
                 its exit code"
            },
        )
        .await;
        // The container's whole output is read again; what the server holds already is skipped.
        let mut run = RunHandle::container(runner.handle(&found.id), stored, logs.clone());
        let outcome = watch_run(&mut run, &mut stop, &o, &logs).await;
        run.cleanup().await;
        outcome
    })
    .await
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
