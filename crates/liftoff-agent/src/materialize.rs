//! Puts a job's source into the run directory.

use liftoff_archive::{ArchiveLimits, sha256_digest, unpack};
use liftoff_client::Client;
use liftoff_core::JobSource;
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

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
            check_git_remote(&src.remote)?;
            std::fs::create_dir_all(dir)?;
            git(dir, &["init", "--quiet"]).await?;
            git(dir, &["remote", "add", "origin", "--", &src.remote]).await?;
            git(
                dir,
                &["-c", "protocol.file.allow=never", "-c", "protocol.ext.allow=never", "fetch", "--quiet", "origin"],
            )
            .await?;
            git(dir, &["-c", "advice.detachedHead=false", "checkout", "--quiet", &src.commit]).await?;
            Ok(())
        }
        JobSource::Image(i) => anyhow::bail!("image job '{}' cannot run on the local-process runner", i.image),
    }
}

/// Only `https://`, `ssh://` and `user@host:path` remotes, as the reference
/// allows; plain `http://` only when `LIFTOFF_AGENT_ALLOW_HTTP_GIT=1`.
pub fn check_git_remote(remote: &str) -> anyhow::Result<()> {
    let allow_http = std::env::var("LIFTOFF_AGENT_ALLOW_HTTP_GIT").is_ok_and(|v| v == "1");
    let scp_like = !remote.contains("://")
        && remote
            .split_once(':')
            .is_some_and(|(host, path)| host.contains('@') && !host.contains('/') && !path.is_empty());
    let ok = !remote.starts_with('-')
        && (remote.starts_with("https://")
            || remote.starts_with("ssh://")
            || scp_like
            || (allow_http && remote.starts_with("http://")));
    anyhow::ensure!(
        ok,
        "refusing to fetch git remote '{remote}': only https://, ssh:// and user@host:path remotes are allowed"
    );
    Ok(())
}

async fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("git");
    cmd.args(args).current_dir(dir).env("GIT_TERMINAL_PROMPT", "0").kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("git {} timed out after 600 s", args.join(" ")))??;
    anyhow::ensure!(
        out.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes() {
        assert!(check_git_remote("https://example.com/a.git").is_ok());
        assert!(check_git_remote("git@example.com:a/b.git").is_ok());
        for bad in ["file:///etc", "ext::sh -c x", "-uhttps://x", "/tmp/repo", "fd::3"] {
            assert!(check_git_remote(bad).is_err(), "{bad}");
        }
    }
}
