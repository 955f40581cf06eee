//! Components a test needs, and honest skips.
//!
//! A test that needs something this machine may lack (a Docker engine, a
//! registry, an emulator, root) asks here. Outside CI it may skip; under CI
//! a skip is a failure, so a green CI run never hides an untested
//! behaviour. Every skip is appended to the file `LIFTOFF_TEST_SKIP_LOG`
//! names (`scripts/test.sh` sets it and prints the count and the reasons at
//! the end), since nextest shows nothing a passing test prints.

use std::io::Write;

/// The variable naming the file skips are recorded in.
pub const SKIP_LOG_VAR: &str = "LIFTOFF_TEST_SKIP_LOG";

/// Whether the suite runs under CI: `CI` set to anything but empty, `0`
/// or `false` (`.ci/run` exports `CI=true`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Skips the calling test for `reason`, which the caller then returns
/// after: under CI it panics instead; otherwise it records the skip and
/// prints it.
#[track_caller]
pub fn skip(reason: &str) {
    let test = current_test();
    assert!(!under_ci(), "{test}: CI is set, and this test would skip: {reason}");
    eprintln!("skipping {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR).filter(|p| !p.is_empty()) {
        // One short write with O_APPEND: lines from parallel test processes do not interleave.
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("{test}: cannot record its skip in {}: {e}", path.to_string_lossy());
        }
    }
}

/// The value of `var`, which the script that starts a component sets
/// (`scripts/test.sh` sources them all), or `None` after [`skip`]: the
/// caller returns.
#[track_caller]
pub fn required_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            skip(&format!("{var} is not set: the component it names is missing (scripts/test.sh starts it)"));
            None
        }
    }
}

/// Whether this process runs as root (the owner of `/proc/self`).
pub fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("read /proc/self")) == 0
}

/// The running test's name, as libtest names its thread, with the test
/// binary's name.
fn current_test() -> String {
    let binary = std::env::args()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .map(|b| b.rsplit_once('-').map_or(b.clone(), |(name, _hash)| name.to_string()))
        .unwrap_or_default();
    let thread = std::thread::current();
    let name = thread.name().filter(|n| *n != "main").map(str::to_string);
    let test = name.or_else(|| std::env::var("NEXTEST_TEST_NAME").ok()).unwrap_or_else(|| "?".into());
    format!("{binary}::{test}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_name_names_this_test() {
        assert!(current_test().ends_with("component::tests::the_test_name_names_this_test"), "{}", current_test());
    }
}
