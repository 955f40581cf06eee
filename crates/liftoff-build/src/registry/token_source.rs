//! [`TokenSource`]: where Artifact Registry and ACR get their OAuth access
//! tokens (GCP application default credentials, a Microsoft Entra
//! credential), kept behind a trait so the registries are tested with a
//! token of the test's choosing; the credential chains themselves are
//! liftoff-cloud's, and tested there.

use async_trait::async_trait;
use liftoff_cloud::{AccessToken, CloudError};

/// An OAuth access token for `scopes`, with the credential source named.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn access_token(&self, scopes: &[&str]) -> Result<AccessToken, CloudError>;
}
