//! The [`Store`] over SQL, one file per concept: `items` (rows and the one
//! guarded state transition), `claims` (claims and leases), `logs`, `jobs`,
//! `queues`, `warnings`, `agents_keys`, `builds`, `history` (every state
//! change), `stats` (read-only aggregates for `/metrics`), `queue_page` (the
//! UI's keyset-paged queue view), `saved_filters` (its named views),
//! `priority` (a pending item's priority change), `migrations`; `store_impl`
//! maps the trait onto them.

mod agents_keys;
mod builds;
mod claims;
mod db;
mod empty_queues;
mod group_commit;
mod growth_analyze;
mod history;
mod items;
mod jobs;
mod logs;
mod migrations;
mod priority;
mod queue_page;
mod queues;
mod saved_filters;
mod sealed;
mod stats;
mod store_impl;
#[cfg(test)]
mod tests;
mod warnings;

pub use queue_page::{ItemFilter, ItemPage};
pub use saved_filters::SavedFilter;
pub use stats::{AgentStats, QueueStats};

use crate::StoreError;
use db::{Conn, Pool};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// A pooled PostgreSQL connection idle at least this long is pinged before
/// it is used, so that one the server dropped meanwhile (a restart, an idle
/// timeout) is replaced instead of failing a request. One that served a
/// statement within this time is used at once: a request then waits for one
/// round trip per statement instead of two (`liftoff-bench` on a durable
/// PostgreSQL: enqueue→claim p50 3.50 / 3.11 / 3.15 ms before, 3.18 / 2.84 /
/// 2.87 ms after). A connection that dies within a second of its last use
/// fails its next statement once, and is replaced.
const PING_IF_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Which SQL database backs a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The [`Store`] over sqlx's `Any` driver (PostgreSQL) or rusqlite (SQLite),
/// through `db.rs`. Placeholders are written `$N`,
/// which both SQLite and PostgreSQL accept; the few dialect differences
/// (row locks, the sequence column, the clock) are spelled out where they occur.
///
/// On SQLite the write pool holds one connection: SQLite serialises writers
/// anyway, and one connection avoids `SQLITE_BUSY` on lock upgrades. It
/// syncs every commit (`synchronous = FULL`): a claim that was answered
/// survives a power loss. Reads go through their own `query_only`
/// connections, which WAL lets run beside the writer.
#[derive(Clone)]
pub struct SqlStore {
    /// Writes, and reads inside a writing transaction.
    write: Pool,
    /// Pure reads; the same pool as `write` on PostgreSQL.
    read: Pool,
    dialect: Dialect,
    /// Lease expiries an item may suffer before it fails.
    max_attempts: u32,
    /// SQLite's writes, several requests to a commit (`group_commit.rs`).
    group: Option<std::sync::Arc<group_commit::GroupCommit>>,
    /// SQLite's queues known to be empty, so that claims skip them (`empty_queues.rs`).
    empty: Option<std::sync::Arc<empty_queues::EmptyQueues>>,
    /// PostgreSQL's statistics kept fresh while the items grow (`growth_analyze.rs`).
    analyze: Option<std::sync::Arc<growth_analyze::GrowthAnalyze>>,
}

/// A request's write transaction: on SQLite, its savepoint in a shared
/// transaction committed for several requests at once; on PostgreSQL, its
/// own transaction. Derefs to the connection either way.
pub(super) enum WriteTx {
    Group(group_commit::GroupTx),
    /// PostgreSQL's transaction, or SQLite's writer inside `BEGIN IMMEDIATE`
    /// when group commit is off (rolled back if dropped).
    Own(Conn),
}

impl WriteTx {
    /// Answers once the writes are durable.
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Group(tx) => tx.commit().await,
            Self::Own(Conn::AnyTx(tx)) => Ok(tx.commit().await?),
            Self::Own(Conn::Lite(mut conn)) => Ok(conn.lite().batch("COMMIT")?),
            Self::Own(Conn::Any(_)) => unreachable!("a write transaction is never a bare connection"),
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Self::Group(tx) => tx,
            Self::Own(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Self::Group(tx) => tx,
            Self::Own(conn) => conn,
        }
    }
}

impl SqlStore {
    /// Opens (creating if needed) the database at `url`: `sqlite://PATH` or
    /// `postgres://...`, and brings its schema up to date. A database made by
    /// a newer liftoff is refused ([`StoreError::SchemaTooNew`]).
    pub async fn connect(url: &str, max_attempts: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Invalid {
                field: "db".into(),
                message: format!("unsupported database URL '{}': use sqlite://PATH or postgres://...", redact_url(url)),
            });
        };
        let max_attempts = max_attempts.max(1);
        let store = match dialect {
            Dialect::Sqlite => {
                if url.contains(":memory:") || url.contains("mode=memory") {
                    // each connection would open a database of its own
                    return Err(StoreError::Invalid {
                        field: "db".into(),
                        message: "an in-memory SQLite database cannot be shared by the store's connections: \
                                  give a file (sqlite://PATH)"
                            .into(),
                    });
                }
                let url = if url.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
                // The schema first, through sqlx (migrations run once, at
                // start), so that the connections below open a database that has it.
                let migrator = sqlite_migrator(&url).await?;
                Self::migrate(&migrator, dialect).await?;
                migrator.close().await;
                let path = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)?
                    .get_filename()
                    .to_path_buf();
                // `temp_store = MEMORY`: the savepoint journals of group commit
                // (`group_commit.rs`) stay in memory, not in temporary files
                // written for every request (7% of the CPU of a claim burst).
                let pragmas = &["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA temp_store = MEMORY"];
                let write = db::LitePool::open(path.clone(), 1, pragmas)?;
                let read = Pool::Lite(db::LitePool::open(path, 4, &["PRAGMA query_only = ON"])?);
                // `LIFTOFF_SQLITE_GROUP_COMMIT=0`: a commit per request, as
                // before group commit (for `liftoff-bench` to compare the two)
                let grouped = std::env::var("LIFTOFF_SQLITE_GROUP_COMMIT").map_or(true, |v| v.trim() != "0");
                let group = grouped.then(|| group_commit::GroupCommit::new(write.clone()));
                Self {
                    write: Pool::Lite(write),
                    read,
                    dialect,
                    max_attempts,
                    group,
                    empty: Some(Default::default()),
                    analyze: None,
                }
            }
            Dialect::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    // sqlx pings each connection it hands out (a round trip
                    // to the server before every statement) and again when
                    // it takes it back. The ping on return stays; on
                    // acquire, only a connection idle for a while is
                    // pinged, since a connection that answered its return
                    // ping moments ago is almost surely alive (`PING_IF_IDLE`).
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_IF_IDLE {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect(url)
                    .await?;
                Self::migrate(&pool, dialect).await?;
                let pool = Pool::Any(pool);
                let analyze = Some(std::sync::Arc::new(growth_analyze::GrowthAnalyze::new(growth_analyze::FIRST)));
                Self { read: pool.clone(), write: pool, dialect, max_attempts, group: None, empty: None, analyze }
            }
        };
        Ok(store)
    }

    /// A write that may make an item pending (claimable) ran: claims stop
    /// trusting the queues they found empty before it.
    pub(super) fn may_have_pending(&self) {
        if let Some(empty) = &self.empty {
            empty.may_have_pending();
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Begins a request's write transaction. On SQLite its batch takes the
    /// write lock at once (`BEGIN IMMEDIATE`): a deferred transaction that
    /// read first could not wait for the lock when another process
    /// (`liftoff entity`) writes.
    pub(super) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(match &self.group {
            Some(group) => WriteTx::Group(group.begin().await?),
            None => match &self.write {
                Pool::Lite(pool) => {
                    let mut conn = pool.acquire().await?;
                    conn.lite().batch("BEGIN IMMEDIATE")?;
                    WriteTx::Own(Conn::Lite(conn))
                }
                Pool::Any(pool) => WriteTx::Own(Conn::AnyTx(pool.begin().await?)),
            },
        })
    }

    /// ` FOR UPDATE` on PostgreSQL; SQLite locks the whole database instead.
    pub(super) fn for_update(&self, skip_locked: bool) -> &'static str {
        match (self.dialect, skip_locked) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, false) => " FOR UPDATE",
            (Dialect::Postgres, true) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The database's clock in milliseconds since the epoch, as an SQL
    /// expression. Lease deadlines use it, so that servers whose clocks
    /// disagree still agree on when a lease ends.
    pub(super) fn now_sql(&self) -> &'static str {
        now_sql(self.dialect)
    }
}

/// [`SqlStore::now_sql`] of `dialect`.
fn now_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// An sqlx pool of one connection to the SQLite database at `url`, for the
/// migrations (`migrations.rs`), which run once, at start.
async fn sqlite_migrator(url: &str) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// The URL with any password replaced, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:<redacted>{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(super) fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt { what, detail: detail.to_string() }
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
