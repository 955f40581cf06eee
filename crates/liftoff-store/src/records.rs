use liftoff_core::Priority;
use liftoff_core::api::LaunchSpec;

/// What an API key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRole {
    /// Everything within its entity.
    Admin,
    /// Only report about one run: its logs, events and heartbeats. Given to the run itself.
    Run { item_id: String },
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub hash: String,
    pub entity: String,
    pub role: KeyRole,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// A run-queue item to enqueue.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub id: String,
    pub run_id: String,
    pub entity: String,
    pub queue: String,
    pub priority: Priority,
    /// Whether the queue orders by priority; otherwise FIFO only.
    pub prioritized: bool,
    pub spec: LaunchSpec,
    pub now_ms: i64,
}
