//! Cloud environments (`environment` in `launch-config.yaml`): each cloud's
//! default credential chain ([`CloudEnv`]), build-context storage on
//! `s3://`, `gs://` and Azure Blob through object_store bridged to those same
//! credentials ([`ContextStore`]), and the least-privilege grants a
//! configuration needs ([`permissions`]).

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod environment;
pub mod error;
#[cfg(feature = "gcp")]
pub mod gcp;
pub mod kube_rbac;
pub mod permissions;
pub mod secret;
pub mod storage;
mod store_credentials;

#[cfg(feature = "aws")]
pub use aws::AwsEnv;
#[cfg(feature = "azure")]
pub use azure::AzureEnv;
pub use environment::{AccessToken, CloudEnv, Identity};
pub use error::CloudError;
#[cfg(feature = "gcp")]
pub use gcp::GcpEnv;
pub use permissions::{Permissions, permissions, permissions_with_runners};
pub use secret::Secret;
pub use storage::ContextStore;
