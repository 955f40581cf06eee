//! A faithful fake of the Kubernetes API server, for the subset Liftoff's
//! `kubernetes` runner (kube-rs) and `kubectl` use, for tests and for
//! trying Liftoff without a cluster.
//!
//! Served, as JSON: discovery (`/version`, `/api`, `/apis`, `/api/v1`,
//! `/apis/<group>/<version>`); namespaces; any namespaced resource by
//! group/version/plural (`/api/v1/namespaces/<ns>/<plural>[/<name>]`,
//! `/apis/<g>/<v>/namespaces/<ns>/<plural>[/<name>]`): create (a name or
//! `generateName`, 409 `AlreadyExists`, 404 for a missing namespace, 422
//! `Invalid` for a Job without containers, images or a `Never`/`OnFailure`
//! restart policy), get, list with `labelSelector` (`=`, `==`, `!=`,
//! `in`, `notin`, exists, `!`) and `fieldSelector` (`metadata.name`,
//! `metadata.namespace`, `status.phase`), **watch** (`?watch=1`, from a
//! `resourceVersion`: the events after it; without one, `ADDED` for what
//! exists; an `ERROR` event with a 410 `Expired` Status for a version
//! older than the history kept; `timeoutSeconds`; a `BOOKMARK` before a
//! timed-out watch ends when `allowWatchBookmarks` is set), delete with
//! `propagationPolicy` (`Foreground`: the owner is kept with a
//! `deletionTimestamp` and the `foregroundDeletion` finalizer until its
//! dependents are gone; `Background`; `Orphan`, the default for Jobs as on
//! a real server) and `gracePeriodSeconds` (driven by hand, a pod is
//! terminating for `pod_kill_delay`, its running containers end with 143;
//! on Docker, SIGTERM, then SIGKILL when the grace runs out); pod logs
//! (`GET .../pods/<name>/log`, `container`, `follow`, `timestamps`,
//! `sinceTime`, `tailLines`, `limitBytes`, the real server's 400s for a
//! container not started or not named). Errors are `Status` objects as the
//! real server writes them.
//!
//! A Job controller creates a Job's pod (`<job>-<5 chars>`, labels
//! `controller-uid`, `job-name` and their `batch.kubernetes.io/` forms,
//! an `ownerReference`), keeps the Job's status (`active`, `ready`,
//! `succeeded`, `failed`, `SuccessCriteriaMet`/`Complete`,
//! `FailureTarget`/`Failed` with `BackoffLimitExceeded`) and starts a new
//! pod after a failure while `backoffLimit` allows.
//!
//! Controllers for Volcano Jobs, Kubeflow PyTorchJobs, Deployments and
//! Services' Endpoints are in `kubernetes/controllers.rs`; a custom
//! resource's group/version is discovered only once a test registers its
//! CRD ([`KubeFake::add_crd`]), as on a server where it is installed.
//!
//! Who runs pods is [`KubeFakeOptions::pods`]: with [`PodDriver::Docker`]
//! a kubelet (`kubernetes/pods.rs`) runs every stored pod as containers on
//! a Docker engine, so states, exit codes and logs are real, and a test
//! injects faults on real pods (a cordoned node, an eviction, an image
//! that cannot be pulled); with [`PodDriver::Manual`] nothing runs: pods
//! stay `Pending` until a test (or `POST /_fake/...`) drives them
//! ([`KubeFake::set_pod`]) and writes their output ([`KubeFake::emit`]).
//! See the crate's README for where it differs from a real API server.

#![expect(clippy::result_large_err, reason = "a refusal is the Response the handler sends, built where it is found")]

mod access;
mod controllers;
mod kaniko;
mod pods;

pub use access::Rbac;
pub use kaniko::KanikoRig;
pub use pods::{INSTANCE_LABEL, PodDriver, UNSCHEDULABLE};

use super::changes::Changes;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bearer token the written kubeconfig carries (any token, or none, is accepted).
pub const TOKEN: &str = "kube-fake-token";

#[derive(Debug, Clone)]
pub struct KubeFakeOptions {
    pub listen: String,
    /// How long a pod deleted with a grace period stays terminating (pods driven by hand).
    pub pod_kill_delay: Duration,
    /// `Some(d)`: every pod runs at once, writes a line, and succeeds after `d`.
    pub auto_complete: Option<Duration>,
    /// `Some`: kaniko Jobs really build (see `kubernetes/kaniko.rs`).
    pub kaniko: Option<KanikoRig>,
    /// Who runs pods: tests by hand, or a kubelet on a Docker engine (`kubernetes/pods.rs`).
    pub pods: PodDriver,
}

impl Default for KubeFakeOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            pod_kill_delay: Duration::from_millis(100),
            auto_complete: None,
            kaniko: None,
            pods: PodDriver::Manual,
        }
    }
}

/// A resource type: `("", "v1", "pods")`, `("batch", "v1", "jobs")`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Res {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl Res {
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Self { group: group.into(), version: version.into(), plural: plural.into() }
    }
    pub fn pods() -> Self {
        Self::new("", "v1", "pods")
    }
    pub fn jobs() -> Self {
        Self::new("batch", "v1", "jobs")
    }
    pub fn secrets() -> Self {
        Self::new("", "v1", "secrets")
    }
    fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    /// `jobs.batch`, `pods`: how the real server names a resource in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
    fn kind(&self) -> String {
        KNOWN
            .iter()
            .find(|(g, v, p, _)| *g == self.group && *v == self.version && *p == self.plural)
            .map(|k| k.3.to_string())
            .or_else(|| CRD_KINDS.lock().unwrap().get(self).cloned())
            .unwrap_or_else(|| {
                let s = self.plural.trim_end_matches('s');
                let mut c = s.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            })
    }
}

/// The resources discovery lists (any other group/version/plural is served too).
const KNOWN: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "pods", "Pod"),
    ("", "v1", "secrets", "Secret"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("", "v1", "services", "Service"),
    ("", "v1", "endpoints", "Endpoints"),
    ("", "v1", "events", "Event"),
    ("batch", "v1", "jobs", "Job"),
    ("apps", "v1", "deployments", "Deployment"),
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
];

/// The kinds of the custom resources any fake in this process registered
/// (a resource's kind is a fact of its CRD, the same in every fake; which
/// fake serves it is each fake's own `crds`).
static CRD_KINDS: std::sync::LazyLock<Mutex<BTreeMap<Res, String>>> = std::sync::LazyLock::new(Mutex::default);

/// Where a test moves a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum PodState {
    /// Not scheduled (`Unschedulable`, with the scheduler's message) or
    /// waiting for its image (`ErrImagePull`, `ImagePullBackOff`), or just
    /// `ContainerCreating`.
    Pending {
        reason: String,
        message: String,
    },
    Running,
    Succeeded,
    /// Its containers ended with `exit_code` (`reason`: `Error`, `OOMKilled`).
    Failed {
        exit_code: i32,
        reason: String,
    },
    /// Evicted, preempted or shut down: `Failed`, with a `DisruptionTarget`
    /// condition whose reason is `disruption` (`EvictionByEvictionAPI`,
    /// `PreemptionByScheduler`, `TerminationByKubelet`), exit code 137.
    Disrupted {
        disruption: String,
        message: String,
    },
}

impl PodState {
    /// From the admin API's JSON: `{"phase": "Pending", "reason", "message"}`,
    /// `{"phase": "Failed", "exitCode", "reason"}`, `{"phase": "Failed", "disruption"}`.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok(match v["phase"].as_str().unwrap_or_default() {
            "Pending" => Self::Pending { reason: s("reason"), message: s("message") },
            "Running" => Self::Running,
            "Succeeded" => Self::Succeeded,
            "Failed" if v.get("disruption").is_some() => {
                Self::Disrupted { disruption: s("disruption"), message: s("message") }
            }
            "Failed" => Self::Failed {
                exit_code: v["exitCode"].as_i64().unwrap_or(1) as i32,
                reason: Some(s("reason")).filter(|r| !r.is_empty()).unwrap_or_else(|| "Error".into()),
            },
            other => return Err(format!("phase must be Pending, Running, Succeeded or Failed, not '{other}'")),
        })
    }
}

struct Event {
    rv: u64,
    res: Res,
    ns: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<(Res, String, String), Value>,
    namespaces: BTreeMap<String, Value>,
    events: Vec<Event>,
    /// Watches from before this version get 410 Gone.
    oldest: u64,
    /// Bumped to end every open watch.
    watch_epoch: u64,
    /// (namespace, pod, container) → (time, line)
    logs: BTreeMap<(String, String, String), Vec<(jiff::Timestamp, String)>>,
    requests: Vec<String>,
    /// `<plural> <ns>/<name> propagationPolicy=<p> gracePeriodSeconds=<g>` per delete.
    deletions: Vec<String>,
    /// `Some`: requests are authorized by these rules (see `access.rs`).
    rbac: Option<Rbac>,
    /// Each request the rules refused, as `METHOD /path?query`.
    refused: Vec<String>,
    /// The uids of the pods the Docker kubelet runs (it ends their deletion itself).
    kubelet_pods: HashSet<String>,
    /// `Some(message)`: the node is cordoned, new pods are not scheduled.
    unschedulable: Option<String>,
}

struct Shared {
    opts: KubeFakeOptions,
    /// The custom resources registered ([`KubeFake::add_crd`]): (resource, kind).
    crds: Mutex<Vec<(Res, String)>>,
    store: Mutex<Store>,
    changed: Changes,
}

pub struct KubeFake {
    pub url: String,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    /// Stops, and removes every container it made, when dropped.
    kubelet: Option<pods::Kubelet>,
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        self.server.abort();
        self.kubelet.take();
    }
}

type Resp = Result<Response, Response>;

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A `Status` failure as the API server writes it.
fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

fn not_found(res: &Res, name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", res.qualified()),
        json!({"name": name, "group": res.group, "kind": res.plural}),
    )
}

fn bad_request(message: String) -> Response {
    status(400, "BadRequest", message, json!({}))
}

fn invalid(res: &Res, name: &str, causes: Vec<(String, String)>) -> Response {
    let kind = if res.group.is_empty() { res.kind() } else { format!("{}.{}", res.kind(), res.group) };
    let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let causes: Vec<Value> =
        causes.into_iter().map(|(f, m)| json!({"reason": "FieldValueRequired", "message": m, "field": f})).collect();
    status(
        422,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {}", text.join(", ")),
        json!({"name": name, "group": res.group, "kind": res.kind(), "causes": causes}),
    )
}

fn ok_json(v: Value) -> Response {
    axum::Json(v).into_response()
}

impl KubeFake {
    pub async fn start(opts: KubeFakeOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(&opts.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut store = Store { rv: 1, ..Store::default() };
        store.namespaces.insert("default".into(), namespace_object("default", 1));
        let state =
            Arc::new(Shared { opts, crds: Mutex::default(), store: Mutex::new(store), changed: Changes::default() });
        let app = Router::new()
            .route("/version", get(version))
            .route(
                "/api",
                get(|| async {
                    ok_json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
                }),
            )
            .route("/apis", get(api_groups))
            .route("/api/v1", get(|State(st): State<Arc<Shared>>| async move { resource_list(&st, "", "v1") }))
            .route(
                "/apis/{group}/{version}",
                get(|State(st): State<Arc<Shared>>, Path((g, v)): Path<(String, String)>| async move {
                    resource_list(&st, &g, &v)
                }),
            )
            .route("/api/v1/namespaces", get(list_namespaces).post(create_namespace))
            .route("/api/v1/namespaces/{ns}", get(get_namespace))
            .route("/api/v1/{plural}", get(core_all))
            .route("/apis/{group}/{version}/{plural}", get(group_all).post(cluster_create))
            .route("/api/v1/namespaces/{ns}/{plural}", get(core_collection).post(core_create))
            .route("/api/v1/namespaces/{ns}/{plural}/{name}", get(core_get).delete(core_delete))
            .route("/api/v1/namespaces/{ns}/{plural}/{name}/{sub}", get(core_sub))
            .route("/apis/{group}/{version}/namespaces/{ns}/{plural}", get(group_collection).post(group_create))
            .route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", get(group_get).delete(group_delete))
            .route("/_fake/requests", get(admin_requests))
            .route("/_fake/expire", post(admin_expire))
            .route("/_fake/node", post(admin_node))
            .route("/_fake/namespaces/{ns}/pods/{name}/status", post(admin_status))
            .route("/_fake/namespaces/{ns}/pods/{name}/log", post(admin_log))
            .route("/_fake/rbac", post(admin_rbac).delete(admin_rbac_off))
            .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
            .layer(axum::middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let kubelet = match &state.opts.pods {
            PodDriver::Manual => None,
            PodDriver::Docker { docker_host } => Some(pods::Kubelet::start(&state, docker_host).await?),
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state, server, kubelet })
    }

    /// A kubeconfig whose current context is this fake, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-fake\n  cluster:\n    server: {}\nusers:\n- name: \
             kube-fake\n  user:\n    token: {TOKEN}\ncontexts:\n- name: kube-fake\n  context:\n    cluster: kube-fake\n    \
             user: kube-fake\n    namespace: default\ncurrent-context: kube-fake\n",
            self.url
        )
    }

    /// Registers a custom resource (as installing its CRD would): discovery
    /// lists it under `/apis/<group>/<version>` and `/apis`, and objects of
    /// it carry `kind`. Unregistered group/versions are 404 in discovery.
    pub fn add_crd(&self, group: &str, version: &str, kind: &str, plural: &str) {
        let res = Res::new(group, version, plural);
        CRD_KINDS.lock().unwrap().insert(res.clone(), kind.to_string());
        self.state.crds.lock().unwrap().push((res, kind.to_string()));
    }

    /// Adds a namespace (as `kubectl create namespace` would).
    pub fn add_namespace(&self, name: &str) {
        let mut s = self.state.store.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        s.namespaces.insert(name.into(), namespace_object(name, rv));
        drop(s);
        self.state.changed.bump();
    }

    /// The objects of `res` in `ns`, by name.
    pub fn objects(&self, res: &Res, ns: &str) -> Vec<Value> {
        let s = self.state.store.lock().unwrap();
        s.objects.iter().filter(|((r, n, _), _)| r == res && n == ns).map(|(_, v)| v.clone()).collect()
    }

    pub fn pods(&self, ns: &str) -> Vec<Value> {
        self.objects(&Res::pods(), ns)
    }

    /// Every API request received, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.store.lock().unwrap().requests.clone()
    }

    /// Every delete received, with its options (the body's or the query's):
    /// `jobs.batch ns/name propagationPolicy=Foreground gracePeriodSeconds=5`.
    pub fn deletions(&self) -> Vec<String> {
        self.state.store.lock().unwrap().deletions.clone()
    }

    /// `f`'s answer once it has one (re-checked at each change), or `None` after `within`.
    pub async fn wait_until<T>(&self, within: Duration, mut f: impl FnMut(&KubeFake) -> Option<T>) -> Option<T> {
        self.state.changed.wait_until(within, || f(self)).await
    }

    /// Moves a pod to `to` (and its Job on, as the Job controller would).
    pub fn set_pod(&self, ns: &str, name: &str, to: PodState) -> Result<(), String> {
        self.state.set_pod(ns, name, to)
    }

    /// Writes `lines` as the output of a pod's container (its first when `None`).
    pub fn emit(&self, ns: &str, pod: &str, container: Option<&str>, lines: &[&str]) -> Result<(), String> {
        self.state.emit(ns, pod, container, lines.iter().map(|l| l.to_string()).collect())
    }

    /// Authorizes every later request by `rbac` (`None`: everything is
    /// allowed, the default), and answers access reviews from it.
    pub fn set_rbac(&self, rbac: Option<Rbac>) {
        self.state.store.lock().unwrap().rbac = rbac;
    }

    /// Every request the RBAC rules refused, as `METHOD /path?query`.
    pub fn refused(&self) -> Vec<String> {
        self.state.store.lock().unwrap().refused.clone()
    }

    /// Cordons the node (`Some(message)`: pods made from now on stay
    /// `Pending`, `Unschedulable` with that message, and are never started)
    /// or uncordons it (`None`: they are scheduled and run).
    pub fn set_unschedulable(&self, message: Option<&str>) {
        self.state.store.lock().unwrap().unschedulable = message.map(str::to_string);
        self.state.changed.bump();
    }

    /// The id in the [`INSTANCE_LABEL`] of every container this fake's kubelet made.
    pub fn instance(&self) -> Option<&str> {
        self.kubelet.as_ref().map(pods::Kubelet::instance)
    }

    /// Forgets the watch history (a watch from any earlier version now gets
    /// 410 Gone) and ends every open watch, as a compaction and an API
    /// server restart would.
    pub fn expire(&self) {
        self.state.expire();
    }
}

fn namespace_object(name: &str, rv: u64) -> Value {
    json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "uid": uid(), "resourceVersion": rv.to_string(),
        "creationTimestamp": now(), "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

fn uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn suffix() -> String {
    // the real generateName alphabet: no vowels, no look-alikes
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let u = uuid::Uuid::new_v4();
    u.as_bytes()[..5].iter().map(|b| ALPHA[*b as usize % ALPHA.len()] as char).collect()
}

async fn record(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/_fake") {
        let line = format!("{} {}", req.method(), req.uri());
        st.store.lock().unwrap().requests.push(line);
        st.changed.bump();
    }
    next.run(req).await
}

/// Refuses, with the real 403, a request the RBAC rules (when set) do not allow.
async fn authorize(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let refused = {
        let uri = req.uri();
        let mut s = st.store.lock().unwrap();
        let refused = s.rbac.as_ref().and_then(|rbac| {
            let a = access::attributes(req.method().as_str(), uri.path(), uri.query().unwrap_or_default())?;
            (!rbac.allows(&a)).then(|| rbac.forbidden(&a))
        });
        if refused.is_some() {
            s.refused.push(format!("{} {uri}", req.method()));
        }
        refused
    };
    if refused.is_some() {
        // a test waiting for the refusal sees it now (the request was
        // recorded, and waiters woken, before it was authorized)
        st.changed.bump();
    }
    match refused {
        Some(r) => r,
        None => next.run(req).await,
    }
}

async fn version() -> Response {
    ok_json(
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-fake", "gitCommit": "", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
    )
}

/// Every resource served: the built-in ones and the registered CRDs.
fn served(st: &Shared) -> Vec<(String, String, String, String)> {
    let mut all: Vec<(String, String, String, String)> =
        KNOWN.iter().map(|(g, v, p, k)| (g.to_string(), v.to_string(), p.to_string(), k.to_string())).collect();
    for (r, k) in st.crds.lock().unwrap().iter() {
        all.push((r.group.clone(), r.version.clone(), r.plural.clone(), k.clone()));
    }
    all
}

async fn api_groups(State(st): State<Arc<Shared>>) -> Response {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (g, v, ..) in served(&st).into_iter().filter(|k| !k.0.is_empty()) {
        let versions = groups.entry(g).or_default();
        if !versions.contains(&v) {
            versions.push(v);
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| {
            let gvs: Vec<Value> =
                vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            json!({"name": g, "versions": gvs, "preferredVersion": gvs[0]})
        })
        .collect();
    ok_json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

fn resource_list(st: &Shared, group: &str, version: &str) -> Response {
    let mut resources: Vec<Value> = served(st)
        .iter()
        .filter(|k| k.0 == group && k.1 == version)
        .map(|(g, v, plural, kind)| {
            if Res::new(g, v, plural) == access::reviews() {
                return json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": false, "kind": kind,
                    "verbs": ["create"]});
            }
            json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": true, "kind": kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]})
        })
        .collect();
    if resources.is_empty() {
        return status(404, "NotFound", "the server could not find the requested resource".into(), json!({}));
    }
    if group.is_empty() {
        resources
            .push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        resources
            .push(json!({"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
            "verbs": ["create", "delete", "get", "list", "watch"]}));
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ok_json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

async fn list_namespaces(State(st): State<Arc<Shared>>) -> Response {
    let s = st.store.lock().unwrap();
    let items: Vec<Value> = s.namespaces.values().cloned().collect();
    ok_json(
        json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
    )
}

async fn get_namespace(State(st): State<Arc<Shared>>, Path(ns): Path<String>) -> Response {
    match st.store.lock().unwrap().namespaces.get(&ns) {
        Some(n) => ok_json(n.clone()),
        None => not_found(&Res::new("", "v1", "namespaces"), &ns),
    }
}

async fn create_namespace(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the body of the request was in an unknown format: {e}")),
    };
    let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut s = st.store.lock().unwrap();
    if s.namespaces.contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            format!("namespaces \"{name}\" already exists"),
            json!({"name": name, "kind": "namespaces"}),
        );
    }
    s.rv += 1;
    let ns = namespace_object(&name, s.rv);
    s.namespaces.insert(name, ns.clone());
    drop(s);
    st.changed.bump();
    (StatusCode::CREATED, axum::Json(ns)).into_response()
}

type Q = Query<HashMap<String, String>>;

async fn core_collection(st: State<Arc<Shared>>, Path((ns, plural)): Path<(String, String)>, q: Q) -> Response {
    collection(st, Res::new("", "v1", &plural), Some(ns), q.0).await
}
/// Across namespaces (`kubectl get pods -A`).
async fn core_all(st: State<Arc<Shared>>, Path(plural): Path<String>, q: Q) -> Response {
    collection(st, Res::new("", "v1", &plural), None, q.0).await
}
async fn group_all(st: State<Arc<Shared>>, Path((g, v, plural)): Path<(String, String, String)>, q: Q) -> Response {
    collection(st, Res::new(&g, &v, &plural), None, q.0).await
}
async fn group_collection(
    st: State<Arc<Shared>>,
    Path((g, v, ns, plural)): Path<(String, String, String, String)>,
    q: Q,
) -> Response {
    collection(st, Res::new(&g, &v, &plural), Some(ns), q.0).await
}
async fn core_create(
    State(st): State<Arc<Shared>>,
    Path((ns, plural)): Path<(String, String)>,
    q: Q,
    body: Bytes,
) -> Response {
    st.create_as(Res::new("", "v1", &plural), &ns, &body, dry_run(&q.0)).unwrap_or_else(|e| e)
}
async fn group_create(
    State(st): State<Arc<Shared>>,
    Path((g, v, ns, plural)): Path<(String, String, String, String)>,
    q: Q,
    body: Bytes,
) -> Response {
    st.create_as(Res::new(&g, &v, &plural), &ns, &body, dry_run(&q.0)).unwrap_or_else(|e| e)
}
/// `?dryRun=All`: validated and answered as created, nothing stored.
fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|d| d == "All")
}
/// A cluster-scoped create: only access reviews are served.
async fn cluster_create(
    State(st): State<Arc<Shared>>,
    Path((g, v, plural)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    if Res::new(&g, &v, &plural) != access::reviews() {
        return status(404, "NotFound", "the server could not find the requested resource".into(), json!({}));
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let review = if ct.starts_with("application/vnd.kubernetes.protobuf") {
        access::review_from_protobuf(&body)
            .map_err(|e| bad_request(format!("the body of the request was in an unknown format: {e}")))
    } else {
        parse_body(&body)
    };
    match review {
        Ok(review) => access::review(st.store.lock().unwrap().rbac.as_ref(), review),
        Err(e) => e,
    }
}
async fn core_get(State(st): State<Arc<Shared>>, Path((ns, plural, name)): Path<(String, String, String)>) -> Response {
    st.get(&Res::new("", "v1", &plural), &ns, &name)
}
async fn group_get(
    State(st): State<Arc<Shared>>,
    Path((g, v, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> Response {
    st.get(&Res::new(&g, &v, &plural), &ns, &name)
}
async fn core_delete(
    State(st): State<Arc<Shared>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    q: Q,
    body: Bytes,
) -> Response {
    st.delete(&Res::new("", "v1", &plural), &ns, &name, &q.0, &body).unwrap_or_else(|e| e)
}
async fn group_delete(
    State(st): State<Arc<Shared>>,
    Path((g, v, ns, plural, name)): Path<(String, String, String, String, String)>,
    q: Q,
    body: Bytes,
) -> Response {
    st.delete(&Res::new(&g, &v, &plural), &ns, &name, &q.0, &body).unwrap_or_else(|e| e)
}
async fn core_sub(
    State(st): State<Arc<Shared>>,
    Path((ns, plural, name, sub)): Path<(String, String, String, String)>,
    q: Q,
) -> Response {
    if plural != "pods" || sub != "log" {
        return status(404, "NotFound", "the server could not find the requested resource".into(), json!({}));
    }
    pod_log(st, ns, name, q.0).await.unwrap_or_else(|e| e)
}

/// A parsed `labelSelector` / `fieldSelector`.
#[derive(Clone, Default)]
struct Selector {
    labels: Vec<(String, Op)>,
    fields: Vec<(String, bool, String)>,
}

#[derive(Clone)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    Absent,
}

impl Selector {
    fn parse(q: &HashMap<String, String>) -> Result<Self, String> {
        let mut sel = Selector::default();
        if let Some(ls) = q.get("labelSelector").filter(|s| !s.is_empty()) {
            for term in split_terms(ls) {
                let term = term.trim();
                let (key, op) = if let Some((k, rest)) = term.split_once(" notin ") {
                    (k, Op::NotIn(set_values(rest)?))
                } else if let Some((k, rest)) = term.split_once(" in ") {
                    (k, Op::In(set_values(rest)?))
                } else if let Some((k, v)) = term.split_once("!=") {
                    (k, Op::NotIn(vec![v.trim().to_string()]))
                } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                    (k, Op::In(vec![v.trim().to_string()]))
                } else if let Some(k) = term.strip_prefix('!') {
                    (k, Op::Absent)
                } else {
                    (term, Op::Exists)
                };
                let key = key.trim();
                if key.is_empty() || key.contains(' ') {
                    return Err(format!("unable to parse requirement: found '{term}'"));
                }
                sel.labels.push((key.to_string(), op));
            }
        }
        if let Some(fs) = q.get("fieldSelector").filter(|s| !s.is_empty()) {
            for term in fs.split(',') {
                let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
                    (k, false, v)
                } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                    (k, true, v)
                } else {
                    return Err(format!("invalid selector: '{fs}'; can't understand '{term}'"));
                };
                if !matches!(k, "metadata.name" | "metadata.namespace" | "status.phase") {
                    return Err(format!("field label not supported: {k}"));
                }
                sel.fields.push((k.to_string(), eq, v.to_string()));
            }
        }
        Ok(sel)
    }

    fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.labels.iter().all(|(k, op)| {
            let v = labels.get(k).and_then(Value::as_str);
            match op {
                Op::In(vals) => v.is_some_and(|v| vals.iter().any(|x| x == v)),
                Op::NotIn(vals) => v.is_none_or(|v| !vals.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::Absent => v.is_none(),
            }
        }) && self.fields.iter().all(|(k, eq, want)| {
            let got = match k.as_str() {
                "metadata.name" => obj["metadata"]["name"].as_str(),
                "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
                _ => obj["status"]["phase"].as_str(),
            }
            .unwrap_or_default();
            (got == want) == *eq
        })
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b`).
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: found '{s}', expected: '('"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

/// A boolean query parameter as the real server reads it (Go's
/// `strconv.ParseBool`: the Python client sends `True`).
fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn list_kind(res: &Res) -> String {
    format!("{}List", res.kind())
}

/// A list item as the real server writes it: without `kind`/`apiVersion`.
fn as_item(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    v
}

async fn collection(
    State(st): State<Arc<Shared>>,
    res: Res,
    ns: Option<String>,
    q: HashMap<String, String>,
) -> Response {
    let sel = match Selector::parse(&q) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let watching = flag(&q, "watch");
    if !watching {
        let s = st.store.lock().unwrap();
        let items: Vec<Value> = s
            .objects
            .iter()
            .filter(|((r, n, _), v)| *r == res && ns.as_ref().is_none_or(|ns| ns == n) && sel.matches(v))
            .map(|(_, v)| as_item(v))
            .collect();
        return ok_json(json!({"kind": list_kind(&res), "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}));
    }
    let from = q.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let bookmarks = flag(&q, "allowWatchBookmarks");
    let mut pending = VecDeque::new();
    let (last, epoch) = {
        let s = st.store.lock().unwrap();
        match from {
            Some(rv) if rv < s.oldest => {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": format!("too old resource version: {rv} ({})", s.oldest),
                    "reason": "Expired", "code": 410}});
                let body = format!("{gone}\n");
                return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
            Some(rv) => (rv, s.watch_epoch),
            None => {
                for ((r, n, _), v) in &s.objects {
                    if *r == res && ns.as_ref().is_none_or(|ns| ns == n) && sel.matches(v) {
                        pending.push_back(json!({"type": "ADDED", "object": v}));
                    }
                }
                (s.rv, s.watch_epoch)
            }
        }
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let rx = st.changed.subscribe();
    let w = Watch { st: st.clone(), res, ns, sel, last, epoch, pending, rx, deadline, bookmarks, done: false };
    let stream = futures::stream::unfold(w, |mut w| async move {
        let line = w.next().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(format!("{line}\n"))), w))
    });
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
}

struct Watch {
    st: Arc<Shared>,
    res: Res,
    ns: Option<String>,
    sel: Selector,
    last: u64,
    epoch: u64,
    pending: VecDeque<Value>,
    rx: tokio::sync::watch::Receiver<u64>,
    deadline: Option<tokio::time::Instant>,
    bookmarks: bool,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Some(v);
            }
            if self.done {
                return None;
            }
            {
                let s = self.st.store.lock().unwrap();
                if s.watch_epoch != self.epoch {
                    return None;
                }
                for e in s.events.iter().filter(|e| e.rv > self.last) {
                    if e.res == self.res && self.ns.as_ref().is_none_or(|n| *n == e.ns) && self.sel.matches(&e.object) {
                        self.pending.push_back(json!({"type": e.kind, "object": e.object}));
                    }
                }
                self.last = s.rv;
            }
            if !self.pending.is_empty() {
                continue;
            }
            let changed = self.rx.changed();
            match self.deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, changed).await.is_err() {
                        self.done = true;
                        if self.bookmarks {
                            let object = json!({"kind": self.res.kind(), "apiVersion": self.res.api_version(),
                                "metadata": {"resourceVersion": self.last.to_string()}});
                            return Some(json!({"type": "BOOKMARK", "object": object}));
                        }
                        return None;
                    }
                }
                None => {
                    if changed.await.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(bad_request("the body of the request was in an unknown format: not an object".into())),
        Err(e) => Err(bad_request(format!("the body of the request was in an unknown format: {e}"))),
    }
}

/// A DNS-1123 subdomain, as object names must be.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

impl Shared {
    /// Stores `obj` as a new version and records the event (under the lock).
    fn put(s: &mut Store, res: &Res, ns: &str, kind: &'static str, mut obj: Value) -> Value {
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if kind == "DELETED" {
            s.objects.remove(&(res.clone(), ns.to_string(), name));
        } else {
            s.objects.insert((res.clone(), ns.to_string(), name), obj.clone());
        }
        let rv = s.rv;
        s.events.push(Event { rv, res: res.clone(), ns: ns.into(), kind, object: obj.clone() });
        obj
    }

    /// Creates, or with `dry_run` only validates (the namespace must exist
    /// and the name be free, as on a real server) and answers the object.
    fn create_as(self: &Arc<Self>, res: Res, ns: &str, body: &[u8], dry_run: bool) -> Resp {
        let mut obj = parse_body(body)?;
        let kind = res.kind();
        if obj["kind"].as_str().is_some_and(|k| k != kind)
            || obj["apiVersion"].as_str().is_some_and(|a| a != res.api_version())
        {
            return Err(bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                obj["apiVersion"].as_str().unwrap_or_default(),
                res.api_version()
            )));
        }
        obj["kind"] = json!(kind);
        obj["apiVersion"] = json!(res.api_version());
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if let Some(other) = obj["metadata"]["namespace"].as_str().filter(|n| *n != ns) {
            return Err(bad_request(format!(
                "the namespace of the provided object does not match the namespace sent on the request ({other} vs {ns})"
            )));
        }
        let name = match (obj["metadata"]["name"].as_str(), obj["metadata"]["generateName"].as_str()) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => format!("{g}{}", suffix()),
            _ => {
                return Err(invalid(
                    &res,
                    "",
                    vec![("metadata.name".into(), "Required value: name or generateName is required".into())],
                ));
            }
        };
        if !valid_name(&name) {
            return Err(invalid(
                &res,
                &name,
                vec![(
                    "metadata.name".into(),
                    format!(
                        "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                    ),
                )],
            ));
        }
        let mut causes = Vec::new();
        if res == Res::jobs() {
            let spec = &obj["spec"]["template"]["spec"];
            if !matches!(spec["restartPolicy"].as_str(), Some("Never" | "OnFailure")) {
                causes.push((
                    "spec.template.spec.restartPolicy".into(),
                    "Required value: valid values: \"OnFailure\", \"Never\"".into(),
                ));
            }
            check_containers(spec, "spec.template.spec", &mut causes);
        }
        if res == Res::pods() {
            check_containers(&obj["spec"], "spec", &mut causes);
        }
        if !causes.is_empty() {
            return Err(invalid(&res, &name, causes));
        }
        let mut s = self.store.lock().unwrap();
        if !s.namespaces.contains_key(ns) {
            return Err(not_found(&Res::new("", "v1", "namespaces"), ns));
        }
        if s.objects.contains_key(&(res.clone(), ns.to_string(), name.clone())) {
            return Err(status(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", res.qualified()),
                json!({"name": name, "group": res.group, "kind": res.plural}),
            ));
        }
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        m["namespace"] = json!(ns);
        m["uid"] = json!(uid());
        m["creationTimestamp"] = json!(now());
        m["generation"] = json!(1);
        defaults(&res, &mut obj);
        if dry_run {
            return Ok((StatusCode::CREATED, axum::Json(obj)).into_response());
        }
        let created = Self::put(&mut s, &res, ns, "ADDED", obj);
        controllers::after_create(&mut s, &res, ns, &created);
        let mut started = None;
        if res == Res::jobs() && !created["spec"]["suspend"].as_bool().unwrap_or(false) {
            started = Some(Self::job_pod(&mut s, ns, &created));
        }
        drop(s);
        self.changed.bump();
        if let (Some(_), Some(secs)) = (&started, created["spec"]["activeDeadlineSeconds"].as_u64()) {
            let (me, ns, name) = (self.clone(), ns.to_string(), created["metadata"]["name"].clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                me.deadline_exceeded(&ns, name.as_str().unwrap_or_default());
            });
        }
        match (started, &self.opts.kaniko) {
            (Some(pod), Some(rig)) if kaniko::is_kaniko(&created) => {
                kaniko::start(self, rig.clone(), ns.to_string(), pod, created.clone());
            }
            (Some(pod), _) if self.opts.auto_complete.is_some() => {
                let _ = self.set_pod(ns, &pod, PodState::Running);
            }
            _ => {}
        }
        Ok((StatusCode::CREATED, axum::Json(created)).into_response())
    }

    fn get(&self, res: &Res, ns: &str, name: &str) -> Response {
        match self.store.lock().unwrap().objects.get(&(res.clone(), ns.to_string(), name.to_string())) {
            Some(v) => ok_json(v.clone()),
            None => not_found(res, name),
        }
    }

    /// The Job controller: a new pod for `job` (its name), and the Job's `active`.
    fn job_pod(s: &mut Store, ns: &str, job: &Value) -> String {
        let job_name = job["metadata"]["name"].as_str().unwrap_or_default();
        let job_uid = job["metadata"]["uid"].as_str().unwrap_or_default();
        let template = &job["spec"]["template"];
        let mut labels = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        for (k, v) in [
            ("controller-uid", job_uid),
            ("batch.kubernetes.io/controller-uid", job_uid),
            ("job-name", job_name),
            ("batch.kubernetes.io/job-name", job_name),
        ] {
            labels.insert(k.into(), json!(v));
        }
        let mut pod = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": format!("{job_name}-{}", suffix()), "namespace": ns, "labels": labels,
                "annotations": template["metadata"]["annotations"].clone(),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid,
                    "controller": true, "blockOwnerDeletion": true}]},
            "spec": template["spec"].clone(),
        });
        if pod["metadata"]["annotations"].is_null() {
            pod["metadata"].as_object_mut().map(|m| m.remove("annotations"));
        }
        let pod_name = Self::add_pod(s, ns, pod);
        let mut job = job.clone();
        let st = &mut job["status"];
        st["active"] = json!(st["active"].as_i64().unwrap_or(0) + 1);
        if st["startTime"].is_null() {
            st["startTime"] = json!(now());
        }
        Self::put(s, &Res::jobs(), ns, "MODIFIED", job);
        pod_name
    }

    /// Every controller's pod is made here: a uid, its creation time, the
    /// defaults, stored `Pending`. Returns its name.
    fn add_pod(s: &mut Store, ns: &str, mut pod: Value) -> String {
        pod["metadata"]["uid"] = json!(uid());
        pod["metadata"]["creationTimestamp"] = json!(now());
        defaults(&Res::pods(), &mut pod);
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        Self::put(s, &Res::pods(), ns, "ADDED", pod);
        name
    }

    fn set_pod(self: &Arc<Self>, ns: &str, name: &str, to: PodState) -> Result<(), String> {
        let mut s = self.store.lock().unwrap();
        let key = (Res::pods(), ns.to_string(), name.to_string());
        let mut pod = s.objects.get(&key).cloned().ok_or_else(|| format!("no pod {ns}/{name}"))?;
        apply_pod_state(&mut pod, &to);
        let pod = Self::put(&mut s, &Res::pods(), ns, "MODIFIED", pod);
        Self::job_after_pod(&mut s, ns, &pod);
        controllers::after_pod(&mut s, ns, &pod);
        drop(s);
        self.changed.bump();
        if let (Some(d), PodState::Running) = (self.opts.auto_complete, &to) {
            let (me, ns, name) = (self.clone(), ns.to_string(), name.to_string());
            tokio::spawn(async move {
                let _ = me.emit(&ns, &name, None, vec!["kube-fake: the pod is running".into()]);
                tokio::time::sleep(d).await;
                let _ = me.set_pod(&ns, &name, PodState::Succeeded);
            });
        }
        Ok(())
    }

    /// The Job controller after a pod of `pod`'s Job moved.
    fn job_after_pod(s: &mut Store, ns: &str, pod: &Value) {
        let Some(owner) = pod["metadata"]["ownerReferences"].as_array().and_then(|o| o.first()).cloned() else {
            return;
        };
        let key = (Res::jobs(), ns.to_string(), owner["name"].as_str().unwrap_or_default().to_string());
        let Some(mut job) = s.objects.get(&key).cloned() else { return };
        if !job["metadata"]["deletionTimestamp"].is_null() || job["status"]["conditions"].is_array() {
            return;
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let active = job["status"]["active"].as_i64().unwrap_or(0);
        let st = &mut job["status"];
        match phase {
            "Running" => st["ready"] = json!(1),
            "Succeeded" => {
                st["active"] = json!(active - 1);
                st["ready"] = json!(0);
                st["succeeded"] = json!(1);
                st["completionTime"] = json!(now());
                st["conditions"] = json!([
                    condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                    condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
                ]);
            }
            "Failed" => {
                let failed = st["failed"].as_i64().unwrap_or(0) + 1;
                st["active"] = json!(active - 1);
                st["ready"] = json!(0);
                st["failed"] = json!(failed);
                if failed > job["spec"]["backoffLimit"].as_i64().unwrap_or(6) {
                    job["status"]["conditions"] = json!([
                        condition(
                            "FailureTarget",
                            "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit"
                        ),
                        condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                    ]);
                    Self::put(s, &Res::jobs(), ns, "MODIFIED", job);
                } else {
                    let job = Self::put(s, &Res::jobs(), ns, "MODIFIED", job);
                    let _ = Self::job_pod(s, ns, &job);
                }
                return;
            }
            _ => return,
        }
        Self::put(s, &Res::jobs(), ns, "MODIFIED", job);
    }

    /// The Job controller at `activeDeadlineSeconds`: a Job still running
    /// fails (`DeadlineExceeded`) and its running or pending pods are killed.
    fn deadline_exceeded(&self, ns: &str, name: &str) {
        let mut s = self.store.lock().unwrap();
        let Some(mut job) = s.objects.get(&(Res::jobs(), ns.to_string(), name.to_string())).cloned() else { return };
        if job["status"]["conditions"].is_array() {
            return;
        }
        let message = "Job was active longer than specified deadline";
        job["status"]["conditions"] = json!([
            condition("FailureTarget", "DeadlineExceeded", message),
            condition("Failed", "DeadlineExceeded", message)
        ]);
        let pods: Vec<Value> = s
            .objects
            .iter()
            .filter(|((r, n, _), p)| {
                *r == Res::pods()
                    && n == ns
                    && p["metadata"]["labels"]["job-name"] == name
                    && matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running"))
            })
            .map(|(_, p)| p.clone())
            .collect();
        job["status"]["active"] = json!(0);
        job["status"]["failed"] = json!(job["status"]["failed"].as_i64().unwrap_or(0) + pods.len() as i64);
        Self::put(&mut s, &Res::jobs(), ns, "MODIFIED", job);
        for mut p in pods {
            apply_pod_state(&mut p, &PodState::Failed { exit_code: 137, reason: "DeadlineExceeded".into() });
            Self::put(&mut s, &Res::pods(), ns, "MODIFIED", p);
        }
        drop(s);
        self.changed.bump();
    }

    fn emit(&self, ns: &str, pod: &str, container: Option<&str>, lines: Vec<String>) -> Result<(), String> {
        let mut s = self.store.lock().unwrap();
        let p = s
            .objects
            .get(&(Res::pods(), ns.to_string(), pod.to_string()))
            .ok_or_else(|| format!("no pod {ns}/{pod}"))?;
        let names = container_names(p);
        let c = match container {
            Some(c) if names.iter().any(|n| n == c) => c.to_string(),
            Some(c) => return Err(format!("pod {pod} has no container {c}")),
            None => names.first().cloned().ok_or_else(|| format!("pod {pod} has no containers"))?,
        };
        let out = s.logs.entry((ns.into(), pod.into(), c)).or_default();
        for mut l in lines {
            if !l.ends_with('\n') {
                l.push('\n');
            }
            out.push((jiff::Timestamp::now(), l));
        }
        drop(s);
        self.changed.bump();
        Ok(())
    }

    fn expire(&self) {
        let mut s = self.store.lock().unwrap();
        s.rv += 1;
        s.oldest = s.rv;
        s.events.clear();
        s.watch_epoch += 1;
        drop(s);
        self.changed.bump();
    }

    fn delete(self: &Arc<Self>, res: &Res, ns: &str, name: &str, q: &HashMap<String, String>, body: &[u8]) -> Resp {
        let opts: Value = if body.is_empty() { json!({}) } else { parse_body(body)? };
        let policy = q
            .get("propagationPolicy")
            .map(String::as_str)
            .or(opts["propagationPolicy"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| if *res == Res::jobs() { "Orphan".into() } else { "Background".into() });
        if !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(bad_request(format!("propagationPolicy: Unsupported value: \"{policy}\"")));
        }
        let grace =
            q.get("gracePeriodSeconds").and_then(|g| g.parse::<i64>().ok()).or(opts["gracePeriodSeconds"].as_i64());
        let mut s = self.store.lock().unwrap();
        let grace_text = grace.map_or("-".to_string(), |g| g.to_string());
        s.deletions.push(format!(
            "{} {ns}/{name} propagationPolicy={policy} gracePeriodSeconds={grace_text}",
            res.qualified()
        ));
        let key = (res.clone(), ns.to_string(), name.to_string());
        let Some(mut obj) = s.objects.get(&key).cloned() else { return Err(not_found(res, name)) };
        let owner_uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let dependents: Vec<(Res, String)> = s
            .objects
            .iter()
            .filter(|((_, n, _), v)| {
                n == ns
                    && v["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|r| r["uid"] == owner_uid.as_str()))
            })
            .map(|((r, _, n), _)| (r.clone(), n.clone()))
            .collect();
        let answer;
        if policy == "Foreground" && !dependents.is_empty() {
            let m = &mut obj["metadata"];
            if m["deletionTimestamp"].is_null() {
                m["deletionTimestamp"] = json!(now());
                m["deletionGracePeriodSeconds"] = json!(0);
                m["finalizers"] = json!(["foregroundDeletion"]);
            }
            answer = Self::put(&mut s, res, ns, "MODIFIED", obj);
        } else if *res == Res::pods()
            && grace.unwrap_or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)) > 0
        {
            answer = self.terminate_pod(&mut s, ns, obj, grace);
        } else {
            answer = Self::put(&mut s, res, ns, "DELETED", obj);
        }
        for (r, n) in dependents {
            let Some(mut d) = s.objects.get(&(r.clone(), ns.to_string(), n.clone())).cloned() else { continue };
            if policy == "Orphan" {
                d["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
                Self::put(&mut s, &r, ns, "MODIFIED", d);
            } else if r == Res::pods() {
                self.terminate_pod(&mut s, ns, d, None);
            } else {
                Self::put(&mut s, &r, ns, "DELETED", d);
            }
        }
        Self::finish_foreground(&mut s, ns);
        drop(s);
        self.changed.bump();
        Ok(ok_json(answer))
    }

    /// A pod deleted with a grace period: terminating (its running
    /// containers get SIGTERM and end with 143), removed after `pod_kill_delay`.
    fn terminate_pod(self: &Arc<Self>, s: &mut Store, ns: &str, mut pod: Value, grace: Option<i64>) -> Value {
        let kubelet = s.kubelet_pods.contains(pod["metadata"]["uid"].as_str().unwrap_or_default());
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            // a second delete may shorten the grace period, as on a real server
            let was = pod["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
            if kubelet && let Some(g) = grace.filter(|g| *g < was) {
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(g);
                return Self::put(s, &Res::pods(), ns, "MODIFIED", pod);
            }
            return pod;
        }
        let grace = grace.unwrap_or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30));
        pod["metadata"]["deletionTimestamp"] = json!(now());
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        let pod = Self::put(s, &Res::pods(), ns, "MODIFIED", pod);
        if kubelet {
            // its kubelet signals the containers and removes the pod once they have ended
            return pod;
        }
        let (me, ns, name) =
            (self.clone(), ns.to_string(), pod["metadata"]["name"].as_str().unwrap_or_default().to_string());
        let delay = self.opts.pod_kill_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut s = me.store.lock().unwrap();
            let key = (Res::pods(), ns.clone(), name);
            let Some(mut pod) = s.objects.get(&key).cloned() else { return };
            if pod["status"]["phase"] == "Running" {
                apply_pod_state(&mut pod, &PodState::Failed { exit_code: 143, reason: "Error".into() });
                pod = Self::put(&mut s, &Res::pods(), &ns, "MODIFIED", pod);
            }
            Self::put(&mut s, &Res::pods(), &ns, "DELETED", pod);
            Self::finish_foreground(&mut s, &ns);
            drop(s);
            me.changed.bump();
        });
        pod
    }

    /// Removes owners in foreground deletion whose dependents are all gone.
    fn finish_foreground(s: &mut Store, ns: &str) {
        let waiting: Vec<(Res, String, String)> = s
            .objects
            .iter()
            .filter(|((_, n, _), v)| {
                n == ns
                    && v["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
            })
            .map(|((r, _, n), v)| (r.clone(), n.clone(), v["metadata"]["uid"].as_str().unwrap_or_default().to_string()))
            .collect();
        for (r, name, owner) in waiting {
            let left = s.objects.iter().any(|((_, n, _), v)| {
                n == ns
                    && v["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|x| x["uid"] == owner.as_str()))
            });
            if !left && let Some(mut o) = s.objects.get(&(r.clone(), ns.to_string(), name)).cloned() {
                o["metadata"]["finalizers"] = json!([]);
                Self::put(s, &r, ns, "DELETED", o);
            }
        }
    }
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now(), "lastTransitionTime": now()})
}

fn check_containers(spec: &Value, at: &str, causes: &mut Vec<(String, String)>) {
    match spec["containers"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    causes.push((format!("{at}.containers[{i}].name"), "Required value".into()));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push((format!("{at}.containers[{i}].image"), "Required value".into()));
                }
            }
        }
        _ => causes.push((format!("{at}.containers"), "Required value".into())),
    }
}

/// The defaults the real server fills in that clients read back.
fn defaults(res: &Res, obj: &mut Value) {
    if *res == Res::jobs() {
        let spec = &mut obj["spec"];
        for (k, v) in [
            ("backoffLimit", json!(6)),
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ] {
            if spec[k].is_null() {
                spec[k] = v;
            }
        }
        let uid = obj["metadata"]["uid"].clone();
        let name = obj["metadata"]["name"].clone();
        let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
        for (k, v) in [
            ("controller-uid", &uid),
            ("batch.kubernetes.io/controller-uid", &uid),
            ("job-name", &name),
            ("batch.kubernetes.io/job-name", &name),
        ] {
            labels[k] = v.clone();
        }
        obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        if obj["metadata"]["labels"].is_null() {
            obj["metadata"]["labels"] = json!({"controller-uid": uid, "job-name": name,
                "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name});
        }
        obj["status"] = json!({});
    } else if *res == Res::pods() {
        let spec = &mut obj["spec"];
        for (k, v) in [
            ("restartPolicy", json!("Always")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("serviceAccountName", json!("default")),
        ] {
            if spec[k].is_null() {
                spec[k] = v;
            }
        }
        for c in spec["containers"].as_array_mut().into_iter().flatten() {
            for (k, v) in [
                ("imagePullPolicy", json!("IfNotPresent")),
                ("terminationMessagePath", json!("/dev/termination-log")),
                ("terminationMessagePolicy", json!("File")),
            ] {
                if c[k].is_null() {
                    c[k] = v;
                }
            }
        }
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    } else if *res == Res::secrets() {
        if obj["type"].is_null() {
            obj["type"] = json!("Opaque");
        }
        if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")).and_then(|v| v.as_object().cloned())
        {
            use base64::Engine;
            for (k, v) in sd {
                let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                obj["data"][k] = json!(enc);
            }
        }
    }
}

fn container_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .map(str::to_string)
        .collect()
}

fn init_container_names(pod: &Value) -> Vec<String> {
    let inits = pod["spec"]["initContainers"].as_array().into_iter().flatten();
    inits.filter_map(|c| c["name"].as_str()).map(str::to_string).collect()
}

fn apply_pod_state(pod: &mut Value, to: &PodState) {
    let names = container_names(pod);
    let images: Vec<Value> =
        pod["spec"]["containers"].as_array().into_iter().flatten().map(|c| c["image"].clone()).collect();
    let started = pod["status"]["startTime"].as_str().map(str::to_string).unwrap_or_else(now);
    let statuses = |state: Value, ready: bool| -> Value {
        names
            .iter()
            .zip(&images)
            .map(|(n, i)| json!({"name": n, "image": i, "imageID": "", "ready": ready, "restartCount": 0, "started": ready, "state": state}))
            .collect()
    };
    let terminated = |code: i32, reason: &str| json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now()}});
    let scheduled = condition("PodScheduled", "", "");
    let (phase, conds, cstat, reason, message): (&str, Value, Value, Option<&str>, Option<&str>) = match to {
        PodState::Pending { reason, message } if reason == "Unschedulable" => {
            let c = json!({"type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                "lastProbeTime": null, "lastTransitionTime": now()});
            ("Pending", json!([c]), Value::Null, None, None)
        }
        PodState::Pending { reason, message } => {
            let waiting = json!({"waiting": {"reason": if reason.is_empty() { "ContainerCreating" } else { reason.as_str() }, "message": message}});
            ("Pending", json!([scheduled]), statuses(waiting, false), None, None)
        }
        PodState::Running => (
            "Running",
            json!([scheduled, condition("Ready", "", "")]),
            statuses(json!({"running": {"startedAt": started}}), true),
            None,
            None,
        ),
        PodState::Succeeded => {
            ("Succeeded", json!([scheduled]), statuses(terminated(0, "Completed"), false), None, None)
        }
        PodState::Failed { exit_code, reason } => {
            ("Failed", json!([scheduled]), statuses(terminated(*exit_code, reason), false), None, None)
        }
        PodState::Disrupted { disruption, message } => {
            let d = json!({"type": "DisruptionTarget", "status": "True", "reason": disruption, "message": message,
                "lastProbeTime": null, "lastTransitionTime": now()});
            let pod_reason = if disruption == "PreemptionByScheduler" { "Preempted" } else { "Evicted" };
            (
                "Failed",
                json!([scheduled, d]),
                statuses(terminated(137, "Error"), false),
                Some(pod_reason),
                Some(message.as_str()),
            )
        }
    };
    let mut st = json!({"phase": phase, "conditions": conds, "qosClass": "BestEffort"});
    if phase != "Pending" || !cstat.is_null() {
        st["startTime"] = json!(started);
        st["hostIP"] = json!("10.0.0.1");
        st["podIP"] = json!("10.244.0.7");
    }
    if !cstat.is_null() {
        st["containerStatuses"] = cstat;
    }
    if let Some(r) = reason {
        st["reason"] = json!(r);
        st["message"] = json!(message.unwrap_or_default());
    }
    pod["status"] = st;
}

/// Whether a container of `pod` has started (running or terminated), or the
/// real server's 400 for one that has not.
fn container_started(pod: &Value, c: &str) -> Result<bool, String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let all = pod["status"]["containerStatuses"].as_array().into_iter().flatten();
    let mut all = all.chain(pod["status"]["initContainerStatuses"].as_array().into_iter().flatten());
    let st = all.find(|s| s["name"] == c);
    match st.map(|s| &s["state"]) {
        Some(s) if s.get("running").is_some() => Ok(false),
        Some(s) if s.get("terminated").is_some() => Ok(true),
        Some(s) => Err(format!(
            "container \"{c}\" in pod \"{name}\" is waiting to start: {}",
            s["waiting"]["reason"].as_str().unwrap_or("ContainerCreating")
        )),
        None => Err(format!("container \"{c}\" in pod \"{name}\" is waiting to start: ContainerCreating")),
    }
}

async fn pod_log(st: Arc<Shared>, ns: String, name: String, q: HashMap<String, String>) -> Resp {
    let pod = st
        .store
        .lock()
        .unwrap()
        .objects
        .get(&(Res::pods(), ns.clone(), name.clone()))
        .cloned()
        .ok_or_else(|| not_found(&Res::pods(), &name))?;
    let names = container_names(&pod);
    let c = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.contains(c) || init_container_names(&pod).contains(c) => c.clone(),
        Some(c) => return Err(bad_request(format!("container {c} is not valid for pod {name}"))),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    container_started(&pod, &c).map_err(bad_request)?;
    let follow = flag(&q, "follow");
    let stamps = flag(&q, "timestamps");
    let since = match q.get("sinceTime") {
        Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| bad_request(format!("sinceTime: {e}")))?),
        None => None,
    };
    let tail = q.get("tailLines").and_then(|t| t.parse::<usize>().ok());
    let key = (ns.clone(), name.clone(), c.clone());
    let (first, read): (Vec<(jiff::Timestamp, String)>, usize) = {
        let s = st.store.lock().unwrap();
        let all = s.logs.get(&key).cloned().unwrap_or_default();
        let read = all.len();
        let all: Vec<_> = all.into_iter().filter(|(t, _)| since.is_none_or(|s| *t >= s)).collect();
        let first = match tail {
            Some(n) => all[all.len().saturating_sub(n)..].to_vec(),
            None => all,
        };
        (first, read)
    };
    let mut text: String = first.iter().map(|l| log_line(l, stamps)).collect();
    if let Some(l) = q.get("limitBytes").and_then(|t| t.parse::<usize>().ok()) {
        let mut cut = l.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if !follow {
        return Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response());
    }
    // follow: what is there, then each new line, until the container has ended
    let f = Follow { st, key: (ns, name, c), rx: None, first: Some(text), read, done: false, stamps };
    let stream = futures::stream::unfold(f, |mut f| async move {
        let chunk = f.next().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), f))
    });
    Ok(([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(stream)).into_response())
}

struct Follow {
    st: Arc<Shared>,
    key: (String, String, String),
    rx: Option<tokio::sync::watch::Receiver<u64>>,
    first: Option<String>,
    read: usize,
    done: bool,
    stamps: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<String> {
        if self.rx.is_none() {
            self.rx = Some(self.st.changed.subscribe());
        }
        if let Some(t) = self.first.take() {
            return Some(t);
        }
        loop {
            if self.done {
                return None;
            }
            let (new, ended) = {
                let s = self.st.store.lock().unwrap();
                let l = s.logs.get(&self.key).map(Vec::as_slice).unwrap_or_default();
                let new: Vec<_> = l[self.read.min(l.len())..].to_vec();
                self.read = l.len();
                let (ns, name, c) = &self.key;
                let pod = s.objects.get(&(Res::pods(), ns.clone(), name.clone()));
                (new, pod.is_none_or(|p| container_started(p, c) != Ok(false)))
            };
            self.done = ended;
            if !new.is_empty() {
                return Some(new.iter().map(|l| log_line(l, self.stamps)).collect());
            }
            if !ended && self.rx.as_mut()?.changed().await.is_err() {
                return None;
            }
        }
    }
}

fn log_line((t, l): &(jiff::Timestamp, String), stamps: bool) -> String {
    if stamps { format!("{} {l}", t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) } else { l.clone() }
}

/// `POST /_fake/rbac` `{"user", "namespace", "role", "clusterRole"}` (the
/// Role bound in `namespace`; both Kubernetes objects): requests are
/// authorized by them from now on. `DELETE` turns it off.
async fn admin_rbac(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let user = v["user"].as_str().unwrap_or("system:serviceaccount:default:default");
    let ns = v["namespace"].as_str().unwrap_or("default");
    match Rbac::new(user, ns, &v["role"], &v["clusterRole"]) {
        Ok(r) => {
            st.store.lock().unwrap().rbac = Some(r);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(e),
    }
}

async fn admin_rbac_off(State(st): State<Arc<Shared>>) -> Response {
    st.store.lock().unwrap().rbac = None;
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_requests(State(st): State<Arc<Shared>>) -> Response {
    ok_json(json!(st.store.lock().unwrap().requests))
}

async fn admin_expire(State(st): State<Arc<Shared>>) -> Response {
    st.expire();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_node(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let message = v["message"].as_str().unwrap_or(UNSCHEDULABLE).to_string();
    st.store.lock().unwrap().unschedulable = (v["unschedulable"] == true).then_some(message);
    st.changed.bump();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_status(
    State(st): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let to = match parse_body(&body).map(|v| PodState::from_json(&v)) {
        Ok(Ok(to)) => to,
        Ok(Err(e)) => return bad_request(e),
        Err(r) => return r,
    };
    match st.set_pod(&ns, &name, to) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => status(404, "NotFound", e, json!({})),
    }
}

async fn admin_log(State(st): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>, body: Bytes) -> Response {
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let lines: Vec<String> =
        v["lines"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).map(str::to_string).collect();
    match st.emit(&ns, &name, v["container"].as_str(), lines) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => status(404, "NotFound", e, json!({})),
    }
}
