//! Schema versions: a database made before versioning (by the first
//! release's DDL, kept here as a fixture) is adopted and upgraded with its
//! rows; a database from a newer liftoff is refused. On SQLite and on
//! PostgreSQL (`LIFTOFF_TEST_POSTGRES_URL`; under `CI` a missing server fails).

use liftoff_store::{SqlStore, Store, StoreError};

/// The tables as the first release created them (before `stage`, `resumes`
/// and the chunks' `fence` and `bytes` were added, and before versioning).
fn first_release_ddl(seq_column: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE items (
            {seq_column},
            id TEXT NOT NULL UNIQUE,
            run_id TEXT NOT NULL,
            entity TEXT NOT NULL,
            queue TEXT NOT NULL,
            state TEXT NOT NULL,
            priority BIGINT NOT NULL,
            sort_prio BIGINT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            fence BIGINT NOT NULL DEFAULT 0,
            spec TEXT NOT NULL,
            agent_id TEXT,
            exit_code BIGINT,
            reason TEXT,
            created_at BIGINT NOT NULL,
            lease_expires_at BIGINT,
            started_at BIGINT,
            ended_at BIGINT,
            log_archived BIGINT NOT NULL DEFAULT 0,
            UNIQUE (entity, run_id)
        )"
        ),
        "CREATE INDEX items_pending ON items (entity, queue, state, sort_prio, seq)".into(),
        "CREATE TABLE entities (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL)".into(),
        "CREATE TABLE log_chunks (
            item_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            stream TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (item_id, seq)
        )"
        .into(),
        "CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            entity TEXT NOT NULL,
            queues TEXT NOT NULL,
            hostname TEXT NOT NULL,
            max_jobs BIGINT NOT NULL,
            status TEXT NOT NULL,
            stop_polling BIGINT NOT NULL DEFAULT 0,
            heartbeat_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL
        )"
        .into(),
        "INSERT INTO items (id, run_id, entity, queue, state, priority, sort_prio, spec, created_at) \
         VALUES ('i1', 'r1', 'acme', 'q', 'finished', 2, 2, \
         '{\"job\": \"acme/p/j:v1\", \"project\": \"p\", \"source\": {\"type\": \"image\", \"image\": \"busybox\"}, \
         \"entrypoint\": [], \"args\": [], \"run_config\": {}, \"resource\": \"local-process\", \"resource_config\": {}}', 1)"
            .into(),
        "INSERT INTO log_chunks (item_id, seq, stream, data) VALUES ('i1', 0, 'stdout', 'old\n')".into(),
        "INSERT INTO agents (id, entity, queues, hostname, max_jobs, status, heartbeat_at, created_at) \
         VALUES ('a1', 'acme', '[\"q\"]', 'old-host', 1, 'stopped', 1, 1)"
            .into(),
    ]
}

async fn execute_all(url: &str, statements: &[String]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.clone())).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

async fn versions(url: &str) -> Vec<i64> {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let v =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version").fetch_all(&pool).await.unwrap();
    pool.close().await;
    v
}

async fn first_release_database_is_upgraded(url: &str, seq_column: &str) {
    execute_all(url, &first_release_ddl(seq_column)).await;
    let store = SqlStore::connect(url, 3).await.unwrap();
    let item = store.get_item("acme", "r1").await.unwrap().expect("the old row, found by its run id");
    assert_eq!((item.id.as_str(), item.resumes, item.stage), ("i1", 0, None));
    assert_eq!(store.get_item("acme", "i1").await.unwrap().map(|i| i.run_id), Some("r1".into()));
    assert_eq!(item.spec.file_overrides, serde_json::json!({}), "old specs read with the new defaults");
    let log = store.read_log("acme", "i1", 0, 10).await.unwrap();
    assert_eq!(log.iter().map(|c| c.data.as_str()).collect::<Vec<_>>(), ["old\n"]);
    let position = store.log_position("acme", "i1", 0).await.unwrap();
    assert_eq!((position.next_seq, position.stdout_bytes), (1, 0), "old chunks have no recorded size");
    // the tables the first release lacked exist now
    assert!(store.ensure_entity("acme", 1).await.unwrap());
    assert_eq!(store.server_secret("s", "v").await.unwrap(), "v");
    // version 7's columns are unknown (NULL) for the rows from before
    assert_eq!((item.launched_by, item.launched_by_key), (None, None));
    let agent = store.get_agent("acme", "a1").await.unwrap().expect("the old agent row");
    assert_eq!((agent.hostname.as_str(), agent.version), ("old-host", None));
    let by_launcher = store.queue_page("acme", "q", &Default::default(), None, 10).await.unwrap();
    assert_eq!(by_launcher.items.len(), 1, "the old row is on its queue's page");
    assert!(store.list_saved_filters("acme", "q").await.unwrap().is_empty());
    assert_eq!(versions(url).await, [1, 2, 3, 4, 5, 6, 7, 8]);
    drop(store);
    // a second start finds nothing to do
    SqlStore::connect(url, 3).await.unwrap();
    assert_eq!(versions(url).await, [1, 2, 3, 4, 5, 6, 7, 8]);
}

async fn newer_database_is_refused(url: &str) {
    drop(SqlStore::connect(url, 3).await.unwrap());
    execute_all(
        url,
        &["INSERT INTO schema_migrations (version, description, applied_at) VALUES (9, 'from the future', 0)".into()],
    )
    .await;
    let err = SqlStore::connect(url, 3).await.err().expect("a newer database is refused");
    assert!(matches!(err, StoreError::SchemaTooNew { database: 9, known: 8 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "database schema version 9 is newer than this liftoff (knows up to 8): upgrade liftoff"
    );
    assert_eq!(versions(url).await, [1, 2, 3, 4, 5, 6, 7, 8, 9], "nothing was changed");
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display())
}

#[tokio::test]
async fn sqlite_first_release_database_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    first_release_database_is_upgraded(&sqlite_url(&dir), "seq INTEGER PRIMARY KEY AUTOINCREMENT").await;
}

#[tokio::test]
async fn sqlite_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    newer_database_is_refused(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_first_release_database_is_upgraded() {
    let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_migration").await else { return };
    first_release_database_is_upgraded(&url, "seq BIGSERIAL PRIMARY KEY").await;
}

#[tokio::test]
async fn postgres_newer_database_is_refused() {
    let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_migration").await else { return };
    newer_database_is_refused(&url).await;
}
