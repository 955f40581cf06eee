//! What can go wrong reaching a cloud.

/// A cloud failure. Every message names the credential source or the
/// resource it concerns and what to fix, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// No credential source of the chain gave credentials.
    #[error("no {cloud} credentials found (tried {tried}): {fix}")]
    NoCredentials { cloud: &'static str, tried: String, fix: String },
    /// A credential source was found but refused or failed.
    #[error("{cloud} credentials from {source_name} failed: {message}")]
    Credentials { cloud: &'static str, source_name: String, message: String },
    /// The configuration cannot work (a region mismatch, a missing project).
    #[error("{0}")]
    Config(String),
    /// The cloud is not compiled into this liftoff.
    #[error("this liftoff was built without the '{0}' feature")]
    NotBuiltIn(&'static str),
    /// A build-context store operation failed.
    #[error("{uri}: {message}")]
    Storage { uri: String, message: String },
}
