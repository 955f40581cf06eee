//! Support for tests in this and other crates: a fresh database on the test
//! PostgreSQL server named by `LIFTOFF_TEST_POSTGRES_URL`.

/// URL of a new, empty database on the test server. `None` (the caller skips)
/// only outside CI: under `CI` a missing server fails the test.
pub async fn fresh_postgres_database(prefix: &str) -> Option<String> {
    let Ok(admin) = std::env::var("LIFTOFF_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but LIFTOFF_TEST_POSTGRES_URL is not: PostgreSQL is missing (scripts/test.sh starts it)"
        );
        eprintln!("skipping: LIFTOFF_TEST_POSTGRES_URL is not set (scripts/test.sh starts PostgreSQL)");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create a test database");
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).expect("LIFTOFF_TEST_POSTGRES_URL ends in /DATABASE");
    Some(format!("{base}/{name}"))
}
