//! Entities, API keys, agents and the shared server secrets.

use super::db::{Query, Row, query};
use super::{SqlStore, corrupt};
use crate::{ApiKeyRecord, KeyRole, StoreError};
use liftoff_core::api::{AgentStatus, AgentView, RegisterAgent};

impl SqlStore {
    pub(super) async fn ensure_entity(&self, entity: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = query("INSERT INTO entities (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(entity)
            .bind(now_ms)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn entity_exists(&self, entity: &str) -> Result<bool, StoreError> {
        let row = query("SELECT name FROM entities WHERE name = $1").bind(entity).fetch_optional(&self.read).await?;
        Ok(row.is_some())
    }

    pub(super) async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let item = match &key.role {
            KeyRole::Run { item_id } => Some(item_id.clone()),
            _ => None,
        };
        let role = key.role.as_str();
        query(
            "INSERT INTO api_keys (id, hash, entity, role, item_id, created_at, expires_at, name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.hash)
        .bind(&key.entity)
        .bind(role)
        .bind(item)
        .bind(key.created_at_ms)
        .bind(key.expires_at_ms)
        .bind(&key.name)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row =
            query("SELECT id, hash, entity, role, item_id, created_at, expires_at, name FROM api_keys WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.read)
                .await?;
        row.map(|r| decode_api_key(&r)).transpose()
    }

    pub(super) async fn list_api_keys(&self, entity: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = query(
            "SELECT id, hash, entity, role, item_id, created_at, expires_at, name FROM api_keys WHERE entity = $1 \
             ORDER BY created_at, id",
        )
        .bind(entity)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(decode_api_key).collect()
    }

    pub(super) async fn revoke_api_key(&self, entity: &str, id: &str) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = query(
            "SELECT id, hash, entity, role, item_id, created_at, expires_at, name FROM api_keys WHERE entity = $1 AND id = $2",
        )
        .bind(entity)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let key = row
            .map(|r| decode_api_key(&r))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("API key '{id}'")))?;
        if key.role == KeyRole::Admin {
            // Locks the entity's admin keys on PostgreSQL, so two revocations
            // cannot each see the other's key as the one left.
            let admins = query(format!(
                "SELECT id FROM api_keys WHERE entity = $1 AND role = 'admin'{}",
                self.for_update(false)
            ))
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
        query("DELETE FROM api_keys WHERE entity = $1 AND id = $2").bind(entity).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(key)
    }

    pub(super) async fn register_agent(
        &self,
        entity: &str,
        id: &str,
        req: &RegisterAgent,
        now_ms: i64,
    ) -> Result<AgentView, StoreError> {
        query(
            "INSERT INTO agents (id, entity, queues, hostname, max_jobs, status, stop_polling, heartbeat_at, created_at, \
             version) VALUES ($1, $2, $3, $4, $5, 'polling', 0, $6, $6, $7)",
        )
        .bind(id)
        .bind(entity)
        .bind(serde_json::to_string(&req.queues).map_err(|e| corrupt("agent queues", e))?)
        .bind(&req.hostname)
        .bind(req.max_jobs)
        .bind(now_ms)
        .bind(Some(req.version.trim()).filter(|v| !v.is_empty()))
        .execute(&self.write)
        .await?;
        self.agent(entity, id).await
    }

    pub(super) async fn agent_heartbeat(
        &self,
        entity: &str,
        id: &str,
        status: AgentStatus,
        now_ms: i64,
    ) -> Result<AgentView, StoreError> {
        let q = query("UPDATE agents SET status = $3, heartbeat_at = $4 WHERE entity = $1 AND id = $2");
        self.update_agent(entity, id, q.bind(entity).bind(id).bind(status_str(status)).bind(now_ms)).await
    }

    pub(super) async fn get_agent(&self, entity: &str, id: &str) -> Result<Option<AgentView>, StoreError> {
        match self.agent(entity, id).await {
            Ok(a) => Ok(Some(a)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn list_agents(&self, entity: &str) -> Result<Vec<AgentView>, StoreError> {
        let rows = query("SELECT * FROM agents WHERE entity = $1 ORDER BY created_at")
            .bind(entity)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(decode_agent).collect()
    }

    pub(super) async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        let mut tx = self.begin_write().await?;
        query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate)
            .execute(&mut *tx)
            .await?;
        let row = query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row.try_get("value")?)
    }

    pub(super) async fn set_agent_stop_polling(&self, entity: &str, id: &str) -> Result<AgentView, StoreError> {
        let q = query("UPDATE agents SET stop_polling = 1 WHERE entity = $1 AND id = $2");
        self.update_agent(entity, id, q.bind(entity).bind(id)).await
    }

    /// Runs an `UPDATE agents ... WHERE entity = $1 AND id = $2` and returns the agent.
    pub(super) async fn update_agent(&self, entity: &str, id: &str, update: Query) -> Result<AgentView, StoreError> {
        if update.execute(&self.write).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent '{id}'")));
        }
        self.agent(entity, id).await
    }

    pub(super) async fn agent(&self, entity: &str, id: &str) -> Result<AgentView, StoreError> {
        let row = query("SELECT * FROM agents WHERE entity = $1 AND id = $2")
            .bind(entity)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| decode_agent(&r)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("agent '{id}'")))
    }
}

fn decode_api_key(r: &Row) -> Result<ApiKeyRecord, StoreError> {
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
        name: r.try_get("name")?,
    })
}

fn decode_agent(r: &Row) -> Result<AgentView, StoreError> {
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
        version: r.try_get("version")?,
    })
}

fn status_str(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Polling => "polling",
        AgentStatus::Running => "running",
        AgentStatus::Stopped => "stopped",
    }
}
