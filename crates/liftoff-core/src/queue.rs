use crate::resource::ResourceType;
use serde::{Deserialize, Serialize};

/// A named queue of an entity, with the resource its items run on and a
/// resource-config template the server fills in at launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub entity: String,
    pub name: String,
    pub resource: ResourceType,
    /// JSON template; string values may hold `{{var}}` placeholders.
    pub config: serde_json::Value,
    pub template_variables: Vec<TemplateVariable>,
    /// When off, every item is claimed in FIFO order whatever its priority.
    pub prioritization: bool,
    pub created_at_ms: i64,
}

/// A typed variable a launch may set to fill the queue's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateVariable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VarKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Allowed values, when the variable is an enumeration.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// Used when the launch does not set the variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarKind {
    Integer,
    Number,
    String,
}

/// Checks a queue or entity name: 1–64 chars of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn validate_name(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with(['.', '-'])
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} '{value}' is invalid: use 1-64 characters of letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        ))
    }
}
