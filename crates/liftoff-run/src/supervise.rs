//! The supervisor between the agent and a local process (`liftoff
//! __supervise`): a small process that dies with the agent and takes the
//! whole run with it.
//!
//! It is the child subreaper of everything the command starts, so even a
//! child that called `setsid` stays its descendant. When the command's main
//! process exits, it kills every descendant left, so the output pipes close
//! and the run ends; when the agent dies (even by SIGKILL), the kernel sends
//! it [`PARENT_GONE`] and it kills them all too. It runs single-threaded with
//! its signals blocked and taken with `sigwait`, before any async runtime
//! exists, so that no signal can end it by default action.

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, getppid};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// Asks for a graceful stop: forwarded to every descendant.
pub const STOP: Signal = Signal::SIGTERM;
/// The stop's grace is over: every descendant is killed at once.
pub const KILL_NOW: Signal = Signal::SIGUSR1;
/// The parent-death signal. A spurious one also comes when the agent thread
/// that spawned the supervisor exits (the kernel ties it to the thread):
/// then the parent process is still the agent, and it is ignored.
pub const PARENT_GONE: Signal = Signal::SIGHUP;

/// The hidden subcommand that runs [`run`]: `BINARY __supervise --agent-pid
/// PID [--uid U --gid G] -- COMMAND...`. Both `liftoff` and the small
/// `liftoff-supervisor` binary beside it answer it (see [`main`]).
pub const SUPERVISE: &str = "__supervise";

/// The supervisor's own binary, installed beside `liftoff`: about 3 MB that
/// start in well under a millisecond, where re-executing the whole 67 MB
/// `liftoff` binary for every local run cost about 2 ms of CPU.
pub const SUPERVISOR_BIN: &str = "liftoff-supervisor";

/// Runs [`SUPERVISE`] or [`EXEC_AS`] when `argv[1]` names one of them, with
/// the rest of `argv` as its arguments; `None` otherwise. Called first
/// thing by both binaries, before any thread or runtime exists.
///
/// Parsed by hand rather than with clap: the arguments are written by the
/// agent, never by a person, and this keeps the supervisor's binary small and
/// its start short, which is why it exists.
pub fn main(argv: &[OsString]) -> Option<u8> {
    let sub = argv.get(1)?.to_str()?;
    if sub != SUPERVISE && sub != EXEC_AS {
        return None;
    }
    let parsed = parse(&argv[2..]);
    Some(match (sub, parsed) {
        (SUPERVISE, Ok(Parsed { agent_pid: Some(agent), user, command })) => run(agent, user, &command),
        (EXEC_AS, Ok(Parsed { user: Some((uid, gid)), command, .. })) => exec_as(uid, gid, &command),
        (_, Err(e)) => {
            eprintln!("liftoff: {sub}: {e}");
            SETUP_FAILED
        }
        (SUPERVISE, _) => {
            eprintln!("liftoff: {SUPERVISE}: --agent-pid is required");
            SETUP_FAILED
        }
        _ => {
            eprintln!("liftoff: {EXEC_AS}: --uid and --gid are required");
            SETUP_FAILED
        }
    })
}

/// The options before `--` and the command after it.
#[derive(Debug, PartialEq)]
struct Parsed {
    agent_pid: Option<i32>,
    user: Option<(u32, u32)>,
    command: Vec<OsString>,
}

/// `--agent-pid N`, `--uid N`, `--gid N` (or `--name=N`), then `--` and the
/// command, which must not be empty.
fn parse(args: &[OsString]) -> Result<Parsed, String> {
    let (mut agent_pid, mut uid, mut gid) = (None, None, None);
    let mut i = 0;
    loop {
        let Some(arg) = args.get(i) else { return Err("expected `-- COMMAND...`".into()) };
        let arg = arg.to_str().ok_or("an option is not UTF-8")?;
        i += 1;
        if arg == "--" {
            break;
        }
        if !arg.starts_with("--") {
            return Err(format!("expected an option or `--` before the command, found '{arg}'"));
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => {
                let v = args.get(i).and_then(|v| v.to_str()).ok_or(format!("{arg} needs a value"))?;
                i += 1;
                (arg, v.to_string())
            }
        };
        let number = |v: &str| v.parse::<u32>().map_err(|_| format!("{name}: '{v}' is not a number"));
        match name {
            "--agent-pid" => {
                agent_pid = Some(value.parse::<i32>().map_err(|_| format!("{name}: '{value}' is not a pid"))?)
            }
            "--uid" => uid = Some(number(&value)?),
            "--gid" => gid = Some(number(&value)?),
            _ => return Err(format!("unknown option {name}")),
        }
    }
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some((u, g)),
        (None, None) => None,
        _ => return Err("--uid and --gid go together".into()),
    };
    let command = args[i..].to_vec();
    if command.is_empty() {
        return Err("nothing to run: the command is empty".into());
    }
    Ok(Parsed { agent_pid, user, command })
}

/// Exit code when the supervisor could not set itself up.
pub const SETUP_FAILED: u8 = 125;
/// Exit code when the command could not be started (the shell's "not found").
pub const NOT_STARTED: u8 = 127;

/// Runs `command` under supervision for the agent whose pid is `agent`,
/// as the user and group `user` when given (the supervisor stays root, to
/// kill what it started); the exit code to exit with: the command's own, or
/// 128 + the signal that ended it, as a shell reports it.
pub fn run(agent: i32, user: Option<(u32, u32)>, command: &[OsString]) -> u8 {
    let agent = Pid::from_raw(agent);
    let Some((program, args)) = command.split_first() else {
        eprintln!("liftoff: nothing to supervise: the command is empty");
        return SETUP_FAILED;
    };
    let mut watched = SigSet::empty();
    for s in [STOP, Signal::SIGINT, KILL_NOW, PARENT_GONE, Signal::SIGCHLD] {
        watched.add(s);
    }
    // Blocked before anything else, so a stop that arrives early is kept
    // pending, never acted on by default. The command must not inherit this
    // mask (std's spawn passes it on): `start` gives it an empty one.
    let setup = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), None)
        .and_then(|()| prctl::set_child_subreaper(true))
        .and_then(|()| prctl::set_pdeathsig(PARENT_GONE));
    if let Err(e) = setup {
        eprintln!("liftoff: could not set up the supervisor of a local process: {e}");
        return SETUP_FAILED;
    }
    // The agent may have died before the parent-death signal was set.
    if getppid() != agent {
        return 128 + Signal::SIGKILL as u8;
    }
    let main = match start(program, args, user) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("liftoff: failed to start {}: {e}", program.to_string_lossy());
            return NOT_STARTED;
        }
    };
    loop {
        let signal = match watched.wait() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("liftoff: the supervisor could not wait for signals ({e}); killing the run");
                return kill_all(main, None);
            }
        };
        match signal {
            Signal::SIGCHLD => {
                if let Some(code) = reap(main) {
                    return kill_all(main, Some(code));
                }
            }
            Signal::SIGTERM | Signal::SIGINT => {
                for pid in descendants() {
                    let _ = kill(pid, STOP);
                }
            }
            Signal::SIGHUP if getppid() == agent => {}
            _ => return kill_all(main, None),
        }
    }
}

/// Starts the command as the leader of a process group of its own, with
/// an empty signal mask and default signal dispositions, as a shell would
/// start it. posix_spawn sets both in the child: std's `Command` passes the
/// spawning thread's mask on (since Rust 1.66), which here would be the
/// supervisor's, and a job would start with SIGTERM, SIGINT, SIGHUP and
/// SIGCHLD blocked: deaf to a stop, and a shell's `wait` never woken. As
/// another user, the command goes through `liftoff __exec-as` (see
/// [`exec_as`]), which posix_spawn cannot do itself.
fn start(program: &OsString, args: &[OsString], user: Option<(u32, u32)>) -> Result<Pid, String> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn, posix_spawnp};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).map_err(|_| "an argument holds a NUL byte".to_string());
    let mut defaults = SigSet::all();
    defaults.remove(Signal::SIGKILL);
    defaults.remove(Signal::SIGSTOP);
    let attr = (|| {
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_pgroup(Pid::from_raw(0))?;
        attr.set_sigmask(&SigSet::empty())?;
        attr.set_sigdefault(&defaults)?;
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
                | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
        )?;
        Ok::<_, Errno>(attr)
    })()
    .map_err(|e| format!("posix_spawn attributes: {e}"))?;
    let actions = PosixSpawnFileActions::init().map_err(|e| format!("posix_spawn file actions: {e}"))?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            c(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv = vec![c(program)?];
    for a in args {
        argv.push(c(a)?);
    }
    match user {
        None => posix_spawnp(&argv[0], &actions, &attr, &argv, &env).map_err(|e| e.to_string()),
        Some((uid, gid)) => {
            let mut shim = vec![
                c("liftoff".as_ref())?,
                c(EXEC_AS.as_ref())?,
                c(format!("--uid={uid}").as_ref())?,
                c(format!("--gid={gid}").as_ref())?,
                c("--".as_ref())?,
            ];
            shim.extend(argv);
            posix_spawn("/proc/self/exe", &actions, &attr, &shim, &env).map_err(|e| e.to_string())
        }
    }
}

/// The hidden subcommand of the `liftoff` binary that runs [`exec_as`].
pub const EXEC_AS: &str = "__exec-as";

/// `liftoff __exec-as --uid U --gid G -- COMMAND...`: drops to the user and
/// group (no supplementary groups) and replaces itself with the command.
/// Returns only on failure, with the shell's "cannot run" code.
pub fn exec_as(uid: u32, gid: u32, command: &[OsString]) -> u8 {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    let Some((program, args)) = command.split_first() else {
        eprintln!("liftoff: nothing to run: the command is empty");
        return NOT_STARTED;
    };
    let dropped = setgroups(&[]).and_then(|()| setgid(Gid::from_raw(gid))).and_then(|()| setuid(Uid::from_raw(uid)));
    if let Err(e) = dropped {
        eprintln!("liftoff: could not become user {uid} (group {gid}) to run {}: {e}", program.to_string_lossy());
        return SETUP_FAILED;
    }
    // the signal mask is already empty (set by `start`); std's exec keeps it
    let e = std::process::Command::new(program).args(args).exec();
    eprintln!("liftoff: failed to start {}: {e}", program.to_string_lossy());
    NOT_STARTED
}

/// Reaps every child that has exited; the main process's exit code once it has.
fn reap(main: Pid) -> Option<u8> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(status) if status.pid() == Some(main) => code = exit_code(status).or(code),
            Ok(_) => {}
        }
    }
}

fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some(code as u8),
        WaitStatus::Signaled(_, signal, _) => Some(128u8.saturating_add(signal as u8)),
        _ => None,
    }
}

/// SIGKILLs every descendant and reaps them until the supervisor has no
/// child left; the main process's code (137 if it never ended on its own).
/// A descendant whose parent dies is re-parented here, so "no child" means
/// no descendant: nothing of the run can hold its output open any more.
fn kill_all(main: Pid, mut code: Option<u8>) -> u8 {
    loop {
        // Reap first: with no child left there is no descendant either, and
        // the scan of every process's /proc entry (most of a short run's
        // supervision cost) is skipped.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) if status.pid() == Some(main) => code = exit_code(status).or(code),
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(_) => return code.unwrap_or(128 + Signal::SIGKILL as u8),
            }
        }
        for pid in descendants() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        // some are still dying (or were forked while we looked)
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every process below this one, from the parent links in `/proc/*/stat`.
fn descendants() -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat")).ok().and_then(|s| parent_of(&s)) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![getpid().as_raw()];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(Pid::from_raw(c));
            todo.push(c);
        }
    }
    out
}

/// The parent pid in a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parent_of(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_after_the_command_name() {
        assert_eq!(parent_of("42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_of("42 (a) b) (c) R 1234 42 42"), Some(1234), "a name with spaces and parentheses");
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn the_agent_s_arguments_are_parsed_and_bad_ones_refused() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            parse(&os(&["--agent-pid", "7", "--uid", "1000", "--gid=100", "--", "sh", "-c", "--uid"])),
            Ok(Parsed { agent_pid: Some(7), user: Some((1000, 100)), command: os(&["sh", "-c", "--uid"]) })
        );
        assert_eq!(parse(&os(&["--uid=1", "--gid=2", "--", "id"])).unwrap().user, Some((1, 2)));
        assert_eq!(parse(&os(&["--agent-pid", "7", "--", "true"])).unwrap().user, None);
        assert_eq!(parse(&os(&["--agent-pid", "x", "--", "true"])), Err("--agent-pid: 'x' is not a pid".into()));
        assert_eq!(
            parse(&os(&["--agent-pid", "7", "--uid", "1", "--", "true"])),
            Err("--uid and --gid go together".into())
        );
        assert_eq!(parse(&os(&["--agent-pid", "7", "--"])), Err("nothing to run: the command is empty".into()));
        assert_eq!(
            parse(&os(&["--agent-pid", "7", "true"])),
            Err("expected an option or `--` before the command, found 'true'".into())
        );
        assert_eq!(parse(&os(&["--agent-pid"])), Err("--agent-pid needs a value".into()));
        assert_eq!(parse(&os(&["--user", "x", "--", "true"])), Err("unknown option --user".into()));
        assert_eq!(main(&os(&["liftoff", "server"])), None, "not the supervisor's: left to the caller");
    }

    #[test]
    fn codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)), Some(143));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
