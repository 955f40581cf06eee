//! Claims and leases: who holds an item, and until when.

use super::SqlStore;
use super::items::{ITEM_COLS, decode_item};
use super::logs::next_seq;
use crate::{Claimed, StoreError};
use liftoff_core::ItemEvent;
use liftoff_core::api::ItemView;
use sqlx::{AssertSqlSafe, Row};

impl SqlStore {
    pub(super) async fn claim(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        now_ms: i64,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        let pick = format!(
            "SELECT {ITEM_COLS} FROM items WHERE entity = $1 AND queue = $2 AND state = 'pending' \
             ORDER BY sort_prio, seq LIMIT 1{}",
            self.for_update(true)
        );
        for queue in queues {
            let mut tx = self.pool.begin().await?;
            let row =
                sqlx::query(AssertSqlSafe(pick.clone())).bind(entity).bind(queue).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { continue };
            let view = decode_item(&row)?;
            let item = self
                .transition_loaded(&mut tx, view, None, &ItemEvent::Claim, now_ms, Some((agent_id, lease_ttl_ms)))
                .await?;
            let log_seq_start = next_seq(&mut tx, &item.id).await?;
            tx.commit().await?;
            return Ok(Some(Claimed { item, log_seq_start }));
        }
        Ok(None)
    }

    pub(super) async fn renew_lease(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        now_ms: i64,
        lease_ttl_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut view = self.load_item(&mut tx, entity, id, true).await?;
        if view.fence != fence {
            return Err(StoreError::StaleFence { item: view.id, sent: fence, current: view.fence });
        }
        if !view.state.is_leased() {
            return Err(StoreError::Conflict(format!(
                "item '{}' is {}; it holds no lease to renew",
                view.id, view.state
            )));
        }
        let until = now_ms + lease_ttl_ms;
        sqlx::query("UPDATE items SET lease_expires_at = $1 WHERE id = $2 AND fence = $3")
            .bind(until)
            .bind(&view.id)
            .bind(fence)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        view.lease_expires_at_ms = Some(until);
        Ok(view)
    }

    pub(super) async fn apply_event(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.pool.begin().await?;
        let view = self.transition(&mut tx, entity, id, fence, event, now_ms, None).await?;
        tx.commit().await?;
        Ok(view)
    }

    pub(super) async fn expire_leases(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, entity FROM items WHERE state IN ('claimed', 'running', 'stopping') AND lease_expires_at < $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = Vec::new();
        for r in rows {
            let (id, entity): (String, String) = (r.try_get("id")?, r.try_get("entity")?);
            let mut tx = self.pool.begin().await?;
            // Re-check under the lock: a heartbeat may have renewed it meanwhile.
            let current = self.load_item(&mut tx, &entity, &id, true).await?;
            if !current.state.is_leased() || current.lease_expires_at_ms.is_none_or(|t| t >= now_ms) {
                continue;
            }
            match self.transition(&mut tx, &entity, &id, None, &ItemEvent::LeaseExpired, now_ms, None).await {
                Ok(_) => {
                    tx.commit().await?;
                    expired.push(id);
                }
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }
}
