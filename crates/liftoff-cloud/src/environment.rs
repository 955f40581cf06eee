//! [`CloudEnv`]: the agent's resolved cloud environment.

#[cfg(feature = "aws")]
use crate::aws::AwsEnv;
#[cfg(feature = "azure")]
use crate::azure::{AzureEnv, AzureEnvBuilder};
#[cfg(feature = "gcp")]
use crate::gcp::GcpEnv;
use crate::{CloudError, Secret};
use liftoff_core::launch_config::EnvironmentConfig;
use serde::Serialize;

/// An OAuth access token and where it came from.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// The credential source that produced it, for messages: `GOOGLE_APPLICATION_CREDENTIALS (/path/key.json)`.
    pub source: String,
}

/// Who the credentials belong to, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// An ARN, a service-account e-mail, an Entra credential source.
    pub who: String,
    /// The credential source: `environment variables`, `profile 'default'`, `the metadata server`...
    pub source: String,
    /// The AWS account, when known.
    pub account: Option<String>,
}

/// The resolved environment. Resolving reads configuration files and the
/// environment; the first token or identity request calls the cloud.
#[derive(Clone)]
pub enum CloudEnv {
    Local,
    #[cfg(feature = "aws")]
    Aws(AwsEnv),
    #[cfg(feature = "gcp")]
    Gcp(GcpEnv),
    #[cfg(feature = "azure")]
    Azure(AzureEnv),
}

impl CloudEnv {
    /// Resolves `cfg` (`None`: local) through the cloud's default chain.
    pub async fn resolve(cfg: Option<&EnvironmentConfig>) -> Result<Self, CloudError> {
        match cfg {
            None | Some(EnvironmentConfig::Local) => Ok(Self::Local),
            #[cfg(feature = "aws")]
            Some(EnvironmentConfig::Aws { region, profile }) => {
                Ok(Self::Aws(AwsEnv::builder(region).profile(profile.as_deref()).load().await))
            }
            #[cfg(feature = "gcp")]
            Some(EnvironmentConfig::Gcp { region, project }) => {
                Ok(Self::Gcp(GcpEnv::builder().region(region.as_deref()).project(project.as_deref()).load().await?))
            }
            #[cfg(feature = "azure")]
            Some(EnvironmentConfig::Azure { region }) => {
                Ok(Self::Azure(AzureEnvBuilder::from_env().region(region.as_deref()).build()?))
            }
            #[allow(unreachable_patterns, reason = "reached when a cloud's feature is off")]
            Some(other) => Err(CloudError::NotBuiltIn(other.type_name())),
        }
    }

    /// `local`, `aws`, `gcp` or `azure`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            #[cfg(feature = "aws")]
            Self::Aws(_) => "aws",
            #[cfg(feature = "gcp")]
            Self::Gcp(_) => "gcp",
            #[cfg(feature = "azure")]
            Self::Azure(_) => "azure",
        }
    }

    /// The environment's region (`None` for local, and for azure without one).
    pub fn region(&self) -> Option<&str> {
        match self {
            Self::Local => None,
            #[cfg(feature = "aws")]
            Self::Aws(a) => Some(a.region()),
            #[cfg(feature = "gcp")]
            Self::Gcp(g) => Some(g.region()),
            #[cfg(feature = "azure")]
            Self::Azure(a) => a.region(),
        }
    }

    /// Whose credentials these are (STS GetCallerIdentity, the service
    /// account, the Entra source); calls the cloud. Local has none.
    pub async fn identity(&self) -> Result<Option<Identity>, CloudError> {
        match self {
            Self::Local => Ok(None),
            #[cfg(feature = "aws")]
            Self::Aws(a) => a.identity().await.map(Some),
            #[cfg(feature = "gcp")]
            Self::Gcp(g) => g.identity().await.map(Some),
            #[cfg(feature = "azure")]
            Self::Azure(a) => a.identity().await.map(Some),
        }
    }
}
