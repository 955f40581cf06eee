use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a queue's items run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceType {
    LocalProcess,
    LocalContainer,
    Kubernetes,
    Sagemaker,
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
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown resource type '{s}': expected one of {}", known.join(", "))
        })
    }
}
