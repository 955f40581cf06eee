//! A queue page's saved filters: a name and the page's query string.

use super::db::query;
use super::{SqlStore, is_unique_violation};
use crate::StoreError;

/// A queue page view saved under a name (unique per queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFilter {
    pub entity: String,
    pub queue: String,
    pub name: String,
    /// The page's query string (without `?`), as the page wrote it.
    pub query: String,
    pub created_at_ms: i64,
}

impl SqlStore {
    pub(super) async fn save_filter(&self, f: &SavedFilter) -> Result<(), StoreError> {
        let res =
            query("INSERT INTO saved_filters (entity, queue, name, query, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&f.entity)
                .bind(&f.queue)
                .bind(&f.name)
                .bind(&f.query)
                .bind(f.created_at_ms)
                .execute(&self.write)
                .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "queue '{}' already has a saved filter named '{}'; delete it first or pick another name",
                f.queue, f.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn list_saved_filters(&self, entity: &str, queue: &str) -> Result<Vec<SavedFilter>, StoreError> {
        let rows = query(
            "SELECT entity, queue, name, query, created_at FROM saved_filters WHERE entity = $1 AND queue = $2 \
             ORDER BY name",
        )
        .bind(entity)
        .bind(queue)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SavedFilter {
                    entity: r.try_get("entity")?,
                    queue: r.try_get("queue")?,
                    name: r.try_get("name")?,
                    query: r.try_get("query")?,
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub(super) async fn delete_saved_filter(&self, entity: &str, queue: &str, name: &str) -> Result<(), StoreError> {
        let done = query("DELETE FROM saved_filters WHERE entity = $1 AND queue = $2 AND name = $3")
            .bind(entity)
            .bind(queue)
            .bind(name)
            .execute(&self.write)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("saved filter '{name}' of queue '{queue}'")));
        }
        Ok(())
    }
}
