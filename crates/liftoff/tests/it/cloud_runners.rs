//! The cloud runners through the real binaries: `liftoff agent` with an
//! `aws` (or `gcp`) environment reaches the SageMaker (Vertex) fake, a line
//! the fake emits reaches `liftoff run logs -f` within a second, and
//! `liftoff run stop` reaches the fake within a second. The SageMaker half
//! needs moto (`LIFTOFF_TEST_S3_ENDPOINT`): STS and CloudWatch Logs. The
//! kubernetes runner the same way, against the Kubernetes API fake
//! (`LIFTOFF_KUBECONFIG`).

use liftoff_client::Client;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest};
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType};
use liftoff_testkit::ProcessGroup;
use liftoff_testkit::fakes::kubernetes::{KubeFake, KubeFakeOptions, PodState};
use liftoff_testkit::fakes::sagemaker::{SageMakerFake, SageMakerFakeOptions};
use liftoff_testkit::fakes::vertex::{VertexFake, VertexFakeOptions};
use serde_json::json;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(30);
const SECOND: Duration = Duration::from_secs(1);

struct Setup {
    _server: liftoff_server::RunningServer,
    url: String,
    key: String,
    client: Client,
    dir: tempfile::TempDir,
}

async fn server(resource: ResourceType, config: serde_json::Value, image: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = liftoff_server::ServerConfig::new(dir.path().join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    // the agent renews every TTL/3: it hears of a stop within 400 ms
    cfg.lease_ttl = Duration::from_millis(1200);
    let server = liftoff_server::start(cfg).await.expect("server starts");
    let (url, key) = (server.base_url(), server.admin_key.clone().unwrap());
    let client = Client::new(&url, &key, "default").unwrap();
    let queue = CreateQueue { name: "q".into(), resource, config, template_variables: vec![], prioritization: false };
    client.create_queue(&queue).await.unwrap();
    let source = JobSourceSpec { image: Some(ImageSource { image: image.into(), args: vec![] }), ..Default::default() };
    let job = CreateJob { project: "default".into(), name: "img".into(), source, aliases: vec![], runtime: None };
    client.create_job(&job).await.unwrap();
    Setup { _server: server, url, key, client, dir }
}

impl Setup {
    /// `liftoff agent -c` with `environment`, in its own process group.
    fn agent(&self, environment: &str, env: &[(&str, String)]) -> ProcessGroup {
        let config = self.dir.path().join("launch-config.yaml");
        let environment = if environment.is_empty() { String::new() } else { format!("environment: {environment}\n") };
        std::fs::write(&config, format!("queues: [q]\n{environment}")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_liftoff"));
        cmd.args(["agent", "-c"])
            .arg(&config)
            .args(["--grace", "1", "--agent-key", &format!("cloud-{}", std::process::id()), "--work-dir"])
            .arg(self.dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &self.url)
            .env("LIFTOFF_API_KEY", &self.key)
            .env("LIFTOFF_CLOUD_POLL_MS", "100")
            .env("TMPDIR", self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("AWS_PROFILE")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        ProcessGroup::spawn(&mut cmd).unwrap()
    }

    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_liftoff"));
        cmd.args(["--base-url", &self.url, "--api-key", &self.key])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("LIFTOFF_BASE_URL")
            .env_remove("LIFTOFF_API_KEY")
            .env_remove("LIFTOFF_ENTITY")
            .env_remove("RUST_LOG");
        cmd
    }

    async fn launch(&self) -> (String, String) {
        let run = self.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
        let until = Instant::now() + BOUND;
        while self.client.get_item(&run.item_id).await.unwrap().state != ItemState::Running {
            assert!(Instant::now() < until, "the run never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (run.item_id, run.run_id)
    }

    /// `liftoff run logs -f`: its lines, each with when it was read.
    fn follow(&self, run_id: &str) -> (ProcessGroup, mpsc::Receiver<(Instant, String)>) {
        let mut cmd = self.cli(&["run", "logs", "-f", run_id]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = ProcessGroup::spawn(&mut cmd).unwrap();
        let out = child.child().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        (child, rx)
    }

    async fn ends(&self, id: &str) -> ItemState {
        let until = Instant::now() + BOUND;
        loop {
            let item = self.client.get_item(id).await.unwrap();
            if item.state.is_terminal() {
                return item.state;
            }
            assert!(Instant::now() < until, "the run never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits for a line containing `text`; when it was read.
fn line_with(rx: &mpsc::Receiver<(Instant, String)>, text: &str) -> Instant {
    let until = Instant::now() + BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let (at, line) = rx.recv_timeout(left).unwrap_or_else(|_| panic!("'{text}' never reached `run logs -f`"));
        if line.contains(text) {
            return at;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagemaker_lines_reach_logs_follow_and_a_stop_reaches_sagemaker_each_within_a_second() {
    let Some(moto) = liftoff_testkit::required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let fake = SageMakerFake::start(SageMakerFakeOptions { logs_endpoint: Some(moto.clone()), ..Default::default() })
        .await
        .unwrap();
    let config = json!({
        "RoleArn": "trainer",
        "OutputDataConfig": {"S3OutputPath": "s3://liftoff-test/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    });
    let s = server(ResourceType::Sagemaker, config, "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1").await;
    let _agent = s.agent(
        "{type: aws, region: us-east-1}",
        &[
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_ENDPOINT_URL", moto.clone()),
            ("AWS_ENDPOINT_URL_SAGEMAKER", fake.url.clone()),
            ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", moto.clone()),
        ],
    );
    let (id, run_id) = s.launch().await;
    let item = s.client.get_item(&id).await.unwrap();
    let name = liftoff_core::sagemaker_args::job_name(&run_id, item.fence);
    fake.wait_for(&name, BOUND, |_| true).await.expect("the training job is created");
    fake.drive(&name, "InProgress", "Training", None).unwrap();
    let (_follow, lines) = s.follow(&run_id);
    // the follower is attached once the agent's own lines reach it
    line_with(&lines, "created SageMaker training job");

    let emitted = Instant::now();
    fake.emit(&name, "algo-1", &["loss=0.25"]).await.unwrap();
    let seen = line_with(&lines, "loss=0.25");
    assert!(seen - emitted < SECOND, "the line took {:?} to reach `run logs -f`", seen - emitted);

    let stop_at = Instant::now();
    let out = s.cli(&["run", "stop", &run_id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job = fake.wait_for(&name, BOUND, |j| j.stop_requested.is_some()).await.expect("StopTrainingJob arrives");
    let took = job.stop_requested.unwrap() - stop_at;
    assert!(took < SECOND, "the stop took {took:?} to reach SageMaker");
    eprintln!("sagemaker: line in {:?}, stop in {took:?}", seen - emitted);
    assert_eq!(s.ends(&id).await, ItemState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vertex_lines_reach_logs_follow_and_a_stop_reaches_vertex_each_within_a_second() {
    let fake = VertexFake::start(VertexFakeOptions::default()).await.unwrap();
    let config = json!({"spec": {
        "worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1, "container_spec": {}}],
        "staging_bucket": "gs://liftoff-test/staging"}});
    let s = server(ResourceType::Vertex, config, "europe-west4-docker.pkg.dev/my-project/repo/train:1").await;
    let credentials = s.dir.path().join("adc.json");
    std::fs::write(&credentials, fake.credentials_json("my-project").to_string()).unwrap();
    let _agent = s.agent(
        "{type: gcp, region: europe-west4, project: my-project}",
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", credentials.display().to_string()),
            ("LIFTOFF_VERTEX_ENDPOINT", fake.url.clone()),
            ("LIFTOFF_LOGGING_ENDPOINT", fake.url.clone()),
        ],
    );
    let (id, run_id) = s.launch().await;
    let job = fake.wait_for_jobs(1, BOUND).await.expect("the custom job is created")[0].clone();
    fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
    let (_follow, lines) = s.follow(&run_id);
    line_with(&lines, "created Vertex AI custom job");

    let emitted = Instant::now();
    fake.emit(&job, "workerpool0-0", "INFO", &["accuracy=0.9"]).unwrap();
    let seen = line_with(&lines, "accuracy=0.9");
    assert!(seen - emitted < SECOND, "the line took {:?} to reach `run logs -f`", seen - emitted);

    let stop_at = Instant::now();
    let out = s.cli(&["run", "stop", &run_id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cancelled = fake.wait_for(&job, BOUND, |j| j.cancel_requested.is_some()).await.expect(":cancel arrives");
    let took = cancelled.cancel_requested.unwrap() - stop_at;
    assert!(took < SECOND, "the stop took {took:?} to reach Vertex");
    eprintln!("vertex: line in {:?}, stop in {took:?}", seen - emitted);
    assert_eq!(s.ends(&id).await, ItemState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_lines_reach_logs_follow_and_a_stop_deletes_the_job_each_within_a_second() {
    let fake = KubeFake::start(KubeFakeOptions::default()).await.unwrap();
    let s = server(ResourceType::Kubernetes, json!({"spec": {"backoffLimit": 0}}), "registry.example/train:1").await;
    let kubeconfig = s.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let _agent = s.agent("", &[("LIFTOFF_KUBECONFIG", kubeconfig.display().to_string())]);
    let (id, run_id) = s.launch().await;
    let pod = fake
        .wait_until(BOUND, |f| {
            f.pods("default").first().and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
        })
        .await
        .expect("the Job's pod is created");
    fake.set_pod("default", &pod, PodState::Running).unwrap();
    let (_follow, lines) = s.follow(&run_id);
    line_with(&lines, "created Kubernetes Job default/");

    let emitted = Instant::now();
    fake.emit("default", &pod, None, &["accuracy=0.9"]).unwrap();
    let seen = line_with(&lines, "accuracy=0.9");
    assert!(seen - emitted < SECOND, "the line took {:?} to reach `run logs -f`", seen - emitted);

    let stop_at = Instant::now();
    let out = s.cli(&["run", "stop", &run_id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deleted = fake
        .wait_until(BOUND, |f| f.deletions().into_iter().find(|d| d.starts_with("jobs.batch default/")))
        .await
        .expect("the Job is deleted");
    let took = stop_at.elapsed();
    assert!(deleted.contains("propagationPolicy=Foreground"), "{deleted}");
    assert!(took < SECOND, "the stop took {took:?} to reach the cluster");
    eprintln!("kubernetes: line in {:?}, stop in {took:?}", seen - emitted);
    assert_eq!(s.ends(&id).await, ItemState::Stopped);
}
