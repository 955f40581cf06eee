//! The JSON Schema of the file, generated from the key table the validator uses.

use super::keys::{AGENT_KEYS, Key, Shape};
use serde_json::{Map, Value, json};

/// Strings accepted for a boolean: true/false/yes/no/on/off in any case.
const FLAG_PATTERN: &str = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff])$";
/// Strings accepted for an integer (the reference casts them).
const INTEGER_PATTERN: &str = "^\\s*[-+]?[0-9]+\\s*$";

/// JSON Schema (draft 2020-12) of `launch-config.yaml`. It describes every key
/// and value shape; rules that span fields (a destination's region matching
/// the environment's) are checked by [`super::check_file_text`] only.
pub fn json_schema() -> Value {
    let mut root = block(AGENT_KEYS);
    let obj = root.as_object_mut().expect("block() builds an object");
    obj.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    obj.insert("title".into(), json!("launch-config.yaml"));
    obj.insert(
        "description".into(),
        json!("Configuration of a Liftoff launch agent. Resolution order: defaults < file < environment < flags."),
    );
    root
}

fn block(keys: &'static [Key]) -> Value {
    let mut properties = Map::new();
    for k in keys {
        properties.insert(k.name.to_string(), property(k));
    }
    let mut schema = json!({"type": "object", "additionalProperties": false, "properties": properties});
    let always: Vec<&str> = keys.iter().filter(|k| k.required_by == ["*"]).map(|k| k.name).collect();
    if !always.is_empty() {
        schema["required"] = json!(always);
    }
    // "when type is T, these keys are required / not allowed"
    let mut rules = Vec::new();
    if let Some(Shape::Choice(types)) = keys.iter().find(|k| k.name == "type").map(|k| k.shape) {
        for t in types {
            let required: Vec<&str> =
                keys.iter().filter(|k| k.required_by != ["*"] && k.required_by.contains(t)).map(|k| k.name).collect();
            if !required.is_empty() {
                rules.push(json!({"if": {"properties": {"type": {"const": t}}, "required": ["type"]}, "then": {"required": required}}));
            }
        }
    }
    if !rules.is_empty() {
        schema["allOf"] = Value::Array(rules);
    }
    schema
}

fn property(k: &'static Key) -> Value {
    let mut s = match k.shape {
        Shape::Text => json!({"type": ["string", "null"]}),
        Shape::TextList => json!({"type": ["array", "null"], "items": {"type": "string"}}),
        Shape::Flag => json!({"anyOf": [{"type": ["boolean", "null"]}, {"type": "string", "pattern": FLAG_PATTERN}]}),
        Shape::Integer { min, max } => json!({"anyOf": [
            {"type": ["integer", "null"], "minimum": min, "maximum": max},
            {"type": "string", "pattern": INTEGER_PATTERN}
        ]}),
        Shape::Choice(options) => {
            let mut o: Vec<Value> = options.iter().map(|s| json!(s)).collect();
            o.push(Value::Null);
            json!({"enum": o})
        }
        Shape::Mapping => json!({"type": ["object", "null"]}),
        Shape::Block(keys) => json!({"anyOf": [block(keys), {"type": "null"}]}),
    };
    s["description"] = json!(k.doc);
    if let Some(d) = k.default {
        s["default"] = serde_json::from_str(d).expect("defaults in the key table are JSON");
    }
    s
}
