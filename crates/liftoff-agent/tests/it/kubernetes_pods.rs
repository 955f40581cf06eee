//! The `kubernetes` runner, driven by a real agent and server, on the
//! Kubernetes API fake whose pods really run on the test Docker engine
//! (`PodDriver::Docker`): a job's output reaches the run's log and it
//! finishes; a failing command fails the run with its real exit code; a
//! stop reaches the job's SIGTERM trap; an image that cannot be pulled is
//! the run's warning; kubectl waits for and reads what Liftoff made.

use crate::support;

use liftoff_core::api::LogStream;
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_testkit::fakes::kubernetes::{KubeFake, KubeFakeOptions, PodDriver};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Agent, Rig, required_env, rig};

const BOUND: Duration = Duration::from_secs(30);
const NS: &str = "ml";

struct Kube {
    r: Rig,
    fake: KubeFake,
    image: String,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    agent: Option<Agent>,
}

async fn setup() -> Option<Kube> {
    setup_with(|_| json!({"namespace": NS})).await
}

/// A queue `k8s` with the config `config` makes from the test image, and an agent on it.
async fn setup_with(config: impl Fn(&str) -> serde_json::Value) -> Option<Kube> {
    let docker_host = required_env("LIFTOFF_TEST_DOCKER_HOST")?;
    let image = required_env("LIFTOFF_TEST_DOCKER_IMAGE")?;
    let fake =
        KubeFake::start(KubeFakeOptions { pods: PodDriver::Docker { docker_host }, ..KubeFakeOptions::default() })
            .await
            .unwrap();
    fake.add_namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let r = rig().await;
    r.queue("k8s", ResourceType::Kubernetes, config(&image)).await;
    let mut k = Kube { r, fake, image, _dir: dir, kubeconfig, agent: None };
    k.agent = Some(k.start_agent());
    Some(k)
}

impl Kube {
    fn start_agent(&self) -> Agent {
        self.r.kube_agent(&self.kubeconfig, "k8s-pods")
    }

    /// Launches `sh -c script` in the test image: (item id, Job name).
    async fn launch(&self, job: &str, image: &str, script: &str) -> (String, String) {
        self.r.image_job(job, image, &["sh", "-c", script]).await;
        let id = self.r.launch_on("k8s", job).await;
        self.r.wait_for(&id, |i| i.state == ItemState::Running || i.state.is_terminal(), BOUND).await;
        let item = self.r.client.get_item(&id).await.unwrap();
        let name = format!(
            "lf-{}-{}",
            item.run_id.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            item.fence
        );
        (id, name)
    }

    async fn pod_of(&self, job: &str) -> String {
        let found = self
            .fake
            .wait_until(BOUND, |f| f.pods(NS).into_iter().find(|p| p["metadata"]["labels"]["job-name"] == job))
            .await;
        found.unwrap_or_else(|| panic!("no pod for Job {job}"))["metadata"]["name"].as_str().unwrap().to_string()
    }

    async fn logs_contain(&self, id: &str, text: &str) {
        let until = Instant::now() + BOUND;
        while !self.r.logs(id, LogStream::Stdout).await.contains(text) {
            assert!(Instant::now() < until, "'{text}' never reached the run's log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kubectl(&self, kubectl: &str, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl);
        c.env("KUBECONFIG", &self.kubeconfig).env("HOME", self._dir.path()).args(["-n", NS]).args(args);
        c
    }

    async fn stop_agent(&mut self) {
        support::stop_agent(self.agent.take().unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_really_runs_its_output_is_the_runs_log_and_a_failure_keeps_its_exit_code() {
    let Some(mut k) = setup().await else { return };
    let img = k.image.clone();
    let (id, _) = k.launch("ok", &img, "echo epoch 1; echo warned >&2; echo epoch 2").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.exit_code), (ItemState::Finished, Some(0)), "{:?}", done.reason);
    let log = k.r.logs(&id, LogStream::Stdout).await;
    let out: Vec<&str> = log.lines().filter(|l| *l != "warned").collect();
    assert_eq!(out, ["epoch 1", "epoch 2"], "once each, in order: {log}");
    assert_eq!(log.lines().filter(|l| *l == "warned").count(), 1, "{log}");

    let (id, _) = k.launch("bad", &img, "echo about to fail; exit 7").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage, done.exit_code), (ItemState::Failed, Some(Stage::Run), Some(7)));
    let reason = done.reason.unwrap();
    assert!(reason.contains("exited with code 7 (Error)"), "{reason}");
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "about to fail\n");
    k.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reaches_the_jobs_sigterm_trap_and_kubectl_reads_and_waits_for_real_runs() {
    let Some(mut k) = setup().await else { return };
    let Some(kubectl) = required_env("LIFTOFF_TEST_KUBECTL") else { return };
    let img = k.image.clone();

    // held unschedulable until kubectl waits on it, then it completes
    k.fake.set_unschedulable(Some("0/1 nodes are available: 1 node(s) were unschedulable."));
    let (id, job) = k.launch("short", &img, "echo short run; echo done").await;
    k.pod_of(&job).await;
    let warned = |i: &liftoff_core::api::ItemView| i.warnings.iter().any(|w| w.message.contains("unschedulable"));
    k.r.wait_for(&id, warned, BOUND).await;
    // the runner's watch on the Job, then kubectl's
    let job_watches = |f: &KubeFake| {
        f.requests().iter().filter(|r| r.contains("/jobs?") && r.contains(job.as_str()) && r.contains("watch")).count()
    };
    let wait = k
        .kubectl(&kubectl, &["wait", "--for=condition=complete", &format!("job/{job}"), "--timeout=60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // kubectl's watch is open once its request is in the fake's record
    k.fake.wait_until(BOUND, |f| (job_watches(f) >= 2).then_some(())).await.expect("kubectl watches the Job");
    k.fake.set_unschedulable(None);
    let waited = tokio::task::spawn_blocking(move || wait.wait_with_output().unwrap()).await.unwrap();
    assert!(waited.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&waited.stderr));
    assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "short run\ndone\n");

    // a run that answers SIGTERM: kubectl reads it live, the stop reaches its trap
    let trap = "trap 'echo got SIGTERM, saving; exit 143' TERM; echo working; while true; do sleep 0.1; done";
    let (id, job) = k.launch("long", &img, trap).await;
    let pod = k.pod_of(&job).await;
    k.logs_contain(&id, "working").await;
    let out = k.kubectl(&kubectl, &["logs", &pod]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "working\n", "{}", String::from_utf8_lossy(&out.stderr));
    let described = k.kubectl(&kubectl, &["describe", "pod", &pod]).output().unwrap();
    let described = String::from_utf8_lossy(&described.stdout).to_string();
    assert!(described.contains("Running"), "{described}");
    let mut follow =
        k.kubectl(&kubectl, &["logs", "-f", &format!("job/{job}")]).stdout(Stdio::piped()).spawn().unwrap();
    // the runner's follow of the pod's log, then kubectl's
    let log_follows = |f: &KubeFake| {
        let path = format!("/pods/{pod}/log?");
        f.requests().iter().filter(|r| r.contains(&path) && r.contains("follow=true")).count()
    };
    k.fake.wait_until(BOUND, |f| (log_follows(f) >= 2).then_some(())).await.expect("kubectl follows the log");
    k.r.client.stop_item(&id).await.unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "working\ngot SIGTERM, saving\n", "the trap ran, once");
    let followed = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut follow.stdout.take().unwrap(), &mut s).unwrap();
        let _ = follow.wait();
        s
    })
    .await
    .unwrap();
    assert_eq!(followed, "working\ngot SIGTERM, saving\n", "kubectl logs -f to the container's end");
    let agent_log = k.r.logs(&id, LogStream::Agent).await;
    assert_eq!(agent_log.matches("stopping the run").count(), 1, "{agent_log}");
    k.stop_agent().await;
}

/// An init container from the queue's manifest runs first; its output is in
/// the run's log (each line naming its container) and its failure is the run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_fails_the_run_with_its_exit_code_and_output() {
    let config = |image: &str| {
        let init = json!({"name": "prep", "image": image, "command": ["sh", "-c", "echo preparing; exit 4"]});
        json!({"namespace": NS, "spec": {"template": {"spec": {"initContainers": [init]}}}})
    };
    let Some(mut k) = setup_with(config).await else { return };
    k.r.image_job("with-init", &k.image, &["sh", "-c", "echo never"]).await;
    let id = k.r.launch_on("k8s", "with-init").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.exit_code), (ItemState::Failed, Some(4)), "{:?}", done.reason);
    let reason = done.reason.unwrap();
    assert!(reason.contains("container prep exited with code 4 (Error)"), "{reason}");
    let log = k.r.logs(&id, LogStream::Stdout).await;
    assert!(log.ends_with("/prep] preparing\n") && !log.contains("never"), "{log}");
    k.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_is_the_runs_warning() {
    let Some(mut k) = setup().await else { return };
    let absent = "127.0.0.1:9/liftoff-test/absent:1";
    let (id, _) = k.launch("nopull", absent, "echo never").await;
    let warned = |text: &'static str| {
        move |i: &liftoff_core::api::ItemView| {
            i.warnings.iter().any(|w| w.message.contains(text) && w.message.contains(absent))
        }
    };
    let item = k.r.wait_for(&id, warned("ErrImagePull"), BOUND).await;
    assert_eq!(item.state, ItemState::Running);
    k.r.wait_for(&id, warned("ImagePullBackOff"), BOUND).await;
    k.r.client.stop_item(&id).await.unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    k.stop_agent().await;
}
