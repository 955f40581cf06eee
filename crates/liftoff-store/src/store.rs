use crate::{ApiKeyRecord, Claimed, NewItem, NewJobVersion, StoreError};
use async_trait::async_trait;
use liftoff_core::api::{
    AgentStatus, AgentView, ItemView, ItemWarning, JobView, LogChunk, LogPosition, LogStream, RegisterAgent,
};
use liftoff_core::{ItemEvent, Queue, Stage};

/// Everything the control plane persists. Every item state change goes
/// through [`liftoff_core::Item::apply`] inside the implementation, guarded by
/// compare-and-set on the row's state and fencing token.
///
/// Methods are scoped by entity: asking for another entity's thing is `NotFound`.
#[async_trait]
pub trait Store: Send + Sync {
    /// Creates the entity if missing; `true` when it was created now.
    async fn ensure_entity(&self, entity: &str, now_ms: i64) -> Result<bool, StoreError>;
    async fn entity_exists(&self, entity: &str) -> Result<bool, StoreError>;
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// The entity's stored keys (admin, member and agent), oldest first.
    async fn list_api_keys(&self, entity: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Deletes key `id`; refused (`Invalid`) for the entity's last admin key.
    async fn revoke_api_key(&self, entity: &str, id: &str) -> Result<ApiKeyRecord, StoreError>;

    async fn create_queue(&self, queue: &Queue) -> Result<(), StoreError>;
    async fn get_queue(&self, entity: &str, name: &str) -> Result<Option<Queue>, StoreError>;
    async fn list_queues(&self, entity: &str) -> Result<Vec<Queue>, StoreError>;

    /// Records that `entity` uploaded the blob `digest`; `false` when it already had.
    async fn add_blob(&self, entity: &str, digest: &str, size: u64, now_ms: i64) -> Result<bool, StoreError>;
    async fn has_blob(&self, entity: &str, digest: &str) -> Result<bool, StoreError>;

    /// Adds version N+1 of the job; it takes `latest`, `vN+1` and `aliases`
    /// (moving them from older versions).
    async fn create_job_version(&self, job: &NewJobVersion<'_>) -> Result<JobView, StoreError>;
    /// `alias` is `latest`, `vN` or a user alias.
    async fn get_job(
        &self,
        entity: &str,
        project: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<JobView>, StoreError>;
    async fn list_jobs(&self, entity: &str) -> Result<Vec<JobView>, StoreError>;

    async fn enqueue(&self, item: &NewItem) -> Result<ItemView, StoreError>;
    /// By item id or by run id.
    async fn get_item(&self, entity: &str, id: &str) -> Result<Option<ItemView>, StoreError>;
    async fn list_items(&self, entity: &str, queue: Option<&str>, limit: i64) -> Result<Vec<ItemView>, StoreError>;

    /// Atomically claims the first pending item of the first queue (in the
    /// given order) that has one: priority order, then FIFO. Each item is
    /// claimed by exactly one caller; the claim bumps its fencing token.
    async fn claim(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        now_ms: i64,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError>;
    /// Extends the lease held with `fence`.
    async fn renew_lease(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        now_ms: i64,
        lease_ttl_ms: i64,
    ) -> Result<ItemView, StoreError>;
    /// Applies `event`; when `fence` is given it must be the current token.
    async fn apply_event(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError>;
    /// Applies `LeaseExpired` to every leased item whose lease ran out; returns their ids.
    async fn expire_leases(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Gives back every item `agent_id` claimed and never started, except
    /// those in `keep` (the ones it knows it holds): a claim granted but
    /// never received costs no attempt. Returns the released ids.
    async fn release_unstarted(
        &self,
        entity: &str,
        agent_id: &str,
        keep: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Appends chunk `seq`; a repeat of an already stored `seq` is ignored.
    async fn append_log(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        seq: i64,
        stream: LogStream,
        data: &str,
    ) -> Result<(), StoreError>;
    /// Chunks with `seq >= after`, in order, at most `limit`.
    async fn read_log(&self, entity: &str, id: &str, after: i64, limit: i64) -> Result<Vec<LogChunk>, StoreError>;

    /// `(entity, id)` of ended items whose log chunks are still in the database.
    async fn logs_to_archive(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// Marks an ended item's log archived and drops its chunks from the
    /// database (after the caller stored them elsewhere). Appends are then refused.
    async fn mark_log_archived(&self, entity: &str, id: &str) -> Result<(), StoreError>;

    async fn register_agent(
        &self,
        entity: &str,
        id: &str,
        req: &RegisterAgent,
        now_ms: i64,
    ) -> Result<AgentView, StoreError>;
    async fn agent_heartbeat(
        &self,
        entity: &str,
        id: &str,
        status: AgentStatus,
        now_ms: i64,
    ) -> Result<AgentView, StoreError>;
    async fn get_agent(&self, entity: &str, id: &str) -> Result<Option<AgentView>, StoreError>;
    async fn list_agents(&self, entity: &str) -> Result<Vec<AgentView>, StoreError>;
    async fn set_agent_stop_polling(&self, entity: &str, id: &str) -> Result<AgentView, StoreError>;

    /// Records a warning on an item (checked against `fence` when given);
    /// `false` when the same stage and message were already recorded.
    async fn add_warning(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        stage: Stage,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn list_warnings(&self, entity: &str, id: &str) -> Result<Vec<ItemWarning>, StoreError>;
    /// The secret named `name`, shared by every server on this database:
    /// `candidate` is stored if none exists yet, and the stored one returned.
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError>;
    /// Where the item's log stands for the claim `fence`: the sequence number
    /// its next chunk must carry, and how many bytes of output that claim
    /// has stored per stream.
    async fn log_position(&self, entity: &str, id: &str, fence: i64) -> Result<LogPosition, StoreError>;
}
