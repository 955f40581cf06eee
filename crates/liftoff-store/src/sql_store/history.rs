//! Item histories: one row per state change, written by the transition
//! itself (same transaction), read by the history API and the event streams.

use super::db::{Conn, Query, Row, query};
use super::{SqlStore, corrupt};
use crate::StoreError;
use liftoff_core::api::ItemView;
use liftoff_core::{ItemState, ItemTransition, Stage, TransitionCause};
use std::str::FromStr;

const COLS: &str = "item_id, run_id, queue, seq, queue_seq, at, event, from_state, to_state, cause, agent_id, fence, \
                    reason, exit_code, stage, log_seq";

/// What a history row says beyond the item's new state.
pub(super) struct Change<'a> {
    pub event: &'a str,
    pub from: Option<ItemState>,
    pub cause: TransitionCause,
    pub agent_id: Option<&'a str>,
    pub fence: Option<i64>,
    pub at_ms: i64,
    /// The outcome's details, on the change that set them.
    pub reason: Option<&'a str>,
    pub exit_code: Option<i32>,
    pub stage: Option<Stage>,
}

impl SqlStore {
    /// Records `change` of the item now described by `after`. Called inside
    /// the transaction that wrote the item, with its row locked, so the
    /// item's `seq` cannot race. The queue's number (`queue_seq`) is given
    /// later, by [`Self::number_queue_changes`]: numbering here would lock
    /// the queue's row until each commit and make a queue's claims commit
    /// one at a time.
    pub(super) async fn record_change(
        &self,
        conn: &mut Conn,
        after: &ItemView,
        change: &Change<'_>,
    ) -> Result<(), StoreError> {
        // One statement (the item's next seq and its log position inside):
        // claims pay one round trip for their history, not three.
        let sql = change_insert_sql(1, "");
        bind_change(query(sql), after, change).execute(&mut *conn).await?;
        Ok(())
    }

    /// Numbers the queue's committed, unnumbered changes (`queue_seq`), in
    /// the order they were inserted, under the queue row's lock. Numbers are
    /// only handed out here, one numbering at a time, and become visible
    /// when it commits: so a reader that has seen number `n` never later
    /// finds a change below `n`, however the changes' own commits
    /// interleaved. (A change still uncommitted is numbered by a later call.)
    async fn number_queue_changes(&self, entity: &str, queue: &str) -> Result<(), StoreError> {
        let unnumbered = query(
            "SELECT 1 AS one FROM item_transitions WHERE entity = $1 AND queue = $2 AND queue_seq IS NULL LIMIT 1",
        )
        .bind(entity)
        .bind(queue)
        .fetch_optional(&self.read)
        .await?;
        if unnumbered.is_none() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // takes the queue row's lock (PostgreSQL; SQLite writes one at a time)
        let base: i64 =
            query("UPDATE queues SET event_seq = event_seq WHERE entity = $1 AND name = $2 RETURNING event_seq")
                .bind(entity)
                .bind(queue)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("queue '{queue}'")))?
                .try_get("event_seq")?;
        let numbered = query(
            "UPDATE item_transitions SET queue_seq = $3 + r.n FROM \
             (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM item_transitions \
              WHERE entity = $1 AND queue = $2 AND queue_seq IS NULL) AS r \
             WHERE item_transitions.id = r.id",
        )
        .bind(entity)
        .bind(queue)
        .bind(base)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        query("UPDATE queues SET event_seq = $3 WHERE entity = $1 AND name = $2")
            .bind(entity)
            .bind(queue)
            .bind(base + numbered as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn item_history(
        &self,
        entity: &str,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ItemTransition>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM item_transitions \
             WHERE item_id = (SELECT item_id FROM item_names WHERE entity = $1 AND name = $2) AND entity = $1 \
             AND seq > $3 ORDER BY seq LIMIT $4"
        );
        let rows = query(sql).bind(entity).bind(id).bind(after).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(decode).collect()
    }

    pub(super) async fn queue_history(
        &self,
        entity: &str,
        queue: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ItemTransition>, StoreError> {
        self.number_queue_changes(entity, queue).await?;
        let sql = format!(
            "SELECT {COLS} FROM item_transitions WHERE entity = $1 AND queue = $2 AND queue_seq > $3 \
             ORDER BY queue_seq LIMIT $4"
        );
        let rows = query(sql).bind(entity).bind(queue).bind(after).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(decode).collect()
    }

    pub(super) async fn queue_history_head(&self, entity: &str, queue: &str) -> Result<i64, StoreError> {
        self.number_queue_changes(entity, queue).await?;
        let row = query("SELECT event_seq FROM queues WHERE entity = $1 AND name = $2")
            .bind(entity)
            .bind(queue)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("queue '{queue}'")))?;
        Ok(row.try_get("event_seq")?)
    }
}

/// The history row's INSERT, its parameters numbered from `$first` (so that
/// it can follow another statement in one query), `source` after its select
/// list (`""`, or a `FROM` or `WHERE` that makes the row depend on another
/// statement).
pub(super) fn change_insert_sql(first: usize, source: &str) -> String {
    let p = |n: usize| format!("${}", first + n - 1);
    let (id, values) = (p(1), (2..=14).map(p).collect::<Vec<_>>().join(", "));
    format!(
        "INSERT INTO item_transitions (item_id, seq, entity, queue, run_id, at, event, from_state, \
         to_state, cause, agent_id, fence, reason, exit_code, stage, log_seq) \
         SELECT {id}, COALESCE((SELECT MAX(seq) FROM item_transitions WHERE item_id = {id}), 0) + 1, \
         {values}, COALESCE((SELECT MAX(seq) + 1 FROM log_chunks WHERE item_id = {id}), 0){source}"
    )
}

/// Binds the history row's 14 values, in [`change_insert_sql`]'s order.
pub(super) fn bind_change(query: Query, after: &ItemView, change: &Change<'_>) -> Query {
    bind_change_of(query, [&after.id, &after.entity, &after.queue, &after.run_id], after.state, change)
}

/// [`bind_change`] for an item given by its id, entity, queue and run id, now in `state`.
pub(super) fn bind_change_of(
    query: Query,
    [id, entity, queue, run_id]: [&String; 4],
    state: ItemState,
    change: &Change<'_>,
) -> Query {
    query
        .bind(id.clone())
        .bind(entity.clone())
        .bind(queue.clone())
        .bind(run_id.clone())
        .bind(change.at_ms)
        .bind(change.event.to_string())
        .bind(change.from.map(ItemState::as_str))
        .bind(state.as_str())
        .bind(change.cause.as_str())
        .bind(change.agent_id.map(str::to_string))
        .bind(change.fence)
        .bind(change.reason.map(str::to_string))
        .bind(change.exit_code.map(i64::from))
        .bind(change.stage.map(Stage::as_str))
}

fn decode(r: &Row) -> Result<ItemTransition, StoreError> {
    let state = |s: String| ItemState::from_str(&s).map_err(|e| corrupt("transition state", e));
    Ok(ItemTransition {
        item_id: r.try_get("item_id")?,
        run_id: r.try_get("run_id")?,
        queue: r.try_get("queue")?,
        seq: r.try_get("seq")?,
        queue_seq: r.try_get("queue_seq")?,
        at_ms: r.try_get("at")?,
        event: r.try_get("event")?,
        from: r.try_get::<Option<String>, _>("from_state")?.map(state).transpose()?,
        to: state(r.try_get("to_state")?)?,
        cause: TransitionCause::from_str(&r.try_get::<String, _>("cause")?)
            .map_err(|e| corrupt("transition cause", e))?,
        agent_id: r.try_get("agent_id")?,
        fence: r.try_get("fence")?,
        reason: r.try_get("reason")?,
        exit_code: r.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
        stage: r
            .try_get::<Option<String>, _>("stage")?
            .map(|s| Stage::from_str(&s).map_err(|e| corrupt("transition stage", e)))
            .transpose()?,
        log_seq: r.try_get("log_seq")?,
    })
}
