//! The `kubernetes` runner's custom-resource path and `additional_services`
//! against the Kubernetes API fake (its Volcano, PyTorchJob, Deployment and
//! Service controllers, in `fakes/kubernetes/controllers.rs`), driven by a
//! real agent and server: a Volcano Job of two tasks whose pods' lines are
//! kept apart, a failed pod, a stop, a PyTorchJob, an agent restart, a kind
//! the cluster does not serve; a Deployment and a Service made before the
//! Job, waited for and removed after it, and an unsafe one that stops
//! everything.

use crate::support;

use liftoff_core::api::LogStream;
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_run::kubernetes::{labels, restricted};
use liftoff_testkit::fakes::kubernetes::{KubeFake, KubeFakeOptions, PodState, Res};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Agent, Rig, rig, stop_agent};

const BOUND: Duration = Duration::from_secs(20);
const IMAGE: &str = "registry.example/train:1";
const NS: &str = "ml";

fn volcano() -> Res {
    Res::new("batch.volcano.sh", "v1alpha1", "jobs")
}
fn pytorch() -> Res {
    Res::new("kubeflow.org", "v1", "pytorchjobs")
}

struct Kube {
    r: Rig,
    fake: KubeFake,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

/// A fake with Volcano's and Kubeflow's CRDs installed, and a server with
/// queue `k8s` (`queue_config`, checked by the server unless `unchecked`).
async fn setup_with(queue_config: Value, unchecked: bool) -> Kube {
    let fake = KubeFake::start(KubeFakeOptions::default()).await.unwrap();
    fake.add_namespace(NS);
    fake.add_crd("batch.volcano.sh", "v1alpha1", "Job", "jobs");
    fake.add_crd("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig()).unwrap();
    let r = rig().await;
    if unchecked {
        r.queue_unchecked("k8s", ResourceType::Kubernetes, queue_config).await;
    } else {
        r.queue("k8s", ResourceType::Kubernetes, queue_config).await;
    }
    r.image_job("img", IMAGE, &["--epochs", "3"]).await;
    Kube { r, fake, _dir: dir, kubeconfig }
}

async fn setup(queue_config: Value) -> Kube {
    setup_with(queue_config, false).await
}

/// A Volcano Job of two tasks (`ps` and `worker`, one replica each); the
/// worker has an init container and a sidecar.
fn volcano_config() -> Value {
    json!({"namespace": NS, "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "spec": {"minAvailable": 2, "schedulerName": "volcano", "tasks": [
            {"name": "ps", "replicas": 1, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "ps", "resources": {"limits": {"cpu": "1"}}}]}}},
            {"name": "worker", "replicas": 1, "template": {"spec": {"restartPolicy": "Never",
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "worker"}, {"name": "side", "image": "registry.example/side:1"}]}}}]}})
}

impl Kube {
    /// A real agent whose registry has the kubernetes runner on the fake.
    fn agent(&self) -> Agent {
        self.r.kube_agent(&self.kubeconfig, "k8s-custom-test")
    }

    /// The run's object name (`lf-<run>-<fence>`) for item `id` as it is now.
    async fn object_name(&self, id: &str) -> String {
        let item = self.r.client.get_item(id).await.unwrap();
        format!("lf-{}-{}", item.run_id.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"), item.fence)
    }

    /// Launches, waits for the run to be running: (item id, object name).
    async fn launch(&self) -> (String, String) {
        let id = self.r.launch_on("k8s", "img").await;
        self.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
        let name = self.object_name(&id).await;
        (id, name)
    }

    /// The live pods owned by object `name` (by owner reference), waited
    /// for until there are `n`, sorted by name.
    async fn pods_of(&self, name: &str, n: usize) -> Vec<String> {
        let found = self
            .fake
            .wait_until(BOUND, |f| {
                let mut pods: Vec<String> = f
                    .pods(NS)
                    .into_iter()
                    .filter(|p| {
                        p["metadata"]["deletionTimestamp"].is_null()
                            && p["metadata"]["ownerReferences"][0]["name"] == name
                    })
                    .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                    .collect();
                pods.sort();
                (pods.len() == n).then_some(pods)
            })
            .await;
        found.unwrap_or_else(|| panic!("no {n} pods for {name}: {:?}", self.fake.pods(NS)))
    }

    fn object(&self, res: &Res, name: &str) -> Option<Value> {
        self.fake.objects(res, NS).into_iter().find(|o| o["metadata"]["name"] == name)
    }

    async fn logs_contain(&self, id: &str, stream: LogStream, text: &str) {
        let until = Instant::now() + BOUND;
        while !self.r.logs(id, stream).await.contains(text) {
            assert!(
                Instant::now() < until,
                "'{text}' never reached the run's log: {}",
                self.r.logs(id, LogStream::Agent).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until nothing of run object `name` of `res` is left: the
    /// object, its pods, Secrets, marker ConfigMap and additional services.
    async fn gone(&self, res: &Res, name: &str, within: Duration) -> bool {
        let configmaps = Res::new("", "v1", "configmaps");
        self.fake
            .wait_until(within, |f| {
                let labelled = |r: &Res| f.objects(r, NS).iter().any(|o| o["metadata"]["labels"][labels::JOB] == name);
                let left = f.objects(res, NS).iter().any(|o| o["metadata"]["name"] == name)
                    || f.pods(NS).iter().any(|p| p["metadata"]["ownerReferences"][0]["name"] == name)
                    || labelled(&Res::secrets())
                    || labelled(&configmaps)
                    || labelled(&Res::new("apps", "v1", "deployments"))
                    || labelled(&Res::new("", "v1", "services"));
                (!left).then_some(())
            })
            .await
            .is_some()
    }
}

impl Kube {
    /// No item of the queue was ever claimed.
    async fn no_items(&self) {
        let items = self.r.client.list_items(Some("k8s"), 100).await.unwrap();
        assert!(items.is_empty(), "{items:?}");
    }
}

/// Every container, init container and ephemeral container of every pod
/// template in `obj` has exactly the restricted security context.
fn assert_all_restricted(obj: &Value) {
    let templates = liftoff_run::kubernetes::pod_template_paths(obj);
    assert!(!templates.is_empty(), "{obj}");
    let mut seen = 0;
    fn walk(v: &Value, seen: &mut usize) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if matches!(k.as_str(), "containers" | "initContainers" | "ephemeralContainers") {
                        for c in x.as_array().into_iter().flatten() {
                            assert_eq!(c["securityContext"], restricted(), "{k}: {c}");
                            *seen += 1;
                        }
                    } else {
                        walk(x, seen);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, seen)),
            _ => {}
        }
    }
    walk(obj, &mut seen);
    assert!(seen >= templates.len(), "{seen} containers in {templates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volcano_job_of_two_tasks_runs_its_lines_kept_apart_and_finishes() {
    let k = setup(volcano_config()).await;
    let agent = k.agent();
    let (id, name) = k.launch().await;
    let item = k.r.client.get_item(&id).await.unwrap();
    let job = k.object(&volcano(), &name).expect("the Volcano Job is made");
    assert_eq!(job["metadata"]["labels"][labels::ITEM], item.id.as_str());
    assert_eq!(job["metadata"]["annotations"][labels::FENCE], item.fence.to_string().as_str());
    assert_all_restricted(&job);
    for t in 0..2 {
        let tmpl = &job["spec"]["tasks"][t]["template"];
        assert_eq!(tmpl["metadata"]["labels"][labels::ITEM], item.id.as_str(), "the run's labels on task {t}'s pods");
        let c0 = &tmpl["spec"]["containers"][0];
        assert_eq!((c0["image"].as_str(), &c0["args"]), (Some(IMAGE), &json!(["--epochs", "3"])));
        for c in tmpl["spec"]["containers"].as_array().unwrap() {
            let key = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "LIFTOFF_API_KEY").unwrap();
            assert!(key.get("value").is_none(), "the run key is never inline: {key}");
            assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], format!("{name}-env"));
        }
    }
    assert_eq!(job["spec"]["tasks"][1]["template"]["spec"]["containers"][1]["image"], "registry.example/side:1");
    assert_eq!(job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1");

    let pods = k.pods_of(&name, 2).await;
    let (ps, worker) = (&pods[0], &pods[1]);
    assert!(ps.ends_with("-ps-0") && worker.ends_with("-worker-0"), "{pods:?}");
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Running).unwrap();
    }
    k.fake.emit(NS, ps, None, &["ps listening"]).unwrap();
    k.fake.emit(NS, worker, Some("worker"), &["worker step 1"]).unwrap();
    k.fake.emit(NS, worker, Some("side"), &["side car up"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, &format!("[{worker}/side] side car up")).await;
    k.logs_contain(&id, LogStream::Stdout, &format!("[{ps}/ps] ps listening")).await;
    k.logs_contain(&id, LogStream::Stdout, &format!("[{worker}/worker] worker step 1")).await;
    assert_eq!(k.r.client.get_item(&id).await.unwrap().state, ItemState::Running, "logs arrive while it runs");

    // a person reads it with kubectl, by its plural, as on a cluster with Volcano
    if let Some(kubectl) = support::required_env("LIFTOFF_TEST_KUBECTL") {
        let home = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(kubectl)
            .env("KUBECONFIG", &k.kubeconfig)
            .env("HOME", home.path())
            .args(["get", "jobs.batch.volcano.sh", "-n", NS, &name, "-o", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl get: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["kind"], "Job");
        assert_eq!(got["apiVersion"], "batch.volcano.sh/v1alpha1");
        assert_eq!(got["status"]["state"]["phase"], "Running");
    }

    k.fake.emit(NS, worker, Some("worker"), &["worker step 2"]).unwrap();
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Succeeded).unwrap();
    }
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    let log = k.r.logs(&id, LogStream::Stdout).await;
    let worker_lines: Vec<&str> = log.lines().filter(|l| l.starts_with(&format!("[{worker}/worker] "))).collect();
    assert_eq!(worker_lines.len(), 2, "each line once, in order: {log}");
    assert!(worker_lines[0].ends_with("worker step 1") && worker_lines[1].ends_with("worker step 2"), "{log}");
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(k.gone(&volcano(), &name, BOUND).await, "the ended object, its pods, Secret and marker are removed");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pod_of_a_volcano_job_fails_the_run_with_its_exit_code() {
    let k = setup(volcano_config()).await;
    let agent = k.agent();
    let (id, name) = k.launch().await;
    let pods = k.pods_of(&name, 2).await;
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Running).unwrap();
    }
    k.fake.set_pod(NS, &pods[1], PodState::Failed { exit_code: 3, reason: "Error".into() }).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Run)), "{:?}", done.reason);
    let reason = done.reason.unwrap();
    // the fake ends every container of a failed pod with its code: either names the pod and the code
    assert!(reason.contains(&format!("pod {}: container ", pods[1])), "{reason}");
    assert!(reason.contains("exited with code 3 (Error)"), "{reason}");
    assert!(k.gone(&volcano(), &name, BOUND).await, "the failed run's object is removed");
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_deletes_the_custom_object_in_the_foreground_with_its_secrets_and_marker() {
    let k = setup(volcano_config()).await;
    let agent = k.agent();
    let (id, name) = k.launch().await;
    let pods = k.pods_of(&name, 2).await;
    k.fake.set_pod(NS, &pods[0], PodState::Running).unwrap();
    k.fake.emit(NS, &pods[0], None, &["working"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "working").await;
    assert!(k.fake.objects(&Res::secrets(), NS).iter().any(|s| s["metadata"]["labels"][labels::JOB] == name));
    k.r.client.stop_item(&id).await.unwrap();
    let asked = k
        .fake
        .wait_until(BOUND, |f| {
            f.deletions().into_iter().find(|d| d.starts_with(&format!("jobs.batch.volcano.sh {NS}/{name} ")))
        })
        .await
        .unwrap_or_else(|| panic!("the object was not deleted: {:?}", k.fake.deletions()));
    assert!(asked.contains("propagationPolicy=Foreground gracePeriodSeconds=2"), "{asked}");
    assert!(k.gone(&volcano(), &name, Duration::from_secs(2)).await, "object, pods, Secret and marker gone");
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    stop_agent(agent).await;
}

/// A custom run's pods are watched like a Job's: a pending pod's reason is
/// a warning that follows it, and an evicted pod preempts the run, which
/// runs again as a new object (the Volcano controller fails the Job too:
/// the disruption wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_runs_pending_reason_is_a_warning_and_an_eviction_preempts_it() {
    let k = setup(volcano_config()).await;
    let agent = k.agent();
    let (id, name) = k.launch().await;
    let pods = k.pods_of(&name, 2).await;
    let pending = PodState::Pending { reason: "ErrImagePull".into(), message: "pull access denied".into() };
    k.fake.set_pod(NS, &pods[1], pending).unwrap();
    let warned = k.r.wait_for(&id, |i| i.warnings.iter().any(|w| w.message.contains("ErrImagePull")), BOUND).await;
    let w = warned.warnings.iter().find(|w| w.message.contains("ErrImagePull")).unwrap();
    assert!(w.message.contains(&pods[1]) && w.message.contains("pull access denied"), "{}", w.message);
    k.fake.set_pod(NS, &pods[0], PodState::Running).unwrap();
    let evicted = PodState::Disrupted { disruption: "EvictionByEvictionAPI".into(), message: "drained".into() };
    k.fake.set_pod(NS, &pods[0], evicted).unwrap();
    let again = k.r.wait_for(&id, |i| i.resumes == 1 && i.state == ItemState::Running, BOUND).await;
    assert!(k.r.logs(&id, LogStream::Agent).await.contains("EvictionByEvictionAPI"));
    let second = k.object_name(&id).await;
    assert_ne!(second, name, "a new object for the new claim (fence {})", again.fence);
    assert!(k.gone(&volcano(), &name, BOUND).await, "the preempted run's object is removed");
    for p in k.pods_of(&second, 2).await {
        k.fake.set_pod(NS, &p, PodState::Running).unwrap();
        k.fake.set_pod(NS, &p, PodState::Succeeded).unwrap();
    }
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.resumes), (ItemState::Finished, 1), "{:?}", done.reason);
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pytorchjob_is_followed_by_its_conditions_to_succeeded() {
    let replica = |n: u32| json!({"replicas": n, "restartPolicy": "Never", "template": {"spec": {"containers": [{"name": "pytorch"}]}}});
    let k = setup(json!({"namespace": NS, "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "spec": {"pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(1)}}}))
    .await;
    let agent = k.agent();
    let (id, name) = k.launch().await;
    let obj = k.object(&pytorch(), &name).expect("the PyTorchJob is made");
    assert_all_restricted(&obj);
    let pods = k.pods_of(&name, 2).await;
    assert!(pods[0].ends_with("-master-0") && pods[1].ends_with("-worker-0"), "{pods:?}");
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Running).unwrap();
        k.fake.emit(NS, p, None, &["rank up"]).unwrap();
    }
    k.logs_contain(&id, LogStream::Stdout, &format!("[{}/pytorch] rank up", pods[1])).await;
    let running = k.object(&pytorch(), &name).unwrap();
    assert!(running["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Running"), "{running}");
    assert_eq!(k.r.client.get_item(&id).await.unwrap().state, ItemState::Running);
    k.fake.set_pod(NS, &pods[1], PodState::Succeeded).unwrap();
    k.fake.set_pod(NS, &pods[0], PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert_eq!(k.r.logs(&id, LogStream::Stdout).await.lines().count(), 2);
    assert!(k.gone(&pytorch(), &name, BOUND).await);
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_re_adopts_a_custom_run_by_its_marker_and_repeats_no_line() {
    let k = setup(volcano_config()).await;
    let first = k.agent();
    let (id, name) = k.launch().await;
    let pods = k.pods_of(&name, 2).await;
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Running).unwrap();
    }
    // both pods write before the restart and after it: read again from
    // each one's start, their lines interleave in another order, and each
    // is resumed by its own count of what the server holds
    k.fake.emit(NS, &pods[0], None, &["one"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "one").await;
    k.fake.emit(NS, &pods[1], None, &["uno", "due"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "due").await;
    let running = k.r.client.get_item(&id).await.unwrap();
    stop_agent(first).await;
    assert!(k.fake.deletions().is_empty(), "detached at shutdown, nothing deleted: {:?}", k.fake.deletions());
    k.fake.emit(NS, &pods[1], None, &["tre"]).unwrap();
    k.fake.emit(NS, &pods[0], None, &["two"]).unwrap();
    let second = k.agent();
    k.logs_contain(&id, LogStream::Stdout, "two").await;
    k.logs_contain(&id, LogStream::Stdout, "tre").await;
    assert!(k.r.logs(&id, LogStream::Agent).await.contains("re-adopted"));
    let item = k.r.client.get_item(&id).await.unwrap();
    assert_eq!((item.state, item.fence), (ItemState::Running, running.fence), "the same claim goes on");
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Succeeded).unwrap();
    }
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    let log = k.r.logs(&id, LogStream::Stdout).await;
    let of = |pod: &str, c: &str| {
        let prefix = format!("[{pod}/{c}] ");
        log.lines().filter_map(|l| l.strip_prefix(&prefix)).collect::<Vec<_>>()
    };
    assert_eq!(of(&pods[0], "ps"), ["one", "two"], "nothing repeated or lost after the restart:\n{log}");
    assert_eq!(of(&pods[1], "worker"), ["uno", "due", "tre"], "nothing repeated or lost after the restart:\n{log}");
    assert_eq!(log.lines().count(), 5, "{log}");
    assert!(k.gone(&volcano(), &name, BOUND).await);
    stop_agent(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_the_cluster_does_not_serve_fails_the_run_naming_it_and_makes_nothing() {
    let k = setup(json!({"namespace": NS, "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "spec": {"replicatedJobs": [{"name": "w", "template": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main"}]}}}}}]}}))
    .await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Agent)), "{:?}", done.reason);
    let reason = done.reason.unwrap();
    assert!(
        reason.contains("resource_args.kind")
            && reason.contains("'JobSet'")
            && reason.contains("'jobset.x-k8s.io/v1alpha2'"),
        "{reason}"
    );
    let posts: Vec<String> = k.fake.requests().into_iter().filter(|r| r.starts_with("POST")).collect();
    assert!(posts.is_empty(), "nothing was made: {posts:?}");
    stop_agent(agent).await;
}

/// A Deployment and a Service (selecting its pods) for the run.
fn services_config(extra: Value) -> Value {
    let mut c = json!({"namespace": NS, "wait_timeout": 30, "additional_services": [
        {"name": "param_server", "config": {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"labels": {"app": "ps"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ps"}}, "template": {
                "metadata": {"labels": {"app": "ps"}},
                "spec": {"containers": [{"name": "ps", "image": "registry.example/ps:1"}]}}}}},
        {"name": "ps", "config": {"apiVersion": "v1", "kind": "Service",
            "spec": {"selector": {"app": "ps"}, "ports": [{"port": 2222, "targetPort": 2222}]}}}]});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additional_services_are_made_before_the_job_waited_for_and_removed_after_it() {
    let k = setup(services_config(json!({}))).await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let deployments = Res::new("apps", "v1", "deployments");
    let ps_pod = k
        .fake
        .wait_until(BOUND, |f| f.pods(NS).into_iter().find(|p| p["metadata"]["labels"]["app"] == "ps"))
        .await
        .expect("the Deployment's pod");
    let deploy = k.object(&deployments, "param-server").expect("the Deployment, its name made DNS-safe");
    let item = k.r.client.get_item(&id).await.unwrap();
    assert_eq!(deploy["metadata"]["labels"][labels::AUXILIARY], "param-server");
    assert_eq!(deploy["metadata"]["labels"][labels::ITEM], item.id.as_str());
    assert_all_restricted(&deploy);
    assert_eq!(ps_pod["metadata"]["labels"][labels::AUXILIARY], "param-server", "on its pods too");
    k.logs_contain(&id, LogStream::Agent, "waiting for additional service Deployment ml/param-server: 0/1").await;
    k.logs_contain(&id, LogStream::Agent, "waiting for additional service Service ml/ps: no ready endpoint").await;
    let jobs_made = |f: &KubeFake| f.requests().iter().any(|r| r.starts_with("POST /apis/batch/v1/"));
    assert!(!jobs_made(&k.fake), "no Job while the services are not ready");
    let name = k.object_name(&id).await;
    k.fake.set_pod(NS, ps_pod["metadata"]["name"].as_str().unwrap(), PodState::Running).unwrap();
    k.logs_contain(&id, LogStream::Agent, "additional service Service ml/ps is ready").await;
    k.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
    let requests = k.fake.requests();
    let at = |prefix: &str| {
        requests.iter().position(|r| r.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix}: {requests:?}"))
    };
    let job_at = at("POST /apis/batch/v1/namespaces/ml/jobs");
    assert!(at("POST /apis/apps/v1/namespaces/ml/deployments") < job_at, "the Deployment before the Job");
    assert!(at("POST /api/v1/namespaces/ml/services") < job_at, "the Service before the Job");
    let job_pod = k
        .fake
        .wait_until(BOUND, |f| f.pods(NS).into_iter().find(|p| p["metadata"]["labels"]["job-name"] == name))
        .await
        .unwrap();
    let job_pod = job_pod["metadata"]["name"].as_str().unwrap().to_string();
    k.fake.set_pod(NS, &job_pod, PodState::Running).unwrap();
    k.fake.set_pod(NS, &job_pod, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert!(k.gone(&Res::jobs(), &name, BOUND).await, "the Job, its Secrets and both services are removed");
    let left = k
        .fake
        .wait_until(BOUND, |f| {
            let any = !f.objects(&Res::new("", "v1", "endpoints"), NS).is_empty()
                || f.pods(NS).iter().any(|p| p["metadata"]["labels"]["app"] == "ps");
            (!any).then_some(())
        })
        .await;
    assert!(left.is_some(), "the Deployment's pods and the Service's Endpoints go with them: {:?}", k.fake.pods(NS));
    stop_agent(agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_not_ready_in_time_fails_the_start_and_is_removed() {
    let k = setup(services_config(json!({"wait_timeout": 3}))).await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Failed, "{:?}", done.reason);
    let reason = done.reason.unwrap();
    assert!(reason.contains("not ready after 3 s") && reason.contains("Deployment param-server"), "{reason}");
    let name = k.object_name(&id).await;
    assert!(k.gone(&Res::jobs(), &name, BOUND).await, "the services and Secrets made are removed");
    assert!(!k.fake.requests().iter().any(|r| r.starts_with("POST /apis/batch/v1/")), "no Job was made");
    stop_agent(agent).await;
}

/// An unsafe field in an additional service: the server refuses the queue
/// and the launch (its check is `kube_args`, the agent's too), naming the
/// field, and nothing reaches the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_additional_service_is_refused_naming_its_field_and_makes_nothing() {
    let mut config = services_config(json!({}));
    config["additional_services"][1]["config"] = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "spec": {"template": {"spec": {"hostPID": true, "containers": [{"name": "c", "image": "x"}]}}}});
    // the server refuses such a queue (queue_unchecked asserts it); one stored by an older server:
    let k = setup_with(config, true).await;
    let agent = k.agent();
    let req = liftoff_core::api::LaunchRequest { job: "img".into(), ..Default::default() };
    let refused = k.r.client.launch("k8s", &req).await;
    let Err(liftoff_client::ClientError::Api { status: 422, body }) = refused else {
        panic!("the launch is refused: {refused:?}")
    };
    assert!(body.message.contains("additional_services[1].config.spec.template.spec.hostPID"), "{}", body.message);
    // no item, so the agent claims nothing and nothing is made
    k.no_items().await;
    let posts: Vec<String> = k.fake.requests().into_iter().filter(|r| r.starts_with("POST")).collect();
    assert!(posts.is_empty(), "nothing was made: {posts:?}");
    stop_agent(agent).await;
}

/// `wait_for_ready: false` starts the run at once; a stop removes the
/// services with the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_removes_the_additional_services_made_without_waiting() {
    let k = setup(services_config(json!({"wait_for_ready": false}))).await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    k.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
    let name = k.object_name(&id).await;
    let deployments = Res::new("apps", "v1", "deployments");
    assert!(k.object(&deployments, "param-server").is_some(), "made, though never ready");
    assert!(!k.r.logs(&id, LogStream::Agent).await.contains("waiting for additional service"));
    k.r.client.stop_item(&id).await.unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    assert!(k.gone(&Res::jobs(), &name, BOUND).await, "the Job, its Secrets, the Deployment and the Service are gone");
    stop_agent(agent).await;
}

/// A custom kind's manifest with no pod template has nowhere to put the
/// run's image: refused at plan time, naming it, nothing made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_manifest_without_a_pod_template_is_refused_at_plan_time() {
    let k = setup(json!({"namespace": NS, "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "spec": {"minAvailable": 1, "tasks": []}}))
    .await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!((done.state, done.stage), (ItemState::Failed, Some(Stage::Agent)), "{:?}", done.reason);
    let reason = done.reason.unwrap();
    assert!(reason.contains("resource_args.spec") && reason.contains("holds no pod template"), "{reason}");
    assert!(k.fake.requests().iter().all(|r| !r.starts_with("POST")), "nothing was made");
    stop_agent(agent).await;
}

/// A Pod as an additional service is ready once it runs with every
/// container ready; it is hardened like the run's pods and removed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_service_is_waited_for_until_running_and_ready() {
    let k = setup(json!({"namespace": NS, "wait_timeout": 30, "additional_services": [{"name": "cache",
        "config": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"app": "cache"}},
            "spec": {"containers": [{"name": "redis", "image": "registry.example/redis:7"}]}}}]}))
    .await;
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    k.logs_contain(
        &id,
        LogStream::Agent,
        "waiting for additional service Pod ml/cache: pod Pending, 0/1 containers ready",
    )
    .await;
    let pod = k.object(&Res::pods(), "cache").expect("the service's pod");
    assert_all_restricted(&pod);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(pod["metadata"]["labels"][labels::AUXILIARY], "cache");
    assert!(!k.fake.requests().iter().any(|r| r.starts_with("POST /apis/batch/v1/")), "no Job before it is ready");
    k.fake.set_pod(NS, "cache", PodState::Running).unwrap();
    k.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
    let name = k.object_name(&id).await;
    let job_pod = k
        .fake
        .wait_until(BOUND, |f| f.pods(NS).into_iter().find(|p| p["metadata"]["labels"]["job-name"] == name))
        .await
        .unwrap();
    let job_pod = job_pod["metadata"]["name"].as_str().unwrap().to_string();
    k.fake.set_pod(NS, &job_pod, PodState::Running).unwrap();
    k.fake.set_pod(NS, &job_pod, PodState::Succeeded).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    let gone = k.fake.wait_until(BOUND, |f| f.pods(NS).is_empty().then_some(())).await;
    assert!(gone.is_some(), "the service's pod is removed with the run: {:?}", k.fake.pods(NS));
    stop_agent(agent).await;
}

/// Under the fake's RBAC authorizer holding exactly the shipped Role (plus
/// the rule `liftoff permissions --custom-resource batch.volcano.sh/jobs`
/// adds) and ClusterRole: a Volcano run with a Deployment and a Service is
/// made, waited for, watched, logged, re-adopted by a restarted agent,
/// ended and removed, and another is stopped while running, without one
/// refused call;
/// without the custom rule, the run is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_with_the_custom_rule_grants_every_call_of_a_custom_run_with_services() {
    use liftoff_cloud::kube_rbac::{agent_cluster_role, agent_role, custom_resource_rule};
    use liftoff_testkit::fakes::kubernetes::Rbac;
    let mut config = volcano_config();
    config["additional_services"] = services_config(json!({}))["additional_services"].clone();
    config["wait_timeout"] = json!(30);
    let k = setup(config).await;
    let user = "system:serviceaccount:ml:liftoff-agent";
    let mut role = agent_role();
    role["rules"].as_array_mut().unwrap().push(custom_resource_rule("batch.volcano.sh", "jobs"));
    k.fake.set_rbac(Some(Rbac::new(user, NS, &role, &agent_cluster_role()).unwrap()));

    let first = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let ps = k
        .fake
        .wait_until(BOUND, |f| f.pods(NS).into_iter().find(|p| p["metadata"]["labels"]["app"] == "ps"))
        .await
        .expect("the Deployment's pod");
    k.fake.set_pod(NS, ps["metadata"]["name"].as_str().unwrap(), PodState::Running).unwrap();
    k.r.wait_for(&id, |i| i.state == ItemState::Running, BOUND).await;
    let name = k.object_name(&id).await;
    let pods = k.pods_of(&name, 2).await;
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Running).unwrap();
    }
    k.fake.emit(NS, &pods[0], None, &["one"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "one").await;
    stop_agent(first).await;
    let second = k.agent();
    k.fake.emit(NS, &pods[0], None, &["two"]).unwrap();
    k.logs_contain(&id, LogStream::Stdout, "two").await;
    for p in &pods {
        k.fake.set_pod(NS, p, PodState::Succeeded).unwrap();
    }
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Finished, "{:?}", done.reason);
    assert!(k.gone(&volcano(), &name, BOUND).await, "object, Secrets, marker and services removed");

    // stopped while running
    let id = k.r.launch_on("k8s", "img").await;
    let ps = k
        .fake
        .wait_until(BOUND, |f| {
            f.pods(NS)
                .into_iter()
                .find(|p| p["metadata"]["labels"]["app"] == "ps" && p["metadata"]["deletionTimestamp"].is_null())
        })
        .await
        .expect("the new Deployment's pod");
    k.fake.set_pod(NS, ps["metadata"]["name"].as_str().unwrap(), PodState::Running).unwrap();
    k.logs_contain(&id, LogStream::Agent, "created Kubernetes Job").await;
    let name = k.object_name(&id).await;
    for p in k.pods_of(&name, 2).await {
        k.fake.set_pod(NS, &p, PodState::Running).unwrap();
    }
    k.r.client.stop_item(&id).await.unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Stopped, "{:?}", done.reason);
    assert!(k.gone(&volcano(), &name, BOUND).await, "object, Secrets, marker and services removed");
    stop_agent(second).await;
    assert_eq!(k.fake.refused(), Vec::<String>::new(), "every call was granted");

    // without the custom rule the object cannot be made: the run fails, naming the refusal, and leaves nothing
    k.fake.set_rbac(Some(Rbac::new(user, NS, &agent_role(), &agent_cluster_role()).unwrap()));
    let agent = k.agent();
    let id = k.r.launch_on("k8s", "img").await;
    let ps = k
        .fake
        .wait_until(BOUND, |f| {
            f.pods(NS)
                .into_iter()
                .find(|p| p["metadata"]["labels"]["app"] == "ps" && p["metadata"]["deletionTimestamp"].is_null())
        })
        .await
        .expect("the Deployment's pod");
    k.fake.set_pod(NS, ps["metadata"]["name"].as_str().unwrap(), PodState::Running).unwrap();
    let done = k.r.wait_for(&id, |i| i.state.is_terminal(), BOUND).await;
    assert_eq!(done.state, ItemState::Failed, "{:?}", done.reason);
    assert!(done.reason.as_deref().unwrap_or_default().contains("403"), "{:?}", done.reason);
    let name = k.object_name(&id).await;
    assert!(k.gone(&volcano(), &name, BOUND).await, "its Secrets, marker and services are removed");
    stop_agent(agent).await;
}
