//! The `kaniko` builder driven directly (no agent): against the
//! Kubernetes API fake, which builds kaniko Jobs on the real test engine
//! from the context in moto and pushes to the real test registry. Here:
//! a Job of the same name left by an agent that died is removed before
//! the build makes its own, and the build then succeeds and leaves nothing.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_by_a_dead_agent_is_replaced_and_the_build_leaves_nothing() {
    let (Some(docker_host), Some(registry), Some(user), Some(password), Some(s3)) = (
        required_env("LIFTOFF_TEST_DOCKER_HOST"),
        required_env("LIFTOFF_TEST_REGISTRY"),
        required_env("LIFTOFF_TEST_REGISTRY_USER"),
        required_env("LIFTOFF_TEST_REGISTRY_PASSWORD"),
        required_env("LIFTOFF_TEST_S3_ENDPOINT"),
    ) else {
        return;
    };
    let fake = KubeFake::start(KubeFakeOptions {
        kaniko: Some(KanikoRig { docker_host: docker_host.clone(), s3_endpoint: None, azurite: false, gate: None }),
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
    // what a dead agent left: a Job that never runs (not a kaniko one) and its Secret
    let http = reqwest::Client::new();
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
        let r = http.post(format!("{}/{path}", fake.url)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

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
    let uri = BuildContextStore::parse(&format!("s3://liftoff-test/kaniko-stale-{}", &marker[..8])).unwrap();
    let store = ContextStore::open(&uri, &env).await.unwrap();
    let path = format!("liftoff-test/kaniko-stale-{}", &marker[..8]);
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
    let builder = KanikoBuilder::new(
        settings,
        store.clone(),
        ClusterSource::Kubeconfig(kubeconfig),
        repo.clone(),
        Some(docker_config),
    );
    let login = repo.login().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let image = format!("{}:{tag}", repo.repository());
    let args = BTreeMap::new();
    let req = BuildRequest {
        context: Arc::new(context),
        image: &image,
        platform: None,
        build_args: &args,
        push: Some(Push { registry: repo.describe(), auth: login.auth, source: login.source }),
    };
    tokio::time::timeout(Duration::from_secs(120), builder.build(req, &tx)).await.expect("the build ends").unwrap();
    drop(tx);
    let mut log = String::new();
    while let Some((_, line)) = rx.recv().await {
        log.push_str(&line);
    }
    assert!(log.contains(&format!("removing the build Job {NS}/{name} left by an earlier try")), "{log}");
    assert!(log.contains("INFO Pushed"), "{log}");
    assert!(repo.manifest_digest(&tag).await.unwrap().is_some(), "pushed");
    assert!(fake.objects(&Res::jobs(), NS).is_empty() && fake.pods(NS).is_empty(), "{log}");
    assert!(fake.objects(&Res::secrets(), NS).is_empty(), "{:?}", fake.objects(&Res::secrets(), NS));
    assert!(!store.exists(&format!("{tag}.tgz")).await.unwrap(), "the context object is deleted");
    let creates =
        fake.requests().iter().filter(|r| r.starts_with(&format!("POST /apis/batch/v1/namespaces/{NS}/jobs"))).count();
    assert_eq!(creates, 2, "the stale Job and this build's");
}
