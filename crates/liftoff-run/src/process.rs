//! The `local-process` runner: the entrypoint as a child process in its own
//! process group, so that stopping it stops everything it started.

use crate::lines::LineSplitter;
use liftoff_core::api::LogStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A started process and the tasks reading its output.
pub struct RunningProcess {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

/// Starts `command` in `dir` with `env` on top of the agent's environment
/// (minus the agent's own API key, which a job must never see).
pub fn spawn(
    command: &[String],
    dir: &Path,
    env: &BTreeMap<String, String>,
    logs: mpsc::Sender<(LogStream, String)>,
) -> anyhow::Result<RunningProcess> {
    let (program, args) = command.split_first().ok_or_else(|| anyhow::anyhow!("the entrypoint is empty"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("LIFTOFF_API_KEY")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child =
        cmd.spawn().map_err(|e| anyhow::anyhow!("failed to start '{program}' in {}: {e}", dir.display()))?;
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pump(out, LogStream::Stdout, logs.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pump(err, LogStream::Stderr, logs)));
    }
    Ok(RunningProcess { child, readers })
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
    /// Waits for the process to exit and for its output to be read to the end.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        Ok(status)
    }

    /// SIGTERM to the whole process group, SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if let Some(pid) = self.child.id() {
            let group = Pid::from_raw(pid as i32);
            let _ = killpg(group, Signal::SIGTERM);
            if let Ok(res) = tokio::time::timeout(grace, self.child.wait()).await {
                // the leader is gone; make sure nothing it started lingers
                let _ = killpg(group, Signal::SIGKILL);
                let status = res?;
                for r in self.readers.drain(..) {
                    let _ = r.await;
                }
                return Ok(status);
            }
            let _ = killpg(group, Signal::SIGKILL);
        }
        self.wait().await
    }
}
