use crate::resource::ResourceType;
use serde::{Deserialize, Serialize};

/// A named queue of an entity, with the resource its items run on and a
/// resource-config template the server fills in at launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateVariable {
    #[schema(pattern = "^[A-Za-z0-9_]+$")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// The reference's shape of one template variable: `{schema: {type,
/// minimum, maximum, enum, default}, description}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceVariable {
    schema: ReferenceSchema,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceSchema {
    #[serde(rename = "type")]
    kind: VarKind,
    #[serde(default)]
    minimum: Option<f64>,
    #[serde(default)]
    maximum: Option<f64>,
    #[serde(default, rename = "enum")]
    allowed: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    default: Option<serde_json::Value>,
}

/// Reads a queue's template variables in either shape: ours, a list of
/// [`TemplateVariable`]; or the reference's, an object of
/// `{name: {schema: {...}, description}}`. Errors name the variable.
pub fn template_variables<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TemplateVariable>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        v @ serde_json::Value::Array(_) => serde_json::from_value(v).map_err(D::Error::custom),
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(name, v)| {
                let r: ReferenceVariable = serde_json::from_value(v)
                    .map_err(|e| D::Error::custom(format!("template variable '{name}': {e}")))?;
                Ok(TemplateVariable {
                    name,
                    kind: r.schema.kind,
                    min: r.schema.minimum,
                    max: r.schema.maximum,
                    allowed: r.schema.allowed,
                    default: r.schema.default,
                    description: r.description,
                })
            })
            .collect(),
        serde_json::Value::Null => Ok(Vec::new()),
        _ => Err(D::Error::custom(
            "template_variables must be a list of variables, or an object of {name: {schema: {type, ...}}}",
        )),
    }
}

/// The document's schema of [`template_variables`]: either shape.
pub fn template_variables_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    use utoipa::openapi::{Ref, RefOr};
    let number = || ObjectBuilder::new().schema_type(Type::Number);
    let reference_schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("type", RefOr::Ref(Ref::from_schema_name("VarKind")))
        .required("type")
        .property("minimum", number())
        .property("maximum", number())
        .property("enum", ArrayBuilder::new())
        .property("default", ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
    let reference_variable = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("schema", reference_schema)
        .required("schema")
        .property("description", ObjectBuilder::new().schema_type(Type::String))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
    OneOfBuilder::new()
        .item(ArrayBuilder::new().items(RefOr::Ref(Ref::from_schema_name("TemplateVariable"))))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property_names(Some(
                    ObjectBuilder::new().schema_type(Type::String).pattern(Some(crate::rules::VARIABLE_NAME.pattern)),
                ))
                .additional_properties(Some(reference_variable)),
        )
        .into()
}

#[cfg(test)]
mod template_shape_tests {
    use crate::api::CreateQueue;

    #[test]
    fn the_references_shape_reads_as_ours() {
        let ours: CreateQueue = serde_json::from_value(serde_json::json!({
            "name": "q", "resource": "local-container",
            "template_variables": [{"name": "gpus", "type": "integer", "min": 0, "max": 8, "default": 1, "description": "GPUs"}]
        }))
        .unwrap();
        let reference: CreateQueue = serde_json::from_value(serde_json::json!({
            "name": "q", "resource": "local-container",
            "template_variables": {"gpus": {"schema": {"type": "integer", "minimum": 0, "maximum": 8, "default": 1}, "description": "GPUs"}}
        }))
        .unwrap();
        assert_eq!(ours.template_variables, reference.template_variables);
        let e = serde_json::from_value::<CreateQueue>(serde_json::json!({
            "name": "q", "resource": "local-container",
            "template_variables": {"gpus": {"schema": {"type": "integer", "maximum": 8, "step": 1}}}
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("template variable 'gpus'") && e.contains("step"), "{e}");
    }
}
