//! The `kubernetes` [`Runner`]: a run is a `batch/v1` Job (through kube-rs),
//! its key in a Secret, an image pull Secret from the registry's login, the
//! restricted security context on every container; watched (`monitor`),
//! its pods' logs followed as they run; stopped by deleting the Job with
//! foreground propagation and the grace period; found again after an
//! agent restart by the agent key's label, and left running on shutdown.

pub mod access;
mod cluster;
mod manifest;
mod monitor;
mod watched_job;

pub use cluster::{Cluster, ClusterSource};
pub use manifest::{label_value, labels, restricted};
pub use monitor::End;
pub use watched_job::WatchedJob;

use crate::lines::agent_line;
use crate::remote_job::{CloudCommand, agent_digest, check_cloud_run};
use crate::runner::{
    Adoptable, AdoptedWork, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob, StoredOutput,
};
use crate::{JobError, JobErrorCode};
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use liftoff_core::{ResourceType, Stage};
use monitor::LogSink;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::task::JoinHandle;

pub struct KubernetesRunner {
    source: ClusterSource,
    cluster: OnceCell<Cluster>,
    docker_config: Option<PathBuf>,
}

impl KubernetesRunner {
    /// Connects on first use.
    pub fn new(source: ClusterSource, docker_config: Option<PathBuf>) -> Self {
        Self { source, cluster: OnceCell::new(), docker_config }
    }

    async fn cluster(&self) -> Result<&Cluster, JobError> {
        self.cluster.get_or_try_init(|| self.source.connect()).await.map_err(|e| {
            JobError::new(Stage::Agent, JobErrorCode::Engine, format!("cannot reach the Kubernetes cluster: {e}"))
        })
    }
}

struct KubePlan {
    args: Value,
    namespace: Option<String>,
    name: String,
    cmd: CloudCommand,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// The image job's own image: its login comes from the docker config.
    image_job: bool,
}

struct KubeStart {
    namespace: String,
    name: String,
    job: Value,
    secret_env: BTreeMap<String, String>,
    pull: Option<String>,
    labels: BTreeMap<String, String>,
}

fn spec_err(m: String) -> JobError {
    JobError::new(Stage::Agent, JobErrorCode::Spec, m)
}

/// A kube error in words, naming `what` failed (the API's code, reason and message).
pub fn kube_err(what: &str, e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{what} ({} {}): {}", s.code, s.reason, s.message),
        other => format!("{what}: {other}"),
    }
}

#[async_trait]
impl Runner for KubernetesRunner {
    fn resource(&self) -> ResourceType {
        ResourceType::Kubernetes
    }

    fn runs_remotely(&self) -> bool {
        true
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError> {
        let args = &req.resource_args;
        let mut problems: Vec<liftoff_core::resource::ConfigProblem> = Vec::new();
        if let Err(errors) = liftoff_core::kube_args::check(args, req.secure_mode) {
            problems.extend(
                errors
                    .into_iter()
                    .map(|m| liftoff_core::resource::ConfigProblem { field: "config".into(), message: m }),
            );
        }
        let api_version = args["apiVersion"].as_str().unwrap_or("batch/v1");
        let kind = args["kind"].as_str().unwrap_or("Job");
        if (api_version, kind) != ("batch/v1", "Job") {
            problems.push(liftoff_core::resource::ConfigProblem {
                field: "config.kind".into(),
                message: format!(
                    "only batch/v1 Jobs run on kubernetes in this agent; the custom-resource path ({api_version} {kind}) is not available yet"
                ),
            });
        }
        // the queue's manifest with what the run adds (a stand-in image): a Job, every field known
        let sample = manifest::job_manifest(&manifest::JobInput {
            args,
            name: "lf-check",
            namespace: "default",
            labels: &BTreeMap::new(),
            annotations: &BTreeMap::new(),
            image: "check",
            entrypoint: &[],
            cmd_args: &[],
            env: &BTreeMap::new(),
            env_secret: "lf-check-env",
            pull_secret: None,
        });
        if let Err(message) = manifest::check_job_fields(&sample) {
            problems.push(liftoff_core::resource::ConfigProblem { field: "config".into(), message });
        }
        let cmd = check_cloud_run(req, problems, "Kubernetes", "a registry the cluster can pull from")?;
        let item = req.item;
        let name = manifest::job_name(&item.run_id, item.fence);
        let digest = agent_digest(req.agent_key);
        let exact = [
            (labels::RUN, item.run_id.clone()),
            (labels::ITEM, item.id.clone()),
            (labels::FENCE, item.fence.to_string()),
            (labels::AGENT, digest),
        ];
        let labels: BTreeMap<String, String> =
            exact.iter().map(|(k, v)| (k.to_string(), manifest::label_value(v))).collect();
        let annotations: BTreeMap<String, String> = exact.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let ns = args["metadata"]["namespace"].as_str().or(args["namespace"].as_str()).map(str::to_string);
        if let Some(n) = &ns
            && !n.is_empty()
            && (n.len() > 63 || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(spec_err(format!("resource_args.namespace: '{n}' is not a Kubernetes namespace name")));
        }
        let plan = KubePlan {
            args: args.clone(),
            namespace: ns.filter(|n| !n.is_empty()),
            name,
            cmd,
            env: req.env.clone(),
            labels,
            annotations,
            image_job: !req.will_build,
        };
        Ok(Plan::new(false, vec![], plan))
    }

    async fn prepare(&self, plan: Plan, built: Option<BuiltImage>, _logs: &LogSender) -> Result<Prepared, JobError> {
        let mut p: KubePlan = plan.into_work()?;
        let cluster = self.cluster().await?;
        let namespace = p.namespace.clone().unwrap_or_else(|| manifest::namespace(&p.args, &cluster.namespace));
        let auth = match &built {
            Some(b) => b.auth.clone(),
            None if p.image_job => {
                let image = p.cmd.image.clone().unwrap_or_default();
                crate::registry_auth::pull_auth(&image, self.docker_config.as_deref()).await.ok().flatten()
            }
            None => None,
        };
        let image = p.cmd.apply(built);
        let mut warnings = vec![];
        let pull = auth.as_ref().and_then(|a| {
            let c = manifest::docker_config_json(a);
            if c.is_none() {
                warnings.push(format!(
                    "the login for {} is an identity token, which a kubelet cannot use: no image pull secret was made",
                    a.serveraddress
                ));
            }
            c
        });
        let env_secret = format!("{}-env", p.name);
        let pull_secret = format!("{}-pull", p.name);
        let job = manifest::job_manifest(&manifest::JobInput {
            args: &p.args,
            name: &p.name,
            namespace: &namespace,
            labels: &p.labels,
            annotations: &p.annotations,
            image: &image,
            entrypoint: &p.cmd.entrypoint,
            cmd_args: &p.cmd.args,
            env: &p.env,
            env_secret: &env_secret,
            pull_secret: pull.as_ref().map(|_| pull_secret.as_str()),
        });
        let secret_env: BTreeMap<String, String> =
            p.env.iter().filter(|(k, _)| manifest::is_secret_env(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let description = format!("Kubernetes Job {namespace}/{} from {image}", p.name);
        let start = KubeStart { namespace, name: p.name, job, secret_env, pull, labels: std::mem::take(&mut p.labels) };
        Ok(Prepared::new(warnings, description, start))
    }

    async fn start(&self, prepared: Prepared, logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError> {
        let s: KubeStart = prepared.into_work()?;
        let cluster = self.cluster().await?;
        let client = cluster.client.clone();
        let fail = |m: String| JobError::new(Stage::Run, JobErrorCode::Start, m);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &s.namespace);
        let mut secret_labels = s.labels.clone();
        secret_labels.insert(labels::JOB.into(), s.name.clone());
        let mut made = vec![(format!("{}-env", s.name), "Opaque", json!({"stringData": s.secret_env}))];
        if let Some(p) = &s.pull {
            made.push((
                format!("{}-pull", s.name),
                "kubernetes.io/dockerconfigjson",
                json!({"stringData": {".dockerconfigjson": p}}),
            ));
        }
        for (name, kind, data) in made {
            let mut body = json!({"apiVersion": "v1", "kind": "Secret", "type": kind,
                "metadata": {"name": name, "namespace": s.namespace, "labels": secret_labels}});
            body["stringData"] = data["stringData"].clone();
            let secret: Secret = serde_json::from_value(body).map_err(|e| fail(e.to_string()))?;
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => {}
                // ours from an earlier try of this claim (same name = same run and fence): replace it
                Err(kube::Error::Api(st)) if st.code == 409 => {
                    let _ = secrets.delete(&name, &DeleteParams::default()).await;
                    secrets
                        .create(&PostParams::default(), &secret)
                        .await
                        .map_err(|e| fail(kube_err(&format!("could not create Secret {name}"), e)))?;
                }
                Err(e) => return Err(fail(kube_err(&format!("could not create Secret {name}"), e))),
            }
        }
        let jobs: Api<Job> = Api::namespaced(client.clone(), &s.namespace);
        let job: Job = serde_json::from_value(s.job).map_err(|e| spec_err(format!("resource_args: not a Job: {e}")))?;
        if let Err(e) = jobs.create(&PostParams::default(), &job).await {
            delete_secrets(&client, &s.namespace, &s.name).await;
            return Err(fail(kube_err(&format!("Kubernetes refused Job {}", s.name), e)));
        }
        agent_line(logs, format!("liftoff agent: created Kubernetes Job {}/{}", s.namespace, s.name)).await;
        Ok(Box::new(KubeRun::follow(client, s.namespace, s.name, StoredOutput::default(), logs.clone())))
    }

    /// The Jobs in any namespace labelled with this agent key's digest.
    async fn adopt(&self, agent_key: &str) -> Result<Vec<Adoptable>, JobError> {
        let cluster = self.cluster().await?;
        let jobs: Api<Job> = Api::all(cluster.client.clone());
        let selector = format!("{}={}", labels::AGENT, agent_digest(agent_key));
        let list = jobs.list(&ListParams::default().labels(&selector)).await.map_err(|e| {
            JobError::new(
                Stage::Agent,
                JobErrorCode::Engine,
                kube_err("could not list this agent's Kubernetes Jobs", e),
            )
        })?;
        let mut found = Vec::new();
        for j in list.items {
            let a = j.annotations();
            let (Some(item_id), Some(fence), Some(run_id), Some(ns)) = (
                a.get(labels::ITEM).cloned(),
                a.get(labels::FENCE).and_then(|f| f.parse().ok()),
                a.get(labels::RUN).cloned(),
                j.namespace(),
            ) else {
                continue;
            };
            let ended = j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                c.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
            let name = j.name_any();
            found.push(Adoptable {
                item_id,
                fence,
                run_id,
                kind: "Kubernetes Job",
                id: format!("{ns}/{name}"),
                running: !ended,
                work: Box::new(FoundJob { client: cluster.client.clone(), namespace: ns, name }),
            });
        }
        Ok(found)
    }
}

/// Deletes the Secrets labelled with Job `job`'s name.
pub async fn delete_secrets(client: &Client, ns: &str, job: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{}={job}", labels::JOB));
    if let Ok(list) = secrets.list(&lp).await {
        for s in list.items {
            if let Err(e) = secrets.delete(&s.name_any(), &DeleteParams::default()).await {
                tracing::warn!(secret = %s.name_any(), error = %e, "could not delete a run's Secret");
            }
        }
    }
}

/// Deletes the Job (foreground: its pods first, each with `grace`) and its Secrets.
pub async fn delete_job(client: &Client, ns: &str, name: &str, grace: Duration) -> Result<(), String> {
    let grace = u32::try_from(grace.as_secs()).unwrap_or(u32::MAX);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        grace_period_seconds: Some(grace),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(kube_err(&format!("could not delete Kubernetes Job {name}"), e)),
    }
    // the garbage collector would give pods their own grace period: ours is the stop's
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = pods.list(&ListParams::default().labels(&format!("job-name={name}"))).await {
        for p in list.items {
            let _ = pods.delete(&p.name_any(), &DeleteParams::default().grace_period(grace)).await;
        }
    }
    delete_secrets(client, ns, name).await;
    Ok(())
}

/// A Job being watched.
pub struct KubeRun {
    client: Client,
    namespace: String,
    name: String,
    end: watch::Receiver<Option<End>>,
    task: Option<JoinHandle<()>>,
    warnings: Option<mpsc::Receiver<String>>,
    stopping: bool,
}

impl KubeRun {
    fn follow(client: Client, namespace: String, name: String, stored: StoredOutput, logs: LogSender) -> Self {
        let (tx, end) = watch::channel(None);
        let (wtx, wrx) = mpsc::channel(16);
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let sink = LogSink { logs, stored: Arc::new(Mutex::new(stored)), stream: liftoff_core::api::LogStream::Stdout };
        let task = tokio::spawn(monitor::monitor(jobs, pods, name.clone(), sink, wtx, tx));
        Self { client, namespace, name, end, task: Some(task), warnings: Some(wrx), stopping: false }
    }

    fn what(&self) -> String {
        format!("Kubernetes Job {}/{}", self.namespace, self.name)
    }

    async fn ended(&mut self) -> Result<End, JobError> {
        match self.end.wait_for(Option::is_some).await.map(|s| s.clone()) {
            Ok(Some(e)) => Ok(e),
            _ => Err(JobError::new(Stage::Run, JobErrorCode::Wait, format!("lost track of {}", self.what()))),
        }
    }

    fn abort(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// How long after its grace period a deleted Job may take to go.
const STOP_BOUND: Duration = Duration::from_secs(60);

#[async_trait]
impl RunningJob for KubeRun {
    async fn wait(&mut self) -> Result<i32, JobError> {
        match self.ended().await? {
            End::Finished => Ok(0),
            End::Failed(reason, code) => {
                Err(JobError::new(Stage::Run, JobErrorCode::RemoteFailed, reason).with_exit_code(code))
            }
            End::Preempted(why) => Err(JobError::new(Stage::Run, JobErrorCode::Preempted, why)),
            End::Deleted if self.stopping => Ok(143),
            End::Deleted => Err(JobError::new(
                Stage::Run,
                JobErrorCode::StoppedElsewhere,
                format!("{} was deleted outside Liftoff", self.what()),
            )),
        }
    }

    async fn stop(&mut self, grace: Duration) -> Result<i32, JobError> {
        self.stopping = true;
        delete_job(&self.client, &self.namespace, &self.name, grace)
            .await
            .map_err(|e| JobError::new(Stage::Run, JobErrorCode::Stop, e))?;
        match tokio::time::timeout(grace + STOP_BOUND, self.ended()).await {
            Ok(Ok(End::Finished)) => Ok(0),
            Ok(Ok(_)) => Ok(143),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(JobError::new(
                Stage::Run,
                JobErrorCode::Stop,
                format!("{} was still there {} s after its deletion", self.what(), (grace + STOP_BOUND).as_secs()),
            )),
        }
    }

    fn warnings(&mut self) -> Option<mpsc::Receiver<String>> {
        self.warnings.take()
    }

    async fn detach(mut self: Box<Self>) {
        self.abort();
    }

    /// The run has ended and its log is read: the Job and its Secrets go.
    async fn cleanup(mut self: Box<Self>) {
        self.abort();
        if let Err(e) = delete_job(&self.client, &self.namespace, &self.name, Duration::ZERO).await {
            tracing::warn!(job = %self.name, error = %e, "could not remove an ended Job");
        }
    }
}

impl Drop for KubeRun {
    fn drop(&mut self) {
        self.abort();
    }
}

/// A Job found after an agent restart.
struct FoundJob {
    client: Client,
    namespace: String,
    name: String,
}

#[async_trait]
impl AdoptedWork for FoundJob {
    fn resume(self: Box<Self>, stored: StoredOutput, logs: LogSender) -> Box<dyn RunningJob> {
        Box::new(KubeRun::follow(self.client, self.namespace, self.name, stored, logs))
    }

    /// Its lease is gone: the Job and its Secrets go.
    async fn discard(self: Box<Self>) {
        if let Err(e) = delete_job(&self.client, &self.namespace, &self.name, Duration::from_secs(5)).await {
            tracing::warn!(job = %self.name, error = %e, "could not remove an orphaned Job");
        }
    }
}
