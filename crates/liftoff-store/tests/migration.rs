//! A database made by an older version gains the columns added since, and
//! keeps its rows.

use liftoff_store::{SqlStore, Store};

#[tokio::test]
async fn older_tables_gain_the_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}", path.display());
    {
        // the items table as the first release made it, with one finished row
        let store = SqlStore::connect(&url, 3).await.unwrap();
        drop(store);
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE items DROP COLUMN stage").execute(&pool).await.unwrap();
        sqlx::query("ALTER TABLE items DROP COLUMN resumes").execute(&pool).await.unwrap();
        sqlx::query("ALTER TABLE log_chunks DROP COLUMN fence").execute(&pool).await.unwrap();
        sqlx::query("ALTER TABLE log_chunks DROP COLUMN bytes").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO log_chunks (item_id, seq, stream, data) VALUES ('i1', 0, 'stdout', 'old\n')")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO items (id, run_id, entity, queue, state, priority, sort_prio, spec, created_at) \
             VALUES ('i1', 'r1', 'acme', 'q', 'finished', 2, 2, $1, 1)",
        )
        .bind(
            serde_json::json!({
                "job": "acme/p/j:v1", "project": "p", "source": {"type": "image", "image": "busybox"},
                "entrypoint": [], "args": [], "run_config": {}, "resource": "local-process", "resource_config": {}
            })
            .to_string(),
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqlStore::connect(&url, 3).await.unwrap();
    let item = store.get_item("acme", "r1").await.unwrap().expect("the old row is still there");
    assert_eq!((item.resumes, item.stage), (0, None));
    assert_eq!(item.spec.file_overrides, serde_json::json!({}), "old specs read with the new defaults");
    let log = store.read_log("acme", "i1", 0, 10).await.unwrap();
    assert_eq!(log.iter().map(|c| c.data.as_str()).collect::<Vec<_>>(), ["old\n"]);
    let position = store.log_position("acme", "i1", 0).await.unwrap();
    assert_eq!((position.next_seq, position.stdout_bytes), (1, 0), "old chunks have no recorded size");
}

/// The same on PostgreSQL, where the present columns are read from
/// `information_schema` rather than `pragma_table_info`.
#[tokio::test]
async fn older_postgres_tables_gain_the_new_columns() {
    let Some(url) = liftoff_store::testing::fresh_postgres_database("liftoff_migration").await else { return };
    let store = SqlStore::connect(&url, 3).await.unwrap();
    drop(store);
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for ddl in [
        "ALTER TABLE items DROP COLUMN stage",
        "ALTER TABLE items DROP COLUMN resumes",
        "ALTER TABLE log_chunks DROP COLUMN fence",
        "ALTER TABLE log_chunks DROP COLUMN bytes",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::connect(&url, 3).await.unwrap();
    // the columns are back: a query naming them works
    let position = store.log_position("acme", "none", 0).await;
    assert!(matches!(position, Err(liftoff_store::StoreError::NotFound(_))), "{position:?}");
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
         AND CAST(table_name AS TEXT) IN ('items', 'log_chunks') \
         AND CAST(column_name AS TEXT) IN ('stage', 'resumes', 'fence', 'bytes')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 5, "items: stage, resumes, fence (never dropped); log_chunks: fence, bytes");
}
