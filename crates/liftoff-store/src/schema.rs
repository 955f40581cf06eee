//! The tables as schema version 1 (the first versioned release) made them.
//! The dialects differ only in the auto-incrementing FIFO sequence column
//! of `items`. Later changes are migrations in `sql_store/migrations.rs`.

/// The `items` table; only its FIFO sequence column differs by dialect.
pub(crate) fn items_table(seq_column: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS items (
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
        stage TEXT,
        resumes BIGINT NOT NULL DEFAULT 0,
        UNIQUE (entity, run_id)
    )"
    )
}

pub(crate) const SQLITE_SEQ: &str = "seq INTEGER PRIMARY KEY AUTOINCREMENT";
pub(crate) const POSTGRES_SEQ: &str = "seq BIGSERIAL PRIMARY KEY";

/// Tables whose definitions read the same in both dialects.
pub(crate) const COMMON: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS items_pending ON items (entity, queue, state, sort_prio, seq)",
    "CREATE INDEX IF NOT EXISTS items_leases ON items (state, lease_expires_at)",
    "CREATE INDEX IF NOT EXISTS items_log_open ON items (log_archived, state)",
    "CREATE TABLE IF NOT EXISTS entities (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        entity TEXT NOT NULL,
        role TEXT NOT NULL,
        item_id TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS queues (
        entity TEXT NOT NULL,
        name TEXT NOT NULL,
        resource TEXT NOT NULL,
        config TEXT NOT NULL,
        template_variables TEXT NOT NULL,
        prioritization BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (entity, name)
    )",
    "CREATE TABLE IF NOT EXISTS blobs (
        entity TEXT NOT NULL,
        digest TEXT NOT NULL,
        size BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (entity, digest)
    )",
    "CREATE TABLE IF NOT EXISTS jobs (
        entity TEXT NOT NULL,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        source TEXT NOT NULL,
        runtime TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (entity, project, name, version)
    )",
    "CREATE TABLE IF NOT EXISTS job_aliases (
        entity TEXT NOT NULL,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (entity, project, name, alias)
    )",
    "CREATE TABLE IF NOT EXISTS log_chunks (
        item_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        stream TEXT NOT NULL,
        data TEXT NOT NULL,
        fence BIGINT NOT NULL DEFAULT 0,
        bytes BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (item_id, seq)
    )",
    "CREATE TABLE IF NOT EXISTS server_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS item_warnings (
        item_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (item_id, stage, message)
    )",
    "CREATE TABLE IF NOT EXISTS agents (
        id TEXT PRIMARY KEY,
        entity TEXT NOT NULL,
        queues TEXT NOT NULL,
        hostname TEXT NOT NULL,
        max_jobs BIGINT NOT NULL,
        status TEXT NOT NULL,
        stop_polling BIGINT NOT NULL DEFAULT 0,
        heartbeat_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
];
