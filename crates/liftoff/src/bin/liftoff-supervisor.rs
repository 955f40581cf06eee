//! `liftoff-supervisor`: the supervisor of a local run on its own (see
//! `liftoff_run::supervise`), installed beside `liftoff`. The agent starts
//! one per local process; this binary links only the supervision code, so
//! it starts in a fraction of the time a re-execution of `liftoff` takes.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match liftoff_run::supervise::main(&argv) {
        Some(code) => ExitCode::from(code),
        None => {
            eprintln!(
                "liftoff-supervisor is run by `liftoff agent` for each local process (`{} --agent-pid PID -- COMMAND...`); \
                 it is not a command of its own",
                liftoff_run::supervise::SUPERVISE
            );
            ExitCode::from(2)
        }
    }
}
