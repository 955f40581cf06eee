use liftoff_core::TransitionError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (in the caller's entity).
    #[error("{0} not found")]
    NotFound(String),
    /// The thing already exists, or the write conflicts with another.
    #[error("{0}")]
    Conflict(String),
    /// The write carried fencing token `sent`, but the item is now at `current`:
    /// another claim superseded the writer. Nothing was changed.
    #[error("stale fencing token {sent} for item {item}: the item is now held with token {current}")]
    StaleFence { item: String, sent: i64, current: i64 },
    /// The event does not apply in the item's current state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Only a pending item's priority can change; this one is `state`.
    #[error("run '{run_id}' is {state}: only a pending run's priority can change")]
    NotPending { run_id: String, state: liftoff_core::ItemState },
    /// A request value the store refuses, naming the field.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Stored data could not be decoded (a bug or a hand-edited database).
    #[error("corrupt stored {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The database was upgraded by a newer liftoff, whose tables this one
    /// would misread: nothing was changed.
    #[error("database schema version {database} is newer than this liftoff (knows up to {known}): upgrade liftoff")]
    SchemaTooNew { database: i64, known: i64 },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("blob store error: {0}")]
    Blob(#[from] object_store::Error),
}
