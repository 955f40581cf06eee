//! `liftoff __supervise --agent-pid PID -- COMMAND...`: hidden; the agent
//! starts each local process through it (see `liftoff_run::supervise`).
//! `liftoff __exec-as --uid U --gid G -- COMMAND...`: hidden; the
//! supervisor starts a command as another user through it.

use clap::Args;
use std::ffi::OsString;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The agent: when it is gone, the run is killed.
    #[arg(long, value_name = "PID")]
    agent_pid: i32,
    /// Run the command as this user id (with `--gid`).
    #[arg(long, value_name = "UID", requires = "gid")]
    uid: Option<u32>,
    #[arg(long, value_name = "GID", requires = "uid")]
    gid: Option<u32>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Runs before any async runtime or thread exists: the supervisor's signal
/// mask must hold for the whole process.
pub fn run(args: &SuperviseArgs) -> ExitCode {
    ExitCode::from(liftoff_run::supervise::run(args.agent_pid, args.uid.zip(args.gid), &args.command))
}

#[derive(Debug, Args)]
pub struct ExecAsArgs {
    #[arg(long, value_name = "UID")]
    uid: u32,
    #[arg(long, value_name = "GID")]
    gid: u32,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Becomes the user and replaces itself with the command; returns only on failure.
pub fn exec_as(args: &ExecAsArgs) -> ExitCode {
    ExitCode::from(liftoff_run::supervise::exec_as(args.uid, args.gid, &args.command))
}
