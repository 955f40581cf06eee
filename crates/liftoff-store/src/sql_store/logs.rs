//! Log chunks of live runs, and handing ended runs' logs to the archiver.

use super::db::{Conn, query};
use super::items::check_holder;
use super::{SqlStore, corrupt};
use crate::StoreError;
use liftoff_core::ItemEvent;
use liftoff_core::api::{ItemView, LogChunk, LogPosition, LogStream, LogTail};

/// The ended states, as SQL.
const ENDED: &str = "('finished', 'failed', 'stopped', 'preempted')";

/// `items.log_archived`: 0 while the log is open or waits for the archiver,
/// 1 once it is in the blob store, [`KEPT`] when it stays in the database.
pub(super) const ARCHIVED: i64 = 1;
/// See [`ARCHIVED`].
const KEPT: i64 = 2;

impl SqlStore {
    pub(super) async fn append_log(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        seq: i64,
        stream: LogStream,
        data: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        self.append_loaded(&mut tx, &view, fence, seq, stream, data).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The run's last chunk, then its outcome, in one transaction: both
    /// are stored or neither.
    pub(super) async fn append_log_then_event(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        tail: &LogTail,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.begin_write().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        self.append_loaded(&mut tx, &view, fence, tail.seq, tail.stream, &tail.data).await?;
        let view = self.transition_loaded(&mut tx, view, Some(fence), event, now_ms, None).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Appends chunk `seq` to the log of `view` (loaded and locked in `conn`'s transaction).
    async fn append_loaded(
        &self,
        conn: &mut Conn,
        view: &ItemView,
        fence: i64,
        seq: i64,
        stream: LogStream,
        data: &str,
    ) -> Result<(), StoreError> {
        // An ended run takes no more output: so the archiver's read of its
        // log is complete, and nothing arrives while it archives.
        if fence == view.fence && view.state.is_terminal() {
            return Err(StoreError::Conflict(format!("run '{}' has ended and its log is closed", view.run_id)));
        }
        check_holder(view, fence)?;
        let next = next_seq(&mut *conn, &view.id).await?;
        if seq < next {
            return Ok(()); // a retry of a chunk we already hold
        }
        if seq > next {
            return Err(StoreError::Invalid {
                field: "seq".into(),
                message: format!("log chunk {seq} arrived before chunk {next}; send chunks in order"),
            });
        }
        // PostgreSQL's text cannot hold NUL, so neither store keeps it; `bytes`
        // is the size as sent, which an agent taking the run back counts on.
        let stored = data.replace('\0', "\u{FFFD}");
        query("INSERT INTO log_chunks (item_id, seq, stream, data, fence, bytes) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&view.id)
            .bind(seq)
            .bind(stream_str(stream))
            .bind(stored)
            .bind(fence)
            .bind(data.len() as i64)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(super) async fn read_log(
        &self,
        entity: &str,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogChunk>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let view = self.load_item(&mut conn, entity, id, false).await?;
        let rows =
            query("SELECT seq, stream, data FROM log_chunks WHERE item_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3")
                .bind(&view.id)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut conn)
                .await?;
        rows.iter()
            .map(|r| {
                let stream: String = r.try_get("stream")?;
                Ok(LogChunk {
                    seq: r.try_get("seq")?,
                    stream: serde_json::from_value(serde_json::Value::String(stream))
                        .map_err(|e| corrupt("log stream", e))?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    /// Marks the small logs of ended items kept (`log_archived = 2`): one
    /// statement for all of them, so a burst of short runs costs one write
    /// per archiver round, not a claim, an object and a mark each.
    pub(super) async fn keep_small_logs(&self, max_bytes: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE items SET log_archived = {KEPT} WHERE log_archived = 0 AND state IN {ENDED} \
             AND (log_archiving_until IS NULL OR log_archiving_until < {}) \
             AND COALESCE((SELECT SUM(bytes) FROM log_chunks WHERE log_chunks.item_id = items.id), 0) <= $1",
            self.now_sql()
        );
        let mut tx = self.begin_write().await?;
        let kept = query(sql).bind(max_bytes).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(kept)
    }

    /// Ended items whose log is still in the database and which no archiver
    /// holds (or whose archiver's claim ran out).
    pub(super) async fn logs_to_archive(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        let sql = format!(
            "SELECT entity, id FROM items WHERE log_archived = 0 AND state IN {ENDED} \
             AND (log_archiving_until IS NULL OR log_archiving_until < {}) ORDER BY seq LIMIT $1",
            self.now_sql()
        );
        let rows = query(sql).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((r.try_get("entity")?, r.try_get("id")?))).collect()
    }

    /// Takes the archiving of an ended item's log for `ttl_ms` by the
    /// database clock, by compare-and-set: of several servers, one wins.
    /// The returned token (the claim's deadline) must be shown to
    /// [`Self::mark_log_archived`]. `None` when the log is archived already
    /// or another archiver's claim still runs.
    pub(super) async fn claim_log_archive(
        &self,
        entity: &str,
        id: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let now = self.now_sql();
        let sql = format!(
            "UPDATE items SET log_archiving_until = {now} + $3 \
             WHERE id = (SELECT item_id FROM item_names WHERE entity = $1 AND name = $2) AND entity = $1 \
             AND log_archived = 0 AND state IN {ENDED} \
             AND (log_archiving_until IS NULL OR log_archiving_until < {now}) \
             RETURNING log_archiving_until"
        );
        let mut tx = self.begin_write().await?;
        let row = query(sql).bind(entity).bind(id).bind(ttl_ms).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.map(|r| r.try_get("log_archiving_until")).transpose().map_err(Into::into)
    }

    /// Closes an archived log: marks the item archived and drops its chunks
    /// up to `through_seq` (the last one the archiver read and stored; `None`
    /// when it stored none). Refused unless `claim` is still the item's
    /// archive claim, so an archiver that lost its claim changes nothing.
    pub(super) async fn mark_log_archived(
        &self,
        entity: &str,
        id: &str,
        claim: i64,
        through_seq: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        if !view.state.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "run '{}' is {}; its log is still open",
                view.run_id, view.state
            )));
        }
        let done = query(
            "UPDATE items SET log_archived = 1, log_archiving_until = NULL \
             WHERE id = $1 AND log_archived = 0 AND log_archiving_until = $2",
        )
        .bind(&view.id)
        .bind(claim)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "the archive claim {claim} on run '{}' is no longer held: archived already, or taken over",
                view.run_id
            )));
        }
        if let Some(last) = through_seq {
            query("DELETE FROM log_chunks WHERE item_id = $1 AND seq <= $2")
                .bind(&view.id)
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn log_position(&self, entity: &str, id: &str, fence: i64) -> Result<LogPosition, StoreError> {
        let mut conn = self.read.acquire().await?;
        let view = self.load_item(&mut conn, entity, id, false).await?;
        let next_seq = next_seq(&mut conn, &view.id).await?;
        let rows = query(
            "SELECT stream, CAST(SUM(bytes) AS BIGINT) AS n FROM log_chunks \
             WHERE item_id = $1 AND fence = $2 GROUP BY stream",
        )
        .bind(&view.id)
        .bind(fence)
        .fetch_all(&mut conn)
        .await?;
        let mut position = LogPosition { next_seq, ..Default::default() };
        for row in rows {
            let n: i64 = row.try_get("n")?;
            match row.try_get::<String, _>("stream")?.as_str() {
                "stdout" => position.stdout_bytes = n,
                "stderr" => position.stderr_bytes = n,
                _ => {}
            }
        }
        Ok(position)
    }
}

pub(super) async fn next_seq(conn: &mut Conn, item_id: &str) -> Result<i64, StoreError> {
    let row = query("SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM log_chunks WHERE item_id = $1")
        .bind(item_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("next")?)
}

fn stream_str(s: LogStream) -> &'static str {
    match s {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Agent => "agent",
        LogStream::Build => "build",
    }
}
