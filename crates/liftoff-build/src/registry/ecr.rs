//! Amazon ECR: the login is ECR's `GetAuthorizationToken` (base64
//! `AWS:<password>`, valid 12 hours), with the AWS environment's credentials.
//!
//! Existence is the registry's manifest HEAD with that login, not
//! `DescribeImages` as in the reference: the HEAD exercises the very login
//! the push will use (so a broken login shows before a build, not after),
//! needs no permission beyond the pull that pushing implies
//! (`ecr:BatchGetImage`), and is the same code as every other registry.

use super::distribution::{Distribution, OverDistribution, base_url};
use super::{Login, LoginSource, RegistryError};
use async_trait::async_trait;
use aws_sdk_ecr::error::DisplayErrorContext;
use base64::Engine;
use liftoff_run::container::RegistryAuth;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use url::Url;

/// `<account>.dkr.ecr.<region>.amazonaws.com/<repository>`.
pub struct EcrRegistry {
    repository: String,
    client: Distribution,
    login: Arc<EcrLogin>,
}

struct EcrLogin {
    ecr: aws_sdk_ecr::Client,
    region: String,
    host: String,
}

/// `(user, password)` from an ECR authorization token (`base64("AWS:<password>")`).
pub fn decode_authorization_token(token: &str) -> Result<(String, String), String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "the authorization token is not base64".to_string())?;
    let raw = String::from_utf8(raw).map_err(|_| "the authorization token is not UTF-8".to_string())?;
    let (user, password) =
        raw.split_once(':').ok_or_else(|| "the authorization token is not <user>:<password>".to_string())?;
    Ok((user.to_string(), password.to_string()))
}

impl EcrLogin {
    fn source(&self) -> String {
        format!("ECR GetAuthorizationToken ({}) with the aws environment's credentials", self.region)
    }

    /// The token, its expiry and the registry endpoint it is for.
    async fn token(&self) -> Result<(RegistryAuth, Option<SystemTime>, Option<String>), RegistryError> {
        let refused = |message: String| RegistryError::Unauthorized {
            registry: format!("ECR {}", self.host),
            source_name: self.source(),
            message,
        };
        let out = self
            .ecr
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| refused(DisplayErrorContext(&e).to_string()))?;
        let data =
            out.authorization_data().first().ok_or_else(|| refused("it answered no authorization data".into()))?;
        let token = data.authorization_token().ok_or_else(|| refused("it answered no token".into()))?;
        let (username, password) = decode_authorization_token(token).map_err(refused)?;
        let expires = data
            .expires_at()
            .and_then(|t| u64::try_from(t.secs()).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let auth = RegistryAuth { username, password, serveraddress: self.host.clone() };
        Ok((auth, expires, data.proxy_endpoint().map(str::to_string)))
    }
}

#[async_trait]
impl LoginSource for EcrLogin {
    async fn login(&self) -> Result<Login, RegistryError> {
        let (auth, expires, _) = self.token().await?;
        Ok(Login { auth: Some(auth), source: self.source(), expires })
    }
}

impl EcrRegistry {
    /// The repository `repository` of the ECR registry `account` in `region`,
    /// logged in with `sdk`'s credentials (the aws environment's).
    pub fn new(
        account: &str,
        region: &str,
        repository: &str,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, RegistryError> {
        let host = format!("{account}.dkr.ecr.{region}.amazonaws.com");
        let full = format!("{host}/{repository}");
        let describe = format!("ECR {full}");
        let base = base_url(&host).map_err(|m| RegistryError::Other { registry: describe.clone(), message: m })?;
        let login = Arc::new(EcrLogin { ecr: aws_sdk_ecr::Client::new(sdk), region: region.to_string(), host });
        Ok(Self { client: Distribution::new(base, repository, describe, login.clone()), repository: full, login })
    }

    /// A repository given by name only (`registry: {type: ecr, repository: r}`):
    /// the registry is the one `GetAuthorizationToken` names for these
    /// credentials (the account's own, in the environment's region).
    pub async fn for_repository(repository: &str, sdk: &aws_config::SdkConfig) -> Result<Self, RegistryError> {
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        let probe =
            EcrLogin { ecr: aws_sdk_ecr::Client::new(sdk), region: region.clone(), host: format!("(in {region})") };
        let (_, _, endpoint) = probe.token().await?;
        let other =
            |message: String| RegistryError::Other { registry: format!("ECR repository {repository}"), message };
        let endpoint = endpoint.ok_or_else(|| other("GetAuthorizationToken named no registry endpoint".into()))?;
        let host = Url::parse(&endpoint).ok().and_then(|u| u.host_str().map(str::to_string)).ok_or_else(|| {
            other(format!("GetAuthorizationToken named the endpoint '{endpoint}', which has no host"))
        })?;
        match host.split('.').collect::<Vec<_>>().as_slice() {
            [account, "dkr", "ecr", r, "amazonaws", "com"] => Self::new(account, r, repository, sdk),
            _ => Err(other(format!("GetAuthorizationToken named '{host}', which is not an ECR registry host"))),
        }
    }

    /// Reaches the registry API at `base` (a test's local registry) instead of
    /// `https://<account>.dkr.ecr.<region>.amazonaws.com`; never set from the
    /// config file. The login still comes from ECR's API.
    pub fn with_endpoint(mut self, base: Url) -> Self {
        self.client.set_base(base);
        self
    }
}

impl OverDistribution for EcrRegistry {
    fn client(&self) -> &Distribution {
        &self.client
    }

    fn repository_uri(&self) -> &str {
        &self.repository
    }

    fn kind(&self) -> &'static str {
        "ECR"
    }
}

impl EcrRegistry {
    /// The region of the registry (for messages and checks).
    pub fn region(&self) -> &str {
        &self.login.region
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_tokens_decode_to_user_and_password() {
        // the reference's test_ecr.py token
        assert_eq!(
            decode_authorization_token("dXNlcm5hbWU6cGFzc3dvcmQ=").unwrap(),
            ("username".to_string(), "password".to_string())
        );
        // moto's
        assert_eq!(
            decode_authorization_token("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap(),
            ("AWS".to_string(), "123456789012-auth-token".to_string())
        );
        // a password may hold ':'
        let t = base64::engine::general_purpose::STANDARD.encode("AWS:a:b");
        assert_eq!(decode_authorization_token(&t).unwrap().1, "a:b");
        assert!(decode_authorization_token("not base64!").unwrap_err().contains("not base64"));
        let t = base64::engine::general_purpose::STANDARD.encode("no-colon");
        assert!(decode_authorization_token(&t).unwrap_err().contains("<user>:<password>"));
    }
}
