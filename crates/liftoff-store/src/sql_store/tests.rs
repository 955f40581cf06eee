//! The SQLite connection settings, which the contract cannot see.

use super::SqlStore;
use sqlx::Row;

#[tokio::test]
async fn sqlite_writes_sync_every_commit_and_reads_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqlStore::connect(&url, 3).await.unwrap();
    async fn pragma(pool: &sqlx::AnyPool, name: &str) -> i64 {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}"))).fetch_one(pool).await.unwrap();
        row.try_get::<i64, _>(0).unwrap()
    }
    assert_eq!(pragma(&store.write, "synchronous").await, 2, "FULL: a committed claim survives power loss");
    assert_eq!(pragma(&store.write, "query_only").await, 0);
    assert_eq!(pragma(&store.read, "query_only").await, 1);
    let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&store.read).await.unwrap().try_get(0).unwrap();
    assert_eq!(mode, "wal", "readers read beside the writer");
    let write = sqlx::query("INSERT INTO entities (name, created_at) VALUES ('x', 1)").execute(&store.read).await;
    assert!(write.is_err(), "a read connection refuses writes");
    // a write transaction holds the write lock from its start
    let mut tx = store.begin_write().await.unwrap();
    let mut other = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("PRAGMA busy_timeout = 0").execute(&mut other).await.unwrap();
    let blocked = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await;
    assert!(blocked.is_err(), "BEGIN IMMEDIATE took the lock at once");
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
}
