//! The `kaniko` builder: a build is a Kubernetes Job running the kaniko
//! executor. The context goes to `build-context-store` (`<tag>.tgz`, through
//! [`ContextStore`]); the Job (`<build-job-name>-<content tag>`, see
//! `kaniko/manifest.rs`) gets the push's login in a Secret and the cloud
//! credentials of reference §4.3; its pod's log is the run's `build` stream;
//! it is bounded by `activeDeadlineSeconds` and a client-side deadline;
//! and the Job, its Secrets and ConfigMaps and the uploaded context are
//! removed however the build ends: success, failure, or the build dropped
//! midway (a stop, the agent shutting down).

pub mod manifest;

use crate::builder::{BuildError, BuildRequest, Builder};
use crate::registry::{OciRegistry, Registry, SharedRegistry};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use liftoff_cloud::ContextStore;
use liftoff_core::ImageRef;
use liftoff_core::api::LogStream;
use liftoff_core::launch_config::{BuilderConfig, KanikoSecret};
use liftoff_run::LogSender;
use liftoff_run::kubernetes::{Cluster, ClusterSource, End, WatchedJob, delete_job, kube_err, labels};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long past `activeDeadlineSeconds` the agent waits for the Job to end
/// by itself (the API server's controller may be slow to mark it failed).
const DEADLINE_SLACK: Duration = Duration::from_secs(120);

/// The `kaniko` builder's settings (from the `builder` block).
pub struct KanikoSettings {
    pub job_prefix: String,
    pub executor_image: String,
    /// `None`: the cluster connection's namespace.
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub deadline: Duration,
    /// `Some(repo)`: kaniko's layer cache there.
    pub cache_repo: Option<String>,
    pub secret: Option<KanikoSecret>,
    /// `AWS_REGION` for the executor.
    pub aws_region: Option<String>,
    /// A non-AWS S3 endpoint (the aws environment's own): `S3_ENDPOINT`.
    pub s3_endpoint: Option<String>,
    pub ecr: bool,
    pub gar: bool,
    pub acr: bool,
    /// `kaniko-config`: the base Job manifest.
    pub base_job: Option<serde_json::Value>,
}

impl KanikoSettings {
    /// From the `builder` block; `destination` the repository pushed to.
    pub fn from_config(b: &BuilderConfig, destination: &str) -> Self {
        let host = destination.split('/').next().unwrap_or_default();
        Self {
            job_prefix: b.build_job_name.clone(),
            executor_image: b.kaniko_image.clone(),
            namespace: b.namespace.clone(),
            service_account: b.service_account.clone(),
            deadline: Duration::from_secs(u64::from(b.build_deadline)),
            cache_repo: b.cache.then(|| b.cache_repo.clone().unwrap_or_else(|| format!("{destination}/cache"))),
            secret: b.secret.clone(),
            aws_region: None,
            s3_endpoint: None,
            ecr: host.contains(".dkr.ecr."),
            gar: host.ends_with("-docker.pkg.dev"),
            acr: host.ends_with(".azurecr.io"),
            base_job: b.kaniko_config.clone(),
        }
    }
}

pub struct KanikoBuilder {
    settings: KanikoSettings,
    store: ContextStore,
    source: ClusterSource,
    cluster: OnceCell<Cluster>,
    /// Where images go: the pushed manifest is confirmed there.
    registry: SharedRegistry,
    /// Docker client config for base-image digests; `None`: `DOCKER_CONFIG`, else `~/.docker`.
    docker_config: Option<PathBuf>,
}

async fn say(logs: &LogSender, line: impl Into<String>) {
    let mut line = line.into();
    if !line.ends_with('\n') {
        line.push('\n');
    }
    let _ = logs.send((LogStream::Build, line)).await;
}

/// What a build made that must go, whatever happens: removed by
/// [`Leftovers::remove`], or by a task spawned on drop if the build was
/// dropped midway.
struct Leftovers {
    client: Client,
    namespace: String,
    job: String,
    store: ContextStore,
    key: String,
    armed: bool,
}

impl Leftovers {
    async fn remove(mut self) -> Vec<String> {
        self.armed = false;
        remove(&self.client, &self.namespace, &self.job, &self.store, &self.key).await
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, ns, job, store, key) =
            (self.client.clone(), self.namespace.clone(), self.job.clone(), self.store.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for e in remove(&client, &ns, &job, &store, &key).await {
                    tracing::warn!(job = %job, error = %e, "could not clean up after a dropped kaniko build");
                }
            });
        }
    }
}

/// Deletes the Job (foreground, its pods at once), its Secrets and
/// ConfigMaps, and the uploaded context. Returns what could not be deleted.
async fn remove(client: &Client, ns: &str, job: &str, store: &ContextStore, key: &str) -> Vec<String> {
    let mut failed = Vec::new();
    if let Err(e) = delete_job(client, ns, job, Duration::ZERO).await {
        failed.push(e);
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = maps.list(&ListParams::default().labels(&format!("{}={job}", labels::JOB))).await {
        for m in list.items {
            if let Err(e) = maps.delete(&m.name_any(), &DeleteParams::default()).await {
                failed.push(kube_err(&format!("could not delete ConfigMap {}", m.name_any()), e));
            }
        }
    }
    if let Err(e) = store.delete(key).await {
        failed.push(e.to_string());
    }
    failed
}

impl KanikoBuilder {
    /// Connects to the cluster on the first build.
    pub fn new(
        settings: KanikoSettings,
        store: ContextStore,
        source: ClusterSource,
        registry: SharedRegistry,
        docker_config: Option<PathBuf>,
    ) -> Self {
        Self { settings, store, source, cluster: OnceCell::new(), registry, docker_config }
    }

    async fn cluster(&self) -> Result<&Cluster, BuildError> {
        self.cluster
            .get_or_try_init(|| self.source.connect())
            .await
            .map_err(|e| BuildError::Engine(format!("cannot reach the Kubernetes cluster for kaniko builds: {e}")))
    }

    /// The context as a gzipped tar, compressed as it is read.
    fn gzipped(req: &BuildRequest<'_>) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> {
        use flate2::Compression;
        use flate2::write::GzEncoder;
        use std::io::Write;
        let tar = req.context.tar_stream();
        let state = Some((tar, GzEncoder::new(Vec::new(), Compression::fast())));
        Box::pin(futures::stream::unfold(state, |state| async move {
            let (mut tar, mut gz) = state?;
            loop {
                match tar.next().await {
                    Some(Ok(chunk)) => {
                        if let Err(e) = gz.write_all(&chunk) {
                            return Some((Err(e), None));
                        }
                        if gz.get_ref().len() >= 64 * 1024 {
                            let out = Bytes::from(std::mem::take(gz.get_mut()));
                            return Some((Ok(out), Some((tar, gz))));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        return match gz.finish() {
                            Ok(rest) => Some((Ok(Bytes::from(rest)), None)),
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                }
            }
        }))
    }

    /// A Job of this name left by an agent that died mid-build (same
    /// content, same name) is removed, with its Secrets, before this build
    /// makes its own.
    async fn clear_stale(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        logs: &LogSender,
    ) -> Result<(), BuildError> {
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let found = jobs
            .get_opt(name)
            .await
            .map_err(|e| BuildError::Engine(kube_err(&format!("could not look for Job {namespace}/{name}"), e)))?;
        if found.is_none() {
            return Ok(());
        }
        say(logs, format!("liftoff build: removing the build Job {namespace}/{name} left by an earlier try")).await;
        delete_job(client, namespace, name, Duration::ZERO).await.map_err(BuildError::Engine)?;
        let gone = tokio::time::timeout(Duration::from_secs(60), async {
            while jobs.get_opt(name).await.ok().flatten().is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        gone.map_err(|_| {
            BuildError::Engine(format!("the earlier build Job {namespace}/{name} was not gone within 60 s"))
        })
    }

    async fn run_job(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        job: Job,
        image: &str,
        logs: &LogSender,
    ) -> Result<(), BuildError> {
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let failed = |message: String| BuildError::Build { image: image.to_string(), message };
        jobs.create(&PostParams::default(), &job)
            .await
            .map_err(|e| failed(kube_err(&format!("Kubernetes refused the build Job {name}"), e)))?;
        // watched once it exists (a watch that lists no Job takes it as
        // deleted); each container's log is read from its start, so no line is missed
        let mut watched = WatchedJob::start(client, namespace, name, LogStream::Build, logs.clone());
        say(
            logs,
            format!(
                "liftoff build: created kaniko Job {namespace}/{name} ({}); `kubectl logs -n {namespace} job/{name}` while it runs",
                self.settings.executor_image
            ),
        )
        .await;
        let bound = self.settings.deadline + DEADLINE_SLACK;
        let mut warnings = watched.take_warnings();
        let ended = tokio::time::timeout(bound, async {
            loop {
                tokio::select! {
                    Some(w) = async { warnings.as_mut()?.recv().await } => say(logs, format!("liftoff build: {w}")).await,
                    end = watched.ended() => break end,
                }
            }
        })
        .await;
        match ended {
            Ok(Some(End::Finished)) => Ok(()),
            Ok(Some(End::Failed(reason) | End::Preempted(reason))) => Err(failed(format!(
                "the kaniko Job {namespace}/{name} failed: {reason} (its log is in the run's build stream)"
            ))),
            Ok(Some(End::Deleted)) => {
                Err(failed(format!("the kaniko Job {namespace}/{name} was deleted before it ended")))
            }
            Ok(None) => Err(failed(format!("lost track of the kaniko Job {namespace}/{name}"))),
            Err(_) => Err(failed(format!(
                "the kaniko Job {namespace}/{name} did not end within its deadline ({} s, builder.build-deadline)",
                self.settings.deadline.as_secs()
            ))),
        }
    }
}

/// A Job name: `<prefix>-<tag>` (the config keeps it within 63).
pub fn job_name(prefix: &str, tag: &str) -> String {
    let mut n = format!("{prefix}-{}", tag.to_ascii_lowercase().replace(['_', '.'], "-"));
    n.truncate(63);
    n.trim_end_matches('-').to_string()
}

#[async_trait]
impl Builder for KanikoBuilder {
    fn name(&self) -> &'static str {
        "kaniko"
    }

    /// From the base image's registry (kaniko pulls it there too): a
    /// manifest HEAD with the docker config's login.
    async fn base_digest(&self, image: &str, _logs: &LogSender) -> Result<String, BuildError> {
        let base = |message: String| BuildError::Base { image: image.to_string(), message };
        let r = ImageRef::parse(image).map_err(base)?;
        if let Some(d) = &r.digest {
            return Ok(d.clone());
        }
        let host = r.registry().to_string();
        let dir = self.docker_config.clone().or_else(liftoff_run::registry_auth::default_config_dir);
        let registry = OciRegistry::new(&host, &r.repository, dir).map_err(|e| base(e.to_string()))?;
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        match registry.manifest_digest(&tag).await.map_err(|e| base(e.to_string()))? {
            Some(d) => Ok(d),
            None => Err(base(format!("{host} has no {}:{tag}", r.repository))),
        }
    }

    /// Nothing stays in an engine: kaniko pushes.
    async fn local_image(&self, _image: &str) -> Result<Option<String>, BuildError> {
        Ok(None)
    }

    async fn build(&self, req: BuildRequest<'_>, logs: &LogSender) -> Result<(), BuildError> {
        let image = req.image.to_string();
        let parsed = ImageRef::parse(&image).map_err(|m| BuildError::Build { image: image.clone(), message: m })?;
        let tag = parsed.tag.clone().unwrap_or_else(|| "latest".into());
        let Some(push) = req.push.as_ref() else {
            return Err(BuildError::Build {
                image,
                message: "the kaniko builder pushes what it builds: set builder.destination".into(),
            });
        };
        let cluster = self.cluster().await?.clone();
        let namespace = self.settings.namespace.clone().unwrap_or_else(|| cluster.namespace.clone());
        let name = job_name(&self.settings.job_prefix, &tag);
        let key = format!("{tag}.tgz");
        let context_uri = self.store.object_uri(&key).map_err(|e| BuildError::Engine(e.to_string()))?;

        // from here on, whatever happens, what was made goes
        let leftovers = Leftovers {
            client: cluster.client.clone(),
            namespace: namespace.clone(),
            job: name.clone(),
            store: self.store.clone(),
            key: key.clone(),
            armed: true,
        };
        let result = async {
            let started = std::time::Instant::now();
            let bytes = self
                .store
                .put_stream(&key, Self::gzipped(&req))
                .await
                .map_err(|e| BuildError::Engine(format!("cannot upload the build context: {e}")))?;
            say(
                logs,
                format!(
                    "liftoff build: context uploaded to {context_uri} ({} KiB gzipped, {} ms)",
                    bytes / 1024,
                    started.elapsed().as_millis()
                ),
            )
            .await;
            self.clear_stale(&cluster.client, &namespace, &name, logs).await?;
            let mut made_labels = BTreeMap::from([
                (labels::JOB.to_string(), name.clone()),
                (manifest::BUILD_LABEL.to_string(), liftoff_run::kubernetes::label_value(&tag)),
            ]);
            made_labels.insert("app.kubernetes.io/managed-by".into(), "liftoff".into());
            let docker_secret = format!("{name}-docker");
            let has_login = match &push.auth {
                Some(auth) => {
                    let body = manifest::docker_secret(
                        &docker_secret,
                        &namespace,
                        &made_labels,
                        &manifest::docker_config(auth),
                    );
                    let secret: Secret = serde_json::from_value(body).map_err(|e| BuildError::Engine(e.to_string()))?;
                    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &namespace);
                    let create = secrets.create(&PostParams::default(), &secret).await;
                    if let Err(kube::Error::Api(s)) = &create
                        && s.code == 409
                    {
                        let _ = secrets.delete(&docker_secret, &DeleteParams::default()).await;
                        secrets.create(&PostParams::default(), &secret).await
                    } else {
                        create
                    }
                    .map_err(|e| {
                        BuildError::Engine(kube_err(&format!("could not create Secret {docker_secret}"), e))
                    })?;
                    true
                }
                None => false,
            };
            let dest_host = parsed.registry().to_string();
            let insecure: Vec<String> = if is_loopback(&dest_host) { vec![dest_host.clone()] } else { Vec::new() };
            let azure_store =
                matches!(self.store.uri(), liftoff_core::launch_config::BuildContextStore::AzureBlob { .. });
            let s3_store = matches!(self.store.uri(), liftoff_core::launch_config::BuildContextStore::S3 { .. });
            let job = manifest::job_over(
                self.settings.base_job.as_ref(),
                &manifest::KanikoJob {
                    name: &name,
                    namespace: &namespace,
                    executor_image: &self.settings.executor_image,
                    context_uri: &context_uri,
                    store: self.store.uri(),
                    dockerfile: req.context.dockerfile_path(),
                    destination: &image,
                    cache_repo: self.settings.cache_repo.as_deref(),
                    build_args: req.build_args,
                    platform: req.platform,
                    deadline_secs: u32::try_from(self.settings.deadline.as_secs()).unwrap_or(u32::MAX),
                    service_account: self.settings.service_account.as_deref(),
                    secret: self.settings.secret.as_ref(),
                    docker_secret: has_login.then_some(docker_secret.as_str()),
                    aws_region: self.settings.aws_region.as_deref().filter(|_| s3_store || self.settings.ecr),
                    s3_endpoint: self.settings.s3_endpoint.as_deref().filter(|_| s3_store),
                    insecure_registries: &insecure,
                    azure: self.settings.acr || azure_store,
                    ecr: self.settings.ecr,
                    gar: self.settings.gar,
                    labels: &made_labels,
                },
            )
            .map_err(|m| BuildError::Build { image: image.clone(), message: m })?;
            let job: Job = serde_json::from_value(job).map_err(|e| BuildError::Build {
                image: image.clone(),
                message: format!("builder.kaniko-config: not a Job: {e}"),
            })?;
            self.run_job(&cluster.client, &namespace, &name, job, &image, logs).await?;
            // the registry is the truth: the manifest kaniko says it pushed must be there
            match self.registry.manifest_digest(&tag).await? {
                Some(d) => {
                    say(logs, format!("liftoff build: {image} is {d} in {}", push.registry)).await;
                    Ok(())
                }
                None => Err(BuildError::Push {
                    image: image.clone(),
                    registry: push.registry.clone(),
                    source_name: push.source.clone(),
                    message: "the kaniko Job succeeded but the registry has no such manifest".into(),
                }),
            }
        }
        .await;
        let failures = leftovers.remove().await;
        for f in &failures {
            say(logs, format!("liftoff build: cleanup: {f}")).await;
        }
        if failures.is_empty() {
            say(
                logs,
                format!("liftoff build: removed the Job {namespace}/{name}, its Secrets and the uploaded context"),
            )
            .await;
        }
        result
    }
}

fn is_loopback(host: &str) -> bool {
    let bare =
        host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_the_prefix_and_the_tag() {
        let tag = format!("lf-deps-{}", "a".repeat(24));
        let n = job_name(liftoff_core::launch_config::DEFAULT_BUILD_JOB_NAME, &tag);
        assert_eq!(n, format!("wandb-launch-container-build-{tag}"));
        assert!(n.len() <= 63);
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost") && !is_loopback("reg.io:5000"));
    }
}
