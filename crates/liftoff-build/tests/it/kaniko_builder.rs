//! The `kaniko` builder driven directly (no agent): against the
//! Kubernetes API fake, which builds kaniko Jobs on the real test engine
//! from the context in moto and pushes to the real test registry. Here:
//! a Job of the same name left by an agent that died is removed before
//! the build makes its own, and the build then succeeds and leaves nothing;
//! a build past its deadline fails naming it and leaves nothing.

use liftoff_build::builder::{BuildRequest, Builder, Push};
use liftoff_build::context::{BuildContext, ContextRequest};
use liftoff_build::kaniko::{KanikoBuilder, KanikoSettings};
use liftoff_build::registry::{OciRegistry, Registry};
use liftoff_cloud::{AwsEnv, CloudEnv, ContextStore};
use liftoff_core::launch_config::{BuildContextStore, DEFAULT_BUILD_JOB_NAME, KanikoSecret};
use liftoff_run::kubernetes::ClusterSource;
use liftoff_testkit::fakes::kubernetes::{KanikoRig, KubeFake, KubeFakeOptions, Res};
use liftoff_testkit::required_env;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "builds";

struct Rig {
    fake: KubeFake,
    _dir: tempfile::TempDir,
    _src: tempfile::TempDir,
    store: ContextStore,
    repo: Arc<dyn Registry>,
    builder: KanikoBuilder,
    context: Arc<BuildContext>,
    tag: String,
    name: String,
}

/// The fake (kaniko Jobs built, each after a permit of `gate`), a store on
/// moto, a repository on the test registry, a builder with `deadline`, and
/// a one-file context; `None` without the components.
async fn rig(gate: Arc<tokio::sync::Semaphore>, deadline: Duration) -> Option<Rig> {
    let docker_host = required_env("LIFTOFF_TEST_DOCKER_HOST")?;
    let registry = required_env("LIFTOFF_TEST_REGISTRY")?;
    let user = required_env("LIFTOFF_TEST_REGISTRY_USER")?;
    let password = required_env("LIFTOFF_TEST_REGISTRY_PASSWORD")?;
    let s3 = required_env("LIFTOFF_TEST_S3_ENDPOINT")?;
    let fake = KubeFake::start(KubeFakeOptions {
        kaniko: Some(KanikoRig {
            docker_host,
            s3_endpoint: None,
            azurite: false,
            gcs_endpoint: None,
            gate: Some(gate),
        }),
        ..KubeFakeOptions::default()
    })
    .await
    .unwrap();
    fake.add_namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let docker_config = dir.path().join("docker");
    liftoff_testkit::write_docker_config(&docker_config, &registry, Some((&user, &password)));
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let tag = format!("lf-{}", &marker[..24]);
    let name = format!("{DEFAULT_BUILD_JOB_NAME}-{tag}");

    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("Dockerfile"),
        format!("FROM {registry}/liftoff-test/busybox:1\nCOPY m.txt /m.txt\n"),
    )
    .unwrap();
    std::fs::write(src.path().join("m.txt"), &marker).unwrap();
    let entrypoint = vec!["sh".to_string()];
    let context = BuildContext::prepare(&ContextRequest {
        source_dir: src.path(),
        build_context: None,
        job_dockerfile: Some("Dockerfile"),
        dockerfile_override: None,
        entrypoint: &entrypoint,
        python_version: None,
        accelerator_base_image: None,
        python_base_image: "python:{version}",
    })
    .unwrap();

    let env =
        CloudEnv::Aws(AwsEnv::builder("us-east-1").endpoint(&s3).static_credentials("testing", "testing").load().await);
    let uri = BuildContextStore::parse(&format!("s3://liftoff-test/kaniko-builder-{}", &marker[..8])).unwrap();
    let store = ContextStore::open(&uri, &env).await.unwrap();
    let path = format!("liftoff-test/kaniko-builder-{}", &marker[..8]);
    let repo: Arc<dyn Registry> = Arc::new(OciRegistry::new(&registry, &path, Some(docker_config.clone())).unwrap());
    let b = liftoff_core::launch_config::BuilderConfig {
        namespace: Some(NS.into()),
        ..liftoff_core::launch_config::resolve(
            Some("queues: [q]\nbuilder: {type: kaniko, destination: reg.example/x, build-context-store: 's3://bucket/x'}\nenvironment: {type: aws, region: us-east-1}\n"),
            &Default::default(),
            &Default::default(),
        )
        .unwrap()
        .config
        .builder
        .unwrap()
    };
    let mut settings = KanikoSettings::from_config(&b, repo.repository());
    settings.s3_endpoint = Some(s3.clone());
    settings.secret = None::<KanikoSecret>;
    settings.deadline = deadline;
    let builder = KanikoBuilder::new(
        settings,
        store.clone(),
        ClusterSource::Kubeconfig(kubeconfig),
        repo.clone(),
        Some(docker_config),
    );
    Some(Rig { fake, _dir: dir, _src: src, store, repo, builder, context: Arc::new(context), tag, name })
}

impl Rig {
    /// Builds `repo:tag`; the result and the build's log.
    async fn build(&self) -> (Result<(), liftoff_build::BuildError>, String) {
        let login = self.repo.login().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let image = format!("{}:{}", self.repo.repository(), self.tag);
        let args = BTreeMap::new();
        let req = BuildRequest {
            context: self.context.clone(),
            image: &image,
            platform: None,
            build_args: &args,
            push: Some(Push { registry: self.repo.describe(), auth: login.auth, source: login.source }),
        };
        let result =
            tokio::time::timeout(Duration::from_secs(120), self.builder.build(req, &tx)).await.expect("the build ends");
        drop(tx);
        let mut log = String::new();
        while let Some((_, line)) = rx.recv().await {
            log.push_str(&line);
        }
        (result, log)
    }

    async fn nothing_left(&self, log: &str) {
        assert!(self.fake.objects(&Res::jobs(), NS).is_empty() && self.fake.pods(NS).is_empty(), "{log}");
        assert!(self.fake.objects(&Res::secrets(), NS).is_empty(), "{:?}", self.fake.objects(&Res::secrets(), NS));
        assert!(!self.store.exists(&format!("{}.tgz", self.tag)).await.unwrap(), "the context object is deleted");
    }

    fn job_creates(&self) -> usize {
        let path = format!("POST /apis/batch/v1/namespaces/{NS}/jobs");
        self.fake.requests().iter().filter(|r| r.starts_with(&path)).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_by_a_dead_agent_is_replaced_and_the_build_leaves_nothing() {
    let Some(r) = rig(Arc::new(tokio::sync::Semaphore::new(1000)), Duration::from_secs(600)).await else { return };
    // what a dead agent left: a Job that never runs (not a kaniko one) and its Secret
    let http = reqwest::Client::new();
    let name = &r.name;
    for (path, body) in [
        (
            format!("apis/batch/v1/namespaces/{NS}/jobs"),
            json!({"metadata": {"name": name}, "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "x", "image": "busybox"}]}}}}),
        ),
        (
            format!("api/v1/namespaces/{NS}/secrets"),
            json!({"metadata": {"name": format!("{name}-docker"), "labels": {"liftoff.dev/job": name}},
                "stringData": {"config.json": "{}"}}),
        ),
    ] {
        let resp = http.post(format!("{}/{path}", r.fake.url)).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    let (result, log) = r.build().await;
    result.unwrap();
    assert!(log.contains(&format!("removing the build Job {NS}/{name} left by an earlier try")), "{log}");
    assert!(log.contains("INFO Pushed"), "{log}");
    assert!(r.repo.manifest_digest(&r.tag).await.unwrap().is_some(), "pushed");
    r.nothing_left(&log).await;
    assert_eq!(r.job_creates(), 2, "the stale Job and this build's");
}

/// A build Job past its `activeDeadlineSeconds` (the fake's Job controller
/// fails it, as Kubernetes does) fails the build naming the deadline, and
/// nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_past_its_deadline_fails_and_leaves_nothing() {
    // never released: the build would wait for ever
    let Some(r) = rig(Arc::new(tokio::sync::Semaphore::new(0)), Duration::from_secs(1)).await else { return };
    let (result, log) = r.build().await;
    let e = result.unwrap_err().to_string();
    assert!(e.contains(&format!("the kaniko Job {NS}/{}", r.name)) && e.contains("DeadlineExceeded"), "{e}\n{log}");
    assert!(r.repo.manifest_digest(&r.tag).await.unwrap().is_none(), "nothing was pushed");
    r.nothing_left(&log).await;
}
