use crate::{
    AgentStats, ApiKeyRecord, Claimed, ItemFilter, ItemPage, NewItem, NewJobVersion, QueueStats, SavedFilter,
    StoreError,
};
use async_trait::async_trait;
use liftoff_core::api::{
    AgentStatus, AgentView, BuildClaimAnswer, BuildRecord, ItemView, ItemWarning, JobView, LogChunk, LogPosition,
    LogStream, LogTail, RegisterAgent,
};
use liftoff_core::{ItemEvent, ItemTransition, Priority, Queue, Stage};

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
    /// By item id or by run id: the two share one namespace per entity, so a
    /// name means at most one item.
    async fn get_item(&self, entity: &str, id: &str) -> Result<Option<ItemView>, StoreError>;
    /// The entity's items newest first, of `queue` and launched by
    /// `launcher` (a launcher's name as items record it) when given.
    async fn list_items(
        &self,
        entity: &str,
        queue: Option<&str>,
        launcher: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ItemView>, StoreError>;
    /// Changes a pending item's priority, and its place in the claim order
    /// when its queue orders by priority; recorded in its history (event
    /// `priority`). Refused ([`StoreError::NotPending`]) once it left `pending`.
    async fn set_priority(
        &self,
        entity: &str,
        id: &str,
        priority: Priority,
        now_ms: i64,
    ) -> Result<ItemView, StoreError>;
    /// Saves a queue page view under a name; refused (`Conflict`) when the
    /// queue already has a filter of that name.
    async fn save_filter(&self, filter: &SavedFilter) -> Result<(), StoreError>;
    /// The queue's saved filters, by name.
    async fn list_saved_filters(&self, entity: &str, queue: &str) -> Result<Vec<SavedFilter>, StoreError>;
    async fn delete_saved_filter(&self, entity: &str, queue: &str, name: &str) -> Result<(), StoreError>;
    /// A queue's items newest first, matching `filter`, below sequence
    /// `before` (keyset pagination; `None` for the first page).
    async fn queue_page(
        &self,
        entity: &str,
        queue: &str,
        filter: &ItemFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<ItemPage, StoreError>;

    /// The item's state changes after the one numbered `after` (0: from its
    /// launch), oldest first, at most `limit`. Written by the change itself,
    /// in its transaction: the history of a committed state is complete.
    async fn item_history(
        &self,
        entity: &str,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ItemTransition>, StoreError>;
    /// The state changes of the queue's items with `queue_seq > after`, at
    /// most `limit`, after numbering the committed changes that have no
    /// `queue_seq` yet (a write). A number, once seen, has every lower
    /// number visible too: no change ever appears below it later.
    async fn queue_history(
        &self,
        entity: &str,
        queue: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ItemTransition>, StoreError>;
    /// The queue's latest `queue_seq` (0 before its first change), after
    /// numbering as [`Store::queue_history`] does.
    async fn queue_history_head(&self, entity: &str, queue: &str) -> Result<i64, StoreError>;

    /// Atomically claims the first pending item of the first queue (in the
    /// given order) that has one: priority order, then FIFO. Each item is
    /// claimed by exactly one caller; the claim bumps its fencing token. The
    /// lease runs `lease_ttl_ms` from now by the database's clock. An agent
    /// told to stop polling claims nothing.
    async fn claim(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError>;
    /// Extends the lease held with `fence` to `lease_ttl_ms` from now by the
    /// database's clock. Refused unless `fence` is current and the item held.
    async fn renew_lease(&self, entity: &str, id: &str, fence: i64, lease_ttl_ms: i64) -> Result<ItemView, StoreError>;
    /// Applies `event`; when `fence` is given it must be the current token
    /// and the item held (claimed, running or stopping).
    async fn apply_event(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError>;
    /// Applies `LeaseExpired` to every leased item whose lease ran out by the
    /// database's clock; returns their ids.
    async fn expire_leases(&self) -> Result<Vec<String>, StoreError>;

    /// Gives back every item `agent_id` claimed and never started, except
    /// those in `keep` (the ones it knows it holds): a claim granted but
    /// never received costs no attempt. Returns the released ids.
    async fn release_unstarted(&self, entity: &str, agent_id: &str, keep: &[String])
    -> Result<Vec<String>, StoreError>;

    /// Appends chunk `seq`; a repeat of an already stored `seq` is ignored.
    /// Refused unless `fence` is current and the item held: an ended run's
    /// log takes no more chunks.
    async fn append_log(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        seq: i64,
        stream: LogStream,
        data: &str,
    ) -> Result<(), StoreError>;
    /// [`Self::append_log`] of a run's last chunk, then [`Self::apply_event`]
    /// of `event` under the same fence, in one transaction: both or neither.
    async fn append_log_then_event(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        tail: &LogTail,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError>;
    /// Chunks with `seq >= after`, in order, at most `limit`.
    async fn read_log(&self, entity: &str, id: &str, after: i64, limit: i64) -> Result<Vec<LogChunk>, StoreError>;

    /// Keeps the logs of ended items that hold at most `max_bytes` in the
    /// database for good: they are not archived (for a log of a few lines,
    /// the object and its synced file cost more than the rows), and are read
    /// from the database like a live run's. Skips logs an archiver holds.
    /// Returns how many it kept.
    async fn keep_small_logs(&self, max_bytes: i64) -> Result<u64, StoreError>;
    /// `(entity, id)` of ended items whose log chunks are still in the
    /// database and which no archiver has claimed (or its claim ran out),
    /// other than those kept there by [`Self::keep_small_logs`].
    async fn logs_to_archive(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// Claims the archiving of an ended item's log for `ttl_ms` (database
    /// clock), so that of several servers exactly one archives it; a crashed
    /// archiver's claim runs out and the work is taken again. Returns the
    /// claim's token, or `None` when the log is archived already or another
    /// claim still runs.
    async fn claim_log_archive(&self, entity: &str, id: &str, ttl_ms: i64) -> Result<Option<i64>, StoreError>;
    /// Marks an ended item's log archived (after the caller stored it
    /// elsewhere) and drops its chunks up to `through_seq`, the last one the
    /// caller stored (`None`: none). Refused (`Conflict`) unless `claim` is
    /// still the item's archive claim.
    async fn mark_log_archived(
        &self,
        entity: &str,
        id: &str,
        claim: i64,
        through_seq: Option<i64>,
    ) -> Result<(), StoreError>;

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

    /// Records a warning on an item (when `fence` is given, it must be the
    /// current token and the item held);
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
    /// Asks to build image `key` (see [`BuildClaimAnswer`]); the lease
    /// deadline comes from the database clock. `gone`: the caller found the
    /// image of a done claim missing (pruned), so a done claim is won again.
    async fn claim_build(
        &self,
        entity: &str,
        key: &str,
        agent_id: &str,
        ttl_ms: i64,
        gone: bool,
    ) -> Result<BuildClaimAnswer, StoreError>;
    /// The build holder's heartbeat (`finish: None`) or its end: `Some(Some(image))`
    /// pushed, `Some(None)` failed (free for the next agent). A fence that no
    /// longer holds the build is [`StoreError::StaleFence`].
    async fn update_build(
        &self,
        entity: &str,
        key: &str,
        fence: i64,
        ttl_ms: i64,
        finish: Option<Option<&str>>,
    ) -> Result<(), StoreError>;
    /// Records the run's image (by the item's holder).
    async fn set_build_record(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        record: &BuildRecord,
    ) -> Result<(), StoreError>;
    /// The secret named `name`, shared by every server on this database:
    /// `candidate` is stored if none exists yet, and the stored one returned.
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError>;
    /// Every server secret, by name, as stored (the server's encryption at
    /// rest reads them on start).
    async fn server_secrets_all(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Sets server secret `name` to `new` if it is still `old` (`None`:
    /// if it does not exist); whether it did.
    async fn replace_server_secret(&self, name: &str, old: Option<&str>, new: &str) -> Result<bool, StoreError>;
    /// After plain secrets were rewritten sealed: drops the old row
    /// versions the database keeps (SQLite: VACUUM and a WAL checkpoint;
    /// PostgreSQL: VACUUM of the tables).
    async fn purge_old_row_versions(&self) -> Result<(), StoreError>;
    /// Every stored git remote with userinfo (credentials, plain or sealed),
    /// in job sources and launch specs.
    async fn git_remotes_with_userinfo(&self) -> Result<Vec<crate::records::StoredRemote>, StoreError>;
    /// Replaces a remote [`Store::git_remotes_with_userinfo`] found, if its
    /// row is unchanged since; whether it was.
    async fn replace_git_remote(
        &self,
        stored: &crate::records::StoredRemote,
        new_remote: &str,
    ) -> Result<bool, StoreError>;
    /// Where the item's log stands for the claim `fence`: the sequence number
    /// its next chunk must carry, and how many bytes of output that claim
    /// has stored per stream.
    async fn log_position(&self, entity: &str, id: &str, fence: i64) -> Result<LogPosition, StoreError>;

    /// Every queue of every entity, with its item count per state and its
    /// oldest pending item (for `/metrics`).
    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError>;
    /// Every agent of every entity (for `/metrics`).
    async fn agent_stats(&self) -> Result<Vec<AgentStats>, StoreError>;
    /// The items with these ids (of any entity); unknown ids are skipped.
    async fn items_by_id(&self, ids: &[String]) -> Result<Vec<ItemView>, StoreError>;
}
