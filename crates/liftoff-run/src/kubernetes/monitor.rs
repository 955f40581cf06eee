//! Watching one run's object (a Job, or a custom resource through
//! [`Owner`]) to its end: a watch on the object and one on its pods,
//! each resumed from its last resourceVersion and listed again after a 410
//! Gone; each container's log (init containers' too) followed while its
//! pod runs, and a failed one's exit code kept as the run's; a pending pod's
//! reason (unschedulable, image pull) passed on as a warning each time it
//! changes; a disrupted pod (eviction, preemption, node shutdown) ends the
//! run as preempted.

use crate::lines::{LineSplitter, agent_line};
use crate::runner::{LogSender, StoredOutput};
use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use liftoff_core::api::LogStream;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How a Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Finished,
    /// Why, with the failed container's reason in the words; its exit code when known.
    Failed(String, Option<i32>),
    Preempted(String),
    /// Deleted before it ended (by a stop, or by someone else).
    Deleted,
}

/// What a watch saw.
enum Seen<K> {
    Applied(K),
    Deleted(K),
    /// A fresh list (first, or after a 410): everything that exists now.
    Listed(Vec<K>),
}

/// A list, then a watch from its resourceVersion, resumed from the last
/// version seen when the stream ends, and listed again after 410 Gone.
async fn follow_kind<K>(api: Api<K>, labels: Option<String>, fields: Option<String>, tx: mpsc::Sender<Seen<K>>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut rv: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if rv.is_none() {
            let lp =
                ListParams { label_selector: labels.clone(), field_selector: fields.clone(), ..ListParams::default() };
            match api.list(&lp).await {
                Ok(list) => {
                    rv = list.metadata.resource_version.clone();
                    if tx.send(Seen::Listed(list.items)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not list; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let mut wp = WatchParams::default().timeout(290);
        wp.label_selector = labels.clone();
        wp.field_selector = fields.clone();
        let version = rv.clone().unwrap_or_default();
        let stream = match api.watch(&wp, &version).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => {
                rv = None;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not watch; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let seen = match ev {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                    rv = o.resource_version();
                    Seen::Applied(o)
                }
                Ok(WatchEvent::Deleted(o)) => {
                    rv = o.resource_version();
                    Seen::Deleted(o)
                }
                Ok(WatchEvent::Bookmark(b)) => {
                    rv = Some(b.metadata.resource_version);
                    continue;
                }
                Ok(WatchEvent::Error(s)) if s.code == 410 => {
                    tracing::info!("watch expired (410 Gone); listing again");
                    rv = None;
                    break;
                }
                Ok(WatchEvent::Error(s)) => {
                    tracing::warn!(status = ?s, "watch error; resuming");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch stream failed; resuming");
                    tokio::time::sleep(backoff).await;
                    break;
                }
            };
            if tx.send(seen).await.is_err() {
                return;
            }
        }
    }
}

/// Where the run's log goes: lines less what the server already holds.
#[derive(Clone)]
pub struct LogSink {
    pub logs: LogSender,
    pub stored: Arc<Mutex<StoredOutput>>,
    /// The stream the pods' lines go to: `stdout` for a run, `build` for a build Job.
    pub stream: LogStream,
}

/// Longest a finished run waits for its log streams to drain.
const DRAIN_BOUND: Duration = Duration::from_secs(30);
/// How long the log of a container still running when its run's object
/// ended is read on (what it wrote before the end is in flight).
const LIVE_DRAIN: Duration = Duration::from_secs(1);

/// What the monitor needs of the object a run is: a `batch/v1` Job, or a
/// custom resource ([`kube::api::DynamicObject`], `custom.rs`).
pub trait Owner: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static {
    /// How it ended, once it has.
    fn end(&self) -> Option<End>;
    /// Whether it can have several pods or containers (lines then name theirs).
    fn several_pods(&self) -> bool;
}

impl Owner for Job {
    fn end(&self) -> Option<End> {
        job_end(self)
    }
    fn several_pods(&self) -> bool {
        several_pods(self)
    }
}

/// Watches object `name` of `owners` and its pods (those `pod_selector`
/// selects: `job-name=<name>` for a Job) until it ends; publishes the end
/// on `end`, once its logs are read.
pub async fn monitor<K: Owner>(
    owners: Api<K>,
    pods: Api<Pod>,
    name: String,
    pod_selector: String,
    sink: LogSink,
    warnings: mpsc::Sender<String>,
    end: watch::Sender<Option<End>>,
) {
    let (jtx, mut jrx) = mpsc::channel(64);
    let (ptx, mut prx) = mpsc::channel(64);
    // aborted with the monitor (a detach): nothing of it goes on sending
    let job_watch = Task(tokio::spawn(follow_kind(owners, None, Some(format!("metadata.name={name}")), jtx)));
    let pod_watch = Task(tokio::spawn(follow_kind(pods.clone(), Some(pod_selector.clone()), None, ptx)));
    let mut m = PodsSeen {
        pods: pods.clone(),
        sink: sink.clone(),
        streams: BTreeMap::new(),
        warning: None,
        failure: None,
        prefix: false,
    };
    // pods wait until the object is seen: it says whether lines get a
    // prefix, which must be known before a log is read (the bytes the
    // server holds are counted with it, also after a restart)
    let mut owner_seen = false;
    let result = loop {
        tokio::select! {
            Some(seen) = jrx.recv() => {
                owner_seen = true;
                let job = match seen {
                    Seen::Applied(j) => Some(j),
                    Seen::Deleted(_) => None,
                    Seen::Listed(mut l) => l.pop(),
                };
                match job {
                    None => break End::Deleted,
                    Some(j) => {
                        m.prefix = j.several_pods();
                        if let Some(e) = j.end() { break e; }
                    }
                }
            }
            Some(seen) = prx.recv(), if owner_seen => {
                let list = match seen {
                    Seen::Applied(p) => vec![p],
                    Seen::Deleted(_) => vec![],
                    Seen::Listed(l) => l,
                };
                let mut ended = None;
                for p in list {
                    if let Some(e) = m.pod(&p, &warnings).await {
                        ended = Some(e);
                    }
                }
                if let Some(e) = ended {
                    break e;
                }
            }
            else => break End::Deleted,
        }
    };
    drop((job_watch, pod_watch));
    // the pods as they are now: a short-lived one may have ended unseen, and
    // the Job's failure may have been watched before its pod's disruption
    let mut disrupted = None;
    // containers still running now that the object has ended (a custom
    // resource's other pods, which its controller may leave running)
    let mut live = std::collections::BTreeSet::new();
    if let Ok(list) = pods.list(&ListParams::default().labels(&pod_selector)).await {
        for p in &list.items {
            if let Some(e) = m.pod(p, &warnings).await {
                disrupted = Some(e);
            }
            for c in p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
                if c.state.as_ref().is_some_and(|s| s.running.is_some()) {
                    live.insert((p.name_any(), c.name.clone()));
                }
            }
        }
    }
    let result = match (result, disrupted) {
        (End::Failed(..), Some(preempted)) => preempted,
        (End::Failed(reason, _), None) => match m.failure.clone() {
            Some((why, code)) => End::Failed(why, Some(code)),
            None => End::Failed(reason, None),
        },
        (other, _) => other,
    };
    let mut cut = Vec::new();
    let drain = async {
        for (key, mut h) in std::mem::take(&mut m.streams) {
            if !live.contains(&key) {
                let _ = (&mut h.0).await;
            } else if tokio::time::timeout(LIVE_DRAIN, &mut h.0).await.is_err() {
                // dropped: its reader is aborted
                cut.push(format!("{}/{}", key.0, key.1));
            }
        }
    };
    let drained = tokio::time::timeout(DRAIN_BOUND, drain).await;
    if !cut.is_empty() {
        agent_line(
            &sink.logs,
            format!(
                "liftoff agent: {name} ended while {} still ran; what they write from now on is not in this log",
                cut.join(", ")
            ),
        )
        .await;
    }
    if drained.is_err() {
        agent_line(
            &sink.logs,
            "liftoff agent: some pod logs were still open 30 s after the Job ended; stopped reading them",
        )
        .await;
    }
    end.send_replace(Some(result));
}

/// A Job's end from its conditions.
fn job_end(j: &Job) -> Option<End> {
    let conds = j.status.as_ref()?.conditions.as_ref()?;
    let on = |t: &str| conds.iter().find(|c| c.type_ == t && c.status == "True");
    if on("Complete").is_some() {
        return Some(End::Finished);
    }
    on("Failed").map(|c| {
        End::Failed(
            format!(
                "the Kubernetes Job failed: {}{}",
                c.reason.clone().unwrap_or_default(),
                c.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            None,
        )
    })
}

/// Whether the Job can have several pods or containers (lines then name theirs).
fn several_pods(j: &Job) -> bool {
    let spec = j.spec.as_ref();
    let containers = spec
        .and_then(|s| s.template.spec.as_ref())
        .map_or(1, |p| p.containers.len() + p.init_containers.as_ref().map_or(0, Vec::len));
    containers > 1
        || spec.and_then(|s| s.backoff_limit).unwrap_or(0) > 0
        || spec.and_then(|s| s.parallelism).unwrap_or(1) > 1
}

/// Reasons a pod is taken away rather than failing by itself.
const DISRUPTIONS: &[&str] =
    &["EvictionByEvictionAPI", "PreemptionByScheduler", "TerminationByKubelet", "DeletionByTaintManager"];

struct PodsSeen {
    pods: Api<Pod>,
    sink: LogSink,
    /// (pod, container) → its log reader.
    streams: BTreeMap<(String, String), Task>,
    /// The last pending reason passed on.
    warning: Option<String>,
    /// The last failed container: why (its exit code and reason in words), and its exit code.
    failure: Option<(String, i32)>,
    prefix: bool,
}

impl PodsSeen {
    /// Takes in a pod's new state; the run's end if the pod was disrupted.
    async fn pod(&mut self, p: &Pod, warnings: &mpsc::Sender<String>) -> Option<End> {
        let name = p.name_any();
        let status = p.status.as_ref()?;
        let phase = status.phase.as_deref().unwrap_or("");
        if phase == "Pending"
            && let Some(w) = pending_reason(&name, p)
            && self.warning.as_ref() != Some(&w)
        {
            self.warning = Some(w.clone());
            let _ = warnings.send(w).await;
        }
        // init containers first: their output and a failure of theirs are the run's too
        let inits = status.init_container_statuses.iter().flatten();
        for c in inits.chain(status.container_statuses.iter().flatten()) {
            let state = c.state.as_ref();
            let started = state.is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            let key = (name.clone(), c.name.clone());
            if started && !self.streams.contains_key(&key) {
                let prefix = if self.prefix { format!("[{}/{}] ", name, c.name) } else { String::new() };
                let h = Task(tokio::spawn(stream_logs(
                    self.pods.clone(),
                    name.clone(),
                    c.name.clone(),
                    prefix,
                    self.sink.clone(),
                )));
                self.streams.insert(key, h);
            }
            if let Some(t) = state.and_then(|s| s.terminated.as_ref())
                && t.exit_code != 0
            {
                let why = format!(
                    "pod {name}: container {} exited with code {} ({})",
                    c.name,
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("Error")
                );
                self.failure = Some((why, t.exit_code));
            }
        }
        if phase == "Failed" {
            let disruption = status.conditions.iter().flatten().find(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref().is_some_and(|r| DISRUPTIONS.contains(&r))
            });
            let evicted = matches!(
                status.reason.as_deref(),
                Some("Evicted" | "Preempted" | "Shutdown" | "NodeShutdown" | "Terminated")
            );
            if disruption.is_some() || evicted {
                let why = disruption.and_then(|d| d.reason.clone()).or(status.reason.clone()).unwrap_or_default();
                let msg = status.message.clone().or(disruption.and_then(|d| d.message.clone())).unwrap_or_default();
                return Some(End::Preempted(format!(
                    "pod {name} was disrupted: {why}{}",
                    if msg.is_empty() { String::new() } else { format!(": {msg}") }
                )));
            }
        }
        None
    }
}

/// Why a pending pod does not start, when it is worth telling: the
/// scheduler's reason, or a container waiting on anything but its creation.
fn pending_reason(name: &str, p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False") {
        return Some(format!(
            "pod {name} is not scheduled: {}: {}",
            c.reason.as_deref().unwrap_or("Unschedulable"),
            c.message.as_deref().unwrap_or("")
        ));
    }
    status.container_statuses.iter().flatten().find_map(|c| {
        let w = c.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.as_deref().unwrap_or("");
        if matches!(reason, "" | "ContainerCreating" | "PodInitializing") {
            return None;
        }
        Some(format!("pod {name}: container {} is waiting: {reason}: {}", c.name, w.message.as_deref().unwrap_or("")))
    })
}

/// Follows one container's log to its end, line by line (long lines cut).
async fn stream_logs(pods: Api<Pod>, pod: String, container: String, prefix: String, sink: LogSink) {
    let lp = LogParams { follow: true, container: Some(container.clone()), ..LogParams::default() };
    let mut reader = match pods.log_stream(&pod, &lp).await {
        Ok(r) => r,
        Err(e) => {
            agent_line(
                &sink.logs,
                format!("liftoff agent: could not read the log of pod {pod} container {container}: {e}"),
            )
            .await;
            return;
        }
    };
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for line in splitter.push(&buf[..n]) {
            if !send(&sink, &prefix, format!("{prefix}{line}")).await {
                return;
            }
        }
    }
    if let Some(rest) = splitter.finish() {
        send(&sink, &prefix, format!("{prefix}{rest}\n")).await;
    }
}

/// Sends a line of source `prefix` less what the server holds of it.
async fn send(sink: &LogSink, prefix: &str, line: String) -> bool {
    let pass = sink.stored.lock().unwrap().pass_from(sink.stream, prefix, line);
    match pass {
        Some(l) => sink.logs.send((sink.stream, l)).await.is_ok(),
        None => true,
    }
}

/// A task aborted when dropped: the monitor's watches and log readers end
/// with it, so a detached run sends nothing more.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}
