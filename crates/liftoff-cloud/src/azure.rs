//! [`AzureEnv`]: Microsoft Entra credentials in the order: an
//! environment client secret, workload identity, managed identity, the
//! Azure CLI. azure_identity 1.x has no DefaultAzureCredential, so the chain
//! is here; each source's failure is kept for the message.
//!
//! Not tested against a local authority: azure_identity refuses an
//! authority host that is not https (`get_authority_host`), so a token
//! endpoint would need TLS with a trusted certificate. The tests cover the
//! chain's messages and that no secret reaches them.

use crate::{AccessToken, CloudError, Identity, Secret};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, WorkloadIdentityCredential,
};
use std::sync::Arc;
use std::time::Duration;

/// Azure Resource Manager: the scope `identity` asks a token for.
pub const MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";
/// Azure Storage: the scope of blob uploads.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
const FIX: &str = "set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, use workload identity \
     (AZURE_FEDERATED_TOKEN_FILE), run on a VM or AKS with a managed identity, or run `az login`";
/// A managed-identity endpoint that does not answer in this time counts as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One way to get a token.
#[derive(Clone)]
struct Source {
    name: String,
    credential: Arc<dyn TokenCredential>,
    /// Configured on purpose (environment variables): its failure ends the chain.
    explicit: bool,
}

/// An Azure environment.
#[derive(Clone)]
pub struct AzureEnv {
    sources: Vec<Source>,
    region: Option<String>,
    azurite: bool,
    skipped: Vec<String>,
}

/// What an [`AzureEnv`] is built from; [`AzureEnvBuilder::from_env`] reads the variables.
#[derive(Default)]
pub struct AzureEnvBuilder {
    region: Option<String>,
    client_secret: Option<(String, String, Secret)>,
    workload_identity: bool,
    managed_identity: bool,
    azure_cli: bool,
    azurite: bool,
}

impl AzureEnvBuilder {
    /// The chain as the process environment configures it.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let client_secret = match (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID"), var("AZURE_CLIENT_SECRET")) {
            (Some(t), Some(c), Some(s)) => Some((t, c, Secret::new(s))),
            _ => None,
        };
        Self {
            region: None,
            client_secret,
            workload_identity: var("AZURE_FEDERATED_TOKEN_FILE").is_some(),
            managed_identity: true,
            azure_cli: true,
            azurite: false,
        }
    }

    pub fn region(mut self, region: Option<&str>) -> Self {
        self.region = region.map(str::to_string);
        self
    }

    /// A service principal's secret, as AZURE_TENANT_ID/CLIENT_ID/CLIENT_SECRET give it.
    pub fn client_secret(mut self, tenant: &str, client_id: &str, secret: Secret) -> Self {
        self.client_secret = Some((tenant.into(), client_id.into(), secret));
        self
    }

    /// Whether to try managed identity and the Azure CLI after the configured sources.
    pub fn probes(mut self, managed_identity: bool, azure_cli: bool) -> Self {
        self.managed_identity = managed_identity;
        self.azure_cli = azure_cli;
        self
    }

    /// Blob storage goes to Azurite (127.0.0.1:10000, or AZURITE_BLOB_STORAGE_URL)
    /// with its well-known development key, for local development and tests.
    pub fn azurite(mut self) -> Self {
        self.azurite = true;
        self
    }

    pub fn build(self) -> Result<AzureEnv, CloudError> {
        let no_retry = || ClientOptions { retry: RetryOptions::none(), ..Default::default() };
        let mut sources = Vec::new();
        let mut skipped = Vec::new();
        if let Some((tenant, client, secret)) = self.client_secret {
            let name = format!("the environment's client secret (AZURE_CLIENT_ID={client})");
            let options = ClientSecretCredentialOptions { client_options: no_retry() };
            let c = ClientSecretCredential::new(&tenant, client, secret.expose().to_string().into(), Some(options))
                .map_err(|e| CloudError::Credentials {
                    cloud: "azure",
                    source_name: name.clone(),
                    message: e.to_string(),
                })?;
            sources.push(Source { name, credential: c, explicit: true });
        } else {
            skipped.push(
                "the environment's client secret (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not all set)"
                    .into(),
            );
        }
        if self.workload_identity {
            let name = "workload identity (AZURE_FEDERATED_TOKEN_FILE)".to_string();
            let c = WorkloadIdentityCredential::new(None).map_err(|e| CloudError::Credentials {
                cloud: "azure",
                source_name: name.clone(),
                message: e.to_string(),
            })?;
            sources.push(Source { name, credential: c, explicit: true });
        } else {
            skipped.push("workload identity (AZURE_FEDERATED_TOKEN_FILE not set)".into());
        }
        if self.managed_identity {
            let options = ManagedIdentityCredentialOptions { client_options: no_retry(), ..Default::default() };
            if let Ok(c) = ManagedIdentityCredential::new(Some(options)) {
                sources.push(Source { name: "managed identity".into(), credential: c, explicit: false });
            }
        }
        if self.azure_cli
            && let Ok(c) = AzureCliCredential::new(None)
        {
            sources.push(Source { name: "the Azure CLI (`az login`)".into(), credential: c, explicit: false });
        }
        Ok(AzureEnv { sources, region: self.region, azurite: self.azurite, skipped })
    }
}

impl AzureEnv {
    pub fn builder() -> AzureEnvBuilder {
        AzureEnvBuilder::default()
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// Whether blob storage goes to Azurite (see [`AzureEnvBuilder::azurite`]).
    pub fn uses_azurite(&self) -> bool {
        self.azurite
    }

    /// A token for `scope` from the first source that gives one.
    pub async fn access_token(&self, scope: &str) -> Result<AccessToken, CloudError> {
        let mut tried = self.skipped.clone();
        for s in &self.sources {
            let got = tokio::time::timeout(PROBE_TIMEOUT, s.credential.get_token(&[scope], None)).await;
            let err = match got {
                Ok(Ok(t)) => {
                    return Ok(AccessToken {
                        token: Secret::new(t.token.secret().to_string()),
                        source: s.name.clone(),
                    });
                }
                Ok(Err(e)) => first_line(&e.to_string()),
                Err(_) => format!("no answer in {} s", PROBE_TIMEOUT.as_secs()),
            };
            if s.explicit {
                return Err(CloudError::Credentials {
                    cloud: "azure",
                    source_name: s.name.clone(),
                    message: format!(
                        "{err}; check the tenant, the client id and that the secret or token file is current"
                    ),
                });
            }
            tried.push(format!("{} ({err})", s.name));
        }
        Err(CloudError::NoCredentials { cloud: "azure", tried: tried.join(", "), fix: FIX.into() })
    }

    /// The source that gives a management token; Entra tokens name their
    /// subject only inside the JWT, which is not decoded here.
    pub async fn identity(&self) -> Result<Identity, CloudError> {
        let t = self.access_token(MANAGEMENT_SCOPE).await?;
        Ok(Identity { who: format!("the identity of {}", t.source), source: t.source, account: None })
    }
}

/// azure_identity's messages end with a troubleshooting link on a second line.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_client_secret_names_its_source_and_not_the_secret() {
        let secret = "very-secret-value-123";
        let env = AzureEnv::builder()
            .client_secret("00000000-0000-0000-0000-000000000001", "my-client", Secret::new(secret))
            .build()
            .unwrap();
        // login.microsoftonline.com is unreachable or refuses the made-up client: either way it fails
        let e = env.access_token(STORAGE_SCOPE).await.unwrap_err().to_string();
        assert!(
            e.contains("azure credentials from the environment's client secret (AZURE_CLIENT_ID=my-client)"),
            "{e}"
        );
        assert!(!e.contains(secret), "{e}");
    }

    #[tokio::test]
    async fn an_empty_chain_lists_what_it_tried() {
        let env = AzureEnv::builder().build().unwrap();
        let e = env.access_token(STORAGE_SCOPE).await.unwrap_err().to_string();
        assert!(e.starts_with("no azure credentials found (tried the environment's client secret"), "{e}");
        assert!(e.contains("workload identity") && e.contains("az login"), "{e}");
    }
}
