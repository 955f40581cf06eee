//! Queue resource-config templates: `{{var}}` placeholders filled with typed,
//! range-checked launch values.

use crate::queue::{TemplateVariable, VarKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A template problem, naming the variable at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub variable: String,
    pub message: String,
}

fn err(variable: &str, message: String) -> TemplateError {
    TemplateError { variable: variable.to_string(), message }
}

/// Names of every `{{name}}` placeholder in the template's strings.
pub fn placeholders(template: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk_strings(template, &mut |s| {
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            out.insert(after[..end].trim().to_string());
            rest = &after[end + 2..];
        }
    });
    out
}

fn walk_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.values().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

/// Checks a queue definition: variable names are unique and every placeholder is declared.
pub fn validate_template(template: &Value, vars: &[TemplateVariable]) -> Result<(), TemplateError> {
    let mut seen = BTreeSet::new();
    for v in vars {
        if !seen.insert(v.name.as_str()) {
            return Err(err(&v.name, format!("template variable '{}' is declared twice", v.name)));
        }
        if v.name.is_empty() || !v.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(&v.name, format!("template variable name '{}' must be [A-Za-z0-9_]+", v.name)));
        }
        if let (Some(min), Some(max)) = (v.min, v.max)
            && min > max
        {
            return Err(err(&v.name, format!("template variable '{}' has min {min} > max {max}", v.name)));
        }
        if let Some(d) = &v.default {
            coerce(v, d).map_err(|e| err(&v.name, format!("default of {}", e.message)))?;
        }
    }
    for p in placeholders(template) {
        if !vars.iter().any(|v| v.name == p) {
            return Err(err(&p, format!("placeholder '{{{{{p}}}}}' names no declared template variable")));
        }
    }
    Ok(())
}

/// Casts and checks one value against its variable's schema. Strings are
/// accepted for numbers (they come from `--set-var k=v`).
pub fn coerce(var: &TemplateVariable, value: &Value) -> Result<Value, TemplateError> {
    let name = &var.name;
    let typed = match var.kind {
        VarKind::Integer => {
            let n = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            let n = n.ok_or_else(|| err(name, format!("value for '{name}' must be of type integer, got {value}")))?;
            Value::from(n)
        }
        VarKind::Number => {
            let n = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            };
            let n = n.ok_or_else(|| err(name, format!("value for '{name}' must be of type number, got {value}")))?;
            Value::from(n)
        }
        VarKind::String => match value {
            Value::String(s) => Value::String(s.clone()),
            other => return Err(err(name, format!("value for '{name}' must be of type string, got {other}"))),
        },
    };
    if let Some(x) = typed.as_f64() {
        if let Some(min) = var.min
            && x < min
        {
            return Err(err(name, format!("value for '{name}' is {x}, below the minimum {min}")));
        }
        if let Some(max) = var.max
            && x > max
        {
            return Err(err(name, format!("value for '{name}' is {x}, above the maximum {max}")));
        }
    }
    if let Some(allowed) = &var.allowed {
        let hit = allowed.iter().any(|a| a == &typed || (a.as_f64().is_some() && a.as_f64() == typed.as_f64()));
        if !hit {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return Err(err(name, format!("value for '{name}' is {typed}, not one of {}", list.join(", "))));
        }
    }
    Ok(typed)
}

/// Fills the template: a string that is exactly one placeholder takes the
/// typed value; placeholders inside longer strings are interpolated.
pub fn render(
    template: &Value,
    vars: &[TemplateVariable],
    values: &BTreeMap<String, Value>,
    queue: &str,
) -> Result<Value, TemplateError> {
    for k in values.keys() {
        if !vars.iter().any(|v| &v.name == k) {
            return Err(err(k, format!("queue '{queue}' does not support overriding '{k}'")));
        }
    }
    let mut resolved = BTreeMap::new();
    for v in vars {
        let value = match (values.get(&v.name), &v.default) {
            (Some(x), _) => coerce(v, x)?,
            (None, Some(d)) => coerce(v, d)?,
            (None, None) => {
                if placeholders(template).contains(&v.name) {
                    return Err(err(&v.name, format!("template variable '{}' is required by queue '{queue}'", v.name)));
                }
                continue;
            }
        };
        resolved.insert(v.name.clone(), value);
    }
    Ok(fill(template, &resolved))
}

fn fill(v: &Value, vals: &BTreeMap<String, Value>) -> Value {
    match v {
        Value::String(s) => {
            let t = s.trim();
            if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
                && !inner.contains("{{")
                && let Some(val) = vals.get(inner.trim())
            {
                return val.clone();
            }
            let mut out = s.clone();
            for (k, val) in vals {
                let text = match val {
                    Value::String(x) => x.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("{{{{{k}}}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, vals)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, vals))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn var(name: &str, kind: VarKind, min: Option<f64>, max: Option<f64>) -> TemplateVariable {
        TemplateVariable { name: name.into(), kind, min, max, allowed: None, default: None, description: None }
    }

    #[test]
    fn renders_typed_and_interpolated() {
        let t = json!({"gpus": "{{gpus}}", "image": "repo/{{tag}}:x", "n": [ "{{ gpus }}" ]});
        let vars = vec![var("gpus", VarKind::Integer, Some(0.0), Some(8.0)), var("tag", VarKind::String, None, None)];
        validate_template(&t, &vars).unwrap();
        let vals = BTreeMap::from([("gpus".into(), json!("2")), ("tag".into(), json!("abc"))]);
        let out = render(&t, &vars, &vals, "q").unwrap();
        assert_eq!(out, json!({"gpus": 2, "image": "repo/abc:x", "n": [2]}));
    }

    #[test]
    fn refuses_wrong_type_range_unknown_and_missing() {
        let t = json!({"gpus": "{{gpus}}"});
        let vars = vec![var("gpus", VarKind::Integer, Some(0.0), Some(8.0))];
        let e = render(&t, &vars, &BTreeMap::from([("gpus".into(), json!("two"))]), "q").unwrap_err();
        assert_eq!(e.variable, "gpus");
        assert!(e.message.contains("integer"), "{e}");
        let e = render(&t, &vars, &BTreeMap::from([("gpus".into(), json!(9))]), "q").unwrap_err();
        assert!(e.message.contains("above the maximum 8"), "{e}");
        let e = render(&t, &vars, &BTreeMap::from([("cpus".into(), json!(1))]), "q").unwrap_err();
        assert_eq!(e.variable, "cpus");
        let e = render(&t, &vars, &BTreeMap::new(), "q").unwrap_err();
        assert!(e.message.contains("required"), "{e}");
    }

    #[test]
    fn enum_and_undeclared_placeholder() {
        let mut v = var("size", VarKind::String, None, None);
        v.allowed = Some(vec![json!("s"), json!("m")]);
        assert!(coerce(&v, &json!("m")).is_ok());
        assert!(coerce(&v, &json!("xl")).unwrap_err().message.contains("not one of"));
        let e = validate_template(&json!({"a": "{{nope}}"}), &[v]).unwrap_err();
        assert_eq!(e.variable, "nope");
    }
}
