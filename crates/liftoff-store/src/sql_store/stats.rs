//! Read-only aggregates over every entity, for the server's `/metrics`
//! gauges: items per queue and state, the oldest pending item per queue,
//! agents by status.

use super::db::query;
use super::items::{ITEM_COLS, decode_item};
use super::{SqlStore, corrupt};
use crate::StoreError;
use liftoff_core::api::{AgentStatus, ItemView};
use liftoff_core::{ItemState, ResourceType};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// One queue as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub entity: String,
    pub queue: String,
    pub resource: ResourceType,
    /// Items in each state; a state without items is absent.
    pub items: HashMap<ItemState, i64>,
    /// When the oldest pending item was first enqueued (server clock, ms).
    pub oldest_pending_created_ms: Option<i64>,
}

/// An agent as `/metrics` counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStats {
    pub entity: String,
    pub queues: Vec<String>,
    pub status: AgentStatus,
    pub stop_polling: bool,
    pub heartbeat_at_ms: i64,
}

impl SqlStore {
    pub(super) async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        let mut queues: BTreeMap<(String, String), QueueStats> = BTreeMap::new();
        for r in query("SELECT entity, name, resource FROM queues").fetch_all(&self.read).await? {
            let (entity, queue): (String, String) = (r.try_get("entity")?, r.try_get("name")?);
            let resource: String = r.try_get("resource")?;
            let resource = ResourceType::from_str(&resource).map_err(|e| corrupt("queue resource", e))?;
            let stats = QueueStats {
                entity: entity.clone(),
                queue: queue.clone(),
                resource,
                items: HashMap::new(),
                oldest_pending_created_ms: None,
            };
            queues.insert((entity, queue), stats);
        }
        // Served by the (entity, queue, state, ...) index alone.
        let counts = "SELECT entity, queue, state, COUNT(*) AS n FROM items GROUP BY entity, queue, state";
        for r in query(counts).fetch_all_apart(&self.read).await? {
            let key: (String, String) = (r.try_get("entity")?, r.try_get("queue")?);
            let state: String = r.try_get("state")?;
            let state = ItemState::from_str(&state).map_err(|e| corrupt("item state", e))?;
            if let Some(q) = queues.get_mut(&key) {
                q.items.insert(state, r.try_get("n")?);
            }
        }
        let oldest = "SELECT entity, queue, MIN(created_at) AS oldest FROM items WHERE state = 'pending' \
                      GROUP BY entity, queue";
        for r in query(oldest).fetch_all_apart(&self.read).await? {
            let key: (String, String) = (r.try_get("entity")?, r.try_get("queue")?);
            if let Some(q) = queues.get_mut(&key) {
                q.oldest_pending_created_ms = r.try_get("oldest")?;
            }
        }
        Ok(queues.into_values().collect())
    }

    pub(super) async fn agent_stats(&self) -> Result<Vec<AgentStats>, StoreError> {
        let rows = query("SELECT entity, queues, status, stop_polling, heartbeat_at FROM agents")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let queues: String = r.try_get("queues")?;
                let status: String = r.try_get("status")?;
                Ok(AgentStats {
                    entity: r.try_get("entity")?,
                    queues: serde_json::from_str(&queues).map_err(|e| corrupt("agent queues", e))?,
                    status: serde_json::from_value(serde_json::Value::String(status))
                        .map_err(|e| corrupt("agent status", e))?,
                    stop_polling: r.try_get::<i64, _>("stop_polling")? != 0,
                    heartbeat_at_ms: r.try_get("heartbeat_at")?,
                })
            })
            .collect()
    }

    pub(super) async fn items_by_id(&self, ids: &[String]) -> Result<Vec<ItemView>, StoreError> {
        let sql = format!("SELECT {ITEM_COLS} FROM items WHERE id = $1");
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = query(sql.clone()).bind(id).fetch_optional(&self.read).await? {
                items.push(decode_item(&r)?);
            }
        }
        Ok(items)
    }
}
