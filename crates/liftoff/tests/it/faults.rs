//! Fault injection with the real binary: the server killed with SIGKILL
//! while runs are active and started again 45 s later (on SQLite and on
//! PostgreSQL). Every run must end once, with its whole log.
//!
//! `LIFTOFF_TEST_SERVER_DOWN_SECS` shortens the outage when trying this by
//! hand; the suite runs it at 45 s.

use liftoff_client::Client;
use liftoff_core::ItemState;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest, LogStream};
use liftoff_core::job::{CodeSource, JobSourceSpec};
use liftoff_testkit::{processes_with_env, wait_until_none_left};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process that is killed (SIGKILL) when dropped, so that a failing
/// test leaves no server or agent behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

struct ServerProcess {
    child: Reaped,
    url: String,
}

/// `liftoff server` on `port` with its data in `dir/data` and `extra`
/// arguments, its output appended to `dir/server.log`; returns once it
/// answers (a fresh server has written its admin key by then).
async fn start_server(dir: &Path, port: u16, db: Option<&str>, lease_ttl_secs: u64, extra: &[&str]) -> ServerProcess {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_liftoff"));
    cmd.args(["server", "--listen", &format!("127.0.0.1:{port}"), "--lease-ttl", &lease_ttl_secs.to_string()])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    let child = Reaped(cmd.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < until, "the server did not start; see {}", dir.join("server.log").display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ServerProcess { child, url }
}

fn sigkill(child: &mut Reaped) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

/// The local-process queue `q`.
async fn local_queue(client: &Client) {
    let q = CreateQueue {
        name: "q".into(),
        resource: liftoff_core::ResourceType::LocalProcess,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: false,
    };
    client.create_queue(&q).await.unwrap();
}

/// A code job `name` whose `run.sh` is `script`, run as `sh run.sh`.
async fn code_job(client: &Client, dir: &Path, name: &str, script: &str) {
    let src = dir.join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("run.sh"), script).unwrap();
    let gz = liftoff_archive::pack_dir(&src).unwrap();
    let digest = liftoff_archive::sha256_digest(&gz);
    client.upload_blob(&digest, gz).await.unwrap();
    let source = JobSourceSpec {
        code: Some(CodeSource {
            digest,
            entrypoint: vec!["sh".into(), "run.sh".into()],
            build_context: None,
            dockerfile: None,
            base_image: None,
        }),
        ..Default::default()
    };
    let req = CreateJob { project: "default".into(), name: name.into(), source, aliases: vec![], runtime: None };
    client.create_job(&req).await.unwrap();
}

/// A code job printing `lines` numbered lines, one every 0.5 s.
async fn counting_job(client: &Client, dir: &Path, name: &str, lines: u32) {
    let script = format!("i=1\nwhile [ $i -le {lines} ]; do echo \"line $i\"; i=$((i+1)); sleep 0.5; done\n");
    code_job(client, dir, name, &script).await;
}

async fn stdout_of(client: &Client, id: &str) -> String {
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = client.read_logs(id, after).await.unwrap();
        for c in &page.chunks {
            assert_eq!(c.seq, after, "chunks in sequence without gaps");
            after += 1;
            if c.stream == LogStream::Stdout {
                out.push_str(&c.data);
            }
        }
        if page.chunks.is_empty() {
            return out;
        }
    }
}

/// Two runs are active when the server is killed: one ends while the
/// server is down (its log flush and outcome wait for the server), one
/// ends after it is back. The server comes back after 45 s, longer than the
/// 10 s lease TTL; both runs still end `finished` once, with no expiry, one
/// claim each, and every line of their output once and in order.
async fn server_restart_keeps_every_run(db: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ttl = 10;
    let mut server = start_server(dir.path(), port, db.as_deref(), ttl, &[]).await;
    let key = std::fs::read_to_string(dir.path().join("data/admin.key")).unwrap().trim().to_string();
    let client = Client::new(&server.url, &key, "default").unwrap();
    local_queue(&client).await;
    let down = std::env::var("LIFTOFF_TEST_SERVER_DOWN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(45u64);
    // 14 s: ends during the outage; the other ends about 15 s after the server is back
    let (short, long) = (28, ((down as u32) + 20) * 2);
    counting_job(&client, dir.path(), "short", short).await;
    counting_job(&client, dir.path(), "long", long).await;
    let mut ids = vec![];
    for job in ["short", "long"] {
        let req = LaunchRequest { job: job.into(), ..Default::default() };
        ids.push((client.launch("q", &req).await.unwrap().item_id, if job == "short" { short } else { long }));
    }
    let agent_log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = Reaped(
        Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["agent", "-q", "q", "-j", "2", "--work-dir"])
            .arg(dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &server.url)
            .env("LIFTOFF_API_KEY", &key)
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(agent_log)
            .spawn()
            .unwrap(),
    );
    // generous: the machine may be busy; this bounds a hang, it times nothing
    let until = Instant::now() + Duration::from_secs(120);
    for (id, _) in &ids {
        while client.get_item(id).await.unwrap().state != ItemState::Running {
            assert!(Instant::now() < until, "the runs never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sigkill(&mut server.child);
    tokio::time::sleep(Duration::from_secs(down)).await;
    let mut server = start_server(dir.path(), port, db.as_deref(), ttl, &[]).await;

    let until = Instant::now() + Duration::from_secs(u64::from(long) + 60);
    for (id, lines) in &ids {
        let item = loop {
            let item = client.get_item(id).await.unwrap();
            if item.state.is_terminal() {
                break item;
            }
            assert!(Instant::now() < until, "run {id} did not end; see {}", dir.path().display());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{:?}", item.reason);
        assert_eq!(item.fence, 2, "one claim and one outcome: the run was never claimed again");
        let expected: String = (1..=*lines).map(|i| format!("line {i}\n")).collect();
        assert_eq!(stdout_of(&client, id).await, expected, "the whole log, each line once");
    }
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    sigkill(&mut server.child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_after_45_s_loses_no_run_on_sqlite() {
    server_restart_keeps_every_run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_after_45_s_loses_no_run_on_postgres() {
    if let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_restart").await {
        server_restart_keeps_every_run(Some(url)).await;
    }
}

/// With its server gone (killed, and log lines still unsent), an agent told
/// to stop exits within its grace period plus a short bound: it stops the
/// run, tries to flush and report for at most 10 s, and leaves the rest to
/// the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_server_is_gone_stops_within_its_grace_plus_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(dir.path(), port, None, 10, &[]).await;
    let key = std::fs::read_to_string(dir.path().join("data/admin.key")).unwrap().trim().to_string();
    let client = Client::new(&server.url, &key, "default").unwrap();
    local_queue(&client).await;
    counting_job(&client, dir.path(), "ticks", 100_000).await;
    let id = client.launch("q", &LaunchRequest { job: "ticks".into(), ..Default::default() }).await.unwrap().item_id;
    let mut agent = Reaped(
        Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["agent", "-q", "q", "--grace", "1", "--work-dir"])
            .arg(dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &server.url)
            .env("LIFTOFF_API_KEY", &key)
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(120);
    let run_id = loop {
        let item = client.get_item(&id).await.unwrap();
        if item.state == ItemState::Running {
            break item.run_id;
        }
        assert!(Instant::now() < until, "the run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run_processes = format!("LIFTOFF_RUN_ID={run_id}");
    assert!(!processes_with_env(&run_processes).is_empty(), "the run's processes are found by its run id");
    sigkill(&mut server.child);
    tokio::time::sleep(Duration::from_secs(2)).await; // lines pile up unsent
    let asked = Instant::now();
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    // grace 1 s + SIGTERM-to-SIGKILL 5 s + the 10 s report bound + 5 s for
    // the last calls = 21 s, plus a margin of 4 s for a loaded machine
    let bound = Duration::from_secs(21 + 4);
    let status = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        assert!(asked.elapsed() < bound, "the agent was still running {bound:?} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the agent exited {:?} after SIGTERM", asked.elapsed());
    assert!(status.success(), "{status:?}");
    // the job was stopped, not left behind: its supervisor and every
    // process it started are gone once the agent has exited
    wait_until_none_left(&run_processes, Duration::from_secs(2), "after the agent exited").await;
}

/// Forwards each connection on a loopback port to one of `backends` in
/// turn, skipping those that refuse: a load balancer in front of several
/// servers, as a deployment would have. Returns its port and how many
/// connections each backend has been given.
async fn balancer(backends: Vec<u16>) -> (u16, Arc<Vec<AtomicUsize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let given: Arc<Vec<AtomicUsize>> = Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
    let counts = given.clone();
    tokio::spawn(async move {
        let mut next = 0usize;
        while let Ok((mut client, _)) = listener.accept().await {
            next += 1;
            let order: Vec<usize> = (0..backends.len()).map(|i| (next + i) % backends.len()).collect();
            let (backends, given) = (backends.clone(), given.clone());
            tokio::spawn(async move {
                for b in order {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", backends[b])).await {
                        given[b].fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    (port, counts)
}

/// The items this server process handed out in claims (its own counter,
/// read from its `/metrics` directly, not through the balancer).
async fn claims_served(port: u16) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("liftoff_items_claimed_total ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no liftoff_items_claimed_total in:\n{text}"))
}

/// Two servers on one PostgreSQL behind a balancer, 16 agents, 2,000
/// items; one server is killed with SIGKILL halfway. Every item runs
/// exactly once, ends `finished`, and its log is archived, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_16_agents_2000_items_one_server_killed_halfway() {
    const ITEMS: usize = 2000;
    const AGENTS: usize = 16;
    let Some(db) = liftoff_testkit::fresh_postgres_database("liftoff_two").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let blobs = format!("file://{}", dir.path().join("blobs").display());
    std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
    let (pa, pb) = (free_port(), free_port());
    // every log through the shared blob store, however short, so that the
    // archiving of the killed server's logs is exercised too
    let extra = ["--blob-store", blobs.as_str(), "--log-keep-max-bytes", "0"];
    let mut a = start_server(&dir.path().join("a"), pa, Some(&db), 10, &extra).await.child;
    let mut b = start_server(&dir.path().join("b"), pb, Some(&db), 10, &extra).await.child;
    let (lb, connections) = balancer(vec![pa, pb]).await;
    let url = format!("http://127.0.0.1:{lb}");
    let key = std::fs::read_to_string(dir.path().join("a/data/admin.key")).unwrap().trim().to_string();
    let client = Client::new(&url, &key, "default").unwrap();
    local_queue(&client).await;
    let marker = dir.path().join("ran");
    let script = format!("echo \"$LIFTOFF_RUN_ID\" >> {}\necho \"ran $LIFTOFF_RUN_ID\"\n", marker.display());
    code_job(&client, dir.path(), "once", &script).await;
    let mut ids = vec![];
    for _ in 0..ITEMS / 50 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let c = client.clone();
            batch.spawn(async move {
                c.launch("q", &LaunchRequest { job: "once".into(), ..Default::default() }).await.unwrap()
            });
        }
        ids.extend(batch.join_all().await);
    }
    let agent_key = client.create_key("agent").await.unwrap().secret;
    let mut agents: Vec<Reaped> = (0..AGENTS)
        .map(|i| {
            let log = std::fs::File::create(dir.path().join(format!("agent-{i}.log"))).unwrap();
            Reaped(
                Command::new(env!("CARGO_BIN_EXE_liftoff"))
                    .args(["agent", "-q", "q", "--grace", "5", "--agent-key", &format!("agent-{i}"), "--work-dir"])
                    .arg(dir.path().join(format!("work-{i}")))
                    .env("LIFTOFF_BASE_URL", &url)
                    .env("LIFTOFF_API_KEY", &agent_key)
                    .env("TMPDIR", dir.path())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let ended = || std::fs::read_to_string(&marker).map(|s| s.lines().count()).unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(900);
    while ended() < ITEMS / 2 {
        assert!(Instant::now() < until, "only {} runs in 900 s; see {}", ended(), dir.path().display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // both servers carry agents and hand out claims when one dies
    let given: Vec<usize> = connections.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let (claimed_a, claimed_b) = (claims_served(pa).await, claims_served(pb).await);
    eprintln!("before the kill: connections {given:?}, items claimed through a {claimed_a}, through b {claimed_b}");
    assert!(given.iter().all(|n| *n > 0), "the balancer gave both servers connections: {given:?}");
    assert!(claimed_a > 0.0 && claimed_b > 0.0, "both servers handed out claims: a {claimed_a}, b {claimed_b}");
    sigkill(&mut a);
    let mut left = ids.clone();
    while !left.is_empty() {
        assert!(Instant::now() < until, "{} items not ended in time; see {}", left.len(), dir.path().display());
        let mut still = vec![];
        for l in left {
            // through the balancer, a request in flight when the server died fails: ask again later
            let Ok(item) = client.get_item(&l.item_id).await else {
                still.push(l);
                continue;
            };
            if !(item.state.is_terminal() && item.log_archived) {
                still.push(l);
            } else {
                assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{}: {:?}", item.id, item.reason);
            }
        }
        left = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ran = std::fs::read_to_string(&marker).unwrap();
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for line in ran.lines() {
        *counts.entry(line).or_default() += 1;
    }
    assert_eq!(counts.len(), ITEMS, "every item ran");
    assert!(
        counts.values().all(|n| *n == 1),
        "no item ran twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    for l in &ids {
        let out = stdout_of(&client, &l.item_id).await;
        assert_eq!(out, format!("ran {}\n", l.run_id), "the archived log of {} is whole", l.item_id);
    }
    for agent in &mut agents {
        kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    }
    for (i, agent) in agents.iter_mut().enumerate() {
        let status = agent.wait().unwrap();
        assert!(
            status.success(),
            "agent {i} exited {status:?}; see {}",
            dir.path().join(format!("agent-{i}.log")).display()
        );
    }
    sigkill(&mut b);
}
