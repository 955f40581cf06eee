//! `${name}` macros in a run's resource arguments, as the reference expands
//! them: run facts (`${run_id}`, `${image_uri}`, ...) and the agent's own
//! environment variables, recursively through objects and arrays. Unknown
//! names are left as they are, so a literal `${X}` meant for a shell survives.

use std::collections::BTreeMap;

/// Returns `value` with every `${name}` in its strings replaced when `lookup`
/// knows `name` (`[A-Za-z0-9_]+`, the reference's `\w+`). Keys are not expanded.
pub fn expand(value: &serde_json::Value, lookup: &dyn Fn(&str) -> Option<String>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(expand_str(s, lookup)),
        Value::Array(a) => Value::Array(a.iter().map(|v| expand(v, lookup)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), expand(v, lookup))).collect()),
        other => other.clone(),
    }
}

/// One pass over `s`; a replacement is not expanded again, so a value that
/// itself contains `${...}` cannot recurse.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        let name = &after[..name_len];
        if name_len > 0
            && after[name_len..].starts_with('}')
            && let Some(v) = lookup(name)
        {
            out.push_str(&v);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The run facts the reference offers, then the agent's environment.
pub fn run_lookup<'a>(
    facts: &'a BTreeMap<&'static str, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| facts.get(name).cloned().or_else(|| env(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expands_recursively_and_keeps_unknown_macros() {
        let facts = BTreeMap::from([
            ("project_name", "proj".to_string()),
            ("entity_name", "acme".to_string()),
            ("author", "ada".to_string()),
            ("run_id", "r1".to_string()),
            ("image_uri", "reg/img:1".to_string()),
        ]);
        let env = |n: &str| (n == "CUDA_VISIBLE_DEVICES").then(|| "0,1".to_string());
        let lookup = run_lookup(&facts, &env);
        let args = json!({
            "name": "${project_name}-${run_id}",
            "env": ["A=${entity_name}", "GPU=${CUDA_VISIBLE_DEVICES}", "B=${author}"],
            "nested": {"image": "${image_uri}", "n": 3, "keep": "${unknown} ${ } $${run_id} ${run_id"},
        });
        let out = expand(&args, &lookup);
        assert_eq!(
            out,
            json!({
                "name": "proj-r1",
                "env": ["A=acme", "GPU=0,1", "B=ada"],
                "nested": {"image": "reg/img:1", "n": 3, "keep": "${unknown} ${ } $r1 ${run_id"},
            })
        );
    }

    #[test]
    fn a_replacement_is_not_expanded_again() {
        let lookup = |n: &str| (n == "a").then(|| "${a}".to_string());
        assert_eq!(expand_str("x${a}y", &lookup), "x${a}y");
    }
}
