//! The [`Store`] over SQL, one file per concept: `items` (rows and the one
//! guarded state transition), `claims` (claims and leases), `logs`, `jobs`,
//! `queues`, `agents_keys`, `migrations`; `store_impl` maps the trait onto them.

mod agents_keys;
mod claims;
mod items;
mod jobs;
mod logs;
mod migrations;
mod queues;
mod store_impl;

use crate::StoreError;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// Which SQL database backs a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The [`Store`] over sqlx's `Any` driver. Placeholders are written `$N`,
/// which both SQLite and PostgreSQL accept; the few dialect differences
/// (row locks, the sequence column) are spelled out where they occur.
///
/// On SQLite the pool holds one connection: SQLite serialises writers
/// anyway, and one connection avoids `SQLITE_BUSY` on lock upgrades.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Lease expiries an item may suffer before it fails.
    max_attempts: u32,
}

impl SqlStore {
    /// Opens (creating if needed) the database at `url`: `sqlite://PATH` or `postgres://...`.
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
        let pool = match dialect {
            Dialect::Sqlite => {
                let url = if url.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = NORMAL",
                                "PRAGMA busy_timeout = 5000",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => AnyPoolOptions::new().max_connections(16).connect(url).await?,
        };
        let store = Self { pool, dialect, max_attempts: max_attempts.max(1) };
        store.migrate().await?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// ` FOR UPDATE` on PostgreSQL; SQLite locks the whole database instead.
    pub(super) fn for_update(&self, skip_locked: bool) -> &'static str {
        match (self.dialect, skip_locked) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, false) => " FOR UPDATE",
            (Dialect::Postgres, true) => " FOR UPDATE SKIP LOCKED",
        }
    }
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
