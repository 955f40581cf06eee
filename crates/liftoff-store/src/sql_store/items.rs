//! Item rows: loading, the one guarded state transition, enqueue, lookups and warnings.

use super::db::{Conn, Query, Row, query};
use super::history::{Change, bind_change, bind_change_of, change_insert_sql};
use super::{Dialect, SqlStore, corrupt, is_unique_violation};
use crate::{NewItem, StoreError};
use liftoff_core::api::{ItemView, LaunchSpec};
use liftoff_core::history::LAUNCH_EVENT;
use liftoff_core::{Item, ItemEvent, ItemState, Priority, Stage, TransitionCause};
use std::str::FromStr;

pub(super) const ITEM_COLS: &str = "id, run_id, entity, queue, state, priority, attempts, fence, spec, agent_id, exit_code, reason, \
     created_at, lease_expires_at, started_at, ended_at, log_archived, stage, resumes, build, launched_by, launched_by_key";

impl SqlStore {
    /// The item named `id` (its item id or its run id: `item_names` holds
    /// both in one namespace, so a name means at most one item).
    pub(super) async fn load_item(
        &self,
        conn: &mut Conn,
        entity: &str,
        id: &str,
        lock: bool,
    ) -> Result<ItemView, StoreError> {
        Ok(self.load_item_at(conn, entity, id, lock).await?.0)
    }

    /// [`Self::load_item`], and the database clock at the time of reading.
    pub(super) async fn load_item_at(
        &self,
        conn: &mut Conn,
        entity: &str,
        id: &str,
        lock: bool,
    ) -> Result<(ItemView, i64), StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLS}, {} AS db_now FROM items \
             WHERE id = (SELECT item_id FROM item_names WHERE entity = $1 AND name = $2) AND entity = $1{}",
            self.now_sql(),
            if lock { self.for_update(false) } else { "" }
        );
        let row = query(sql).bind(entity).bind(id).fetch_optional(&mut *conn).await?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("run-queue item '{id}'")))?;
        Ok((decode_item(&row)?, row.try_get("db_now")?))
    }

    /// The one place item rows change state: apply the event through the core
    /// state machine, then write it back only if nobody changed the row meanwhile.
    #[expect(clippy::too_many_arguments, reason = "each argument is a distinct part of one guarded write")]
    pub(super) async fn transition(
        &self,
        conn: &mut Conn,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
        claim: Option<(&str, i64)>,
    ) -> Result<ItemView, StoreError> {
        let view = self.load_item(conn, entity, id, true).await?;
        self.transition_loaded(conn, view, fence, event, now_ms, claim).await
    }

    /// [`Self::transition`] for a row the caller has just loaded (and locked).
    /// `claim` is the claiming agent and its lease deadline.
    pub(super) async fn transition_loaded(
        &self,
        conn: &mut Conn,
        mut view: ItemView,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
        claim: Option<(&str, i64)>,
    ) -> Result<ItemView, StoreError> {
        if let Some(sent) = fence {
            check_holder(&view, sent)?;
        }
        let (old_state, old_fence) = (view.state, view.fence);
        let mut item = Item {
            state: view.state,
            attempts: view.attempts,
            fence: view.fence,
            exit_code: view.exit_code,
            reason: view.reason.clone(),
            stage: view.stage,
            resumes: view.resumes,
        };
        item.apply(event, self.max_attempts)?;
        // The details this change set (a re-queue says why even when an
        // earlier one said the same).
        let requeue = matches!(event, ItemEvent::Preempt | ItemEvent::Release);
        let (reason, exit_code, stage) = (
            if requeue { item.reason.clone() } else { changed(&item.reason, &view.reason) },
            changed(&item.exit_code, &view.exit_code),
            changed(&item.stage, &view.stage),
        );
        let holder = view.agent_id.clone();
        view.state = item.state;
        view.attempts = item.attempts;
        view.fence = item.fence;
        view.exit_code = item.exit_code;
        view.reason = item.reason;
        view.stage = item.stage;
        view.resumes = item.resumes;
        match item.state {
            ItemState::Claimed => {
                let (agent, deadline) = claim.unwrap_or(("", now_ms));
                view.agent_id = Some(agent.to_string());
                view.lease_expires_at_ms = Some(deadline);
            }
            ItemState::Running if old_state == ItemState::Claimed => view.started_at_ms = Some(now_ms),
            ItemState::Pending => {
                view.agent_id = None;
                view.lease_expires_at_ms = None;
            }
            s if s.is_terminal() => {
                view.lease_expires_at_ms = None;
                view.ended_at_ms = Some(now_ms);
            }
            _ => {}
        }
        // A repeated stop request changes nothing worth a history entry.
        let change = (view.state != old_state).then(|| {
            let cause = TransitionCause::of(event);
            Change {
                event: event.name(),
                from: Some(old_state),
                cause,
                agent_id: if item.state == ItemState::Claimed { view.agent_id.as_deref() } else { holder.as_deref() },
                fence: match (cause, event) {
                    (_, ItemEvent::Claim) => Some(view.fence),
                    (TransitionCause::Agent, _) => Some(old_fence),
                    _ => None,
                },
                at_ms: now_ms,
                reason: reason.as_deref(),
                exit_code,
                stage,
            }
        });
        let update = "UPDATE items SET state = $1, attempts = $2, fence = $3, exit_code = $4, reason = $5, \
                      agent_id = $6, lease_expires_at = $7, started_at = $8, ended_at = $9, stage = $10, resumes = $11 \
                      WHERE id = $12 AND state = $13 AND fence = $14";
        // The history row goes in the same query as the update, and only if
        // the update changed the row: on PostgreSQL one round trip per
        // transition, not two (its prepared statement holds one statement,
        // so the update is a CTE the insert selects from); SQLite runs the
        // two statements in turn, the second guarded by `changes()`.
        let together = change.is_some();
        let sql = match (together, self.dialect) {
            (false, _) => update.to_string(),
            (true, Dialect::Sqlite) => format!("{update}; {}", change_insert_sql(15, " WHERE changes() = 1")),
            (true, Dialect::Postgres) => {
                format!("WITH done AS ({update} RETURNING 1) {}", change_insert_sql(15, " FROM done"))
            }
        };
        let query = query(sql)
            .bind(view.state.as_str())
            .bind(i64::from(view.attempts))
            .bind(view.fence)
            .bind(view.exit_code.map(i64::from))
            .bind(view.reason.clone())
            .bind(view.agent_id.clone())
            .bind(view.lease_expires_at_ms)
            .bind(view.started_at_ms)
            .bind(view.ended_at_ms)
            .bind(view.stage.map(|s| s.as_str()))
            .bind(i64::from(view.resumes))
            .bind(view.id.clone())
            .bind(old_state.as_str())
            .bind(old_fence);
        let query = match &change {
            Some(change) => bind_change(query, &view, change),
            None => query,
        };
        // the rows written: the update's, and the history's on SQLite (on
        // PostgreSQL only the insert's are counted, one per updated row)
        let expected = 1 + u64::from(together && self.dialect == Dialect::Sqlite);
        let done = query.execute(&mut *conn).await?;
        if done.rows_affected() != expected {
            if done.rows_affected() != 0 {
                return Err(corrupt("item transition", format!("{} rows written", done.rows_affected())));
            }
            return Err(StoreError::Conflict(format!("item '{}' changed concurrently; retry", view.id)));
        }
        if view.state == ItemState::Pending {
            self.may_have_pending();
        }
        Ok(view)
    }

    pub(super) async fn enqueue(&self, item: &NewItem) -> Result<ItemView, StoreError> {
        let view = self.enqueue_once(item).await?;
        if let Some(analyze) = &self.analyze {
            analyze.launched(&self.write);
        }
        Ok(view)
    }

    async fn enqueue_once(&self, item: &NewItem) -> Result<ItemView, StoreError> {
        if self.dialect == Dialect::Postgres {
            match self.enqueue_in_one_statement(item).await {
                // the statements one by one say which name is taken
                Err(StoreError::Db(e)) if is_unique_violation(&e) => {}
                done => return done,
            }
        }
        let run_id_taken =
            || StoreError::Conflict(format!("run id '{}' is already used in entity '{}'", item.run_id, item.entity));
        let mut tx = self.begin_write().await?;
        let res = bind_new_item(query(INSERT_ITEM), item)?.execute(&mut *tx).await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(run_id_taken()),
            Err(e) => return Err(e.into()),
        }
        self.may_have_pending();
        let mut names = vec![(&item.id, false)];
        if item.run_id != item.id {
            names.push((&item.run_id, true));
        }
        for (name, is_run_id) in names {
            let res = query("INSERT INTO item_names (entity, name, item_id) VALUES ($1, $2, $3)")
                .bind(&item.entity)
                .bind(name)
                .bind(&item.id)
                .execute(&mut *tx)
                .await;
            match res {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) && is_run_id => return Err(run_id_taken()),
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!(
                        "item id '{}' is already used in entity '{}'",
                        item.id, item.entity
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let view = self.load_item(&mut tx, &item.entity, &item.id, false).await?;
        self.record_change(&mut tx, &view, &launch_change(item.now_ms)).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// [`Self::enqueue`] on PostgreSQL in one statement (the row, its
    /// names, its launch entry, the row back), committed on its own: one
    /// round trip to the server instead of six. A name already taken fails
    /// it whole; the caller then goes statement by statement.
    async fn enqueue_in_one_statement(&self, item: &NewItem) -> Result<ItemView, StoreError> {
        let sql = format!(
            "WITH ins AS ({INSERT_ITEM} RETURNING {ITEM_COLS}), \
             names AS (INSERT INTO item_names (entity, name, item_id) \
                       SELECT entity, id, id FROM ins UNION ALL SELECT entity, run_id, id FROM ins WHERE run_id <> id), \
             history AS ({}) \
             SELECT {ITEM_COLS} FROM ins",
            change_insert_sql(11, " FROM ins")
        );
        let launch = launch_change(item.now_ms);
        let query = bind_new_item(query(sql), item)?;
        let query =
            bind_change_of(query, [&item.id, &item.entity, &item.queue, &item.run_id], ItemState::Pending, &launch);
        let row = query.fetch_one(&self.write).await?;
        decode_item(&row)
    }

    pub(super) async fn get_item(&self, entity: &str, id: &str) -> Result<Option<ItemView>, StoreError> {
        let mut conn = self.read.acquire().await?;
        match self.load_item(&mut conn, entity, id, false).await {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn list_items(
        &self,
        entity: &str,
        queue: Option<&str>,
        launcher: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ItemView>, StoreError> {
        // Only the filters in use go into the statement, so that the
        // planners can use the launcher indexes (as in `queue_page`).
        let mut conds = String::new();
        let mut binds = Vec::new();
        for (column, value) in [("queue", queue), ("launched_by", launcher)] {
            if let Some(v) = value {
                binds.push(v);
                conds.push_str(&format!(" AND {column} = ${}", 2 + binds.len()));
            }
        }
        let sql = format!("SELECT {ITEM_COLS} FROM items WHERE entity = $1{conds} ORDER BY seq DESC LIMIT $2");
        let mut query = query(sql).bind(entity).bind(limit);
        for v in binds {
            query = query.bind(v);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(decode_item).collect()
    }
}

/// A new item's row: `$1` to `$10` (id, run id, entity, queue, ...).
const INSERT_ITEM: &str = "INSERT INTO items (id, run_id, entity, queue, state, priority, sort_prio, attempts, fence, \
     spec, created_at, launched_by, launched_by_key) VALUES ($1, $2, $3, $4, 'pending', $5, $6, 0, 0, $7, $8, $9, $10)";

/// Binds [`INSERT_ITEM`]'s values.
fn bind_new_item(query: Query, item: &NewItem) -> Result<Query, StoreError> {
    Ok(query
        .bind(item.id.clone())
        .bind(item.run_id.clone())
        .bind(item.entity.clone())
        .bind(item.queue.clone())
        .bind(item.priority.rank())
        .bind(if item.prioritized { item.priority.rank() } else { 0 })
        .bind(serde_json::to_string(&item.spec).map_err(|e| corrupt("launch spec", e))?)
        .bind(item.now_ms)
        .bind(item.launched_by.as_ref().map(|l| l.name.clone()))
        .bind(item.launched_by.as_ref().map(|l| l.key_id.clone())))
}

/// The history entry of a launch.
fn launch_change(at_ms: i64) -> Change<'static> {
    Change {
        event: LAUNCH_EVENT,
        from: None,
        cause: TransitionCause::User,
        agent_id: None,
        fence: None,
        at_ms,
        reason: None,
        exit_code: None,
        stage: None,
    }
}

pub(super) fn decode_item(r: &Row) -> Result<ItemView, StoreError> {
    let state: String = r.try_get("state")?;
    let spec: String = r.try_get("spec")?;
    let prio: i64 = r.try_get("priority")?;
    Ok(ItemView {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        entity: r.try_get("entity")?,
        queue: r.try_get("queue")?,
        state: ItemState::from_str(&state).map_err(|e| corrupt("item state", e))?,
        priority: Priority::from_rank(prio).ok_or_else(|| corrupt("item priority", prio))?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).map_err(|e| corrupt("item attempts", e))?,
        fence: r.try_get("fence")?,
        spec: serde_json::from_str::<LaunchSpec>(&spec).map_err(|e| corrupt("launch spec", e))?,
        agent_id: r.try_get("agent_id")?,
        exit_code: r.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
        reason: r.try_get("reason")?,
        created_at_ms: r.try_get("created_at")?,
        lease_expires_at_ms: r.try_get("lease_expires_at")?,
        started_at_ms: r.try_get("started_at")?,
        ended_at_ms: r.try_get("ended_at")?,
        // kept in the database (`logs::KEPT`) reads as not archived: read from there
        log_archived: r.try_get::<i64, _>("log_archived")? == super::logs::ARCHIVED,
        stage: r
            .try_get::<Option<String>, _>("stage")?
            .map(|s| Stage::from_str(&s).map_err(|e| corrupt("item stage", e)))
            .transpose()?,
        resumes: u32::try_from(r.try_get::<i64, _>("resumes")?).map_err(|e| corrupt("item resumes", e))?,
        warnings: Vec::new(),
        build: r
            .try_get::<Option<String>, _>("build")?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt("item build", e)))
            .transpose()?,
        launched_by: r.try_get("launched_by")?,
        launched_by_key: r.try_get("launched_by_key")?,
    })
}

/// A write carrying `fence` comes from the item's current holder: the token
/// is the current one and the item is held (claimed, running or stopping).
/// Anything else is a holder that lost the item, whose writes change nothing.
pub(super) fn check_holder(view: &ItemView, fence: i64) -> Result<(), StoreError> {
    if fence != view.fence {
        return Err(StoreError::StaleFence { item: view.id.clone(), sent: fence, current: view.fence });
    }
    if !view.state.is_leased() {
        return Err(StoreError::Conflict(format!(
            "item '{}' is {}: the claim with token {fence} no longer holds it",
            view.id, view.state
        )));
    }
    Ok(())
}

/// `new` when it differs from `old`: the detail a change set.
fn changed<T: Clone + PartialEq>(new: &Option<T>, old: &Option<T>) -> Option<T> {
    if new != old { new.clone() } else { None }
}
