//! One server per data directory. Two servers on one SQLite file would each
//! believe their single writer connection serialises all writes, and both
//! would write `admin.key`; so the second refuses to start. The lock is an OS
//! file lock, which the kernel drops when its holder dies, SIGKILL included:
//! a crashed server leaves nothing to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Held for the server's lifetime; released on drop or process death.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirLockError {
    #[error("data directory {dir} is in use by liftoff server pid {pid} on {host}")]
    InUse { dir: String, pid: String, host: String },
    #[error("failed to lock {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl DataDirLock {
    /// Locks `<dir>/lock` and records this process in it, or names the holder.
    pub fn acquire(dir: &Path) -> Result<Self, DataDirLockError> {
        let path = dir.join("lock");
        let io = |source| DataDirLockError::Io { path: path.display().to_string(), source };
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                // for the next server, and the operator who finds the file: who holds it
                file.set_len(0).map_err(io)?;
                std::io::Write::write_all(&mut &file, format!("{} {}\n", std::process::id(), hostname()).as_bytes())
                    .map_err(io)?;
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let mut words = holder.split_whitespace();
                Err(DataDirLockError::InUse {
                    dir: dir.display().to_string(),
                    pid: words.next().unwrap_or("?").to_string(),
                    host: words.next().unwrap_or("?").to_string(),
                })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        let expected = format!(
            "data directory {} is in use by liftoff server pid {} on {}",
            dir.path().display(),
            std::process::id(),
            hostname()
        );
        assert_eq!(err, expected);
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again once the holder let go");
    }
}
