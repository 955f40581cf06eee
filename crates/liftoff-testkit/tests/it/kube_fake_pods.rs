//! The kube-fake's kubelet on the test Docker engine: pods made through the
//! API run as real containers (command and args, env from Secrets and
//! ConfigMaps, init containers, side-by-side containers, security
//! context), their status and logs come from the engine, deletion signals
//! them, and the faults a test injects (a cordoned node, an image that
//! cannot be pulled, a missing Secret, an eviction) act on real
//! containers. Nothing the fake made is left on the engine after it.

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use liftoff_testkit::fakes::kubernetes::{INSTANCE_LABEL, KubeFake, KubeFakeOptions, PodDriver, PodState, Res};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(30);

struct Node {
    fake: KubeFake,
    image: String,
    docker: Docker,
    http: reqwest::Client,
}

async fn node() -> Option<Node> {
    let host = liftoff_testkit::required_env("LIFTOFF_TEST_DOCKER_HOST")?;
    let image = liftoff_testkit::required_env("LIFTOFF_TEST_DOCKER_IMAGE")?;
    let fake = KubeFake::start(KubeFakeOptions {
        pods: PodDriver::Docker { docker_host: host.clone() },
        ..KubeFakeOptions::default()
    })
    .await
    .unwrap();
    let docker =
        Docker::connect_with_unix(host.trim_start_matches("unix://"), 60, bollard::API_DEFAULT_VERSION).unwrap();
    Some(Node { fake, image, docker, http: reqwest::Client::new() })
}

impl Node {
    async fn create(&self, plural: &str, body: Value) -> Value {
        let path = if plural == "jobs" { "apis/batch/v1" } else { "api/v1" };
        let r = self
            .http
            .post(format!("{}/{path}/namespaces/default/{plural}", self.fake.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    async fn pod(&self, name: &str, containers: Value, extra: Value) -> String {
        let mut spec = json!({"restartPolicy": "Never", "containers": containers});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        self.create("pods", json!({"metadata": {"name": name}, "spec": spec})).await;
        name.to_string()
    }

    /// The pod's watch events (`type`, object) from now until it is deleted.
    fn watch(&self, name: &str) -> tokio::task::JoinHandle<Vec<(String, Value)>> {
        let url =
            format!("{}/api/v1/namespaces/default/pods?watch=1&fieldSelector=metadata.name%3D{name}", self.fake.url);
        let http = self.http.clone();
        tokio::spawn(async move {
            let mut r = http.get(url).send().await.unwrap();
            let (mut buf, mut seen) = (Vec::new(), Vec::new());
            while let Ok(Some(chunk)) = tokio::time::timeout(BOUND, r.chunk()).await.unwrap() {
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let ev: Value = serde_json::from_slice(&line).unwrap();
                    let kind = ev["type"].as_str().unwrap().to_string();
                    seen.push((kind.clone(), ev["object"].clone()));
                    if kind == "DELETED" {
                        return seen;
                    }
                }
            }
            seen
        })
    }

    fn get(&self, name: &str) -> Option<Value> {
        self.fake.pods("default").into_iter().find(|p| p["metadata"]["name"] == name)
    }

    /// The pod once `f` holds for it.
    async fn until(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let got = self
            .fake
            .wait_until(BOUND, |k| k.pods("default").into_iter().find(|p| p["metadata"]["name"] == name && f(p)))
            .await;
        got.unwrap_or_else(|| panic!("pod {name} never {what}: {:#?}", self.get(name)))
    }

    async fn ended(&self, name: &str) -> Value {
        self.until(name, "ended", |p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).await
    }

    async fn log(&self, name: &str, container: &str) -> String {
        let url = format!("{}/api/v1/namespaces/default/pods/{name}/log?container={container}", self.fake.url);
        self.http.get(url).send().await.unwrap().text().await.unwrap()
    }

    /// The containers on the engine labelled with this fake's instance.
    async fn containers(&self) -> Vec<String> {
        containers_labelled(&self.docker, self.fake.instance().unwrap()).await
    }
}

impl Node {
    /// The volumes on the engine labelled with this fake's instance.
    async fn volumes(&self) -> Vec<String> {
        let label = format!("{INSTANCE_LABEL}={}", self.fake.instance().unwrap());
        let filters = HashMap::from([("label".to_string(), vec![label])]);
        let options = bollard::query_parameters::ListVolumesOptions { filters: Some(filters) };
        let list = self.docker.list_volumes(Some(options)).await.unwrap();
        list.volumes.into_iter().flatten().map(|v| v.name).collect()
    }
}

async fn containers_labelled(docker: &Docker, instance: &str) -> Vec<String> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{INSTANCE_LABEL}={instance}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() }))
        .await
        .unwrap();
    list.into_iter().flat_map(|c| c.names.unwrap_or_default()).collect()
}

fn state<'a>(pod: &'a Value, container: &str) -> &'a Value {
    let all = pod["status"]["containerStatuses"].as_array().into_iter().flatten();
    let mut all = all.chain(pod["status"]["initContainerStatuses"].as_array().into_iter().flatten());
    &all.find(|c| c["name"] == container).unwrap_or(&Value::Null)["state"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_its_containers_with_the_kubernetes_semantics_and_real_exit_codes() {
    let Some(n) = node().await else { return };
    n.create("secrets", json!({"metadata": {"name": "creds"}, "stringData": {"TOKEN": "s3cr3t", "A": "1"}})).await;
    n.create("configmaps", json!({"metadata": {"name": "conf"}, "data": {"MODE": "fast"}})).await;
    let img = &n.image;
    let pod = n
        .pod(
            "work",
            json!([
                {"name": "main", "image": img, "command": ["sh", "-c"],
                 "args": ["echo token=$TOKEN mode=$MODE from=$S_A me=$ME; pwd; id -u; cat /shared/init; echo to-stderr >&2; \
                           (echo x > /tmp/rootfs-write) 2>/dev/null || echo read-only; exit 3"],
                 "workingDir": "/tmp",
                 "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
                         {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "MODE"}}},
                         {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "S_"}],
                 "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                 "securityContext": {"runAsUser": 1234, "runAsGroup": 1234, "allowPrivilegeEscalation": false,
                     "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}},
                {"name": "side", "image": img, "command": ["sh", "-c", "echo side-by-side"]}
            ]),
            json!({
                "initContainers": [{"name": "init", "image": img,
                    "command": ["sh", "-c", "echo initialised > /shared/init; echo init-ran"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
                "volumes": [{"name": "shared", "emptyDir": {}}]
            }),
        )
        .await;
    let running = n.until(&pod, "ran", |p| p["status"]["phase"] != "Pending").await;
    assert!(running["status"]["startTime"].is_string());
    let done = n.ended(&pod).await;
    assert_eq!(done["status"]["phase"], "Failed", "{done:#}");
    let main = state(&done, "main");
    assert_eq!(
        (main["terminated"]["exitCode"].as_i64(), main["terminated"]["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    assert!(main["terminated"]["startedAt"].is_string() && main["terminated"]["finishedAt"].is_string(), "{main}");
    assert_eq!(state(&done, "side")["terminated"]["reason"], "Completed");
    assert_eq!(state(&done, "init")["terminated"]["exitCode"], 0);
    let log = n.log(&pod, "main").await;
    // stdout and stderr in one log; each stream in order (they are separate pipes, as on a node)
    let stdout: Vec<&str> = log.lines().filter(|l| *l != "to-stderr").collect();
    assert_eq!(stdout, ["token=s3cr3t mode=fast from=1 me=work", "/tmp", "1234", "initialised", "read-only"], "{log}");
    assert_eq!(log.lines().filter(|l| *l == "to-stderr").count(), 1, "{log}");
    assert_eq!(n.log(&pod, "side").await, "side-by-side\n");
    assert_eq!(n.log(&pod, "init").await, "init-ran\n");
    assert_eq!(n.containers().await.len(), 3, "kept while the pod is");

    // Secret and ConfigMap volumes: their keys as read-only files
    let script =
        "cat /secret/token /conf/MODE; echo; ls /secret; (echo x > /secret/token) 2>/dev/null || echo read-only";
    let files = json!([{"name": "c", "image": img, "command": ["sh", "-c", script],
        "volumeMounts": [{"name": "s", "mountPath": "/secret"}, {"name": "m", "mountPath": "/conf"}]}]);
    let volumes = json!({"volumes": [
        {"name": "s", "secret": {"secretName": "creds", "items": [{"key": "TOKEN", "path": "token"}]}},
        {"name": "m", "configMap": {"name": "conf"}}]});
    n.pod("files", files, volumes).await;
    let done = n.ended("files").await;
    assert_eq!(done["status"]["phase"], "Succeeded", "{done:#}");
    assert_eq!(n.log("files", "c").await, "s3cr3tfast\ntoken\nread-only\n");
    let del = n.http.delete(format!("{}/api/v1/namespaces/default/pods/{pod}", n.fake.url)).send().await.unwrap();
    assert!(del.status().is_success());
    let del = n.http.delete(format!("{}/api/v1/namespaces/default/pods/files", n.fake.url)).send().await.unwrap();
    assert!(del.status().is_success());
    n.fake.wait_until(BOUND, |k| k.pods("default").is_empty().then_some(())).await.expect("the ended pods go at once");
    // removed by the pods' workers once the pods are gone (no event marks it)
    let until = Instant::now() + BOUND;
    while !n.containers().await.is_empty() || !n.volumes().await.is_empty() {
        assert!(Instant::now() < until, "left after the pods: {:?} {:?}", n.containers().await, n.volumes().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_and_a_deleted_pod_gets_sigterm_then_sigkill_after_its_grace() {
    let Some(n) = node().await else { return };
    let job = json!({"metadata": {"name": "quick"}, "spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": n.image, "command": ["echo", "done"]}]}}}});
    n.create("jobs", job).await;
    let complete = n
        .fake
        .wait_until(BOUND, |k| {
            k.objects(&Res::jobs(), "default").into_iter().find(|j| {
                j["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Complete"))
            })
        })
        .await;
    assert_eq!(complete.expect("the Job completes")["status"]["succeeded"], 1);

    // a trap that answers SIGTERM, and one that ignores it
    let trap = "trap 'echo got-term; exit 143' TERM; echo up; while true; do sleep 0.1; done";
    let deaf = "trap '' TERM; echo up; while true; do sleep 0.1; done";
    for (name, script) in [("polite", trap), ("deaf", deaf)] {
        n.pod(name, json!([{"name": "c", "image": n.image, "command": ["sh", "-c", script]}]), json!({})).await;
    }
    for name in ["polite", "deaf"] {
        n.until(name, "ran", |p| state(p, "c").get("running").is_some()).await;
        let url = format!("{}/api/v1/namespaces/default/pods/{name}/log?container=c&follow=true", n.fake.url);
        let mut follow = n.http.get(url).send().await.unwrap();
        let first = follow.chunk().await.unwrap().unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&first), "up\n", "{name}: its first line, live");
    }
    let watches = [n.watch("polite"), n.watch("deaf")];
    let asked = Instant::now();
    for name in ["polite", "deaf"] {
        let url = format!("{}/api/v1/namespaces/default/pods/{name}?gracePeriodSeconds=2", n.fake.url);
        assert!(n.http.delete(url).send().await.unwrap().status().is_success());
    }
    let mut ends = Vec::new();
    for (name, w) in ["polite", "deaf"].into_iter().zip(watches) {
        let seen = w.await.unwrap();
        let gone_after = asked.elapsed();
        let (kind, last) = seen.last().unwrap();
        assert_eq!(kind, "DELETED", "{name}: {seen:#?}");
        assert!(last["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(last["status"]["phase"], "Failed", "{name}");
        ends.push((name, state(last, "c")["terminated"]["exitCode"].as_i64(), gone_after));
    }
    assert_eq!(ends[0].1, Some(143), "SIGTERM, answered by the trap: {ends:?}");
    assert_eq!(ends[1].1, Some(137), "SIGKILL once the grace ran out: {ends:?}");
    assert!(ends[1].2 >= Duration::from_millis(1900), "not before the grace: {ends:?}");
    let left = |k: &KubeFake| {
        k.pods("default").iter().any(|p| p["metadata"]["name"] == "polite" || p["metadata"]["name"] == "deaf")
    };
    n.fake.wait_until(BOUND, |k| (!left(k)).then_some(())).await.expect("the pods go");
    let instance = n.fake.instance().unwrap().to_string();
    let docker = n.docker.clone();
    drop(n.fake);
    assert_eq!(containers_labelled(&docker, &instance).await, Vec::<String>::new(), "nothing left after the fake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_act_on_real_pods_unschedulable_unpullable_unconfigured_and_evicted() {
    let Some(n) = node().await else { return };
    let img = n.image.clone();
    let long = json!([{"name": "c", "image": img, "command": ["sh", "-c", "echo up; while true; do sleep 0.1; done"]}]);

    // a cordoned node: never started while it is
    n.fake.set_unschedulable(Some("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."));
    n.pod("waits", long.clone(), json!({})).await;
    let p = n.until("waits", "unschedulable", |p| p["status"]["conditions"][0]["reason"] == "Unschedulable").await;
    assert!(p["status"]["conditions"][0]["message"].as_str().unwrap().contains("nvidia.com/gpu"));
    assert!(n.containers().await.is_empty(), "nothing started while unschedulable");
    n.fake.set_unschedulable(None);
    n.until("waits", "ran", |p| p["status"]["phase"] == "Running").await;

    // eviction: the container is killed, the pod stays Failed with its DisruptionTarget
    let evicted =
        PodState::Disrupted { disruption: "EvictionByEvictionAPI".into(), message: "Eviction API: evicting".into() };
    n.fake.set_pod("default", "waits", evicted).unwrap();
    let until = Instant::now() + BOUND;
    loop {
        let docker = n.docker.clone();
        let mine = format!("{INSTANCE_LABEL}={}", n.fake.instance().unwrap());
        let filters = HashMap::from([("label".to_string(), vec!["io.kubernetes.pod.name=waits".to_string(), mine])]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = docker.list_containers(Some(opts)).await.unwrap();
        if list.iter().all(|c| c.state != Some(bollard::models::ContainerSummaryStateEnum::RUNNING)) {
            break;
        }
        assert!(Instant::now() < until, "the evicted pod's container still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = n.get("waits").unwrap();
    assert_eq!(p["status"]["phase"], "Failed");
    assert!(p["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "DisruptionTarget"));

    // an image that cannot be pulled: ErrImagePull, then ImagePullBackOff
    n.pod("nopull", json!([{"name": "c", "image": "127.0.0.1:9/liftoff-test/absent:1"}]), json!({})).await;
    let p = n.until("nopull", "failed its pull", |p| state(p, "c")["waiting"]["reason"] == "ErrImagePull").await;
    assert!(state(&p, "c")["waiting"]["message"].as_str().unwrap().contains("127.0.0.1:9/liftoff-test/absent:1"));
    n.until("nopull", "backed off", |p| state(p, "c")["waiting"]["reason"] == "ImagePullBackOff").await;

    // runAsNonRoot against an image whose user is root: the kubelet refuses to make the container
    let non_root = json!([{"name": "c", "image": img, "command": ["id"], "securityContext": {"runAsNonRoot": true}}]);
    n.pod("rooted", non_root, json!({})).await;
    let p =
        n.until("rooted", "was refused", |p| state(p, "c")["waiting"]["reason"] == "CreateContainerConfigError").await;
    let message = state(&p, "c")["waiting"]["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("container has runAsNonRoot and image will run as root"), "{message}");
    let as_user = json!([{"name": "c", "image": img, "command": ["id", "-u"],
        "securityContext": {"runAsNonRoot": true, "runAsUser": 4242}}]);
    n.pod("unrooted", as_user, json!({})).await;
    n.until("unrooted", "succeeded", |p| p["status"]["phase"] == "Succeeded").await;
    assert_eq!(n.log("unrooted", "c").await, "4242\n");

    // a missing Secret: CreateContainerConfigError until it exists
    let env = json!([{"name": "c", "image": img, "command": ["sh", "-c", "echo key=$K"],
        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]}]);
    n.pod("unconfigured", env, json!({})).await;
    let p =
        n.until("unconfigured", "waited", |p| state(p, "c")["waiting"]["reason"] == "CreateContainerConfigError").await;
    assert_eq!(state(&p, "c")["waiting"]["message"], "secret \"later\" not found");
    n.create("secrets", json!({"metadata": {"name": "later"}, "stringData": {"k": "v"}})).await;
    n.until("unconfigured", "succeeded", |p| p["status"]["phase"] == "Succeeded").await;
    assert_eq!(n.log("unconfigured", "c").await, "key=v\n");
}

/// A pod's image is pulled from an authenticated registry with the login of
/// its `imagePullSecrets`; without one, the registry's refusal is its
/// `ErrImagePull`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_with_the_pods_image_pull_secrets() {
    let Some(n) = node().await else { return };
    let Some(registry) = liftoff_testkit::required_env("LIFTOFF_TEST_REGISTRY") else { return };
    let Some(user) = liftoff_testkit::required_env("LIFTOFF_TEST_REGISTRY_USER") else { return };
    let Some(password) = liftoff_testkit::required_env("LIFTOFF_TEST_REGISTRY_PASSWORD") else { return };
    // the test image pushed under a tag of its own, then forgotten by the engine: only a pull brings it back
    let repo = format!("{registry}/liftoff-test/kube-fake-pull");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let image = format!("{repo}:{tag}");
    let tagging = bollard::query_parameters::TagImageOptions { repo: Some(repo.clone()), tag: Some(tag.clone()) };
    n.docker.tag_image(&n.image, Some(tagging)).await.unwrap();
    let creds = bollard::auth::DockerCredentials {
        username: Some(user.clone()),
        password: Some(password.clone()),
        serveraddress: Some(registry.clone()),
        ..Default::default()
    };
    let push = bollard::query_parameters::PushImageOptions { tag: Some(tag.clone()), ..Default::default() };
    let pushed: Vec<_> = futures::StreamExt::collect(n.docker.push_image(&repo, Some(push), Some(creds))).await;
    for p in &pushed {
        let p = p.as_ref().unwrap();
        assert!(p.error_detail.is_none(), "push: {p:?}");
    }
    let forget = || async {
        let force = bollard::query_parameters::RemoveImageOptions { force: true, ..Default::default() };
        let _ = n.docker.remove_image(&image, Some(force), None).await;
    };
    forget().await;

    let cmd = json!([{"name": "c", "image": image, "command": ["echo", "pulled"]}]);
    n.pod("anonymous", cmd.clone(), json!({})).await;
    let p = n.until("anonymous", "was refused", |p| state(p, "c")["waiting"]["reason"] == "ErrImagePull").await;
    assert!(state(&p, "c")["waiting"]["message"].as_str().unwrap().contains(&image), "{p:#}");

    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{password}"));
    let config = json!({"auths": {registry.clone(): {"auth": auth}}}).to_string();
    n.create(
        "secrets",
        json!({"metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config}}),
    )
    .await;
    n.pod("logged-in", cmd, json!({"imagePullSecrets": [{"name": "pull"}]})).await;
    let done = n.ended("logged-in").await;
    forget().await;
    assert_eq!(done["status"]["phase"], "Succeeded", "{done:#}");
    assert_eq!(n.log("logged-in", "c").await, "pulled\n");
}
