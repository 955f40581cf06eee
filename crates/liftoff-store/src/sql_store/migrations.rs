//! Creating and upgrading the schema.

use super::{Dialect, SqlStore};
use crate::{StoreError, schema};
use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Row};

impl SqlStore {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let items = schema::items_table(match self.dialect {
            Dialect::Sqlite => schema::SQLITE_SEQ,
            Dialect::Postgres => schema::POSTGRES_SEQ,
        });
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            // Serialise concurrent first starts of several servers.
            sqlx::query("SELECT pg_advisory_lock(7434001)").execute(&mut *conn).await?;
        }
        let mut result = Ok(());
        for ddl in std::iter::once(items.as_str()).chain(schema::COMMON.iter().copied()) {
            if let Err(e) = sqlx::query(AssertSqlSafe(ddl)).execute(&mut *conn).await {
                result = Err(e.into());
                break;
            }
        }
        if result.is_ok() {
            result = self.add_missing_columns(&mut conn).await;
        }
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7434001)").execute(&mut *conn).await?;
        }
        result
    }

    /// Brings tables made by an older version up to date.
    pub(super) async fn add_missing_columns(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        for (table, name, definition) in schema::ADDED_COLUMNS {
            let sql = match self.dialect {
                Dialect::Sqlite => "SELECT COUNT(*) AS n FROM pragma_table_info($1) WHERE name = $2",
                Dialect::Postgres => {
                    "SELECT COUNT(*) AS n FROM information_schema.columns \
                     WHERE table_name = $1 AND CAST(column_name AS TEXT) = $2 AND table_schema = current_schema()"
                }
            };
            let row = sqlx::query(sql).bind(*table).bind(*name).fetch_one(&mut *conn).await?;
            if row.try_get::<i64, _>("n")? == 0 {
                let ddl = format!("ALTER TABLE {table} ADD COLUMN {definition}");
                sqlx::query(AssertSqlSafe(ddl)).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}
