//! What the server's encryption of secrets at rest reads and rewrites on
//! start (plain values sealed, values under an old key re-wrapped): the
//! server secrets, and the git remotes with credentials in job sources and
//! launch specs. Each rewrite is a compare-and-set on the old text, so a
//! row changed meanwhile is left alone.

use super::db::query;
use super::{Dialect, SqlStore};
use crate::error::StoreError;
use crate::records::{StoredRemote, StoredRemoteAt};

/// The `remote` of a git source in a stored JSON document (`source` of a
/// job row, `source` inside a launch spec), if it has userinfo.
fn git_remote(doc: &serde_json::Value) -> Option<&str> {
    let source = doc.get("source").unwrap_or(doc);
    if source.get("type")?.as_str()? != "git" {
        return None;
    }
    let remote = source.get("remote")?.as_str()?;
    let authority = remote.split_once("://")?.1;
    let authority = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
    authority.contains('@').then_some(remote)
}

fn with_remote(text: &str, new_remote: &str) -> Result<String, StoreError> {
    let mut doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt { what: "stored git source", detail: e.to_string() })?;
    let source = if doc.get("source").is_some() { &mut doc["source"] } else { &mut doc };
    source["remote"] = serde_json::Value::String(new_remote.to_string());
    serde_json::to_string(&doc).map_err(|e| StoreError::Corrupt { what: "stored git source", detail: e.to_string() })
}

impl SqlStore {
    pub(super) async fn server_secrets_all(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = query("SELECT name, value FROM server_secrets ORDER BY name").fetch_all(&self.write).await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("value")?))).collect()
    }

    pub(super) async fn replace_server_secret(
        &self,
        name: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = match old {
            Some(old) => query("UPDATE server_secrets SET value = $1 WHERE name = $2 AND value = $3")
                .bind(new)
                .bind(name)
                .bind(old)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            None => query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(new)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        };
        tx.commit().await?;
        Ok(done == 1)
    }

    pub(super) async fn purge_old_row_versions(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => {
                // VACUUM rewrites the file without its free pages; the
                // checkpoints take the old pages out of the WAL.
                for q in ["PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"] {
                    query(q).execute(&self.write).await?;
                }
            }
            Dialect::Postgres => {
                // Dead row versions become free space, reused by later
                // writes; only VACUUM FULL (an exclusive lock) rewrites the
                // files, which an operator may run.
                for q in ["VACUUM jobs", "VACUUM items", "VACUUM server_secrets"] {
                    query(q).execute(&self.write).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn git_remotes_with_userinfo(&self) -> Result<Vec<StoredRemote>, StoreError> {
        let mut out = Vec::new();
        // LIKE narrows the scan to git sources with an '@'; the JSON decides.
        let jobs = query(
            "SELECT entity, project, name, version, source FROM jobs WHERE source LIKE '%\"git\"%' AND source LIKE '%@%'",
        )
        .fetch_all(&self.write)
        .await?;
        for r in &jobs {
            let text: String = r.try_get("source")?;
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(remote) = git_remote(&doc) {
                out.push(StoredRemote {
                    at: StoredRemoteAt::Job {
                        entity: r.try_get("entity")?,
                        project: r.try_get("project")?,
                        name: r.try_get("name")?,
                        version: r.try_get("version")?,
                    },
                    remote: remote.to_string(),
                    text,
                });
            }
        }
        let items = query("SELECT id, spec FROM items WHERE spec LIKE '%\"git\"%' AND spec LIKE '%@%'")
            .fetch_all(&self.write)
            .await?;
        for r in &items {
            let text: String = r.try_get("spec")?;
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(remote) = git_remote(&doc) {
                out.push(StoredRemote {
                    at: StoredRemoteAt::Item { id: r.try_get("id")? },
                    remote: remote.to_string(),
                    text,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn replace_git_remote(&self, stored: &StoredRemote, new_remote: &str) -> Result<bool, StoreError> {
        let new_text = with_remote(&stored.text, new_remote)?;
        let mut tx = self.begin_write().await?;
        let done = match &stored.at {
            StoredRemoteAt::Job { entity, project, name, version } => query(
                "UPDATE jobs SET source = $1 WHERE entity = $2 AND project = $3 AND name = $4 AND version = $5 AND source = $6",
            )
            .bind(&new_text)
            .bind(entity)
            .bind(project)
            .bind(name)
            .bind(version)
            .bind(&stored.text)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            StoredRemoteAt::Item { id } => query("UPDATE items SET spec = $1 WHERE id = $2 AND spec = $3")
                .bind(&new_text)
                .bind(id)
                .bind(&stored.text)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        };
        tx.commit().await?;
        Ok(done == 1)
    }
}
