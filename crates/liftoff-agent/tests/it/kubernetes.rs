//! The `kubernetes` runner against the Kubernetes API fake (liftoff-testkit's
//! kube-fake, in process, reached through kube-rs with the kubeconfig it
//! writes), driven by a real agent and server: success with logs while the
//! pod runs, failure with the exit code, a pending pod's changing reason,
//! eviction and a second run, stops, a watch answered 410 Gone, re-adoption
//! after an agent restart, detach at shutdown.

use crate::support;

use liftoff_core::api::LogStream;
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_run::kubernetes::labels;
use liftoff_testkit::fakes::kubernetes::{KubeFake, KubeFakeOptions, PodState, Res};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Agent, Rig, rig, stop_agent};

const BOUND: Duration = Duration::from_secs(20);
const IMAGE: &str = "registry.example/train:1";
const NS: &str = "ml";

struct Kube {
    r: Rig,
    fake: KubeFake,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

async fn setup(queue_config: Value) -> Kube {
    let fake = KubeFake::start(KubeFakeOptions::default()).await.unwrap();
    fake.add_namespace(NS);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let r = rig().await;
    r.queue("k8s", ResourceType::Kubernetes, queue_config).await;
    r.image_job("img", IMAGE, &["--epochs", "3"]).await;
    Kube { r, fake, _dir: dir, kubeconfig }
}

impl Kube {
    /// A real agent whose registry has the kubernetes runner on the fake.
    fn agent(&self) -> Agent {
        self.r.kube_agent(&self.kubeconfig, "k8s-test")
    }

    /// Launches, and waits for the Job's pod: (item id, job name, pod name).
    async fn launch(&self) -> (String, String, String) {
        let id = self.r.launch_on("k8s", "img").await;
        self.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
        let item = self.r.client.get_item(&id).await.unwrap();
        let job = format!(
            "lf-{}-{}",
            item.run_id.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            item.fence
        );
        let pod = self.pod_of(&job).await;
        (id, job, pod)
    }

    async fn pod_of(&self, job: &str) -> String {
        let found = self
            .fake
            .wait_until(BOUND, |f| {
                f.pods(NS).into_iter().find(|p| {
                    p["metadata"]["labels"]["job-name"] == job && p["metadata"]["deletionTimestamp"].is_null()
                })
            })
            .await;
        found.unwrap_or_else(|| panic!("no pod for Job {job}"))["metadata"]["name"].as_str().unwrap().to_string()
    }

    async fn logs_contain(&self, id: &str, stream: LogStream, text: &str) {
        let until = Instant::now() + BOUND;
        while !self.r.logs(id, stream).await.contains(text) {
            assert!(Instant::now() < until, "'{text}' never reached the run's log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until nothing of Job `job` is left in the fake: Job, pods, Secrets.
    async fn gone(&self, job: &str, within: Duration) -> bool {
        self.fake
            .wait_until(within, |f| {
                let left = f.objects(&Res::jobs(), NS).iter().any(|j| j["metadata"]["name"] == job)
                    || f.pods(NS).iter().any(|p| p["metadata"]["labels"]["job-name"] == job)
                    || f.objects(&Res::secrets(), NS).iter().any(|s| s["metadata"]["labels"][labels::JOB] == job);
                (!left).then_some(())
            })
            .await
            .is_some()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_with_its_key_in_a_secret_streams_logs_while_running_and_finishes() {
    let k = setup(json!({"namespace": NS, "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "1"}}}]}}}})).await;
    let agent = k.agent();
    let (id, job, pod) = k.launch().await;
    let item = k.r.client.get_item(&id).await.unwrap();
    let j = k.fake.objects(&Res::jobs(), NS).into_iter().find(|j| j["metadata"]["name"] == job.as_str()).unwrap();
    for (key, want) in [(labels::ITEM, item.id.clone()), (labels::FENCE, item.fence.to_string())] {
        assert_eq!(j["metadata"]["labels"][key], want.as_str(), "{key} on the Job");
        assert_eq!(j["spec"]["template"]["metadata"]["labels"][key], want.as_str(), "{key} on its pods");
    }
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], IMAGE);
    assert_eq!(c["args"], json!(["--epochs", "3"]));
    assert_eq!(c["resources"]["limits"]["cpu"], "1", "the queue's manifest is kept");
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(j["spec"]["template"]["spec"]["automountServiceAccountToken"], false);
    let key = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "LIFTOFF_API_KEY").unwrap();
    assert!(key.get("value").is_none(), "the run key is never inline: {key}");
    let secret_name = key["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap();
    let secret =
        k.fake.objects(&Res::secrets(), NS).into_iter().find(|s| s["metadata"]["name"] == secret_name).unwrap();
    assert!(secret["data"]["LIFTOFF_API_KEY"].is_string());
    assert_eq!(secret["metadata"]["labels"][labels::ITEM], item.id.as_str());

    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.fake.emit(NS, &pod, None, &["epoch 1", "epoch 2"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "epoch 2").await;
    assert_eq!(k.r.client.get_item(&id).await.unwrap().state, ItemState::Running, "logs arrive while it runs");
    k.fake.emit(NS, &pod, None, &["epoch 3"]).unwrap();
    k.fake.set_pod(NS, &pod, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "epoch 1\nepoch 2\nepoch 3\n", "in order, once each");
    assert!(k.gone(&job, BOUND).await, "the ended Job and its Secret are removed; its log stays on the server");
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "epoch 1\nepoch 2\nepoch 3\n");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_container_fails_the_run_with_its_exit_code_and_reason() {
    let k = setup(json!({"namespace": NS})).await;
    let agent = k.agent();
    let (id, _job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.fake.set_pod(NS, &pod, PodState::Failed { exit_code: 3, reason: "OOMKilled".into() }).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage, done.exit_code), (ItemState::Failed, Some(Stage::Run), Some(3)));
    let reason = done.reason.unwrap();
    assert!(reason.contains("exited with code 3 (OOMKilled)"), "{reason}");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_pods_reason_is_a_warning_that_follows_it() {
    let k = setup(json!({"namespace": NS})).await;
    let agent = k.agent();
    let (id, _job, pod) = k.launch().await;
    let pending = |reason: &str, message: &str| PodState::Pending { reason: reason.into(), message: message.into() };
    k.fake
        .set_pod(NS, &pod, pending("Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."))
        .unwrap();
    let warned =
        |text: &'static str| move |i: &liftoff_core::api::ItemView| i.warnings.iter().any(|w| w.message.contains(text));
    k.r.wait_for(&id, warned("Insufficient nvidia.com/gpu"), BOUND).await;
    k.fake.set_pod(NS, &pod, pending("ImagePullBackOff", "Back-off pulling image")).unwrap();
    let item = k.r.wait_for(&id, warned("ImagePullBackOff"), BOUND).await;
    let w = item.warnings.iter().find(|w| w.message.contains("ImagePullBackOff")).unwrap();
    assert_eq!(w.stage, Stage::Run);
    assert_eq!(item.warnings.iter().filter(|w| w.message.contains("Unschedulable")).count(), 1, "once per change");
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.fake.set_pod(NS, &pod, PodState::Succeeded).unwrap();
    assert_eq!(k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await.state, ItemState::Finished);
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_pod_preempts_the_run_which_runs_again() {
    let k = setup(json!({"namespace": NS})).await;
    let agent = k.agent();
    let (id, job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    let evicted = PodState::Disrupted {
        disruption: "TerminationByKubelet".into(),
        message: "The node was low on resource: memory.".into(),
    };
    k.fake.set_pod(NS, &pod, evicted).unwrap();
    let again = k.r.wait_for(&id, |i| i.resumes == 1 && i.state == ItemState::Running, BOUND).await;
    assert!(k.r.logs(&id, LogStream::Agent).await.contains("TerminationByKubelet"));
    let second = format!(
        "lf-{}-{}",
        again.run_id.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        again.fence
    );
    assert_ne!(second, job, "a new Job for the new claim");
    let pod2 = k.pod_of(&second).await;
    k.fake.set_pod(NS, &pod2, PodState::Running).unwrap();
    k.fake.set_pod(NS, &pod2, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.resumes), (ItemState::Finished, 1), "{:?}", done.reason);
    assert!(k.gone(&job, BOUND).await, "the evicted run's Job was removed");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_deletes_the_job_in_the_foreground_and_its_secret_while_pending_and_while_running() {
    let k = setup(json!({"namespace": NS})).await;
    let agent = k.agent();
    for running in [false, true] {
        let (id, job, pod) = k.launch().await;
        if running {
            k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
            k.fake.emit(NS, &pod, None, &["working"]).unwrap();
            k.logs_contain(&id, LogStream::Stdout, "working").await;
        }
        k.r.client.stop_item(&id).await.unwrap();
        let asked = k
            .fake
            .wait_until(BOUND, |f| {
                f.deletions().into_iter().find(|d| d.starts_with(&format!("jobs.batch {NS}/{job} ")))
            })
            .await;
        let asked_at = Instant::now();
        let asked = asked.unwrap_or_else(|| {
            panic!(
                "the Job was not deleted: {:?}; requests {:?}; agent log: {}",
                k.fake.deletions(),
                k.fake.requests().iter().filter(|r| !r.contains("watch")).collect::<Vec<_>>(),
                futures_log(&k, &id)
            )
        });
        assert!(asked.contains("propagationPolicy=Foreground gracePeriodSeconds=2"), "{asked}");
        assert!(
            k.gone(&job, Duration::from_secs(1)).await,
            "Job, pod and Secret gone within a second (running: {running})"
        );
        assert!(asked_at.elapsed() < Duration::from_secs(1));
        let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
        assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    }
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_answered_410_gone_lists_again_and_loses_nothing() {
    let k = setup(json!({"namespace": NS})).await;
    let agent = k.agent();
    let (id, _job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.fake.emit(NS, &pod, None, &["before"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "before").await;
    let lists = |f: &KubeFake| {
        f.requests()
            .iter()
            .filter(|r| r.starts_with("GET /apis/batch/v1/namespaces/ml/jobs?") && !r.contains("watch"))
            .count()
    };
    let before = lists(&k.fake);
    k.fake.expire();
    // the watches end; resuming from their version gets 410, so the runner lists again
    k.fake.wait_until(BOUND, |f| (lists(f) > before).then_some(())).await.expect("the Job is listed again after 410");
    k.fake.emit(NS, &pod, None, &["after"]).unwrap();
    k.fake.set_pod(NS, &pod, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "before\nafter\n");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_re_adopts_the_job_by_its_label_and_repeats_no_line() {
    let k = setup(json!({"namespace": NS})).await;
    let first = k.agent();
    let (id, job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.fake.emit(NS, &pod, None, &["one", "two"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "two").await;
    let running = k.r.client.get_item(&id).await.unwrap();
    let stopping = Instant::now();
    stop_agent(first).await;
    // a detached run's watches and log readers end with it: nothing holds the agent's log channel open
    assert!(stopping.elapsed() < Duration::from_secs(5), "the agent took {:?} to stop", stopping.elapsed());
    assert!(k.fake.deletions().is_empty(), "detached at shutdown, nothing deleted: {:?}", k.fake.deletions());
    assert!(k.fake.objects(&Res::jobs(), NS).iter().any(|j| j["metadata"]["name"] == job.as_str()));
    k.fake.emit(NS, &pod, None, &["three"]).unwrap();
    let second = k.agent();
    k.logs_contain(&id, LogStream::Stdout, "three").await;
    let item = k.r.client.get_item(&id).await.unwrap();
    assert_eq!((item.state, item.fence), (ItemState::Running, running.fence), "the same claim goes on");
    assert!(k.r.logs(&id, LogStream::Agent).await.contains("re-adopted"));
    k.fake.emit(NS, &pod, None, &["four"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "four").await;
    k.fake.set_pod(NS, &pod, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await, "one\ntwo\nthree\nfour\n", "nothing repeated after the restart");
    stop_agent(second).await;
}

fn futures_log(k: &Kube, id: &str) -> String {
    let (r, id) = (&k.r, id.to_string());
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(r.logs(&id, LogStream::Agent)))
}

/// A field a Job does not have (a typo in the queue's manifest) fails the
/// run at stage agent, naming it, before anything is made in the cluster
/// (k8s-openapi's types would drop it silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_a_job_does_not_have_fails_the_run_naming_it_and_makes_nothing() {
    let k = setup(json!({"namespace": NS, "spec": {"template": {"spec": {"nodeSelectr": {"gpu": "a100"}}}}})).await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Agent)), "{:?}", done.reason);
    let reason = done.reason.unwrap();
    assert!(reason.contains("resource_args.spec.template.spec.nodeSelectr"), "{reason}");
    let jobs = k.fake.objects(&Res::jobs(), NS);
    let secrets = k.fake.objects(&Res::secrets(), NS);
    assert!(jobs.is_empty() && secrets.is_empty(), "nothing was made: {jobs:?} {secrets:?}");
    stop_agent(agent).await;
}

/// The agent's identity bound to exactly the Role and ClusterRole that
/// `liftoff permissions --runner kubernetes` prints (and deploy/ holds),
/// with the fake's RBAC authorizer on: a run is made, watched, logged,
/// stopped, re-adopted after a restart and cleaned up without one refused
/// call, so the shipped grants are all the runner needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_grants_every_call_the_runner_makes() {
    use liftoff_cloud::kube_rbac::{agent_cluster_role, agent_role};
    use liftoff_testkit::fakes::kubernetes::Rbac;
    let k = setup(json!({"namespace": NS})).await;
    let user = "system:serviceaccount:ml:liftoff-agent";
    k.fake.set_rbac(Some(Rbac::new(user, NS, &agent_role(), &agent_cluster_role()).unwrap()));

    // made, watched, logged, re-adopted by a restarted agent, ended and removed
    let first = k.agent();
    let (id, job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.fake.emit(NS, &pod, None, &["one"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "one").await;
    stop_agent(first).await;
    let second = k.agent();
    k.fake.emit(NS, &pod, None, &["two"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "two").await;
    k.fake.set_pod(NS, &pod, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert!(k.gone(&job, BOUND).await);

    // stopped while running
    let (id, job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    k.r.client.stop_item(&id).await.unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    assert!(k.gone(&job, BOUND).await);
    stop_agent(second).await;
    assert_eq!(k.fake.refused(), Vec::<String>::new(), "every call was granted");

    // and the authorizer is on: a Role without pods/log leaves the run's log unread
    let mut role = agent_role();
    role["rules"].as_array_mut().unwrap().retain(|r| r["resources"] != json!(["pods/log"]));
    k.fake.set_rbac(Some(Rbac::new(user, NS, &role, &agent_cluster_role()).unwrap()));
    let agent = k.agent();
    let (_id, _job, pod) = k.launch().await;
    k.fake.set_pod(NS, &pod, PodState::Running).unwrap();
    let refused = k.fake.wait_until(BOUND, |f| f.refused().into_iter().find(|r| r.contains("/log"))).await;
    assert!(refused.is_some_and(|r| r.starts_with("GET /api/v1/namespaces/ml/pods/")), "{:?}", k.fake.refused());
    stop_agent(agent).await;
}
