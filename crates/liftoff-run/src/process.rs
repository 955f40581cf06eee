//! The `local-process` runner: the entrypoint in its own process group,
//! under a supervisor (see [`crate::supervise`]) so that the run ends when its
//! main process does, a stop reaches everything it started, and nothing of it
//! outlives the agent.

use crate::lines::LineSplitter;
use crate::supervise;
use liftoff_core::api::LogStream;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The agent's variables a local process inherits; everything else it gets
/// comes from the run (`LIFTOFF_*`) or from the queue's `env`. Cloud
/// credentials, database URLs and the agent's own key are never passed on
/// unless a queue names them.
pub const INHERITED_ENV: [&str; 12] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
];

/// `INHERITED_ENV`, and the locale's `LC_*`.
pub fn inherited(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| INHERITED_ENV.contains(&n) || n.starts_with("LC_"))
}

/// A started process and the tasks reading its output.
pub struct RunningProcess {
    child: Child,
    /// Also the id of its process group.
    pid: Pid,
    supervised: bool,
    readers: Vec<JoinHandle<()>>,
}

/// Another user a local process runs as, so that it cannot read the agent's
/// memory, environment or key file (the agent must be root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// How to start a local process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub command: Vec<String>,
    pub dir: PathBuf,
    /// On top of the agent's [`INHERITED_ENV`] variables.
    pub env: BTreeMap<String, String>,
    /// The supervisor (`liftoff-supervisor`, or `liftoff` itself), run as
    /// `BINARY __supervise`; `None` starts the
    /// command directly (its process group is killed when it ends, but a
    /// `setsid` child or an agent killed with SIGKILL leaves processes behind).
    pub supervisor: Option<PathBuf>,
    /// Run as this user (who then owns `dir`); `None`: as the agent's.
    pub run_as: Option<RunAs>,
}

/// Starts the process, in a clean environment: [`INHERITED_ENV`] from the
/// agent's, then `spec.env`.
pub fn spawn(spec: &ProcessSpec, logs: mpsc::Sender<(LogStream, String)>) -> anyhow::Result<RunningProcess> {
    let (program, args) = spec.command.split_first().ok_or_else(|| anyhow::anyhow!("the entrypoint is empty"))?;
    let dir = &spec.dir;
    let mut cmd = match &spec.supervisor {
        Some(liftoff) => {
            let mut cmd = Command::new(liftoff);
            cmd.arg(crate::supervise::SUPERVISE).arg("--agent-pid").arg(std::process::id().to_string());
            if let Some(user) = &spec.run_as {
                cmd.arg("--uid").arg(user.uid.to_string()).arg("--gid").arg(user.gid.to_string());
            }
            cmd.arg("--").arg(program).args(args);
            cmd
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            if let Some(user) = &spec.run_as {
                cmd.uid(user.uid).gid(user.gid);
            }
            cmd
        }
    };
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if inherited(&name) {
            cmd.env(name, value);
        }
    }
    if let Some(user) = &spec.run_as {
        chown_tree(dir, user.uid, user.gid)
            .map_err(|e| anyhow::anyhow!("failed to give {} to user {}: {e}", dir.display(), user.name))?;
        cmd.env("HOME", &user.home).env("USER", &user.name).env("LOGNAME", &user.name);
    }
    cmd.envs(&spec.env)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // the supervisor too: a terminal's ctrl-C goes to the agent alone,
        // which stops its runs in order
        .process_group(0);
    // The supervisor reports a command it cannot start only as exit code
    // 127; look first, so that the run fails with the reason.
    let path = spec.env.get("PATH").map(Into::into).or_else(|| std::env::var_os("PATH")).unwrap_or_default();
    if let Err(e) = find_program(program, dir, &path) {
        anyhow::bail!("failed to start '{program}' in {}: {e}", dir.display());
    }
    let mut child =
        cmd.spawn().map_err(|e| anyhow::anyhow!("failed to start '{program}' in {}: {e}", dir.display()))?;
    let pid = Pid::from_raw(child.id().ok_or_else(|| anyhow::anyhow!("'{program}' exited before it started"))? as i32);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pump(out, LogStream::Stdout, logs.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pump(err, LogStream::Stderr, logs)));
    }
    Ok(RunningProcess { child, pid, supervised: spec.supervisor.is_some(), readers })
}

/// `lchown -R`: links are changed, never followed.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.symlink_metadata()?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Where `execvp` would find `program`: a path with a `/` is taken from
/// `dir`, a bare name is looked up on `path`.
fn find_program(program: &str, dir: &Path, path: &OsStr) -> Result<PathBuf, String> {
    let runnable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let p = dir.join(program);
        return if runnable(&p) { Ok(p) } else { Err(format!("{} is not an executable file", p.display())) };
    }
    std::env::split_paths(path)
        .map(|d| dir.join(d).join(program))
        .find(|p| runnable(p))
        .ok_or_else(|| format!("'{program}' is not found on PATH"))
}

pub(crate) async fn pump(mut from: impl AsyncRead + Unpin, stream: LogStream, to: mpsc::Sender<(LogStream, String)>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut lines = LineSplitter::default();
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for line in lines.push(&buf[..n]) {
                    if to.send((stream, line)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    if let Some(rest) = lines.finish() {
        let _ = to.send((stream, rest)).await;
    }
}

/// Shell convention: the exit code, or 128 + the signal number.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

impl RunningProcess {
    /// Waits for the process to exit and for its output to be read to the
    /// end. Whatever it left running is killed first: under a supervisor
    /// that is done before the supervisor exits; without one, only its
    /// process group can be reached.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        if !self.supervised {
            let _ = killpg(self.pid, Signal::SIGKILL);
        }
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        Ok(status)
    }

    /// SIGTERM to everything the run started, SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if self.child.id().is_none() {
            return self.wait().await;
        }
        let _ = if self.supervised { kill(self.pid, supervise::STOP) } else { killpg(self.pid, Signal::SIGTERM) };
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            self.kill_now();
            // a supervisor exits once all is dead; should it not, it goes too
            if self.supervised && tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
                let _ = self.child.start_kill();
            }
        }
        self.wait().await
    }

    fn kill_now(&self) {
        // only while the child is not reaped: its pid cannot have been reused
        if self.child.id().is_some() {
            let _ =
                if self.supervised { kill(self.pid, supervise::KILL_NOW) } else { killpg(self.pid, Signal::SIGKILL) };
        }
    }
}

/// A run dropped before it ended (its task aborted): kill it all now.
impl Drop for RunningProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_variables_are_inherited() {
        for name in ["PATH", "HOME", "LC_ALL", "LC_CTYPE", "CUDA_VISIBLE_DEVICES"] {
            assert!(inherited(OsStr::new(name)), "{name}");
        }
        for name in ["LIFTOFF_API_KEY", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "GOOGLE_APPLICATION_CREDENTIALS", "LC"]
        {
            assert!(!inherited(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("data"), "").unwrap();
        let path = std::env::join_paths(["/nonexistent", "bin"]).unwrap();
        assert_eq!(find_program("tool", dir.path(), &path).unwrap(), bin.join("tool"), "a relative PATH entry");
        assert_eq!(find_program("./bin/tool", dir.path(), OsStr::new("")).unwrap(), dir.path().join("./bin/tool"));
        assert!(find_program("./data", dir.path(), &path).unwrap_err().contains("not an executable file"));
        assert!(find_program("nope", dir.path(), &path).unwrap_err().contains("not found on PATH"));
    }
}
