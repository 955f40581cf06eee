//! The `vertex` runner against the Vertex AI and Cloud Logging fake
//! (liftoff-testkit's, with its token endpoint behind the gcp environment's
//! credentials file), driven by a real agent and server: every state a
//! custom job ends in, stops, re-adoption, logs of several replicas, the
//! required keys.

use crate::support;

use liftoff_agent::{AgentOptions, local_runners, run_agent_with};
use liftoff_cloud::GcpEnv;
use liftoff_core::api::{CreateQueue, LogStream};
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_run::vertex::{VertexApi, VertexRunner};
use liftoff_testkit::fakes::vertex::{VertexFake, VertexFakeOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::{Rig, rig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(20);
const IMAGE: &str = "europe-west4-docker.pkg.dev/my-project/repo/train:1";

type Agent = (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>);

struct Vx {
    r: Rig,
    fake: VertexFake,
    credentials: std::path::PathBuf,
}

fn config(replicas: u64) -> Value {
    json!({
        "spec": {
            "worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": replicas,
                "container_spec": {"env": [{"name": "QUEUE_VAR", "value": "q"}]}}],
            "staging_bucket": "gs://liftoff-test/staging",
        },
        "run": {"timeout": 3600},
    })
}

async fn setup(queue_config: Value) -> Vx {
    let fake = VertexFake::start(VertexFakeOptions::default()).await.unwrap();
    let r = rig().await;
    let credentials = r.dir.path().join("adc.json");
    std::fs::write(&credentials, fake.credentials_json("my-project").to_string()).unwrap();
    r.queue("vx", ResourceType::Vertex, queue_config).await;
    r.image_job("img", IMAGE, &["--epochs", "3"]).await;
    Vx { r, fake, credentials }
}

impl Vx {
    fn options(&self, queue: &str) -> AgentOptions {
        AgentOptions {
            queues: vec![queue.into()],
            agent_key: "vx-test".into(),
            ..self.r.options(4, Duration::from_millis(500))
        }
    }

    async fn agent_on(&self, queue: &str) -> Agent {
        let env = GcpEnv::builder()
            .key_file(&self.credentials)
            .project(Some("my-project"))
            .region(Some("europe-west4"))
            .load()
            .await
            .unwrap();
        let api = VertexApi::new(env).with_endpoints(&self.fake.url, &self.fake.url);
        let opts = self.options(queue);
        let mut registry = local_runners(&opts, &liftoff_run::SharedEngine::new(None));
        registry.register(Arc::new(VertexRunner::new(api, Duration::from_millis(100))));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_agent_with(self.r.client.clone(), opts, registry, async move {
            let _ = rx.await;
        }));
        (tx, task)
    }

    async fn agent(&self) -> Agent {
        self.agent_on("vx").await
    }

    /// Launches; the fake's id of the custom job.
    async fn launch(&self) -> (String, String) {
        let before = self.fake.job_ids().len();
        let id = self.r.launch_on("vx", "img").await;
        self.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
        let ids = self.fake.wait_for_jobs(before + 1, BOUND).await.expect("the custom job is created");
        // ids grow: the newest is the last
        let job = ids.last().cloned();
        (id, job.expect("the custom job is created"))
    }

    async fn logs_contain(&self, id: &str, stream: LogStream, text: &str) {
        let until = std::time::Instant::now() + BOUND;
        while !self.r.logs(id, stream).await.contains(text) {
            assert!(std::time::Instant::now() < until, "'{text}' never reached the run's log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ends(&self, id: &str) -> liftoff_core::api::ItemView {
        self.r.wait_for(id, |i| i.state.is_terminal(), BOUND).await
    }
}

async fn stop_agent(agent: Agent) {
    agent.0.send(()).unwrap();
    agent.1.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_job_is_created_streams_each_replicas_lines_while_running_and_succeeds() {
    let vx = setup(config(2)).await;
    let agent = vx.agent().await;
    let (id, job) = vx.launch().await;
    let created = vx.fake.job(&job).unwrap().resource;
    let c = &created["jobSpec"]["workerPoolSpecs"][0]["containerSpec"];
    assert_eq!(c["imageUri"], IMAGE);
    assert_eq!(c["args"], json!(["--epochs", "3"]));
    let env = c["env"].as_array().unwrap();
    assert_eq!(env[0], json!({"name": "QUEUE_VAR", "value": "q"}), "the queue's env first, the run's appended");
    assert!(env.iter().any(|e| e["name"] == "LIFTOFF_RUN_ID"), "{env:?}");
    let item = vx.r.client.get_item(&id).await.unwrap();
    assert_eq!(created["labels"]["liftoff-run-id"], liftoff_core::vertex_args::label_value(&item.run_id));
    assert_eq!(created["jobSpec"]["scheduling"]["timeout"], "3600s");
    assert_eq!(
        created["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"]
            .as_str()
            .map(|s| s.starts_with("gs://liftoff-test/staging/")),
        Some(true)
    );

    vx.fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
    vx.fake.emit(&job, "workerpool0-0", "INFO", &["chief 1"]).unwrap();
    vx.fake.emit(&job, "workerpool0-1", "INFO", &["worker 1"]).unwrap();
    vx.fake.emit(&job, "workerpool0-1", "ERROR", &["worker warning"]).unwrap();
    vx.logs_contain(&id, LogStream::Stdout, "[workerpool0-1] worker 1").await;
    vx.logs_contain(&id, LogStream::Stderr, "[workerpool0-1] worker warning").await;
    assert_eq!(vx.r.client.get_item(&id).await.unwrap().state, ItemState::Running, "logs arrive while it runs");
    vx.fake.emit(&job, "workerpool0-0", "INFO", &["chief 2"]).unwrap();
    vx.logs_contain(&id, LogStream::Stdout, "chief 2").await;
    vx.fake.drive(&job, "JOB_STATE_SUCCEEDED", None).unwrap();
    let done = vx.ends(&id).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert_eq!(
        vx.r.logs(&id, LogStream::Stdout).await,
        "[workerpool0-0] chief 1\n[workerpool0-1] worker 1\n[workerpool0-0] chief 2\n",
        "each replica's lines apart, in order, once each"
    );
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_expired_jobs_fail_the_run_with_vertexs_message() {
    let vx = setup(config(1)).await;
    let agent = vx.agent().await;
    let (id, job) = vx.launch().await;
    vx.fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
    vx.fake
        .drive(&job, "JOB_STATE_FAILED", Some("The replica workerpool0-0 exited with a non-zero status of 1."))
        .unwrap();
    let done = vx.ends(&id).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Run)));
    assert_eq!(done.reason.as_deref(), Some("The replica workerpool0-0 exited with a non-zero status of 1."));

    let (id, job) = vx.launch().await;
    vx.fake.drive(&job, "JOB_STATE_EXPIRED", None).unwrap();
    let done = vx.ends(&id).await;
    assert_eq!(done.state, ItemState::Failed);
    assert_eq!(done.reason.as_deref(), Some("the custom job expired before it ran"));
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_outside_liftoff_is_seen_to_end_stopped() {
    let vx = setup(config(1)).await;
    let agent = vx.agent().await;
    let (id, job) = vx.launch().await;
    vx.fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
    vx.fake.drive(&job, "JOB_STATE_CANCELLING", None).unwrap();
    vx.fake.drive(&job, "JOB_STATE_CANCELLED", None).unwrap();
    let done = vx.ends(&id).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    assert!(vx.fake.job(&job).unwrap().cancel_requested.is_none(), "Liftoff did not cancel it");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cancels_the_job_while_pending_and_while_running() {
    let vx = setup(config(1)).await;
    let agent = vx.agent().await;
    for running in [false, true] {
        let (id, job) = vx.launch().await;
        if running {
            vx.fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
        } else {
            vx.fake.wait_for(&job, BOUND, |j| j.resource["state"] == "JOB_STATE_PENDING").await.expect("pending");
        }
        vx.r.client.stop_item(&id).await.unwrap();
        let cancelled = vx.fake.wait_for(&job, BOUND, |j| j.cancel_requested.is_some()).await;
        assert!(cancelled.is_some(), ":cancel reached Vertex (running: {running})");
        let done = vx.ends(&id).await;
        assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
        assert_eq!(vx.fake.job(&job).unwrap().resource["state"], "JOB_STATE_CANCELLED");
    }
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_re_adopts_the_job_by_its_labels_and_repeats_no_line() {
    let vx = setup(config(1)).await;
    let first = vx.agent().await;
    let (id, job) = vx.launch().await;
    vx.fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
    vx.fake.emit(&job, "workerpool0-0", "INFO", &["one", "two"]).unwrap();
    vx.logs_contain(&id, LogStream::Stdout, "two").await;
    let running = vx.r.client.get_item(&id).await.unwrap();
    stop_agent(first).await;
    let left = vx.fake.job(&job).unwrap();
    assert_eq!(left.resource["state"], "JOB_STATE_RUNNING", "detached, not cancelled");
    assert!(left.cancel_requested.is_none());
    vx.fake.emit(&job, "workerpool0-0", "INFO", &["three"]).unwrap();
    let second = vx.agent().await;
    vx.logs_contain(&id, LogStream::Stdout, "three").await;
    let item = vx.r.client.get_item(&id).await.unwrap();
    assert_eq!((item.state, item.fence), (ItemState::Running, running.fence), "the same claim goes on");
    assert!(vx.r.logs(&id, LogStream::Agent).await.contains("re-adopted"));
    vx.fake.emit(&job, "workerpool0-0", "INFO", &["four"]).unwrap();
    vx.logs_contain(&id, LogStream::Stdout, "four").await;
    vx.fake.drive(&job, "JOB_STATE_SUCCEEDED", None).unwrap();
    assert_eq!(vx.ends(&id).await.state, ItemState::Finished);
    assert_eq!(
        vx.r.logs(&id, LogStream::Stdout).await,
        "one\ntwo\nthree\nfour\n",
        "nothing repeated after the restart"
    );
    assert_eq!(vx.fake.job_ids(), vec![job], "one job: adopted, not created again");
    stop_agent(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_keys_are_refused_at_queue_creation_and_at_plan_time() {
    let vx = setup(config(1)).await;
    let refused =
        vx.r.client
            .create_queue(&CreateQueue {
                name: "bad".into(),
                resource: ResourceType::Vertex,
                config: json!({"spec": {"worker_pool_specs": [{"replica_count": 1}]}}),
                template_variables: vec![],
                prioritization: false,
            })
            .await;
    let Err(liftoff_client::ClientError::Api { status: 422, body }) = refused else { panic!("{refused:?}") };
    assert_eq!(body.field.as_deref(), Some("config.spec.worker_pool_specs[0].container_spec"));
    assert!(
        body.message.contains("requires a container spec") && body.message.contains("staging bucket"),
        "{}",
        body.message
    );
    // a macro the server cannot judge is checked by the agent once expanded, before anything is created
    let mut planned = config(1);
    planned["spec"]["worker_pool_specs"] = json!("${run_id}");
    vx.r.queue("macro", ResourceType::Vertex, planned).await;
    let agent = vx.agent_on("macro").await;
    let id = vx.r.launch_on("macro", "img").await;
    let done = vx.ends(&id).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Agent)));
    let reason = done.reason.unwrap();
    assert!(
        reason.contains("resource_args.spec.worker_pool_specs: Vertex requires at least one worker pool spec"),
        "{reason}"
    );
    assert!(vx.fake.job_ids().is_empty(), "nothing was created");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_log_is_read_across_pages_of_entries_once_and_in_order() {
    let vx = setup(config(1)).await;
    let agent = vx.agent().await;
    let (id, job) = vx.launch().await;
    vx.fake.drive(&job, "JOB_STATE_RUNNING", None).unwrap();
    // entries:list pages by 1000: three pages, most of them at one timestamp
    let lines: Vec<String> = (0..2500).map(|i| format!("line {i:04}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    vx.fake.emit(&job, "workerpool0-0", "INFO", &refs).unwrap();
    vx.logs_contain(&id, LogStream::Stdout, "line 2499").await;
    vx.fake.drive(&job, "JOB_STATE_SUCCEEDED", None).unwrap();
    assert_eq!(vx.ends(&id).await.state, ItemState::Finished);
    let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(vx.r.logs(&id, LogStream::Stdout).await == expected, "every line once, in order");
    stop_agent(agent).await;
}
