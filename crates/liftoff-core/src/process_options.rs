//! `resource_args` for the `local-process` runner. The only option is
//! `env`: the variables a queue's template (or a launch) gives the process,
//! since a local process inherits almost nothing from the agent. Any other
//! key is ignored, with a warning, as it was before `env` existed.

use crate::docker_options::{OptionError, parse_env};
use serde_json::Value;

/// Where the options live, for error paths.
const ROOT: &str = "resource_args.local-process";

/// What `resource_args` ask of a local process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessOptions {
    /// In the order given; a later entry wins on the same name.
    pub env: Vec<(String, String)>,
    /// Keys this runner does not use.
    pub ignored: Vec<String>,
}

/// Reads `resource_args` (an object, or null): `env` is a mapping of names
/// to strings, numbers or booleans, or a list of `NAME=VALUE` strings.
/// Every problem is reported.
pub fn parse(args: &Value) -> Result<ProcessOptions, Vec<OptionError>> {
    let mut out = ProcessOptions::default();
    let map = match args {
        Value::Null => return Ok(out),
        Value::Object(map) => map,
        _ => {
            return Err(vec![OptionError {
                path: ROOT.into(),
                message: format!("{ROOT} must be a mapping (with \"env\")"),
            }]);
        }
    };
    let mut errors = Vec::new();
    for (key, value) in map {
        if key != "env" {
            out.ignored.push(key.clone());
            continue;
        }
        let path = format!("{ROOT}.env");
        let mut take = |p: String, entry: Result<(String, String), String>| match entry {
            Ok(kv) => out.env.push(kv),
            Err(message) => {
                let message = if message.starts_with(&p) { message } else { format!("{p}: {message}") };
                errors.push(OptionError { path: p, message });
            }
        };
        match value {
            Value::Object(vars) => {
                for (name, v) in vars {
                    let p = format!("{path}.{name}");
                    let raw = match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                        _ => Err(format!("{p} must be a string, a number or a boolean")),
                    };
                    take(p, raw.and_then(|r| parse_env(&format!("{name}={r}"))));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let entry = match v {
                        Value::String(s) => parse_env(s),
                        _ => Err("must be a NAME=VALUE string".to_string()),
                    };
                    take(format!("{path}[{i}]"), entry);
                }
            }
            _ => take(path.clone(), Err("must be a mapping of names to values or a list of NAME=VALUE".into())),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_as_a_mapping_or_a_list() {
        let o = parse(&json!({"env": {"MODE": "fast", "N": 3, "ON": true}})).unwrap();
        assert_eq!(o.env, [("MODE", "fast"), ("N", "3"), ("ON", "true")].map(|(k, v)| (k.into(), v.into())));
        let o = parse(&json!({"env": ["A=1", "B=x=y"], "gpus": "all"})).unwrap();
        assert_eq!(o.env, [("A", "1"), ("B", "x=y")].map(|(k, v)| (k.into(), v.into())));
        assert_eq!(o.ignored, ["gpus"]);
        assert_eq!(parse(&Value::Null).unwrap(), ProcessOptions::default());
    }

    #[test]
    fn every_bad_entry_is_named() {
        let errs = parse(&json!({"env": ["NOVALUE", "OK=1", 5]})).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["resource_args.local-process.env[0]", "resource_args.local-process.env[2]"]);
        assert!(errs[0].message.contains("NOVALUE"), "{}", errs[0].message);
        let errs = parse(&json!({"env": {"X": {"nested": 1}}})).unwrap_err();
        assert_eq!(errs[0].path, "resource_args.local-process.env.X");
        assert!(parse(&json!("env")).is_err());
    }
}
