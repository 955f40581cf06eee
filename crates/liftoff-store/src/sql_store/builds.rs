//! Build claims: two agents that need the same image build it once. A claim
//! is a lease on a build key (the content-addressed image reference), with
//! a fencing token and a database-clock deadline like an item's; the
//! holder renews it while it builds and finishes it with the image pushed.
//! A build whose holder vanished is claimed again once its lease runs out;
//! a failed build is free at once.
//!
//! Also the run's build record (`items.build`), written by the item's holder.

use super::SqlStore;
use super::db::query;
use super::items::check_holder;
use crate::StoreError;
use liftoff_core::api::{BuildClaimAnswer, BuildRecord};

/// How long a waiting agent is told to wait before asking again.
const RETRY_AFTER_MS: i64 = 500;

impl SqlStore {
    pub(super) async fn claim_build(
        &self,
        entity: &str,
        key: &str,
        agent_id: &str,
        ttl_ms: i64,
        gone: bool,
    ) -> Result<BuildClaimAnswer, StoreError> {
        let mut tx = self.begin_write().await?;
        // The row first, so that two first claims meet on one locked row.
        query(
            "INSERT INTO build_claims (entity, build_key, holder, fence, state, image, lease_until) \
             VALUES ($1, $2, '', 0, 'free', NULL, 0) ON CONFLICT (entity, build_key) DO NOTHING",
        )
        .bind(entity)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "SELECT holder, fence, state, image, lease_until, {} AS db_now FROM build_claims \
             WHERE entity = $1 AND build_key = $2{}",
            self.now_sql(),
            self.for_update(false)
        );
        let row = query(sql).bind(entity).bind(key).fetch_one(&mut *tx).await?;
        let (holder, fence, state): (String, i64, String) =
            (row.try_get("holder")?, row.try_get("fence")?, row.try_get("state")?);
        let (lease_until, now): (i64, i64) = (row.try_get("lease_until")?, row.try_get("db_now")?);
        let answer = match state.as_str() {
            "done" if !gone => {
                BuildClaimAnswer::Done { image: row.try_get::<Option<String>, _>("image")?.unwrap_or_default() }
            }
            "building" if lease_until > now => BuildClaimAnswer::Held { holder, retry_after_ms: RETRY_AFTER_MS },
            // free, failed, a holder whose lease ran out, or done with its image gone
            _ => {
                let fence = fence + 1;
                query(
                    "UPDATE build_claims SET holder = $3, fence = $4, state = 'building', image = NULL, \
                     lease_until = $5 WHERE entity = $1 AND build_key = $2",
                )
                .bind(entity)
                .bind(key)
                .bind(agent_id)
                .bind(fence)
                .bind(now + ttl_ms)
                .execute(&mut *tx)
                .await?;
                BuildClaimAnswer::Won { fence, lease_ttl_ms: ttl_ms }
            }
        };
        tx.commit().await?;
        Ok(answer)
    }

    /// Extends the holder's lease (`image: None`), or ends its build:
    /// `done` with the image, or free again after a failure (`finish` with no image).
    pub(super) async fn update_build(
        &self,
        entity: &str,
        key: &str,
        fence: i64,
        ttl_ms: i64,
        finish: Option<Option<&str>>,
    ) -> Result<(), StoreError> {
        let now = self.now_sql();
        let sql = match finish {
            None => format!("UPDATE build_claims SET lease_until = {now} + $4 WHERE {HELD_BY}"),
            Some(Some(_)) => format!("UPDATE build_claims SET state = 'done', image = $5 WHERE {HELD_BY} AND $4 >= 0"),
            Some(None) => format!("UPDATE build_claims SET state = 'failed' WHERE {HELD_BY} AND $4 >= 0"),
        };
        let mut tx = self.begin_write().await?;
        let done = query(sql)
            .bind(entity)
            .bind(key)
            .bind(fence)
            .bind(ttl_ms)
            .bind(finish.flatten().unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::StaleFence { item: format!("build '{key}'"), sent: fence, current: -1 })
        }
    }

    pub(super) async fn set_build_record(
        &self,
        entity: &str,
        id: &str,
        fence: i64,
        record: &BuildRecord,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Invalid { field: "build".into(), message: e.to_string() })?;
        let mut tx = self.begin_write().await?;
        let view = self.load_item(&mut tx, entity, id, true).await?;
        check_holder(&view, fence)?;
        query("UPDATE items SET build = $1 WHERE id = $2").bind(json).bind(&view.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The row of a build still held under the sent fence, lease running.
const HELD_BY: &str = "entity = $1 AND build_key = $2 AND fence = $3 AND state = 'building'";
