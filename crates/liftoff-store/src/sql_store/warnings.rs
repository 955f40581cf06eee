//! Warnings recorded on an item (a fallback taken, a degraded start).

use super::db::query;
use super::items::check_holder;
use super::{SqlStore, corrupt};
use crate::StoreError;
use liftoff_core::Stage;
use liftoff_core::api::ItemWarning;
use std::str::FromStr;

impl SqlStore {
    pub(super) async fn add_warning(
        &self,
        entity: &str,
        id: &str,
        fence: Option<i64>,
        stage: Stage,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        if let Some(sent) = fence {
            check_holder(&view, sent)?;
        }
        let done = query(
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

    pub(super) async fn list_warnings(&self, entity: &str, id: &str) -> Result<Vec<ItemWarning>, StoreError> {
        let mut conn = self.read.acquire().await?;
        let view = self.load_item(&mut conn, entity, id, false).await?;
        let rows = query(
            "SELECT stage, message, created_at FROM item_warnings WHERE item_id = $1 ORDER BY created_at, message",
        )
        .bind(&view.id)
        .fetch_all(&mut conn)
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
}
