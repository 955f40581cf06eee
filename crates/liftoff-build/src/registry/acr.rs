//! Azure Container Registry: a Microsoft Entra access token is exchanged at
//! `https://<registry>.azurecr.io/oauth2/exchange` for an ACR refresh token,
//! which is the password of the all-zero user (what `az acr login` does).
//! Existence is the registry's manifest HEAD with that login (the reference
//! called `get_manifest_properties`, which is the same question).

use super::distribution::{Distribution, OverDistribution, base_url, error_chain, error_text, read_bounded};
use super::{Login, LoginSource, RegistryError, TokenSource};
use async_trait::async_trait;
use liftoff_run::container::RegistryAuth;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The Entra scope for ACR's own audience. The ARM audience
/// (`https://management.azure.com/.default`) works too, unless the registry's
/// "authentication-as-arm" policy is disabled, which Azure Policy recommends;
/// ACR-audience tokens are accepted either way.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The user name that makes the password an ACR refresh token.
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

/// `<registry>.azurecr.io/<repository>`.
pub struct AcrRegistry {
    repository: String,
    registry_name: String,
    client: Distribution,
}

struct AcrLogin {
    tokens: Arc<dyn TokenSource>,
    /// `<registry>.azurecr.io`: the exchange's `service`.
    host: String,
    /// Where `/oauth2/exchange` is: the registry, or a test's server.
    exchange: Url,
    http: reqwest::Client,
}

#[async_trait]
impl LoginSource for AcrLogin {
    async fn login(&self) -> Result<Login, RegistryError> {
        let aad = self.tokens.access_token(&[ACR_SCOPE]).await?;
        let url = self.exchange.join("oauth2/exchange").map_err(|e| self.error(format!("bad exchange URL: {e}")))?;
        let source = format!("a Microsoft Entra token from {}, exchanged at {url}", aad.source);
        let form = [("grant_type", "access_token"), ("service", &self.host), ("access_token", aad.token.expose())];
        let resp = self
            .http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| self.error(format!("cannot reach {url}: {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            let said = error_text(resp).await;
            return Err(if status.is_client_error() {
                RegistryError::Unauthorized {
                    registry: self.describe(),
                    source_name: source,
                    message: format!("the token exchange answered {status}: {said}"),
                }
            } else {
                self.error(format!("the token exchange at {url} answered {status}: {said}"))
            });
        }
        let body = read_bounded(resp, 256 * 1024).await.map_err(|m| self.error(format!("token exchange: {m}")))?;
        #[derive(serde::Deserialize)]
        struct Exchanged {
            refresh_token: String,
        }
        let refresh: Exchanged = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("the token exchange at {url} answered no refresh_token: {e}")))?;
        Ok(Login {
            auth: Some(RegistryAuth {
                username: ACR_USER.into(),
                password: refresh.refresh_token,
                serveraddress: self.host.clone(),
            }),
            source: format!("an ACR refresh token for {}", source),
            expires: None,
        })
    }
}

impl AcrLogin {
    fn describe(&self) -> String {
        format!("ACR {}", self.host)
    }

    fn error(&self, message: String) -> RegistryError {
        RegistryError::Other { registry: self.describe(), message }
    }
}

impl AcrRegistry {
    /// `registry` is the name before `.azurecr.io`.
    pub fn new(registry: &str, repository: &str, tokens: Arc<dyn TokenSource>) -> Result<Self, RegistryError> {
        Self::build(registry, repository, tokens, None)
    }

    /// [`AcrRegistry::new`] reaching the registry API at `registry_api` and
    /// the token exchange at `exchange` (a test's local servers) instead of
    /// `https://<registry>.azurecr.io`; never set from the config file.
    pub fn with_endpoints(
        registry: &str,
        repository: &str,
        tokens: Arc<dyn TokenSource>,
        registry_api: Url,
        exchange: Url,
    ) -> Result<Self, RegistryError> {
        Self::build(registry, repository, tokens, Some((registry_api, exchange)))
    }

    fn build(
        registry: &str,
        repository: &str,
        tokens: Arc<dyn TokenSource>,
        endpoints: Option<(Url, Url)>,
    ) -> Result<Self, RegistryError> {
        let host = format!("{registry}.azurecr.io");
        let full = format!("{host}/{repository}");
        let describe = format!("ACR {full}");
        let base = base_url(&host).map_err(|m| RegistryError::Other { registry: describe.clone(), message: m })?;
        let (base, exchange) = endpoints.unwrap_or_else(|| (base.clone(), base));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let login = Arc::new(AcrLogin { tokens, host, exchange, http });
        Ok(Self {
            client: Distribution::new(base, repository, describe, login),
            repository: full,
            registry_name: registry.to_string(),
        })
    }

    /// The registry's name (`test` for `test.azurecr.io`).
    pub fn registry_name(&self) -> &str {
        &self.registry_name
    }
}

impl OverDistribution for AcrRegistry {
    fn client(&self) -> &Distribution {
        &self.client
    }

    fn repository_uri(&self) -> &str {
        &self.repository
    }

    fn kind(&self) -> &'static str {
        "ACR"
    }
}
