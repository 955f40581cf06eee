//! The `kaniko` builder through a real agent and server: the build context
//! goes to S3 (moto), the build Job to the Kubernetes API fake, which checks
//! its shape, reads the context back from moto with the credentials the Job
//! mounts, builds it on the real test engine and pushes it to the real test
//! registry with the login the Job mounts; the run then pulls and runs that
//! image on the engine (`local-container`). Checked: the run's output, the
//! build log, the Job's shape, an unchanged launch found by its content tag
//! with no Job, two agents making one Job, a failing Dockerfile, that the
//! Job, its Secrets and the context are gone after each build, and kubectl
//! on a build Job while it exists.

use crate::support;

use liftoff_agent::AgentOptions;
use liftoff_build::BuildSetup;
use liftoff_cloud::{AwsEnv, CloudEnv, ContextStore};
use liftoff_core::api::{BuildHow, CreateJob, LogStream};
use liftoff_core::job::{CodeSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_run::kubernetes::ClusterSource;
use liftoff_testkit::fakes::kubernetes::{KanikoRig, KubeFake, KubeFakeOptions, Res};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Rig, required_env, rig};

const NS: &str = "builds";
/// The Dockerfile's body after `FROM`: the job's files, run as `sh run.sh`.
const COPY_AND_RUN: &str = "COPY . /app\nWORKDIR /app\nENTRYPOINT [\"sh\", \"run.sh\"]\n";
const BOUND: Duration = Duration::from_secs(120);
/// Azurite's well-known development account key (public, in Microsoft's docs).
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AWS_CREDENTIALS: &str = "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n";

struct Components {
    docker_host: String,
    registry: String,
    user: String,
    password: String,
    s3: String,
}

fn components() -> Option<Components> {
    Some(Components {
        docker_host: required_env("LIFTOFF_TEST_DOCKER_HOST")?,
        registry: required_env("LIFTOFF_TEST_REGISTRY")?,
        user: required_env("LIFTOFF_TEST_REGISTRY_USER")?,
        password: required_env("LIFTOFF_TEST_REGISTRY_PASSWORD")?,
        s3: required_env("LIFTOFF_TEST_S3_ENDPOINT")?,
    })
}

struct Kaniko {
    c: Components,
    r: Rig,
    fake: KubeFake,
    kubeconfig: std::path::PathBuf,
    gate: Arc<tokio::sync::Semaphore>,
    marker: String,
    repo: String,
    /// `s3://liftoff-test/<prefix>`
    prefix: String,
    docker_config: std::path::PathBuf,
    store: Store,
}

/// Where the build context goes.
enum Store {
    /// moto's S3, read by the Job with the `aws-creds` Secret.
    S3,
    /// azurite's Azure Blob, with the storage-key Secret.
    Azure,
    /// The GCP fake's GCS, read by the Job with the service-account key in
    /// the `gcp-creds` Secret (its token from the fake's token endpoint).
    Gcs(liftoff_testkit::fakes::gcp::GcpFake),
}

/// The fake (kaniko Jobs build, each waiting for a permit of `gate` when
/// `held`), its namespace and the AWS credentials Secret; a server with a
/// `local-container` queue; the registry's login in a docker config.
async fn setup(held: bool) -> Option<Kaniko> {
    setup_on(held, Store::S3).await
}

/// [`setup`] on `store`: for azurite, with the reference's storage-key
/// Secret (`azure-storage-access-key`, holding azurite's well-known key);
/// for GCS, with the service-account key in Secret `gcp-creds`.
async fn setup_on(held: bool, store: Store) -> Option<Kaniko> {
    let c = components()?;
    let azure = matches!(store, Store::Azure);
    if azure {
        required_env("LIFTOFF_TEST_AZURITE")?;
    }
    let gcs_endpoint = match &store {
        Store::Gcs(g) => Some(g.base_url.clone()),
        _ => None,
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(if held { 0 } else { 1000 }));
    let fake = KubeFake::start(KubeFakeOptions {
        kaniko: Some(KanikoRig {
            docker_host: c.docker_host.clone(),
            s3_endpoint: None,
            azurite: azure,
            gcs_endpoint,
            gate: Some(gate.clone()),
        }),
        ..KubeFakeOptions::default()
    })
    .await
    .unwrap();
    fake.add_namespace(NS);
    let created = reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/{NS}/secrets", fake.url))
        .json(&json!({"metadata": {"name": "aws-creds"}, "stringData": {"credentials": AWS_CREDENTIALS}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    if azure {
        let created = reqwest::Client::new()
            .post(format!("{}/api/v1/namespaces/{NS}/secrets", fake.url))
            .json(&json!({"metadata": {"name": "azure-storage-access-key"}, "stringData": {"password": AZURITE_KEY}}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
    }
    if let Store::Gcs(g) = &store {
        let key = std::fs::read_to_string(&g.key_file).unwrap();
        let created = reqwest::Client::new()
            .post(format!("{}/api/v1/namespaces/{NS}/secrets", fake.url))
            .json(&json!({"metadata": {"name": "gcp-creds"}, "stringData": {"key.json": key}}))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
    }
    let r = rig().await;
    r.queue("boxes", ResourceType::LocalContainer, json!({})).await;
    let kubeconfig = r.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let marker = uuid::Uuid::new_v4().to_string();
    let repo = format!("{}/liftoff-test/kaniko-{}", c.registry, &marker[..8]);
    let prefix = match store {
        Store::Azure => format!("https://devstoreaccount1.blob.core.windows.net/liftoff-test/kaniko-{}", &marker[..8]),
        Store::Gcs(_) => format!("gs://liftoff-test/kaniko-{}", &marker[..8]),
        Store::S3 => format!("s3://liftoff-test/kaniko-{}", &marker[..8]),
    };
    let docker_config = r.dir.path().join("docker-config");
    liftoff_testkit::write_docker_config(&docker_config, &c.registry, Some((&c.user, &c.password)));
    Some(Kaniko { c, r, fake, kubeconfig, gate, marker, repo, prefix, docker_config, store })
}

async fn aws(c: &Components) -> CloudEnv {
    CloudEnv::Aws(AwsEnv::builder("us-east-1").endpoint(&c.s3).static_credentials("testing", "testing").load().await)
}

impl Kaniko {
    async fn env(&self) -> CloudEnv {
        match &self.store {
            Store::Azure => CloudEnv::Azure(liftoff_cloud::AzureEnv::builder().azurite().build().unwrap()),
            Store::Gcs(g) => CloudEnv::Gcp(
                liftoff_cloud::GcpEnv::builder()
                    .key_file(&g.key_file)
                    .region(Some("us-central1"))
                    .storage_endpoint(&g.base_url)
                    .load()
                    .await
                    .unwrap(),
            ),
            Store::S3 => aws(&self.c).await,
        }
    }

    fn yaml(&self) -> String {
        let (env, secret) = match self.store {
            Store::Azure => ("{type: azure}", ""),
            Store::Gcs(_) => (
                "{type: gcp, project: my-project, region: us-central1}",
                "  secret-name: gcp-creds\n  secret-key: key.json\n",
            ),
            Store::S3 => ("{type: aws, region: us-east-1}", "  secret-name: aws-creds\n  secret-key: credentials\n"),
        };
        format!(
            "queues: [boxes]\nenvironment: {env}\nbuilder:\n  type: kaniko\n  destination: {}\n  build-context-store: {}\n  namespace: {NS}\n  service-account: image-builder\n{secret}  build-deadline: 600\n  kaniko-config: {{metadata: {{labels: {{team: ml}}}}, spec: {{template: {{spec: {{nodeSelector: {{pool: builds}}}}}}}}}}\n",
            self.repo, self.prefix
        )
    }

    async fn build_setup(&self) -> BuildSetup {
        let resolved = liftoff_core::launch_config::resolve(
            Some(&self.yaml()),
            &Default::default(),
            &liftoff_core::launch_config::Overrides::default(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let engine = liftoff_run::SharedEngine::new(Some(self.c.docker_host.clone()));
        BuildSetup::from_config_in(
            &resolved.config,
            &self.env().await,
            engine,
            Some(self.docker_config.clone()),
            Some(ClusterSource::Kubeconfig(self.kubeconfig.clone())),
        )
        .await
        .unwrap()
        .expect("a kaniko builder")
        .0
    }

    async fn agent(
        &self,
        n: usize,
    ) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), liftoff_agent::AgentError>>) {
        let opts = AgentOptions {
            queues: vec!["boxes".into()],
            max_jobs: 1,
            docker_host: Some(self.c.docker_host.clone()),
            agent_key: format!("kaniko-{}-{n}", self.marker),
            work_dir: self.r.work.join(format!("agent-{n}")),
            build: Some(Arc::new(self.build_setup().await)),
            start_timeout: BOUND * 2,
            ..self.r.options(1, Duration::from_secs(5))
        };
        self.r.agent_with(opts)
    }

    /// A code job from its own Dockerfile on the registry's busybox.
    async fn job(&self, name: &str, dockerfile_body: &str) {
        let src = tempfile::tempdir().unwrap();
        let base = format!("{}/liftoff-test/busybox:1", self.c.registry);
        let files = [
            ("Dockerfile", format!("FROM {base}\n{dockerfile_body}")),
            ("run.sh", "echo \"hello from kaniko: $(cat data.txt)\"\n".to_string()),
            ("data.txt", self.marker.clone()),
        ];
        for (path, text) in &files {
            std::fs::write(src.path().join(path), text).unwrap();
        }
        let gz = liftoff_archive::pack_dir(src.path()).unwrap();
        let digest = liftoff_archive::sha256_digest(&gz);
        self.r.client.upload_blob(&digest, gz).await.unwrap();
        let code = CodeSource {
            digest,
            entrypoint: vec!["sh".into(), "run.sh".into()],
            build_context: None,
            dockerfile: Some("Dockerfile".into()),
            base_image: None,
        };
        let source = JobSourceSpec { code: Some(code), ..Default::default() };
        let req = CreateJob { project: "default".into(), name: name.into(), source, aliases: vec![], runtime: None };
        self.r.client.create_job(&req).await.unwrap();
    }

    /// The item once it has ended; on a timeout, the panic shows its build
    /// log and what the fake was asked.
    async fn ended(&self, id: &str) -> liftoff_core::api::ItemView {
        let until = Instant::now() + BOUND;
        loop {
            let item = self.r.client.get_item(id).await.unwrap();
            if item.state.is_terminal() {
                return item;
            }
            if Instant::now() > until {
                panic!(
                    "{id} is still {:?}; build log:\n{}\nrequests: {:#?}",
                    item.state,
                    self.r.logs(id, LogStream::Build).await,
                    self.fake.requests()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn build_jobs(&self) -> Vec<Value> {
        self.fake.objects(&Res::jobs(), NS)
    }

    /// How many build Jobs were ever created.
    fn jobs_created(&self) -> usize {
        let path = format!("POST /apis/batch/v1/namespaces/{NS}/jobs");
        self.fake.requests().iter().filter(|r| r.starts_with(&path)).count()
    }

    /// The one build Job, once it exists and its pod runs (held at the gate).
    async fn running_build_job(&self) -> (Value, String) {
        let found = self
            .fake
            .wait_until(BOUND, |f| {
                let job = f.objects(&Res::jobs(), NS).into_iter().next()?;
                let name = job["metadata"]["name"].as_str()?.to_string();
                let pod = f.pods(NS).into_iter().find(|p| {
                    p["metadata"]["labels"]["job-name"] == name.as_str() && p["status"]["phase"] == "Running"
                })?;
                Some((job, pod["metadata"]["name"].as_str()?.to_string()))
            })
            .await;
        found.unwrap_or_else(|| {
            panic!(
                "no running build Job; jobs {:#?}; pods {:#?}; requests: {:#?}",
                self.build_jobs(),
                self.fake.pods(NS),
                self.fake.requests()
            )
        })
    }

    /// Nothing of the build of `tag` is left: Jobs, pods, Secrets and
    /// ConfigMaps it made, its context object; and the engine drops the
    /// images the runs pulled.
    async fn nothing_left(&self, tag: &str) {
        let left = self
            .fake
            .wait_until(Duration::from_secs(30), |f| {
                let made = |v: &Value| v["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "liftoff";
                let left = !f.objects(&Res::jobs(), NS).is_empty()
                    || !f.pods(NS).is_empty()
                    || f.objects(&Res::secrets(), NS).iter().any(made)
                    || f.objects(&Res::new("", "v1", "configmaps"), NS).iter().any(made);
                (!left).then_some(())
            })
            .await;
        assert!(left.is_some(), "a build left objects in the cluster: {:?}", self.build_jobs());
        assert!(
            self.fake.objects(&Res::secrets(), NS).iter().any(|s| s["metadata"]["name"] == "aws-creds"),
            "the user's Secret is not touched"
        );
        let uri = liftoff_core::launch_config::BuildContextStore::parse(&self.prefix).unwrap();
        let store = ContextStore::open(&uri, &self.env().await).await.unwrap();
        assert!(!store.exists(&format!("{tag}.tgz")).await.unwrap(), "the context object {tag}.tgz was left behind");
        self.remove_images().await;
    }

    /// The images the runs pulled into the shared test engine go.
    async fn remove_images(&self) {
        let docker = bollard::Docker::connect_with_unix(
            self.c.docker_host.trim_start_matches("unix://"),
            60,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        for image in docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.unwrap() {
            let ours = image.repo_tags.iter().chain(&image.repo_digests).any(|t| t.starts_with(&self.repo));
            if ours {
                let force = bollard::query_parameters::RemoveImageOptions { force: true, ..Default::default() };
                let _ = docker.remove_image(&image.id, Some(force), None).await;
            }
        }
    }
}

/// The content tag of the build a run's build log names.
fn tag_in(log: &str) -> String {
    let at = log.find("wandb-launch-container-build-lf-").expect("the log names the build Job");
    let rest = &log[at + "wandb-launch-container-build-".len()..];
    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).next().unwrap().to_string()
}

async fn stop(
    agent: (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), liftoff_agent::AgentError>>),
) {
    agent.0.send(()).unwrap();
    agent.1.await.unwrap().unwrap();
}

/// Built by a kaniko Job of the expected shape, the run uses the image the
/// fake built from the uploaded context; everything the build made is gone
/// after it; an unchanged launch finds the image by its content tag and
/// makes no Job. The agent holds exactly the shipped Role (the fake's RBAC
/// authorizer on): no call of the builder is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_job_built_by_kaniko_runs_and_an_unchanged_one_is_found_without_a_job() {
    use liftoff_cloud::kube_rbac::{agent_cluster_role, agent_role};
    let Some(k) = setup(true).await else { return };
    let user = format!("system:serviceaccount:{NS}:liftoff-agent");
    let rbac = liftoff_testkit::fakes::kubernetes::Rbac::new(&user, NS, &agent_role(), &agent_cluster_role());
    k.fake.set_rbac(Some(rbac.unwrap()));
    k.job("kaniko-built", COPY_AND_RUN).await;
    let agent = k.agent(0).await;
    let first = k.r.launch_on("boxes", "kaniko-built").await;

    let (job, _pod) = k.running_build_job().await;
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("wandb-launch-container-build-lf-"), "{name}");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "image-builder");
    assert_eq!(
        (&job["metadata"]["labels"]["team"], &pod["nodeSelector"]["pool"]),
        (&json!("ml"), &json!("builds")),
        "kaniko-config is the base"
    );
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], liftoff_core::launch_config::DEFAULT_KANIKO_IMAGE);
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let tag = &name["wandb-launch-container-build-".len()..];
    assert!(args.contains(&format!("--destination={}:{tag}", k.repo).as_str()), "{args:?}");
    assert!(args.contains(&format!("--context={}/{tag}.tgz", k.prefix).as_str()), "{args:?}");
    assert!(args.contains(&format!("--cache-repo={}/cache", k.repo).as_str()), "{args:?}");
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "S3_ENDPOINT" && e["value"] == k.c.s3.as_str()), "{env:?}");
    let vols = pod["volumes"].as_array().unwrap();
    assert!(vols.iter().any(|v| v["secret"]["secretName"] == "aws-creds"), "{vols:?}");
    let docker = vols.iter().find(|v| v["name"] == "docker-config").unwrap()["secret"]["secretName"].as_str().unwrap();
    let secret = k.fake.objects(&Res::secrets(), NS).into_iter().find(|s| s["metadata"]["name"] == docker).unwrap();
    assert!(secret["data"]["config.json"].is_string(), "the push login is in a Secret, not the Job");
    assert!(!serde_json::to_string(&job).unwrap().contains(&k.c.password), "no credential in the Job");
    k.gate.add_permits(1);

    let item = k.ended(&first).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(k.r.logs(&first, LogStream::Stdout).await, format!("hello from kaniko: {}\n", k.marker));
    let built = item.build.expect("the run records its image");
    assert_eq!((built.how, built.builder.as_str()), (BuildHow::Built, "kaniko"));
    assert!(built.image.starts_with(&format!("{}:{tag}@sha256:", k.repo)), "{}", built.image);
    let log = k.r.logs(&first, LogStream::Build).await;
    for line in
        ["context uploaded to s3://", "created kaniko Job builds/", "Step 1/4 : FROM", "INFO Pushed", "removed the Job"]
    {
        assert!(log.contains(line), "'{line}' not in the build log:\n{log}");
    }
    assert_eq!(tag_in(&log), tag);
    k.nothing_left(tag).await;

    let second = k.r.launch_on("boxes", "kaniko-built").await;
    let item = k.ended(&second).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(item.build.expect("recorded").how, BuildHow::Found);
    assert!(k.r.logs(&second, LogStream::Build).await.contains("no build"));
    assert_eq!(k.jobs_created(), 1, "the unchanged launch made no Job");
    assert_eq!(k.fake.refused(), Vec::<String>::new(), "the shipped Role grants every call of a build");
    stop(agent).await;
    k.remove_images().await;
}

/// A failing Dockerfile step fails the run at `build`, the executor's output
/// in the run's build stream, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dockerfile_fails_the_run_at_build_with_its_log_and_leaves_nothing() {
    let Some(k) = setup(false).await else { return };
    k.job("kaniko-broken", &format!("RUN echo broken-{} && exit 3\n", k.marker)).await;
    let agent = k.agent(0).await;
    let id = k.r.launch_on("boxes", "kaniko-broken").await;
    let item = k.ended(&id).await;
    let log = k.r.logs(&id, LogStream::Build).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Build)), "{:?}\n{log}", item.reason);
    let reason = item.reason.unwrap();
    assert!(
        reason.contains("the kaniko Job builds/wandb-launch-container-build-lf-") && reason.contains("failed"),
        "{reason}"
    );
    let log = k.r.logs(&id, LogStream::Build).await;
    assert!(log.contains(&format!("broken-{}", k.marker)), "the step's output is in the build stream:\n{log}");
    assert!(log.contains("non-zero code: 3"), "{log}");
    assert!(item.build.is_none());
    k.nothing_left(&tag_in(&log)).await;
    assert_eq!(k.jobs_created(), 1);
    stop(agent).await;
}

/// Two agents launch the same new content: one kaniko Job is made, the
/// other run waits for it and uses its image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_make_one_kaniko_job_for_the_same_content() {
    let Some(k) = setup(true).await else { return };
    k.job("kaniko-shared", COPY_AND_RUN).await;
    let (a, b) = (k.r.launch_on("boxes", "kaniko-shared").await, k.r.launch_on("boxes", "kaniko-shared").await);
    let agents = [k.agent(0).await, k.agent(1).await];
    k.running_build_job().await;
    let until = Instant::now() + BOUND;
    while !(k.r.logs(&a, LogStream::Build).await + &k.r.logs(&b, LogStream::Build).await).contains("; waiting for it") {
        assert!(Instant::now() < until, "no agent waited for the other's build");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    k.gate.add_permits(1);
    let mut hows = Vec::new();
    for id in [&a, &b] {
        let item = k.ended(id).await;
        assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
        hows.push(item.build.unwrap().how);
        assert_eq!(k.r.logs(id, LogStream::Stdout).await, format!("hello from kaniko: {}\n", k.marker));
    }
    hows.sort_by_key(|h| format!("{h:?}"));
    assert_eq!(hows, [BuildHow::Built, BuildHow::Waited]);
    assert_eq!(k.jobs_created(), 1, "one Job for one content");
    let logs = k.r.logs(&a, LogStream::Build).await + &k.r.logs(&b, LogStream::Build).await;
    k.nothing_left(&tag_in(&logs)).await;
    for agent in agents {
        stop(agent).await;
    }
}

/// kubectl reads a build Job while it exists: `get`, `describe`, `logs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_describes_and_reads_the_log_of_a_build_job() {
    let Some(kubectl) = required_env("LIFTOFF_TEST_KUBECTL") else { return };
    let Some(k) = setup(true).await else { return };
    k.job("kaniko-kubectl", COPY_AND_RUN).await;
    let agent = k.agent(0).await;
    let id = k.r.launch_on("boxes", "kaniko-kubectl").await;
    let (job, pod) = k.running_build_job().await;
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    let kubectl_out = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .env("KUBECONFIG", &k.kubeconfig)
            .env("HOME", k.r.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let got: Value = serde_json::from_str(&kubectl_out(&["get", "job", "-n", NS, &name, "-o", "json"])).unwrap();
    assert_eq!(got["metadata"]["name"], name.as_str());
    assert_eq!(got["status"]["active"], 1);
    let described = kubectl_out(&["describe", "job", "-n", NS, &name]);
    assert!(described.contains("wandb-container-build") && described.contains("--destination="), "{described}");
    let logs = kubectl_out(&["logs", "-n", NS, &pod]);
    assert!(logs.contains("INFO Retrieving image manifest"), "{logs}");
    let pods = kubectl_out(&["get", "pods", "-n", NS, "-l", &format!("job-name={name}"), "-o", "name"]);
    assert_eq!(pods.trim(), format!("pod/{pod}"));
    k.gate.add_permits(1);
    let item = k.ended(&id).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    k.nothing_left(&name["wandb-launch-container-build-".len()..]).await;
    let gone = std::process::Command::new(&kubectl)
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", k.r.dir.path())
        .args(["get", "job", "-n", NS, &name])
        .output()
        .unwrap();
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "the Job is gone");
    stop(agent).await;
}

/// The context in Azure Blob (azurite): the Job reads it with the storage
/// key from the reference's Secret, and the build runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_in_azure_blob_is_built_with_the_storage_key_secret() {
    let Some(k) = setup_on(false, Store::Azure).await else { return };
    k.job("kaniko-azure", COPY_AND_RUN).await;
    let agent = k.agent(0).await;
    let id = k.r.launch_on("boxes", "kaniko-azure").await;
    let item = k.ended(&id).await;
    let log = k.r.logs(&id, LogStream::Build).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{log}", item.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, format!("hello from kaniko: {}\n", k.marker));
    assert!(
        log.contains("context uploaded to https://devstoreaccount1.blob.core.windows.net/liftoff-test/kaniko-"),
        "{log}"
    );
    k.nothing_left(&tag_in(&log)).await;
    stop(agent).await;
}

/// A run stopped while its kaniko Job builds: the Job, its Secret and the
/// context object go all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_stopped_midway_leaves_nothing_behind() {
    let Some(k) = setup(true).await else { return };
    k.job("kaniko-stopped", COPY_AND_RUN).await;
    let agent = k.agent(0).await;
    let id = k.r.launch_on("boxes", "kaniko-stopped").await;
    let (job, _) = k.running_build_job().await;
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    k.r.client.stop_item(&id).await.unwrap();
    let item = k.ended(&id).await;
    assert_eq!(item.state, ItemState::Stopped, "{:?}", item.reason);
    k.nothing_left(&name["wandb-launch-container-build-".len()..]).await;
    assert!(
        k.fake.deletions().iter().any(|d| d.contains(&name) && d.contains("propagationPolicy=Foreground")),
        "{:?}",
        k.fake.deletions()
    );
    stop(agent).await;
}

/// The context in GCS (the GCP fake): uploaded with the agent's gcp
/// environment, read by the Job with the service-account key from the
/// `secret-name`/`secret-key` Secret (mounted for
/// `GOOGLE_APPLICATION_CREDENTIALS`, its token granted by the key's
/// `token_uri`), built and run; the object is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_in_gcs_is_built_with_the_service_account_key_secret() {
    let gcs = liftoff_testkit::fakes::gcp::GcpFake::start(&["liftoff-test"]).await;
    let Some(k) = setup_on(false, Store::Gcs(gcs)).await else { return };
    k.job("kaniko-gcs", COPY_AND_RUN).await;
    let agent = k.agent(0).await;
    let id = k.r.launch_on("boxes", "kaniko-gcs").await;
    let item = k.ended(&id).await;
    let log = k.r.logs(&id, LogStream::Build).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{log}", item.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, format!("hello from kaniko: {}\n", k.marker));
    assert!(log.contains("context uploaded to gs://liftoff-test/kaniko-"), "{log}");
    let Store::Gcs(g) = &k.store else { unreachable!() };
    assert!(g.state.rejected.lock().unwrap().is_empty(), "{:?}", g.state.rejected.lock().unwrap());
    let tokens = g.state.issued.lock().unwrap().len();
    assert!(tokens >= 2, "the agent and the build pod each got a token: {tokens}");
    k.nothing_left(&tag_in(&log)).await;
    stop(agent).await;
}
