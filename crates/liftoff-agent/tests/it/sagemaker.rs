//! The `sagemaker` runner against the SageMaker fake (liftoff-testkit's,
//! checking SigV4 signatures) and moto (STS for the role's account,
//! CloudWatch Logs for the output), driven by a real agent and server:
//! every end a job can reach, stops, spot interruptions, re-adoption, the
//! required keys. Needs moto (`LIFTOFF_TEST_S3_ENDPOINT`, `.ci/emulators.sh`).

use crate::support;

use liftoff_agent::{AgentOptions, local_runners, run_agent_with};
use liftoff_cloud::AwsEnv;
use liftoff_core::api::{CreateQueue, LogStream};
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_run::sagemaker::{SageMakerApi, SageMakerRunner};
use liftoff_testkit::fakes::sagemaker::{SageMakerFake, SageMakerFakeOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::{Rig, rig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(20);
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1";

struct Sm {
    r: Rig,
    fake: SageMakerFake,
    moto: String,
}

type Agent = (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>);

fn config(extra: Value) -> Value {
    let mut c = json!({
        "role_arn": "trainer",
        "OutputDataConfig": {"S3OutputPath": "s3://liftoff-test/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn setup(queue_config: Value) -> Option<Sm> {
    let moto = support::required_env("LIFTOFF_TEST_S3_ENDPOINT")?;
    let fake = SageMakerFake::start(SageMakerFakeOptions { logs_endpoint: Some(moto.clone()), ..Default::default() })
        .await
        .unwrap();
    let r = rig().await;
    r.queue("sm", ResourceType::Sagemaker, queue_config).await;
    r.image_job("img", IMAGE, &["--epochs", "3"]).await;
    Some(Sm { r, fake, moto })
}

impl Sm {
    fn options(&self) -> AgentOptions {
        AgentOptions {
            queues: vec!["sm".into()],
            agent_key: "sm-test".into(),
            ..self.r.options(4, Duration::from_millis(500))
        }
    }

    /// A real agent whose registry has the sagemaker runner on the fake.
    async fn agent(&self) -> Agent {
        self.agent_signed_with("testing").await
    }

    async fn agent_signed_with(&self, secret: &str) -> Agent {
        let env = AwsEnv::builder("us-east-1").endpoint(&self.moto).static_credentials("testing", secret).load().await;
        let api = SageMakerApi::new(env).with_endpoints(&self.fake.url, &self.moto);
        let opts = self.options();
        let mut registry = local_runners(&opts, &liftoff_run::SharedEngine::new(None));
        registry.register(Arc::new(SageMakerRunner::new(api, Duration::from_millis(100))));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_agent_with(self.r.client.clone(), opts, registry, async move {
            let _ = rx.await;
        }));
        (tx, task)
    }

    /// Launches, and waits for the fake to have the training job: its name.
    async fn launch(&self) -> (String, String) {
        let id = self.r.launch_on("sm", "img").await;
        self.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
        let item = self.r.client.get_item(&id).await.unwrap();
        let name = liftoff_core::sagemaker_args::job_name(&item.run_id, item.fence);
        self.fake.wait_for(&name, BOUND, |_| true).await.expect("the training job is created");
        (id, name)
    }

    async fn logs_contain(&self, id: &str, text: &str) {
        let until = std::time::Instant::now() + BOUND;
        while !self.r.logs(id, LogStream::Stdout).await.contains(text) {
            assert!(std::time::Instant::now() < until, "'{text}' never reached the run's log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn stop_agent(agent: Agent) {
    agent.0.send(()).unwrap();
    agent.1.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_job_is_created_streams_its_logs_while_running_and_finishes() {
    let Some(sm) = setup(config(json!({"Environment": {"QUEUE_VAR": "q", "bad-name": "x"}}))).await else { return };
    let agent = sm.agent().await;
    let (id, name) = sm.launch().await;
    let job = sm.fake.job(&name).unwrap();
    let req = &job.request;
    assert_eq!(
        req["RoleArn"], "arn:aws:iam::123456789012:role/trainer",
        "a bare role name expanded with STS's account"
    );
    assert_eq!(req["AlgorithmSpecification"]["TrainingImage"], IMAGE);
    assert_eq!(req["AlgorithmSpecification"]["ContainerArguments"], json!(["--epochs", "3"]));
    assert_eq!(req["Environment"]["QUEUE_VAR"], "q");
    assert!(req["Environment"]["LIFTOFF_RUN_ID"].is_string(), "{req}");
    assert!(req["Environment"].get("bad-name").is_none());
    let item = sm.r.client.get_item(&id).await.unwrap();
    let tags = req["Tags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t["Key"] == "liftoff:run-id" && t["Value"] == item.run_id.as_str()), "{tags:?}");
    assert!(
        item.warnings.iter().any(|w| w.message.contains("dropped 1 variable(s): bad-name")),
        "dropped variables are reported: {:?}",
        item.warnings
    );

    sm.fake.drive(&name, "InProgress", "Training", None).unwrap();
    sm.fake.emit(&name, "algo-1", &["epoch 1", "epoch 2"]).await.unwrap();
    sm.logs_contain(&id, "epoch 2").await;
    assert_eq!(sm.r.client.get_item(&id).await.unwrap().state, ItemState::Running, "logs arrive while it runs");
    sm.fake.emit(&name, "algo-1", &["epoch 3"]).await.unwrap();
    sm.logs_contain(&id, "epoch 3").await;
    sm.fake.drive(&name, "Completed", "Completed", None).unwrap();
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert_eq!(sm.r.logs(&id, LogStream::Stdout).await, "epoch 1\nepoch 2\nepoch 3\n", "in order, once each");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_fails_the_run_with_sagemakers_reason() {
    let Some(sm) = setup(config(json!({}))).await else { return };
    let agent = sm.agent().await;
    let (id, name) = sm.launch().await;
    sm.fake.drive(&name, "InProgress", "Training", None).unwrap();
    sm.fake.drive(&name, "Failed", "Failed", Some("AlgorithmError: loss is NaN")).unwrap();
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Run)));
    assert_eq!(done.reason.as_deref(), Some("AlgorithmError: loss is NaN"));
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_outside_liftoff_ends_the_run_stopped_not_finished() {
    let Some(sm) = setup(config(json!({}))).await else { return };
    let agent = sm.agent().await;
    let (id, name) = sm.launch().await;
    sm.fake.drive(&name, "Stopping", "Stopping", None).unwrap();
    sm.fake.drive(&name, "Stopped", "Stopped", None).unwrap();
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    assert!(sm.r.logs(&id, LogStream::Agent).await.contains("was stopped outside Liftoff"));
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reaches_sagemaker_while_the_job_starts_and_while_it_trains() {
    let Some(sm) = setup(config(json!({}))).await else { return };
    let agent = sm.agent().await;
    for training in [false, true] {
        let (id, name) = sm.launch().await;
        if training {
            sm.fake.drive(&name, "InProgress", "Training", None).unwrap();
        }
        sm.r.client.stop_item(&id).await.unwrap();
        let stopping = sm.fake.wait_for(&name, BOUND, |j| j.stop_requested.is_some()).await;
        assert!(stopping.is_some(), "StopTrainingJob reached SageMaker (training: {training})");
        let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
        assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
        assert_eq!(sm.fake.job(&name).unwrap().status, "Stopped");
    }
    assert_eq!(sm.fake.calls().iter().filter(|c| *c == "StopTrainingJob").count(), 2);
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_interruption_sagemaker_gives_up_on_preempts_the_run_which_runs_again() {
    let Some(sm) = setup(config(json!({"EnableManagedSpotTraining": true,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}})))
    .await
    else {
        return;
    };
    let agent = sm.agent().await;
    let (id, name) = sm.launch().await;
    // an interruption SageMaker resumes by itself is no preemption
    sm.fake.drive(&name, "InProgress", "Interrupted", None).unwrap();
    sm.fake.drive(&name, "InProgress", "Training", None).unwrap();
    assert_eq!(sm.r.client.get_item(&id).await.unwrap().resumes, 0);
    sm.fake.drive(&name, "Stopped", "MaxWaitTimeExceeded", None).unwrap();
    let again = sm.r.wait_for(&id, |i| i.resumes == 1 && i.state == ItemState::Running, BOUND).await;
    let second = liftoff_core::sagemaker_args::job_name(&again.run_id, again.fence);
    assert_ne!(second, name, "a new training job (SageMaker keeps names for ever)");
    sm.fake.wait_for(&second, BOUND, |_| true).await.expect("the run is started again");
    sm.fake.drive(&second, "Completed", "Completed", None).unwrap();
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.resumes), (ItemState::Finished, 1), "{:?}", done.reason);
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_re_adopts_the_job_by_its_tags_and_repeats_no_line() {
    let Some(sm) = setup(config(json!({}))).await else { return };
    let first = sm.agent().await;
    let (id, name) = sm.launch().await;
    sm.fake.drive(&name, "InProgress", "Training", None).unwrap();
    sm.fake.emit(&name, "algo-1", &["one", "two"]).await.unwrap();
    sm.logs_contain(&id, "two").await;
    let running = sm.r.client.get_item(&id).await.unwrap();
    stop_agent(first).await;
    assert_eq!(sm.fake.job(&name).unwrap().status, "InProgress", "detached, not stopped");
    assert!(sm.fake.job(&name).unwrap().stop_requested.is_none());
    // written while no agent watched
    sm.fake.emit(&name, "algo-1", &["three"]).await.unwrap();
    let second = sm.agent().await;
    sm.logs_contain(&id, "three").await;
    let item = sm.r.client.get_item(&id).await.unwrap();
    assert_eq!((item.state, item.fence), (ItemState::Running, running.fence), "the same claim goes on");
    assert!(sm.r.logs(&id, LogStream::Agent).await.contains("re-adopted"));
    sm.fake.emit(&name, "algo-1", &["four"]).await.unwrap();
    sm.logs_contain(&id, "four").await;
    sm.fake.drive(&name, "Completed", "Completed", None).unwrap();
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished);
    assert_eq!(
        sm.r.logs(&id, LogStream::Stdout).await,
        "one\ntwo\nthree\nfour\n",
        "nothing repeated after the restart"
    );
    assert_eq!(sm.fake.job_names(), vec![name], "one job: adopted, not created again");
    stop_agent(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_keys_are_refused_at_queue_creation_and_at_plan_time() {
    let Some(sm) = setup(config(json!({}))).await else { return };
    let refused =
        sm.r.client
            .create_queue(&CreateQueue {
                name: "bad".into(),
                resource: ResourceType::Sagemaker,
                config: json!({"RoleArn": "trainer"}),
                template_variables: vec![],
                prioritization: false,
            })
            .await;
    let Err(liftoff_client::ClientError::Api { status: 422, body }) = refused else { panic!("{refused:?}") };
    for key in ["OutputDataConfig", "ResourceConfig", "StoppingCondition"] {
        assert!(body.message.contains(&format!("requires {key}")), "{key}: {}", body.message);
    }
    assert!(!body.message.contains("requires RoleArn"), "{}", body.message);
    assert_eq!(body.field.as_deref(), Some("config.OutputDataConfig"), "the first field at fault");
    // a queue an older server took: launches on it are refused, naming every key
    sm.r.queue_unchecked("unchecked", ResourceType::Sagemaker, json!({})).await;
    let launch = liftoff_core::api::LaunchRequest { job: "img".into(), ..Default::default() };
    let refused = sm.r.client.launch("unchecked", &launch).await;
    let Err(liftoff_client::ClientError::Api { status: 422, body }) = refused else { panic!("{refused:?}") };
    for key in ["RoleArn", "OutputDataConfig", "ResourceConfig", "StoppingCondition"] {
        assert!(body.message.contains(&format!("requires {key}")), "{key}: {}", body.message);
    }
    // a macro the server cannot judge is checked by the agent once expanded, before anything is created
    let planned = config(json!({"OutputDataConfig": "${run_id}"}));
    sm.r.queue("macro", ResourceType::Sagemaker, planned).await;
    let opts = AgentOptions { queues: vec!["macro".into()], ..sm.options() };
    let env = AwsEnv::builder("us-east-1").endpoint(&sm.moto).static_credentials("testing", "testing").load().await;
    let mut registry = local_runners(&opts, &liftoff_run::SharedEngine::new(None));
    registry.register(Arc::new(SageMakerRunner::new(
        SageMakerApi::new(env).with_endpoints(&sm.fake.url, &sm.moto),
        Duration::from_millis(100),
    )));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_agent_with(sm.r.client.clone(), opts, registry, async move {
        let _ = rx.await;
    }));
    let id = sm.r.launch_on("macro", "img").await;
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Agent)));
    let reason = done.reason.unwrap();
    assert!(reason.contains("resource_args.OutputDataConfig: OutputDataConfig must be an object"), "{reason}");
    assert!(sm.fake.job_names().is_empty(), "nothing was created");
    stop_agent((tx, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_with_the_wrong_secret_is_refused_as_sagemaker_refuses_it() {
    let Some(sm) = setup(config(json!({}))).await else { return };
    let agent = sm.agent_signed_with("not-the-secret").await;
    let id = sm.r.launch_on("sm", "img").await;
    let done = sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Failed);
    let reason = done.reason.unwrap();
    assert!(reason.contains("InvalidSignatureException"), "{reason}");
    assert!(!reason.contains("not-the-secret"), "no secret in messages");
    assert!(sm.fake.job_names().is_empty());
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instances_stream_is_read_and_its_lines_named() {
    let resources =
        json!({"ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 10}});
    let Some(sm) = setup(config(resources)).await else { return };
    let agent = sm.agent().await;
    let (id, name) = sm.launch().await;
    sm.fake.drive(&name, "InProgress", "Training", None).unwrap();
    sm.fake.emit(&name, "algo-1", &["a1"]).await.unwrap();
    sm.logs_contain(&id, "[algo-1] a1").await;
    sm.fake.emit(&name, "algo-2", &["b1"]).await.unwrap();
    sm.logs_contain(&id, "[algo-2] b1").await;
    sm.fake.emit(&name, "algo-1", &["a2"]).await.unwrap();
    sm.logs_contain(&id, "[algo-1] a2").await;
    sm.fake.drive(&name, "Completed", "Completed", None).unwrap();
    assert_eq!(sm.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await.state, ItemState::Finished);
    assert_eq!(sm.r.logs(&id, LogStream::Stdout).await, "[algo-1] a1\n[algo-2] b1\n[algo-1] a2\n");
    stop_agent(agent).await;
}
