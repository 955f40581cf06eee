//! Safety checks on `resource_args` for the kubernetes resource, as the
//! reference runs them on every job before anything reaches a cluster:
//! fields that hand a job the node or the cluster's credentials are refused
//! wherever they appear in the manifest, and `secure_mode` also locks the
//! pod's host namespaces, init containers and container commands.

use serde_json::Value;

/// Refused wherever they appear, whatever their value.
const NEVER: &[(&str, &str)] = &[
    ("securityContext", "the agent sets the security context itself"),
    ("hostPath", "host paths expose the node's filesystem"),
    ("serviceAccountToken", "projected service account tokens give cluster credentials"),
];
/// Refused when truthy (`hostUsers: false` and `hostPort: 0` are fine).
const NOT_TRUTHY: &[(&str, &str)] = &[
    ("hostPID", "it shares the node's process namespace"),
    ("hostIPC", "it shares the node's IPC namespace"),
    ("hostNetwork", "it shares the node's network"),
    ("shareProcessNamespace", "containers could see each other's processes"),
    ("hostUsers", "it runs in the node's user namespace"),
    ("automountServiceAccountToken", "it mounts cluster credentials"),
    ("hostPort", "it binds a port on the node"),
];
/// Refused when non-empty.
const NOT_SET: &[(&str, &str)] = &[
    ("serviceAccountName", "the run would act as another service account"),
    ("serviceAccount", "the run would act as another service account"),
];
/// Pod-spec keys `secure_mode` locks.
const LOCKED_IN_SECURE_MODE: &[&str] = &["hostPID", "hostIPC", "hostNetwork", "initContainers"];

/// Every problem in `args` (the `resource_args.kubernetes` object), each
/// naming the option and why.
pub fn check(args: &Value, secure_mode: bool) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    walk(args, "", secure_mode, false, &mut problems);
    check_services(args, &mut problems);
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// The shape of `additional_services` (`[{name, config}]`, each config an
/// object naming its `apiVersion` and `kind`), `wait_timeout` (seconds)
/// and `wait_for_ready`; their safety is `walk`'s, like the job's.
fn check_services(args: &Value, problems: &mut Vec<String>) {
    let at = |f: &str| format!("resource_args.kubernetes option '{f}'");
    match &args["additional_services"] {
        Value::Null => {}
        Value::Array(list) => {
            for (i, s) in list.iter().enumerate() {
                let here = format!("additional_services[{i}]");
                let Some(o) = s.as_object() else {
                    problems.push(format!("{} must be an object {{name, config}}", at(&here)));
                    continue;
                };
                if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "name" | "config")) {
                    problems.push(format!("{} has an unknown key '{k}' (known: name, config)", at(&here)));
                }
                let config = &s["config"];
                if !config.is_object() {
                    problems.push(format!(
                        "{} must be an object (the Kubernetes object to create)",
                        at(&format!("{here}.config"))
                    ));
                    continue;
                }
                for key in ["apiVersion", "kind"] {
                    if config[key].as_str().is_none_or(str::is_empty) {
                        problems.push(format!("{} is required", at(&format!("{here}.config.{key}"))));
                    }
                }
                let named =
                    [&s["name"], &config["metadata"]["name"]].iter().any(|n| n.as_str().is_some_and(|n| !n.is_empty()));
                if !named {
                    problems
                        .push(format!("{} is required (or {here}.config.metadata.name)", at(&format!("{here}.name"))));
                }
            }
        }
        _ => problems.push(format!("{} must be a list of {{name, config}}", at("additional_services"))),
    }
    if let Some(t) = args.get("wait_timeout").filter(|t| !t.is_null())
        && t.as_u64().is_none_or(|t| t == 0 || t > 86_400)
    {
        problems.push(format!("{} must be a whole number of seconds from 1 to 86400, not {t}", at("wait_timeout")));
    }
    if let Some(w) = args.get("wait_for_ready").filter(|w| !w.is_null() && !w.is_boolean()) {
        problems.push(format!("{} must be true or false, not {w}", at("wait_for_ready")));
    }
}

fn unsafe_option(key: &str, at: &str, why: &str) -> String {
    format!("unsafe resource_args.kubernetes option '{key}' is not allowed: {why} (at {at})")
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn walk(v: &Value, path: &str, secure: bool, in_containers: bool, problems: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                let at = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if let Some((_, why)) = NEVER.iter().find(|(n, _)| n == k) {
                    problems.push(unsafe_option(k, &at, why));
                }
                if let Some((_, why)) = NOT_TRUTHY.iter().find(|(n, _)| n == k)
                    && truthy(val)
                {
                    problems.push(unsafe_option(k, &at, why));
                }
                if let Some((_, why)) = NOT_SET.iter().find(|(n, _)| n == k)
                    && truthy(val)
                {
                    problems.push(unsafe_option(k, &at, why));
                }
                if k == "mountPropagation" && val.as_str() == Some("Bidirectional") {
                    problems.push(unsafe_option(k, &at, "Bidirectional propagation reaches the node's mounts"));
                }
                if k == "annotations"
                    && let Some(ann) = val.as_object()
                {
                    for (name, value) in ann {
                        let profile = name.contains("apparmor") || name.contains("seccomp");
                        if profile && value.as_str().is_some_and(|s| s.eq_ignore_ascii_case("unconfined")) {
                            problems.push(unsafe_option(name, &format!("{at}.{name}"), "it turns off confinement"));
                        }
                    }
                }
                if secure {
                    if LOCKED_IN_SECURE_MODE.contains(&k.as_str()) {
                        problems.push(format!(
                            "this agent is configured to lock \"{k}\" in pod spec but the job specification \
                             attempts to override it (at {at})"
                        ));
                    }
                    if in_containers && k == "command" {
                        problems.push(format!(
                            "this agent is configured to lock \"command\" in container spec but the job \
                             specification attempts to override it (at {at})"
                        ));
                    }
                }
                let containers = matches!(k.as_str(), "containers" | "initContainers" | "ephemeralContainers");
                walk(val, &at, secure, containers, problems);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                // a container's own keys sit one level below the list
                walk(item, &format!("{path}[{i}]"), secure, in_containers, problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(pod: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}})
    }

    #[test]
    fn refuses_every_unsafe_field_wherever_it_is() {
        for (pod, key) in [
            (json!({"containers": [{"securityContext": {"privileged": true}}]}), "securityContext"),
            (json!({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}), "hostPath"),
            (json!({"volumes": [{"projected": {"sources": [{"serviceAccountToken": {}}]}}]}), "serviceAccountToken"),
            (json!({"hostPID": true}), "hostPID"),
            (json!({"hostIPC": true}), "hostIPC"),
            (json!({"hostNetwork": true}), "hostNetwork"),
            (json!({"shareProcessNamespace": true}), "shareProcessNamespace"),
            (json!({"hostUsers": true}), "hostUsers"),
            (json!({"automountServiceAccountToken": true}), "automountServiceAccountToken"),
            (json!({"containers": [{"ports": [{"hostPort": 8080}]}]}), "hostPort"),
            (json!({"serviceAccountName": "admin"}), "serviceAccountName"),
            (json!({"serviceAccount": "admin"}), "serviceAccount"),
            (json!({"containers": [{"volumeMounts": [{"mountPropagation": "Bidirectional"}]}]}), "mountPropagation"),
        ] {
            let errs = check(&job(pod), false).unwrap_err();
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(errs[0].starts_with(&format!("unsafe resource_args.kubernetes option '{key}'")), "{errs:?}");
        }
        let ann = json!({"metadata": {"annotations": {
            "container.apparmor.security.beta.kubernetes.io/launch0": "unconfined",
            "seccomp.security.alpha.kubernetes.io/pod": "Unconfined",
            "team": "unconfined"
        }}});
        assert_eq!(check(&ann, false).unwrap_err().len(), 2, "profiles only");
    }

    #[test]
    fn allows_benign_specs_and_the_reference_exceptions() {
        let ok = job(json!({
            "hostUsers": false,
            "containers": [{"name": "c", "image": "x", "command": ["python"], "ports": [{"hostPort": 0, "containerPort": 80}],
                             "resources": {"limits": {"nvidia.com/gpu": 1}}}],
            "serviceAccountName": "",
            "volumes": [{"name": "d", "emptyDir": {}}]
        }));
        assert_eq!(check(&ok, false), Ok(()));
        assert_eq!(check(&json!({}), true), Ok(()));
    }

    #[test]
    fn additional_services_are_checked_for_shape_and_safety() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {
            "containers": [{"name": "redis", "image": "redis"}]}}}});
        let ok = json!({"additional_services": [{"name": "redis", "config": deploy}], "wait_timeout": 60, "wait_for_ready": false});
        assert_eq!(check(&ok, false), Ok(()));
        let unsafe_one = json!({"additional_services": [{"name": "a", "config": deploy},
            {"name": "b", "config": {"apiVersion": "apps/v1", "kind": "Deployment",
                "spec": {"template": {"spec": {"hostPID": true, "containers": [{"name": "c", "image": "x"}]}}}}}]});
        let errs = check(&unsafe_one, false).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("(at additional_services[1].config.spec.template.spec.hostPID)"), "{errs:?}");
        let bad = json!({"additional_services": [{"config": {"kind": "Service"}}, 3, {"name": "x", "config": deploy, "extra": 1}],
            "wait_timeout": -1, "wait_for_ready": "yes"});
        let errs = check(&bad, false).unwrap_err().join("\n");
        for want in [
            "additional_services[0].config.apiVersion' is required",
            "additional_services[0].name' is required",
            "additional_services[1]' must be an object",
            "unknown key 'extra'",
            "'wait_timeout' must be",
            "'wait_for_ready' must be",
        ] {
            assert!(errs.contains(want), "{want}: {errs}");
        }
        assert!(check(&json!({"additional_services": {}}), false).is_err());
    }

    #[test]
    fn secure_mode_locks_host_namespaces_init_containers_and_commands() {
        let errs = check(&job(json!({"hostPID": false, "initContainers": [{"name": "i"}]})), true).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("lock \"hostPID\" in pod spec")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("lock \"initContainers\" in pod spec")), "{errs:?}");
        let errs = check(&job(json!({"containers": [{"name": "c", "command": ["sh"]}]})), true).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("lock \"command\" in container spec"), "{errs:?}");
        assert_eq!(check(&job(json!({"containers": [{"name": "c", "command": ["sh"]}]})), false), Ok(()));
    }
}
