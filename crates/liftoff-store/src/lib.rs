//! Persistence for the control plane: one [`Store`] trait, one SQL
//! implementation over SQLite (embedded default) and PostgreSQL, and the
//! content-addressed [`BlobStore`]. Only this crate writes SQL.

mod blobs;
mod error;
mod records;
mod schema;
mod sql_store;
mod store;

pub use blobs::BlobStore;
pub use error::StoreError;
pub use records::{ApiKeyRecord, Claimed, KeyRole, Launcher, NewItem, NewJobVersion, StoredRemote, StoredRemoteAt};
pub use sql_store::{AgentStats, Dialect, ItemFilter, ItemPage, QueueStats, SavedFilter, SqlStore};
pub use store::Store;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
