//! Changing a pending item's priority.

use super::SqlStore;
use super::db::query;
use super::history::Change;
use crate::StoreError;
use liftoff_core::api::ItemView;
use liftoff_core::{ItemState, Priority, TransitionCause};

/// The history event of a priority change (the state stays `pending`).
pub const PRIORITY_EVENT: &str = "priority";

impl SqlStore {
    pub(super) async fn set_priority(
        &self,
        entity: &str,
        id: &str,
        priority: Priority,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.begin_write().await?;
        // Locked (PostgreSQL) so that a claim cannot take the item between
        // the state check and the write; a claim that already locked it
        // makes this wait and then see `claimed`.
        let mut view = self.load_item(&mut tx, entity, id, true).await?;
        if view.state != ItemState::Pending {
            return Err(StoreError::NotPending { run_id: view.run_id, state: view.state });
        }
        let prioritized: i64 = query("SELECT prioritization FROM queues WHERE entity = $1 AND name = $2")
            .bind(entity)
            .bind(&view.queue)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("queue '{}'", view.queue)))?
            .try_get("prioritization")?;
        let sort_prio = if prioritized != 0 { priority.rank() } else { 0 };
        query("UPDATE items SET priority = $1, sort_prio = $2 WHERE id = $3 AND state = 'pending'")
            .bind(priority.rank())
            .bind(sort_prio)
            .bind(&view.id)
            .execute(&mut *tx)
            .await?;
        let old = view.priority;
        view.priority = priority;
        if old != priority {
            let reason = format!("priority {old} → {priority}");
            let change = Change {
                event: PRIORITY_EVENT,
                from: Some(ItemState::Pending),
                cause: TransitionCause::User,
                agent_id: None,
                fence: None,
                at_ms: now_ms,
                reason: Some(&reason),
                exit_code: None,
                stage: None,
            };
            self.record_change(&mut tx, &view, &change).await?;
        }
        tx.commit().await?;
        Ok(view)
    }
}
