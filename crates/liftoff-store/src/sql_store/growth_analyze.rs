//! PostgreSQL only: fresh statistics while the tables grow fast.
//!
//! PostgreSQL plans a prepared statement from the table statistics it has
//! when the statement is planned, and keeps the plan (a generic plan, after
//! five runs) until those statistics change. Its autovacuum refreshes them
//! only after a tenth of a table has changed, and looks at most once a
//! minute (`autovacuum_naptime`). So a store whose items grow from a few
//! hundred to many thousands within a minute (a new install's first sweep)
//! runs on plans made for a near-empty table. Measured with `liftoff-bench`
//! (15,000 items): claims then picked the queue's head through the
//! launch-time index and sorted every item, and updated it through the
//! lease index, touching 15,000 rows: up to 100 ms and 16,000 buffers per
//! claim, 217 buffers on average; with plans made from fresh statistics the
//! same burst averages 133 (`pg_stat_statements`), and claims/s double.
//!
//! So this store runs `ANALYZE` on the tables that grow with launches after
//! 1,000 launches, then after 2,000, 4,000 and so on: each time the count
//! doubles, which is as often as a plan can go badly out of date, and
//! rarely enough to cost nothing measurable (one `ANALYZE` samples at most
//! 30,000 rows per table). An `ANALYZE` ends the cached plans that read the
//! tables; the next run of each statement is planned again. The count is
//! this process's launches: after a restart it starts again from zero,
//! which costs one more `ANALYZE`.

use super::db::{Pool, query};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Launches before the first `ANALYZE`.
pub(super) const FIRST: u64 = 1_000;

/// The tables a launch adds rows to, or that runs fill.
const TABLES: &str = "items, item_transitions, item_names, log_chunks";

pub(super) struct GrowthAnalyze {
    launches: AtomicU64,
    /// The launch count that triggers the next `ANALYZE`.
    next: AtomicU64,
    running: AtomicBool,
}

impl GrowthAnalyze {
    pub(super) fn new(first: u64) -> Self {
        Self { launches: AtomicU64::new(0), next: AtomicU64::new(first.max(1)), running: AtomicBool::new(false) }
    }

    /// A launch was stored: at each doubling of the count, analyses the
    /// growing tables on a task of its own (the launch is not delayed; one
    /// `ANALYZE` at a time).
    pub(super) fn launched(self: &std::sync::Arc<Self>, pool: &Pool) {
        let n = self.launches.fetch_add(1, Ordering::Relaxed) + 1;
        if n < self.next.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next.store(n.saturating_mul(2), Ordering::Relaxed);
        let (this, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            match query(format!("ANALYZE {TABLES}")).execute(&pool).await {
                Ok(_) => tracing::debug!(launches = n, "analysed the item tables"),
                // plans stay as they were: slower, not wrong
                Err(e) => tracing::warn!(error = %e, "could not ANALYZE the item tables; claims may use stale plans"),
            }
            this.running.store(false, Ordering::Release);
        });
    }
}
