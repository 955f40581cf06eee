//! The `kubernetes` [`Runner`]: a run is a `batch/v1` Job (through kube-rs)
//! or any custom resource the queue names (`custom.rs`: Volcano, JobSet,
//! PyTorchJob...), its key in a Secret, an image pull Secret from the
//! registry's login, the restricted security context on every container,
//! its `additional_services` made and waited for before it
//! (`services.rs`); watched (`monitor`), its pods' logs followed as they
//! run; stopped by deleting it with foreground propagation and the grace
//! period; found again after an agent restart by the agent key's label (a
//! custom run by its marker ConfigMap), and left running on shutdown.

pub mod access;
mod cluster;
mod custom;
mod manifest;
mod monitor;
mod services;
mod watched_job;

pub use cluster::{Cluster, ClusterSource};
pub use custom::{CustomKind, CustomState, custom_state, pod_template_paths};
pub use manifest::{label_value, labels, restricted};
pub use monitor::End;
pub use services::sanitise as service_name;
pub use watched_job::WatchedJob;

use crate::lines::agent_line;
use crate::remote_job::{CloudCommand, agent_digest, check_cloud_run};
use crate::runner::{
    Adoptable, AdoptedWork, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob, StoredOutput,
};
use crate::{JobError, JobErrorCode};
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
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
    /// The object's manifest: `resource_args` less the run's own keys.
    args: Value,
    /// `None`: a `batch/v1` Job.
    custom: Option<CustomKind>,
    services: services::Services,
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
    /// The Job or the custom object.
    job: Value,
    /// A custom object's kind, from discovery.
    custom: Option<(CustomKind, ApiResource)>,
    services: Vec<(services::Service, Value)>,
    wait: services::Services,
    secret_env: BTreeMap<String, String>,
    pull: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
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
        let mut object_args = args.clone();
        if let Some(o) = object_args.as_object_mut() {
            for k in services::RUN_KEYS {
                o.remove(*k);
            }
        }
        let custom = CustomKind::of(&object_args);
        let services = services::from_args(args).unwrap_or_else(|message| {
            problems.push(liftoff_core::resource::ConfigProblem { field: "config".into(), message });
            services::Services { list: vec![], wait_for_ready: false, wait_timeout: Duration::ZERO }
        });
        if let Some(k) = &custom {
            // the run's image and command go into its pod templates: there must be one
            if custom::pod_template_paths(&object_args).is_empty() {
                problems.push(liftoff_core::resource::ConfigProblem {
                    field: "config.spec".into(),
                    message: format!(
                        "the {} ({}) holds no pod template (an object whose spec has a containers list) for the run",
                        k.kind, k.api_version
                    ),
                });
            }
        }
        if custom.is_none() {
            // the queue's manifest with what the run adds (a stand-in image): a Job, every field known
            let sample = manifest::job_manifest(&manifest::JobInput {
                args: &object_args,
                name: "lf-check",
                namespace: "default",
                pod: manifest::PodInput {
                    labels: &BTreeMap::new(),
                    annotations: &BTreeMap::new(),
                    image: "check",
                    entrypoint: &[],
                    cmd_args: &[],
                    env: &BTreeMap::new(),
                    env_secret: "lf-check-env",
                    pull_secret: None,
                },
            });
            if let Err(message) = manifest::check_job_fields(&sample) {
                problems.push(liftoff_core::resource::ConfigProblem { field: "config".into(), message });
            }
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
            args: object_args,
            custom,
            services,
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
        let pull_name = pull.as_ref().map(|_| pull_secret.as_str());
        let kind = p.custom.take();
        let pod = manifest::PodInput {
            labels: &p.labels,
            annotations: &p.annotations,
            image: &image,
            entrypoint: &p.cmd.entrypoint,
            cmd_args: &p.cmd.args,
            env: &p.env,
            env_secret: &env_secret,
            pull_secret: pull_name,
        };
        let (job, custom) = match kind {
            None => (
                manifest::job_manifest(&manifest::JobInput {
                    args: &p.args,
                    name: &p.name,
                    namespace: &namespace,
                    pod,
                }),
                None,
            ),
            Some(kind) => {
                // a kind the cluster does not serve fails here, before anything is made
                let ar = custom::discover(&cluster.client, &kind).await?;
                (custom::custom_manifest(&p.args, &p.name, &namespace, &pod), Some((kind, ar)))
            }
        };
        let service_objects: Vec<(services::Service, Value)> = p
            .services
            .list
            .iter()
            .map(|s| (s.clone(), services::service_manifest(s, &namespace, &p.labels, &p.name, pull_name)))
            .collect();
        let secret_env: BTreeMap<String, String> =
            p.env.iter().filter(|(k, _)| manifest::is_secret_env(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let what = custom.as_ref().map_or("Job".to_string(), |(k, _)| format!("{} ({})", k.kind, k.api_version));
        let description = format!("Kubernetes {what} {namespace}/{} from {image}", p.name);
        let start = KubeStart {
            namespace,
            name: p.name,
            job,
            custom,
            services: service_objects,
            wait: p.services.clone(),
            secret_env,
            pull,
            labels: std::mem::take(&mut p.labels),
            annotations: std::mem::take(&mut p.annotations),
        };
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
        // the services are named on the env Secret before any is made, so
        // that whoever removes the run's Secrets (a stop, a cleanup, an
        // agent after a restart) removes them too
        let planned: Vec<services::Made> = s
            .services
            .iter()
            .map(|(svc, _)| services::Made {
                api_version: svc.kind.api_version.clone(),
                kind: svc.kind.kind.clone(),
                name: svc.name.clone(),
            })
            .collect();
        let env_annotations = if planned.is_empty() {
            json!({})
        } else {
            json!({labels::SERVICES: serde_json::to_string(&planned).unwrap_or_default()})
        };
        let mut made =
            vec![(format!("{}-env", s.name), "Opaque", json!({"stringData": s.secret_env}), env_annotations)];
        if let Some(p) = &s.pull {
            made.push((
                format!("{}-pull", s.name),
                "kubernetes.io/dockerconfigjson",
                json!({"stringData": {".dockerconfigjson": p}}),
                json!({}),
            ));
        }
        for (name, kind, data, annotations) in made {
            let mut body = json!({"apiVersion": "v1", "kind": "Secret", "type": kind,
                "metadata": {"name": name, "namespace": s.namespace, "labels": secret_labels, "annotations": annotations}});
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
        let owner = match &s.custom {
            None => OwnerKind::Job,
            Some((_, ar)) => OwnerKind::Custom { ar: ar.clone(), selector: custom::pod_selector(&s.labels) },
        };
        let objects =
            RunObjects { client: client.clone(), namespace: s.namespace.clone(), name: s.name.clone(), owner };
        if let Some((kind, _)) = &s.custom
            && let Err(e) = objects.mark(kind, &secret_labels, &s.annotations).await
        {
            objects.remove(Duration::ZERO).await.ok();
            return Err(fail(e));
        }
        if !s.services.is_empty() {
            // a start dropped while it waits (the item stopped) still removes what it made
            let mut guard = RemoveOnDrop(Some(objects.clone()));
            let made = services::create(&client, &s.namespace, s.services, &s.wait, logs).await;
            guard.0.take();
            if let Err(e) = made {
                objects.remove(Duration::ZERO).await.ok();
                return Err(e);
            }
        }
        let created = match &s.custom {
            None => {
                let jobs: Api<Job> = Api::namespaced(client.clone(), &s.namespace);
                let job: Job =
                    serde_json::from_value(s.job).map_err(|e| spec_err(format!("resource_args: not a Job: {e}")))?;
                jobs.create(&PostParams::default(), &job).await.map(|_| "Job".to_string())
            }
            Some((kind, ar)) => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &s.namespace, ar);
                let obj: DynamicObject = serde_json::from_value(s.job)
                    .map_err(|e| spec_err(format!("resource_args: not a {}: {e}", kind.kind)))?;
                api.create(&PostParams::default(), &obj).await.map(|_| kind.kind.clone())
            }
        };
        let kind = match created {
            Ok(k) => k,
            Err(e) => {
                let what = s.custom.as_ref().map_or("Job", |(k, _)| k.kind.as_str());
                let err = fail(kube_err(&format!("Kubernetes refused {what} {}", s.name), e));
                objects.remove(Duration::ZERO).await.ok();
                return Err(err);
            }
        };
        agent_line(logs, format!("liftoff agent: created Kubernetes {kind} {}/{}", s.namespace, s.name)).await;
        Ok(Box::new(KubeRun::follow(objects, StoredOutput::default(), logs.clone())))
    }

    /// The Jobs in any namespace labelled with this agent key's digest, and
    /// the custom objects their marker ConfigMaps name.
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
                work: Box::new(FoundJob(RunObjects {
                    client: cluster.client.clone(),
                    namespace: ns,
                    name,
                    owner: OwnerKind::Job,
                })),
            });
        }
        // a cluster whose ClusterRole predates custom runs (no configmaps
        // list) still gets its Jobs back
        match adopt_custom(&cluster.client, &selector).await {
            Ok(custom) => found.extend(custom),
            Err(e) => tracing::warn!(error = %e.message, "could not look for custom runs to re-adopt"),
        }
        Ok(found)
    }
}

/// The custom runs of this agent: each marker ConfigMap (in any namespace)
/// names its object; the object's kind is looked up again.
async fn adopt_custom(client: &Client, agent_selector: &str) -> Result<Vec<Adoptable>, JobError> {
    let maps: Api<ConfigMap> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{agent_selector},{}", labels::OWNER_KIND));
    let list = maps.list(&lp).await.map_err(|e| {
        JobError::new(Stage::Agent, JobErrorCode::Engine, kube_err("could not list this agent's custom runs", e))
    })?;
    let mut found = Vec::new();
    for m in list.items {
        let a = m.annotations();
        let data = m.data.clone().unwrap_or_default();
        let (Some(item_id), Some(fence), Some(run_id), Some(ns), Some(api_version), Some(kind), Some(name)) = (
            a.get(labels::ITEM).cloned(),
            a.get(labels::FENCE).and_then(|f| f.parse().ok()),
            a.get(labels::RUN).cloned(),
            m.namespace(),
            data.get("apiVersion").cloned(),
            data.get("kind").cloned(),
            data.get("name").cloned(),
        ) else {
            continue;
        };
        let kind = CustomKind { api_version, kind };
        let ar = match custom::discover(client, &kind).await {
            Ok(ar) => ar,
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e.message, "a custom run's kind is no longer served");
                continue;
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        let obj = api.get_opt(&name).await.map_err(|e| {
            JobError::new(
                Stage::Agent,
                JobErrorCode::Engine,
                kube_err(&format!("could not read {} {name}", ar.kind), e),
            )
        })?;
        let running = obj.as_ref().is_some_and(|o| monitor::Owner::end(o).is_none());
        let item_labels = m.labels().clone();
        found.push(Adoptable {
            item_id,
            fence,
            run_id,
            kind: "Kubernetes custom resource",
            id: format!("{} {ns}/{name}", kind.kind),
            running,
            work: Box::new(FoundJob(RunObjects {
                client: client.clone(),
                namespace: ns,
                name,
                owner: OwnerKind::Custom { ar, selector: custom::pod_selector(&item_labels) },
            })),
        });
    }
    Ok(found)
}

/// Deletes the Secrets labelled with Job (or custom object) `job`'s name,
/// and the additional services the env Secret names ([`labels::SERVICES`]).
pub async fn delete_secrets(client: &Client, ns: &str, job: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{}={job}", labels::JOB));
    if let Ok(list) = secrets.list(&lp).await {
        for s in &list.items {
            if let Some(made) = s.annotations().get(labels::SERVICES) {
                match serde_json::from_str::<Vec<services::Made>>(made) {
                    Ok(made) => services::delete(client, ns, &made).await,
                    Err(e) => tracing::warn!(secret = %s.name_any(), error = %e, "unreadable list of services"),
                }
            }
        }
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

/// What a run is: a Job, or a custom object (its resource from discovery,
/// its pods by [`custom::pod_selector`]).
#[derive(Clone)]
enum OwnerKind {
    Job,
    Custom { ar: ApiResource, selector: String },
}

/// A run's objects in the cluster: the Job or custom object named `name`,
/// its Secrets, a custom run's marker ConfigMap, its additional services.
#[derive(Clone)]
struct RunObjects {
    client: Client,
    namespace: String,
    name: String,
    owner: OwnerKind,
}

impl RunObjects {
    fn what(&self) -> String {
        let kind = match &self.owner {
            OwnerKind::Job => "Job",
            OwnerKind::Custom { ar, .. } => ar.kind.as_str(),
        };
        format!("Kubernetes {kind} {}/{}", self.namespace, self.name)
    }

    /// The marker ConfigMap `<name>-owner` a restarted agent finds a custom run by.
    async fn mark(
        &self,
        kind: &CustomKind,
        run_labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut l = run_labels.clone();
        l.insert(labels::OWNER_KIND.into(), manifest::label_value(&kind.kind));
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{}-owner", self.name), "namespace": self.namespace, "labels": l,
                "annotations": annotations},
            "data": {"apiVersion": kind.api_version, "kind": kind.kind, "name": self.name}});
        let map: ConfigMap = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.create(&PostParams::default(), &map).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(st)) if st.code == 409 => Ok(()),
            Err(e) => Err(kube_err(&format!("could not create ConfigMap {}-owner", self.name), e)),
        }
    }

    /// Deletes the object (foreground, its pods with `grace`), its Secrets
    /// and additional services, a custom run's marker.
    async fn remove(&self, grace: Duration) -> Result<(), String> {
        match &self.owner {
            OwnerKind::Job => delete_job(&self.client, &self.namespace, &self.name, grace).await,
            OwnerKind::Custom { ar, selector } => {
                let deleted =
                    custom::delete_custom(&self.client, ar, &self.namespace, &self.name, selector, grace).await;
                delete_secrets(&self.client, &self.namespace, &self.name).await;
                let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                match maps.delete(&format!("{}-owner", self.name), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => tracing::warn!(run = %self.name, error = %e, "could not delete a run's marker ConfigMap"),
                }
                deleted
            }
        }
    }
}

/// Removes a run's objects when dropped while armed (a start abandoned half way).
struct RemoveOnDrop(Option<RunObjects>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(o) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = o.remove(Duration::ZERO).await;
            });
        }
    }
}

/// A run being watched.
pub struct KubeRun {
    objects: RunObjects,
    end: watch::Receiver<Option<End>>,
    task: Option<JoinHandle<()>>,
    warnings: Option<mpsc::Receiver<String>>,
    stopping: bool,
}

impl KubeRun {
    fn follow(objects: RunObjects, stored: StoredOutput, logs: LogSender) -> Self {
        let (tx, end) = watch::channel(None);
        let (wtx, wrx) = mpsc::channel(16);
        let (client, namespace, name) = (&objects.client, &objects.namespace, objects.name.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let sink = LogSink { logs, stored: Arc::new(Mutex::new(stored)), stream: liftoff_core::api::LogStream::Stdout };
        let task = match &objects.owner {
            OwnerKind::Job => {
                let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
                let selector = format!("job-name={name}");
                tokio::spawn(monitor::monitor(jobs, pods, name, selector, sink, wtx, tx))
            }
            OwnerKind::Custom { ar, selector } => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
                tokio::spawn(monitor::monitor(api, pods, name, selector.clone(), sink, wtx, tx))
            }
        };
        Self { objects, end, task: Some(task), warnings: Some(wrx), stopping: false }
    }

    fn what(&self) -> String {
        self.objects.what()
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
        self.objects.remove(grace).await.map_err(|e| JobError::new(Stage::Run, JobErrorCode::Stop, e))?;
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

    /// The run has ended and its log is read: the object, its Secrets and
    /// additional services go.
    async fn cleanup(mut self: Box<Self>) {
        self.abort();
        if let Err(e) = self.objects.remove(Duration::ZERO).await {
            tracing::warn!(job = %self.objects.name, error = %e, "could not remove an ended run");
        }
    }
}

impl Drop for KubeRun {
    fn drop(&mut self) {
        self.abort();
    }
}

/// A run found after an agent restart.
struct FoundJob(RunObjects);

#[async_trait]
impl AdoptedWork for FoundJob {
    fn resume(self: Box<Self>, stored: StoredOutput, logs: LogSender) -> Box<dyn RunningJob> {
        Box::new(KubeRun::follow(self.0, stored, logs))
    }

    /// Several pods or containers prefix their lines with their name.
    fn output_by_source(&self) -> bool {
        true
    }

    /// Its lease is gone: the object, its Secrets and services go.
    async fn discard(self: Box<Self>) {
        if let Err(e) = self.0.remove(Duration::from_secs(5)).await {
            tracing::warn!(job = %self.0.name, error = %e, "could not remove an orphaned run");
        }
    }
}
