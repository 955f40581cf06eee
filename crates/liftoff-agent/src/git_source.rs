//! Git job sources: the remote is checked before anything runs, then the
//! system `git` fetches it with the user's config ignored, only the allowed
//! transports enabled and no hooks, each step under a timeout and in its own
//! process group so that dropping the future stops every process it started.
//!
//! A remote's credential (`https://user:token@host/...`) never reaches git's argv (which any
//! user of the machine can read in `/proc`) or a file in the checkout: git gets the remote
//! without it, and for the steps that talk to the remote a credential helper, given as
//! config through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n` and scoped to the remote's
//! `scheme://host:port`, prints it from environment variables set on that git process
//! alone (its environment is readable only by its own user). We chose a helper over
//! `GIT_ASKPASS` because git asks helpers only for URLs their key matches, so a submodule
//! or a redirect to another host never gets the credential, and because it needs no
//! program on disk. Nothing of it is written to `.git/config`, and the agent's own
//! environment, which jobs inherit from, never holds it.

use liftoff_core::job::{
    GitCredential, GitRemoteKind, GitSource, check_git_rev, classify_git_remote, redact_git_remote,
    split_git_credential,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Legacy switch for [`GitPolicy::allow_http`], read by [`GitPolicy::from_config`]; prefer
/// `allow_http_git: true` in the launch config.
pub const ALLOW_HTTP_GIT_ENV: &str = "LIFTOFF_AGENT_ALLOW_HTTP_GIT";

/// Kept of a git step's stderr for the error, from the end (where git says what failed).
const STDERR_KEPT: usize = 4 * 1024;
/// Kept of a git step's stdout; we only read short answers such as `rev-parse`.
const STDOUT_KEPT: usize = 64 * 1024;

/// What the agent lets a git source do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPolicy {
    /// Allow plain `http://` remotes and submodules (launch config `allow_http_git: true`).
    pub allow_http: bool,
    /// Longest any one git step (fetch, checkout, submodule update, ...) may take.
    pub step_timeout: Duration,
}

impl Default for GitPolicy {
    /// `https://`, `ssh://` and `user@host:path` only, ten minutes per step.
    fn default() -> Self {
        Self { allow_http: false, step_timeout: Duration::from_secs(600) }
    }
}

impl GitPolicy {
    /// The policy for the launch config's `allow_http_git`; `LIFTOFF_AGENT_ALLOW_HTTP_GIT=1`
    /// in the agent's environment also allows http (kept for agents configured the old way).
    pub fn from_config(allow_http_git: bool) -> Self {
        let from_env = std::env::var(ALLOW_HTTP_GIT_ENV).is_ok_and(|v| v == "1");
        Self { allow_http: allow_http_git || from_env, ..Self::default() }
    }
}

/// What [`fetch_git`] checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOut {
    /// The branch, tag or commit checked out: the source's `commit`, or `main`/`master`.
    pub rev: String,
    /// The full SHA of the commit now checked out.
    pub sha: String,
    /// True when the source's `commit` was not found and `rev` is `main` or `master`.
    pub fallback: bool,
}

/// Why a git source could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The remote is not an allowed form; returned before any process is spawned.
    /// `remote` is shown with any password redacted.
    #[error(
        "refusing to fetch git remote '{remote}': only https://, ssh:// and user@host:path remotes are allowed ({reason})"
    )]
    RefusedRemote { remote: String, reason: String },
    /// The source's `commit` is neither a SHA nor a branch or tag name; returned before any
    /// process is spawned.
    #[error("refusing git commit '{commit}': {reason}")]
    RefusedCommit { commit: String, reason: &'static str },
    /// The target directory exists and is not empty; nothing was spawned.
    #[error("git checkout directory {dir} is not empty")]
    DirNotEmpty { dir: String },
    /// A git step (`init`, `fetch`, `checkout`, ...) exited unsuccessfully; `stderr` is its
    /// last few KiB, with the remote's password redacted.
    #[error("git {step} failed: {stderr}")]
    Git { step: &'static str, stderr: String },
    /// The source's `commit` is not a branch, tag or commit of the remote, and the remote has
    /// neither `main` nor `master`.
    #[error(
        "unable to determine branch or commit to checkout: '{commit}' is not a branch, tag or commit of '{remote}', which has neither main nor master"
    )]
    NoCheckoutTarget { remote: String, commit: String },
    /// `git submodule update --init --recursive` failed, e.g. a submodule uses `file://`,
    /// a local path or a transport the policy does not allow.
    #[error("unable to update submodules: {stderr}")]
    Submodules { stderr: String },
    /// `git apply` refused the job's `diff.patch`: it does not apply, or touches paths
    /// outside the checkout.
    #[error("failed to apply diff.patch: {stderr}")]
    Patch { stderr: String },
    /// A git step ran longer than [`GitPolicy::step_timeout`]; its processes were killed.
    #[error("git {step} timed out after {} s", after.as_secs())]
    Timeout { step: &'static str, after: Duration },
    /// git could not be started or talked to, or the directory could not be created.
    #[error("failed to run git {step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a remote before any process is spawned: only `https://`, `ssh://` and
/// `user@host:path`, plus `http://` when the policy allows it. The error names the remote,
/// with any password redacted, and says which forms are allowed.
pub fn check_git_remote(remote: &str, policy: &GitPolicy) -> Result<(), GitError> {
    let refused = |reason: String| GitError::RefusedRemote { remote: redact_git_remote(remote), reason };
    match classify_git_remote(remote) {
        Ok(GitRemoteKind::Http) if !policy.allow_http => {
            Err(refused("plain http:// needs `allow_http_git: true` in the launch config".into()))
        }
        Ok(_) => Ok(()),
        Err(why) => Err(refused(why.to_string())),
    }
}

/// Fetches `src.remote` into the empty (or missing) directory `dir` and checks out
/// `src.commit` — as the branch `origin/<commit>` when there is one, else as a tag or commit —
/// else `main`, else `master`; then updates submodules recursively under the same rules and
/// applies `patch` (the bytes of a `git diff`) with `git apply` when given.
/// Dropping the future kills every git process it started.
pub async fn fetch_git(
    src: &GitSource,
    dir: &Path,
    patch: Option<&[u8]>,
    policy: &GitPolicy,
) -> Result<CheckedOut, GitError> {
    check_git_remote(&src.remote, policy)?;
    // Empty means "whatever main or master is"; anything else must not be revision syntax.
    if !src.commit.is_empty() {
        check_git_rev(&src.commit)
            .map_err(|reason| GitError::RefusedCommit { commit: src.commit.escape_debug().to_string(), reason })?;
    }
    let prepare = |source| GitError::Io { step: "directory", source };
    std::fs::create_dir_all(dir).map_err(prepare)?;
    if std::fs::read_dir(dir).map_err(prepare)?.next().is_some() {
        return Err(GitError::DirNotEmpty { dir: dir.display().to_string() });
    }
    let (url, credential) = split_git_credential(&src.remote);
    let git = Git { dir, policy, remote: &src.remote, credential: credential.as_ref() };

    git.ok("init", &["init", "--quiet", "--template="]).await?;
    git.ok("remote add", &["remote", "add", "origin", "--", &url]).await?;
    git.ok("fetch", &["fetch", "--quiet", "--tags", "--no-recurse-submodules", "origin"]).await?;

    let out = checkout(&git, &src.commit).await?;

    let sub = git.run("submodule update", &["submodule", "--quiet", "update", "--init", "--recursive"], None).await?;
    if !sub.success {
        return Err(GitError::Submodules { stderr: sub.stderr });
    }
    if let Some(patch) = patch {
        let applied = git.run("apply", &["apply", "--whitespace=nowarn"], Some(patch)).await?;
        if !applied.success {
            return Err(GitError::Patch { stderr: applied.stderr });
        }
    }
    Ok(out)
}

/// The branch `origin/<commit>`, else `commit` as a tag or commit, else `main`, else `master`.
async fn checkout(git: &Git<'_>, commit: &str) -> Result<CheckedOut, GitError> {
    if !commit.is_empty() {
        if let Some(sha) = git.commit_of(&format!("refs/remotes/origin/{commit}")).await? {
            return git.checkout_branch(commit, &sha, false).await;
        }
        if let Some(sha) = git.commit_of(commit).await? {
            git.ok("checkout", &["checkout", "--quiet", "--detach", &sha, "--"]).await?;
            return Ok(CheckedOut { rev: commit.to_string(), sha, fallback: false });
        }
    }
    for branch in ["main", "master"] {
        if let Some(sha) = git.commit_of(&format!("refs/remotes/origin/{branch}")).await? {
            return git.checkout_branch(branch, &sha, !commit.is_empty()).await;
        }
    }
    Err(GitError::NoCheckoutTarget { remote: redact_git_remote(git.remote), commit: commit.escape_debug().to_string() })
}

/// Runs the system `git` (the first in `PATH`) in one checkout directory, hardened.
struct Git<'a> {
    dir: &'a Path,
    policy: &'a GitPolicy,
    /// As the job names it (with any credential), for messages, which redact it.
    remote: &'a str,
    /// Handed to the steps that talk to the remote, never in argv (see the module's comment).
    credential: Option<&'a GitCredential>,
}

/// The environment variables the credential helper reads; set on one git process only.
const USERNAME_ENV: &str = "LIFTOFF_GIT_USERNAME";
const PASSWORD_ENV: &str = "LIFTOFF_GIT_PASSWORD";
/// git runs it as `sh -c '<helper> "$@"' <helper> get|store|erase`; only `get` answers.
/// `test` and `printf` are builtins of every `sh` git runs it with (dash, bash, busybox), so
/// the values never become a process's argv.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || return 0; \
     printf 'username=%s\\npassword=%s\\n' \"$LIFTOFF_GIT_USERNAME\" \"$LIFTOFF_GIT_PASSWORD\"; }; f";

/// The steps that talk to the remote, and so get the credential.
const NETWORK_STEPS: &[&str] = &["fetch", "submodule update"];

/// A finished git step.
struct Finished {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Git<'_> {
    /// Runs a step that must succeed.
    async fn ok(&self, step: &'static str, args: &[&str]) -> Result<Finished, GitError> {
        let out = self.run(step, args, None).await?;
        if out.success { Ok(out) } else { Err(GitError::Git { step, stderr: out.stderr }) }
    }

    /// The full SHA of the commit `rev` names, if it names one.
    async fn commit_of(&self, rev: &str) -> Result<Option<String>, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let out = self.run("rev-parse", &["rev-parse", "--verify", "--quiet", "--end-of-options", &spec], None).await?;
        Ok(out.success.then(|| out.stdout.trim().to_string()))
    }

    async fn checkout_branch(&self, branch: &str, sha: &str, fallback: bool) -> Result<CheckedOut, GitError> {
        self.ok("checkout", &["checkout", "--quiet", "--no-track", "-B", branch, sha, "--"]).await?;
        Ok(CheckedOut { rev: branch.to_string(), sha: sha.to_string(), fallback })
    }

    /// Runs `git <hardening> <args>` with `stdin` (or nothing) as its input, and returns how it ended.
    async fn run(&self, step: &'static str, args: &[&str], stdin: Option<&[u8]>) -> Result<Finished, GitError> {
        let credential = self.credential.filter(|_| NETWORK_STEPS.contains(&step));
        let mut cmd = self.command(args, credential);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().map_err(|source| GitError::Io { step, source })?;
        // Its own process group, so that helpers it starts (git-remote-https, ssh) die with it.
        let _group = child.id().map(|pid| KillGroupOnDrop(Pid::from_raw(pid.cast_signed())));
        let (mut input, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let finished = async {
            let feed = async {
                if let (Some(w), Some(bytes)) = (input.as_mut(), stdin) {
                    // git may exit before reading it all (a bad patch); its exit status says why.
                    let _ = w.write_all(bytes).await;
                }
                drop(input.take());
            };
            let (status, out, err, ()) =
                tokio::join!(child.wait(), read_tail(stdout, STDOUT_KEPT), read_tail(stderr, STDERR_KEPT), feed);
            (status, out, err)
        };
        let (status, stdout, stderr) = tokio::time::timeout(self.policy.step_timeout, finished)
            .await
            .map_err(|_| GitError::Timeout { step, after: self.policy.step_timeout })?;
        let status = status.map_err(|source| GitError::Io { step, source })?;
        Ok(Finished {
            success: status.success(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: self.redact(&stderr),
        })
    }

    /// The hardened command for `args`; with `credential`, the helper that answers it.
    fn command(&self, args: &[&str], credential: Option<&GitCredential>) -> Command {
        let allowed = if self.policy.allow_http { "https:ssh:http" } else { "https:ssh" };
        let mut config = vec![
            // Only the transports the policy allows, for the fetch and every submodule.
            "protocol.allow=never",
            "protocol.https.allow=always",
            "protocol.ssh.allow=always",
            "protocol.file.allow=never",
            "protocol.ext.allow=never",
            // Nothing from the repository or the machine runs: no hooks, no fsmonitor command.
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "submodule.recurse=false",
            "advice.detachedHead=false",
        ];
        if self.policy.allow_http {
            config.push("protocol.http.allow=always");
        }
        let mut cmd = Command::new("git");
        for c in config {
            cmd.arg("-c").arg(c);
        }
        cmd.args(args).current_dir(self.dir);
        // Ignore the agent user's git environment (GIT_DIR, GIT_CONFIG_*, GIT_SSL_NO_VERIFY, ...)
        // except how to reach ssh and which CAs to trust.
        for (key, _) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            if key_str.starts_with("GIT_") && !KEPT_GIT_ENV.contains(&key_str.as_ref()) {
                cmd.env_remove(&key);
            }
        }
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            // No passphrase, password or host-key prompt can be answered here.
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        cmd.env_remove("LIFTOFF_API_KEY")
            .env_remove("SSH_ASKPASS")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            // Overrides protocol.* from any config git might still read.
            .env("GIT_ALLOW_PROTOCOL", allowed)
            .env_remove(USERNAME_ENV)
            .env_remove(PASSWORD_ENV)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(c) = credential {
            // The empty helper first drops any helper configured elsewhere; the key is passed
            // apart from its value, so no host can be read as part of it.
            cmd.env("GIT_CONFIG_COUNT", "2")
                .env("GIT_CONFIG_KEY_0", "credential.helper")
                .env("GIT_CONFIG_VALUE_0", "")
                .env("GIT_CONFIG_KEY_1", format!("credential.{}.helper", c.origin))
                .env("GIT_CONFIG_VALUE_1", CREDENTIAL_HELPER)
                .env(USERNAME_ENV, &c.username)
                .env(PASSWORD_ENV, &c.password);
        }
        cmd
    }

    /// git's message, with the remote's credential replaced wherever it appears (git is
    /// never given it in a URL, so this is a second line of defence).
    fn redact(&self, stderr: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(stderr).trim().to_string();
        if let Some(c) = self.credential {
            // A lone user name is the secret when there is no password (a token).
            let secret = if c.password.is_empty() { &c.username } else { &c.password };
            if !secret.is_empty() {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

/// Environment variables passed through to git: how to run ssh and which CAs to trust.
const KEPT_GIT_ENV: &[&str] = &["GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH"];

/// SIGKILLs a process group when dropped: a git step that timed out or whose future was dropped.
struct KillGroupOnDrop(Pid);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        // After a normal exit this is usually ESRCH (nothing left); otherwise it stops stragglers.
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// Reads `from` to its end, keeping the last `keep` bytes (prefixed by `…` when cut).
async fn read_tail(from: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let Some(mut from) = from else { return Vec::new() };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                    cut = true;
                }
            }
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
        cut = true;
    }
    if cut {
        kept.splice(0..0, "…".bytes());
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_are_checked_against_the_policy() {
        let strict = GitPolicy::default();
        let http = GitPolicy { allow_http: true, ..GitPolicy::default() };
        for ok in ["https://example.com/a.git", "ssh://git@example.com/a.git", "git@example.com:a/b.git"] {
            assert!(check_git_remote(ok, &strict).is_ok(), "{ok}");
        }
        let e = check_git_remote("http://example.com/a.git", &strict).unwrap_err().to_string();
        assert!(e.contains("'http://example.com/a.git'") && e.contains("allow_http_git"), "{e}");
        assert!(check_git_remote("http://example.com/a.git", &http).is_ok());
        for bad in ["file:///etc", "ext::sh", "-uhttps://x", "/tmp/repo", "fd::3", "git://example.com/a"] {
            let e = check_git_remote(bad, &http).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "refusing to fetch git remote '{bad}': only https://, ssh:// and user@host:path"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn the_credential_is_in_the_fetch_environment_only() {
        let remote = "https://alice:s3cr%2Ft@example.com:8443/a.git";
        let (url, credential) = split_git_credential(remote);
        let policy = GitPolicy::default();
        let git = Git { dir: Path::new("/nonexistent"), policy: &policy, remote, credential: credential.as_ref() };
        let with = git.command(&["fetch", "origin"], credential.as_ref());
        let argv: Vec<String> = with.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(argv.iter().all(|a| !a.contains("s3cr") && !a.contains("alice")), "{argv:?}");
        let env: std::collections::HashMap<String, Option<String>> = with
            .as_std()
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        assert_eq!(env[PASSWORD_ENV].as_deref(), Some("s3cr/t"));
        assert_eq!(env[USERNAME_ENV].as_deref(), Some("alice"));
        assert_eq!(env["GIT_CONFIG_KEY_1"].as_deref(), Some("credential.https://example.com:8443.helper"));
        let secret_vars: Vec<_> =
            env.iter().filter(|(_, v)| v.as_deref().is_some_and(|v| v.contains("s3cr"))).map(|(k, _)| k).collect();
        assert_eq!(secret_vars, [PASSWORD_ENV]);
        assert_eq!(url, "https://example.com:8443/a.git");

        // Other steps get no credential, and the agent's own variables of that name are dropped.
        let without = git.command(&["checkout"], None);
        let env: Vec<_> = without.as_std().get_envs().filter(|(k, _)| *k == PASSWORD_ENV).collect();
        assert_eq!(env, [(std::ffi::OsStr::new(PASSWORD_ENV), None)]);
    }

    #[tokio::test]
    async fn output_is_kept_from_the_end() {
        let text: Vec<u8> = (0..20_000u32).flat_map(|i| format!("{i}\n").into_bytes()).collect();
        let kept = read_tail(Some(&text[..]), 100).await;
        let kept = String::from_utf8(kept).unwrap();
        assert!(kept.starts_with('…') && kept.ends_with("19999\n"), "{kept}");
        assert_eq!(kept.len(), 100 + '…'.len_utf8());
        assert_eq!(read_tail(Some(&b"short"[..]), 100).await, b"short");
    }
}
