//! The SQLite connection settings, which the contract cannot see.

use super::SqlStore;
use super::db::{Pool, query};

#[tokio::test]
async fn sqlite_writes_sync_every_commit_and_reads_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqlStore::connect(&url, 3).await.unwrap();
    async fn pragma(pool: &Pool, name: &str) -> i64 {
        let row = query(format!("PRAGMA {name}")).fetch_one(pool).await.unwrap();
        row.try_get::<i64, _>(0).unwrap()
    }
    assert_eq!(pragma(&store.write, "synchronous").await, 2, "FULL: a committed claim survives power loss");
    assert_eq!(pragma(&store.write, "query_only").await, 0);
    assert_eq!(pragma(&store.read, "query_only").await, 1);
    let mode: String = query("PRAGMA journal_mode").fetch_one(&store.read).await.unwrap().try_get(0).unwrap();
    assert_eq!(mode, "wal", "readers read beside the writer");
    let write = query("INSERT INTO entities (name, created_at) VALUES ('x', 1)").execute(&store.read).await;
    assert!(write.is_err(), "a read connection refuses writes");
    // a write transaction holds the write lock from its start
    let mut tx = store.begin_write().await.unwrap();
    let mut other = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("PRAGMA busy_timeout = 0").execute(&mut other).await.unwrap();
    let blocked = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await;
    assert!(blocked.is_err(), "BEGIN IMMEDIATE took the lock at once");
    query("SELECT 1").execute(&mut *tx).await.unwrap();
    drop(tx);
}

/// Requests that wait for the writer while another writes share its
/// commit, and are answered after it; one that fails or is dropped is
/// undone alone, and the others' writes are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requests_waiting_for_the_writer_share_one_commit_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqlStore::connect(&url, 3).await.unwrap();
    let group = store.group.clone().expect("SQLite commits in groups");
    let insert = |name: &'static str| format!("INSERT INTO entities (name, created_at) VALUES ('{name}', 1)");
    let names = || async {
        let rows = query("SELECT name FROM entities WHERE name LIKE 'g-%' ORDER BY name").fetch_all(&store.read).await;
        rows.unwrap().iter().map(|r| r.try_get::<String, _>(0).unwrap()).collect::<Vec<_>>()
    };
    let before = group.commits();

    // `first` holds the writer while three more requests queue for it
    let mut first = store.begin_write().await.unwrap();
    query(insert("g-a")).execute(&mut *first).await.unwrap();
    let queued = |name: &'static str, keep: bool| {
        let (store, sql) = (store.clone(), insert(name));
        tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            query(sql).execute(&mut *tx).await.unwrap();
            if keep {
                tx.commit().await.map(|()| true)
            } else {
                Ok(false) // dropped: its insert is undone
            }
        })
    };
    let (b, c, d) = (queued("g-b", false), queued("g-c", true), queued("g-d", true));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while group.waiting() < 3 {
        assert!(std::time::Instant::now() < until, "the three requests never queued for the writer");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(names().await.is_empty(), "nothing is visible before the commit");
    first.commit().await.unwrap();
    for (task, kept) in [(b, false), (c, true), (d, true)] {
        assert_eq!(task.await.unwrap().unwrap(), kept);
    }
    assert_eq!(names().await, ["g-a", "g-c", "g-d"], "the dropped request's insert alone is undone");
    assert_eq!(group.commits() - before, 1, "four requests, one commit");

    // the batch's first request (which runs without a savepoint) dropped
    // while two wait behind it: its writes go, theirs are kept
    let mut opener = store.begin_write().await.unwrap();
    query(insert("g-x")).execute(&mut *opener).await.unwrap();
    let (y, z) = (queued("g-y", true), queued("g-z", true));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while group.waiting() < 2 {
        assert!(std::time::Instant::now() < until, "the two requests never queued for the writer");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(opener);
    assert!(y.await.unwrap().unwrap() && z.await.unwrap().unwrap());
    assert_eq!(names().await, ["g-a", "g-c", "g-d", "g-y", "g-z"], "the dropped opener's insert alone is undone");

    // a request whose statement fails is undone alone too, and a lone request commits at once
    let mut dup = store.begin_write().await.unwrap();
    query("INSERT INTO entities (name, created_at) VALUES ('g-e', 1)").execute(&mut *dup).await.unwrap();
    assert!(query(insert("g-a")).execute(&mut *dup).await.is_err(), "a duplicate");
    drop(dup);
    let mut lone = store.begin_write().await.unwrap();
    query(insert("g-f")).execute(&mut *lone).await.unwrap();
    lone.commit().await.unwrap();
    assert_eq!(names().await, ["g-a", "g-c", "g-d", "g-f", "g-y", "g-z"]);
}

/// Requests cancelled at any point (their callers went away: a claim's
/// HTTP client disconnecting drops its handler) leave the writer usable:
/// the next request begins and commits, and a plain write on the writer
/// pool, which needs the connection an open batch holds, goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_requests_cancelled_anywhere_leave_the_writer_usable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = SqlStore::connect(&url, 3).await.unwrap();
    let bound = std::time::Duration::from_secs(10);
    for n in 0..40u64 {
        // cut while beginning, after a few polls of it
        let cut = std::time::Duration::from_micros(n * 53 % 400);
        let _ = tokio::time::timeout(cut, store.begin_write()).await;
        // cut while committing
        let mut tx = tokio::time::timeout(bound, store.begin_write()).await.expect("begins").unwrap();
        let sql = format!("INSERT INTO entities (name, created_at) VALUES ('c-{n}', 1)");
        query(sql).execute(&mut *tx).await.unwrap();
        let _ = tokio::time::timeout(cut, tx.commit()).await;
        // the writer still works, for requests and for plain writes
        let mut next = tokio::time::timeout(bound, store.begin_write())
            .await
            .unwrap_or_else(|_| panic!("round {n}: no request could begin"))
            .unwrap_or_else(|e| panic!("round {n}: the next request could not begin: {e}"));
        let sql = format!("INSERT INTO entities (name, created_at) VALUES ('d-{n}', 1)");
        query(sql).execute(&mut *next).await.unwrap();
        tokio::time::timeout(bound, next.commit()).await.expect("commits in time").unwrap();
        let plain = format!("INSERT INTO entities (name, created_at) VALUES ('plain-{n}', 1)");
        let done = tokio::time::timeout(bound, query(plain).execute(&store.write)).await;
        assert!(done.is_ok_and(|r| r.is_ok()), "round {n}: the writer stayed taken after the cancelled requests");
    }
}

/// URLs the store cannot serve are refused, naming the field: another
/// database, and an in-memory SQLite, which each connection would open
/// afresh (its writes unseen by the readers).
#[tokio::test]
async fn database_urls_that_cannot_work_are_refused_by_name() {
    for url in ["sqlite::memory:", "sqlite://file?mode=memory", "mysql://u@h/db"] {
        match SqlStore::connect(url, 3).await {
            Err(crate::StoreError::Invalid { field, message }) => {
                assert_eq!(field, "db", "{url}: {message}");
            }
            Err(other) => panic!("{url}: refused, but not by name: {other}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }
}
