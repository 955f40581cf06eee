//! object_store [`CredentialProvider`]s over the environment's own
//! credentials, so uploads use the very chain `doctor` checked: object_store's
//! own AWS chain misses profiles, SSO and `credential_process`, and its GCP
//! chain misses what liftoff-cloud resolves (the metadata server's project...).

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::CredentialProvider;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use std::sync::Arc;

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn store_error(store: &'static str, e: crate::CloudError) -> object_store::Error {
    object_store::Error::Generic { store, source: Box::new(e) }
}

#[cfg(feature = "aws")]
pub(crate) use aws_bridge::AwsBridge;
#[cfg(feature = "aws")]
mod aws_bridge {
    use super::*;
    use crate::AwsEnv;
    use object_store::aws::AwsCredential;
    use std::time::{Duration, SystemTime};
    use tokio::sync::Mutex;

    /// aws-config's provider has no cache of its own once taken out of the
    /// SDK (the SDK caches in its identity cache): keep the credentials until
    /// five minutes before they expire.
    #[derive(Debug)]
    pub(crate) struct AwsBridge {
        env: AwsEnv,
        cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
    }

    impl AwsBridge {
        pub(crate) fn new(env: AwsEnv) -> Self {
            Self { env, cached: Mutex::new(None) }
        }
    }

    #[async_trait::async_trait]
    impl CredentialProvider for AwsBridge {
        type Credential = AwsCredential;

        async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
            let mut cached = self.cached.lock().await;
            if let Some((c, expiry)) = &*cached
                && expiry.is_none_or(|e| SystemTime::now() + Duration::from_secs(300) < e)
            {
                return Ok(c.clone());
            }
            let (creds, _) = self.env.credentials().await.map_err(|e| store_error("S3", e))?;
            let c = Arc::new(AwsCredential {
                key_id: creds.access_key_id().to_string(),
                secret_key: creds.secret_access_key().to_string(),
                token: creds.session_token().map(str::to_string),
            });
            *cached = Some((c.clone(), creds.expiry()));
            Ok(c)
        }
    }
}

#[cfg(feature = "gcp")]
pub(crate) use gcp_bridge::GcpBridge;
#[cfg(feature = "gcp")]
mod gcp_bridge {
    use super::*;
    use crate::GcpEnv;
    use object_store::gcp::GcpCredential;

    /// The GCP token; GcpEnv's sources cache it themselves.
    pub(crate) struct GcpBridge(pub(crate) GcpEnv);

    impl std::fmt::Debug for GcpBridge {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "GcpBridge({})", self.0.source())
        }
    }

    #[async_trait::async_trait]
    impl CredentialProvider for GcpBridge {
        type Credential = GcpCredential;

        async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
            let t = self.0.access_token().await.map_err(|e| store_error("GCS", e))?;
            Ok(Arc::new(GcpCredential { bearer: t.token.expose().to_string() }))
        }
    }
}

#[cfg(feature = "azure")]
pub(crate) use azure_bridge::AzureBridge;
#[cfg(feature = "azure")]
mod azure_bridge {
    use super::*;
    use crate::AzureEnv;
    use crate::azure::STORAGE_SCOPE;
    use object_store::azure::AzureCredential;

    /// An Entra token for Azure Storage; azure_identity's credentials cache it.
    pub(crate) struct AzureBridge(pub(crate) AzureEnv);

    impl std::fmt::Debug for AzureBridge {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("AzureBridge")
        }
    }

    #[async_trait::async_trait]
    impl CredentialProvider for AzureBridge {
        type Credential = AzureCredential;

        async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
            let t = self.0.access_token(STORAGE_SCOPE).await.map_err(|e| store_error("MicrosoftAzure", e))?;
            Ok(Arc::new(AzureCredential::BearerToken(t.token.expose().to_string())))
        }
    }
}
