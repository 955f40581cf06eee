//! Process trees tied to a test's lifetime, and finding processes by a
//! marker in their environment.
//!
//! A test that starts a program with descendants of its own (a browser and
//! its helpers, an agent and its jobs) must not leave them running when it
//! fails: a panic unwinds past any explicit cleanup. [`ProcessGroup`] kills
//! the whole tree on drop. It finds the tree twice over: the process group
//! the program was started in, and a marker variable in the environment
//! every descendant inherits, which also finds those that left the group
//! (`setsid`, daemons re-parented to init).

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The variable [`ProcessGroup`] marks its tree with.
pub const OWNER_VAR: &str = "LIFTOFF_TESTKIT_OWNER";

/// Live processes whose environment holds the entry `entry`
/// (`NAME=value`); a zombie, whose environment reads empty, is not live.
pub fn processes_with_env(entry: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return pids };
    for proc_entry in dir.flatten() {
        let Some(pid) = proc_entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if let Ok(environ) = std::fs::read(proc_entry.path().join("environ"))
            && environ.split(|b| *b == 0).any(|v| v == entry.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The command lines of `pids`, for messages.
pub fn command_lines(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .map(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default())
        .map(|c| String::from_utf8_lossy(&c).trim_end_matches('\0').replace('\0', " "))
        .collect()
}

/// Waits until no live process has `entry` in its environment; panics,
/// naming `what` and the processes, if some are left after `bound`.
pub async fn wait_until_none_left(entry: &str, bound: Duration, what: &str) {
    let until = Instant::now() + bound;
    loop {
        let left = processes_with_env(entry);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "{what}: processes left after {bound:?}: {left:?} {:?}", command_lines(&left));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child started in a process group of its own, with a unique marker in
/// its environment; dropping it SIGKILLs the group and every process that
/// carries the marker, then reaps the child.
pub struct ProcessGroup {
    child: Child,
    marker: String,
}

impl ProcessGroup {
    /// Starts `cmd` as the leader of a new process group, marked.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let child = cmd.env(OWNER_VAR, &id).process_group(0).spawn()?;
        Ok(Self { child, marker: format!("{OWNER_VAR}={id}") })
    }

    /// The environment entry (`NAME=value`) every process of the tree carries.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Live processes of the tree, the leader included.
    pub fn members(&self) -> Vec<i32> {
        processes_with_env(&self.marker)
    }

    /// SIGKILLs the tree until none of it is left (at most 10 s: a tree
    /// that forks faster than it is killed is a bug worth a panic), and
    /// reaps the leader.
    pub fn kill_all(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = self.child.try_wait();
            let left = self.members();
            if left.is_empty() {
                break;
            }
            for pid in &left {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            if Instant::now() > until {
                if !std::thread::panicking() {
                    panic!("processes of {} outlive SIGKILL: {left:?} {:?}", self.marker, command_lines(&left));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with a child that left the group (`setsid`) is gone after the
    /// guard drops, even when the test holding it panics.
    #[test]
    fn a_dropped_group_leaves_no_process_even_on_panic() {
        let pid_file = std::env::temp_dir().join(format!("testkit-{}", uuid::Uuid::new_v4().simple()));
        let script = format!("setsid sh -c 'echo $$ > {0}; exec sleep 600' & sleep 600", pid_file.display());
        let group = ProcessGroup::spawn(Command::new("sh").args(["-c", &script])).unwrap();
        let marker = group.marker().to_string();
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(true, |s| !s.ends_with('\n')) {
            assert!(Instant::now() < until, "the setsid child did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let escaped: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let _ = std::fs::remove_file(&pid_file);
        assert!(processes_with_env(&marker).contains(&escaped), "the setsid child carries the marker");
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = group;
            panic!("the test fails while it holds the group");
        }));
        assert!(failed.is_err());
        assert_eq!(processes_with_env(&marker), Vec::<i32>::new(), "nothing of the tree is left");
        assert!(!is_alive(escaped), "the child that left the group is gone");
    }
}
