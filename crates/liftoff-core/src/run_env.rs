//! The environment a run starts with: who and what it is, its config, and a
//! key to talk to the server. Long JSON values are split into numbered
//! variables (`LIFTOFF_CONFIG_0`, `_1`, ...) as the reference does, because
//! some runners (SageMaker) cap the length of one variable.

use std::collections::BTreeMap;

/// Longest single variable value before it is split (the reference's limit).
pub const MAX_ENV_VALUE: usize = 32_670;

/// What the run environment is made from.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    pub run_id: &'a str,
    pub item_id: &'a str,
    pub entity: &'a str,
    pub project: &'a str,
    pub queue: &'a str,
    pub job: &'a str,
    pub base_url: &'a str,
    /// The run's own key (never the agent's).
    pub api_key: Option<&'a str>,
    pub run_config: &'a serde_json::Value,
    /// `{path: partial document}` merged by the run into its config files.
    pub file_overrides: &'a serde_json::Value,
    /// Set when the run resumes after a preemption.
    pub resumes: u32,
    pub image: Option<&'a str>,
}

/// The variables for `facts`, splitting values longer than `max_value`.
pub fn run_env(facts: &RunFacts<'_>, max_value: usize) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    set("LIFTOFF_LAUNCH", "True");
    set("LIFTOFF_RUN_ID", facts.run_id);
    set("LIFTOFF_ITEM_ID", facts.item_id);
    set("LIFTOFF_ENTITY", facts.entity);
    set("LIFTOFF_PROJECT", facts.project);
    set("LIFTOFF_QUEUE", facts.queue);
    set("LIFTOFF_JOB", facts.job);
    set("LIFTOFF_BASE_URL", facts.base_url);
    if let Some(key) = facts.api_key {
        set("LIFTOFF_API_KEY", key);
    }
    if let Some(image) = facts.image {
        set("LIFTOFF_DOCKER", image);
    }
    if facts.resumes > 0 {
        set("LIFTOFF_RESUME", "allow");
        set("LIFTOFF_RESUME_COUNT", &facts.resumes.to_string());
    }
    for (name, value) in [("LIFTOFF_CONFIG", facts.run_config), ("LIFTOFF_FILE_OVERRIDES", facts.file_overrides)] {
        env.extend(split_var(name, &value.to_string(), max_value));
    }
    env
}

/// `name=value` when it fits, else `name_0..name_n` of at most `max_value`
/// bytes each, cut on character boundaries.
pub fn split_var(name: &str, value: &str, max_value: usize) -> Vec<(String, String)> {
    let max_value = max_value.max(4); // room for any one UTF-8 character
    if value.len() <= max_value {
        return vec![(name.to_string(), value.to_string())];
    }
    let mut parts = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let mut cut = max_value.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push((format!("{name}_{}", parts.len()), rest[..cut].to_string()));
        rest = &rest[cut..];
    }
    parts
}

/// Reads back what [`split_var`] wrote: `name`, else `name_0..` in order.
pub fn join_var(name: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(v) = get(name) {
        return Ok(v);
    }
    let mut out = String::new();
    let mut i = 0;
    while let Some(part) = get(&format!("{name}_{i}")) {
        out.push_str(&part);
        i += 1;
    }
    if i == 0 {
        return Err(format!("neither {name} nor {name}_0 is set"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts<'a>(config: &'a serde_json::Value, files: &'a serde_json::Value) -> RunFacts<'a> {
        RunFacts {
            run_id: "r1",
            item_id: "i1",
            entity: "acme",
            project: "proj",
            queue: "q",
            job: "acme/proj/train:v1",
            base_url: "http://127.0.0.1:7434",
            api_key: Some("lft_run"),
            run_config: config,
            file_overrides: files,
            resumes: 0,
            image: None,
        }
    }

    #[test]
    fn the_whole_environment() {
        let (config, files) = (json!({"lr": 0.1}), json!({}));
        let env = run_env(&facts(&config, &files), MAX_ENV_VALUE);
        let expected: BTreeMap<String, String> = [
            ("LIFTOFF_API_KEY", "lft_run"),
            ("LIFTOFF_BASE_URL", "http://127.0.0.1:7434"),
            ("LIFTOFF_CONFIG", r#"{"lr":0.1}"#),
            ("LIFTOFF_ENTITY", "acme"),
            ("LIFTOFF_FILE_OVERRIDES", "{}"),
            ("LIFTOFF_ITEM_ID", "i1"),
            ("LIFTOFF_JOB", "acme/proj/train:v1"),
            ("LIFTOFF_LAUNCH", "True"),
            ("LIFTOFF_PROJECT", "proj"),
            ("LIFTOFF_QUEUE", "q"),
            ("LIFTOFF_RUN_ID", "r1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn long_config_is_split_and_joins_back() {
        // the reference's example: max length 12 gives _0.._3
        let (config, files) = (json!({"learning_rate": 0.01, "batch_size": 32}), json!({}));
        let env = run_env(&facts(&config, &files), 12);
        assert!(!env.contains_key("LIFTOFF_CONFIG"));
        let parts: Vec<_> = env.keys().filter(|k| k.starts_with("LIFTOFF_CONFIG_")).cloned().collect();
        assert_eq!(parts, ["LIFTOFF_CONFIG_0", "LIFTOFF_CONFIG_1", "LIFTOFF_CONFIG_2", "LIFTOFF_CONFIG_3"]);
        let joined = join_var("LIFTOFF_CONFIG", |k| env.get(k).cloned()).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&joined).unwrap(), config);
        assert!(join_var("LIFTOFF_NOPE", |k| env.get(k).cloned()).is_err());
    }

    #[test]
    fn splitting_keeps_characters_whole_and_resume_is_marked() {
        let parts = split_var("V", "ééééé", 5);
        assert!(parts.iter().all(|(_, v)| v.len() <= 5));
        assert_eq!(parts.iter().map(|(_, v)| v.as_str()).collect::<String>(), "ééééé");
        let (config, files) = (json!({}), json!({}));
        let mut f = facts(&config, &files);
        f.resumes = 2;
        let env = run_env(&f, MAX_ENV_VALUE);
        assert_eq!(env.get("LIFTOFF_RESUME").map(String::as_str), Some("allow"));
        assert_eq!(env.get("LIFTOFF_RESUME_COUNT").map(String::as_str), Some("2"));
    }
}
