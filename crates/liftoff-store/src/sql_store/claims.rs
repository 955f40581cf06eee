//! Claims and leases: who holds an item, and until when. Every lease
//! deadline is computed from the database's clock, never the caller's, so
//! servers whose clocks disagree agree on when a lease ends.

use super::db::query;
use super::items::{ITEM_COLS, check_holder, decode_item};
use super::{Dialect, SqlStore, is_unique_violation};
use crate::{Claimed, StoreError};
use liftoff_core::api::ItemView;
use liftoff_core::{Item, ItemEvent, ItemState, TransitionCause};

/// The held states, as SQL.
const HELD: &str = "('claimed', 'running', 'stopping')";

impl SqlStore {
    pub(super) async fn claim(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        if self.dialect == Dialect::Postgres {
            return self.claim_in_one_statement(entity, queues, agent_id, lease_ttl_ms).await;
        }
        // An agent told to stop polling gets nothing: checked in the same
        // statement, so a claim costs no extra round trip.
        // The log's next seq comes with the pick (a claim does not write
        // log chunks): one statement fewer per claim.
        let pick = format!(
            "SELECT {ITEM_COLS}, {} AS db_now, \
             (SELECT COALESCE(MAX(seq) + 1, 0) FROM log_chunks WHERE log_chunks.item_id = items.id) AS next_log_seq, \
             (SELECT COUNT(*) FROM agents WHERE entity = $1 AND id = $3 AND stop_polling <> 0) AS stopped \
             FROM items WHERE entity = $1 AND queue = $2 AND state = 'pending' \
             ORDER BY sort_prio, seq LIMIT 1{}",
            self.now_sql(),
            self.for_update(true)
        );
        // read before any pick: a queue found empty is known empty only
        // until a write that may fill it
        let generation = self.empty.as_ref().map(|e| e.generation());
        for queue in queues {
            if let (Some(empty), Some(at)) = (&self.empty, generation)
                && empty.known_empty(entity, queue, at)
            {
                continue;
            }
            let mut tx = self.begin_write().await?;
            let row = query(pick.clone()).bind(entity).bind(queue).bind(agent_id).fetch_optional(&mut *tx).await?;
            let Some(row) = row else {
                // nothing written: kept (a dropped request is undone, which
                // costs the writer more)
                tx.commit().await?;
                if let (Some(empty), Some(at)) = (&self.empty, generation) {
                    empty.found_empty(entity, queue, at);
                }
                continue;
            };
            if row.try_get::<i64, _>("stopped")? != 0 {
                tx.commit().await?;
                return Ok(None);
            }
            let view = decode_item(&row)?;
            let now: i64 = row.try_get("db_now")?;
            let log_seq_start: i64 = row.try_get("next_log_seq")?;
            let item = self
                .transition_loaded(&mut tx, view, None, &ItemEvent::Claim, now, Some((agent_id, now + lease_ttl_ms)))
                .await?;
            tx.commit().await?;
            return Ok(Some(Claimed { item, log_seq_start }));
        }
        Ok(None)
    }

    /// [`Self::claim`] on PostgreSQL: each queue's claim is one statement
    /// (pick, update, history row), committed on its own, instead of a
    /// transaction of four round trips to the server (`BEGIN`, pick,
    /// transition, `COMMIT`).
    ///
    /// The update is what [`liftoff_core::Item::apply`] does to a pending
    /// item on a claim, which changes its state and its fence alone: the new
    /// state and the fence's step are taken from it ([`claim_effect`]) and
    /// bound, not written here, and a test holds the "alone".
    ///
    /// The history row's `seq` is read in the statement's snapshot, which a
    /// transition of the same item committed between that snapshot and the
    /// row's lock would not show; the insert then fails on the key, nothing
    /// is written, and the claim is tried again with a fresh snapshot.
    async fn claim_in_one_statement(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        let (to, fence_step) = claim_effect();
        let event = ItemEvent::Claim;
        let sql = format!(
            "WITH clock AS (SELECT {now} AS now), \
             stopped AS (SELECT COUNT(*) AS n FROM agents WHERE entity = $1 AND id = $3 AND stop_polling <> 0), \
             pick AS (SELECT id AS pick_id FROM items WHERE entity = $1 AND queue = $2 AND state = $5 \
                      AND (SELECT n FROM stopped) = 0 ORDER BY sort_prio, seq LIMIT 1 FOR UPDATE SKIP LOCKED), \
             done AS (UPDATE items SET state = $6, fence = fence + $7, agent_id = $3, \
                      lease_expires_at = (SELECT now FROM clock) + $4 \
                      FROM pick WHERE items.id = pick.pick_id AND items.state = $5 RETURNING {ITEM_COLS}), \
             logs AS (SELECT done.id AS log_item, \
                      COALESCE((SELECT MAX(l.seq) + 1 FROM log_chunks l WHERE l.item_id = done.id), 0) AS next_seq \
                      FROM done), \
             history AS (INSERT INTO item_transitions (item_id, seq, entity, queue, run_id, at, event, from_state, \
                         to_state, cause, agent_id, fence, reason, exit_code, stage, log_seq) \
                         SELECT done.id, \
                         COALESCE((SELECT MAX(t.seq) FROM item_transitions t WHERE t.item_id = done.id), 0) + 1, \
                         done.entity, done.queue, done.run_id, clock.now, $8, $5, $6, $9, $3, done.fence, \
                         CAST(NULL AS TEXT), CAST(NULL AS BIGINT), CAST(NULL AS TEXT), logs.next_seq \
                         FROM done, clock, logs) \
             SELECT {ITEM_COLS}, clock.now AS db_now, logs.next_seq AS next_log_seq FROM done, clock, logs",
            now = self.now_sql()
        );
        for queue in queues {
            let mut retries = 3;
            let row = loop {
                let picked = query(sql.clone())
                    .bind(entity)
                    .bind(queue)
                    .bind(agent_id)
                    .bind(lease_ttl_ms)
                    .bind(ItemState::Pending.as_str())
                    .bind(to.as_str())
                    .bind(fence_step)
                    .bind(event.name())
                    .bind(TransitionCause::of(&event).as_str())
                    .fetch_optional(&self.write)
                    .await;
                match picked {
                    Err(e) if is_unique_violation(&e) && retries > 0 => retries -= 1,
                    other => break other?,
                }
            };
            if let Some(row) = row {
                let item = decode_item(&row)?;
                return Ok(Some(Claimed { item, log_seq_start: row.try_get("next_log_seq")? }));
            }
        }
        Ok(None)
    }

    pub(super) async fn renew_lease(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        lease_ttl_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut view = self.load_item(&mut tx, entity, id, true).await?;
        check_holder(&view, fence)?;
        // The guard repeats the holder check: the write itself refuses a
        // holder that lost the item, whatever the code above it does.
        let sql = format!(
            "UPDATE items SET lease_expires_at = {} + $1 WHERE id = $2 AND fence = $3 AND state IN {HELD} \
             RETURNING lease_expires_at",
            self.now_sql()
        );
        let row = query(sql)
            .bind(lease_ttl_ms)
            .bind(&view.id)
            .bind(fence)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::Conflict(format!("item '{}' changed concurrently; retry", view.id)))?;
        view.lease_expires_at_ms = Some(row.try_get("lease_expires_at")?);
        tx.commit().await?;
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
        let mut tx = self.begin_write().await?;
        let view = self.transition(&mut tx, entity, id, fence, event, now_ms, None).await?;
        tx.commit().await?;
        Ok(view)
    }

    pub(super) async fn expire_leases(&self) -> Result<Vec<String>, StoreError> {
        let sql =
            format!("SELECT id, entity FROM items WHERE state IN {HELD} AND lease_expires_at < {}", self.now_sql());
        let rows = query(sql).fetch_all(&self.read).await?;
        let mut expired = Vec::new();
        for r in rows {
            let (id, entity): (String, String) = (r.try_get("id")?, r.try_get("entity")?);
            let mut tx = self.begin_write().await?;
            // Re-check under the lock: a heartbeat may have renewed it meanwhile.
            let (current, now) = self.load_item_at(&mut tx, &entity, &id, true).await?;
            if !current.state.is_leased() || current.lease_expires_at_ms.is_none_or(|t| t >= now) {
                continue;
            }
            match self.transition_loaded(&mut tx, current, None, &ItemEvent::LeaseExpired, now, None).await {
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

    pub(super) async fn release_unstarted(
        &self,
        entity: &str,
        agent_id: &str,
        keep: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT id FROM items WHERE entity = $1 AND agent_id = $2 AND state IN ('claimed', 'stopping') \
                   AND started_at IS NULL";
        let rows = query(sql).bind(entity).bind(agent_id).fetch_all(&self.read).await?;
        let mut released = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            if keep.contains(&id) {
                continue;
            }
            let mut tx = self.begin_write().await?;
            let (current, now) = self.load_item_at(&mut tx, entity, &id, true).await?;
            if current.agent_id.as_deref() != Some(agent_id) || current.started_at_ms.is_some() {
                continue;
            }
            match self.transition_loaded(&mut tx, current, None, &ItemEvent::Release, now, None).await {
                Ok(_) => {
                    tx.commit().await?;
                    released.push(id);
                }
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }
}

/// What a claim does to a pending item, by the state machine: its new state
/// and the step of its fence ([`SqlStore::claim_in_one_statement`]).
fn claim_effect() -> (ItemState, i64) {
    let mut item = Item::new(); // pending
    item.apply(&ItemEvent::Claim, 1).expect("a pending item can be claimed");
    (item.state, item.fence)
}

#[cfg(test)]
mod tests {
    use super::claim_effect;
    use liftoff_core::{Item, ItemEvent, ItemState, Stage};

    /// The one-statement claim writes the state and steps the fence as
    /// [`claim_effect`] says, and nothing else of the state machine's: that
    /// holds only while a claim changes no other field of any pending item.
    #[test]
    fn a_claim_changes_a_pending_items_state_and_fence_alone() {
        let (to, step) = claim_effect();
        for attempts in [0, 1, 2] {
            for fence in [0, 1, 7] {
                for resumes in [0, 3] {
                    for (reason, exit_code, stage) in
                        [(None, None, None), (Some("preempted".to_string()), Some(137), Some(Stage::Run))]
                    {
                        let before =
                            Item { state: ItemState::Pending, attempts, fence, exit_code, reason, stage, resumes };
                        let mut after = before.clone();
                        after.apply(&ItemEvent::Claim, 3).unwrap();
                        let expected = Item { state: to, fence: before.fence + step, ..before };
                        assert_eq!(after, expected);
                    }
                }
            }
        }
    }
}
