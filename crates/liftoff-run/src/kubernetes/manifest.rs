//! The Job a run becomes (no I/O): the queue's manifest (`resource_args`)
//! with Liftoff's defaults, names, labels, the run's variables (its key
//! through a Secret), the image and command, and the restricted security
//! context on every container.

use crate::container::{IDENTITY_TOKEN_USER, RegistryAuth};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Labels (and annotations, which keep the exact values) on everything created.
pub mod labels {
    pub const RUN: &str = "liftoff.dev/run";
    pub const ITEM: &str = "liftoff.dev/item";
    pub const FENCE: &str = "liftoff.dev/fence";
    /// A digest of the agent key: the label adoption selects by.
    pub const AGENT: &str = "liftoff.dev/agent";
    /// The Job's (or custom object's) name, on its Secrets, ConfigMap and additional services.
    pub const JOB: &str = "liftoff.dev/job";
    /// On an additional service and its pods: the service's name (the run's
    /// own pods are those without it).
    pub const AUXILIARY: &str = "liftoff.dev/auxiliary";
    /// On a custom run's marker ConfigMap: its object's kind (adoption finds runs by it).
    pub const OWNER_KIND: &str = "liftoff.dev/owner-kind";
    /// On a run's env Secret: the additional services made for it, as JSON
    /// `[{"apiVersion", "kind", "name"}]`, so that whoever removes the run
    /// (also after an agent restart) removes them.
    pub const SERVICES: &str = "liftoff.dev/services";
}

/// The security context every container gets (`kube_args` refuses one in the queue's manifest).
pub fn restricted() -> Value {
    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
}

/// The run's variables that go through a Secret, never inline.
pub fn is_secret_env(name: &str) -> bool {
    name == "LIFTOFF_API_KEY"
}

/// `lf-<run id, DNS-safe>-<fence>`: at most 63 characters (pods label it as `job-name`).
pub fn job_name(run_id: &str, fence: i64) -> String {
    let tail = format!("-{fence}");
    let mut safe: String =
        run_id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    safe.truncate(63 - 3 - tail.len());
    format!("lf-{}{tail}", safe.trim_matches('-'))
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn label_value(s: &str) -> String {
    let mut v: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    v.truncate(63);
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// The namespace, in the reference's order: `metadata.namespace`, the
/// `namespace` key, then the cluster's (the context's, or `default`).
pub fn namespace(args: &Value, cluster_default: &str) -> String {
    args["metadata"]["namespace"]
        .as_str()
        .or(args["namespace"].as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(cluster_default)
        .to_string()
}

/// What the run adds to the queue's manifest.
pub struct JobInput<'a> {
    pub args: &'a Value,
    pub name: &'a str,
    pub namespace: &'a str,
    /// What the run puts into the Job's pod template.
    pub pod: PodInput<'a>,
}

/// What the run puts into each pod template it makes (or, for the
/// additional services, part of it: see [`harden_template`]).
pub struct PodInput<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    /// Empty: the containers' own.
    pub image: &'a str,
    /// Empty: the image's own.
    pub entrypoint: &'a [String],
    pub cmd_args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    /// The Secret holding the [`is_secret_env`] variables.
    pub env_secret: &'a str,
    pub pull_secret: Option<&'a str>,
}

/// Checks that a run's Job (from [`job_manifest`]) is a `batch/v1` Job and
/// that it has no field a Job does not have: k8s-openapi's types drop
/// unknown fields silently, so a typo (`spec.template.spec.nodeSelectr`)
/// would vanish without a word. Each unknown field is named by its path
/// under `resource_args`; `null` values are ignored (they mean "unset").
pub fn check_job_fields(job: &Value) -> Result<(), String> {
    let typed: k8s_openapi::api::batch::v1::Job =
        serde_json::from_value(job.clone()).map_err(|e| format!("not a batch/v1 Job: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    fields_missing(job, &back, "resource_args", &mut unknown);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!("fields a Kubernetes Job does not have (a typo?): {}", unknown.join(", ")))
}

/// The paths of `given`'s fields that `kept` lacks.
fn fields_missing(given: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g.iter().filter(|(_, v)| !v.is_null()) {
                let here = format!("{path}.{key}");
                match k.get(key) {
                    Some(kv) => fields_missing(value, kv, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                fields_missing(gv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The queue's manifest (`args`) as the object `name` in `namespace`: its
/// own `namespace` key and `generateName` dropped, the run's labels and
/// annotations added to its metadata.
pub fn named(args: &Value, name: &str, namespace: &str, pod: &PodInput<'_>) -> Value {
    let mut obj = args.clone();
    if !obj.is_object() {
        obj = json!({});
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("namespace");
    }
    let meta = &mut obj["metadata"];
    if !meta.is_object() {
        *meta = json!({});
    }
    meta["name"] = json!(name);
    meta["namespace"] = json!(namespace);
    if let Some(o) = meta.as_object_mut() {
        o.remove("generateName");
    }
    merge(&mut meta["labels"], pod.labels);
    merge(&mut meta["annotations"], pod.annotations);
    obj
}

/// The `batch/v1` Job for a run: its pod template made as every run's is
/// ([`harden_template`]).
pub fn job_manifest(i: &JobInput<'_>) -> Value {
    let mut job = named(i.args, i.name, i.namespace, &i.pod);
    job["apiVersion"] = json!("batch/v1");
    job["kind"] = json!("Job");
    let spec = &mut job["spec"];
    if spec["backoffLimit"].is_null() {
        spec["backoffLimit"] = json!(0);
    }
    let template = &mut spec["template"];
    if template["spec"]["restartPolicy"].is_null() {
        template["spec"]["restartPolicy"] = json!("Never");
    }
    harden_template(template, &i.pod, true);
    job
}

/// One pod template as the Job path makes its pod: the labels and
/// annotations on its metadata, the pull secret, no service account token,
/// the restricted security context on every (init, ephemeral) container.
/// With `run` (the run's own templates, not an additional service's), also
/// the run's image on the first container and on any without one, the
/// command on the first, the run's variables on every container (the
/// secret ones through `env_secret`, never inline), default names.
pub fn harden_template(t: &mut Value, i: &PodInput<'_>, run: bool) {
    merge(&mut t["metadata"]["labels"], i.labels);
    merge(&mut t["metadata"]["annotations"], i.annotations);
    let pod = &mut t["spec"];
    pod["automountServiceAccountToken"] = json!(false);
    if let Some(p) = i.pull_secret {
        let mut secrets = pod["imagePullSecrets"].as_array().cloned().unwrap_or_default();
        if !secrets.iter().any(|s| s["name"] == p) {
            secrets.push(json!({"name": p}));
        }
        pod["imagePullSecrets"] = json!(secrets);
    }
    if run {
        if pod["containers"].as_array().is_none_or(|c| c.is_empty()) {
            pod["containers"] = json!([{}]);
        }
        let env: Vec<Value> = i
            .env
            .iter()
            .map(|(k, v)| {
                if is_secret_env(k) {
                    json!({"name": k, "valueFrom": {"secretKeyRef": {"name": i.env_secret, "key": k}}})
                } else {
                    json!({"name": k, "value": v})
                }
            })
            .collect();
        let several = pod["containers"].as_array().map_or(0, Vec::len) > 1;
        for (n, c) in pod["containers"].as_array_mut().into_iter().flatten().enumerate() {
            if c["name"].as_str().is_none_or(str::is_empty) {
                c["name"] = json!(if several { format!("main-{n}") } else { "main".to_string() });
            }
            if !i.image.is_empty() && (n == 0 || c["image"].as_str().is_none_or(str::is_empty)) {
                c["image"] = json!(i.image);
            }
            if n == 0 {
                if !i.entrypoint.is_empty() {
                    c["command"] = json!(i.entrypoint);
                    c["args"] = json!(i.cmd_args);
                } else if !i.cmd_args.is_empty() {
                    c["args"] = json!(i.cmd_args);
                }
            }
            let mut all = c["env"].as_array().cloned().unwrap_or_default();
            all.retain(|e| !i.env.contains_key(e["name"].as_str().unwrap_or_default()));
            all.extend(env.iter().cloned());
            c["env"] = json!(all);
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in pod[list].as_array_mut().into_iter().flatten() {
            c["securityContext"] = restricted();
        }
    }
}

fn merge(into: &mut Value, from: &BTreeMap<String, String>) {
    if !into.is_object() {
        *into = json!({});
    }
    for (k, v) in from {
        into[k] = json!(v);
    }
}

/// A `kubernetes.io/dockerconfigjson` body for `auth`; `None` for an
/// identity token, which the kubelet cannot use.
pub fn docker_config_json(auth: &RegistryAuth) -> Option<String> {
    if auth.username == IDENTITY_TOKEN_USER {
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let pair = b64.encode(format!("{}:{}", auth.username, auth.password));
    Some(json!({"auths": {auth.serveraddress.clone(): {"username": auth.username, "password": auth.password, "auth": pair}}}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_what_kubernetes_accepts() {
        assert_eq!(job_name("Run_42.x", 3), "lf-run-42-x-3");
        let long = job_name(&"a".repeat(100), 12345);
        assert!(long.len() <= 63 && long.ends_with("-12345"), "{long}");
        assert_eq!(label_value("-run/1-"), "run_1");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn a_field_a_job_does_not_have_is_named_and_a_null_is_not() {
        let labels = BTreeMap::new();
        let job = |args: Value| {
            job_manifest(&JobInput {
                args: &args,
                name: "lf-r-1",
                namespace: "ml",
                pod: PodInput {
                    labels: &labels,
                    annotations: &BTreeMap::new(),
                    image: "reg/img:1",
                    entrypoint: &[],
                    cmd_args: &[],
                    env: &BTreeMap::new(),
                    env_secret: "lf-r-1-env",
                    pull_secret: None,
                },
            })
        };
        let ok = json!({"spec": {"activeDeadlineSeconds": 60, "template": {"spec": {
            "nodeSelector": {"gpu": "a100"}, "priorityClassName": null,
            "containers": [{"resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}}]}}}});
        check_job_fields(&job(ok)).unwrap();
        let typos = json!({"spec": {"template": {"spec": {"nodeSelectr": {"gpu": "a100"},
            "containers": [{"resorces": {"limits": {"cpu": "1"}}}]}}}});
        let e = check_job_fields(&job(typos)).unwrap_err();
        assert!(e.contains("resource_args.spec.template.spec.nodeSelectr"), "{e}");
        assert!(e.contains("resource_args.spec.template.spec.containers[0].resorces"), "{e}");
        let e = check_job_fields(&job(json!({"spec": {"backoffLimit": "many"}}))).unwrap_err();
        assert!(e.starts_with("not a batch/v1 Job"), "{e}");
    }

    #[test]
    fn the_namespace_comes_in_the_references_order() {
        assert_eq!(namespace(&json!({"metadata": {"namespace": "a"}, "namespace": "b"}), "c"), "a");
        assert_eq!(namespace(&json!({"namespace": "b"}), "c"), "b");
        assert_eq!(namespace(&json!({}), "c"), "c");
    }

    #[test]
    fn every_container_is_restricted_and_the_key_is_never_inline() {
        let args = json!({"namespace": "ml", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"resources": {"limits": {"cpu": "1"}}}, {"name": "side", "image": "x"}]}}}});
        let env =
            BTreeMap::from([("LIFTOFF_API_KEY".to_string(), "lft_run.secret".to_string()), ("A".into(), "1".into())]);
        let labels = BTreeMap::from([(labels::ITEM.to_string(), "i1".to_string())]);
        let job = job_manifest(&JobInput {
            args: &args,
            name: "lf-r-1",
            namespace: "ml",
            pod: PodInput {
                labels: &labels,
                annotations: &BTreeMap::new(),
                image: "reg/img:1",
                entrypoint: &["python".into()],
                cmd_args: &["train.py".into()],
                env: &env,
                env_secret: "lf-r-1-env",
                pull_secret: Some("lf-r-1-pull"),
            },
        });
        assert!(!job.to_string().contains("lft_run.secret"));
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "lf-r-1-pull"}]));
        assert_eq!(job["spec"]["template"]["metadata"]["labels"][labels::ITEM], "i1");
        let c0 = &pod["containers"][0];
        assert_eq!((c0["name"].as_str(), c0["image"].as_str()), (Some("main-0"), Some("reg/img:1")));
        assert_eq!(c0["command"], json!(["python"]));
        assert_eq!(c0["resources"]["limits"]["cpu"], "1");
        let key = c0["env"].as_array().unwrap().iter().find(|e| e["name"] == "LIFTOFF_API_KEY").unwrap();
        assert_eq!(key["valueFrom"]["secretKeyRef"], json!({"name": "lf-r-1-env", "key": "LIFTOFF_API_KEY"}));
        for c in [&pod["containers"][0], &pod["containers"][1], &pod["initContainers"][0]] {
            assert_eq!(c["securityContext"], restricted());
        }
        assert!(job.get("namespace").is_none());
    }

    #[test]
    fn a_pull_secret_holds_the_registry_login() {
        let auth = RegistryAuth { username: "u".into(), password: "p".into(), serveraddress: "reg.example".into() };
        let v: Value = serde_json::from_str(&docker_config_json(&auth).unwrap()).unwrap();
        assert_eq!(v["auths"]["reg.example"]["auth"], "dTpw");
        let token = RegistryAuth { username: IDENTITY_TOKEN_USER.into(), ..auth };
        assert!(docker_config_json(&token).is_none());
    }
}
