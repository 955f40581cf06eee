//! Puts a job's source into the run directory.

use crate::blob_cache::BlobCache;
use crate::git_source::{GitPolicy, fetch_git};
use liftoff_archive::{ArchiveLimits, sha256_digest, unpack};
use liftoff_client::Client;
use liftoff_core::JobSource;
use std::path::Path;

/// Downloads blob `digest`, retrying transient failures (a server restarting,
/// a balancer switching servers) a few times before the run fails.
async fn download(client: &Client, digest: &str) -> Result<bytes::Bytes, liftoff_client::ClientError> {
    use backon::Retryable;
    let policy = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_max_times(8);
    (|| client.download_blob(digest))
        .retry(policy)
        .when(|e| e.is_transient())
        .notify(|e, after| tracing::warn!(%digest, error = %e, "download failed; retrying in {after:?}"))
        .await
}

/// Blob `digest` from `cache`, else downloaded, checked against its digest
/// and kept there; whether it came from the cache.
async fn fetch(client: &Client, cache: &BlobCache, digest: &str, what: &str) -> anyhow::Result<(bytes::Bytes, bool)> {
    if let Some(bytes) = cache.get(digest) {
        return Ok((bytes, true));
    }
    let bytes =
        download(client, digest).await.map_err(|e| anyhow::anyhow!("failed to download {what} {digest}: {e}"))?;
    let actual = sha256_digest(&bytes);
    anyhow::ensure!(actual == digest, "{what} digest mismatch: expected {digest}, got {actual}");
    cache.put(digest, bytes.clone());
    Ok((bytes, false))
}

/// Fills `dir` with the job's code. Image jobs have nothing to fetch.
/// Returns a line for the run's log saying what was fetched.
pub async fn materialize(
    client: &Client,
    cache: &BlobCache,
    source: &JobSource,
    dir: &Path,
    allow_http_git: bool,
) -> anyhow::Result<String> {
    match source {
        JobSource::Code(code) => {
            let (bytes, cached) = fetch(client, cache, &code.digest, "code archive").await?;
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || unpack(&bytes, &dir, ArchiveLimits::default()))
                .await?
                .map_err(|e| anyhow::anyhow!("failed to unpack code archive: {e}"))?;
            Ok(format!("unpacked code archive {}{}", code.digest, if cached { " (cached by this agent)" } else { "" }))
        }
        JobSource::Git(src) => {
            let patch = match &src.diff_patch {
                Some(digest) => Some(fetch(client, cache, digest, "diff.patch").await?.0),
                None => None,
            };
            let policy = GitPolicy::from_config(allow_http_git);
            let out = fetch_git(src, dir, patch.as_deref(), &policy).await?;
            let remote = liftoff_core::job::redact_git_remote(&src.remote);
            let patched = if patch.is_some() { ", with diff.patch applied" } else { "" };
            Ok(if out.fallback {
                format!("fetched {remote}: '{}' not found, checked out {} ({}){patched}", src.commit, out.rev, out.sha)
            } else {
                format!("fetched {remote}: checked out {} ({}){patched}", out.rev, out.sha)
            })
        }
        JobSource::Image(_) => Ok("image job: nothing to fetch".to_string()),
    }
}
