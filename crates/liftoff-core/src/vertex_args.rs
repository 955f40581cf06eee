//! A `vertex` queue's options, split into `spec` and `run` as the
//! reference takes them, and the Vertex AI `CustomJob` they make: the
//! image and command on each pool's container spec, the run's environment
//! appended, Liftoff's labels added. Checked when a queue is created and
//! when an item is planned.

use crate::resource::{ConfigProblem, holds_placeholder};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// `run` keys the reference passes to `CustomJob.submit`.
pub const RUN_KEYS: [&str; 8] = [
    "timeout",
    "service_account",
    "network",
    "enable_web_access",
    "experiment",
    "experiment_run",
    "tensorboard",
    "restart_job_on_worker_restart",
];
/// `spec` keys besides the worker pools.
pub const SPEC_KEYS: [&str; 5] =
    ["worker_pool_specs", "staging_bucket", "base_output_dir", "encryption_spec_key_name", "labels"];

/// Labels that mark a custom job as a Liftoff run (for re-adoption).
pub mod labels {
    pub const RUN_ID: &str = "liftoff-run-id";
    pub const FENCE: &str = "liftoff-fence";
    /// A digest of the agent key (label values allow few characters).
    pub const AGENT: &str = "liftoff-agent";
}

/// The options without a `vertex` or `gcp-vertex` wrapper (the reference's
/// `resource_args` key).
pub fn unwrap(args: &Value) -> &Value {
    match args.as_object() {
        Some(m) if m.len() == 1 => ["vertex", "gcp-vertex"].iter().find_map(|k| m.get(*k)).unwrap_or(args),
        _ => args,
    }
}

/// Every problem, naming the field: `spec.worker_pool_specs` (at least one,
/// each with a `container_spec`) and `spec.staging_bucket` are required.
pub fn check(args: &Value) -> Vec<ConfigProblem> {
    check_with(args, &holds_placeholder)
}

/// [`check`] of a launch's options once its macros are expanded (at plan
/// time): every value is checked, whatever it holds.
pub fn check_planned(args: &Value) -> Vec<ConfigProblem> {
    check_with(args, &|_| false)
}

fn check_with(args: &Value, holds_placeholder: &dyn Fn(&Value) -> bool) -> Vec<ConfigProblem> {
    let args = unwrap(args);
    let problem =
        |field: &str, message: &str| ConfigProblem { field: format!("config.{field}"), message: message.into() };
    let Some(map) = args.as_object() else {
        return vec![problem("spec", "vertex requires a spec with worker_pool_specs and staging_bucket")];
    };
    let mut problems = Vec::new();
    for key in map.keys().filter(|k| !["spec", "run"].contains(&k.as_str())) {
        problems.push(problem(key, &format!("unknown vertex option '{key}': the options are spec and run")));
    }
    match map.get("spec") {
        None => {
            problems.push(problem("spec.worker_pool_specs", "Vertex requires at least one worker pool spec"));
            problems.push(problem("spec.staging_bucket", "Vertex requires a staging bucket"));
        }
        Some(spec) if holds_placeholder(spec) && !spec.is_object() => {}
        Some(Value::Object(spec)) => {
            for key in spec.keys().filter(|k| !SPEC_KEYS.contains(&k.as_str())) {
                problems.push(problem(
                    &format!("spec.{key}"),
                    &format!("unknown spec key; known: {}", SPEC_KEYS.join(", ")),
                ));
            }
            match spec.get("worker_pool_specs") {
                Some(v) if holds_placeholder(v) => {}
                Some(Value::Array(pools)) if !pools.is_empty() => {
                    for (i, pool) in pools.iter().enumerate() {
                        if !pool.get("container_spec").is_some_and(|c| c.is_object() || holds_placeholder(c)) {
                            problems.push(problem(
                                &format!("spec.worker_pool_specs[{i}].container_spec"),
                                "Vertex requires a container spec for each worker pool",
                            ));
                        }
                    }
                }
                _ => problems.push(problem("spec.worker_pool_specs", "Vertex requires at least one worker pool spec")),
            }
            if spec.get("staging_bucket").and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(problem("spec.staging_bucket", "Vertex requires a staging bucket (gs://...)"));
            }
        }
        Some(_) => problems.push(problem("spec", "spec must be an object")),
    }
    match map.get("run") {
        None => {}
        Some(Value::Object(run)) => {
            for key in run.keys().filter(|k| !RUN_KEYS.contains(&k.as_str())) {
                problems
                    .push(problem(&format!("run.{key}"), &format!("unknown run key; known: {}", RUN_KEYS.join(", "))));
            }
        }
        Some(v) if holds_placeholder(v) => {}
        Some(_) => problems.push(problem("run", "run must be an object")),
    }
    problems
}

/// What a run adds to the options.
pub struct CustomJobRun<'a> {
    pub display_name: &'a str,
    pub image: &'a str,
    /// The container's command (empty: the image's entrypoint).
    pub command: &'a [String],
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub labels: &'a [(&'a str, String)],
}

/// The `CustomJob` resource (REST JSON) for checked options ([`check`]).
pub fn custom_job(args: &Value, run: &CustomJobRun<'_>) -> Value {
    let args = unwrap(args);
    let spec = args.get("spec").cloned().unwrap_or_else(|| json!({}));
    let run_opts = args.get("run").cloned().unwrap_or_else(|| json!({}));
    let pools: Vec<Value> = spec["worker_pool_specs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pool| {
            let mut pool = camel_keys(pool);
            let c = &mut pool["containerSpec"];
            if c.get("imageUri").is_none() {
                c["imageUri"] = json!(run.image);
            }
            if !run.command.is_empty() {
                c["command"] = json!(run.command);
            }
            if !run.args.is_empty() {
                c["args"] = json!(run.args);
            }
            let mut env: Vec<Value> = c.get("env").and_then(Value::as_array).cloned().unwrap_or_default();
            env.extend(run.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
            c["env"] = Value::Array(env);
            pool
        })
        .collect();
    let mut labels: Map<String, Value> = spec["labels"].as_object().cloned().unwrap_or_default();
    for (k, v) in run.labels {
        labels.insert(k.to_string(), json!(v));
    }
    let mut job_spec = json!({"workerPoolSpecs": pools});
    let output = spec["base_output_dir"].as_str().map(str::to_string).unwrap_or_else(|| {
        format!(
            "{}/aiplatform-custom-job-{}",
            spec["staging_bucket"].as_str().unwrap_or("").trim_end_matches('/'),
            run.display_name
        )
    });
    job_spec["baseOutputDirectory"] = json!({"outputUriPrefix": output});
    let mut scheduling = Map::new();
    if let Some(t) = run_opts.get("timeout") {
        // seconds, as the reference's SDK takes them; a Duration string ("3600s") as is
        let t = t.as_u64().map(|s| format!("{s}s")).or_else(|| t.as_str().map(str::to_string));
        if let Some(t) = t {
            scheduling.insert("timeout".into(), json!(t));
        }
    }
    if let Some(r) = run_opts.get("restart_job_on_worker_restart") {
        scheduling.insert("restartJobOnWorkerRestart".into(), r.clone());
    }
    if !scheduling.is_empty() {
        job_spec["scheduling"] = Value::Object(scheduling);
    }
    for (from, to) in [
        ("service_account", "serviceAccount"),
        ("network", "network"),
        ("enable_web_access", "enableWebAccess"),
        ("tensorboard", "tensorboard"),
        ("experiment", "experiment"),
        ("experiment_run", "experimentRun"),
    ] {
        if let Some(v) = run_opts.get(from) {
            job_spec[to] = v.clone();
        }
    }
    let mut job = json!({"displayName": run.display_name, "labels": labels, "jobSpec": job_spec});
    if let Some(k) = spec["encryption_spec_key_name"].as_str() {
        job["encryptionSpec"] = json!({"kmsKeyName": k});
    }
    job
}

/// snake_case keys to the REST API's lowerCamelCase, at every depth
/// (`container_spec.image_uri` → `containerSpec.imageUri`); keys already in
/// camel case stay.
fn camel_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let mut parts = k.split('_');
                    let first = parts.next().unwrap_or("").to_string();
                    let key = parts.fold(first, |acc, p| acc + &crate::sagemaker_args::capitalise(p));
                    (key, camel_keys(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel_keys).collect()),
        other => other.clone(),
    }
}

/// A label value from any string: lowercase letters, digits, `-` and `_`,
/// at most 63 characters (Vertex's label rules).
pub fn label_value(s: &str) -> String {
    let mut v: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    v.truncate(63);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_any_script_are_camel_cased_without_a_panic() {
        let v = camel_keys(&serde_json::json!({"container_spec": {"image_uri": 1}, "a_é_𡽭x": 2}));
        assert_eq!(
            v,
            serde_json::json!({"containerSpec": {"imageUri": 1}, "aé𡽭x": 2}),
            "ASCII letters only are upper-cased"
        );
    }

    fn options() -> Value {
        json!({"spec": {
            "worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1,
                "container_spec": {"image_uri": "${image_uri}", "env": [{"name": "Q", "value": "1"}]}}],
            "staging_bucket": "gs://b", "labels": {"team": "ml"}},
            "run": {"timeout": 3600, "service_account": "sa@p.iam.gserviceaccount.com", "restart_job_on_worker_restart": true}})
    }

    #[test]
    fn required_keys_are_named() {
        assert_eq!(check(&options()), vec![]);
        assert_eq!(check(&json!({"gcp-vertex": options()})), vec![], "the legacy wrapper");
        let fields = |v: Value| check(&v).into_iter().map(|p| p.field).collect::<Vec<_>>();
        assert_eq!(fields(json!({})), ["config.spec.worker_pool_specs", "config.spec.staging_bucket"]);
        assert_eq!(
            fields(json!({"spec": {"worker_pool_specs": []}})),
            ["config.spec.worker_pool_specs", "config.spec.staging_bucket"]
        );
        assert_eq!(
            fields(
                json!({"spec": {"worker_pool_specs": [{"container_spec": {}}, {"replica_count": 1}], "staging_bucket": "gs://b"}})
            ),
            ["config.spec.worker_pool_specs[1].container_spec"]
        );
        assert_eq!(
            fields(json!({"spec": {"worker_pool_specs": "{{pools}}", "staging_bucket": "gs://b"}, "run": {"x": 1}})),
            ["config.run.x"]
        );
    }

    #[test]
    fn the_custom_job_has_image_command_env_and_labels() {
        let env = BTreeMap::from([("LIFTOFF_RUN_ID".to_string(), "r1".to_string())]);
        let run = CustomJobRun {
            display_name: "r1",
            image: "europe-docker.pkg.dev/p/r/t:1",
            command: &["python".into(), "train.py".into()],
            args: &[],
            env: &env,
            labels: &[(labels::RUN_ID, "r1".into())],
        };
        let mut opts = options();
        opts["spec"]["worker_pool_specs"][0]["container_spec"].as_object_mut().unwrap().remove("image_uri");
        let job = custom_job(&opts, &run);
        let c = &job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"];
        assert_eq!(c["imageUri"], run.image);
        assert_eq!(c["command"], json!(["python", "train.py"]));
        assert_eq!(c["env"], json!([{"name": "Q", "value": "1"}, {"name": "LIFTOFF_RUN_ID", "value": "r1"}]));
        assert_eq!(job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["machineType"], "n1-standard-4");
        assert_eq!(job["labels"], json!({"team": "ml", "liftoff-run-id": "r1"}));
        assert_eq!(job["jobSpec"]["scheduling"], json!({"timeout": "3600s", "restartJobOnWorkerRestart": true}));
        assert_eq!(job["jobSpec"]["serviceAccount"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"], "gs://b/aiplatform-custom-job-r1");
        assert_eq!(label_value("Run.ID_1"), "run-id_1");
    }
}
