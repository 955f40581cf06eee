//! A `sagemaker` queue's options: the `CreateTrainingJob` request they
//! make, as the reference builds it (snake_case top-level keys camel-cased,
//! `RoleArn` from a bare role name, the image and command set, the run's
//! environment merged within SageMaker's limits, a tag with the run id),
//! and the checks made when a queue is created and when an item is planned.

use crate::resource::{ConfigProblem, holds_placeholder};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The keys `CreateTrainingJob` cannot do without and no run supplies.
pub const REQUIRED: [&str; 4] = ["RoleArn", "OutputDataConfig", "ResourceConfig", "StoppingCondition"];
/// Keys the reference takes for itself and never sends.
const DROPPED: [&str; 3] = ["EcrRepoName", "Region", "Profile"];
/// SageMaker's `Environment` limits (API reference, `CreateTrainingJob`).
pub const MAX_ENV_ENTRIES: usize = 100;
pub const MAX_ENV_KEY: usize = 512;
pub const MAX_ENV_VALUE: usize = 512;
/// `TrainingJobName`: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.
pub const MAX_JOB_NAME: usize = 63;

/// Tags that mark a training job as a Liftoff run (for re-adoption).
pub mod tags {
    pub const RUN_ID: &str = "liftoff:run-id";
    pub const ITEM: &str = "liftoff:item";
    pub const FENCE: &str = "liftoff:fence";
    /// A digest of the agent key (tag values allow few characters).
    pub const AGENT: &str = "liftoff:agent";
}

/// The options as `CreateTrainingJob` names them: a `sagemaker` wrapper
/// (the reference's `resource_args.sagemaker`) taken off, top-level keys
/// camel-cased (`role_arn` → `RoleArn`), nulls and the reference's own keys dropped.
pub fn normalise(args: &Value) -> Result<Map<String, Value>, ConfigProblem> {
    let args = match args.as_object() {
        Some(m) if m.len() == 1 && m.get("sagemaker").is_some_and(Value::is_object) => &m["sagemaker"],
        _ => args,
    };
    let map = match args {
        Value::Null => return Ok(Map::new()),
        Value::Object(m) => m,
        _ => {
            return Err(ConfigProblem {
                field: "config".into(),
                message: "the sagemaker options must be an object of CreateTrainingJob fields".into(),
            });
        }
    };
    Ok(map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (camel(k), v.clone()))
        .filter(|(k, _)| !DROPPED.contains(&k.as_str()))
        .collect())
}

/// `role_arn` → `RoleArn`; `RoleArn` stays.
fn camel(key: &str) -> String {
    key.split('_').map(capitalise).collect()
}

/// `word` with its first character upper-cased (ASCII): by character, not
/// byte, since a key is the user's text, whatever its script.
pub(crate) fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// Every problem with the options, naming the field: the required keys
/// (each missing one), and the shapes of those given. Values holding a
/// `{{variable}}` or `${macro}` are only checked for presence.
pub fn check(args: &Value) -> Vec<ConfigProblem> {
    check_with(args, true)
}

/// [`check`] of a launch's options once its macros are expanded (at plan
/// time): every value is checked, whatever it holds.
pub fn check_planned(args: &Value) -> Vec<ConfigProblem> {
    check_with(args, false)
}

fn check_with(args: &Value, skip_placeholders: bool) -> Vec<ConfigProblem> {
    let map = match normalise(args) {
        Ok(m) => m,
        Err(p) => return vec![p],
    };
    let mut problems = Vec::new();
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|k| !map.contains_key(*k)).collect();
    for key in &missing {
        problems.push(ConfigProblem {
            field: format!("config.{key}"),
            message: format!("sagemaker requires {key} (one of {} missing)", missing.len()),
        });
    }
    for (key, value) in map.iter().filter(|(_, v)| !(skip_placeholders && holds_placeholder(v))) {
        let field = format!("config.{key}");
        let bad = |m: &str| ConfigProblem { field: field.clone(), message: m.to_string() };
        match key.as_str() {
            "RoleArn" if value.as_str().is_none_or(str::is_empty) => {
                problems.push(bad("RoleArn must be a role name or ARN"))
            }
            "OutputDataConfig" | "ResourceConfig" | "StoppingCondition" | "AlgorithmSpecification"
                if !value.is_object() =>
            {
                problems.push(bad(&format!("{key} must be an object")))
            }
            "Environment" if !value.as_object().is_some_and(|m| m.values().all(Value::is_string)) => {
                problems.push(bad("Environment must be an object of strings"))
            }
            "Tags" if !value.as_array().is_some_and(|a| a.iter().all(|t| t["Key"].is_string())) => {
                problems.push(bad("Tags must be a list of {Key, Value}"))
            }
            "TrainingJobName" if !value.as_str().is_some_and(valid_job_name) => problems
                .push(bad(&format!("TrainingJobName must be 1 to {MAX_JOB_NAME} letters, digits and inner hyphens"))),
            _ => {}
        }
    }
    problems
}

fn valid_job_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_JOB_NAME
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A training job name from a run id and its claim: SageMaker keeps a
/// name for ever, and a run claimed again (after a preemption or a lost
/// lease) needs a new job.
pub fn job_name(run_id: &str, fence: i64) -> String {
    let suffix = format!("-{fence}");
    let mut base: String = run_id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>();
    base.truncate(MAX_JOB_NAME - suffix.len());
    let base = base.trim_matches('-');
    let base = if base.is_empty() { "liftoff" } else { base };
    let mut name = format!("{base}{suffix}");
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name
}

/// `RoleArn` as given if it is an ARN, else the role of that name in the
/// caller's partition and account.
pub fn role_arn(role: &str, partition: &str, account: &str) -> String {
    if role.starts_with("arn:") { role.to_string() } else { format!("arn:{partition}:iam::{account}:role/{role}") }
}

/// What a run adds to the options.
pub struct TrainingRun<'a> {
    pub name: Option<String>,
    pub image: &'a str,
    /// `ContainerEntrypoint` (empty: the image's own).
    pub entrypoint: &'a [String],
    /// `ContainerArguments` (empty: none).
    pub args: &'a [String],
    /// The run's variables, merged under the options' `Environment`.
    pub env: &'a BTreeMap<String, String>,
    /// Added to the options' `Tags`.
    pub tags: &'a [(&'a str, String)],
}

/// The `CreateTrainingJob` body, and a warning per variable that SageMaker's
/// limits made us drop. `RoleArn` must already be an ARN ([`role_arn`]).
pub fn training_job(options: &Map<String, Value>, run: &TrainingRun<'_>) -> (Value, Vec<String>) {
    let mut body = options.clone();
    if let Some(name) = &run.name {
        body.entry("TrainingJobName").or_insert_with(|| Value::String(name.clone()));
    }
    let algo = body.entry("AlgorithmSpecification").or_insert_with(|| json!({}));
    if let Some(a) = algo.as_object_mut() {
        // a TrainingImage given by the queue is kept (as the reference does)
        a.entry("TrainingImage").or_insert_with(|| Value::String(run.image.to_string()));
        a.entry("TrainingInputMode").or_insert_with(|| json!("File"));
        if !run.entrypoint.is_empty() {
            a.insert("ContainerEntrypoint".into(), json!(run.entrypoint));
        }
        if !run.args.is_empty() {
            a.insert("ContainerArguments".into(), json!(run.args));
        }
    }
    let (env, warnings) = merge_env(body.get("Environment"), run.env);
    if !env.is_empty() {
        body.insert("Environment".into(), Value::Object(env));
    }
    let mut tags: Vec<Value> = body.get("Tags").and_then(Value::as_array).cloned().unwrap_or_default();
    let ours: Vec<&str> = run.tags.iter().map(|(k, _)| *k).collect();
    tags.retain(|t| !t["Key"].as_str().is_some_and(|k| ours.contains(&k)));
    tags.extend(run.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})));
    body.insert("Tags".into(), Value::Array(tags));
    (Value::Object(body), warnings)
}

/// The queue's `Environment` first (it wins over the run's variables, as a
/// container's own `env` does), then the run's, as far as SageMaker takes
/// them: a warning names every variable left out and why.
fn merge_env(given: Option<&Value>, run: &BTreeMap<String, String>) -> (Map<String, Value>, Vec<String>) {
    let mut out = Map::new();
    let mut dropped: Vec<String> = Vec::new();
    let given = given.and_then(Value::as_object).into_iter().flatten().map(|(k, v)| (k, v.as_str().unwrap_or("")));
    for (k, v) in given.chain(run.iter().map(|(k, v)| (k, v.as_str()))) {
        if out.contains_key(k) {
            continue;
        }
        let why = if !valid_env_key(k) {
            Some(format!("its name is not [a-zA-Z_][a-zA-Z0-9_]* of at most {MAX_ENV_KEY} characters"))
        } else if v.chars().count() > MAX_ENV_VALUE {
            Some(format!("its value is {} characters, SageMaker takes {MAX_ENV_VALUE}", v.chars().count()))
        } else if out.len() >= MAX_ENV_ENTRIES {
            Some(format!("SageMaker takes {MAX_ENV_ENTRIES} variables"))
        } else {
            None
        };
        match why {
            Some(why) => dropped.push(format!("{k} ({why})")),
            None => {
                out.insert(k.clone(), Value::String(v.to_string()));
            }
        }
    }
    let warnings = if dropped.is_empty() {
        vec![]
    } else {
        vec![format!("SageMaker's Environment limits dropped {} variable(s): {}", dropped.len(), dropped.join(", "))]
    };
    (out, warnings)
}

fn valid_env_key(k: &str) -> bool {
    k.len() <= MAX_ENV_KEY
        && k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by schemathesis: a key starting with a multi-byte character
    /// made the server panic (a byte slice inside the character).
    #[test]
    fn keys_in_any_script_are_camel_cased_without_a_panic() {
        assert_eq!(camel("role_arn"), "RoleArn");
        assert_eq!(camel("RoleArn"), "RoleArn");
        assert_eq!(camel("𡽭h^_éclair"), "𡽭h^éclair");
        assert_eq!(camel("__"), "");
    }

    fn complete() -> Value {
        json!({
            "role_arn": "trainer",
            "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "EcrRepoName": "x", "region": "eu-west-1", "nothing": null,
        })
    }

    #[test]
    fn keys_are_camel_cased_and_the_references_own_dropped() {
        let m = normalise(&complete()).unwrap();
        assert_eq!(m["RoleArn"], "trainer");
        for gone in ["EcrRepoName", "Region", "Nothing", "region"] {
            assert!(!m.contains_key(gone), "{gone}");
        }
        assert_eq!(normalise(&json!({"sagemaker": {"role_arn": "r"}})).unwrap()["RoleArn"], "r", "unwrapped");
    }

    #[test]
    fn every_missing_required_key_is_named() {
        let p = check(&json!({"RoleArn": "r"}));
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["config.OutputDataConfig", "config.ResourceConfig", "config.StoppingCondition"]);
        assert_eq!(p[0].message, "sagemaker requires OutputDataConfig (one of 3 missing)");
        assert_eq!(check(&complete()), vec![]);
        assert_eq!(
            check(
                &json!({"RoleArn": "{{role}}", "OutputDataConfig": "${o}", "ResourceConfig": {}, "StoppingCondition": {}})
            ),
            vec![]
        );
        let p = check(&json!({"RoleArn": 3, "OutputDataConfig": [], "ResourceConfig": {}, "StoppingCondition": {}}));
        assert_eq!(
            p.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["config.OutputDataConfig", "config.RoleArn"]
        );
        assert_eq!(check(&json!(3))[0].field, "config");
        let planned = check_planned(
            &json!({"RoleArn": "r", "OutputDataConfig": "${o}", "ResourceConfig": {}, "StoppingCondition": {}}),
        );
        assert_eq!(planned[0].field, "config.OutputDataConfig", "macros are expanded by plan time");
    }

    #[test]
    fn the_request_carries_image_command_environment_and_tags() {
        let opts = normalise(&json!({"RoleArn": "arn:aws:iam::1:role/r", "Environment": {"A": "queue", "B": "b"},
            "Tags": [{"Key": "team", "Value": "ml"}]}))
        .unwrap();
        let mut env = BTreeMap::from([("A".to_string(), "run".to_string()), ("LIFTOFF_RUN_ID".into(), "r1".into())]);
        env.insert("LONG".into(), "x".repeat(600));
        env.insert("bad-name".into(), "1".into());
        let run = TrainingRun {
            name: Some("r1-3".into()),
            image: "123.dkr.ecr.eu-west-1.amazonaws.com/t:1",
            entrypoint: &["python".to_string(), "train.py".to_string()],
            args: &["--lr".to_string(), "0.1".to_string()],
            env: &env,
            tags: &[(tags::RUN_ID, "r1".into())],
        };
        let (body, warnings) = training_job(&opts, &run);
        assert_eq!(body["TrainingJobName"], "r1-3");
        assert_eq!(body["AlgorithmSpecification"]["TrainingImage"], run.image);
        assert_eq!(body["AlgorithmSpecification"]["ContainerEntrypoint"], json!(["python", "train.py"]));
        assert_eq!(body["AlgorithmSpecification"]["ContainerArguments"], json!(["--lr", "0.1"]));
        assert_eq!(body["Environment"], json!({"A": "queue", "B": "b", "LIFTOFF_RUN_ID": "r1"}));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("LONG (its value is 600 characters") && warnings[0].contains("bad-name"),
            "{warnings:?}"
        );
        assert_eq!(body["Tags"], json!([{"Key": "team", "Value": "ml"}, {"Key": "liftoff:run-id", "Value": "r1"}]));
        let many: BTreeMap<String, String> = (0..120).map(|i| (format!("V{i:03}"), "v".to_string())).collect();
        let (body, warnings) = training_job(&opts, &TrainingRun { env: &many, ..run });
        assert_eq!(body["Environment"].as_object().unwrap().len(), MAX_ENV_ENTRIES);
        assert!(warnings[0].contains("dropped 22 variable(s)"), "{warnings:?}");
    }

    #[test]
    fn names_and_roles() {
        assert_eq!(job_name("run_ab.c", 7), "run-ab-c-7");
        assert_eq!(job_name(&"a".repeat(64), 12).len(), MAX_JOB_NAME);
        assert!(valid_job_name(&job_name("--x--", 1)));
        assert_eq!(role_arn("trainer", "aws-cn", "123"), "arn:aws-cn:iam::123:role/trainer");
        assert_eq!(role_arn("arn:aws:iam::1:role/x", "aws", "2"), "arn:aws:iam::1:role/x");
    }
}
