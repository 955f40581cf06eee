//! The Kubernetes API fake checked by a real client: `kubectl` (v1.32)
//! creates, gets, follows logs, waits, watches and deletes through it, as
//! a person would against `kube-fake --kubeconfig FILE`. Under `CI` a
//! missing kubectl fails the test (`.ci/kubectl.sh` provides it).

use serde_json::{Value, json};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Cluster {
    _fake: liftoff_testkit::ProcessGroup,
    url: String,
    kubectl: String,
    config: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Option<Self> {
        let kubectl = liftoff_testkit::required_env("LIFTOFF_TEST_KUBECTL")?;
        let config = tempfile::tempdir().unwrap();
        let file = config.path().join("kubeconfig");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-fake"));
        cmd.arg("--kubeconfig")
            .arg(&file)
            .args(["--manual", "--namespace", "team"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut fake = liftoff_testkit::ProcessGroup::spawn(&mut cmd).unwrap();
        let out = fake.child().stdout.take().unwrap();
        let first = std::io::BufReader::new(out).lines().next().unwrap().unwrap();
        // the line is printed once the kubeconfig is written
        assert!(file.exists(), "{first}");
        let url = first.split_whitespace().nth(3).unwrap().trim_end_matches(';').to_string();
        Some(Self { _fake: fake, url, kubectl, config })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.env("KUBECONFIG", self.config.path().join("kubeconfig")).env("HOME", self.config.path()).args(args);
        c
    }

    /// kubectl's stdout; a failure is the test's.
    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.run(args)).unwrap()
    }

    async fn admin(&self, path: &str, body: Value) {
        let resp = reqwest::Client::new().post(format!("{}/_fake/{path}", self.url)).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }

    /// The pods of job `job` in `ns`, waited for.
    fn pod_of(&self, ns: &str, job: &str) -> String {
        let out = self.run(&["get", "pods", "-n", ns, "-l", &format!("job-name={job}"), "-o", "name"]);
        out.lines().next().unwrap_or_else(|| panic!("no pod for job {job}")).trim_start_matches("pod/").to_string()
    }
}

fn write_job(dir: &Path, name: &str) -> String {
    let file = dir.join(format!("{name}.json"));
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}});
    std::fs::write(&file, job.to_string()).unwrap();
    file.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_gets_follows_waits_and_deletes_through_the_fake() {
    let Some(k) = Cluster::start() else { return };
    let file = write_job(k.config.path(), "hello");
    // the fake serves no OpenAPI schema, so kubectl's client-side validation is off
    k.run(&["create", "--validate=false", "-n", "team", "-f", &file]);
    let job = k.json(&["get", "job", "hello", "-n", "team", "-o", "json"]);
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["completions"], 1, "defaulted as the real server does");
    let again = k.cmd(&["create", "--validate=false", "-n", "team", "-f", &file]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"), "{again:?}");

    let listed =
        k.json(&["get", "pods", "-n", "team", "-l", "job-name in (hello),controller-uid,!absent", "-o", "json"]);
    let pod = &listed["items"][0];
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(name, k.pod_of("team", "hello"));
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "hello");
    assert_eq!(pod["metadata"]["labels"]["controller-uid"], job["metadata"]["uid"]);
    assert_eq!(pod["status"]["phase"], "Pending");

    // logs of a container that has not started: the real server's 400
    let early = k.cmd(&["logs", "-n", "team", &name]).output().unwrap();
    assert!(String::from_utf8_lossy(&early.stderr).contains("is waiting to start"), "{early:?}");

    // `kubectl get pods -w` sees each change as it happens
    let mut watch = k.cmd(&["get", "pods", "-n", "team", "-w", "-o", "json"]).stdout(Stdio::piped()).spawn().unwrap();
    let watched = std::io::BufReader::new(watch.stdout.take().unwrap());
    let mut objects = serde_json::Deserializer::from_reader(watched).into_iter::<Value>();
    let listed_first = objects.next().unwrap().unwrap();
    let mut phases = vec![listed_first["status"]["phase"].as_str().unwrap_or_default().to_string()];

    k.admin(&format!("namespaces/team/pods/{name}/status"), json!({"phase": "Running"})).await;
    k.admin(&format!("namespaces/team/pods/{name}/log"), json!({"lines": ["one", "two"]})).await;
    let mut follow = k.cmd(&["logs", "-f", "-n", "team", "job/hello"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut followed = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(followed.next().unwrap().unwrap(), "one");
    assert_eq!(followed.next().unwrap().unwrap(), "two");
    k.admin(&format!("namespaces/team/pods/{name}/log"), json!({"lines": ["three"]})).await;
    assert_eq!(followed.next().unwrap().unwrap(), "three", "a line written while kubectl follows");
    k.admin(&format!("namespaces/team/pods/{name}/status"), json!({"phase": "Succeeded"})).await;
    assert!(followed.next().is_none(), "the stream ends with the container");
    assert!(follow.wait().unwrap().success());

    k.run(&["wait", "-n", "team", "--for=condition=complete", "job/hello", "--timeout=10s"]);
    let described = k.run(&["describe", "job", "hello", "-n", "team"]);
    assert!(described.contains("1 Succeeded"), "{described}");

    k.run(&["delete", "job", "hello", "-n", "team", "--cascade=foreground", "--timeout=10s"]);
    assert_eq!(k.json(&["get", "jobs,pods", "-n", "team", "-o", "json"])["items"], json!([]));
    let gone = k.cmd(&["get", "job", "hello", "-n", "team"]).output().unwrap();
    assert!(String::from_utf8_lossy(&gone.stderr).contains("jobs.batch \"hello\" not found"), "{gone:?}");

    // pod phases seen by the watch: Pending (listed), Running, Succeeded, then deleted
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(Ok(o)) = objects.next() else { break };
        phases.push(o["status"]["phase"].as_str().unwrap_or_default().to_string());
        if o["metadata"]["deletionTimestamp"].is_string() && phases.len() >= 4 {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(&phases[..3], ["Pending", "Running", "Succeeded"], "{phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_version_gets_410_gone() {
    let Some(k) = Cluster::start() else { return };
    let file = write_job(k.config.path(), "old");
    k.run(&["create", "--validate=false", "-f", &file]);
    let list: Value =
        reqwest::get(format!("{}/apis/batch/v1/namespaces/default/jobs", k.url)).await.unwrap().json().await.unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert_eq!(list["items"][0]["metadata"]["name"], "old");
    assert!(list["items"][0].get("kind").is_none(), "list items carry no kind, as on a real server");
    k.admin("expire", json!({})).await;
    let url = format!("{}/apis/batch/v1/namespaces/default/jobs?watch=1&resourceVersion={rv}", k.url);
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    let event: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    // kubectl lists again and watches from there
    let job = k.json(&["get", "job", "old", "-o", "json"]);
    assert_eq!(job["metadata"]["name"], "old");
    let pod = k.pod_of("default", "old");
    k.admin(&format!("namespaces/default/pods/{pod}/status"), json!({"phase": "Failed", "exitCode": 3})).await;
    k.run(&["wait", "--for=condition=failed", "job/old", "--timeout=10s"]);
    let job = k.json(&["get", "job", "old", "-o", "json"]);
    assert_eq!(job["status"]["failed"], 1);
    assert_eq!(job["status"]["conditions"][1]["reason"], "BackoffLimitExceeded");
}

/// RBAC as kubectl meets it: `auth can-i` is answered by the fake's
/// `SelfSubjectAccessReview`, and a request the rules do not allow is
/// refused with the real server's 403, which kubectl prints as it would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_the_fakes_rbac_in_auth_can_i_and_forbidden_requests() {
    let Some(k) = Cluster::start() else { return };
    let can = |args: &[&str]| {
        let out = k.cmd(&[&["auth", "can-i"], args].concat()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    assert_eq!(can(&["delete", "jobs", "-n", "team"]), (true, "yes".into()), "no rules: everything is allowed");

    let role = json!({"rules": [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]});
    let cluster_role = json!({"rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]}]});
    let user = "system:serviceaccount:team:liftoff-agent";
    k.admin("rbac", json!({"user": user, "namespace": "team", "role": role, "clusterRole": cluster_role})).await;

    assert_eq!(can(&["create", "jobs", "-n", "team"]), (true, "yes".into()));
    assert_eq!(can(&["delete", "jobs", "-n", "team"]), (false, "no".into()));
    assert_eq!(can(&["create", "jobs", "-n", "default"]), (false, "no".into()), "the Role is bound in team");
    assert_eq!(can(&["list", "jobs", "-A"]), (true, "yes".into()), "the ClusterRole lists everywhere");
    assert_eq!(can(&["get", "pods", "--subresource=log", "-n", "team"]), (true, "yes".into()));
    assert_eq!(can(&["get", "pods", "-n", "team"]), (false, "no".into()));

    let file = write_job(k.config.path(), "allowed");
    k.run(&["create", "--validate=false", "-n", "team", "-f", &file]);
    let refused = k.cmd(&["delete", "job", "allowed", "-n", "team"]).output().unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&format!(
            "jobs.batch \"allowed\" is forbidden: User \"{user}\" cannot delete resource \"jobs\" in API group \"batch\" in the namespace \"team\""
        )),
        "{said}"
    );
    let refused = k.cmd(&["get", "secrets", "-n", "team"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot list resource \"secrets\""), "{refused:?}");

    let off = reqwest::Client::new().delete(format!("{}/_fake/rbac", k.url)).send().await.unwrap();
    assert!(off.status().is_success());
    k.run(&["delete", "job", "allowed", "-n", "team"]);
}
