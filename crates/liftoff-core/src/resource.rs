use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a queue's items run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceType {
    LocalProcess,
    LocalContainer,
    Kubernetes,
    Sagemaker,
    /// Also read as the reference's legacy name `gcp-vertex`.
    #[serde(alias = "gcp-vertex")]
    Vertex,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] =
        [Self::LocalProcess, Self::LocalContainer, Self::Kubernetes, Self::Sagemaker, Self::Vertex];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalProcess => "local-process",
            Self::LocalContainer => "local-container",
            Self::Kubernetes => "kubernetes",
            Self::Sagemaker => "sagemaker",
            Self::Vertex => "vertex",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "gcp-vertex" {
            return Ok(Self::Vertex);
        }
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown resource type '{s}': expected one of {}", known.join(", "))
        })
    }
}

/// One problem with a queue's config (or a launch's rendered config): the
/// field, as `config.<option>`, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: String,
    pub message: String,
}

/// Checks a queue's config against its resource type's rules, the same
/// ones the agent's runner applies, so that a config no launch could run
/// on is refused when the queue is created rather than at every launch.
/// Top-level options whose value holds a `{{variable}}` or `${macro}` are
/// left to the launch (their value is not known yet); everything else is
/// checked (`sagemaker` and `vertex` check their required keys' presence
/// whatever their value).
pub fn check_config(resource: ResourceType, config: &serde_json::Value) -> Vec<ConfigProblem> {
    let Some(map) = config.as_object() else {
        return vec![ConfigProblem { field: "config".into(), message: "config must be a JSON object".into() }];
    };
    if map.contains_key("resource_args") {
        return vec![ConfigProblem {
            field: "config.resource_args".into(),
            message: format!(
                "config is the {resource} options themselves: write them at the top level, not under \
                 resource_args (the reference's launch spec nests them; a queue's config does not)"
            ),
        }];
    }
    let known: serde_json::Map<String, serde_json::Value> =
        map.iter().filter(|(_, v)| !holds_placeholder(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let known = serde_json::Value::Object(known);
    let to_problems = |errors: Vec<crate::docker_options::OptionError>, root: &str| {
        errors
            .into_iter()
            .map(|e| ConfigProblem {
                field: format!("config{}", e.path.strip_prefix(root).unwrap_or("")),
                message: e.message,
            })
            .collect()
    };
    match resource {
        ResourceType::LocalContainer => {
            let mut problems = match crate::docker_options::parse(&known) {
                Ok(_) => vec![],
                Err(errors) => to_problems(errors, "resource_args.local-container"),
            };
            // an option's name is known now, whatever its value
            for key in map.iter().filter(|(_, v)| holds_placeholder(v)).map(|(k, _)| k) {
                let name = crate::docker_options::normalise_name(key);
                if !crate::docker_options::SUPPORTED_OPTIONS.contains(&name.as_str()) {
                    problems.push(ConfigProblem {
                        field: format!("config.{key}"),
                        message: format!(
                            "unsupported local-container option '{key}'; supported options are: {}",
                            crate::docker_options::SUPPORTED_OPTIONS.join(", ")
                        ),
                    });
                }
            }
            problems
        }
        ResourceType::LocalProcess => match crate::process_options::parse(&known) {
            Ok(_) => vec![],
            Err(errors) => to_problems(errors, "resource_args.local-process"),
        },
        ResourceType::Kubernetes => match crate::kube_args::check(&known, false) {
            Ok(()) => vec![],
            Err(errors) => errors.into_iter().map(|m| ConfigProblem { field: "config".into(), message: m }).collect(),
        },
        ResourceType::Sagemaker => crate::sagemaker_args::check(config),
        ResourceType::Vertex => crate::vertex_args::check(config),
    }
}

/// Whether `v` holds a `{{variable}}` or `${macro}`, so its value is known only at launch.
pub(crate) fn holds_placeholder(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains("{{") || s.contains("${"),
        serde_json::Value::Array(a) => a.iter().any(holds_placeholder),
        serde_json::Value::Object(o) => o.values().any(holds_placeholder),
        _ => false,
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_container_config_is_checked_naming_the_option() {
        assert_eq!(check_config(ResourceType::LocalContainer, &json!({"memory": "1g", "env": ["A=1"]})), vec![]);
        let p = check_config(ResourceType::LocalContainer, &json!({"memory": "lots"}));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "config.memory");
        let p = check_config(ResourceType::LocalContainer, &json!({"privileged": true}));
        assert_eq!(p[0].field, "config.privileged");
        assert!(p[0].message.contains("unsupported"), "{}", p[0].message);
        let p = check_config(ResourceType::LocalContainer, &json!({"resource_args": {"local-container": {}}}));
        assert_eq!(p[0].field, "config.resource_args");
        assert!(p[0].message.contains("top level"), "{}", p[0].message);
    }

    #[test]
    fn gcp_vertex_is_the_legacy_name_of_vertex() {
        assert_eq!("gcp-vertex".parse::<ResourceType>(), Ok(ResourceType::Vertex));
        assert_eq!(serde_json::from_value::<ResourceType>(json!("gcp-vertex")).unwrap(), ResourceType::Vertex);
        assert_eq!(ResourceType::Vertex.as_str(), "vertex");
    }

    #[test]
    fn placeholders_wait_for_the_launch() {
        assert_eq!(check_config(ResourceType::LocalContainer, &json!({"memory": "{{mem}}"})), vec![]);
        assert_eq!(check_config(ResourceType::LocalContainer, &json!({"env": ["RUN=${run_id}"]})), vec![]);
        // but an unknown option is refused whatever its value
        assert_eq!(check_config(ResourceType::LocalContainer, &json!({"volume": "{{v}}", "x": 1})).len(), 2);
    }

    #[test]
    fn kubernetes_and_process_rules_apply() {
        let k = check_config(ResourceType::Kubernetes, &json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}));
        assert!(!k.is_empty());
        let p = check_config(ResourceType::LocalProcess, &json!({"env": 3}));
        assert_eq!(p[0].field, "config.env");
        let v = check_config(ResourceType::Vertex, &json!({"anything": 1}));
        assert_eq!(
            v.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["config.anything", "config.spec.worker_pool_specs", "config.spec.staging_bucket"]
        );
        let s = check_config(ResourceType::Sagemaker, &json!({"RoleArn": "{{role}}"}));
        assert_eq!(s.len(), 3, "{s:?}");
    }
}
