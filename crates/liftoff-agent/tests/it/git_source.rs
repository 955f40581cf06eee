//! Git job sources fetched with the real `git` from a loopback smart-HTTP
//! server (`git http-backend`), plus the refusals that must happen before any
//! git process starts (reference §3.1 and §8 item 53).

#[path = "support/git_http.rs"]
mod git_http;
use crate::support;

use git_http::{GitHttpServer, WorkRepo, git};
use liftoff_agent::{CheckedOut, GitError, GitPolicy, check_git_remote, fetch_git};
use liftoff_core::job::GitSource;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A temporary directory with `repos/` served over loopback HTTP.
struct Fixture {
    tmp: TempDir,
    server: GitHttpServer,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("repos")).unwrap();
        let server = GitHttpServer::start(&tmp.path().join("repos"));
        Self { tmp, server }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A work repository on `branch`, to fill and then [`Fixture::publish`].
    fn work(&self, name: &str, branch: &str) -> WorkRepo {
        WorkRepo::init(&self.path(&format!("work-{name}")), branch)
    }

    /// Serves `work` as `<name>.git` and returns its URL.
    fn publish(&self, work: &WorkRepo, name: &str) -> String {
        work.publish(&self.server.root, &format!("{name}.git"));
        self.server.url(&format!("{name}.git"))
    }

    /// A fresh checkout directory that does not exist yet.
    fn checkout_dir(&self) -> PathBuf {
        let dir = tempfile::Builder::new().prefix("checkout-").tempdir_in(self.tmp.path()).unwrap().keep();
        std::fs::remove_dir(&dir).unwrap();
        dir
    }
}

fn source(remote: &str, commit: &str) -> GitSource {
    GitSource {
        remote: remote.into(),
        commit: commit.into(),
        entrypoint: vec!["sh".into(), "run.sh".into()],
        diff_patch: None,
        build_context: None,
        dockerfile: None,
        base_image: None,
    }
}

fn http() -> GitPolicy {
    GitPolicy { allow_http: true, ..GitPolicy::default() }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

/// main: v1 then v2 (tag `v1` on the first); `feature` branches from v1.
struct History {
    url: String,
    v1: String,
    v2: String,
}

fn history(f: &Fixture) -> History {
    let w = f.work("history", "main");
    let v1 = w.commit_file("hello.txt", "v1\n");
    w.git(&["tag", "v1"]);
    let v2 = w.commit_file("hello.txt", "v2\n");
    w.git(&["checkout", "--quiet", "-b", "feature", &v1]);
    w.commit_file("hello.txt", "feature\n");
    w.git(&["checkout", "--quiet", "main"]);
    History { url: f.publish(&w, "history"), v1, v2 }
}

#[tokio::test]
async fn a_commit_sha_is_checked_out() {
    let f = Fixture::new();
    let h = history(&f);
    let dir = f.checkout_dir();
    let out = fetch_git(&source(&h.url, &h.v1), &dir, None, &http()).await.unwrap();
    assert_eq!(out, CheckedOut { rev: h.v1.clone(), sha: h.v1.clone(), fallback: false });
    assert_eq!(read(&dir, "hello.txt"), "v1\n");
    assert!(f.server.requests.lock().unwrap().iter().any(|r| r.contains("git-upload-pack")), "fetched over http");

    // A short SHA works too.
    let dir = f.checkout_dir();
    let out = fetch_git(&source(&h.url, &h.v2[..7]), &dir, None, &http()).await.unwrap();
    assert_eq!((out.sha.as_str(), out.fallback), (h.v2.as_str(), false));
    assert_eq!(read(&dir, "hello.txt"), "v2\n");
}

#[tokio::test]
async fn a_branch_or_tag_name_is_checked_out() {
    let f = Fixture::new();
    let h = history(&f);
    let dir = f.checkout_dir();
    let out = fetch_git(&source(&h.url, "feature"), &dir, None, &http()).await.unwrap();
    assert_eq!((out.rev.as_str(), out.fallback), ("feature", false));
    assert_eq!(read(&dir, "hello.txt"), "feature\n");
    assert_eq!(
        git(&dir, &["symbolic-ref", "HEAD"]),
        "refs/heads/feature",
        "on a local branch named like the remote one"
    );

    let dir = f.checkout_dir();
    let out = fetch_git(&source(&h.url, "v1"), &dir, None, &http()).await.unwrap();
    assert_eq!(out, CheckedOut { rev: "v1".into(), sha: h.v1.clone(), fallback: false });
    assert_eq!(read(&dir, "hello.txt"), "v1\n");
}

#[tokio::test]
async fn a_missing_commit_falls_back_to_main_then_master() {
    let f = Fixture::new();
    let h = history(&f);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let dir = f.checkout_dir();
    let out = fetch_git(&source(&h.url, missing), &dir, None, &http()).await.unwrap();
    assert_eq!(out, CheckedOut { rev: "main".into(), sha: h.v2.clone(), fallback: true });
    assert_eq!(read(&dir, "hello.txt"), "v2\n");

    let w = f.work("old", "master");
    let sha = w.commit_file("hello.txt", "master\n");
    let url = f.publish(&w, "old");
    let dir = f.checkout_dir();
    let out = fetch_git(&source(&url, "no-such-branch"), &dir, None, &http()).await.unwrap();
    assert_eq!(out, CheckedOut { rev: "master".into(), sha, fallback: true });
    assert_eq!(read(&dir, "hello.txt"), "master\n");
}

#[tokio::test]
async fn without_the_commit_main_or_master_there_is_nothing_to_check_out() {
    let f = Fixture::new();
    let w = f.work("dev-only", "dev");
    w.commit_file("hello.txt", "dev\n");
    f.publish(&w, "dev-only");
    // The password must not leak into the message either.
    let url = format!("http://alice:s3cret@127.0.0.1:{}/dev-only.git", f.server.port);
    let err = fetch_git(&source(&url, "v9"), &f.checkout_dir(), None, &http()).await.unwrap_err();
    assert!(matches!(err, GitError::NoCheckoutTarget { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("unable to determine branch or commit to checkout: 'v9'"), "{msg}");
    assert!(msg.contains("alice:***@127.0.0.1") && !msg.contains("s3cret"), "{msg}");
}

#[tokio::test]
async fn http_submodules_are_checked_out_recursively() {
    let f = Fixture::new();
    let leaf = f.work("leaf", "main");
    leaf.commit_file("leaf.txt", "leaf\n");
    let leaf_url = f.publish(&leaf, "leaf");
    let mid = f.work("mid", "main");
    mid.commit_file("mid.txt", "mid\n");
    mid.git(&["submodule", "--quiet", "add", "--", &leaf_url, "leaf"]);
    mid.commit("add leaf");
    let mid_url = f.publish(&mid, "mid");
    let top = f.work("top", "main");
    top.commit_file("top.txt", "top\n");
    top.git(&["submodule", "--quiet", "add", "--", &mid_url, "mid"]);
    let sha = top.commit("add mid");
    let url = f.publish(&top, "top");

    let dir = f.checkout_dir();
    let out = fetch_git(&source(&url, &sha), &dir, None, &http()).await.unwrap();
    assert!(!out.fallback);
    assert_eq!(read(&dir, "top.txt"), "top\n");
    assert_eq!(read(&dir, "mid/mid.txt"), "mid\n");
    assert_eq!(read(&dir, "mid/leaf/leaf.txt"), "leaf\n");
}

#[tokio::test]
async fn submodules_over_disallowed_transports_are_refused() {
    let f = Fixture::new();
    let leaf = f.work("leaf", "main");
    let leaf_sha = leaf.commit_file("leaf.txt", "leaf\n");
    f.publish(&leaf, "leaf");
    let leaf_path = f.server.root.join("leaf.git");
    let pwned = f.path("pwned");
    // Nothing listens there: refused by policy, git would otherwise fail to connect (not hang).
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (name, sub_url, transport) in [
        ("file-sub", format!("file://{}", leaf_path.display()), "file"),
        ("path-sub", leaf_path.display().to_string(), "file"),
        // git itself allows git:// by default; the policy does not.
        ("git-sub", format!("git://127.0.0.1:{closed_port}/leaf.git"), "git"),
        ("ext-sub", format!("ext::sh -c touch% {}", pwned.display()), "ext"),
    ] {
        // Written by hand: `git submodule add` would refuse or try to clone these.
        let top = f.work(name, "main");
        top.commit_file("top.txt", "top\n");
        let gitmodules = format!("[submodule \"leaf\"]\n\tpath = leaf\n\turl = {sub_url}\n");
        std::fs::write(top.dir.join(".gitmodules"), gitmodules).unwrap();
        top.git(&["add", ".gitmodules"]);
        top.git(&["update-index", "--add", "--cacheinfo", &format!("160000,{leaf_sha},leaf")]);
        let sha = top.commit("add leaf");
        let url = f.publish(&top, name);
        let dir = f.checkout_dir();
        let err = fetch_git(&source(&url, &sha), &dir, None, &http()).await.unwrap_err();
        assert!(matches!(err, GitError::Submodules { .. }), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("unable to update submodules: "), "{msg}");
        assert!(msg.contains(&format!("transport '{transport}' not allowed")), "{name}: {msg}");
        assert!(!dir.join("leaf/leaf.txt").exists(), "{name}: the submodule was not cloned");
    }
    assert!(!pwned.exists(), "ext:: ran a command");
}

const PATCH: &str = "\
diff --git a/hello.txt b/hello.txt
--- a/hello.txt
+++ b/hello.txt
@@ -1 +1 @@
-v2
+patched
diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+new
";

#[tokio::test]
async fn a_diff_patch_is_applied_after_checkout() {
    let f = Fixture::new();
    let h = history(&f);
    let dir = f.checkout_dir();
    fetch_git(&source(&h.url, "main"), &dir, Some(PATCH.as_bytes()), &http()).await.unwrap();
    assert_eq!(read(&dir, "hello.txt"), "patched\n");
    assert_eq!(read(&dir, "new.txt"), "new\n");

    // Against v1 the context does not match.
    let dir = f.checkout_dir();
    let err = fetch_git(&source(&h.url, "v1"), &dir, Some(PATCH.as_bytes()), &http()).await.unwrap_err();
    assert!(matches!(err, GitError::Patch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("failed to apply diff.patch: ") && msg.contains("hello.txt"), "{msg}");
    assert_eq!(read(&dir, "hello.txt"), "v1\n", "nothing was half-applied");
    assert!(!dir.join("new.txt").exists());
}

#[tokio::test]
async fn a_diff_patch_cannot_write_outside_the_checkout() {
    let f = Fixture::new();
    let outside = f.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let w = f.work("links", "main");
    w.commit_file("hello.txt", "hello\n");
    std::os::unix::fs::symlink(&outside, w.dir.join("out")).unwrap();
    w.git(&["add", "out"]);
    w.commit("a symlink out of the tree");
    let url = f.publish(&w, "links");

    let escape = "\
diff --git a/../escape.txt b/../escape.txt
new file mode 100644
--- /dev/null
+++ b/../escape.txt
@@ -0,0 +1 @@
+pwned
";
    let through_link = escape.replace("../escape.txt", "out/escape.txt");
    let into_git = escape.replace("../escape.txt", ".git/hooks/post-checkout");
    for patch in [escape.to_string(), through_link, into_git] {
        let dir = f.checkout_dir();
        let err = fetch_git(&source(&url, "main"), &dir, Some(patch.as_bytes()), &http()).await.unwrap_err();
        assert!(matches!(err, GitError::Patch { .. }), "{err:?}");
        assert!(!dir.parent().unwrap().join("escape.txt").exists());
        assert!(!dir.join(".git/hooks/post-checkout").exists());
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written through the symlink");
}

#[tokio::test]
async fn the_users_git_config_and_environment_are_ignored() {
    // Rewrites a.git to b.git through every config source a user has; a child process of this
    // test binary gets them in its environment (changing our own would need `unsafe`).
    let f = Fixture::new();
    let a = f.work("a", "main");
    let a_sha = a.commit_file("which.txt", "a\n");
    let a_url = f.publish(&a, "a");
    let b = f.work("b", "main");
    let b_sha = b.commit_file("which.txt", "b\n");
    let b_url = f.publish(&b, "b");
    let home = f.path("home");
    let rewrite = format!("[url \"{b_url}\"]\n\tinsteadOf = {a_url}\n");
    std::fs::create_dir_all(home.join(".config/git")).unwrap();
    std::fs::write(home.join(".gitconfig"), &rewrite).unwrap();
    std::fs::write(home.join(".config/git/config"), &rewrite).unwrap();
    let out = run_child(
        "child_fetch_under_the_users_git_config",
        &[
            ("HOME", home.display().to_string()),
            ("XDG_CONFIG_HOME", home.join(".config").display().to_string()),
            ("GIT_CONFIG_GLOBAL", home.join(".gitconfig").display().to_string()),
            ("GIT_CONFIG_COUNT", "1".into()),
            ("GIT_CONFIG_KEY_0", format!("url.{b_url}.insteadOf")),
            ("GIT_CONFIG_VALUE_0", a_url.clone()),
            ("LIFTOFF_TEST_REMOTE", a_url),
            ("LIFTOFF_TEST_DIR", f.checkout_dir().display().to_string()),
            ("LIFTOFF_TEST_A", a_sha),
            ("LIFTOFF_TEST_B", b_sha),
        ],
    );
    assert!(out.contains("child: plain git followed the rewrite; fetch_git did not"), "{out}");
}

#[ignore = "run in a child process by the_users_git_config_and_environment_are_ignored"]
#[tokio::test]
async fn child_fetch_under_the_users_git_config() {
    let Ok(remote) = std::env::var("LIFTOFF_TEST_REMOTE") else { return };
    let var = |k: &str| std::env::var(k).unwrap();
    // Sanity: the config is in effect for git as the user would run it.
    let plain =
        std::process::Command::new("git").args(["ls-remote", "--", &remote, "refs/heads/main"]).output().unwrap();
    let listed = String::from_utf8_lossy(&plain.stdout);
    assert!(listed.starts_with(&var("LIFTOFF_TEST_B")), "plain git should read the rewrite: {listed}");
    let dir = PathBuf::from(var("LIFTOFF_TEST_DIR"));
    let out = fetch_git(&source(&remote, "main"), &dir, None, &http()).await.unwrap();
    assert_eq!(out.sha, var("LIFTOFF_TEST_A"));
    assert_eq!(read(&dir, "which.txt"), "a\n");
    println!("child: plain git followed the rewrite; fetch_git did not");
}

/// Remotes refused by §8 item 53 (and more), each with the reason's key words.
const REFUSED: &[(&str, &str)] = &[
    ("file:///etc", "file://"),
    ("file://localhost/srv/repo.git", "file://"),
    ("ext::sh", "remote helper 'ext::'"),
    ("EXT::sh", "remote helper 'EXT::'"),
    ("ext::sh -c touch% /tmp/pwned", "whitespace"),
    ("fd::3", "remote helper 'fd::'"),
    ("fd::3,4", "remote helper 'fd::'"),
    ("git://example.com/repo.git", "git://"),
    ("http://example.com/repo.git", "allow_http_git"),
    ("/srv/git/repo.git", "local path"),
    ("./repo", "local path"),
    ("../repo", "local path"),
    ("repo", "local path"),
    ("C:\\repo", "local path"),
    ("-uhttps://example.com", "starts with '-'"),
    ("--upload-pack=touch /tmp/pwned", "starts with '-'"),
    ("  -x", "starts with '-'"),
    ("https://example.com/a\nb", "control"),
    ("https://example.com/a b", "whitespace"),
    ("ssh://-oProxyCommand=touch/x", "starts with '-'"),
    ("git@-oProxyCommand=x:repo", "starts with '-'"),
    ("example.com:repo", "need a user"),
];

#[test]
fn allowed_and_refused_remotes() {
    let strict = GitPolicy::default();
    for ok in
        ["https://github.com/acme/repo.git", "ssh://git@example.com:2222/acme/repo.git", "git@example.com:acme/repo"]
    {
        assert!(check_git_remote(ok, &strict).is_ok(), "{ok}");
    }
    assert!(check_git_remote("http://example.com/repo.git", &http()).is_ok());
    for (bad, why) in REFUSED {
        let err = check_git_remote(bad, &strict).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, GitError::RefusedRemote { .. }), "{bad}: {err:?}");
        assert!(msg.contains("only https://, ssh:// and user@host:path remotes are allowed"), "{msg}");
        assert!(msg.contains(why), "{bad:?}: {msg}");
        assert!(!msg.contains('\n'), "control characters are escaped: {msg}");
    }
    let msg = check_git_remote("http://alice:s3cret@example.com/a.git", &strict).unwrap_err().to_string();
    assert!(
        msg.starts_with("refusing to fetch git remote 'http://alice:***@example.com/a.git'") && !msg.contains("s3cret"),
        "{msg}"
    );
}

#[test]
fn refused_remotes_spawn_no_git() {
    // PATH holds only a fake `git` that records each run; a child process gets it.
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let marker = tmp.path().join("git-ran");
    let fake = bin.join("git");
    std::fs::write(&fake, format!("#!/bin/sh\necho \"$*\" >> '{}'\nexit 1\n", marker.display())).unwrap();
    let mut perms = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).unwrap();
    let out = run_child(
        "child_refusals_under_a_recording_git",
        &[
            ("PATH", bin.display().to_string()),
            ("LIFTOFF_TEST_MARKER", marker.display().to_string()),
            ("LIFTOFF_TEST_DIR", tmp.path().join("work").display().to_string()),
        ],
    );
    assert!(out.contains("child: refused without git; allowed remotes ran the fake git"), "{out}");
}

#[ignore = "run in a child process by refused_remotes_spawn_no_git"]
#[tokio::test]
async fn child_refusals_under_a_recording_git() {
    let Ok(marker) = std::env::var("LIFTOFF_TEST_MARKER") else { return };
    let marker = PathBuf::from(marker);
    let work = PathBuf::from(std::env::var("LIFTOFF_TEST_DIR").unwrap());
    let strict = GitPolicy::default();
    for (i, (bad, _)) in REFUSED.iter().enumerate() {
        let dir = work.join(format!("r{i}"));
        let err = fetch_git(&source(bad, "main"), &dir, None, &strict).await.unwrap_err();
        assert!(matches!(err, GitError::RefusedRemote { .. }), "{bad}: {err:?}");
        assert!(!dir.exists(), "{bad}: nothing was created");
    }
    for bad_commit in ["--output=/tmp/x", "HEAD~1", "main@{upstream}", ":/fix", "a..b", "a b"] {
        let err = fetch_git(&source("https://example.com/a.git", bad_commit), &work.join("c"), None, &strict)
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::RefusedCommit { .. }), "{bad_commit}: {err:?}");
    }
    let busy = work.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "").unwrap();
    let err = fetch_git(&source("https://example.com/a.git", "main"), &busy, None, &strict).await.unwrap_err();
    assert!(matches!(err, GitError::DirNotEmpty { .. }), "{err:?}");
    assert!(!marker.exists(), "git ran: {}", std::fs::read_to_string(&marker).unwrap_or_default());

    // Sanity: allowed remotes do reach the (fake) git, so the marker would have caught a spawn.
    for (i, ok) in
        ["https://example.com/a.git", "ssh://git@example.com/a.git", "git@example.com:a.git"].iter().enumerate()
    {
        let err = fetch_git(&source(ok, "main"), &work.join(format!("ok{i}")), None, &strict).await.unwrap_err();
        assert!(matches!(err, GitError::Git { step: "init", .. }), "{ok}: {err:?}");
    }
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(ran.lines().filter(|l| l.contains(" init --quiet")).count(), 3, "{ran}");
    assert!(ran.contains("-c protocol.file.allow=never -c protocol.ext.allow=never"), "{ran}");
    println!("child: refused without git; allowed remotes ran the fake git");
}

/// Runs one `#[ignore]`d test of this binary in a child process with `env` added; returns its
/// stdout after checking that exactly that test ran and passed.
fn run_child(test: &str, env: &[(&str, String)]) -> String {
    // libtest names a test by its module path without the crate's name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = format!("{module}::{test}");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("1 passed"), "child {test} failed:\n{stdout}\n{stderr}");
    stdout
}

/// A TCP listener that accepts and never answers; reports each connection.
fn silent_listener() -> (u16, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = vec![];
        for sock in listener.incoming() {
            held.push(sock);
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

/// Live processes (not zombies) started for `dir` or talking to `port`: git (whose working
/// directory is `dir`) and its helpers (whose command line names the port).
fn processes_for(dir: &Path, port: u16) -> Vec<String> {
    let needle = format!("127.0.0.1:{port}");
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = entry.path();
        if !entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let in_dir = std::fs::read_link(p.join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
        if !cmdline.is_empty() && (in_dir || cmdline.contains(&needle)) {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

async fn wait_until_gone(dir: &Path, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_for(dir, port);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "git processes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dropping_the_future_kills_git_and_its_helpers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkout");
    let (port, connected) = silent_listener();
    let src = source(&format!("http://127.0.0.1:{port}/repo.git"), "main");
    let policy = http();
    let mut fetch = Box::pin(fetch_git(&src, &dir, None, &policy));
    let connected = tokio::task::spawn_blocking(move || connected.recv_timeout(Duration::from_secs(20)).is_ok());
    tokio::select! {
        r = &mut fetch => panic!("the fetch ended: {r:?}"),
        ok = connected => assert!(ok.unwrap(), "git never connected"),
    }
    tokio::select! {
        r = &mut fetch => panic!("the fetch ended: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
    let running = processes_for(&dir, port);
    assert!(running.iter().any(|p| p.contains("remote-http")), "the helper runs: {running:?}");
    assert!(running.iter().any(|p| p.contains("fetch")), "git fetch runs: {running:?}");
    drop(fetch);
    wait_until_gone(&dir, port).await;
}

#[tokio::test]
async fn a_step_that_hangs_times_out_and_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkout");
    let (port, _connected) = silent_listener();
    let src = source(&format!("http://127.0.0.1:{port}/repo.git"), "main");
    let policy = GitPolicy { allow_http: true, step_timeout: Duration::from_secs(1) };
    let started = Instant::now();
    let err = fetch_git(&src, &dir, None, &policy).await.unwrap_err();
    assert!(matches!(err, GitError::Timeout { step: "fetch", .. }), "{err:?}");
    assert_eq!(err.to_string(), "git fetch timed out after 1 s");
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_until_gone(&dir, port).await;
}

#[tokio::test]
async fn a_missing_repository_fails_the_fetch_without_leaking_the_password() {
    let f = Fixture::new();
    let url = format!("http://alice:s3cret@127.0.0.1:{}/missing.git", f.server.port);
    let err = fetch_git(&source(&url, "main"), &f.checkout_dir(), None, &http()).await.unwrap_err();
    assert!(matches!(err, GitError::Git { step: "fetch", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("git fetch failed: ") && msg.contains("not found"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
}

/// The password of the private repositories below: characters that must be percent-encoded
/// in a URL, so that the agent has to decode it as git would.
const PASSWORD: &str = "s3cret/p@ss:w0rd";
const PASSWORD_IN_URL: &str = "s3cret%2Fp%40ss%3Aw0rd";

/// A server that requires `alice`:[`PASSWORD`], serving `private.git` (one file).
fn private_fixture() -> (TempDir, GitHttpServer, WorkRepo) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("repos")).unwrap();
    let server = GitHttpServer::start_with_basic_auth(&tmp.path().join("repos"), "alice", PASSWORD);
    let w = WorkRepo::init(&tmp.path().join("work-private"), "main");
    w.commit_file("hello.txt", "private\n");
    // What a job could look at: its checkout's git config and its environment.
    w.commit_file("run.sh", "cat .git/config\nenv\necho job-done\n");
    w.publish(&server.root, "private.git");
    (tmp, server, w)
}

/// Every file under `dir` (`.git` included) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let (path, ft) = (e.path(), e.file_type().unwrap());
            if ft.is_dir() {
                todo.push(path);
            } else if ft.is_file()
                && std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_private_remote_is_cloned_with_its_credential_kept_out_of_the_checkout() {
    let (tmp, server, _w) = private_fixture();
    let clean = server.url("private.git");
    let with_credential = format!("http://alice:{PASSWORD_IN_URL}@127.0.0.1:{}/private.git", server.port);

    // Sanity: the server does refuse a clone without the credential.
    let dir = tmp.path().join("anonymous");
    let err = fetch_git(&source(&clean, "main"), &dir, None, &http()).await.unwrap_err();
    assert!(matches!(err, GitError::Git { step: "fetch", .. }), "{err:?}");
    assert!(server.requests.lock().unwrap().iter().any(|r| r.starts_with("401 ")), "the server asked for auth");

    let dir = tmp.path().join("checkout");
    let out = fetch_git(&source(&with_credential, "main"), &dir, None, &http()).await.unwrap();
    assert_eq!((out.rev.as_str(), out.fallback), ("main", false));
    assert_eq!(read(&dir, "hello.txt"), "private\n");
    assert_eq!(git(&dir, &["config", "--get", "remote.origin.url"]), clean, "the remote is stored without its user");
    for secret in [PASSWORD, PASSWORD_IN_URL, "alice"] {
        assert_eq!(files_containing(&dir, secret), Vec::<PathBuf>::new(), "{secret} was written to disk");
    }
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_it() {
    let (tmp, server, _w) = private_fixture();
    let wrong = "not-the-Pa55word";
    let url = format!("http://alice:{wrong}@127.0.0.1:{}/private.git", server.port);
    let err = fetch_git(&source(&url, "main"), &tmp.path().join("checkout"), None, &http()).await.unwrap_err();
    assert!(matches!(err, GitError::Git { step: "fetch", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Authentication failed") && !msg.contains(wrong), "{msg}");
    assert!(!format!("{err:?}").contains(wrong), "{err:?}");
}

#[test]
fn git_argv_never_holds_the_credential() {
    // PATH starts with a `git` that records its argv (and whether the helper's variable is
    // set) and then runs the real git; a child process gets that PATH.
    let (tmp, server, _w) = private_fixture();
    let real_git = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git in PATH");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("argv.log");
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"${{LIFTOFF_GIT_PASSWORD:+[credential] }}$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_git.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let remote = format!("http://alice:{PASSWORD_IN_URL}@127.0.0.1:{}/private.git", server.port);
    let out = run_child(
        "child_fetch_through_a_recording_git",
        &[
            ("PATH", path.to_string_lossy().into_owned()),
            ("LIFTOFF_TEST_REMOTE", remote),
            ("LIFTOFF_TEST_DIR", tmp.path().join("checkout").display().to_string()),
        ],
    );
    assert!(out.contains("child: fetched through the recording git"), "{out}");
    let argv = std::fs::read_to_string(&log).unwrap();
    let clean = server.url("private.git");
    assert!(argv.contains(&format!(" remote add origin -- {clean}\n")), "{argv}");
    for secret in [PASSWORD, PASSWORD_IN_URL, "alice"] {
        assert!(!argv.contains(secret), "{secret} in git's argv:\n{argv}");
    }
    // Only the steps that talk to the remote get the credential, in their environment.
    for line in argv.lines() {
        let network = line.contains(" fetch ") || line.contains(" submodule ");
        assert_eq!(line.starts_with("[credential] "), network, "{line}");
    }
    assert!(argv.lines().any(|l| l.starts_with("[credential] ") && l.contains(" fetch ")), "{argv}");
}

#[ignore = "run in a child process by git_argv_never_holds_the_credential"]
#[tokio::test]
async fn child_fetch_through_a_recording_git() {
    let Ok(remote) = std::env::var("LIFTOFF_TEST_REMOTE") else { return };
    let dir = PathBuf::from(std::env::var("LIFTOFF_TEST_DIR").unwrap());
    fetch_git(&source(&remote, "main"), &dir, None, &http()).await.unwrap();
    assert_eq!(read(&dir, "hello.txt"), "private\n");
    println!("child: fetched through the recording git");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_git_job_runs_with_its_credential_out_of_the_jobs_reach() {
    use liftoff_core::api::LogStream;
    let (tmp, server, _w) = private_fixture();
    let r = support::rig().await;
    let remote = format!("http://alice:{PASSWORD_IN_URL}@127.0.0.1:{}/private.git", server.port);
    let source = liftoff_core::job::JobSourceSpec { git: Some(source(&remote, "main")), ..Default::default() };
    r.create_job("private", source).await;
    let id = r.launch("private").await;
    let opts = liftoff_agent::AgentOptions { allow_http_git: true, ..r.options(1, Duration::from_secs(5)) };
    let (stop, agent) = r.agent_with(opts);
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    let (stdout, stderr, agent_log) = (
        r.logs(&id, LogStream::Stdout).await,
        r.logs(&id, LogStream::Stderr).await,
        r.logs(&id, LogStream::Agent).await,
    );
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    assert_eq!(item.state, liftoff_core::ItemState::Finished, "{:?}\n{agent_log}\n{stderr}", item.reason);
    assert!(stdout.contains("job-done"), "{stdout}");
    let clean = server.url("private.git");
    assert!(stdout.contains(&format!("url = {clean}\n")), "the job's .git/config: {stdout}");
    assert!(stdout.contains("LIFTOFF_RUN_ID="), "the job's environment is in its log: {stdout}");
    let shown = format!("fetched http://alice:***@127.0.0.1:{}/private.git", server.port);
    assert!(agent_log.contains(&shown), "{agent_log}");
    for secret in [PASSWORD, PASSWORD_IN_URL] {
        for (name, text) in [("stdout", &stdout), ("stderr", &stderr), ("agent", &agent_log)] {
            assert!(!text.contains(secret), "{secret} in the run's {name} log: {text}");
        }
        assert_eq!(files_containing(&r.work, secret), Vec::<PathBuf>::new(), "{secret} in the agent's work dir");
    }
    drop(tmp);
}

#[tokio::test]
async fn the_credential_goes_to_submodules_on_the_same_origin_only() {
    let (tmp, server, _w) = private_fixture();
    // Another server with the same user and password, on another port: another origin.
    std::fs::create_dir(tmp.path().join("other")).unwrap();
    let other = GitHttpServer::start_with_basic_auth(&tmp.path().join("other"), "alice", PASSWORD);
    let sub = WorkRepo::init(&tmp.path().join("work-sub"), "main");
    sub.commit_file("sub.txt", "sub\n");
    sub.publish(&server.root, "sub.git");
    sub.publish(&other.root, "sub.git");
    // Added from disk, then pointed at a server: the test's own git has no credential.
    let with_submodule = |name: &str, sub_url: &str| {
        let top = WorkRepo::init(&tmp.path().join(format!("work-{name}")), "main");
        top.commit_file("top.txt", "top\n");
        top.git(&["submodule", "--quiet", "add", "--", &sub.dir.to_string_lossy(), "sub"]);
        top.git(&["config", "-f", ".gitmodules", "submodule.sub.url", sub_url]);
        top.git(&["add", ".gitmodules"]);
        top.commit("add sub");
        top.publish(&server.root, &format!("{name}.git"));
        format!("http://alice:{PASSWORD_IN_URL}@127.0.0.1:{}/{name}.git", server.port)
    };

    let same = with_submodule("same", &server.url("sub.git"));
    let dir = tmp.path().join("same-checkout");
    fetch_git(&source(&same, "main"), &dir, None, &http()).await.unwrap();
    assert_eq!(read(&dir, "sub/sub.txt"), "sub\n");
    for secret in [PASSWORD, PASSWORD_IN_URL] {
        assert_eq!(files_containing(&dir, secret), Vec::<PathBuf>::new(), "{secret} was written to disk");
    }

    let elsewhere = with_submodule("elsewhere", &other.url("sub.git"));
    let err = fetch_git(&source(&elsewhere, "main"), &tmp.path().join("elsewhere-checkout"), None, &http())
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::Submodules { .. }), "{err:?}");
    let asked = other.requests.lock().unwrap().clone();
    let refused = asked.iter().filter(|r| r.starts_with("401 ")).count();
    assert!(refused > 0 && refused * 2 == asked.len(), "every request refused: {asked:?}");
    assert!(!asked.iter().any(|r| r.contains("credentials")), "the other origin got no credential: {asked:?}");
}
