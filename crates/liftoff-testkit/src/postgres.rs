//! A fresh database on the test PostgreSQL server named by
//! `LIFTOFF_TEST_POSTGRES_URL` (`.ci/postgres.sh` starts it).

/// URL of a new, empty database on the test server, or `None` after
/// [`crate::skip`] (under CI a missing server fails the test).
#[track_caller]
pub fn fresh_postgres_database(prefix: &str) -> impl Future<Output = Option<String>> + use<> {
    // the skip is decided here, synchronously, so that #[track_caller] names the test's line
    let admin = crate::required_env("LIFTOFF_TEST_POSTGRES_URL");
    let prefix = prefix.to_string();
    async move {
        let admin = admin?;
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
}
