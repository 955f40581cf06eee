//! The fake's controllers beyond the Job's: what the custom-resource path
//! and `additional_services` are tested against. Each reacts to its
//! object's creation ([`after_create`]) and to a pod's move
//! ([`after_pod`]), under the store's lock, as the Job controller does.
//!
//! - **Volcano** `batch.volcano.sh/v1alpha1` Job: a pod per
//!   `spec.tasks[].replicas` (`<job>-<task>-<i>`, labels
//!   `volcano.sh/job-name`, `volcano.sh/task-spec`), its
//!   `status.state.phase` rolled up from them: `Pending`, `Running` once
//!   one runs, `Completed` once all succeeded, `Failed` (reason
//!   `PodFailed`) once one failed; `pending`/`running`/`succeeded`/`failed`
//!   counts.
//! - **Kubeflow** `kubeflow.org/v1` PyTorchJob: a pod per
//!   `spec.pytorchReplicaSpecs.<role>.replicas` (`<job>-<role>-<i>`,
//!   labels `training.kubeflow.org/job-name`, `.../replica-type`,
//!   `.../replica-index`), conditions `Created`, `Running` (once one
//!   runs), `Succeeded` (once the Master, or every pod without one,
//!   succeeded) or `Failed` (once one failed), `Running` then `False`.
//! - **Deployment** `apps/v1`: `spec.replicas` (1) pods from its template,
//!   owned by the Deployment itself (no ReplicaSet), `status.replicas`,
//!   `readyReplicas` (pods Running with every container ready).
//! - **Service** `v1`: an `Endpoints` of the same name (owned by it) whose
//!   addresses are the ready pods its `spec.selector` matches.
//!
//! Their pods are made by [`Shared::add_pod`] and follow the fake's pod
//! lifecycle: `Pending` until a test moves them.

use super::{Res, Shared, Store, condition, now, suffix};
use serde_json::{Map, Value, json};

fn volcano() -> Res {
    Res::new("batch.volcano.sh", "v1alpha1", "jobs")
}
fn pytorch() -> Res {
    Res::new("kubeflow.org", "v1", "pytorchjobs")
}
fn deployments() -> Res {
    Res::new("apps", "v1", "deployments")
}
fn services() -> Res {
    Res::new("", "v1", "services")
}
fn endpoints() -> Res {
    Res::new("", "v1", "endpoints")
}

/// An owner reference to `owner` (a stored object of `res`).
fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

/// A pod of `owner` from `template`, with `labels` added to the template's.
fn owned_pod(s: &mut Store, ns: &str, owner: &Value, template: &Value, name: String, labels: Map<String, Value>) {
    let mut all = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    all.extend(labels);
    let mut meta = json!({"name": name, "namespace": ns, "labels": all, "ownerReferences": [owner_ref(owner)]});
    if template["metadata"]["annotations"].is_object() {
        meta["annotations"] = template["metadata"]["annotations"].clone();
    }
    let pod = json!({"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": template["spec"].clone()});
    Shared::add_pod(s, ns, pod);
}

/// After `obj` (of `res`) was created.
pub(super) fn after_create(s: &mut Store, res: &Res, ns: &str, obj: &Value) {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let status;
    if *res == volcano() {
        for task in obj["spec"]["tasks"].as_array().into_iter().flatten() {
            let tname = task["name"].as_str().unwrap_or("task");
            for i in 0..task["replicas"].as_u64().unwrap_or(1) {
                let labels = Map::from_iter([
                    ("volcano.sh/job-name".into(), json!(name)),
                    ("volcano.sh/task-spec".into(), json!(tname)),
                ]);
                owned_pod(s, ns, obj, &task["template"], format!("{name}-{tname}-{i}"), labels);
            }
        }
        status = json!({"state": {"phase": "Pending", "lastTransitionTime": now()}, "pending": 0, "running": 0,
            "succeeded": 0, "failed": 0, "minAvailable": obj["spec"]["minAvailable"].as_u64().unwrap_or(1)});
    } else if *res == pytorch() {
        for (role, spec) in obj["spec"]["pytorchReplicaSpecs"].as_object().into_iter().flatten() {
            let r = role.to_lowercase();
            for i in 0..spec["replicas"].as_u64().unwrap_or(1) {
                let labels = Map::from_iter([
                    ("training.kubeflow.org/job-name".into(), json!(name)),
                    ("training.kubeflow.org/replica-type".into(), json!(r)),
                    ("training.kubeflow.org/replica-index".into(), json!(i.to_string())),
                ]);
                owned_pod(s, ns, obj, &spec["template"], format!("{name}-{r}-{i}"), labels);
            }
        }
        status = json!({"conditions": [condition("Created", "PyTorchJobCreated",
            &format!("PyTorchJob {name} is created."))], "replicaStatuses": {}});
    } else if *res == deployments() {
        let hash: String = suffix();
        for _ in 0..obj["spec"]["replicas"].as_u64().unwrap_or(1) {
            let labels = Map::from_iter([("pod-template-hash".into(), json!(hash))]);
            owned_pod(s, ns, obj, &obj["spec"]["template"], format!("{name}-{hash}-{}", suffix()), labels);
        }
        status = deployment_status(s, ns, obj);
    } else if *res == services() {
        let ep = json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns,
            "uid": super::uid(), "creationTimestamp": now(), "labels": obj["metadata"]["labels"].clone(),
            "ownerReferences": [owner_ref(obj)]}, "subsets": subsets(s, ns, obj)});
        Shared::put(s, &endpoints(), ns, "ADDED", ep);
        return;
    } else {
        return;
    }
    let mut obj = obj.clone();
    obj["status"] = status;
    Shared::put(s, res, ns, "MODIFIED", obj);
}

/// After pod `pod` moved: its owner's status, and the Endpoints of the
/// Services that select it.
pub(super) fn after_pod(s: &mut Store, ns: &str, pod: &Value) {
    if let Some(owner) = pod["metadata"]["ownerReferences"].as_array().and_then(|o| o.first()) {
        let name = owner["name"].as_str().unwrap_or_default().to_string();
        let res = match (owner["apiVersion"].as_str(), owner["kind"].as_str()) {
            (Some("batch.volcano.sh/v1alpha1"), Some("Job")) => Some(volcano()),
            (Some("kubeflow.org/v1"), Some("PyTorchJob")) => Some(pytorch()),
            (Some("apps/v1"), Some("Deployment")) => Some(deployments()),
            _ => None,
        };
        if let Some(res) = res
            && let Some(mut obj) = s.objects.get(&(res.clone(), ns.to_string(), name)).cloned()
            && obj["metadata"]["deletionTimestamp"].is_null()
        {
            let new = if res == volcano() {
                volcano_status(s, ns, &obj)
            } else if res == pytorch() {
                pytorch_status(s, ns, &obj)
            } else {
                deployment_status(s, ns, &obj)
            };
            if new != obj["status"] {
                obj["status"] = new;
                Shared::put(s, &res, ns, "MODIFIED", obj);
            }
        }
    }
    let svcs: Vec<Value> =
        s.objects.iter().filter(|((r, n, _), _)| *r == services() && n == ns).map(|(_, v)| v.clone()).collect();
    for svc in svcs {
        let key = (endpoints(), ns.to_string(), svc["metadata"]["name"].as_str().unwrap_or_default().to_string());
        let new = subsets(s, ns, &svc);
        if let Some(mut ep) = s.objects.get(&key).cloned()
            && ep["subsets"] != new
        {
            ep["subsets"] = new;
            Shared::put(s, &endpoints(), ns, "MODIFIED", ep);
        }
    }
}

/// The pods `owner` owns (by uid), each as its phase.
fn phases(s: &Store, ns: &str, owner: &Value) -> Vec<(Value, String)> {
    let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
    s.objects
        .iter()
        .filter(|((r, n, _), p)| {
            *r == Res::pods()
                && n == ns
                && p["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|x| x["uid"] == uid))
        })
        .map(|(_, p)| (p.clone(), p["status"]["phase"].as_str().unwrap_or("Pending").to_string()))
        .collect()
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ready"] == true))
}

fn volcano_status(s: &Store, ns: &str, job: &Value) -> Value {
    let pods = phases(s, ns, job);
    let count = |p: &str| pods.iter().filter(|(_, x)| x == p).count();
    let (pending, running, succeeded, failed) =
        (count("Pending"), count("Running"), count("Succeeded"), count("Failed"));
    let mut st = job["status"].clone();
    let old = st["state"]["phase"].as_str().unwrap_or("Pending").to_string();
    let (phase, reason, message) = if matches!(old.as_str(), "Failed" | "Completed") {
        (old, st["state"]["reason"].clone(), st["state"]["message"].clone())
    } else if failed > 0 {
        ("Failed".into(), json!("PodFailed"), json!(format!("{failed} pod(s) failed")))
    } else if !pods.is_empty() && succeeded == pods.len() {
        ("Completed".into(), json!("TaskCompleted"), json!("all tasks completed"))
    } else if running > 0 {
        ("Running".into(), Value::Null, Value::Null)
    } else {
        ("Pending".into(), Value::Null, Value::Null)
    };
    if phase != st["state"]["phase"] {
        st["state"] = json!({"phase": phase, "lastTransitionTime": now()});
        if !reason.is_null() {
            st["state"]["reason"] = reason;
            st["state"]["message"] = message;
        }
    }
    for (k, n) in [("pending", pending), ("running", running), ("succeeded", succeeded), ("failed", failed)] {
        st[k] = json!(n);
    }
    st
}

fn pytorch_status(s: &Store, ns: &str, job: &Value) -> Value {
    let pods = phases(s, ns, job);
    let mut st = job["status"].clone();
    let mut conds: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
    let on = |conds: &[Value], t: &str| conds.iter().any(|c| c["type"] == t && c["status"] == "True");
    if on(&conds, "Succeeded") || on(&conds, "Failed") {
        return st;
    }
    let mut replicas = Map::new();
    for (p, phase) in &pods {
        let role = p["metadata"]["labels"]["training.kubeflow.org/replica-type"].as_str().unwrap_or("worker");
        let key = role[..1].to_uppercase() + &role[1..];
        let r = replicas.entry(key).or_insert_with(|| json!({"active": 0, "succeeded": 0, "failed": 0}));
        let field = match phase.as_str() {
            "Succeeded" => "succeeded",
            "Failed" => "failed",
            _ => "active",
        };
        r[field] = json!(r[field].as_i64().unwrap_or(0) + 1);
    }
    st["replicaStatuses"] = Value::Object(replicas);
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let role_of = |p: &Value| p["metadata"]["labels"]["training.kubeflow.org/replica-type"].as_str() == Some("master");
    let has_master = pods.iter().any(|(p, _)| role_of(p));
    let failed = pods.iter().find(|(_, ph)| ph == "Failed");
    let succeeded = if has_master {
        pods.iter().any(|(p, ph)| role_of(p) && ph == "Succeeded")
    } else {
        !pods.is_empty() && pods.iter().all(|(_, ph)| ph == "Succeeded")
    };
    let running = pods.iter().any(|(_, ph)| ph == "Running");
    let end = if let Some((p, _)) = failed {
        let pod = p["metadata"]["name"].as_str().unwrap_or_default();
        Some(condition(
            "Failed",
            "PyTorchJobFailed",
            &format!("PyTorchJob {name} has failed because pod {pod} failed."),
        ))
    } else if succeeded {
        Some(condition("Succeeded", "PyTorchJobSucceeded", &format!("PyTorchJob {name} is successfully completed.")))
    } else {
        None
    };
    if let Some(end) = end {
        for c in conds.iter_mut().filter(|c| c["type"] == "Running") {
            c["status"] = json!("False");
        }
        conds.push(end);
        st["completionTime"] = json!(now());
    } else if running && !on(&conds, "Running") {
        conds.push(condition("Running", "PyTorchJobRunning", &format!("PyTorchJob {name} is running.")));
    }
    st["conditions"] = Value::Array(conds);
    st
}

fn deployment_status(s: &Store, ns: &str, d: &Value) -> Value {
    let pods = phases(s, ns, d);
    let ready_n = pods.iter().filter(|(p, _)| ready(p)).count();
    json!({"observedGeneration": 1, "replicas": pods.len(), "updatedReplicas": pods.len(),
        "readyReplicas": ready_n, "availableReplicas": ready_n})
}

/// The Endpoints subsets of Service `svc`: its ready pods' addresses.
fn subsets(s: &Store, ns: &str, svc: &Value) -> Value {
    let Some(sel) = svc["spec"]["selector"].as_object().filter(|m| !m.is_empty()) else { return json!([]) };
    let addresses: Vec<Value> = s
        .objects
        .iter()
        .filter(|((r, n, _), p)| {
            *r == Res::pods()
                && n == ns
                && p["metadata"]["deletionTimestamp"].is_null()
                && sel.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v)
                && ready(p)
        })
        .map(|(_, p)| {
            json!({"ip": p["status"]["podIP"], "targetRef": {"kind": "Pod", "name": p["metadata"]["name"],
                "namespace": ns, "uid": p["metadata"]["uid"]}})
        })
        .collect();
    if addresses.is_empty() {
        return json!([]);
    }
    let ports: Vec<Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({"name": p["name"], "port": p["targetPort"].as_i64().or(p["port"].as_i64()), "protocol": p["protocol"].as_str().unwrap_or("TCP")})
        })
        .collect();
    json!([{"addresses": addresses, "ports": ports}])
}
