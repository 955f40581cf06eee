//! [`AwsEnv`]: the standard AWS credential chain through aws-config
//! (environment, profile with SSO and `credential_process`, web identity,
//! container and instance roles), one `SdkConfig` for every AWS client
//! (STS here, ECR in liftoff-build, S3 through the object_store bridge).

use crate::{CloudError, Identity};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::DisplayErrorContext;
use std::sync::Arc;

/// The sources aws-config's default chain tries, in its order, for messages.
const CHAIN: &str = "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), \
     the profile in ~/.aws/config and ~/.aws/credentials (static keys, SSO, credential_process, role assumption), \
     web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS/EKS container endpoint, EC2 instance metadata";
const FIX: &str = "run `aws configure` or `aws sso login --profile <name>`, set AWS_PROFILE (or environment.profile), \
     or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

/// An AWS environment: a region and the resolved SDK configuration.
#[derive(Debug, Clone)]
pub struct AwsEnv {
    /// Shared: SdkConfig is large and every clone of the environment (one per store, per job) would copy it.
    config: Arc<SdkConfig>,
    region: String,
    profile: Option<String>,
}

/// How to build an [`AwsEnv`]; tests set an endpoint and static credentials
/// here instead of in the process environment (tests run in parallel threads).
#[derive(Debug, Clone)]
pub struct AwsEnvBuilder {
    region: String,
    profile: Option<String>,
    endpoint: Option<String>,
    credentials: Option<(String, String)>,
}

impl AwsEnvBuilder {
    /// A named profile of the shared config files instead of `AWS_PROFILE`/`default`.
    pub fn profile(mut self, profile: Option<&str>) -> Self {
        self.profile = profile.map(str::to_string);
        self
    }

    /// Every AWS endpoint (moto, localstack); `AWS_ENDPOINT_URL` does the same from the environment.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Static keys instead of the chain.
    pub fn static_credentials(mut self, key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.credentials = Some((key_id.into(), secret.into()));
        self
    }

    /// Loads the configuration; reads the shared config files but calls no service.
    pub async fn load(self) -> AwsEnv {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(self.region.clone()));
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &self.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some((id, secret)) = self.credentials {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "Static"));
        }
        AwsEnv { config: Arc::new(loader.load().await), region: self.region, profile: self.profile }
    }
}

impl AwsEnv {
    /// A builder for `region` (required, as in the reference).
    pub fn builder(region: impl Into<String>) -> AwsEnvBuilder {
        AwsEnvBuilder { region: region.into(), profile: None, endpoint: None, credentials: None }
    }

    /// The SDK configuration every AWS client of the agent is built from.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint override (`AWS_ENDPOINT_URL` or the builder's), if any.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.config.endpoint_url()
    }

    fn provider(&self) -> Result<SharedCredentialsProvider, CloudError> {
        self.config.credentials_provider().ok_or_else(|| CloudError::NoCredentials {
            cloud: "aws",
            tried: "nothing (credentials are disabled in this configuration)".into(),
            fix: FIX.into(),
        })
    }

    /// Credentials from the chain, with the name of the source that gave them.
    pub async fn credentials(&self) -> Result<(Credentials, String), CloudError> {
        let creds = self.provider()?.provide_credentials().await.map_err(|e| {
            let detail = DisplayErrorContext(&e).to_string();
            match e {
                aws_credential_types::provider::error::CredentialsError::CredentialsNotLoaded(_) => {
                    CloudError::NoCredentials { cloud: "aws", tried: self.tried(), fix: FIX.into() }
                }
                _ => CloudError::Credentials {
                    cloud: "aws",
                    source_name: self.profile_source(),
                    message: format!("{detail}; {FIX}"),
                },
            }
        })?;
        let source = source_name(&creds, self.profile.as_deref());
        Ok((creds, source))
    }

    fn tried(&self) -> String {
        match &self.profile {
            Some(p) => CHAIN.replace("the profile in", &format!("profile '{p}' in")),
            None => CHAIN.to_string(),
        }
    }

    fn profile_source(&self) -> String {
        match &self.profile {
            Some(p) => format!("the default chain (profile '{p}')"),
            None => "the default chain".into(),
        }
    }

    /// Whose credentials these are: STS `GetCallerIdentity`.
    pub async fn identity(&self) -> Result<Identity, CloudError> {
        let (_, source) = self.credentials().await?;
        let out = aws_sdk_sts::Client::new(&self.config).get_caller_identity().send().await.map_err(|e| {
            CloudError::Credentials {
                cloud: "aws",
                source_name: source.clone(),
                message: format!(
                    "sts GetCallerIdentity in {} was refused: {}; check that the keys are current and the region's STS endpoint is reachable",
                    self.region,
                    DisplayErrorContext(&e)
                ),
            }
        })?;
        let arn = out.arn().unwrap_or_default().to_string();
        partition(&arn).map_err(CloudError::Config)?;
        Ok(Identity { who: arn, source, account: out.account().map(str::to_string) })
    }
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`, `aws-iso`...), as the reference parses it.
pub fn partition(arn: &str) -> Result<&str, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", p, _, _, _, _] if !p.is_empty() => Ok(p),
        _ => Err(format!("ARN '{arn}' is not valid")),
    }
}

/// The ARN partition a region belongs to.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// aws-credential-types keeps the provider's name private but prints it in
/// `Debug` (the secret redacted); the source is worth a message in `doctor`.
fn source_name(creds: &Credentials, profile: Option<&str>) -> String {
    let debug = format!("{creds:?}");
    let name = debug.split("provider_name: \"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("unknown");
    match name {
        "EnvironmentVariable" => "environment variables (AWS_ACCESS_KEY_ID)".into(),
        "ProfileFile" | "Profile" | "SSO" | "CredentialProcess" => {
            format!("profile '{}' ({name})", profile.map_or_else(profile_from_env, str::to_string))
        }
        "WebIdentityToken" => "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)".into(),
        "EcsContainer" => "the container credentials endpoint".into(),
        "IMDSv2" => "EC2 instance metadata".into(),
        other => other.to_string(),
    }
}

fn profile_from_env() -> String {
    std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        assert_eq!(partition("arn:aws:iam::123456789012:user/x"), Ok("aws"));
        assert_eq!(partition("arn:aws-cn:iam::123456789012:user/x"), Ok("aws-cn"));
        assert_eq!(partition("arn:aws-us-gov:iam::123456789012:user/x"), Ok("aws-us-gov"));
        assert_eq!(partition("arn:aws-iso:iam::123456789012:user/x"), Ok("aws-iso"));
        assert_eq!(partition("not-an-arn"), Err("ARN 'not-an-arn' is not valid".into()));
        assert_eq!(partition_of_region("cn-north-1"), "aws-cn");
        assert_eq!(partition_of_region("eu-west-1"), "aws");
    }

    #[test]
    fn source_names_come_from_the_provider() {
        let c = Credentials::new("AKIA", "s3cr3t", None, None, "EnvironmentVariable");
        assert_eq!(source_name(&c, None), "environment variables (AWS_ACCESS_KEY_ID)");
        let c = Credentials::new("AKIA", "s3cr3t", None, None, "ProfileFile");
        assert_eq!(source_name(&c, Some("prod")), "profile 'prod' (ProfileFile)");
    }
}
