//! `liftoff __supervise --agent-pid PID -- COMMAND...`: hidden; the agent
//! starts each local process through it (see `liftoff_run::supervise`).

use clap::Args;
use std::ffi::OsString;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The agent: when it is gone, the run is killed.
    #[arg(long, value_name = "PID")]
    agent_pid: i32,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Runs before any async runtime or thread exists: the supervisor's signal
/// mask must hold for the whole process.
pub fn run(args: &SuperviseArgs) -> ExitCode {
    ExitCode::from(liftoff_run::supervise::run(args.agent_pid, &args.command))
}
