//! Fault injection on a real Kubernetes-style run: `liftoff agent` (the
//! binary) runs a `kubernetes` job on the Kubernetes API fake whose pods
//! really run on the test Docker engine, and is killed with SIGKILL while
//! the job prints. A new agent with the same key adopts the Job by its
//! label, and the run ends once, finished, with its whole log: no line
//! lost, none twice.

use liftoff_client::Client;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest, LogStream};
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType};
use liftoff_testkit::ProcessGroup;
use liftoff_testkit::fakes::kubernetes::{KubeFake, KubeFakeOptions, PodDriver};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
const LINES: usize = 60;

/// The run's whole stdout as the server holds it.
async fn stdout(client: &Client, id: &str) -> String {
    let (mut out, mut after) = (String::new(), 0);
    loop {
        let page = client.read_logs(id, after).await.unwrap();
        for c in page.chunks.iter().filter(|c| c.stream == LogStream::Stdout) {
            out.push_str(&c.data);
        }
        if page.chunks.is_empty() {
            return out;
        }
        after = page.next_seq;
    }
}

async fn agent_log(client: &Client, id: &str) -> String {
    let (mut out, mut after) = (String::new(), 0);
    loop {
        let page = client.read_logs(id, after).await.unwrap();
        for c in page.chunks.iter().filter(|c| c.stream == LogStream::Agent) {
            out.push_str(&c.data);
        }
        if page.chunks.is_empty() {
            return out;
        }
        after = page.next_seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_run_is_replaced_and_the_run_ends_once_with_its_whole_log() {
    let Some(docker_host) = liftoff_testkit::required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(image) = liftoff_testkit::required_env("LIFTOFF_TEST_DOCKER_IMAGE") else { return };
    let fake =
        KubeFake::start(KubeFakeOptions { pods: PodDriver::Docker { docker_host }, ..KubeFakeOptions::default() })
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = liftoff_server::ServerConfig::new(dir.path().join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    // long enough for the second agent to renew the claim the first one held
    cfg.lease_ttl = Duration::from_secs(10);
    let server = liftoff_server::start(cfg).await.expect("server starts");
    let (url, key) = (server.base_url(), server.admin_key.clone().unwrap());
    let client = Client::new(&url, &key, "default").unwrap();
    let queue = CreateQueue {
        name: "q".into(),
        resource: ResourceType::Kubernetes,
        config: json!({}),
        template_variables: vec![],
        prioritization: false,
    };
    client.create_queue(&queue).await.unwrap();
    let script = format!("i=1; while [ $i -le {LINES} ]; do echo line $i; i=$((i+1)); sleep 0.05; done");
    let source = JobSourceSpec {
        image: Some(ImageSource { image, args: vec!["sh".into(), "-c".into(), script] }),
        ..Default::default()
    };
    let job = CreateJob { project: "default".into(), name: "count".into(), source, aliases: vec![], runtime: None };
    client.create_job(&job).await.unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let config = dir.path().join("launch-config.yaml");
    std::fs::write(&config, "queues: [q]\n").unwrap();
    let agent = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_liftoff"));
        cmd.args(["agent", "-c"])
            .arg(&config)
            .args(["--grace", "1", "--agent-key", "k8s-kill", "--work-dir"])
            .arg(dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &url)
            .env("LIFTOFF_API_KEY", &key)
            .env("LIFTOFF_KUBECONFIG", &kubeconfig)
            .env("TMPDIR", dir.path())
            .env("HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        ProcessGroup::spawn(&mut cmd).unwrap()
    };

    let mut first = agent();
    let run = client.launch("q", &LaunchRequest { job: "count".into(), ..Default::default() }).await.unwrap();
    let id = run.item_id;
    let until = Instant::now() + BOUND;
    while !stdout(&client, &id).await.contains("line 5\n") {
        assert!(Instant::now() < until, "the job's output never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = client.get_item(&id).await.unwrap();
    first.kill_all();
    let shipped = stdout(&client, &id).await;
    assert!(!shipped.contains(&format!("line {LINES}\n")), "killed while the job ran: {shipped}");

    let _second = agent();
    let until = Instant::now() + BOUND;
    let done = loop {
        let item = client.get_item(&id).await.unwrap();
        if item.state.is_terminal() {
            break item;
        }
        assert!(Instant::now() < until, "the run never ended: {item:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((done.state, done.exit_code), (ItemState::Finished, Some(0)), "{:?}", done.reason);
    let history = client.item_history(&id).await.unwrap();
    let events: Vec<(&str, Option<i64>)> = history.iter().map(|t| (t.event.as_str(), t.fence)).collect();
    let claim = Some(before.fence);
    assert_eq!(
        events,
        [("launch", None), ("claim", claim), ("start", claim), ("finish", claim)],
        "claimed, started and ended once, under the one claim"
    );
    assert_eq!(done.resumes, 0);
    let want: String = (1..=LINES).map(|i| format!("line {i}\n")).collect();
    assert_eq!(stdout(&client, &id).await, want, "every line once, in order");
    assert!(agent_log(&client, &id).await.contains("re-adopted"));
    let created: Vec<String> =
        fake.requests().into_iter().filter(|r| r.starts_with("POST /apis/batch/v1/namespaces/default/jobs")).collect();
    assert_eq!(created.len(), 1, "one Job for the run: {created:?}");
}
