//! One page of a queue's items for the web UI: newest first, filtered by
//! state, job, agent, launcher and launch time, paged by the items' insertion sequence (keyset: the
//! next page starts below the last `seq` shown), so a page costs the same at
//! item 100,000 as at item 1.

use super::db::query;
use super::items::{ITEM_COLS, decode_item};
use super::{Dialect, SqlStore};
use crate::StoreError;
use liftoff_core::api::ItemView;

/// What a queue page shows; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    pub state: Option<String>,
    /// The job's full name as the launch spec records it.
    pub job: Option<String>,
    pub agent: Option<String>,
    /// The launcher's name as items record it (`launched_by`).
    pub launcher: Option<String>,
    /// Launched at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Launched before this time (ms since the epoch).
    pub until_ms: Option<i64>,
}

/// A page of items and where the next one starts.
#[derive(Debug, Clone)]
pub struct ItemPage {
    pub items: Vec<ItemView>,
    /// Pass as `before` to get the next (older) page; `None` on the last one.
    pub next_before: Option<i64>,
}

/// The item's job, read from the spec's JSON; migration 5 indexes this very
/// expression, which the planners match only when written the same way.
pub(super) fn job_expr(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "json_extract(spec, '$.job')",
        Dialect::Postgres => "(spec::jsonb ->> 'job')",
    }
}

impl SqlStore {
    pub(super) async fn queue_page(
        &self,
        entity: &str,
        queue: &str,
        filter: &ItemFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<ItemPage, StoreError> {
        let job = job_expr(self.dialect);
        // Only the filters in use go into the statement (a `$n = '' OR ...`
        // would keep the planners from the state, agent and launcher
        // indexes). The launch-time bounds filter the rows an index walks
        // in `seq` order, which follows launch time.
        let mut conds = String::new();
        let mut texts: Vec<&str> = Vec::new();
        let text_filters = [
            ("state", &filter.state),
            (job, &filter.job),
            ("agent_id", &filter.agent),
            ("launched_by", &filter.launcher),
        ];
        for (column, value) in text_filters {
            if let Some(v) = value {
                texts.push(v);
                conds.push_str(&format!(" AND {column} = ${}", 4 + texts.len()));
            }
        }
        let mut times: Vec<i64> = Vec::new();
        for (op, value) in [(">=", filter.since_ms), ("<", filter.until_ms)] {
            if let Some(v) = value {
                times.push(v);
                conds.push_str(&format!(" AND created_at {op} ${}", 4 + texts.len() + times.len()));
            }
        }
        // A launch-time window first finds the `seq` span of the items it
        // holds (from the (created_at, seq) index alone), and the page walks
        // only that span: a window that holds few items of a long queue
        // would otherwise be found by walking the whole queue. Exact: the
        // launch-time bounds still apply to every row.
        if !times.is_empty() {
            match self.launch_window_span(entity, queue, filter.since_ms, filter.until_ms).await? {
                None => return Ok(ItemPage { items: Vec::new(), next_before: None }),
                Some((first, last)) => {
                    times.push(first);
                    conds.push_str(&format!(" AND seq >= ${}", 4 + texts.len() + times.len()));
                    times.push(last);
                    conds.push_str(&format!(" AND seq <= ${}", 4 + texts.len() + times.len()));
                }
            }
        }
        let sql = format!(
            "SELECT seq, {ITEM_COLS} FROM items WHERE entity = $1 AND queue = $2 AND seq < $3{conds} \
             ORDER BY seq DESC LIMIT $4"
        );
        let mut query = query(sql).bind(entity).bind(queue).bind(before.unwrap_or(i64::MAX)).bind(limit + 1);
        for v in texts {
            query = query.bind(v);
        }
        for v in times {
            query = query.bind(v);
        }
        let rows = query.fetch_all(&self.read).await?;
        let more = rows.len() as i64 > limit;
        let mut items = Vec::with_capacity(rows.len());
        let mut last_seq = None;
        for r in rows.iter().take(limit as usize) {
            last_seq = Some(r.try_get::<i64, _>("seq")?);
            items.push(decode_item(r)?);
        }
        Ok(ItemPage { items, next_before: if more { last_seq } else { None } })
    }

    /// The lowest and highest `seq` of the queue's items launched in
    /// `[since, until)`, or `None` when it holds none.
    async fn launch_window_span(
        &self,
        entity: &str,
        queue: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let row = query(
            "SELECT MIN(seq) AS first, MAX(seq) AS last FROM items \
             WHERE entity = $1 AND queue = $2 AND created_at >= $3 AND created_at < $4",
        )
        .bind(entity)
        .bind(queue)
        .bind(since_ms.unwrap_or(i64::MIN))
        .bind(until_ms.unwrap_or(i64::MAX))
        .fetch_one(&self.read)
        .await?;
        let first: Option<i64> = row.try_get("first")?;
        let last: Option<i64> = row.try_get("last")?;
        Ok(first.zip(last))
    }
}
