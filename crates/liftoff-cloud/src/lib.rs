//! Cloud environments (`environment` in `launch-config.yaml`): each cloud's
//! default credential chain ([`CloudEnv`]), build-context storage on
//! `s3://`, `gs://` and Azure Blob through object_store bridged to those same
//! credentials ([`ContextStore`]), and the least-privilege grants a
//! configuration needs ([`permissions`]).

pub mod environment;
pub mod error;
pub mod permissions;
pub mod secret;
pub mod storage;

pub use environment::{AccessToken, CloudEnv, Identity};
pub use error::CloudError;
pub use secret::Secret;
pub use storage::ContextStore;
