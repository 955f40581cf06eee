use crate::{ApiKeyRecord, Claimed, KeyRole, NewItem, NewJobVersion, Store, StoreError, schema};
use async_trait::async_trait;
use liftoff_core::api::{
    AgentStatus, AgentView, ItemView, ItemWarning, JobView, LaunchSpec, LogChunk, LogPosition, LogStream, RegisterAgent,
};
use liftoff_core::{Item, ItemEvent, ItemState, Priority, Queue, ResourceType, Stage};
use sqlx::AnyConnection;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use std::str::FromStr;

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

const ITEM_COLS: &str = "id, run_id, entity, queue, state, priority, attempts, fence, spec, agent_id, exit_code, reason, \
     created_at, lease_expires_at, started_at, ended_at, log_archived, stage, resumes";

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

    async fn migrate(&self) -> Result<(), StoreError> {
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
    async fn add_missing_columns(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
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

    /// ` FOR UPDATE` on PostgreSQL; SQLite locks the whole database instead.
    fn for_update(&self, skip_locked: bool) -> &'static str {
        match (self.dialect, skip_locked) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, false) => " FOR UPDATE",
            (Dialect::Postgres, true) => " FOR UPDATE SKIP LOCKED",
        }
    }

    async fn load_item(
        &self,
        conn: &mut AnyConnection,
        entity: &str,
        id: &str,
        lock: bool,
    ) -> Result<ItemView, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLS} FROM items WHERE entity = $1 AND (id = $2 OR run_id = $2){}",
            if lock { self.for_update(false) } else { "" }
        );
        let row = sqlx::query(AssertSqlSafe(sql)).bind(entity).bind(id).fetch_optional(&mut *conn).await?;
        row.map(|r| decode_item(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("run-queue item '{id}'")))
    }

    /// The one place item rows change state: apply the event through the core
    /// state machine, then write it back only if nobody changed the row meanwhile.
    #[expect(clippy::too_many_arguments, reason = "each argument is a distinct part of one guarded write")]
    async fn transition(
        &self,
        conn: &mut AnyConnection,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
        claim: Option<(&str, i64)>,
    ) -> Result<ItemView, StoreError> {
        let view = self.load_item(conn, entity, id, true).await?;
        self.transition_loaded(conn, view, fence, event, now_ms, claim).await
    }

    /// [`Self::transition`] for a row the caller has just loaded (and locked).
    async fn transition_loaded(
        &self,
        conn: &mut AnyConnection,
        mut view: ItemView,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
        claim: Option<(&str, i64)>,
    ) -> Result<ItemView, StoreError> {
        if let Some(sent) = fence
            && sent != view.fence
        {
            return Err(StoreError::StaleFence { item: view.id, sent, current: view.fence });
        }
        let (old_state, old_fence) = (view.state, view.fence);
        let mut item = Item {
            state: view.state,
            attempts: view.attempts,
            fence: view.fence,
            exit_code: view.exit_code,
            reason: view.reason.clone(),
            stage: view.stage,
            resumes: view.resumes,
        };
        item.apply(event, self.max_attempts)?;
        view.state = item.state;
        view.attempts = item.attempts;
        view.fence = item.fence;
        view.exit_code = item.exit_code;
        view.reason = item.reason;
        view.stage = item.stage;
        view.resumes = item.resumes;
        match item.state {
            ItemState::Claimed => {
                let (agent, ttl) = claim.unwrap_or(("", 0));
                view.agent_id = Some(agent.to_string());
                view.lease_expires_at_ms = Some(now_ms + ttl);
            }
            ItemState::Running if old_state == ItemState::Claimed => view.started_at_ms = Some(now_ms),
            ItemState::Pending => {
                view.agent_id = None;
                view.lease_expires_at_ms = None;
            }
            s if s.is_terminal() => {
                view.lease_expires_at_ms = None;
                view.ended_at_ms = Some(now_ms);
            }
            _ => {}
        }
        let done = sqlx::query(
            "UPDATE items SET state = $1, attempts = $2, fence = $3, exit_code = $4, reason = $5, agent_id = $6, \
             lease_expires_at = $7, started_at = $8, ended_at = $9, stage = $10, resumes = $11 \
             WHERE id = $12 AND state = $13 AND fence = $14",
        )
        .bind(view.state.as_str())
        .bind(i64::from(view.attempts))
        .bind(view.fence)
        .bind(view.exit_code.map(i64::from))
        .bind(view.reason.clone())
        .bind(view.agent_id.clone())
        .bind(view.lease_expires_at_ms)
        .bind(view.started_at_ms)
        .bind(view.ended_at_ms)
        .bind(view.stage.map(|s| s.as_str()))
        .bind(i64::from(view.resumes))
        .bind(&view.id)
        .bind(old_state.as_str())
        .bind(old_fence)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("item '{}' changed concurrently; retry", view.id)));
        }
        Ok(view)
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

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt { what, detail: detail.to_string() }
}

fn decode_item(r: &AnyRow) -> Result<ItemView, StoreError> {
    let state: String = r.try_get("state")?;
    let spec: String = r.try_get("spec")?;
    let prio: i64 = r.try_get("priority")?;
    Ok(ItemView {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        entity: r.try_get("entity")?,
        queue: r.try_get("queue")?,
        state: ItemState::from_str(&state).map_err(|e| corrupt("item state", e))?,
        priority: Priority::from_rank(prio).ok_or_else(|| corrupt("item priority", prio))?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).map_err(|e| corrupt("item attempts", e))?,
        fence: r.try_get("fence")?,
        spec: serde_json::from_str::<LaunchSpec>(&spec).map_err(|e| corrupt("launch spec", e))?,
        agent_id: r.try_get("agent_id")?,
        exit_code: r.try_get::<Option<i64>, _>("exit_code")?.map(|c| c as i32),
        reason: r.try_get("reason")?,
        created_at_ms: r.try_get("created_at")?,
        lease_expires_at_ms: r.try_get("lease_expires_at")?,
        started_at_ms: r.try_get("started_at")?,
        ended_at_ms: r.try_get("ended_at")?,
        log_archived: r.try_get::<i64, _>("log_archived")? != 0,
        stage: r
            .try_get::<Option<String>, _>("stage")?
            .map(|s| Stage::from_str(&s).map_err(|e| corrupt("item stage", e)))
            .transpose()?,
        resumes: u32::try_from(r.try_get::<i64, _>("resumes")?).map_err(|e| corrupt("item resumes", e))?,
        warnings: Vec::new(),
    })
}

fn decode_api_key(r: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let role: String = r.try_get("role")?;
    let role = match role.as_str() {
        "run" => KeyRole::Run {
            item_id: r
                .try_get::<Option<String>, _>("item_id")?
                .ok_or_else(|| corrupt("api key", "run key without item"))?,
        },
        other => KeyRole::parse_stored(other).ok_or_else(|| corrupt("api key role", other))?,
    };
    Ok(ApiKeyRecord {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        entity: r.try_get("entity")?,
        role,
        created_at_ms: r.try_get("created_at")?,
        expires_at_ms: r.try_get("expires_at")?,
    })
}

fn decode_queue(r: &AnyRow) -> Result<Queue, StoreError> {
    let resource: String = r.try_get("resource")?;
    let config: String = r.try_get("config")?;
    let vars: String = r.try_get("template_variables")?;
    Ok(Queue {
        entity: r.try_get("entity")?,
        name: r.try_get("name")?,
        resource: ResourceType::from_str(&resource).map_err(|e| corrupt("queue resource", e))?,
        config: serde_json::from_str(&config).map_err(|e| corrupt("queue config", e))?,
        template_variables: serde_json::from_str(&vars).map_err(|e| corrupt("queue template variables", e))?,
        prioritization: r.try_get::<i64, _>("prioritization")? != 0,
        created_at_ms: r.try_get("created_at")?,
    })
}

fn decode_agent(r: &AnyRow) -> Result<AgentView, StoreError> {
    let queues: String = r.try_get("queues")?;
    let status: String = r.try_get("status")?;
    Ok(AgentView {
        id: r.try_get("id")?,
        entity: r.try_get("entity")?,
        queues: serde_json::from_str(&queues).map_err(|e| corrupt("agent queues", e))?,
        hostname: r.try_get("hostname")?,
        max_jobs: r.try_get("max_jobs")?,
        status: serde_json::from_value(serde_json::Value::String(status)).map_err(|e| corrupt("agent status", e))?,
        stop_polling: r.try_get::<i64, _>("stop_polling")? != 0,
        heartbeat_at_ms: r.try_get("heartbeat_at")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

fn status_str(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Polling => "polling",
        AgentStatus::Running => "running",
        AgentStatus::Stopped => "stopped",
    }
}

fn stream_str(s: LogStream) -> &'static str {
    match s {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Agent => "agent",
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl Store for SqlStore {
    async fn ensure_entity(&self, entity: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("INSERT INTO entities (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(entity)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn entity_exists(&self, entity: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT name FROM entities WHERE name = $1").bind(entity).fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let item = match &key.role {
            KeyRole::Run { item_id } => Some(item_id.clone()),
            _ => None,
        };
        let role = key.role.as_str();
        sqlx::query(
            "INSERT INTO api_keys (id, hash, entity, role, item_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.hash)
        .bind(&key.entity)
        .bind(role)
        .bind(item)
        .bind(key.created_at_ms)
        .bind(key.expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, hash, entity, role, item_id, created_at, expires_at FROM api_keys WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| decode_api_key(&r)).transpose()
    }

    async fn list_api_keys(&self, entity: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, hash, entity, role, item_id, created_at, expires_at FROM api_keys WHERE entity = $1 \
             ORDER BY created_at, id",
        )
        .bind(entity)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_api_key).collect()
    }

    async fn revoke_api_key(&self, entity: &str, id: &str) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, hash, entity, role, item_id, created_at, expires_at FROM api_keys WHERE entity = $1 AND id = $2{}",
            self.for_update(false)
        )))
        .bind(entity)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let key = row
            .map(|r| decode_api_key(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("API key '{id}'")))?;
        if key.role == KeyRole::Admin {
            // Count under the same lock order on PostgreSQL: lock all admin keys of the entity.
            let admins = sqlx::query(AssertSqlSafe(format!(
                "SELECT id FROM api_keys WHERE entity = $1 AND role = 'admin'{}",
                self.for_update(false)
            )))
            .bind(entity)
            .fetch_all(&mut *tx)
            .await?;
            if admins.len() <= 1 {
                return Err(StoreError::Invalid {
                    field: "id".into(),
                    message: format!(
                        "API key '{id}' is the last admin key of entity '{entity}'; create another admin key first"
                    ),
                });
            }
        }
        sqlx::query("DELETE FROM api_keys WHERE entity = $1 AND id = $2")
            .bind(entity)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn create_queue(&self, q: &Queue) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO queues (entity, name, resource, config, template_variables, prioritization, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&q.entity)
        .bind(&q.name)
        .bind(q.resource.as_str())
        .bind(q.config.to_string())
        .bind(serde_json::to_string(&q.template_variables).map_err(|e| corrupt("template variables", e))?)
        .bind(i64::from(q.prioritization))
        .bind(q.created_at_ms)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("queue '{}' already exists", q.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_queue(&self, entity: &str, name: &str) -> Result<Option<Queue>, StoreError> {
        let row = sqlx::query("SELECT * FROM queues WHERE entity = $1 AND name = $2")
            .bind(entity)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode_queue(&r)).transpose()
    }

    async fn list_queues(&self, entity: &str) -> Result<Vec<Queue>, StoreError> {
        let rows = sqlx::query("SELECT * FROM queues WHERE entity = $1 ORDER BY name")
            .bind(entity)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_queue).collect()
    }

    async fn add_blob(&self, entity: &str, digest: &str, size: u64, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO blobs (entity, digest, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (entity, digest) DO NOTHING",
        )
        .bind(entity)
        .bind(digest)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn has_blob(&self, entity: &str, digest: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT digest FROM blobs WHERE entity = $1 AND digest = $2")
            .bind(entity)
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn create_job_version(&self, job: &NewJobVersion<'_>) -> Result<JobView, StoreError> {
        let NewJobVersion { entity, project, name, source, runtime, aliases, now_ms } = *job;
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT version FROM jobs WHERE entity = $1 AND project = $2 AND name = $3 ORDER BY version DESC LIMIT 1{}",
            self.for_update(false)
        );
        let last: Option<i64> = sqlx::query(AssertSqlSafe(sql))
            .bind(entity)
            .bind(project)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("version"))
            .transpose()?;
        let version = last.unwrap_or(0) + 1;
        let res = sqlx::query(
            "INSERT INTO jobs (entity, project, name, version, source, runtime, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(entity)
        .bind(project)
        .bind(name)
        .bind(version)
        .bind(serde_json::to_string(source).map_err(|e| corrupt("job source", e))?)
        .bind(runtime.map(str::to_string))
        .bind(now_ms)
        .execute(&mut *tx)
        .await;
        if let Err(e) = res {
            return Err(if is_unique_violation(&e) {
                StoreError::Conflict(format!("job '{project}/{name}' was created concurrently; retry"))
            } else {
                e.into()
            });
        }
        let mut all: Vec<String> = vec!["latest".into(), format!("v{version}")];
        for a in aliases {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        for alias in &all {
            sqlx::query("DELETE FROM job_aliases WHERE entity = $1 AND project = $2 AND name = $3 AND alias = $4")
                .bind(entity)
                .bind(project)
                .bind(name)
                .bind(alias)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO job_aliases (entity, project, name, alias, version) VALUES ($1, $2, $3, $4, $5)")
                .bind(entity)
                .bind(project)
                .bind(name)
                .bind(alias)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.get_job(entity, project, name, &format!("v{version}"))
            .await?
            .ok_or_else(|| corrupt("job", "version vanished after insert"))
    }

    async fn get_job(
        &self,
        entity: &str,
        project: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<JobView>, StoreError> {
        let row = sqlx::query(
            "SELECT j.entity, j.project, j.name, j.version, j.source, j.runtime, j.created_at FROM jobs j \
             JOIN job_aliases a ON a.entity = j.entity AND a.project = j.project AND a.name = j.name AND a.version = j.version \
             WHERE j.entity = $1 AND j.project = $2 AND j.name = $3 AND a.alias = $4",
        )
        .bind(entity)
        .bind(project)
        .bind(name)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(self.job_view(&r).await?)),
            None => Ok(None),
        }
    }

    async fn list_jobs(&self, entity: &str) -> Result<Vec<JobView>, StoreError> {
        let rows = sqlx::query(
            "SELECT entity, project, name, version, source, runtime, created_at FROM jobs WHERE entity = $1 \
             ORDER BY project, name, version",
        )
        .bind(entity)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.job_view(r).await?);
        }
        Ok(out)
    }

    async fn enqueue(&self, item: &NewItem) -> Result<ItemView, StoreError> {
        let res = sqlx::query(
            "INSERT INTO items (id, run_id, entity, queue, state, priority, sort_prio, attempts, fence, spec, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, 0, 0, $7, $8)",
        )
        .bind(&item.id)
        .bind(&item.run_id)
        .bind(&item.entity)
        .bind(&item.queue)
        .bind(item.priority.rank())
        .bind(if item.prioritized { item.priority.rank() } else { 0 })
        .bind(serde_json::to_string(&item.spec).map_err(|e| corrupt("launch spec", e))?)
        .bind(item.now_ms)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Invalid {
                    field: "run_id".into(),
                    message: format!("run id '{}' is already used in entity '{}'", item.run_id, item.entity),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let mut conn = self.pool.acquire().await?;
        self.load_item(&mut conn, &item.entity, &item.id, false).await
    }

    async fn get_item(&self, entity: &str, id: &str) -> Result<Option<ItemView>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match self.load_item(&mut conn, entity, id, false).await {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_items(&self, entity: &str, queue: Option<&str>, limit: i64) -> Result<Vec<ItemView>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLS} FROM items WHERE entity = $1 AND ($2 = '' OR queue = $2) ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(entity)
            .bind(queue.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_item).collect()
    }

    async fn claim(
        &self,
        entity: &str,
        queues: &[String],
        agent_id: &str,
        now_ms: i64,
        lease_ttl_ms: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        let pick = format!(
            "SELECT {ITEM_COLS} FROM items WHERE entity = $1 AND queue = $2 AND state = 'pending' \
             ORDER BY sort_prio, seq LIMIT 1{}",
            self.for_update(true)
        );
        for queue in queues {
            let mut tx = self.pool.begin().await?;
            let row =
                sqlx::query(AssertSqlSafe(pick.clone())).bind(entity).bind(queue).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { continue };
            let view = decode_item(&row)?;
            let item = self
                .transition_loaded(&mut tx, view, None, &ItemEvent::Claim, now_ms, Some((agent_id, lease_ttl_ms)))
                .await?;
            let log_seq_start = next_seq(&mut tx, &item.id).await?;
            tx.commit().await?;
            return Ok(Some(Claimed { item, log_seq_start }));
        }
        Ok(None)
    }

    async fn renew_lease(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        now_ms: i64,
        lease_ttl_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut view = self.load_item(&mut tx, entity, id, true).await?;
        if view.fence != fence {
            return Err(StoreError::StaleFence { item: view.id, sent: fence, current: view.fence });
        }
        if !view.state.is_leased() {
            return Err(StoreError::Conflict(format!(
                "item '{}' is {}; it holds no lease to renew",
                view.id, view.state
            )));
        }
        let until = now_ms + lease_ttl_ms;
        sqlx::query("UPDATE items SET lease_expires_at = $1 WHERE id = $2 AND fence = $3")
            .bind(until)
            .bind(&view.id)
            .bind(fence)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        view.lease_expires_at_ms = Some(until);
        Ok(view)
    }

    async fn apply_event(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        event: &ItemEvent,
        now_ms: i64,
    ) -> Result<ItemView, StoreError> {
        let mut tx = self.pool.begin().await?;
        let view = self.transition(&mut tx, entity, id, fence, event, now_ms, None).await?;
        tx.commit().await?;
        Ok(view)
    }

    async fn expire_leases(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, entity FROM items WHERE state IN ('claimed', 'running', 'stopping') AND lease_expires_at < $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = Vec::new();
        for r in rows {
            let (id, entity): (String, String) = (r.try_get("id")?, r.try_get("entity")?);
            let mut tx = self.pool.begin().await?;
            // Re-check under the lock: a heartbeat may have renewed it meanwhile.
            let current = self.load_item(&mut tx, &entity, &id, true).await?;
            if !current.state.is_leased() || current.lease_expires_at_ms.is_none_or(|t| t >= now_ms) {
                continue;
            }
            match self.transition(&mut tx, &entity, &id, None, &ItemEvent::LeaseExpired, now_ms, None).await {
                Ok(_) => {
                    tx.commit().await?;
                    expired.push(id);
                }
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    async fn release_unstarted(
        &self,
        entity: &str,
        agent_id: &str,
        keep: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM items WHERE entity = $1 AND agent_id = $2 AND state IN ('claimed', 'stopping') AND started_at IS NULL")
            .bind(entity)
            .bind(agent_id)
            .fetch_all(&self.pool)
            .await?;
        let mut released = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            if keep.contains(&id) {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            let current = self.load_item(&mut tx, entity, &id, true).await?;
            if current.agent_id.as_deref() != Some(agent_id) || current.started_at_ms.is_some() {
                continue;
            }
            match self.transition_loaded(&mut tx, current, None, &ItemEvent::Release, now_ms, None).await {
                Ok(_) => {
                    tx.commit().await?;
                    released.push(id);
                }
                Err(StoreError::Conflict(_) | StoreError::Transition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    async fn append_log(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        seq: i64,
        stream: LogStream,
        data: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        if view.fence != fence {
            return Err(StoreError::StaleFence { item: view.id, sent: fence, current: view.fence });
        }
        if view.state == ItemState::Pending {
            return Err(StoreError::Conflict(format!("item '{}' is pending; its lease was lost", view.id)));
        }
        if view.log_archived {
            return Err(StoreError::Conflict(format!("run '{}' has ended and its log is closed", view.run_id)));
        }
        let next = next_seq(&mut tx, &view.id).await?;
        if seq < next {
            return Ok(()); // a retry of a chunk we already hold
        }
        if seq > next {
            return Err(StoreError::Invalid {
                field: "seq".into(),
                message: format!("log chunk {seq} arrived before chunk {next}; send chunks in order"),
            });
        }
        // PostgreSQL's text cannot hold NUL, so neither store keeps it; `bytes`
        // is the size as sent, which an agent taking the run back counts on.
        let stored = data.replace('\0', "\u{FFFD}");
        sqlx::query(
            "INSERT INTO log_chunks (item_id, seq, stream, data, fence, bytes) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&view.id)
        .bind(seq)
        .bind(stream_str(stream))
        .bind(stored)
        .bind(fence)
        .bind(data.len() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read_log(&self, entity: &str, id: &str, after: i64, limit: i64) -> Result<Vec<LogChunk>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let view = self.load_item(&mut conn, entity, id, false).await?;
        let rows = sqlx::query(
            "SELECT seq, stream, data FROM log_chunks WHERE item_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(&view.id)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let stream: String = r.try_get("stream")?;
                Ok(LogChunk {
                    seq: r.try_get("seq")?,
                    stream: serde_json::from_value(serde_json::Value::String(stream))
                        .map_err(|e| corrupt("log stream", e))?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    async fn logs_to_archive(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT entity, id FROM items WHERE log_archived = 0 \
             AND state IN ('finished', 'failed', 'stopped', 'preempted') ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("entity")?, r.try_get("id")?))).collect()
    }

    async fn mark_log_archived(&self, entity: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        if !view.state.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "run '{}' is {}; its log is still open",
                view.run_id, view.state
            )));
        }
        sqlx::query("UPDATE items SET log_archived = 1 WHERE id = $1").bind(&view.id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM log_chunks WHERE item_id = $1").bind(&view.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn register_agent(
        &self,
        entity: &str,
        id: &str,
        req: &RegisterAgent,
        now_ms: i64,
    ) -> Result<AgentView, StoreError> {
        sqlx::query(
            "INSERT INTO agents (id, entity, queues, hostname, max_jobs, status, stop_polling, heartbeat_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'polling', 0, $6, $6)",
        )
        .bind(id)
        .bind(entity)
        .bind(serde_json::to_string(&req.queues).map_err(|e| corrupt("agent queues", e))?)
        .bind(&req.hostname)
        .bind(req.max_jobs)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.agent(entity, id).await
    }

    async fn agent_heartbeat(
        &self,
        entity: &str,
        id: &str,
        status: AgentStatus,
        now_ms: i64,
    ) -> Result<AgentView, StoreError> {
        let q = sqlx::query("UPDATE agents SET status = $3, heartbeat_at = $4 WHERE entity = $1 AND id = $2");
        self.update_agent(entity, id, q.bind(entity).bind(id).bind(status_str(status)).bind(now_ms)).await
    }

    async fn get_agent(&self, entity: &str, id: &str) -> Result<Option<AgentView>, StoreError> {
        match self.agent(entity, id).await {
            Ok(a) => Ok(Some(a)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_agents(&self, entity: &str) -> Result<Vec<AgentView>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents WHERE entity = $1 ORDER BY created_at")
            .bind(entity)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_agent).collect()
    }

    async fn add_warning(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        stage: Stage,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        if let Some(sent) = fence
            && sent != view.fence
        {
            return Err(StoreError::StaleFence { item: view.id, sent, current: view.fence });
        }
        let done = sqlx::query(
            "INSERT INTO item_warnings (item_id, stage, message, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (item_id, stage, message) DO NOTHING",
        )
        .bind(&view.id)
        .bind(stage.as_str())
        .bind(message)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_warnings(&self, entity: &str, id: &str) -> Result<Vec<ItemWarning>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let view = self.load_item(&mut conn, entity, id, false).await?;
        let rows = sqlx::query(
            "SELECT stage, message, created_at FROM item_warnings WHERE item_id = $1 ORDER BY created_at, message",
        )
        .bind(&view.id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let stage: String = r.try_get("stage")?;
                Ok(ItemWarning {
                    stage: Stage::from_str(&stage).map_err(|e| corrupt("warning stage", e))?,
                    message: r.try_get("message")?,
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate)
            .execute(&mut *tx)
            .await?;
        let row =
            sqlx::query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row.try_get("value")?)
    }

    async fn log_position(&self, entity: &str, id: &str, fence: i64) -> Result<LogPosition, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let view = self.load_item(&mut conn, entity, id, false).await?;
        let next_seq = next_seq(&mut conn, &view.id).await?;
        let rows = sqlx::query(
            "SELECT stream, CAST(SUM(bytes) AS BIGINT) AS n FROM log_chunks \
             WHERE item_id = $1 AND fence = $2 GROUP BY stream",
        )
        .bind(&view.id)
        .bind(fence)
        .fetch_all(&mut *conn)
        .await?;
        let mut position = LogPosition { next_seq, ..Default::default() };
        for row in rows {
            let n: i64 = row.try_get("n")?;
            match row.try_get::<String, _>("stream")?.as_str() {
                "stdout" => position.stdout_bytes = n,
                "stderr" => position.stderr_bytes = n,
                _ => {}
            }
        }
        Ok(position)
    }

    async fn set_agent_stop_polling(&self, entity: &str, id: &str) -> Result<AgentView, StoreError> {
        let q = sqlx::query("UPDATE agents SET stop_polling = 1 WHERE entity = $1 AND id = $2");
        self.update_agent(entity, id, q.bind(entity).bind(id)).await
    }
}

async fn next_seq(conn: &mut AnyConnection, item_id: &str) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM log_chunks WHERE item_id = $1")
        .bind(item_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("next")?)
}

impl SqlStore {
    /// Runs an `UPDATE agents ... WHERE entity = $1 AND id = $2` and returns the agent.
    async fn update_agent(
        &self,
        entity: &str,
        id: &str,
        update: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<AgentView, StoreError> {
        if update.execute(&self.pool).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent '{id}'")));
        }
        self.agent(entity, id).await
    }

    async fn agent(&self, entity: &str, id: &str) -> Result<AgentView, StoreError> {
        let row = sqlx::query("SELECT * FROM agents WHERE entity = $1 AND id = $2")
            .bind(entity)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode_agent(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("agent '{id}'")))
    }

    async fn job_view(&self, r: &AnyRow) -> Result<JobView, StoreError> {
        let (entity, project, name): (String, String, String) =
            (r.try_get("entity")?, r.try_get("project")?, r.try_get("name")?);
        let version: i64 = r.try_get("version")?;
        let source: String = r.try_get("source")?;
        let aliases = sqlx::query(
            "SELECT alias FROM job_aliases WHERE entity = $1 AND project = $2 AND name = $3 AND version = $4 ORDER BY alias",
        )
        .bind(&entity)
        .bind(&project)
        .bind(&name)
        .bind(version)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|a| a.try_get::<String, _>("alias"))
        .collect::<Result<Vec<_>, _>>()?;
        Ok(JobView {
            entity,
            project,
            name,
            version,
            aliases,
            source: serde_json::from_str(&source).map_err(|e| corrupt("job source", e))?,
            runtime: r.try_get("runtime")?,
            created_at_ms: r.try_get("created_at")?,
        })
    }
}
