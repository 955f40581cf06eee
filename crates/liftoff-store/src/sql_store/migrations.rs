//! Creating and upgrading the schema: numbered migrations, recorded in
//! `schema_migrations`, applied in one transaction on start.
//!
//! Hand-rolled rather than sqlx's `Migrator`: the dialects need different
//! DDL (two file trees), databases made before versioning must be adopted
//! by probing their columns, and a newer database must be refused with a
//! message an operator can act on before anything is touched.

use super::{Dialect, SqlStore};
use crate::{StoreError, schema};
use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

/// One schema change. Versions are dense and never change once released.
struct Migration {
    version: i64,
    description: &'static str,
    statements: fn(Dialect) -> Vec<String>,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "the schema as of the first versioned release", statements: version_1 },
    Migration {
        version: 2,
        description: "item ids and run ids share one namespace per entity",
        statements: |_| {
            [
                "CREATE TABLE item_names (
                    entity TEXT NOT NULL,
                    name TEXT NOT NULL,
                    item_id TEXT NOT NULL,
                    PRIMARY KEY (entity, name)
                )",
                // Item ids first: where older data has a run id equal to
                // another item's id, the exact id keeps the name.
                "INSERT INTO item_names (entity, name, item_id) SELECT entity, id, id FROM items WHERE true \
                 ON CONFLICT (entity, name) DO NOTHING",
                "INSERT INTO item_names (entity, name, item_id) SELECT entity, run_id, id FROM items WHERE true \
                 ON CONFLICT (entity, name) DO NOTHING",
            ]
            .map(String::from)
            .to_vec()
        },
    },
    Migration {
        version: 3,
        description: "log archiving is claimed by one server at a time",
        // the database-clock deadline of the archiver's claim; also its token
        statements: |_| vec!["ALTER TABLE items ADD COLUMN log_archiving_until BIGINT".into()],
    },
    Migration {
        version: 4,
        description: "build claims (one build per image content) and the run's build record",
        statements: |_| {
            vec![
                "CREATE TABLE build_claims (
                    entity TEXT NOT NULL,
                    build_key TEXT NOT NULL,
                    holder TEXT NOT NULL,
                    fence BIGINT NOT NULL,
                    state TEXT NOT NULL,
                    image TEXT,
                    lease_until BIGINT NOT NULL,
                    PRIMARY KEY (entity, build_key)
                )"
                .into(),
                "ALTER TABLE items ADD COLUMN build TEXT".into(),
            ]
        },
    },
    Migration {
        version: 5,
        description: "every state change of an item, with its time and cause",
        statements: |dialect| {
            let id = match dialect {
                Dialect::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT",
                Dialect::Postgres => "id BIGSERIAL PRIMARY KEY",
            };
            vec![
                format!(
                    "CREATE TABLE item_transitions (
                    {id},
                    item_id TEXT NOT NULL,
                    seq BIGINT NOT NULL,
                    entity TEXT NOT NULL,
                    queue TEXT NOT NULL,
                    run_id TEXT NOT NULL,
                    queue_seq BIGINT,
                    at BIGINT NOT NULL,
                    event TEXT NOT NULL,
                    from_state TEXT,
                    to_state TEXT NOT NULL,
                    cause TEXT NOT NULL,
                    agent_id TEXT,
                    fence BIGINT,
                    reason TEXT,
                    exit_code BIGINT,
                    stage TEXT,
                    log_seq BIGINT NOT NULL,
                    UNIQUE (item_id, seq)
                )"
                ),
                "CREATE INDEX item_transitions_queue ON item_transitions (entity, queue, queue_seq)".into(),
                "CREATE INDEX item_transitions_unnumbered ON item_transitions (entity, queue, id) \
                 WHERE queue_seq IS NULL"
                    .into(),
                // the queue's last `queue_seq`
                "ALTER TABLE queues ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0".into(),
            ]
        },
    },
    Migration {
        version: 6,
        description: "a queue's items newest first, for the web UI's keyset-paged queue page",
        // by state, agent and job too, so that a filter matching few items
        // reads only those; the job is an expression over the spec's JSON,
        // written exactly as `queue_page` queries it
        statements: |dialect| {
            let job = super::queue_page::job_expr(dialect);
            vec![
                "CREATE INDEX items_queue_seq ON items (entity, queue, seq)".into(),
                "CREATE INDEX items_queue_state_seq ON items (entity, queue, state, seq)".into(),
                "CREATE INDEX items_queue_agent_seq ON items (entity, queue, agent_id, seq)".into(),
                format!("CREATE INDEX items_queue_job_seq ON items (entity, queue, {job}, seq)"),
            ]
        },
    },
    Migration {
        version: 7,
        description: "who launched each item, key names, agent versions and the queue page's saved filters",
        // Rows from before keep NULL: their launcher and version are unknown.
        // The launcher indexes serve the queue page's and the item list's
        // launcher filters, keyset-paged by `seq` like the others.
        statements: |_| {
            [
                "ALTER TABLE items ADD COLUMN launched_by TEXT",
                "ALTER TABLE items ADD COLUMN launched_by_key TEXT",
                "CREATE INDEX items_queue_launcher_seq ON items (entity, queue, launched_by, seq)",
                "CREATE INDEX items_launcher_seq ON items (entity, launched_by, seq)",
                "ALTER TABLE api_keys ADD COLUMN name TEXT",
                "ALTER TABLE agents ADD COLUMN version TEXT",
                "CREATE TABLE saved_filters (
                    entity TEXT NOT NULL,
                    queue TEXT NOT NULL,
                    name TEXT NOT NULL,
                    query TEXT NOT NULL,
                    created_at BIGINT NOT NULL,
                    PRIMARY KEY (entity, queue, name)
                )",
            ]
            .map(String::from)
            .to_vec()
        },
    },
    Migration {
        version: 8,
        description: "the queue page's launch-time filters find their span of a queue by launch time",
        // With (created_at, seq) the bounds of a launch-time window's `seq`
        // span are read from this index alone; the page then walks only that
        // span (see `queue_page`).
        statements: |_| {
            vec!["CREATE INDEX items_queue_created_seq ON items (entity, queue, created_at, seq)".to_string()]
        },
    },
];

/// The highest schema version this build knows.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn version_1(dialect: Dialect) -> Vec<String> {
    let items = schema::items_table(match dialect {
        Dialect::Sqlite => schema::SQLITE_SEQ,
        Dialect::Postgres => schema::POSTGRES_SEQ,
    });
    std::iter::once(items).chain(schema::COMMON.iter().map(|s| s.to_string())).collect()
}

/// PostgreSQL advisory lock key serialising the migrations of servers that start together.
const MIGRATION_LOCK: i64 = 7434001;

impl SqlStore {
    /// Brings the schema of the database behind `pool` up to date (through
    /// sqlx on both databases: this runs once, at start).
    pub(super) async fn migrate(pool: &sqlx::AnyPool, dialect: Dialect) -> Result<(), StoreError> {
        let mut conn = pool.acquire().await?;
        if dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
        }
        let result = Self::migrate_locked(&mut conn, dialect).await;
        if dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
        }
        result
    }

    async fn migrate_locked(conn: &mut AnyConnection, dialect: Dialect) -> Result<(), StoreError> {
        let mut tx = match dialect {
            Dialect::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => conn.begin().await?,
        };
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .execute(&mut *tx)
        .await?;
        let current: i64 = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS v FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        let known = latest_version();
        if current > known {
            return Err(StoreError::SchemaTooNew { database: current, known });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            for ddl in (m.statements)(dialect) {
                sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
            }
            if m.version == 1 {
                Self::adopt_unversioned(&mut tx, dialect).await?;
            }
            let record = format!(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, {})",
                super::now_sql(dialect)
            );
            sqlx::query(AssertSqlSafe(record)).bind(m.version).bind(m.description).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A database made before schema versions existed has the version 1
    /// tables (`CREATE TABLE IF NOT EXISTS` left them alone), but perhaps
    /// without the columns that were added to them before versioning began.
    async fn adopt_unversioned(conn: &mut AnyConnection, dialect: Dialect) -> Result<(), StoreError> {
        // Frozen: every later column is a numbered migration.
        const PRE_VERSIONING_COLUMNS: &[(&str, &str, &str)] = &[
            ("items", "stage", "stage TEXT"),
            ("items", "resumes", "resumes BIGINT NOT NULL DEFAULT 0"),
            ("log_chunks", "fence", "fence BIGINT NOT NULL DEFAULT 0"),
            ("log_chunks", "bytes", "bytes BIGINT NOT NULL DEFAULT 0"),
        ];
        let probe = match dialect {
            Dialect::Sqlite => "SELECT COUNT(*) AS n FROM pragma_table_info($1) WHERE name = $2",
            Dialect::Postgres => {
                "SELECT COUNT(*) AS n FROM information_schema.columns \
                 WHERE table_name = $1 AND CAST(column_name AS TEXT) = $2 AND table_schema = current_schema()"
            }
        };
        for (table, name, definition) in PRE_VERSIONING_COLUMNS {
            let row = sqlx::query(probe).bind(*table).bind(*name).fetch_one(&mut *conn).await?;
            if row.try_get::<i64, _>("n")? == 0 {
                let ddl = format!("ALTER TABLE {table} ADD COLUMN {definition}");
                sqlx::query(AssertSqlSafe(ddl)).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}
