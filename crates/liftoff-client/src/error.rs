use liftoff_core::api::ErrorBody;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{} (HTTP {status}{})", body.message, body.field.as_ref().map(|f| format!(", field '{f}'")).unwrap_or_default())]
    Api { status: u16, body: ErrorBody },
    /// The server could not be reached, or the connection broke.
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something that is not the expected JSON.
    #[error("unexpected response from {url}: {detail}")]
    Decode { url: String, detail: String },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The write carried a superseded fencing token (or the item moved on):
    /// the caller no longer holds the item.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Worth retrying: the connection failed or the server had a problem.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http { .. } => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            Self::Decode { .. } => false,
        }
    }
}
