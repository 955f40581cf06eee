//! The one-step launch, as a CI step uses it: `liftoff launch -q Q DIR
//! --follow -- COMMAND` against a live server and a local-process agent
//! prints the job's lines and exits with the job's exit code; an unchanged
//! directory makes no new job version and uploads nothing; `--wait` on a run
//! stopped from elsewhere, Ctrl-C, and a run that fails before its command
//! starts each exit with their documented code.

use liftoff_client::Client;
use liftoff_core::api::{CreateQueue, ItemView, empty_object};
use liftoff_core::{ItemState, JobSource, ResourceType};
use liftoff_testkit::{ProcessGroup, RecordingProxy, Upstream};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(60);
// The codes `liftoff launch --help` documents.
const EXIT_STOPPED: i32 = 122;
const EXIT_FAILED_BEFORE_START: i32 = 125;
const EXIT_INTERRUPTED: i32 = 130;

/// A server, a local-process queue (`q` unless [`setup_queue`] names
/// another) and an agent serving it.
struct Setup {
    _server: liftoff_server::RunningServer,
    url: String,
    key: String,
    client: Client,
    _agent: ProcessGroup,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_queue("q").await
}

async fn setup_queue(queue_name: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = liftoff_server::ServerConfig::new(dir.path().join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    let server = liftoff_server::start(cfg).await.unwrap();
    let (url, key) = (server.base_url(), server.admin_key.clone().unwrap());
    let client = Client::new(&url, &key, "default").unwrap();
    let queue = CreateQueue {
        name: queue_name.into(),
        resource: ResourceType::LocalProcess,
        config: empty_object(),
        template_variables: vec![],
        prioritization: false,
    };
    client.create_queue(&queue).await.unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let agent = ProcessGroup::spawn(
        Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["agent", "-q", queue_name, "--work-dir"])
            .arg(dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &url)
            .env("LIFTOFF_API_KEY", &key)
            .env("TMPDIR", dir.path()) // its lock file, apart from other tests' agents
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    Setup { _server: server, url, key, client, _agent: agent, dir }
}

/// A running `liftoff` command with its output collected.
struct Cli {
    group: ProcessGroup,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

impl Cli {
    fn start(url: &str, key: &str, args: &[&str]) -> Cli {
        Cli::start_in(&std::env::current_dir().unwrap(), url, key, args)
    }

    fn start_in(cwd: &Path, url: &str, key: &str, args: &[&str]) -> Cli {
        let mut group = ProcessGroup::spawn(
            Command::new(env!("CARGO_BIN_EXE_liftoff"))
                .args(args)
                .current_dir(cwd)
                .env("LIFTOFF_BASE_URL", url)
                .env("LIFTOFF_API_KEY", key)
                .env_remove("LIFTOFF_ENTITY")
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let mut stdout = group.child().stdout.take().unwrap();
        let mut stderr = group.child().stderr.take().unwrap();
        let read = |r: &mut dyn Read| {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        };
        let out = std::thread::spawn(move || read(&mut stdout));
        let err = std::thread::spawn(move || read(&mut stderr));
        Cli { group, out, err }
    }

    /// Waits for the command to exit: its status, stdout and stderr.
    async fn end(mut self) -> (ExitStatus, String, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.group.child().try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < BOUND, "the command did not exit within {BOUND:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        (status, self.out.join().unwrap(), self.err.join().unwrap())
    }

    fn signal(&mut self, signal: Signal) {
        kill(Pid::from_raw(self.group.id() as i32), signal).unwrap();
    }
}

/// The value after `name: ` on a line of `stderr`.
fn field<'a>(stderr: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    let line = stderr.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no '{name}:' line in stderr:\n{stderr}"))[prefix.len()..].trim()
}

async fn wait_for_state(client: &Client, item: &str, state: ItemState) -> ItemView {
    let until = Instant::now() + BOUND;
    loop {
        let view = client.get_item(item).await.unwrap();
        if view.state == state {
            return view;
        }
        assert!(Instant::now() < until, "the run never reached {state}; it is {}", view.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the run's stored log holds `text`.
async fn wait_for_log(client: &Client, item: &str, text: &str) {
    let until = Instant::now() + BOUND;
    loop {
        let page = client.read_logs(item, 0).await.unwrap();
        if page.chunks.iter().any(|c| c.data.contains(text)) {
            return;
        }
        assert!(Instant::now() < until, "the run's log never held '{text}'");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_follows_a_directory_to_its_end_with_the_jobs_exit_code_and_reuses_an_unchanged_version() {
    let s = setup().await;
    // Only the command goes through this proxy, which records what it sends.
    let proxy = RecordingProxy::start(Upstream::Tcp(s.url.trim_start_matches("http://").parse().unwrap())).await;
    let proxy_url = proxy.url();
    let code = s.dir.path().join("trainer");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("main.py"),
        "import sys\nfor i in range(3):\n    print(f'line {i}', flush=True)\n\
         print('to stderr', file=sys.stderr, flush=True)\nsys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)\n",
    )
    .unwrap();
    let dir = code.to_str().unwrap();
    let uploads = || proxy.count(UPLOAD);

    // first launch: a new job named after the directory, uploaded once
    let cli = Cli::start(&proxy_url, &s.key, &["launch", "-q", "q", dir, "--follow", "--", "python3", "main.py"]);
    let (status, out, err) = cli.end().await;
    let log = agent_log(s.dir.path());
    assert_eq!(status.code(), Some(0), "stderr:\n{err}\nagent:\n{log}");
    assert_eq!(out, "line 0\nline 1\nline 2\n", "stdout is the job's stdout, nothing else; stderr:\n{err}");
    assert!(err.contains("to stderr\n"), "the job's stderr goes to stderr:\n{err}");
    let (item, run) = (field(&err, "item"), field(&err, "run"));
    let first_line = err.lines().position(|l| l.starts_with("item: ")).unwrap();
    assert!(first_line < err.lines().position(|l| l == "to stderr").unwrap(), "ids before the log:\n{err}");
    assert!(err.contains(&format!("run {run}: running")), "state changes shown:\n{err}");
    assert!(err.contains(&format!("run {run}: finished (exit 0)")), "the outcome:\n{err}");
    assert!(field(&err, "job").starts_with("default/default/trainer:v1 created"), "{err}");
    assert_eq!(s.client.get_item(item).await.unwrap().spec.job, "default/default/trainer:v1", "that version exactly");
    assert_eq!(uploads(), 1, "the archive was uploaded once");

    // unchanged: the same version, nothing sent, the command kept
    let cli = Cli::start(&proxy_url, &s.key, &["launch", "-q", "q", dir, "--follow"]);
    let (status, out, err) = cli.end().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    assert_eq!(out, "line 0\nline 1\nline 2\n", "stderr:\n{err}");
    assert!(field(&err, "job").starts_with("default/default/trainer:v1 unchanged"), "{err}");
    assert_eq!(uploads(), 1, "an unchanged directory uploads nothing");
    let versions = |jobs: Vec<liftoff_core::api::JobView>| jobs.iter().filter(|j| j.name == "trainer").count();
    assert_eq!(versions(s.client.list_jobs().await.unwrap()), 1, "no new version");

    // another command: a new version of the same archive, not sent again;
    // a job that exits 3 makes the command exit 3, and JSON is the final view
    let cli = Cli::start(
        &proxy_url,
        &s.key,
        &["launch", "-q", "q", dir, "--wait", "--format", "json", "--", "python3", "main.py", "3"],
    );
    let (status, out, err) = cli.end().await;
    assert_eq!(status.code(), Some(3), "stderr:\n{err}");
    let view: ItemView = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: stdout is one JSON view:\n{out}"));
    assert_eq!((view.state, view.exit_code), (ItemState::Failed, Some(3)));
    assert_eq!(view.spec.job, "default/default/trainer:v2");
    assert!(!err.contains("line 0"), "--wait shows no log:\n{err}");
    assert!(field(&err, "job").contains("archive already on the server"), "{err}");
    assert_eq!(uploads(), 1, "the archive a version holds is not sent again");

    // changed code: a new version, uploaded, and the new code runs
    std::fs::write(code.join("main.py"), "print('changed', flush=True)\n").unwrap();
    let cli = Cli::start(&proxy_url, &s.key, &["launch", "-q", "q", dir, "-f", "--", "python3", "main.py"]);
    let (status, out, err) = cli.end().await;
    assert_eq!((status.code(), out.as_str()), (Some(0), "changed\n"), "stderr:\n{err}");
    assert!(field(&err, "job").starts_with("default/default/trainer:v3 created"), "{err}");
    assert_eq!(uploads(), 2, "changed code is uploaded");
    let jobs = s.client.list_jobs().await.unwrap();
    let digests: Vec<&str> = jobs
        .iter()
        .filter_map(|j| match &j.source {
            JobSource::Code(c) if j.name == "trainer" => Some(c.digest.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(digests.len(), 3);
    assert!(digests[0] == digests[1] && digests[1] != digests[2], "{digests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_and_follow_exit_with_the_documented_codes_when_the_run_does_not_end_by_itself() {
    let s = setup().await;
    let code = s.dir.path().join("sleeper");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("sleep.sh"), "echo sleeping\nsleep 120\n").unwrap();
    let dir = code.to_str().unwrap();

    // stopped from elsewhere while `--wait` waits
    let cli = Cli::start(&s.url, &s.key, &["launch", "-q", "q", dir, "--wait", "--", "sh", "sleep.sh"]);
    let item = wait_for_launch(&s.client, "sleeper", 1).await;
    wait_for_state(&s.client, &item, ItemState::Running).await;
    s.client.stop_item(&item).await.unwrap();
    let (status, _, err) = cli.end().await;
    assert_eq!(status.code(), Some(EXIT_STOPPED), "stderr:\n{err}");
    assert!(err.contains(": stopped"), "{err}");

    // Ctrl-C without a terminal to ask on: the command leaves, the run goes on
    let mut cli = Cli::start(&s.url, &s.key, &["launch", "-q", "q", dir, "--follow"]);
    let item = wait_for_launch(&s.client, "sleeper", 2).await;
    wait_for_log(&s.client, &item, "sleeping").await;
    cli.signal(Signal::SIGINT);
    let (status, out, err) = cli.end().await;
    assert_eq!(status.code(), Some(EXIT_INTERRUPTED), "stderr:\n{err}");
    assert!(out.contains("sleeping"), "{out}");
    assert!(err.contains("goes on"), "{err}");
    assert_eq!(s.client.get_item(&item).await.unwrap().state, ItemState::Running, "the run was left running");
    s.client.stop_item(&item).await.unwrap();

    // Ctrl-C with --stop-on-interrupt: the run is stopped, then the command exits
    let mut cli = Cli::start(&s.url, &s.key, &["launch", "-q", "q", dir, "--follow", "--stop-on-interrupt"]);
    let item = wait_for_launch(&s.client, "sleeper", 3).await;
    wait_for_state(&s.client, &item, ItemState::Running).await;
    cli.signal(Signal::SIGINT);
    let (status, _, err) = cli.end().await;
    assert_eq!(status.code(), Some(EXIT_STOPPED), "stderr:\n{err}");
    assert!(err.contains("stopping run"), "{err}");
    assert_eq!(s.client.get_item(&item).await.unwrap().state, ItemState::Stopped);

    // a commit the agent cannot fetch fails before any command starts
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let args = ["launch", "-q", "q", "--git", "http://127.0.0.1:9/none.git", "--commit", commit, "--wait"];
    let (status, _, err) = Cli::start(&s.url, &s.key, &[&args[..], &["--", "python3", "main.py"]].concat()).end().await;
    assert_eq!(status.code(), Some(EXIT_FAILED_BEFORE_START), "stderr:\n{err}");
    assert!(err.contains(": failed at agent: "), "the stage and reason are shown:\n{err}");
}

/// The README's one-step launch, as written there, from the repository's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_one_step_launch_runs_the_hello_example_as_written() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme.lines().find(|l| l.starts_with("liftoff launch ") && l.contains("--follow"));
    let line = line.expect("the README shows a one-step launch with --follow");
    let words: Vec<&str> = line.split('#').next().unwrap().split_whitespace().skip(1).collect();
    let queue = words[words.iter().position(|w| *w == "-q").expect("a queue") + 1];
    let s = setup_queue(queue).await;
    // from the repository's root, where the README's commands are run
    let (status, out, err) = Cli::start_in(root, &s.url, &s.key, &words).end().await;
    assert_eq!(status.code(), Some(0), "`{line}`\nstderr:\n{err}");
    assert!(out.starts_with("hello\n") && out.contains("count 5\n"), "`{line}` printed:\n{out}");
    assert!(err.contains("this line goes to stderr"), "{err}");
}

/// Refusals name what is wrong, before anything is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_refuses_ambiguous_or_incomplete_sources() {
    let s = setup().await;
    let empty = s.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_str().unwrap();
    for (args, expected) in [
        (vec!["launch", "-q", "q"], "name what to run"),
        (vec!["launch", "-q", "q", empty, "-j", "x"], "not PATH and -j"),
        (vec!["launch", "-q", "q", empty], "has no command yet"),
        (vec!["launch", "-q", "q", empty, "-E", "a", "--", "b"], "give the command once"),
        (vec!["launch", "-q", "q", "-j", "x", "--base-image", "python:3.11"], "not -j"),
        (vec!["launch", "-q", "q", "/nonexistent/dir", "--", "true"], "is not a directory"),
        (vec!["launch", "-q", "nope", empty, "--", "true"], "cannot launch on queue 'nope'"),
    ] {
        let (status, out, err) = Cli::start(&s.url, &s.key, &args).end().await;
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: expected '{expected}' in:\n{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    assert!(s.client.list_jobs().await.unwrap().is_empty(), "no job was made");
}

/// The item of the `n`th run of job `name` (1-based), once it is launched.
async fn wait_for_launch(client: &Client, name: &str, n: usize) -> String {
    let until = Instant::now() + BOUND;
    loop {
        let items = client.list_items(None, 100).await.unwrap();
        let mut mine: Vec<&ItemView> = items.iter().filter(|i| i.spec.job.contains(&format!("/{name}:"))).collect();
        mine.sort_by_key(|i| i.created_at_ms);
        if let Some(item) = mine.get(n - 1) {
            return item.id.clone();
        }
        assert!(Instant::now() < until, "run {n} of {name} was never launched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The request line of a code archive upload.
const UPLOAD: &[u8] = b"PUT /api/v1/entities/default/blobs/";
