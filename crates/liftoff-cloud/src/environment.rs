//! [`CloudEnv`]: the agent's resolved cloud environment.
//! SKELETON: filled in by the environments work (aws.rs, gcp.rs, azure.rs).

use crate::{CloudError, Secret};
use liftoff_core::launch_config::EnvironmentConfig;

/// An OAuth access token and where it came from.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// The credential source that produced it, for messages: `GOOGLE_APPLICATION_CREDENTIALS (/path/key.json)`.
    pub source: String,
}

/// Who the credentials belong to, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// An ARN, a service-account e-mail, an Entra object id.
    pub who: String,
    /// The credential source: `environment`, `profile default`, `metadata server`...
    pub source: String,
}

/// The resolved environment. Resolving does not call the cloud; the first
/// token or identity request does.
pub enum CloudEnv {
    Local,
}

impl CloudEnv {
    /// Resolves `cfg` (`None`: local) through the cloud's default chain.
    pub async fn resolve(cfg: Option<&EnvironmentConfig>) -> Result<Self, CloudError> {
        match cfg {
            None | Some(EnvironmentConfig::Local) => Ok(Self::Local),
            Some(other) => Err(CloudError::NotBuiltIn(other.type_name())),
        }
    }

    /// `local`, `aws`, `gcp` or `azure`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Local => "local",
        }
    }
}
