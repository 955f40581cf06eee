//! Job versions and their aliases.

use super::db::{Row, query};
use super::{SqlStore, corrupt, is_unique_violation};
use crate::{NewJobVersion, StoreError};
use liftoff_core::api::JobView;

impl SqlStore {
    pub(super) async fn create_job_version(&self, job: &NewJobVersion<'_>) -> Result<JobView, StoreError> {
        let NewJobVersion { entity, project, name, source, runtime, aliases, now_ms } = *job;
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT version FROM jobs WHERE entity = $1 AND project = $2 AND name = $3 ORDER BY version DESC LIMIT 1{}",
            self.for_update(false)
        );
        let last: Option<i64> = query(sql)
            .bind(entity)
            .bind(project)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("version"))
            .transpose()?;
        let version = last.unwrap_or(0) + 1;
        let res = query(
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
            query("DELETE FROM job_aliases WHERE entity = $1 AND project = $2 AND name = $3 AND alias = $4")
                .bind(entity)
                .bind(project)
                .bind(name)
                .bind(alias)
                .execute(&mut *tx)
                .await?;
            query("INSERT INTO job_aliases (entity, project, name, alias, version) VALUES ($1, $2, $3, $4, $5)")
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

    pub(super) async fn get_job(
        &self,
        entity: &str,
        project: &str,
        name: &str,
        alias: &str,
    ) -> Result<Option<JobView>, StoreError> {
        // The version and all its aliases in one statement (a launch waits
        // for this read): one row per alias, each with the version's columns.
        let rows = query(
            "SELECT j.entity, j.project, j.name, j.version, j.source, j.runtime, j.created_at, o.alias FROM jobs j \
             JOIN job_aliases a ON a.entity = j.entity AND a.project = j.project AND a.name = j.name AND a.version = j.version \
             JOIN job_aliases o ON o.entity = j.entity AND o.project = j.project AND o.name = j.name AND o.version = j.version \
             WHERE j.entity = $1 AND j.project = $2 AND j.name = $3 AND a.alias = $4 ORDER BY o.alias",
        )
        .bind(entity)
        .bind(project)
        .bind(name)
        .bind(alias)
        .fetch_all(&self.read)
        .await?;
        Ok(versions(&rows)?.pop())
    }

    pub(super) async fn list_jobs(&self, entity: &str) -> Result<Vec<JobView>, StoreError> {
        // every version with its aliases in one statement, as `get_job`
        // reads one (a version without aliases comes as one row, alias NULL)
        let rows = query(
            "SELECT j.entity, j.project, j.name, j.version, j.source, j.runtime, j.created_at, o.alias FROM jobs j \
             LEFT JOIN job_aliases o ON o.entity = j.entity AND o.project = j.project AND o.name = j.name \
             AND o.version = j.version WHERE j.entity = $1 ORDER BY j.project, j.name, j.version, o.alias",
        )
        .bind(entity)
        .fetch_all(&self.read)
        .await?;
        versions(&rows)
    }
}

/// Job versions from rows of a version's columns (`entity` ... `created_at`)
/// and one of its aliases (`alias`, NULL for none), the rows of a version
/// adjacent and in alias order.
fn versions(rows: &[Row]) -> Result<Vec<JobView>, StoreError> {
    let mut out: Vec<JobView> = Vec::new();
    for r in rows {
        let alias: Option<String> = r.try_get("alias")?;
        let (project, name, version): (String, String, i64) =
            (r.try_get("project")?, r.try_get("name")?, r.try_get("version")?);
        let same = out.last().is_some_and(|v| v.project == project && v.name == name && v.version == version);
        if !same {
            out.push(job_view_with(r, Vec::new())?);
        }
        if let (Some(alias), Some(v)) = (alias, out.last_mut()) {
            v.aliases.push(alias);
        }
    }
    Ok(out)
}

/// A job version from its row (`entity` ... `created_at`) and its aliases.
fn job_view_with(r: &Row, aliases: Vec<String>) -> Result<JobView, StoreError> {
    let source: String = r.try_get("source")?;
    Ok(JobView {
        entity: r.try_get("entity")?,
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        aliases,
        source: serde_json::from_str(&source).map_err(|e| corrupt("job source", e))?,
        runtime: r.try_get("runtime")?,
        created_at_ms: r.try_get("created_at")?,
    })
}
