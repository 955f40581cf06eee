//! The [`Store`] trait, mapped onto the inherent methods of [`SqlStore`]
//! in the concept files (inherent methods win name resolution, so each line
//! calls the implementation, not itself).

use super::SqlStore;
use crate::{AgentStats, ApiKeyRecord, Claimed, NewItem, NewJobVersion, QueueStats, SavedFilter, Store, StoreError};
use async_trait::async_trait;
use liftoff_core::api::{
    AgentStatus, AgentView, BuildClaimAnswer, BuildRecord, ItemView, ItemWarning, JobView, LogChunk, LogPosition,
    LogStream, LogTail, RegisterAgent,
};
use liftoff_core::{ItemEvent, ItemTransition, Priority, Queue, Stage};

#[async_trait]
impl Store for SqlStore {
    async fn ensure_entity(&self, entity: &str, now_ms: i64) -> Result<bool, StoreError> {
        SqlStore::ensure_entity(self, entity, now_ms).await
    }

    async fn entity_exists(&self, entity: &str) -> Result<bool, StoreError> {
        SqlStore::entity_exists(self, entity).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        SqlStore::insert_api_key(self, key).await
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        SqlStore::find_api_key(self, hash).await
    }

    async fn list_api_keys(&self, entity: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        SqlStore::list_api_keys(self, entity).await
    }

    async fn revoke_api_key(&self, entity: &str, id: &str) -> Result<ApiKeyRecord, StoreError> {
        SqlStore::revoke_api_key(self, entity, id).await
    }

    async fn create_queue(&self, queue: &Queue) -> Result<(), StoreError> {
        SqlStore::create_queue(self, queue).await
    }

    async fn get_queue(&self, entity: &str, name: &str) -> Result<Option<Queue>, StoreError> {
        SqlStore::get_queue(self, entity, name).await
    }

    async fn list_queues(&self, entity: &str) -> Result<Vec<Queue>, StoreError> {
        SqlStore::list_queues(self, entity).await
    }

    async fn add_blob(&self, entity: &str, digest: &str, size: u64, now_ms: i64) -> Result<bool, StoreError> {
        SqlStore::add_blob(self, entity, digest, size, now_ms).await
    }

    async fn has_blob(&self, entity: &str, digest: &str) -> Result<bool, StoreError> {
        SqlStore::has_blob(self, entity, digest).await
    }

    async fn create_job_version(&self, job: &NewJobVersion<'_>) -> Result<JobView, StoreError> {
        SqlStore::create_job_version(self, job).await
    }

    async fn get_job(
        &self,
        entity: &str,
        project: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<JobView>, StoreError> {
        SqlStore::get_job(self, entity, project, name, alias).await
    }

    async fn list_jobs(&self, entity: &str) -> Result<Vec<JobView>, StoreError> {
        SqlStore::list_jobs(self, entity).await
    }

    async fn enqueue(&self, item: &NewItem) -> Result<ItemView, StoreError> {
        SqlStore::enqueue(self, item).await
    }

    async fn get_item(&self, entity: &str, id: &str) -> Result<Option<ItemView>, StoreError> {
        SqlStore::get_item(self, entity, id).await
    }

    async fn list_items(
        &self,
        entity: &str,
        queue: Option<&str>,
        launcher: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ItemView>, StoreError> {
        SqlStore::list_items(self, entity, queue, launcher, limit).await
    }

    async fn set_priority(
        &self,
        entity: &str,
        id: &str,
        priority: Priority,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        SqlStore::set_priority(self, entity, id, priority, now_ms).await
    }

    async fn save_filter(&self, filter: &SavedFilter) -> Result<(), StoreError> {
        SqlStore::save_filter(self, filter).await
    }

    async fn list_saved_filters(&self, entity: &str, queue: &str) -> Result<Vec<SavedFilter>, StoreError> {
        SqlStore::list_saved_filters(self, entity, queue).await
    }

    async fn delete_saved_filter(&self, entity: &str, queue: &str, name: &str) -> Result<(), StoreError> {
        SqlStore::delete_saved_filter(self, entity, queue, name).await
    }

    async fn item_history(
        &self,
        entity: &str,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ItemTransition>, StoreError> {
        SqlStore::item_history(self, entity, id, after, limit).await
    }

    async fn queue_history(
        &self,
        entity: &str,
        queue: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ItemTransition>, StoreError> {
        SqlStore::queue_history(self, entity, queue, after, limit).await
    }

    async fn queue_history_head(&self, entity: &str, queue: &str) -> Result<i64, StoreError> {
        SqlStore::queue_history_head(self, entity, queue).await
    }

    async fn queue_page(
        &self,
        entity: &str,
        queue: &str,
        filter: &crate::ItemFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<crate::ItemPage, StoreError> {
        SqlStore::queue_page(self, entity, queue, filter, before, limit).await
    }

    async fn claim(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        SqlStore::claim(self, entity, queues, agent_id, lease_ttl_ms).await
    }

    async fn renew_lease(&self, entity: &str, id: &str, fence: i64, lease_ttl_ms: i64) -> Result<ItemView, StoreError> {
        SqlStore::renew_lease(self, entity, id, fence, lease_ttl_ms).await
    }

    async fn apply_event(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        SqlStore::apply_event(self, entity, id, fence, event, now_ms).await
    }

    async fn release_unstarted(
        &self,
        entity: &str,
        agent_id: &str,
        keep: &[String],
    ) -> Result<Vec<String>, StoreError> {
        SqlStore::release_unstarted(self, entity, agent_id, keep).await
    }

    async fn expire_leases(&self) -> Result<Vec<String>, StoreError> {
        SqlStore::expire_leases(self).await
    }

    async fn append_log(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        seq: i64,
        stream: LogStream,
        data: &str,
    ) -> Result<(), StoreError> {
        SqlStore::append_log(self, entity, id, fence, seq, stream, data).await
    }

    async fn append_log_then_event(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        tail: &LogTail,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        SqlStore::append_log_then_event(self, entity, id, fence, tail, event, now_ms).await
    }

    async fn read_log(&self, entity: &str, id: &str, after: i64, limit: i64) -> Result<Vec<LogChunk>, StoreError> {
        SqlStore::read_log(self, entity, id, after, limit).await
    }

    async fn keep_small_logs(&self, max_bytes: i64) -> Result<u64, StoreError> {
        SqlStore::keep_small_logs(self, max_bytes).await
    }

    async fn logs_to_archive(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        SqlStore::logs_to_archive(self, limit).await
    }

    async fn claim_log_archive(&self, entity: &str, id: &str, ttl_ms: i64) -> Result<Option<i64>, StoreError> {
        SqlStore::claim_log_archive(self, entity, id, ttl_ms).await
    }

    async fn mark_log_archived(
        &self,
        entity: &str,
        id: &str,
        claim: i64,
        through_seq: Option<i64>,
    ) -> Result<(), StoreError> {
        SqlStore::mark_log_archived(self, entity, id, claim, through_seq).await
    }

    async fn register_agent(
        &self,
        entity: &str,
        id: &str,
        req: &RegisterAgent,
        now_ms: i64,
    ) -> Result<AgentView, StoreError> {
        SqlStore::register_agent(self, entity, id, req, now_ms).await
    }

    async fn agent_heartbeat(
        &self,
        entity: &str,
        id: &str,
        status: AgentStatus,
        now_ms: i64,
    ) -> Result<AgentView, StoreError> {
        SqlStore::agent_heartbeat(self, entity, id, status, now_ms).await
    }

    async fn get_agent(&self, entity: &str, id: &str) -> Result<Option<AgentView>, StoreError> {
        SqlStore::get_agent(self, entity, id).await
    }

    async fn list_agents(&self, entity: &str) -> Result<Vec<AgentView>, StoreError> {
        SqlStore::list_agents(self, entity).await
    }

    async fn set_agent_stop_polling(&self, entity: &str, id: &str) -> Result<AgentView, StoreError> {
        SqlStore::set_agent_stop_polling(self, entity, id).await
    }

    async fn add_warning(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        stage: Stage,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        SqlStore::add_warning(self, entity, id, fence, stage, message, now_ms).await
    }

    async fn list_warnings(&self, entity: &str, id: &str) -> Result<Vec<ItemWarning>, StoreError> {
        SqlStore::list_warnings(self, entity, id).await
    }

    async fn claim_build(
        &self,
        entity: &str,
        key: &str,
        agent_id: &str,
        ttl_ms: i64,
        gone: bool,
    ) -> Result<BuildClaimAnswer, StoreError> {
        SqlStore::claim_build(self, entity, key, agent_id, ttl_ms, gone).await
    }

    async fn update_build(
        &self,
        entity: &str,
        key: &str,
        fence: i64,
        ttl_ms: i64,
        finish: Option<Option<&str>>,
    ) -> Result<(), StoreError> {
        SqlStore::update_build(self, entity, key, fence, ttl_ms, finish).await
    }

    async fn set_build_record(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        record: &BuildRecord,
    ) -> Result<(), StoreError> {
        SqlStore::set_build_record(self, entity, id, fence, record).await
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        SqlStore::server_secret(self, name, candidate).await
    }

    async fn server_secrets_all(&self) -> Result<Vec<(String, String)>, StoreError> {
        SqlStore::server_secrets_all(self).await
    }

    async fn replace_server_secret(&self, name: &str, old: Option<&str>, new: &str) -> Result<bool, StoreError> {
        SqlStore::replace_server_secret(self, name, old, new).await
    }

    async fn purge_old_row_versions(&self) -> Result<(), StoreError> {
        SqlStore::purge_old_row_versions(self).await
    }

    async fn git_remotes_with_userinfo(&self) -> Result<Vec<crate::records::StoredRemote>, StoreError> {
        SqlStore::git_remotes_with_userinfo(self).await
    }

    async fn replace_git_remote(
        &self,
        stored: &crate::records::StoredRemote,
        new_remote: &str,
    ) -> Result<bool, StoreError> {
        SqlStore::replace_git_remote(self, stored, new_remote).await
    }

    async fn log_position(&self, entity: &str, id: &str, fence: i64) -> Result<LogPosition, StoreError> {
        SqlStore::log_position(self, entity, id, fence).await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        SqlStore::queue_stats(self).await
    }

    async fn agent_stats(&self) -> Result<Vec<AgentStats>, StoreError> {
        SqlStore::agent_stats(self).await
    }

    async fn items_by_id(&self, ids: &[String]) -> Result<Vec<ItemView>, StoreError> {
        SqlStore::items_by_id(self, ids).await
    }
}
