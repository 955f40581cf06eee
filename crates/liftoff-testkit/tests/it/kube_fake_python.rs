//! The Kubernetes API fake checked by the official Python client (Debian's
//! python3-kubernetes 22.6.0, which deserialises every answer into its
//! typed models): against `kube-fake --kubeconfig FILE --docker-host URL`,
//! it creates a Job whose pod really runs on the test Docker engine, lists
//! Jobs and pods by label, watches the pod from a list's resourceVersion
//! (ADDED, then MODIFIED up to Succeeded) and reads its log. Stopped with
//! SIGTERM, the fake leaves no container behind. Under `CI` a missing
//! client fails the test (`.ci/kubectl.sh` installs it).

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
image = sys.argv[2]
batch, core = client.BatchV1Api(), client.CoreV1Api()
rv = core.list_namespaced_pod("default", label_selector="app=py").metadata.resource_version
job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "py", "labels": {"app": "py"}},
       "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app": "py"}}, "spec": {
           "restartPolicy": "Never",
           "containers": [{"name": "main", "image": image,
                           "command": ["sh", "-c", "echo hello from python; echo exit soon"]}]}}}}
created = batch.create_namespaced_job("default", job)
events = []
w = watch.Watch()
for ev in w.stream(core.list_namespaced_pod, "default", label_selector="app=py", resource_version=rv,
                   timeout_seconds=60):
    events.append([ev["type"], ev["object"].status.phase])
    if ev["object"].status.phase in ("Succeeded", "Failed"):
        w.stop()
jobs = batch.list_namespaced_job("default", label_selector="app=py")
pods = core.list_namespaced_pod("default", label_selector="job-name=py")
pod = pods.items[0]
term = pod.status.container_statuses[0].state.terminated
print(json.dumps({
    "created_uid": created.metadata.uid,
    "jobs": [j.metadata.name for j in jobs.items],
    "job_succeeded": jobs.items[0].status.succeeded,
    "job_conditions": [c.type for c in jobs.items[0].status.conditions or []],
    "pods": [p.metadata.name for p in pods.items],
    "owner": pod.metadata.owner_references[0].uid,
    "events": events,
    "exit_code": term.exit_code,
    "reason": term.reason,
    "log": core.read_namespaced_pod_log(pod.metadata.name, "default"),
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_lists_watches_and_reads_a_pod_that_really_runs() {
    let Some(python) = liftoff_testkit::required_env("LIFTOFF_TEST_PYTHON_KUBERNETES") else { return };
    let Some(docker_host) = liftoff_testkit::required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(image) = liftoff_testkit::required_env("LIFTOFF_TEST_DOCKER_IMAGE") else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubeconfig");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-fake"));
    // the engine from DOCKER_HOST, as the CLI's default
    cmd.arg("--kubeconfig").arg(&file).env("DOCKER_HOST", &docker_host).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut fake = Terminated(Some(liftoff_testkit::ProcessGroup::spawn(&mut cmd).unwrap()));
    let out = fake.group().child().stdout.take().unwrap();
    let first = std::io::BufReader::new(out).lines().next().unwrap().unwrap();
    assert!(file.exists(), "{first}");
    let label =
        first.split("containers labelled ").nth(1).expect("the fake runs pods on the engine").trim_end_matches(')');

    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let run = Command::new(&python).arg(&script).arg(&file).arg(&image).env("HOME", dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the Python client failed: {stderr}");
    let got: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(got["jobs"], serde_json::json!(["py"]));
    assert_eq!(got["job_succeeded"], 1);
    assert!(got["job_conditions"].as_array().unwrap().iter().any(|c| c == "Complete"), "{got}");
    assert_eq!(got["pods"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(got["owner"], got["created_uid"], "the pod is the Job's");
    let events: Vec<(String, String)> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(events.first(), Some(&("ADDED".to_string(), "Pending".to_string())), "{events:?}");
    assert!(events.contains(&("MODIFIED".into(), "Succeeded".into())), "{events:?}");
    assert!(events[1..].iter().all(|(t, _)| t == "MODIFIED"), "{events:?}");
    assert_eq!((got["exit_code"].as_i64(), got["reason"].as_str()), (Some(0), Some("Completed")));
    assert_eq!(got["log"], "hello from python\nexit soon\n");

    // SIGTERM: the fake ends and removes every container it made
    let status = tokio::task::spawn_blocking(move || fake.terminate()).await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "kube-fake exits cleanly on SIGTERM: {status:?}");
    let docker =
        Docker::connect_with_unix(docker_host.trim_start_matches("unix://"), 60, bollard::API_DEFAULT_VERSION).unwrap();
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let left = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .unwrap();
    assert!(left.is_empty(), "containers left after the fake: {left:?}");
}

/// The fake's process: ended with SIGTERM (so that it removes its
/// containers) when the test ends, pass or fail; SIGKILLed after 30 s.
struct Terminated(Option<liftoff_testkit::ProcessGroup>);

impl Terminated {
    fn group(&mut self) -> &mut liftoff_testkit::ProcessGroup {
        self.0.as_mut().unwrap()
    }

    /// SIGTERM, and its exit status once it has exited (`None` after 30 s).
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut group = self.0.take()?;
        let pid = nix::unistd::Pid::from_raw(group.child().id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = group.child().try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Terminated {
    fn drop(&mut self) {
        self.terminate();
    }
}
