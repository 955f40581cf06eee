//! Reading JSON or YAML object files given on the command line.

use anyhow::{Context, bail};
use std::path::Path;

/// Parses `path` as YAML when it ends in `.yaml`/`.yml`, JSON otherwise, and
/// requires a top-level object.
pub fn read_object_file(path: &Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let is_yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    let value: serde_json::Value = if is_yaml {
        serde_saphyr::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?
    };
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => bail!("{} must hold an object at the top level, not {}", path.display(), kind(&other)),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
