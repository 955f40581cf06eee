//! Puts a job's source into the run directory.

use crate::git_source::{GitPolicy, fetch_git};
use liftoff_archive::{ArchiveLimits, sha256_digest, unpack};
use liftoff_client::Client;
use liftoff_core::JobSource;
use std::path::Path;

/// Fills `dir` with the job's code. Image jobs have nothing to fetch.
pub async fn materialize(client: &Client, source: &JobSource, dir: &Path, allow_http_git: bool) -> anyhow::Result<()> {
    match source {
        JobSource::Code(code) => {
            let bytes = client
                .download_blob(&code.digest)
                .await
                .map_err(|e| anyhow::anyhow!("failed to download code archive {}: {e}", code.digest))?;
            let actual = sha256_digest(&bytes);
            anyhow::ensure!(
                actual == code.digest,
                "code archive digest mismatch: expected {}, got {actual}",
                code.digest
            );
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || unpack(&bytes, &dir, ArchiveLimits::default()))
                .await?
                .map_err(|e| anyhow::anyhow!("failed to unpack code archive: {e}"))?;
            Ok(())
        }
        JobSource::Git(src) => {
            let patch = match &src.diff_patch {
                Some(digest) => {
                    let bytes = client
                        .download_blob(digest)
                        .await
                        .map_err(|e| anyhow::anyhow!("failed to download diff.patch {digest}: {e}"))?;
                    let actual = sha256_digest(&bytes);
                    anyhow::ensure!(actual == *digest, "diff.patch digest mismatch: expected {digest}, got {actual}");
                    Some(bytes)
                }
                None => None,
            };
            // The agent owner wires `allow_http_git` from the launch config in here.
            let policy = GitPolicy::from_config(false);
            let out = fetch_git(src, dir, patch.as_deref(), &policy).await?;
            if out.fallback {
                let (rev, commit) = (&out.rev, &src.commit);
                tracing::warn!(%rev, sha = %out.sha, %commit, "git commit not found; checked out a fallback branch");
            }
            Ok(())
        }
        JobSource::Image(i) => anyhow::bail!("image job '{}' cannot run on the local-process runner", i.image),
    }
}
