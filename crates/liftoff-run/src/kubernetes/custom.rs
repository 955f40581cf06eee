//! The custom-resource path: a run whose `resource_args` name another
//! `apiVersion`/`kind` than `batch/v1` Job (Volcano's Job, JobSet,
//! Kubeflow's PyTorchJob, ...) becomes that object, through kube-rs's
//! `DynamicObject`. Its plural comes from discovery; every pod template in
//! it (any object holding `spec.containers`) is hardened as a Job's pod is;
//! its state is read from `status` as the reference's monitor does (§6:
//! phase, else conditions, else JobSet's `replicatedJobsStatus`).
//!
//! The manifest and the status mapping do no I/O; `discover`,
//! `delete_custom` and the [`Owner`] impl are the calls.

use super::manifest::{PodInput, harden_template, named};
use super::monitor::{End, Owner};
use crate::{JobError, JobErrorCode};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use liftoff_core::Stage;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The kind a queue's manifest names, when it is not a `batch/v1` Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomKind {
    pub api_version: String,
    pub kind: String,
}

impl CustomKind {
    /// `None` for a `batch/v1` Job (the default when neither is given).
    pub fn of(args: &Value) -> Option<Self> {
        let api_version = args["apiVersion"].as_str().unwrap_or("batch/v1");
        let kind = args["kind"].as_str().unwrap_or("Job");
        ((api_version, kind) != ("batch/v1", "Job"))
            .then(|| Self { api_version: api_version.to_string(), kind: kind.to_string() })
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

/// The kind's resource (its plural, whether namespaced) from the cluster's
/// discovery; a kind the cluster does not serve is a spec error naming it.
pub async fn discover(client: &Client, k: &CustomKind) -> Result<ApiResource, JobError> {
    let unserved = || {
        JobError::new(
            Stage::Agent,
            JobErrorCode::Spec,
            format!(
                "resource_args.kind: the cluster serves no kind '{}' in apiVersion '{}' (is its CRD installed?)",
                k.kind, k.api_version
            ),
        )
    };
    match kube::discovery::pinned_kind(client, &k.gvk()).await {
        Ok((ar, caps)) if caps.scope == kube::discovery::Scope::Namespaced => Ok(ar),
        Ok(_) => Err(JobError::new(
            Stage::Agent,
            JobErrorCode::Spec,
            format!("resource_args.kind: '{}' ({}) is cluster-scoped; a run must be namespaced", k.kind, k.api_version),
        )),
        Err(kube::Error::Discovery(_)) => Err(unserved()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(unserved()),
        Err(e) => Err(JobError::new(
            Stage::Agent,
            JobErrorCode::Engine,
            super::kube_err(&format!("could not look up kind {} ({}) in the cluster", k.kind, k.api_version), e),
        )),
    }
}

/// Whether `v` is a pod template (or a Pod): an object whose `spec` holds
/// a `containers` list.
fn is_pod_template(v: &Value) -> bool {
    v["spec"]["containers"].is_array()
}

/// Every pod template in `v`, outermost first (a pod spec holds none).
pub fn pod_templates_mut(v: &mut Value) -> Vec<&mut Value> {
    fn walk<'a>(v: &'a mut Value, out: &mut Vec<&'a mut Value>) {
        if is_pod_template(v) {
            out.push(v);
            return;
        }
        match v {
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// The paths of the pod templates in `v`, for messages and tests.
pub fn pod_template_paths(v: &Value) -> Vec<String> {
    pod_templates(v).into_iter().map(|(p, _)| p).collect()
}

/// The pod templates in `v` with their paths (`spec.tasks[0].template`).
pub fn pod_templates(v: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
        if is_pod_template(v) {
            out.push((at.to_string(), v));
            return;
        }
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &if at.is_empty() { k.clone() } else { format!("{at}.{k}") }, out);
                }
            }
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| walk(x, &format!("{at}[{i}]"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// The run's custom object: the queue's manifest with its name, namespace,
/// labels and annotations, every pod template hardened ([`harden_template`]).
pub fn custom_manifest(args: &Value, name: &str, namespace: &str, pod: &PodInput<'_>) -> Value {
    let mut obj = named(args, name, namespace, pod);
    for t in pod_templates_mut(&mut obj) {
        harden_template(t, pod, true);
    }
    obj
}

/// The label selector of a custom run's pods: its run and fence, not an
/// additional service's.
pub fn pod_selector(labels: &BTreeMap<String, String>) -> String {
    use super::manifest::labels as l;
    format!(
        "{}={},{}={},!{}",
        l::RUN,
        labels.get(l::RUN).map(String::as_str).unwrap_or_default(),
        l::FENCE,
        labels.get(l::FENCE).map(String::as_str).unwrap_or_default(),
        l::AUXILIARY
    )
}

/// What a custom object's status says, in the reference's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomState {
    Unknown,
    Starting,
    Running,
    Stopping,
    Finished,
    /// Why, from the condition or the status.
    Failed(String),
}

impl CustomState {
    /// The reference's priority among True conditions: finished > failed > stopping > running > starting.
    fn rank(&self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Starting => 1,
            Self::Running => 2,
            Self::Stopping => 3,
            Self::Failed(_) => 4,
            Self::Finished => 5,
        }
    }
}

/// A phase (or a True condition's type) in the reference's terms; `None`
/// for one it does not map.
fn word_state(word: &str, why: &str) -> Option<CustomState> {
    Some(match word.to_ascii_lowercase().as_str() {
        "created" | "pending" | "inqueue" | "queued" => CustomState::Starting,
        "running" | "completing" | "restarting" => CustomState::Running,
        "succeeded" | "completed" | "complete" => CustomState::Finished,
        "failed" | "aborted" | "timeout" | "terminated" => CustomState::Failed(why.to_string()),
        "terminating" | "aborting" => CustomState::Stopping,
        _ => return None,
    })
}

fn reason_text(kind: &str, word: &str, reason: Option<&str>, message: Option<&str>) -> String {
    let mut s = format!("the Kubernetes {kind} ended {word}");
    if let Some(r) = reason.filter(|r| !r.is_empty()) {
        s.push_str(&format!(": {r}"));
    }
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        s.push_str(&format!(": {m}"));
    }
    s
}

/// A custom object's state from its `status` (reference §6): `status.phase`
/// or Volcano's `status.state.phase`; else its True conditions, the
/// highest by the reference's priority; else JobSet's
/// `replicatedJobsStatus` (ready → running, active → starting).
pub fn custom_state(kind: &str, obj: &Value) -> CustomState {
    let status = &obj["status"];
    let (phase, reason, message) = if status["phase"].is_string() {
        (&status["phase"], status["reason"].as_str(), status["message"].as_str())
    } else {
        let st = &status["state"];
        (&st["phase"], st["reason"].as_str(), st["message"].as_str())
    };
    if let Some(p) = phase.as_str()
        && let Some(s) = word_state(p, &reason_text(kind, p, reason, message))
    {
        return s;
    }
    let best = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("true")))
        .filter_map(|c| {
            let t = c["type"].as_str()?;
            word_state(t, &reason_text(kind, t, c["reason"].as_str(), c["message"].as_str()))
        })
        .max_by_key(CustomState::rank);
    if let Some(s) = best {
        return s;
    }
    let jobs = status["replicatedJobsStatus"].as_array();
    let sum = |k: &str| jobs.into_iter().flatten().map(|j| j[k].as_i64().unwrap_or(0)).sum::<i64>();
    if sum("ready") >= 1 {
        CustomState::Running
    } else if sum("active") >= 1 {
        CustomState::Starting
    } else {
        CustomState::Unknown
    }
}

impl Owner for DynamicObject {
    fn end(&self) -> Option<End> {
        let kind = self.types.as_ref().map_or("object", |t| t.kind.as_str());
        match custom_state(kind, &self.data) {
            CustomState::Finished => Some(End::Finished),
            CustomState::Failed(why) => Some(End::Failed(why, None)),
            _ => None,
        }
    }

    /// Lines name their pod and container unless the object has one pod
    /// template of one container and no replica count above 1.
    fn several_pods(&self) -> bool {
        fn replicas_above_one(v: &Value) -> bool {
            match v {
                Value::Object(o) => o.iter().any(|(k, x)| {
                    (matches!(k.as_str(), "replicas" | "parallelism" | "completions") && x.as_i64().unwrap_or(1) > 1)
                        || replicas_above_one(x)
                }),
                Value::Array(a) => a.iter().any(replicas_above_one),
                _ => false,
            }
        }
        let templates = pod_templates(&self.data);
        templates.len() != 1
            || templates.iter().any(|(_, t)| t["spec"]["containers"].as_array().map_or(0, Vec::len) > 1)
            || replicas_above_one(&self.data["spec"])
    }
}

/// Deletes custom object `name` (foreground: its pods first, then each
/// with `grace`: the garbage collector would give them their own) and its
/// run's pods that `selector` finds.
pub async fn delete_custom(
    client: &Client,
    ar: &ApiResource,
    ns: &str,
    name: &str,
    selector: &str,
    grace: Duration,
) -> Result<(), String> {
    let grace = u32::try_from(grace.as_secs()).unwrap_or(u32::MAX);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        grace_period_seconds: Some(grace),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(super::kube_err(&format!("could not delete Kubernetes {} {name}", ar.kind), e)),
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = pods.list(&ListParams::default().labels(selector)).await {
        for p in list.items {
            let _ = pods.delete(&p.name_any(), &DeleteParams::default().grace_period(grace)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::manifest::restricted;
    use super::*;
    use serde_json::json;

    fn input<'a>(
        labels: &'a BTreeMap<String, String>,
        env: &'a BTreeMap<String, String>,
        entrypoint: &'a [String],
    ) -> PodInput<'a> {
        PodInput {
            labels,
            annotations: labels,
            image: "reg/img:1",
            entrypoint,
            cmd_args: &[],
            env,
            env_secret: "lf-r-1-env",
            pull_secret: Some("lf-r-1-pull"),
        }
    }

    #[test]
    fn every_pod_template_of_volcano_jobset_and_pytorchjob_is_found_and_hardened() {
        let volcano = json!({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "spec": {"tasks": [
            {"name": "ps", "replicas": 1, "template": {"spec": {"containers": [{"name": "ps", "image": "ps:1"}]}}},
            {"name": "worker", "replicas": 2, "template": {"spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "w"}, {"name": "side", "image": "side:1"}]}}}]}});
        let jobset = json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "spec": {"replicatedJobs": [
            {"name": "w", "template": {"spec": {"template": {"spec": {"containers": [{}]}}}}}]}});
        let pytorch = json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch"}]}}},
            "Worker": {"replicas": 2, "template": {"spec": {"containers": [{"name": "pytorch"}]}}}}}});
        assert_eq!(pod_template_paths(&volcano), ["spec.tasks[0].template", "spec.tasks[1].template"]);
        assert_eq!(pod_template_paths(&jobset), ["spec.replicatedJobs[0].template.spec.template"]);
        assert_eq!(
            pod_template_paths(&pytorch),
            ["spec.pytorchReplicaSpecs.Master.template", "spec.pytorchReplicaSpecs.Worker.template"]
        );
        let labels = BTreeMap::from([("liftoff.dev/run".to_string(), "r1".to_string())]);
        let env = BTreeMap::from([("LIFTOFF_API_KEY".to_string(), "lft_secret".to_string()), ("A".into(), "1".into())]);
        let entry = ["python".to_string()];
        for obj in [&volcano, &jobset, &pytorch] {
            let made = custom_manifest(obj, "lf-r-1", "ml", &input(&labels, &env, &entry));
            assert!(!made.to_string().contains("lft_secret"), "the key is never inline");
            assert_eq!(made["metadata"]["name"], "lf-r-1");
            assert_eq!(made["metadata"]["labels"]["liftoff.dev/run"], "r1");
            let mut made = made;
            for t in pod_templates_mut(&mut made) {
                assert_eq!(t["metadata"]["labels"]["liftoff.dev/run"], "r1");
                assert_eq!(t["spec"]["imagePullSecrets"], json!([{"name": "lf-r-1-pull"}]));
                assert_eq!(t["spec"]["automountServiceAccountToken"], false);
                let c0 = &t["spec"]["containers"][0];
                assert_eq!((c0["image"].as_str(), &c0["command"]), (Some("reg/img:1"), &json!(["python"])));
                for list in ["containers", "initContainers"] {
                    for c in t["spec"][list].as_array().into_iter().flatten() {
                        assert_eq!(c["securityContext"], restricted(), "{c}");
                        assert!(c["name"].is_string());
                    }
                }
                for c in t["spec"]["containers"].as_array().unwrap() {
                    let key = c["env"].as_array().unwrap().iter().find(|e| e["name"] == "LIFTOFF_API_KEY").unwrap();
                    assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], "lf-r-1-env");
                }
            }
        }
        let made = custom_manifest(&volcano, "lf-r-1", "ml", &input(&labels, &env, &entry));
        let side = &made["spec"]["tasks"][1]["template"]["spec"]["containers"][1];
        assert_eq!(side["image"], "side:1", "a second container keeps its own image");
    }

    fn state(status: Value) -> CustomState {
        custom_state("Job", &json!({ "status": status }))
    }

    #[test]
    fn phases_map_as_the_reference_does_volcano_state_phase_included() {
        for (phase, want) in [
            ("Pending", CustomState::Starting),
            ("Created", CustomState::Starting),
            ("Running", CustomState::Running),
            ("Completing", CustomState::Running),
            ("Succeeded", CustomState::Finished),
            ("Completed", CustomState::Finished),
            ("Terminating", CustomState::Stopping),
        ] {
            assert_eq!(state(json!({"phase": phase})), want, "{phase}");
            assert_eq!(state(json!({"state": {"phase": phase}})), want, "state.phase {phase}");
        }
        for phase in ["Failed", "Aborted", "Timeout", "Terminated"] {
            let CustomState::Failed(why) = state(json!({"state": {"phase": phase, "reason": "PodFailed"}})) else {
                panic!("{phase} is a failure");
            };
            assert!(why.contains(phase) && why.contains("PodFailed"), "{why}");
        }
        assert_eq!(state(json!({})), CustomState::Unknown);
        assert_eq!(state(json!({"phase": "Mystery"})), CustomState::Unknown);
    }

    #[test]
    fn conditions_map_by_priority_when_there_is_no_phase() {
        let cond = |t: &str, s: &str| json!({"type": t, "status": s, "reason": format!("{t}Reason"), "message": "m"});
        let of = |cs: Vec<Value>| state(json!({ "conditions": cs }));
        assert_eq!(of(vec![cond("Created", "True")]), CustomState::Starting);
        assert_eq!(of(vec![cond("Created", "True"), cond("Running", "True")]), CustomState::Running);
        assert_eq!(of(vec![cond("Running", "True"), cond("Terminating", "True")]), CustomState::Stopping);
        assert_eq!(
            of(vec![cond("Created", "True"), cond("Running", "False"), cond("Succeeded", "True")]),
            CustomState::Finished
        );
        assert_eq!(
            of(vec![cond("Failed", "True"), cond("Succeeded", "True")]),
            CustomState::Finished,
            "finished first"
        );
        let CustomState::Failed(why) = of(vec![cond("Running", "True"), cond("Failed", "True")]) else {
            panic!("failed beats running")
        };
        assert!(why.contains("FailedReason"), "{why}");
        assert_eq!(of(vec![cond("Failed", "False")]), CustomState::Unknown, "only True conditions count");
    }

    #[test]
    fn jobset_replicated_jobs_status_gives_running_or_starting() {
        let rj = |ready: i64, active: i64| {
            state(json!({"replicatedJobsStatus": [{"name": "w", "ready": ready, "active": active}]}))
        };
        assert_eq!(rj(1, 1), CustomState::Running);
        assert_eq!(rj(0, 1), CustomState::Starting);
        assert_eq!(rj(0, 0), CustomState::Unknown);
    }

    #[test]
    fn the_kind_is_custom_unless_a_batch_v1_job() {
        assert_eq!(CustomKind::of(&json!({})), None);
        assert_eq!(CustomKind::of(&json!({"apiVersion": "batch/v1", "kind": "Job"})), None);
        let v = CustomKind::of(&json!({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job"})).unwrap();
        assert_eq!(v.gvk(), GroupVersionKind::gvk("batch.volcano.sh", "v1alpha1", "Job"));
        let core = CustomKind::of(&json!({"apiVersion": "v1", "kind": "Pod"})).unwrap();
        assert_eq!(core.gvk(), GroupVersionKind::gvk("", "v1", "Pod"));
    }
}
