//! Agent benchmarks (not tests), against a server started in-process and a
//! real `liftoff agent` process:
//!
//! * `container`: enqueue→running latency of a tiny image on the
//!   local-container runner (needs a Docker engine: `DOCKER_HOST`);
//! * `rss`: the agent's resident memory while idle and while it runs 50
//!   local-process jobs;
//! * `build`: enqueue→running of a code job built by the docker builder and
//!   pushed to a registry: the first build of new content against the same
//!   job unchanged, whose image the registry already has (the agent finds
//!   its content-addressed tag and builds nothing). Needs a Docker engine
//!   (`DOCKER_HOST`) and a registry (`--registry`) the agent can push to:
//!   log in first, `docker login HOST:PORT` (its credentials go to
//!   `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, where the
//!   agent reads them). With the engine and registry of `.ci/docker.sh`:
//!   `source .ci/docker.sh; export DOCKER_HOST=$LIFTOFF_TEST_DOCKER_HOST
//!   DOCKER_CONFIG=$(mktemp -d); echo "$LIFTOFF_TEST_REGISTRY_PASSWORD" |
//!   docker login -u "$LIFTOFF_TEST_REGISTRY_USER" --password-stdin
//!   $LIFTOFF_TEST_REGISTRY; agent-bench build --registry $LIFTOFF_TEST_REGISTRY`;
//! * `append`: the build step of a code-only change of a Python job (1 MiB
//!   of code on a 200 MiB dependency), appended to its dependency image
//!   against a whole docker rebuild with the layer cache warm, alternating
//!   in one sitting; enqueue→running for both. Needs what `build` needs and
//!   the test's Python image (`.ci/python-base.sh`): `agent-bench append
//!   --registry $LIFTOFF_TEST_REGISTRY`;
//! * `soak`: several servers on one PostgreSQL, many agents, many items
//!   (100,000 by default); exactly-once from the job's side, throughput,
//!   latency and memory (see `soak.rs`);
//! * `cpu`: Liftoff's own CPU per run: a `liftoff server` process and a
//!   `liftoff agent` process run a burst of trivial local-process jobs; the
//!   CPU the two processes used (from /proc, their own time, not their
//!   children's) divided by the runs. The supervisors' and jobs' CPU is
//!   printed apart.
//!
//! Every process a bench starts (`liftoff agent`, `liftoff server`) runs in a
//! process group of its own, held by a guard that kills it and all its
//! descendants when dropped: on success, on any error, on a panic, and on
//! Ctrl-C or SIGTERM, so a bench leaves nothing running. Their output goes
//! to a file in the bench's directory. When a run does not end as the bench
//! expects, the error gives its state, stage, reason and warnings and the
//! last lines of its log (every stream: the agent's and the build's too);
//! when a process the bench started exits early, its status and last lines.
//!
//! `cargo build --release -p liftoff -p liftoff-bench && target/release/agent-bench container --image liftoff-test/busybox:1`

mod soak;

use anyhow::Context;
use clap::{Parser, Subcommand};
use liftoff_client::Client;
use liftoff_core::api::{CreateJob, CreateQueue, ItemView, LaunchRequest, LogStream};
use liftoff_core::job::{CodeSource, ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType};
use liftoff_server::{ServerConfig, start};
use liftoff_testkit::ProcessGroup;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of a run's log, or of a started process's output, an error shows.
const TAIL_LINES: usize = 30;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
    /// The liftoff binary [default: next to this one].
    #[arg(long, global = true)]
    liftoff: Option<PathBuf>,
}

#[derive(Subcommand)]
enum What {
    /// Enqueue→running latency on local-container.
    Container {
        /// A tiny image already in the engine (scripts/test.sh imports liftoff-test/busybox:1).
        #[arg(long, default_value = "liftoff-test/busybox:1")]
        image: String,
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// Agent resident memory, idle and with `jobs` local-process jobs running.
    Rss {
        #[arg(long, default_value_t = 50)]
        jobs: usize,
    },
    /// Enqueue→running of a built job: first build vs image found.
    Build {
        /// `host:port` of a registry the agent pushes to; log in to it first
        /// (`docker login HOST:PORT`: the agent reads `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
        #[arg(long)]
        registry: String,
        /// The base image of the job's Dockerfile, already in the engine.
        #[arg(long, default_value = "liftoff-test/busybox:1")]
        base: String,
        #[arg(long, default_value_t = 10)]
        samples: usize,
    },
    /// The build step of a code-only change of a Python job: appended to its
    /// dependency image vs a full docker rebuild with its layer cache warm.
    Append {
        /// `host:port` of a registry the agent pushes to (log in first, as for `build`).
        #[arg(long)]
        registry: String,
        /// The Python image of the generated Dockerfile, already in the engine.
        #[arg(long, default_value = "liftoff-test/python:3.11")]
        python: String,
        /// Size of the job's one dependency (a wheel of random bytes), MiB.
        #[arg(long, default_value_t = 200)]
        deps_mib: u32,
        /// Size of the job's code tree, KiB.
        #[arg(long, default_value_t = 1024)]
        code_kib: usize,
        #[arg(long, default_value_t = 10)]
        samples: usize,
    },
    /// Server and agent CPU per run over a burst of `runs` trivial jobs.
    Cpu {
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// The agent's max_jobs.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Database URL for the server; SQLite in its data directory when omitted.
        #[arg(long)]
        db: Option<String>,
    },
    /// Several servers on one PostgreSQL, many agents, many items of a
    /// one-line job: exactly-once and log completeness checked from the
    /// job's side, throughput, latency and memory printed.
    Soak {
        /// PostgreSQL URL, of an empty database (the servers share it).
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 2)]
        servers: usize,
        #[arg(long, default_value_t = 64)]
        agents: usize,
        #[arg(long, default_value_t = 100_000)]
        items: usize,
        /// Each agent's max_jobs.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
}

/// A process the bench started (`liftoff agent`, `liftoff server`), as the
/// leader of a process group of its own, its stdout and stderr in a file.
/// Dropping it SIGKILLs it and every descendant, those that left its group
/// included ([`ProcessGroup`]), then reaps it: whether the bench passes,
/// returns an error (`?` included) or panics, nothing it started outlives it.
struct Started {
    /// What it is, for messages: `agent`, `server`.
    what: &'static str,
    group: ProcessGroup,
    output: PathBuf,
}

impl Started {
    fn spawn(what: &'static str, cmd: &mut Command, output: PathBuf) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&output).with_context(|| format!("failed to create {}", output.display()))?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let group = ProcessGroup::spawn(cmd)
            .with_context(|| format!("failed to start the {what} ({})", cmd.get_program().to_string_lossy()))?;
        Ok(Self { what, group, output })
    }

    fn pid(&self) -> u32 {
        self.group.id()
    }

    /// Its exit status, once it has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.group.child().try_wait().ok().flatten()
    }

    /// An error if the process has exited, with its status and its output's last lines.
    fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => anyhow::bail!("the {} exited early ({status}); {}", self.what, self.output_tail()),
        }
    }

    /// The last lines of the process's own output, for an error.
    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let shown = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        format!("the {} process's own output, last {} lines:{}", self.what, shown.len(), block(shown))
    }
}

/// `lines`, each on a line of its own and indented, or ` (empty)`.
fn block(lines: &[String]) -> String {
    if lines.is_empty() {
        return " (empty)".into();
    }
    lines.iter().map(|l| format!("\n    {l}")).collect()
}

/// What became of a run, for an error: its state; its stage, exit code and
/// reason when the API gives them; its warnings; and the last lines of its
/// log, every stream (the agent's and the build's as well as the job's),
/// each line tagged with its stream.
async fn describe_run(client: &Client, item: &ItemView) -> String {
    let mut out = format!("run {} {} {}", item.id, if item.state.is_terminal() { "ended" } else { "is" }, item.state);
    let mut why = vec![];
    if let Some(stage) = item.stage {
        why.push(format!("stage {stage}"));
    }
    if let Some(code) = item.exit_code {
        why.push(format!("exit code {code}"));
    }
    match (&item.reason, why.is_empty()) {
        (Some(reason), true) => out += &format!(" ({reason})"),
        (Some(reason), false) => out += &format!(" ({}: {reason})", why.join(", ")),
        (None, false) => out += &format!(" ({}, no reason given)", why.join(", ")),
        (None, true) => {}
    }
    for w in &item.warnings {
        out += &format!("; warning at stage {}: {}", w.stage, w.message);
    }
    match log_tail(client, &item.id).await {
        Ok(lines) => out += &format!("; its log, last {} lines:{}", lines.len(), block(&lines)),
        Err(e) => out += &format!("; its log could not be read: {e:#}"),
    }
    out
}

/// The last [`TAIL_LINES`] lines of a run's log, all streams, as `stream| line`.
async fn log_tail(client: &Client, id: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = VecDeque::new();
    let mut after = 0;
    loop {
        let page = client.read_logs(id, after).await?;
        for chunk in &page.chunks {
            let stream = match chunk.stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
                LogStream::Agent => "agent",
                LogStream::Build => "build",
            };
            for line in chunk.data.lines() {
                lines.push_back(format!("{stream:>6}| {line}"));
                if lines.len() > TAIL_LINES {
                    lines.pop_front();
                }
            }
        }
        if page.complete || page.chunks.is_empty() || page.next_seq <= after {
            return Ok(lines.into());
        }
        after = page.next_seq;
    }
}

/// The CPU a process has used itself in user mode and in the kernel
/// (utime, stime), and what its waited-for children used (cutime, cstime),
/// from /proc/PID/stat, in clock ticks.
fn stat_ticks(pid: u32) -> anyhow::Result<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // the command name is in parentheses and may hold spaces: count fields after it
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<u64> = after.split_whitespace().skip(11).take(4).map(|x| x.parse().unwrap_or(0)).collect();
    f.try_into().map_err(|_| anyhow::anyhow!("malformed stat"))
}

/// Packs the directory `code`, uploads it and makes it job `name` of
/// project `default`, run as `entrypoint` (built from `dockerfile`, a path
/// in `code`, when given).
async fn code_job(
    client: &Client,
    code: &Path,
    name: &str,
    entrypoint: &[&str],
    dockerfile: Option<&str>,
) -> anyhow::Result<()> {
    let gz = liftoff_archive::pack_dir(code)?;
    let digest = liftoff_archive::sha256_digest(&gz);
    client.upload_blob(&digest, gz).await?;
    let source = JobSourceSpec {
        code: Some(CodeSource {
            digest,
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            build_context: None,
            dockerfile: dockerfile.map(str::to_string),
            base_image: None,
        }),
        ..Default::default()
    };
    let job = CreateJob { project: "default".into(), name: name.into(), source, aliases: vec![], runtime: None };
    client.create_job(&job).await?;
    Ok(())
}

/// Bytes a process has caused to be written to storage (`write_bytes`) and
/// its write system calls (`syscw`), from /proc/PID/io.
fn io_written(pid: u32) -> anyhow::Result<(u64, u64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse::<u64>().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/io"))
    };
    Ok((field("write_bytes")?, field("syscw")?))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

async fn cpu(liftoff: &Path, runs: usize, jobs: usize, db: Option<String>) -> anyhow::Result<()> {
    // the end is read from one page of the queue's items
    anyhow::ensure!(runs <= 1000, "--runs is at most 1000");
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(liftoff);
    server.args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(dir.path().join("data"));
    if let Some(db) = &db {
        server.args(["--db", db]);
    }
    // declared after `dir`, so dropped (killed) before it is removed
    let mut server = Started::spawn("server", &mut server, dir.path().join("server.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    let key_file = dir.path().join("data/admin.key");
    let until = Instant::now() + Duration::from_secs(30);
    while !key_file.exists() || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        server.ensure_running()?;
        anyhow::ensure!(
            Instant::now() < until,
            "the server did not start in 30 s (a reused --db has no fresh admin key); {}",
            server.output_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = std::fs::read_to_string(&key_file)?.trim().to_string();
    let client = Client::new(&url, &key, "default")?;
    client
        .create_queue(&CreateQueue {
            name: "cpu".into(),
            resource: ResourceType::LocalProcess,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await?;
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code)?;
    std::fs::write(code.join("run.sh"), "echo hi\n")?;
    code_job(&client, &code, "noop", &["true"], None).await?;
    let agent_key = client.create_key("agent").await?.secret;
    let mut agent = Started::spawn(
        "agent",
        Command::new(liftoff)
            .args(["agent", "-q", "cpu", "-j", &jobs.to_string(), "--agent-key", "bench", "--work-dir"])
            .arg(dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &url)
            .env("LIFTOFF_API_KEY", &agent_key)
            .env("TMPDIR", dir.path()),
        dir.path().join("agent.log"),
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await; // registered and long-polling
    agent.ensure_running()?;
    let ticks = clock_ticks();
    let [su0, ss0, ..] = stat_ticks(server.pid())?;
    let [au0, as0, acu0, acs0] = stat_ticks(agent.pid())?;
    let (w0, sw0) = io_written(server.pid())?;
    let t = Instant::now();
    for _ in 0..runs {
        client.launch("cpu", &LaunchRequest { job: "noop".into(), ..Default::default() }).await?;
    }
    // wait without adding load: one list a second
    loop {
        let items = client.list_items(Some("cpu"), 1000).await?;
        let ended = items.iter().filter(|i| i.state.is_terminal()).count();
        if ended >= runs {
            if let Some(bad) = items.iter().find(|i| i.state != ItemState::Finished) {
                let bad = client.get_item(&bad.id).await?;
                anyhow::bail!("a run did not finish: {}", describe_run(&client, &bad).await);
            }
            break;
        }
        server.ensure_running()?;
        agent.ensure_running()?;
        if t.elapsed() >= Duration::from_secs(600) {
            let waiting = items.iter().find(|i| !i.state.is_terminal()).context("no run left to wait for")?;
            let waiting = client.get_item(&waiting.id).await?;
            anyhow::bail!(
                "only {ended} of {runs} runs ended in 600 s; the first not ended: {}; {}",
                describe_run(&client, &waiting).await,
                agent.output_tail()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wall = t.elapsed();
    let [su1, ss1, ..] = stat_ticks(server.pid())?;
    let [au1, as1, acu1, acs1] = stat_ticks(agent.pid())?;
    let (w1, sw1) = io_written(server.pid())?;
    let secs = |t: u64| t as f64 / ticks;
    let (s0, s1, a0, a1) = (secs(su0 + ss0), secs(su1 + ss1), secs(au0 + as0), secs(au1 + as1));
    let (c0, c1) = (secs(acu0 + acs0), secs(acu1 + acs1));
    drop(agent);
    drop(server);
    let per = |x: f64| x * 1000.0 / runs as f64;
    println!(
        "Liftoff's own CPU per run, {runs} runs of `true` on local-process ({}, max_jobs {jobs}), {:.1} s wall:",
        if db.is_some() { "PostgreSQL" } else { "SQLite" },
        wall.as_secs_f64()
    );
    println!(
        "  server: {:.2} ms   agent: {:.2} ms   together: {:.2} ms",
        per(s1 - s0),
        per(a1 - a0),
        per(s1 - s0 + a1 - a0)
    );
    println!(
        "  in user mode / in the kernel: server {:.2} / {:.2} ms, agent {:.2} / {:.2} ms",
        per((su1 - su0) as f64 / ticks),
        per((ss1 - ss0) as f64 / ticks),
        per((au1 - au0) as f64 / ticks),
        per((as1 - as0) as f64 / ticks)
    );
    println!("  (not counted: the agent's children, supervisors and jobs: {:.2} ms per run)", per(c1 - c0));
    println!(
        "  server storage writes per run: {:.1} KiB to storage; {:.1} write system calls, sockets included (the database{})",
        (w1 - w0) as f64 / 1024.0 / runs as f64,
        (sw1 - sw0) as f64 / runs as f64,
        if db.is_some() { "'s own writes are PostgreSQL's, not counted" } else { " and log archives" }
    );
    println!("  resolution: one clock tick is {:.0} ms over the whole burst", 1000.0 / ticks);
    Ok(())
}

struct Rig {
    /// First, so dropped first: the agent is killed before the server stops
    /// and before its work directory in `dir` is removed.
    agent: Option<Started>,
    client: Client,
    url: String,
    key: String,
    dir: tempfile::TempDir,
    _server: liftoff_server::RunningServer,
}

async fn rig(queue: &str, resource: ResourceType) -> anyhow::Result<Rig> {
    let dir = tempfile::tempdir()?;
    let mut cfg = ServerConfig::new(dir.path().join("data"));
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.print_admin_key = false;
    let server = start(cfg).await?;
    let key = server.admin_key.clone().context("fresh server has an admin key")?;
    let client = Client::new(&server.base_url(), &key, "default")?;
    client
        .create_queue(&CreateQueue {
            name: queue.into(),
            resource,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await?;
    Ok(Rig { agent: None, client, url: server.base_url(), key, dir, _server: server })
}

impl Rig {
    /// Starts `liftoff agent ARGS --agent-key bench --work-dir DIR/work`
    /// against the rig's server, waits for it to register and long-poll,
    /// and holds it (killed when the rig drops).
    async fn start_agent(&mut self, liftoff: &Path, args: &[&str]) -> anyhow::Result<()> {
        let agent = Started::spawn(
            "agent",
            Command::new(liftoff)
                .arg("agent")
                .args(args)
                .args(["--agent-key", "bench", "--work-dir"])
                .arg(self.dir.path().join("work"))
                .env("LIFTOFF_BASE_URL", &self.url)
                .env("LIFTOFF_API_KEY", &self.key)
                .env("TMPDIR", self.dir.path()),
            self.dir.path().join("agent.log"),
        )?;
        self.agent = Some(agent);
        tokio::time::sleep(Duration::from_secs(2)).await; // registered and long-polling
        self.agent_running()
    }

    fn agent_running(&mut self) -> anyhow::Result<()> {
        self.agent.as_mut().map_or(Ok(()), Started::ensure_running)
    }

    fn agent_pid(&self) -> anyhow::Result<u32> {
        Ok(self.agent.as_ref().context("no agent started")?.pid())
    }

    /// An error about `item`: `what`, then what became of the run.
    async fn failure(&self, item: &ItemView, what: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{what}: {}", describe_run(&self.client, item).await)
    }

    /// Polls the run until `pred` holds; an error, saying what became of
    /// the run, if the agent exits first or 120 s pass.
    async fn wait(&mut self, id: &str, pred: impl Fn(&ItemView) -> bool) -> anyhow::Result<ItemView> {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let item = self.client.get_item(id).await?;
            if pred(&item) {
                return Ok(item);
            }
            let exited = self.agent.as_mut().and_then(Started::exited);
            if exited.is_some() || Instant::now() >= until {
                let what = match exited {
                    Some(status) => format!("the agent exited early ({status})"),
                    None => "timed out after 120 s".into(),
                };
                let agent = self.agent.as_ref().map(Started::output_tail).unwrap_or_default();
                return Err(anyhow::anyhow!("{}\n{agent}", self.failure(&item, what).await));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until the run is running, or has ended (a quick job may end
    /// between two polls); an error if it ended other than finished.
    async fn wait_started(&mut self, id: &str, what: &str) -> anyhow::Result<ItemView> {
        let item = self.wait(id, |i| i.state == ItemState::Running || i.state.is_terminal()).await?;
        if item.state.is_terminal() && item.state != ItemState::Finished {
            return Err(self.failure(&item, format!("{what} did not start")).await);
        }
        Ok(item)
    }

    /// Waits until the run has ended; an error if it ended other than finished.
    async fn wait_finished(&mut self, id: &str, what: &str) -> anyhow::Result<ItemView> {
        let item = self.wait(id, |i| i.state.is_terminal()).await?;
        if item.state != ItemState::Finished {
            return Err(self.failure(&item, format!("{what} did not finish")).await);
        }
        Ok(item)
    }
}

/// A code job whose Dockerfile copies its files onto `base`; `marker` makes its content unique.
async fn built_job(r: &Rig, name: &str, base: &str, marker: &str) -> anyhow::Result<()> {
    let code = r.dir.path().join(format!("code-{marker}"));
    std::fs::create_dir_all(&code)?;
    std::fs::write(
        code.join("Dockerfile"),
        format!("FROM {base}\nCOPY . /app\nWORKDIR /app\nENTRYPOINT [\"sh\", \"run.sh\"]\n"),
    )?;
    std::fs::write(code.join("run.sh"), "echo up\n")?;
    std::fs::write(code.join("marker.txt"), marker)?;
    code_job(&r.client, &code, name, &["sh", "run.sh"], Some("Dockerfile")).await?;
    Ok(())
}

async fn build(liftoff: &Path, registry: &str, base: &str, samples: usize) -> anyhow::Result<()> {
    let mut r = rig("boxes", ResourceType::LocalContainer).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = r.dir.path().join("launch-config.yaml");
    std::fs::write(
        &config,
        format!(
            "queues: [boxes]\nbuilder:\n  type: docker\n  destination: {registry}/liftoff-bench/build-{}\n",
            &run[..8]
        ),
    )?;
    r.start_agent(liftoff, &["-c", &config.to_string_lossy()]).await?;
    let (mut first, mut found, mut first_step, mut found_step) = (vec![], vec![], vec![], vec![]);
    for n in 0..samples {
        let job = format!("new-{n}");
        // new content: built and pushed
        built_job(&r, &job, base, &format!("{run}-{n}")).await?;
        let t = Instant::now();
        let id = r.client.launch("boxes", &LaunchRequest { job: job.clone(), ..Default::default() }).await?.item_id;
        let item = r.wait_started(&id, &format!("the first run of job {job} (to build and push)")).await?;
        first.push(t.elapsed());
        let b = match &item.build {
            Some(b) if b.how == liftoff_core::api::BuildHow::Built => b,
            Some(b) => return Err(r.failure(&item, format!("expected a build, got {}", b.how.as_str())).await),
            None => return Err(r.failure(&item, "no build record").await),
        };
        first_step.push(Duration::from_secs_f64(b.seconds));
        r.wait_finished(&id, &format!("the first run of job {job}")).await?;
        // the same job again: its image is in the registry
        let t = Instant::now();
        let id = r.client.launch("boxes", &LaunchRequest { job: job.clone(), ..Default::default() }).await?.item_id;
        let item = r.wait_started(&id, &format!("the second run of job {job} (image in the registry)")).await?;
        found.push(t.elapsed());
        let b = match &item.build {
            Some(b) if b.how == liftoff_core::api::BuildHow::Found => b,
            Some(b) => return Err(r.failure(&item, format!("expected found, got {}", b.how.as_str())).await),
            None => return Err(r.failure(&item, "no build record").await),
        };
        found_step.push(Duration::from_secs_f64(b.seconds));
        r.wait_finished(&id, &format!("the second run of job {job}")).await?;
    }
    drop(r); // kills the agent
    for v in [&mut first, &mut found, &mut first_step, &mut found_step] {
        v.sort();
    }
    println!("docker builder, push to {registry}, {samples} jobs, each launched twice:");
    println!(
        "  first build  enqueue -> running: p50 {:?}, p90 {:?} (build step {:?} p50)",
        pct(&first, 0.5),
        pct(&first, 0.9),
        pct(&first_step, 0.5)
    );
    println!(
        "  image found  enqueue -> running: p50 {:?}, p90 {:?} (build step {:?} p50)",
        pct(&found, 0.5),
        pct(&found, 0.9),
        pct(&found_step, 0.5)
    );
    Ok(())
}

/// A Python job on the generated Dockerfile: `train.py` (which prints
/// `marker`), `data/` of `code_kib` KiB of random bytes, requirements from
/// `wheels/` in `deps`. With `own_dockerfile`, the job carries the
/// generated Dockerfile as its own, with its files laid out as the
/// generated context lays them out (the code under `src/`, `wheels/` beside
/// it), so that the very same Dockerfile is built whole.
async fn python_job(
    r: &Rig,
    name: &str,
    deps: &Path,
    marker: &str,
    code_kib: usize,
    python: &str,
    own_dockerfile: bool,
) -> anyhow::Result<()> {
    let root = r.dir.path().join(format!("code-{name}-{marker}"));
    let code = if own_dockerfile { root.join("src") } else { root.clone() };
    std::fs::create_dir_all(code.join("data"))?;
    std::fs::write(code.join("train.py"), format!("import liftoff_hello\nprint('up {marker}')\n"))?;
    // xorshift bytes: incompressible, the worst case for packing and sending
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..code_kib.div_ceil(64) {
        let bytes: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(code.join(format!("data/part-{i:03}.bin")), bytes)?;
    }
    std::fs::copy(deps.join("requirements.txt"), code.join("requirements.txt"))?;
    std::fs::create_dir_all(root.join("wheels"))?;
    for wheel in std::fs::read_dir(deps.join("wheels"))? {
        let wheel = wheel?.path();
        std::fs::hard_link(&wheel, root.join("wheels").join(wheel.file_name().context("a wheel's name")?))?;
    }
    let entrypoint = vec!["python".to_string(), "train.py".to_string()];
    let dockerfile = if own_dockerfile {
        let generated = liftoff_build::dockerfile::generate(&liftoff_build::dockerfile::GeneratedSpec {
            python_version: "3.11",
            python_image: python,
            accelerator_base_image: None,
            requirements_file: Some("requirements.txt"),
            wheels: true,
            extra_index_url: None,
            entrypoint: &entrypoint,
        });
        std::fs::write(root.join("Dockerfile"), generated)?;
        Some("Dockerfile".to_string())
    } else {
        None
    };
    let gz = liftoff_archive::pack_dir(&root)?;
    let digest = liftoff_archive::sha256_digest(&gz);
    r.client.upload_blob(&digest, gz).await?;
    let source = JobSourceSpec {
        code: Some(CodeSource {
            digest,
            entrypoint,
            build_context: None,
            dockerfile,
            base_image: Some(python.to_string()),
        }),
        ..Default::default()
    };
    let job = CreateJob {
        project: "default".into(),
        name: name.into(),
        source,
        aliases: vec![],
        runtime: Some("3.11".into()),
    };
    r.client.create_job(&job).await?;
    Ok(())
}

/// One sample of a code-only change: the job's new version launched,
/// enqueue→running, its build step and its build log.
async fn code_change(
    r: &mut Rig,
    job: &str,
    how: liftoff_core::api::BuildHow,
) -> anyhow::Result<(Duration, Duration, String)> {
    let t = Instant::now();
    let id = r.client.launch("boxes", &LaunchRequest { job: job.into(), ..Default::default() }).await?.item_id;
    let item = r.wait_started(&id, &format!("a run of job {job}")).await?;
    let to_running = t.elapsed();
    let step = match &item.build {
        Some(b) if b.how == how => Duration::from_secs_f64(b.seconds),
        Some(b) => return Err(r.failure(&item, format!("expected {}, got {}", how.as_str(), b.how.as_str())).await),
        None => return Err(r.failure(&item, "no build record").await),
    };
    r.wait_finished(&id, &format!("a run of job {job}")).await?;
    let log = r.client.read_logs(&id, 0).await?;
    let build_log = log.chunks.iter().filter(|c| c.stream == LogStream::Build).map(|c| c.data.as_str()).collect();
    Ok((to_running, step, build_log))
}

/// `append`: the same Python job, changed in one line per sample, built
/// two ways in one sitting: appended (its code as a layer on its
/// dependency image) and whole by the docker builder from the same
/// Dockerfile with the engine's layer cache warm (every step but the code
/// copy is cached).
async fn append(
    liftoff: &Path,
    registry: &str,
    python: &str,
    deps_mib: u32,
    code_kib: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let mut r = rig("boxes", ResourceType::LocalContainer).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = r.dir.path().join("launch-config.yaml");
    let repo = format!("{registry}/liftoff-bench/append-{}", &run[..8]);
    std::fs::write(
        &config,
        format!("queues: [boxes]\nmax_jobs: 1\nbuilder:\n  type: docker\n  destination: {repo}\n"),
    )?;
    let deps = r.dir.path().join("deps");
    std::fs::create_dir_all(&deps)?;
    std::fs::write(deps.join("requirements.txt"), "liftoff-hello==0.1\n")?;
    liftoff_testkit::python_wheel::make_wheel_with_payload(&deps, "0.1", deps_mib);
    r.start_agent(liftoff, &["-c", &config.to_string_lossy()]).await?;
    use liftoff_core::api::BuildHow;
    // warm-up: the dependency image built and pushed, the whole image built once (the cache warm)
    let t = Instant::now();
    python_job(&r, "appended", &deps, "warm-up", code_kib, python, false).await?;
    let (_, deps_step, _) = code_change(&mut r, "appended", BuildHow::Appended).await?;
    python_job(&r, "rebuilt", &deps, "warm-up", code_kib, python, true).await?;
    code_change(&mut r, "rebuilt", BuildHow::Built).await?;
    eprintln!(
        "warm-up (dependency image of {deps_mib} MiB built and pushed in {deps_step:?}; a whole build): {:?}",
        t.elapsed()
    );
    let (mut appended, mut rebuilt) = (Samples::default(), Samples::default());
    for n in 0..samples {
        let marker = format!("{run}-{n}");
        python_job(&r, "appended", &deps, &marker, code_kib, python, false).await?;
        let (to_running, step, log) = code_change(&mut r, "appended", BuildHow::Appended).await?;
        appended.push(to_running, step);
        let lines: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("liftoff build: ")).collect();
        appended.notes.push(lines.join("\n    "));
        python_job(&r, "rebuilt", &deps, &marker, code_kib, python, true).await?;
        let (to_running, step, _) = code_change(&mut r, "rebuilt", BuildHow::Built).await?;
        rebuilt.push(to_running, step);
    }
    drop(r); // kills the agent
    println!(
        "code-only change of a Python job ({code_kib} KiB of code, a {deps_mib} MiB dependency on {python}), {samples} samples each, alternating, push to {registry}:"
    );
    appended.print("appended (no builder run)");
    rebuilt.print("docker rebuild, cache warm");
    println!(
        "  build step p50: the append is {:.1}x faster",
        rebuilt.step_p(0.5).as_secs_f64() / appended.step_p(0.5).as_secs_f64().max(1e-9)
    );
    if let Some(line) = appended.notes.get(appended.notes.len() / 2) {
        println!("  where an append's time goes (the build log of sample {}):\n    {line}", appended.notes.len() / 2);
    }
    Ok(())
}

/// Timings of one way of building.
#[derive(Default)]
struct Samples {
    to_running: Vec<Duration>,
    step: Vec<Duration>,
    notes: Vec<String>,
}

impl Samples {
    fn push(&mut self, to_running: Duration, step: Duration) {
        self.to_running.push(to_running);
        self.step.push(step);
    }

    fn step_p(&self, p: f64) -> Duration {
        let mut v = self.step.clone();
        v.sort();
        pct(&v, p)
    }

    fn print(&self, what: &str) {
        let mut running = self.to_running.clone();
        running.sort();
        println!(
            "  {what:<28} build step p50 {:>9.3?} p90 {:>9.3?} | enqueue -> running p50 {:>9.3?} p90 {:>9.3?}",
            self.step_p(0.5),
            self.step_p(0.9),
            pct(&running, 0.5),
            pct(&running, 0.9)
        );
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// A `/proc/PID/status` memory line, in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.split(':').next() == Some(field)).with_context(|| format!("no {field}"))?;
    Ok(line.split_whitespace().nth(1).with_context(|| format!("bad {field}"))?.parse()?)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Enqueue→running and enqueue→first output of a tiny image on local-container.
async fn container(liftoff: &Path, image: String, samples: usize) -> anyhow::Result<()> {
    let mut r = rig("boxes", ResourceType::LocalContainer).await?;
    let source = JobSourceSpec {
        image: Some(ImageSource { image, args: vec!["sh".into(), "-c".into(), "echo up".into()] }),
        ..Default::default()
    };
    r.client
        .create_job(&CreateJob {
            project: "default".into(),
            name: "tiny".into(),
            source,
            aliases: vec![],
            runtime: None,
        })
        .await?;
    r.start_agent(liftoff, &["-q", "boxes", "-j", "1"]).await?;
    let (mut to_running, mut to_output) = (vec![], vec![]);
    for _ in 0..samples {
        let t = Instant::now();
        let id = r.client.launch("boxes", &LaunchRequest { job: "tiny".into(), ..Default::default() }).await?.item_id;
        r.wait_started(&id, "a run of the tiny image").await?;
        to_running.push(t.elapsed());
        loop {
            let page = r.client.read_logs(&id, 0).await?;
            if page.chunks.iter().any(|c| c.stream == LogStream::Stdout && c.data.contains("up")) {
                break;
            }
            if t.elapsed() >= Duration::from_secs(60) {
                let item = r.client.get_item(&id).await?;
                return Err(r.failure(&item, "no output from the container in 60 s").await);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        to_output.push(t.elapsed());
        r.wait_finished(&id, "a run of the tiny image").await?;
    }
    drop(r); // kills the agent
    to_running.sort();
    to_output.sort();
    println!("local-container, {samples} runs of a tiny image, one at a time:");
    println!(
        "  enqueue -> running (image ready, start reported): p50 {:?}, p90 {:?}",
        pct(&to_running, 0.5),
        pct(&to_running, 0.9)
    );
    println!(
        "  enqueue -> first container output at the server:   p50 {:?}, p90 {:?}",
        pct(&to_output, 0.5),
        pct(&to_output, 0.9)
    );
    Ok(())
}

/// The agent's resident memory, idle and with `jobs` local-process jobs running.
async fn rss(liftoff: &Path, jobs: usize) -> anyhow::Result<()> {
    let mut r = rig("local", ResourceType::LocalProcess).await?;
    let code = r.dir.path().join("code");
    std::fs::create_dir_all(&code)?;
    std::fs::write(code.join("run.sh"), "echo up; sleep 30\n")?;
    code_job(&r.client, &code, "nap", &["sh", "run.sh"], None).await?;
    r.start_agent(liftoff, &["-q", "local", "-j", "-1"]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.agent_running()?;
    let idle = rss_kib(r.agent_pid()?)?;
    // Its parts: the heap and stacks, and the pages of the binary mapped.
    // The second depends on the page cache: the kernel maps the cached
    // neighbours of each page the agent touches (fault-around), so a
    // binary just copied (all of it cached) shows more; clean and shared.
    let (anon, file) = (status_kib(r.agent_pid()?, "RssAnon")?, status_kib(r.agent_pid()?, "RssFile")?);
    let mut ids = vec![];
    for _ in 0..jobs {
        ids.push(r.client.launch("local", &LaunchRequest { job: "nap".into(), ..Default::default() }).await?.item_id);
    }
    for id in &ids {
        let item = r.wait_started(id, "a nap run").await?;
        if item.state != ItemState::Running {
            return Err(r.failure(&item, "a nap run (sleep 30) ended before the samples").await);
        }
    }
    let mut peak = 0;
    for _ in 0..20 {
        r.agent_running()?;
        peak = peak.max(rss_kib(r.agent_pid()?)?);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for id in &ids {
        r.client.stop_item(id).await?;
    }
    drop(r); // kills the agent and its runs
    println!("agent resident memory (VmRSS):");
    println!(
        "  idle, polling one queue:           {:.1} MiB ({:.1} MiB anonymous, {:.1} MiB of mapped files)",
        idle as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    println!("  running {jobs} local-process jobs: {:.1} MiB (highest of 20 samples over 5 s)", peak as f64 / 1024.0);
    Ok(())
}

/// Runs the bench; on Ctrl-C, SIGTERM or SIGHUP drops it, so that what it
/// started is killed: it runs in process groups of their own, which a
/// terminal's signals do not reach.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let args = Args::parse();
    let liftoff = match args.liftoff {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("liftoff"),
    };
    let bench = async {
        match args.what {
            What::Cpu { runs, jobs, db } => cpu(&liftoff, runs, jobs, db).await,
            What::Build { registry, base, samples } => build(&liftoff, &registry, &base, samples).await,
            What::Append { registry, python, deps_mib, code_kib, samples } => {
                append(&liftoff, &registry, &python, deps_mib, code_kib, samples).await
            }
            What::Container { image, samples } => container(&liftoff, image, samples).await,
            What::Rss { jobs } => rss(&liftoff, jobs).await,
            What::Soak { db, servers, agents, items, jobs } => {
                soak::soak(&liftoff, &db, servers, agents, items, jobs).await
            }
        }
    };
    let (mut term, mut hup) = (signal(SignalKind::terminate())?, signal(SignalKind::hangup())?);
    tokio::select! {
        outcome = bench => outcome,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (SIGINT); killed what the bench started"),
        _ = term.recv() => anyhow::bail!("terminated (SIGTERM); killed what the bench started"),
        _ = hup.recv() => anyhow::bail!("hung up (SIGHUP); killed what the bench started"),
    }
}
