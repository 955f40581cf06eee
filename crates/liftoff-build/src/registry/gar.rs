//! Google Artifact Registry: user `oauth2accesstoken`, an access token from
//! the environment's application default credentials as the password.

use super::distribution::{Distribution, OverDistribution, base_url};
use super::{Login, LoginSource, RegistryError, TokenSource};
use async_trait::async_trait;
use liftoff_run::container::RegistryAuth;
use std::sync::Arc;
use url::Url;

/// The scope Artifact Registry accepts for pushes and pulls.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The user name that makes the password an OAuth access token.
pub const GAR_USER: &str = "oauth2accesstoken";

/// `<region>-docker.pkg.dev/<project>/<repository>/<image>`.
pub struct GarRegistry {
    repository: String,
    client: Distribution,
}

struct GarLogin {
    tokens: Arc<dyn TokenSource>,
    host: String,
}

#[async_trait]
impl LoginSource for GarLogin {
    async fn login(&self) -> Result<Login, RegistryError> {
        let t = self.tokens.access_token(&[CLOUD_PLATFORM_SCOPE]).await?;
        Ok(Login {
            auth: Some(RegistryAuth {
                username: GAR_USER.into(),
                password: t.token.expose().to_string(),
                serveraddress: self.host.clone(),
            }),
            source: format!("a GCP access token from {}", t.source),
            expires: None,
        })
    }
}

impl GarRegistry {
    pub fn new(
        region: &str,
        project: &str,
        repository: &str,
        image: &str,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Self, RegistryError> {
        let host = format!("{region}-docker.pkg.dev");
        let path = format!("{project}/{repository}/{image}");
        let full = format!("{host}/{path}");
        let describe = format!("Artifact Registry {full}");
        let base = base_url(&host).map_err(|m| RegistryError::Other { registry: describe.clone(), message: m })?;
        let login = Arc::new(GarLogin { tokens, host });
        Ok(Self { client: Distribution::new(base, &path, describe, login), repository: full })
    }

    /// Reaches the registry API at `base` (a test's local registry) instead of
    /// `https://<region>-docker.pkg.dev`; never set from the config file.
    pub fn with_endpoint(mut self, base: Url) -> Self {
        self.client.set_base(base);
        self
    }
}

impl OverDistribution for GarRegistry {
    fn client(&self) -> &Distribution {
        &self.client
    }

    fn repository_uri(&self) -> &str {
        &self.repository
    }

    fn kind(&self) -> &'static str {
        "Artifact Registry"
    }
}
