//! The kube-fake's kubelet: with [`PodDriver::Docker`], every pod the fake
//! stores (made by a client, by the Job controller or by any other
//! controller) runs as real containers on a Docker engine, so its states,
//! exit codes and logs are real.
//!
//! The kubelet watches the store as a real one watches its node's pods: a
//! new pod is scheduled (or, while the node is cordoned, left `Pending`
//! with the scheduler's `Unschedulable`), its images pulled with the pod's
//! `imagePullSecrets` when missing (`ErrImagePull`, then
//! `ImagePullBackOff`), its environment resolved from the stored Secrets
//! and ConfigMaps (`CreateContainerConfigError` when one is missing), its
//! init containers run in order, then its containers side by side; the
//! pod's status follows the containers; their stdout and stderr go to the
//! fake's log store as they come. A pod deleted with a grace period gets
//! SIGTERM, then SIGKILL when the grace runs out, and goes once its
//! containers have ended; a pod failed from outside (an eviction, a Job
//! deadline) has its containers killed. Every container and volume carries
//! the fake instance's label and is removed with the pod, and all of them
//! when the fake is dropped.

use super::{PodState, Res, Shared, Store, now};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, RemoveVolumeOptions, WaitContainerOptions,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Who runs the fake's pods.
#[derive(Debug, Clone, Default)]
pub enum PodDriver {
    /// Nothing runs: tests move pods with `set_pod` and write their output with `emit`.
    #[default]
    Manual,
    /// Pods run as containers on this Docker engine (`unix:///...`), network mode `none`.
    Docker { docker_host: String },
}

/// The label on every container and volume a fake made: the fake instance's id.
pub const INSTANCE_LABEL: &str = "io.liftoff.kube-fake.instance";

/// Longest a pull may take before it counts as failed.
const PULL_BOUND: Duration = Duration::from_secs(300);
/// A log line longer than this is cut (the rest goes on the next line).
const MAX_LINE: usize = 64 * 1024;
/// A container's log kept in memory is cut here (a kubelet rotates at 10 MiB
/// and keeps 5 files): the rest of its output is dropped, said in one line.
const MAX_LOG: usize = 64 << 20;
/// What a cordoned node's pods are told.
pub const UNSCHEDULABLE: &str = "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are \
     available: 1 Preemption is not helpful for scheduling.";

fn connect(host: &str) -> Result<Docker, String> {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    if !path.starts_with('/') {
        return Err(format!("pods run on a local engine socket (unix:///path), not '{host}'"));
    }
    Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION).map_err(|e| format!("docker at {host}: {e}"))
}

/// The running kubelet: stopped, and everything it made removed, on drop.
pub(super) struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    node: Arc<Node>,
    docker_host: String,
    instance: String,
}

impl Kubelet {
    pub(super) async fn start(shared: &Arc<Shared>, docker_host: &str) -> std::io::Result<Self> {
        let docker = connect(docker_host).map_err(std::io::Error::other)?;
        docker.ping().await.map_err(|e| {
            std::io::Error::other(format!("cannot reach the Docker engine at '{docker_host}' to run pods on: {e}"))
        })?;
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let node = Arc::new(Node {
            shared: shared.clone(),
            docker,
            instance: instance.clone(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn(kubelet(node.clone()));
        Ok(Self { task, node, docker_host: docker_host.to_string(), instance })
    }
}

impl Kubelet {
    pub(super) fn instance(&self) -> &str {
        &self.instance
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        // workers make nothing more; the aborted ones stop at their next await
        self.node.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.abort();
        // a thread with its own runtime: drop may run inside (or outside) any runtime
        let (host, instance) = (self.docker_host.clone(), self.instance.clone());
        let cleaning = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async move {
                let docker = connect(&host).ok()?;
                let label = format!("{INSTANCE_LABEL}={instance}");
                // until two listings in a row find nothing: a request a worker had
                // in flight (a create, a removal) may land after the first one
                let until = Instant::now() + Duration::from_secs(10);
                let mut empty = 0;
                while empty < 2 && Instant::now() < until {
                    empty = if remove_labelled(&docker, &label).await == 0 { empty + 1 } else { 0 };
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(())
            })
        });
        let _ = cleaning.join();
    }
}

/// Removes (forcefully) every container and volume with `label`; how many it found.
async fn remove_labelled(docker: &Docker, label: &str) -> usize {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let list = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
    let containers = docker.list_containers(Some(list)).await.unwrap_or_default();
    let mut found = containers.len();
    for c in containers {
        if let Some(id) = c.id {
            let _ =
                docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
        }
    }
    let vols = bollard::query_parameters::ListVolumesOptions { filters: Some(filters) };
    if let Ok(v) = docker.list_volumes(Some(vols)).await {
        for vol in v.volumes.into_iter().flatten() {
            found += 1;
            let _ = docker.remove_volume(&vol.name, Some(RemoveVolumeOptions { force: true })).await;
        }
    }
    found
}

struct Node {
    shared: Arc<Shared>,
    docker: Docker,
    instance: String,
    /// Set when the fake is dropped: nothing more is made on the engine.
    stopped: std::sync::atomic::AtomicBool,
}

/// Whether a stored pod is the kaniko executor's (run by `kaniko.rs`, not here).
fn kaniko_pod(shared: &Shared, pod: &Value) -> bool {
    shared.opts.kaniko.is_some() && super::kaniko::is_kaniko(&json!({"spec": {"template": {"spec": pod["spec"]}}}))
}

/// The node's loop: each new pod scheduled and handed to a worker.
async fn kubelet(node: Arc<Node>) {
    let mut rx = node.shared.changed.subscribe();
    let mut workers = tokio::task::JoinSet::new();
    loop {
        let mut start = Vec::new();
        {
            let mut s = node.shared.store.lock().unwrap();
            let cordoned = s.unschedulable.clone();
            let fresh: Vec<(String, Value)> = s
                .objects
                .iter()
                .filter(|((r, _, _), p)| {
                    *r == Res::pods()
                        && p["status"]["phase"] == "Pending"
                        && p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["containerStatuses"].is_null()
                        && !s.kubelet_pods.contains(p["metadata"]["uid"].as_str().unwrap_or_default())
                        && !kaniko_pod(&node.shared, p)
                })
                .map(|((_, ns, _), p)| (ns.clone(), p.clone()))
                .collect();
            let mut changed = false;
            for (ns, mut pod) in fresh {
                let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
                let marked = pod["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
                    .is_some_and(|c| c["status"] == "False");
                match &cordoned {
                    Some(message) if !marked => {
                        super::apply_pod_state(
                            &mut pod,
                            &PodState::Pending { reason: "Unschedulable".into(), message: message.clone() },
                        );
                        Shared::put(&mut s, &Res::pods(), &ns, "MODIFIED", pod);
                        changed = true;
                    }
                    Some(_) => {}
                    None => {
                        s.kubelet_pods.insert(uid.clone());
                        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
                        start.push((ns, name, uid));
                    }
                }
            }
            if changed {
                drop(s);
                node.shared.changed.bump();
            }
        }
        for (ns, name, uid) in start {
            workers.spawn(Worker::new(node.clone(), ns, name, uid).run());
        }
        while workers.try_join_next().is_some() {}
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// What the pod is, seen from its worker.
#[derive(Debug, Clone, PartialEq)]
enum Now {
    Alive,
    /// Deleted with this grace period.
    Deleting(Duration),
    /// Failed or succeeded by someone else (an eviction, a Job deadline).
    Ended,
    Gone,
}

/// A container to make, from the pod spec.
struct Ctr {
    name: String,
    image: String,
    pull: String,
    body: ContainerCreateBody,
    init: bool,
    /// `runAsNonRoot` without a `runAsUser`: the image's user is checked.
    check_non_root: bool,
}

/// How a container ended.
struct Exit {
    code: i64,
    reason: &'static str,
    started: String,
    finished: String,
}

struct Worker {
    node: Arc<Node>,
    ns: String,
    name: String,
    uid: String,
    rx: watch::Receiver<u64>,
    /// Container name → its status as the API shows it.
    statuses: BTreeMap<String, Value>,
    init_names: Vec<String>,
    names: Vec<String>,
    images: HashMap<String, String>,
    /// Docker ids of what this pod made.
    ids: Vec<String>,
    volumes: Vec<String>,
    phase: String,
    start_time: Option<String>,
    /// When SIGTERM was sent, and when SIGKILL is due.
    kill_at: Option<Instant>,
    termed: bool,
}

impl Worker {
    fn new(node: Arc<Node>, ns: String, name: String, uid: String) -> Self {
        let rx = node.shared.changed.subscribe();
        Self {
            node,
            ns,
            name,
            uid,
            rx,
            statuses: BTreeMap::new(),
            init_names: vec![],
            names: vec![],
            images: HashMap::new(),
            ids: vec![],
            volumes: vec![],
            phase: "Pending".into(),
            start_time: None,
            kill_at: None,
            termed: false,
        }
    }

    fn key(&self) -> (Res, String, String) {
        (Res::pods(), self.ns.clone(), self.name.clone())
    }

    fn pod(&self) -> Option<Value> {
        let s = self.node.shared.store.lock().unwrap();
        s.objects.get(&self.key()).filter(|p| p["metadata"]["uid"] == self.uid.as_str()).cloned()
    }

    fn now(&self) -> Now {
        let Some(p) = self.pod() else { return Now::Gone };
        if let Some(grace) = p["metadata"]["deletionGracePeriodSeconds"].as_i64()
            && !p["metadata"]["deletionTimestamp"].is_null()
        {
            return Now::Deleting(Duration::from_secs(grace.max(0) as u64));
        }
        let ended = |phase: Option<&str>| matches!(phase, Some("Succeeded" | "Failed"));
        if ended(p["status"]["phase"].as_str()) && !ended(Some(&self.phase)) {
            return Now::Ended;
        }
        Now::Alive
    }

    /// Runs the pod to its end, then waits for its deletion and removes what it made.
    async fn run(mut self) {
        let end = self.live().await;
        if end != Now::Gone {
            self.until_deleted().await;
        }
        for id in std::mem::take(&mut self.ids) {
            let rm = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            let _ = self.node.docker.remove_container(&id, Some(rm)).await;
        }
        for v in std::mem::take(&mut self.volumes) {
            let _ = self.node.docker.remove_volume(&v, Some(RemoveVolumeOptions { force: true })).await;
        }
        self.node.shared.store.lock().unwrap().kubelet_pods.remove(&self.uid);
    }

    /// Once the pod has ended: gone when deleted (at once: nothing runs).
    async fn until_deleted(&mut self) {
        loop {
            match self.now() {
                Now::Gone => return,
                Now::Deleting(_) => {
                    self.remove_from_store();
                    return;
                }
                _ => {}
            }
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn remove_from_store(&self) {
        let mut s = self.node.shared.store.lock().unwrap();
        if let Some(p) = s.objects.get(&self.key()).filter(|p| p["metadata"]["uid"] == self.uid.as_str()).cloned() {
            Shared::put(&mut s, &Res::pods(), &self.ns, "DELETED", p);
            Shared::finish_foreground(&mut s, &self.ns);
        }
        drop(s);
        self.node.shared.changed.bump();
    }

    /// The pod from scheduling to its end; how it ended.
    async fn live(&mut self) -> Now {
        let Some(pod) = self.pod() else { return Now::Gone };
        self.start_time = Some(now());
        for (key, init) in [("initContainers", true), ("containers", false)] {
            for c in pod["spec"][key].as_array().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                self.images.insert(name.clone(), c["image"].as_str().unwrap_or_default().to_string());
                if init { self.init_names.push(name) } else { self.names.push(name) }
            }
        }
        let (ctrs, volumes) = loop {
            let made = {
                let s = self.node.shared.store.lock().unwrap();
                containers(&s, &self.ns, &pod, &self.node.instance)
            };
            match made {
                Ok(c) => break c,
                Err(message) => {
                    self.wait_all("CreateContainerConfigError", &message);
                    if let Some(stop) = self.pause(None).await {
                        return self.stopped_before_start(stop);
                    }
                }
            }
        };
        self.wait_all("ContainerCreating", "");
        let creds = {
            let s = self.node.shared.store.lock().unwrap();
            pull_logins(&s, &self.ns, &pod)
        };
        // images: pulled when missing (or always, by policy); a failure backs off as a kubelet does
        let mut pulled = HashSet::new();
        for c in &ctrs {
            let mut backoff = Duration::from_secs(10);
            while !pulled.contains(&c.image) {
                match self.ensure_image(c, &creds).await {
                    Ok(()) => {
                        pulled.insert(c.image.clone());
                    }
                    Err((reason, message)) => {
                        self.wait_one(&c.name, reason, &message);
                        if reason == "ErrImageNeverPull" {
                            if let Some(stop) = self.pause(None).await {
                                return self.stopped_before_start(stop);
                            }
                            continue;
                        }
                        if let Some(stop) = self.pause(Some(Duration::from_secs(1))).await {
                            return self.stopped_before_start(stop);
                        }
                        self.wait_one(&c.name, "ImagePullBackOff", &format!("Back-off pulling image \"{}\"", c.image));
                        if let Some(stop) = self.pause(Some(backoff)).await {
                            return self.stopped_before_start(stop);
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(300));
                    }
                }
            }
        }
        for v in volumes {
            self.volumes.push(v.name.clone());
            let Some(files) = v.files else { continue };
            if let Err(e) = self.fill_volume(&v.name, &ctrs[0].image, files).await {
                self.wait_all("CreateContainerConfigError", &e);
                let stop = self.until_stopped().await;
                return self.stopped_before_start(stop);
            }
        }
        for c in &ctrs {
            if !c.init {
                self.statuses.insert(c.name.clone(), waiting(&c.name, &c.image, "PodInitializing", ""));
            }
        }
        let (inits, mains): (Vec<&Ctr>, Vec<&Ctr>) = ctrs.iter().partition(|c| c.init);
        for c in inits {
            match self.run_set(&[c]).await {
                Err(e) => return e,
                Ok(exits) if exits.iter().any(|e| e.code != 0) => {
                    self.finish();
                    return Now::Alive;
                }
                Ok(_) => {}
            }
        }
        match self.run_set(&mains).await {
            Err(e) => e,
            Ok(_) => {
                self.finish();
                Now::Alive
            }
        }
    }

    /// The pod is stopped before any container ran.
    fn stopped_before_start(&mut self, stop: Now) -> Now {
        if let Now::Deleting(_) = stop {
            self.remove_from_store();
            return Now::Gone;
        }
        stop
    }

    /// Waits until the pod is deleted, ended or gone: that.
    async fn until_stopped(&mut self) -> Now {
        loop {
            if let Some(stop) = self.pause(None).await {
                return stop;
            }
        }
    }

    /// Waits for `d` (or, without one, for the next change to the store)
    /// unless the pod is deleted, ended or gone meanwhile: then that.
    async fn pause(&mut self, d: Option<Duration>) -> Option<Now> {
        let until = d.map(|d| Instant::now() + d);
        loop {
            let now = self.now();
            if now != Now::Alive {
                return Some(now);
            }
            let changed = self.rx.changed();
            match until {
                Some(u) => match tokio::time::timeout_at(u, changed).await {
                    Err(_) => return None,
                    Ok(Err(_)) => return Some(Now::Gone),
                    Ok(Ok(())) => {}
                },
                None => {
                    if changed.await.is_err() {
                        return Some(Now::Gone);
                    }
                    let now = self.now();
                    return (now != Now::Alive).then_some(now);
                }
            }
        }
    }

    /// The image present, pulled if need be: `Err((reason, message))` as a kubelet says it.
    async fn ensure_image(
        &self,
        c: &Ctr,
        creds: &HashMap<String, bollard::auth::DockerCredentials>,
    ) -> Result<(), (&'static str, String)> {
        let present = self.node.docker.inspect_image(&c.image).await.is_ok();
        match c.pull.as_str() {
            "Never" if !present => {
                return Err((
                    "ErrImageNeverPull",
                    format!("Container image \"{}\" is not present with pull policy of Never", c.image),
                ));
            }
            "Never" => return Ok(()),
            "IfNotPresent" if present => return Ok(()),
            _ => {}
        }
        let reference = with_tag(&c.image);
        let options = CreateImageOptions { from_image: Some(reference.clone()), ..Default::default() };
        let cred = creds.get(registry_host(&c.image)).cloned();
        let docker = self.node.docker.clone();
        let pull = async move {
            let mut stream = docker.create_image(Some(options), None, cred);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(info) => {
                        if let Some(m) = info.error_detail.and_then(|d| d.message) {
                            return Err(m);
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        };
        let failed = |e: String| ("ErrImagePull", format!("failed to pull and unpack image \"{reference}\": {e}"));
        match tokio::time::timeout(PULL_BOUND, pull).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(failed(format!("no answer in {} s", PULL_BOUND.as_secs()))),
        }
    }

    /// Every container waiting for `reason`.
    fn wait_all(&mut self, reason: &str, message: &str) {
        for (n, i) in
            self.names.iter().chain(&self.init_names).map(|n| (n.clone(), self.images[n].clone())).collect::<Vec<_>>()
        {
            self.statuses.insert(n.clone(), waiting(&n, &i, reason, message));
        }
        self.publish();
    }

    fn wait_one(&mut self, name: &str, reason: &str, message: &str) {
        let image = self.images.get(name).cloned().unwrap_or_default();
        self.statuses.insert(name.into(), waiting(name, &image, reason, message));
        self.publish();
    }

    /// The pod's status from its containers' (under the store's lock).
    fn publish(&mut self) {
        let mut s = self.node.shared.store.lock().unwrap();
        let Some(mut pod) = s.objects.get(&self.key()).filter(|p| p["metadata"]["uid"] == self.uid.as_str()).cloned()
        else {
            return;
        };
        let stored_phase = pod["status"]["phase"].as_str().unwrap_or_default().to_string();
        if matches!(stored_phase.as_str(), "Succeeded" | "Failed") {
            // ended from outside: its status stays as it was set
            return;
        }
        let of =
            |names: &[String]| -> Vec<Value> { names.iter().filter_map(|n| self.statuses.get(n)).cloned().collect() };
        let ready = self.phase == "Running"
            && self.names.iter().all(|n| self.statuses.get(n).is_some_and(|s| s["ready"] == true));
        let inits_done = self
            .init_names
            .iter()
            .all(|n| self.statuses.get(n).is_some_and(|s| s["state"]["terminated"]["exitCode"] == 0));
        let flag = |b: bool| if b { "True" } else { "False" };
        let cond = |t: &str, b: bool| json!({"type": t, "status": flag(b), "lastProbeTime": null, "lastTransitionTime": now()});
        let conds = vec![
            cond("PodReadyToStartContainers", true),
            cond("Initialized", inits_done),
            cond("Ready", ready),
            cond("ContainersReady", ready),
            cond("PodScheduled", true),
        ];
        let mut st = json!({"phase": self.phase, "conditions": conds, "qosClass": "BestEffort",
            "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}], "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
            "startTime": self.start_time.clone().unwrap_or_else(now),
            "containerStatuses": of(&self.names)});
        if !self.init_names.is_empty() {
            st["initContainerStatuses"] = json!(of(&self.init_names));
        }
        if st["containerStatuses"].as_array().is_some_and(Vec::is_empty) {
            st.as_object_mut().map(|o| o.remove("containerStatuses"));
        }
        pod["status"] = st;
        let pod = Shared::put(&mut s, &Res::pods(), &self.ns, "MODIFIED", pod);
        if stored_phase != self.phase {
            Shared::job_after_pod(&mut s, &self.ns, &pod);
        }
        drop(s);
        self.node.shared.changed.bump();
    }

    /// The pod's terminal phase from its containers' exits.
    fn finish(&mut self) {
        let failed =
            self.statuses.values().any(|s| s["state"]["terminated"]["exitCode"].as_i64().is_some_and(|c| c != 0));
        self.phase = if failed { "Failed" } else { "Succeeded" }.into();
        for n in self.names.clone() {
            let st = self.statuses.get_mut(&n).unwrap();
            if st["state"].get("terminated").is_none() {
                // never started (an init container failed)
                st["state"] = json!({"waiting": {"reason": "PodInitializing"}});
            }
        }
        self.publish();
    }

    /// Creates and starts `set` side by side, follows their logs, and waits
    /// for all of them to end, handling a deletion (SIGTERM, then SIGKILL at
    /// the end of the grace), an end from outside or the pod's removal
    /// (SIGKILL) meanwhile. `Err` when the pod went or ended from outside.
    async fn run_set(&mut self, set: &[&Ctr]) -> Result<Vec<Exit>, Now> {
        let mut ids = Vec::new();
        for c in set {
            if self.node.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Now::Gone);
            }
            if c.check_non_root
                && let Err(message) = self.image_user_check(c).await
            {
                self.wait_one(&c.name, "CreateContainerConfigError", &message);
                let stop = self.until_stopped().await;
                return Err(self.stopped_before_start(stop));
            }
            let options = CreateContainerOptions {
                name: Some(format!("kf-{}-{}-{}-{}", &self.node.instance[..8], &self.uid[..8], self.name, c.name)),
                ..Default::default()
            };
            let id = match self.node.docker.create_container(Some(options), c.body.clone()).await {
                Ok(r) => r.id,
                Err(e) => {
                    self.wait_one(&c.name, "CreateContainerError", &e.to_string());
                    let stop = self.until_stopped().await;
                    return Err(self.stopped_before_start(stop));
                }
            };
            self.ids.push(id.clone());
            ids.push(id);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Exit)>(set.len().max(1));
        let mut running = HashSet::new();
        for (i, (c, id)) in set.iter().zip(&ids).enumerate() {
            if let Err(e) = self.node.docker.start_container(id, None).await {
                // as a kubelet: the container ends at once with the runtime's error
                let st = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string(),
                    "startedAt": "1970-01-01T00:00:00Z", "finishedAt": now()}});
                self.statuses.insert(c.name.clone(), container_status(&c.name, &c.image, id, st, false));
                let _ = tx.send((i, Exit { code: 128, reason: "StartError", started: now(), finished: now() })).await;
                continue;
            }
            running.insert(i);
            let started = self.inspect(id).await.map(|(_, s)| s).unwrap_or_else(now);
            let st = json!({"running": {"startedAt": started}});
            self.statuses.insert(c.name.clone(), container_status(&c.name, &c.image, id, st, !c.init));
            let (node, tx, id, key) =
                (self.node.clone(), tx.clone(), id.clone(), (self.ns.clone(), self.name.clone(), c.name.clone()));
            tokio::spawn(async move {
                let exit = follow(&node, &id, key).await;
                let _ = tx.send((i, exit)).await;
            });
        }
        if !set.iter().all(|c| c.init) {
            self.phase = "Running".into();
        }
        self.publish();
        drop(tx);
        let mut exits: Vec<Option<Exit>> = set.iter().map(|_| None).collect();
        let mut outside = None;
        loop {
            if exits.iter().all(Option::is_some) {
                break;
            }
            let kill_at = self.kill_at;
            tokio::select! {
                got = rx.recv() => match got {
                    Some((i, exit)) => {
                        running.remove(&i);
                        let c = set[i];
                        let st = json!({"terminated": {"exitCode": exit.code, "reason": exit.reason,
                            "startedAt": exit.started, "finishedAt": exit.finished, "containerID": format!("docker://{}", ids[i])}});
                        self.statuses.insert(c.name.clone(), container_status(&c.name, &c.image, &ids[i], st, false));
                        exits[i] = Some(exit);
                        if exits.iter().any(Option::is_none) {
                            self.publish();
                        }
                    }
                    None => break,
                },
                _ = async { tokio::time::sleep_until(kill_at.unwrap()).await }, if kill_at.is_some() => {
                    self.kill_at = None;
                    self.signal(&ids, &running, "SIGKILL").await;
                }
                r = self.rx.changed() => {
                    if r.is_err() { return Err(Now::Gone); }
                    match self.now() {
                        Now::Alive => {}
                        Now::Deleting(grace) => {
                            let at = Instant::now() + grace;
                            if !self.termed {
                                self.termed = true;
                                self.signal(&ids, &running, "SIGTERM").await;
                            }
                            if self.kill_at.is_none_or(|k| at < k) {
                                self.kill_at = Some(at);
                            }
                        }
                        other => {
                            if outside.is_none() {
                                self.signal(&ids, &running, "SIGKILL").await;
                            }
                            outside = Some(other);
                        }
                    }
                }
            }
        }
        if let Some(o) = outside {
            return Err(o);
        }
        if self.termed || self.now() == Now::Gone {
            // deleted: the containers are done, the pod goes with its last status
            if set.iter().all(|c| !c.init) {
                self.finish();
            }
            self.remove_from_store();
            return Err(Now::Gone);
        }
        Ok(exits.into_iter().flatten().collect())
    }

    /// Writes `files` into Docker volume `volume`, through a container of
    /// `image` that is made, never started, and removed.
    async fn fill_volume(&self, volume: &str, image: &str, files: Vec<(String, Vec<u8>, u32)>) -> Result<(), String> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data, mode) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(*mode);
            h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
            tar.append_data(&mut h, path, data.as_slice()).map_err(|e| format!("volume {volume}: {e}"))?;
        }
        let tar = tar.into_inner().map_err(|e| format!("volume {volume}: {e}"))?;
        let labels = HashMap::from([(INSTANCE_LABEL.to_string(), self.node.instance.clone())]);
        let mount = Mount {
            typ: Some(MountType::VOLUME),
            source: Some(volume.to_string()),
            target: Some("/kube-fake-volume".into()),
            volume_options: Some(MountVolumeOptions { labels: Some(labels.clone()), ..Default::default() }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![mount]),
                ..Default::default()
            }),
            ..Default::default()
        };
        if self.node.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the fake is stopping".into());
        }
        let docker = &self.node.docker;
        let id = docker.create_container(None::<CreateContainerOptions>, body).await.map_err(|e| e.to_string())?.id;
        let options = bollard::query_parameters::UploadToContainerOptions {
            path: "/kube-fake-volume".into(),
            ..Default::default()
        };
        let uploaded = docker.upload_to_container(&id, Some(options), bollard::body_full(tar.into())).await;
        let _ = docker.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
        uploaded.map_err(|e| format!("MountVolume.SetUp failed for volume {volume}: {e}"))
    }

    /// A kubelet's `runAsNonRoot` check against the image's user.
    async fn image_user_check(&self, c: &Ctr) -> Result<(), String> {
        let image = self.node.docker.inspect_image(&c.image).await.map_err(|e| e.to_string())?;
        let user = image.config.and_then(|c| c.user).unwrap_or_default();
        let user = user.split(':').next().unwrap_or_default();
        let who = format!("(pod: \"{}_{}({})\", container: {})", self.name, self.ns, self.uid, c.name);
        match user.parse::<u64>() {
            _ if user.is_empty() || user == "root" => {
                Err(format!("container has runAsNonRoot and image will run as root {who}"))
            }
            Ok(0) => Err(format!("container has runAsNonRoot and image will run as root {who}")),
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {who}"
            )),
        }
    }

    async fn signal(&self, ids: &[String], running: &HashSet<usize>, signal: &str) {
        for i in running {
            let k = KillContainerOptions { signal: signal.into() };
            let _ = self.node.docker.kill_container(&ids[*i], Some(k)).await;
        }
    }

    /// (state, startedAt) of container `id`.
    async fn inspect(&self, id: &str) -> Option<(bollard::models::ContainerState, String)> {
        let i = self.node.docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?;
        let st = i.state?;
        let started = st.started_at.clone().map(|t| rfc3339_seconds(&t)).unwrap_or_else(now);
        Some((st, started))
    }
}

/// A container's log into the store as it comes, then its exit.
async fn follow(node: &Node, id: &str, key: (String, String, String)) -> Exit {
    let mut cursor = Cursor::default();
    let _ = read_logs(node, id, 0, true, 0, &mut cursor, &key).await;
    let wait = node
        .docker
        .clone()
        .with_timeout(Duration::from_secs(365 * 24 * 3600))
        .wait_container(id, Some(WaitContainerOptions { condition: "not-running".into() }))
        .next()
        .await;
    let _ = wait;
    // the engine may end a followed stream before the last entries: read the tail again
    let (from, skip) = cursor.newest.unwrap_or((0, 0));
    let _ = read_logs(node, id, from, false, skip, &mut cursor, &key).await;
    for part in [std::mem::take(&mut cursor.out), std::mem::take(&mut cursor.err)] {
        if !part.is_empty() && cursor.stored <= MAX_LOG {
            store_line(node, &key, jiff::Timestamp::now(), String::from_utf8_lossy(&part).into_owned() + "\n");
        }
    }
    let inspected = node.docker.inspect_container(id, None::<InspectContainerOptions>).await.ok().and_then(|i| i.state);
    let st = inspected.unwrap_or_default();
    let code = st.exit_code.unwrap_or(-1);
    let reason = if st.oom_killed == Some(true) {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Exit {
        code,
        reason,
        started: st.started_at.map(|t| rfc3339_seconds(&t)).unwrap_or_else(now),
        finished: st.finished_at.map(|t| rfc3339_seconds(&t)).unwrap_or_else(now),
    }
}

/// `2026-01-02T03:04:05.123456789Z` → `2026-01-02T03:04:05Z`, as the API writes times.
fn rfc3339_seconds(t: &str) -> String {
    t.parse::<jiff::Timestamp>().map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|_| now())
}

#[derive(Default)]
struct Cursor {
    out: Vec<u8>,
    err: Vec<u8>,
    /// The newest whole second read, and how many entries of it.
    newest: Option<(i64, u64)>,
    /// Bytes of log stored so far.
    stored: usize,
}

async fn read_logs(
    node: &Node,
    id: &str,
    since: i64,
    follow: bool,
    mut skip: u64,
    cursor: &mut Cursor,
    key: &(String, String, String),
) -> Result<(), String> {
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        since: i32::try_from(since).unwrap_or(i32::MAX),
        timestamps: true,
        ..Default::default()
    };
    let docker = node.docker.clone().with_timeout(Duration::from_secs(365 * 24 * 3600));
    let mut logs = docker.logs(id, Some(options));
    while let Some(frame) = logs.next().await {
        let (err, bytes) = match frame.map_err(|e| e.to_string())? {
            bollard::container::LogOutput::StdErr { message } => (true, message),
            bollard::container::LogOutput::StdOut { message } | bollard::container::LogOutput::Console { message } => {
                (false, message)
            }
            bollard::container::LogOutput::StdIn { .. } => continue,
        };
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let sp = bytes.iter().position(|b| *b == b' ').unwrap_or(bytes.len());
        let at = std::str::from_utf8(&bytes[..sp]).ok().and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let Some(at) = at else { continue };
        let second = at.as_second();
        cursor.newest = match cursor.newest {
            Some((n, seen)) if n == second => Some((n, seen + 1)),
            Some((n, seen)) if second < n => Some((n, seen)),
            _ => Some((second, 1)),
        };
        let text = bytes.get(sp + 1..).unwrap_or_default();
        let buf = if err { &mut cursor.err } else { &mut cursor.out };
        buf.extend_from_slice(text);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n').or((buf.len() >= MAX_LINE).then_some(MAX_LINE - 1)) {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let mut line = String::from_utf8_lossy(&line).into_owned();
            if !line.ends_with('\n') {
                line.push('\n');
            }
            cursor.stored += line.len();
            if cursor.stored <= MAX_LOG {
                store_line(node, key, at, line);
            } else if cursor.stored - line.len() <= MAX_LOG {
                store_line(node, key, at, format!("kube-fake: this log is cut at {MAX_LOG} bytes\n"));
            }
        }
    }
    Ok(())
}

fn store_line(node: &Node, key: &(String, String, String), at: jiff::Timestamp, line: String) {
    node.shared.store.lock().unwrap().logs.entry(key.clone()).or_default().push((at, line));
    node.shared.changed.bump();
}

fn waiting(name: &str, image: &str, reason: &str, message: &str) -> Value {
    let mut w = json!({"reason": reason});
    if !message.is_empty() {
        w["message"] = json!(message);
    }
    json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
        "state": {"waiting": w}})
}

fn container_status(name: &str, image: &str, id: &str, state: Value, ready: bool) -> Value {
    let started = state.get("running").is_some();
    json!({"name": name, "image": image, "imageID": "", "containerID": format!("docker://{id}"),
        "ready": ready, "restartCount": 0, "started": started, "state": state})
}

/// `repo` → `repo:latest` (a pull without a tag would fetch every tag).
fn with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') { image.to_string() } else { format!("{image}:latest") }
}

/// The registry an image comes from, as docker config keys name it.
fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((h, _)) if h.contains('.') || h.contains(':') || h == "localhost" => h,
        _ => "https://index.docker.io/v1/",
    }
}

/// The logins of the pod's `imagePullSecrets` (dockerconfigjson Secrets), by registry host.
fn pull_logins(s: &Store, ns: &str, pod: &Value) -> HashMap<String, bollard::auth::DockerCredentials> {
    let mut out = HashMap::new();
    for r in pod["spec"]["imagePullSecrets"].as_array().into_iter().flatten() {
        let Some(name) = r["name"].as_str() else { continue };
        if let Ok(config) = super::kaniko::secret_value(s, ns, name, ".dockerconfigjson") {
            out.extend(super::kaniko::logins(Some(&config)));
        }
    }
    out
}

fn data_value(s: &Store, ns: &str, res: &Res, name: &str, key: &str, optional: bool) -> Result<Option<String>, String> {
    let kind = if *res == Res::secrets() { "Secret" } else { "ConfigMap" };
    let lower = if *res == Res::secrets() { "secret" } else { "configmap" };
    let Some(obj) = s.objects.get(&(res.clone(), ns.to_string(), name.to_string())) else {
        return if optional { Ok(None) } else { Err(format!("{lower} \"{name}\" not found")) };
    };
    let v = if *res == Res::secrets() {
        obj["data"][key].as_str().and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
        })
    } else {
        obj["data"][key].as_str().map(str::to_string)
    };
    match v {
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in {kind} {ns}/{name}")),
    }
}

/// All key/values of a Secret or ConfigMap (`envFrom`).
fn all_data(s: &Store, ns: &str, res: &Res, name: &str, optional: bool) -> Result<Vec<(String, String)>, String> {
    let lower = if *res == Res::secrets() { "secret" } else { "configmap" };
    let Some(obj) = s.objects.get(&(res.clone(), ns.to_string(), name.to_string())) else {
        return if optional { Ok(vec![]) } else { Err(format!("{lower} \"{name}\" not found")) };
    };
    let mut out = Vec::new();
    for k in obj["data"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if let Some(v) = data_value(s, ns, res, name, &k, true)? {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// A Docker volume a pod uses, and the files a `secret` or `configMap` volume holds.
struct PodVolume {
    name: String,
    files: Option<Vec<(String, Vec<u8>, u32)>>,
}

/// The files of a `secret` or `configMap` volume: each key (or each of
/// `items`, at its `path`), with its mode (`defaultMode`, 0644).
fn volume_files(s: &Store, ns: &str, v: &Value) -> Result<Vec<(String, Vec<u8>, u32)>, String> {
    let (res, src, name) = if v.get("secret").is_some() {
        (Res::secrets(), &v["secret"], v["secret"]["secretName"].as_str().unwrap_or_default())
    } else {
        (Res::new("", "v1", "configmaps"), &v["configMap"], v["configMap"]["name"].as_str().unwrap_or_default())
    };
    let volume = v["name"].as_str().unwrap_or_default();
    let mode = src["defaultMode"].as_u64().unwrap_or(0o644) as u32;
    let failed = |e: String| format!("MountVolume.SetUp failed for volume \"{volume}\" : {e}");
    let all = all_data(s, ns, &res, name, src["optional"] == true).map_err(failed)?;
    let mut files = Vec::new();
    match src["items"].as_array() {
        Some(items) => {
            for i in items {
                let key = i["key"].as_str().unwrap_or_default();
                let (_, value) = all
                    .iter()
                    .find(|(k, _)| k == key)
                    .ok_or_else(|| failed(format!("couldn't find key {key} in {name}")))?;
                let path = i["path"].as_str().unwrap_or(key).to_string();
                files.push((path, value.clone().into_bytes(), i["mode"].as_u64().map_or(mode, |m| m as u32)));
            }
        }
        None => files.extend(all.into_iter().map(|(k, v)| (k, v.into_bytes(), mode))),
    }
    if let Some((bad, ..)) = files.iter().find(|(p, ..)| p.starts_with('/') || p.split('/').any(|c| c == "..")) {
        return Err(failed(format!("invalid path {bad}")));
    }
    Ok(files)
}

/// The containers to make for `pod` (init containers first) and the
/// volumes they mount, or why a kubelet could not make them
/// (`CreateContainerConfigError`'s message).
fn containers(s: &Store, ns: &str, pod: &Value, instance: &str) -> Result<(Vec<Ctr>, Vec<PodVolume>), String> {
    let spec = &pod["spec"];
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let mut volumes: HashMap<String, Mount> = HashMap::new();
    let mut pod_volumes = Vec::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        let labels = HashMap::from([(INSTANCE_LABEL.to_string(), instance.to_string())]);
        let docker_volume = format!("kf-{}-{uid}-{name}", &instance[..8]);
        let named = Mount {
            typ: Some(MountType::VOLUME),
            source: Some(docker_volume.clone()),
            volume_options: Some(MountVolumeOptions { labels: Some(labels), ..Default::default() }),
            ..Default::default()
        };
        let mount = if v.get("emptyDir").is_some() && v["emptyDir"]["medium"] == "Memory" {
            Mount { typ: Some(MountType::TMPFS), ..Default::default() }
        } else if v.get("emptyDir").is_some() {
            pod_volumes.push(PodVolume { name: docker_volume, files: None });
            named
        } else if v.get("secret").is_some() || v.get("configMap").is_some() {
            pod_volumes.push(PodVolume { name: docker_volume, files: Some(volume_files(s, ns, v)?) });
            // as on a node: a Secret's or ConfigMap's files are read-only
            Mount { read_only: Some(true), ..named }
        } else {
            let kind = v.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()).unwrap_or_default();
            return Err(format!(
                "kube-fake: volume \"{name}\" is a {kind} volume; the fake's kubelet mounts emptyDir, secret and \
                 configMap volumes only"
            ));
        };
        volumes.insert(name.to_string(), mount);
    }
    let mut out = Vec::new();
    let inits = spec["initContainers"].as_array().into_iter().flatten().map(|c| (c, true));
    for (c, init) in inits.chain(spec["containers"].as_array().into_iter().flatten().map(|c| (c, false))) {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let image = c["image"].as_str().unwrap_or_default().to_string();
        let mut env: Vec<String> = Vec::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or_default();
            let (res, r) = if from.get("secretRef").is_some() {
                (Res::secrets(), &from["secretRef"])
            } else {
                (Res::new("", "v1", "configmaps"), &from["configMapRef"])
            };
            let optional = r["optional"] == true;
            for (k, v) in all_data(s, ns, &res, r["name"].as_str().unwrap_or_default(), optional)? {
                env.push(format!("{prefix}{k}={v}"));
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let k = e["name"].as_str().unwrap_or_default();
            let from = &e["valueFrom"];
            let value = if let Some(v) = e["value"].as_str() {
                Some(v.to_string())
            } else if from.get("secretKeyRef").is_some() || from.get("configMapKeyRef").is_some() {
                let (res, r) = if from.get("secretKeyRef").is_some() {
                    (Res::secrets(), &from["secretKeyRef"])
                } else {
                    (Res::new("", "v1", "configmaps"), &from["configMapKeyRef"])
                };
                data_value(
                    s,
                    ns,
                    &res,
                    r["name"].as_str().unwrap_or_default(),
                    r["key"].as_str().unwrap_or_default(),
                    r["optional"] == true,
                )?
            } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                Some(match path {
                    "metadata.name" => pod_name.to_string(),
                    "metadata.namespace" => ns.to_string(),
                    "metadata.uid" => uid.to_string(),
                    "spec.nodeName" => "kube-fake-node".into(),
                    "spec.serviceAccountName" => spec["serviceAccountName"].as_str().unwrap_or_default().into(),
                    "status.podIP" => "10.244.0.7".into(),
                    "status.hostIP" => "10.0.0.1".into(),
                    other => return Err(format!("kube-fake: fieldRef {other} is not supported")),
                })
            } else {
                Some(String::new())
            };
            if let Some(v) = value {
                env.push(format!("{k}={v}"));
            }
        }
        let sc = |k: &str| {
            let own = &c["securityContext"][k];
            if own.is_null() { spec["securityContext"][k].clone() } else { own.clone() }
        };
        let user = match (sc("runAsUser").as_i64(), sc("runAsGroup").as_i64()) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            (None, Some(g)) => Some(format!("0:{g}")),
            (None, None) => None,
        };
        if sc("runAsNonRoot") == true && sc("runAsUser").as_i64() == Some(0) {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod_name}_{ns}({uid})\", container: {name})"
            ));
        }
        let csc = &c["securityContext"];
        let mut security_opt = Vec::new();
        if csc["allowPrivilegeEscalation"] == false {
            security_opt.push("no-new-privileges".to_string());
        }
        let mut mounts = Vec::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let vol = m["name"].as_str().unwrap_or_default();
            let mut mount = volumes.get(vol).cloned().ok_or_else(|| {
                format!("kube-fake: container {name} mounts volume \"{vol}\", which the pod does not have")
            })?;
            mount.target = m["mountPath"].as_str().map(str::to_string);
            if m["readOnly"] == true {
                mount.read_only = Some(true);
            }
            mounts.push(mount);
        }
        let host_config = HostConfig {
            network_mode: Some("none".into()),
            privileged: Some(csc["privileged"] == true),
            readonly_rootfs: csc["readOnlyRootFilesystem"].as_bool(),
            cap_drop: strings(&csc["capabilities"]["drop"]),
            cap_add: strings(&csc["capabilities"]["add"]),
            security_opt: (!security_opt.is_empty()).then_some(security_opt),
            mounts: (!mounts.is_empty()).then_some(mounts),
            ..Default::default()
        };
        let labels = HashMap::from([
            (INSTANCE_LABEL.to_string(), instance.to_string()),
            ("io.kubernetes.pod.namespace".to_string(), ns.to_string()),
            ("io.kubernetes.pod.name".to_string(), pod_name.to_string()),
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("io.kubernetes.container.name".to_string(), name.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            // Kubernetes: `command` replaces the entrypoint (and drops the image's CMD), `args` the CMD
            entrypoint: strings(&c["command"]).filter(|v| !v.is_empty()),
            cmd: strings(&c["args"]).filter(|v| !v.is_empty()),
            env: Some(env),
            working_dir: c["workingDir"].as_str().map(str::to_string),
            user,
            labels: Some(labels),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        };
        let pull = c["imagePullPolicy"].as_str().unwrap_or("IfNotPresent").to_string();
        let check_non_root = sc("runAsNonRoot") == true && sc("runAsUser").is_null();
        out.push(Ctr { name, image, pull, body, init, check_non_root });
    }
    Ok((out, pod_volumes))
}
