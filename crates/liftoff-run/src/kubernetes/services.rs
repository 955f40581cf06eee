//! `additional_services` (`resource_args.additional_services: [{name,
//! config}]`, reference §6): objects a run needs beside it (a Deployment
//! and a Service for a parameter server, a Redis...). Checked with the job
//! at plan time (`liftoff_core::kube_args`: one unsafe field and nothing is
//! made), hardened like the job's pods, labelled with the run's labels and
//! [`labels::AUXILIARY`], created before the job, waited for (every 2 s up
//! to `wait_timeout`, 300 s by default, unless `wait_for_ready: false`),
//! and deleted when the run ends: the run's env Secret names them
//! ([`labels::SERVICES`]), so whoever removes the run's Secrets removes
//! them too, also after an agent restart. The reference never deletes them.

use super::custom::{CustomKind, pod_templates_mut};
use super::manifest::labels;
use super::manifest::{PodInput, harden_template};
use crate::lines::agent_line;
use crate::runner::LogSender;
use crate::{JobError, JobErrorCode};
use k8s_openapi::api::core::v1::Endpoints;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams, PropagationPolicy};
use liftoff_core::Stage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often readiness is checked (the reference's 2 s).
const POLL: Duration = Duration::from_secs(2);
/// The reference's default `wait_timeout`.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// One additional service as the queue gives it.
#[derive(Debug, Clone)]
pub struct Service {
    /// The object's name: `config.metadata.name`, else `name`, made DNS-safe.
    pub name: String,
    pub kind: CustomKind,
    pub config: Value,
}

/// A run's additional services and how to wait for them.
#[derive(Debug, Clone)]
pub struct Services {
    pub list: Vec<Service>,
    pub wait_for_ready: bool,
    pub wait_timeout: Duration,
}

/// What was made, as the env Secret's annotation records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Made {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// The keys of `resource_args` that are the run's, not the object's.
pub const RUN_KEYS: &[&str] = &["additional_services", "wait_timeout", "wait_for_ready"];

/// A name Kubernetes takes for any kind (a DNS-1035 label: Services need
/// one): lower case, `_` → `-`, other characters dropped, a letter first,
/// at most 63.
pub fn sanitise(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() })
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    s = s.trim_start_matches(|c: char| !c.is_ascii_lowercase()).to_string();
    s.truncate(63);
    s.trim_end_matches('-').to_string()
}

/// The services in `args` (their shape was checked by `kube_args`).
pub fn from_args(args: &Value) -> Result<Services, String> {
    let mut list = Vec::new();
    for (i, s) in args["additional_services"].as_array().into_iter().flatten().enumerate() {
        let config = s["config"].clone();
        let given = config["metadata"]["name"].as_str().or(s["name"].as_str()).unwrap_or_default();
        let name = sanitise(given);
        if name.is_empty() {
            return Err(format!("resource_args.additional_services[{i}].name: '{given}' makes no Kubernetes name"));
        }
        if list.iter().any(|o: &Service| o.name == name && o.config["kind"] == config["kind"]) {
            return Err(format!("resource_args.additional_services[{i}]: a second {} named '{name}'", config["kind"]));
        }
        let kind = CustomKind {
            api_version: config["apiVersion"].as_str().unwrap_or_default().to_string(),
            kind: config["kind"].as_str().unwrap_or_default().to_string(),
        };
        list.push(Service { name, kind, config });
    }
    Ok(Services {
        list,
        wait_for_ready: args["wait_for_ready"].as_bool().unwrap_or(true),
        wait_timeout: args["wait_timeout"].as_u64().map_or(DEFAULT_WAIT, Duration::from_secs),
    })
}

/// A service's object: its name and namespace, the run's labels with
/// [`labels::AUXILIARY`] and [`labels::JOB`] on it and on its pod
/// templates, which are hardened (security context, no token, the pull
/// secret); the run's variables are not given to it.
pub fn service_manifest(
    s: &Service,
    namespace: &str,
    run_labels: &BTreeMap<String, String>,
    job: &str,
    pull_secret: Option<&str>,
) -> Value {
    let mut obj = s.config.clone();
    let mut l = run_labels.clone();
    l.insert(labels::AUXILIARY.into(), s.name.clone());
    l.insert(labels::JOB.into(), job.into());
    let meta = &mut obj["metadata"];
    if !meta.is_object() {
        *meta = json!({});
    }
    meta["name"] = json!(s.name);
    meta["namespace"] = json!(namespace);
    if let Some(o) = meta.as_object_mut() {
        o.remove("generateName");
    }
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in &l {
        meta["labels"][k] = json!(v);
    }
    let none = BTreeMap::new();
    let pod = PodInput {
        labels: &l,
        annotations: &none,
        image: "",
        entrypoint: &[],
        cmd_args: &[],
        env: &none,
        env_secret: "",
        pull_secret,
    };
    for t in pod_templates_mut(&mut obj) {
        harden_template(t, &pod, false);
    }
    obj
}

fn start_err(m: String) -> JobError {
    JobError::new(Stage::Run, JobErrorCode::Start, m)
}

/// Creates each service (in order), then waits for them; on any failure
/// deletes what it made. Returns what was made.
pub async fn create(
    client: &Client,
    ns: &str,
    objects: Vec<(Service, Value)>,
    services: &Services,
    logs: &LogSender,
) -> Result<Vec<Made>, JobError> {
    let mut made: Vec<(Made, ApiResource)> = Vec::new();
    let result = async {
        for (s, obj) in &objects {
            let ar = super::custom::discover(client, &s.kind).await.map_err(|e| {
                JobError::new(
                    e.stage,
                    e.code,
                    e.message.replace("resource_args.kind", "resource_args.additional_services"),
                )
            })?;
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let dynamic: DynamicObject = serde_json::from_value(obj.clone())
                .map_err(|e| start_err(format!("additional service {}: {e}", s.name)))?;
            api.create(&PostParams::default(), &dynamic).await.map_err(|e| {
                start_err(super::kube_err(
                    &format!("Kubernetes refused additional service {} {ns}/{}", ar.kind, s.name),
                    e,
                ))
            })?;
            agent_line(logs, format!("liftoff agent: created additional service {} {ns}/{}", ar.kind, s.name)).await;
            made.push((
                Made { api_version: s.kind.api_version.clone(), kind: ar.kind.clone(), name: s.name.clone() },
                ar,
            ));
        }
        if services.wait_for_ready {
            wait_ready(client, ns, &made, services.wait_timeout, logs).await?;
        }
        Ok::<_, JobError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(made.into_iter().map(|(m, _)| m).collect()),
        Err(e) => {
            let refs: Vec<Made> = made.into_iter().map(|(m, _)| m).collect();
            delete(client, ns, &refs).await;
            Err(e)
        }
    }
}

/// Whether one service is ready, and if not, what it lacks.
async fn readiness(client: &Client, ns: &str, m: &Made, ar: &ApiResource) -> Result<Option<String>, String> {
    let get = |what: &str, e: kube::Error| super::kube_err(&format!("could not read {what} {ns}/{}", m.name), e);
    match (ar.group.as_str(), ar.kind.as_str()) {
        ("apps", "Deployment") | ("", "Pod") => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
            let o = api.get(&m.name).await.map_err(|e| get(&ar.kind, e))?;
            let st = &o.data["status"];
            if ar.kind == "Pod" {
                let phase = st["phase"].as_str().unwrap_or("Pending");
                let statuses = st["containerStatuses"].as_array().cloned().unwrap_or_default();
                let ready = statuses.iter().filter(|c| c["ready"] == true).count();
                let all = o.data["spec"]["containers"].as_array().map_or(0, Vec::len);
                return Ok(
                    (phase != "Running" || ready < all).then(|| format!("pod {phase}, {ready}/{all} containers ready"))
                );
            }
            let want = o.data["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = st["readyReplicas"].as_i64().unwrap_or(0);
            Ok((ready < want).then(|| format!("{ready}/{want} replicas ready")))
        }
        ("", "Service") => {
            let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
            let addresses = match api.get_opt(&m.name).await.map_err(|e| get("the Endpoints of Service", e))? {
                Some(ep) => ep.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum(),
                None => 0,
            };
            Ok((addresses == 0).then(|| "no ready endpoint yet".to_string()))
        }
        _ => Ok(None),
    }
}

/// Checks every service every [`POLL`] until all are ready, writing a line
/// each time one's state changes; fails after `timeout`.
async fn wait_ready(
    client: &Client,
    ns: &str,
    made: &[(Made, ApiResource)],
    timeout: Duration,
    logs: &LogSender,
) -> Result<(), JobError> {
    let started = Instant::now();
    let mut last: Vec<Option<String>> = vec![None; made.len()];
    let mut ready = vec![false; made.len()];
    loop {
        for (i, (m, ar)) in made.iter().enumerate() {
            if ready[i] {
                continue;
            }
            match readiness(client, ns, m, ar).await {
                Ok(None) => {
                    ready[i] = true;
                    agent_line(
                        logs,
                        format!(
                            "liftoff agent: additional service {} {ns}/{} is ready ({} s)",
                            m.kind,
                            m.name,
                            started.elapsed().as_secs()
                        ),
                    )
                    .await;
                }
                Ok(Some(lacks)) | Err(lacks) => {
                    if last[i].as_ref() != Some(&lacks) {
                        agent_line(
                            logs,
                            format!(
                                "liftoff agent: waiting for additional service {} {ns}/{}: {lacks}",
                                m.kind, m.name
                            ),
                        )
                        .await;
                        last[i] = Some(lacks);
                    }
                }
            }
        }
        if ready.iter().all(|r| *r) {
            return Ok(());
        }
        if started.elapsed() + POLL > timeout {
            let waiting: Vec<String> = made
                .iter()
                .zip(&ready)
                .zip(&last)
                .filter(|((_, r), _)| !**r)
                .map(|(((m, _), _), l)| format!("{} {}: {}", m.kind, m.name, l.as_deref().unwrap_or("not ready")))
                .collect();
            return Err(start_err(format!(
                "additional services not ready after {} s (resource_args.wait_timeout): {}",
                timeout.as_secs(),
                waiting.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes the services (their pods in the background); a missing one is fine.
pub async fn delete(client: &Client, ns: &str, made: &[Made]) {
    for m in made {
        let kind = CustomKind { api_version: m.api_version.clone(), kind: m.kind.clone() };
        let ar = match super::custom::discover(client, &kind).await {
            Ok(ar) => ar,
            Err(e) => {
                tracing::warn!(service = %m.name, error = %e.message, "could not find an additional service's kind");
                continue;
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        match api.delete(&m.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(service = %m.name, error = %e, "could not delete an additional service"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised_and_services_labelled_and_hardened() {
        assert_eq!(sanitise("My_Redis.Cache"), "my-rediscache");
        assert_eq!(sanitise("-9lives_"), "lives");
        assert_eq!(sanitise(&"a".repeat(80)).len(), 63);
        let args = json!({"additional_services": [{"name": "Param_Server", "config": {"apiVersion": "apps/v1",
            "kind": "Deployment", "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "ps"}},
            "spec": {"containers": [{"name": "ps", "image": "ps:1"}], "initContainers": [{"name": "i", "image": "b"}]}}}}}],
            "wait_timeout": 30});
        let s = from_args(&args).unwrap();
        assert_eq!((s.wait_for_ready, s.wait_timeout), (true, Duration::from_secs(30)));
        assert_eq!(s.list[0].name, "param-server");
        let run = BTreeMap::from([(labels::RUN.to_string(), "r1".to_string())]);
        let obj = service_manifest(&s.list[0], "ml", &run, "lf-r1-1", Some("lf-r1-1-pull"));
        assert_eq!(obj["metadata"]["name"], "param-server");
        assert_eq!(obj["metadata"]["labels"][labels::AUXILIARY], "param-server");
        assert_eq!(obj["metadata"]["labels"][labels::RUN], "r1");
        let t = &obj["spec"]["template"];
        assert_eq!(t["metadata"]["labels"]["app"], "ps", "the selector's labels are kept");
        assert_eq!(t["metadata"]["labels"][labels::AUXILIARY], "param-server");
        assert_eq!(t["spec"]["containers"][0]["image"], "ps:1", "a service keeps its image");
        assert!(t["spec"]["containers"][0].get("env").is_none(), "and gets none of the run's variables");
        for c in [&t["spec"]["containers"][0], &t["spec"]["initContainers"][0]] {
            assert_eq!(c["securityContext"], super::super::manifest::restricted());
        }
        assert_eq!(t["spec"]["imagePullSecrets"], json!([{"name": "lf-r1-1-pull"}]));
        let defaults = from_args(&json!({})).unwrap();
        assert_eq!((defaults.list.len(), defaults.wait_for_ready, defaults.wait_timeout), (0, true, DEFAULT_WAIT));
    }
}
