//! Running the built binary from the integration tests.

use std::path::Path;
use std::process::{Command, Output};

/// The binary with a clean environment: no inherited LIFTOFF_* settings and a
/// working directory without a `liftoff-data/admin.key` to fall back on.
pub fn liftoff(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LIFTOFF_BASE_URL")
        .env_remove("LIFTOFF_API_KEY")
        .env_remove("LIFTOFF_ENTITY")
        .env_remove("RUST_LOG")
        .output()
        .expect("failed to run liftoff")
}
