//! Queues and the blob records of uploaded code archives.

use super::db::{Row, query};
use super::{SqlStore, corrupt, is_unique_violation};
use crate::StoreError;
use liftoff_core::{Queue, ResourceType};
use std::str::FromStr;

impl SqlStore {
    pub(super) async fn create_queue(&self, q: &Queue) -> Result<(), StoreError> {
        let res = query(
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
        .execute(&self.write)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("queue '{}' already exists", q.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn get_queue(&self, entity: &str, name: &str) -> Result<Option<Queue>, StoreError> {
        let row = query("SELECT * FROM queues WHERE entity = $1 AND name = $2")
            .bind(entity)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| decode_queue(&r)).transpose()
    }

    pub(super) async fn list_queues(&self, entity: &str) -> Result<Vec<Queue>, StoreError> {
        let rows =
            query("SELECT * FROM queues WHERE entity = $1 ORDER BY name").bind(entity).fetch_all(&self.read).await?;
        rows.iter().map(decode_queue).collect()
    }

    pub(super) async fn add_blob(
        &self,
        entity: &str,
        digest: &str,
        size: u64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = query(
            "INSERT INTO blobs (entity, digest, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (entity, digest) DO NOTHING",
        )
        .bind(entity)
        .bind(digest)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(now_ms)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn has_blob(&self, entity: &str, digest: &str) -> Result<bool, StoreError> {
        let row = query("SELECT digest FROM blobs WHERE entity = $1 AND digest = $2")
            .bind(entity)
            .bind(digest)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }
}

pub(super) fn decode_queue(r: &Row) -> Result<Queue, StoreError> {
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
