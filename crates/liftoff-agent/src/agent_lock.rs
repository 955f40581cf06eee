//! One agent per agent key on a host. The key labels the agent's containers;
//! holding this lock is what lets a starting agent treat every container
//! with its key as left behind by a dead predecessor and re-adopt it. The
//! kernel drops the lock when its holder dies, SIGKILL included.

use std::fs::{File, OpenOptions, TryLockError};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AgentLockError {
    /// Another live agent holds this key on this host.
    #[error(
        "another agent with agent key '{key}' is running on this host (pid {pid}, lock {path}); \
         give this one another --agent-key"
    )]
    InUse { key: String, pid: String, path: String },
    /// The lock file could not be opened or locked.
    #[error("failed to lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Held for the agent's lifetime; released on drop or process death.
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
}

impl AgentLock {
    /// Takes the lock for `key` in `dir`, or says which agent holds it.
    pub fn acquire(dir: &std::path::Path, key: &str) -> Result<Self, AgentLockError> {
        use sha2::Digest;
        let digest = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8]);
        let path = dir.join(format!("liftoff-agent-{digest}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| AgentLockError::Io { path: path.display().to_string(), source })?;
        match file.try_lock() {
            Ok(()) => {
                // for the operator who finds the file: who holds it
                let _ = file.set_len(0);
                let _ = std::io::Write::write_all(&mut &file, format!("{}\n{key}\n", std::process::id()).as_bytes());
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = holder.lines().next().unwrap_or("?").to_string();
                Err(AgentLockError::InUse { key: key.to_string(), pid, path: path.display().to_string() })
            }
            Err(TryLockError::Error(source)) => Err(AgentLockError::Io { path: path.display().to_string(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_key_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = AgentLock::acquire(dir.path(), "host/acme/q").unwrap();
        let err = AgentLock::acquire(dir.path(), "host/acme/q").unwrap_err().to_string();
        assert!(err.contains("another agent with agent key 'host/acme/q'"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(AgentLock::acquire(dir.path(), "host/acme/other").is_ok(), "other keys are independent");
        drop(first);
        assert!(AgentLock::acquire(dir.path(), "host/acme/q").is_ok());
    }
}
