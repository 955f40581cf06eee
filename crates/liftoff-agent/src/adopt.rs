//! Re-adoption: an agent that died (SIGKILL, OOM, a host reboot of the agent
//! only), or that detached its remote runs at shutdown, leaves work running.
//! Started again with the same agent key, it asks every runner for the work
//! of that key, takes the leases back with the fencing token each carries,
//! and watches the runs to the end as if it had never left. Work whose lease
//! is gone (the item was re-queued or ended meanwhile) is an orphan: it is
//! stopped and removed, since another claim owns the run now.

use crate::agent::AgentOptions;
use crate::job_task::{JobIo, JobOutcome, Lease, agent_line, under_lease, watch_with_warnings};
use liftoff_client::Client;
use liftoff_run::{Adoptable, RunnerRegistry, StoredOutput};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Asks each runner for this agent key's work and adopts or removes each
/// piece. Returns how many were adopted (they run in `jobs`). The caller
/// holds the key's [`crate::agent_lock::AgentLock`], so no live agent owns
/// this work.
pub async fn adopt_all(
    client: &Client,
    registry: &RunnerRegistry,
    opts: &AgentOptions,
    jobs: &mut JoinSet<JobOutcome>,
    shutdown: &watch::Receiver<bool>,
) -> usize {
    let mut adopted = 0;
    for runner in registry.runners() {
        let found = match runner.adopt(&opts.agent_key).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("liftoff agent: warning: could not look for {} runs to re-adopt: {e}", runner.resource());
                continue;
            }
        };
        for work in found {
            if take_back(client, opts, jobs, shutdown, work, runner.runs_remotely()).await {
                adopted += 1;
            }
        }
    }
    adopted
}

/// Renews `work`'s lease with its fence and watches it, or removes it when
/// the lease is gone; true when adopted.
async fn take_back(
    client: &Client,
    opts: &AgentOptions,
    jobs: &mut JoinSet<JobOutcome>,
    shutdown: &watch::Receiver<bool>,
    work: Adoptable,
    remote: bool,
) -> bool {
    match client.resume_lease(&work.item_id, work.fence).await {
        Ok(resp) => {
            eprintln!("liftoff agent: re-adopting {} of run {}", work.what(), work.run_id);
            let position = resp.log_position.unwrap_or_default();
            let lease = Lease {
                item_id: work.item_id.clone(),
                fence: work.fence,
                ttl_ms: 3 * opts.heartbeat.as_millis() as i64,
                log_seq_start: position.next_seq,
            };
            let mut stored = StoredOutput {
                stdout: position.stdout_bytes.max(0) as u64,
                stderr: position.stderr_bytes.max(0) as u64,
                ..StoredOutput::default()
            };
            if stored.stdout > 0 && work.work.output_by_source() {
                match stored_by_source(client, &work.item_id, position.next_seq).await {
                    Ok(counts) => stored.stdout_by_source = counts,
                    // counted per stream instead: exact for one writing source
                    Err(e) => eprintln!(
                        "liftoff agent: warning: could not read run {}'s stored log to resume each source \
                         where it stopped: {e}",
                        work.run_id
                    ),
                }
            }
            jobs.spawn(adopt(client.clone(), work, remote, lease, stored, opts.clone(), shutdown.clone()));
            true
        }
        // The server knows the item and says our claim is over (it was
        // re-queued, re-claimed or ended): the work is an orphan.
        Err(e) if e.is_conflict() => {
            eprintln!(
                "liftoff agent: removing orphaned {} of run {}: its lease is gone ({e})",
                work.what(),
                work.run_id
            );
            work.work.discard().await;
            false
        }
        // Unknown here (another server or entity using the same agent
        // key?) or unreachable: not ours to remove.
        Err(e) => {
            eprintln!("liftoff agent: warning: leaving {} of run {} alone: {e}", work.what(), work.run_id);
            false
        }
    }
}

/// The stdout bytes the server holds for item `id`, per source prefix
/// (its chunks before `next_seq`, read page by page).
async fn stored_by_source(
    client: &Client,
    id: &str,
    next_seq: i64,
) -> Result<std::collections::BTreeMap<String, u64>, liftoff_client::ClientError> {
    let mut counter = liftoff_run::SourceCounter::default();
    let mut after = 0;
    while after < next_seq {
        let page = client.read_logs(id, after).await?;
        let Some(last) = page.chunks.last() else { break };
        after = last.seq + 1;
        for c in page.chunks.iter().filter(|c| c.stream == liftoff_core::api::LogStream::Stdout && c.seq < next_seq) {
            counter.push(&c.data);
        }
    }
    Ok(counter.finish())
}

async fn adopt(
    client: Client,
    work: Adoptable,
    remote: bool,
    lease: Lease,
    stored: StoredOutput,
    opts: AgentOptions,
    shutdown: watch::Receiver<bool>,
) -> JobOutcome {
    let o = opts.clone();
    let (c, item_id, fence) = (client.clone(), lease.item_id.clone(), lease.fence);
    under_lease(client, lease, opts, shutdown, move |io: JobIo| async move {
        let JobIo { logs, mut stop } = io;
        let what = work.kind;
        agent_line(
            &logs,
            if work.running {
                format!(
                    "liftoff agent: re-adopted this run's {what} after an agent restart; its output continues from \
                     where this log stopped"
                )
            } else {
                format!(
                    "liftoff agent: the {what} ended while no agent was watching; shipping the rest of its output \
                     and its exit code"
                )
            },
        )
        .await;
        // The whole output is read again; what the server holds already is skipped.
        let run = work.work.resume(stored, logs.clone());
        watch_with_warnings(run, remote, &mut stop, &o, &logs, &c, &item_id, fence).await
    })
    .await
}
