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
//!   (`DOCKER_HOST`) and a registry (`--registry`, credentials in
//!   `DOCKER_CONFIG`'s config.json);
//! * `cpu`: Liftoff's own CPU per run: a `liftoff server` process and a
//!   `liftoff agent` process run a burst of trivial local-process jobs; the
//!   CPU the two processes used (from /proc, their own time, not their
//!   children's) divided by the runs. The supervisors' and jobs' CPU is
//!   printed apart.
//!
//! `cargo build --release -p liftoff -p liftoff-bench && target/release/agent-bench container --image liftoff-test/busybox:1`

use anyhow::Context;
use clap::{Parser, Subcommand};
use liftoff_client::Client;
use liftoff_core::api::{CreateJob, CreateQueue, ItemView, LaunchRequest, LogStream};
use liftoff_core::job::{CodeSource, ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType};
use liftoff_server::{ServerConfig, start};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        /// `host:port` of a registry the agent pushes to (credentials from `DOCKER_CONFIG`).
        #[arg(long)]
        registry: String,
        /// The base image of the job's Dockerfile, already in the engine.
        #[arg(long, default_value = "liftoff-test/busybox:1")]
        base: String,
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
}

/// CPU seconds a process has used itself (utime + stime), and what its
/// waited-for children used (cutime + cstime), from /proc/PID/stat.
fn cpu_seconds(pid: u32, ticks: f64) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // the command name is in parentheses and may hold spaces: count fields after it
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<u64> = after.split_whitespace().skip(11).take(4).map(|x| x.parse().unwrap_or(0)).collect();
    anyhow::ensure!(f.len() == 4, "malformed stat");
    Ok(((f[0] + f[1]) as f64 / ticks, (f[2] + f[3]) as f64 / ticks))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

async fn cpu(liftoff: &PathBuf, runs: usize, jobs: usize, db: Option<String>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(liftoff);
    server
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(db) = &db {
        server.args(["--db", db]);
    }
    let mut server = server.spawn().with_context(|| format!("failed to start {}", liftoff.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let key_file = dir.path().join("data/admin.key");
    let until = Instant::now() + Duration::from_secs(30);
    while !key_file.exists() || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(Instant::now() < until, "the server did not start (a reused --db has no fresh admin key)");
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
    let gz = liftoff_archive::pack_dir(&code)?;
    let digest = liftoff_archive::sha256_digest(&gz);
    client.upload_blob(&digest, gz).await?;
    let source = JobSourceSpec {
        code: Some(CodeSource {
            digest,
            entrypoint: vec!["true".into()],
            build_context: None,
            dockerfile: None,
            base_image: None,
        }),
        ..Default::default()
    };
    client
        .create_job(&CreateJob {
            project: "default".into(),
            name: "noop".into(),
            source,
            aliases: vec![],
            runtime: None,
        })
        .await?;
    let agent_key = client.create_key("agent").await?.secret;
    let mut agent = Command::new(liftoff)
        .args(["agent", "-q", "cpu", "-j", &jobs.to_string(), "--agent-key", "bench", "--work-dir"])
        .arg(dir.path().join("work"))
        .env("LIFTOFF_BASE_URL", &url)
        .env("LIFTOFF_API_KEY", &agent_key)
        .env("TMPDIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await; // registered and long-polling
    let ticks = clock_ticks();
    let (s0, _) = cpu_seconds(server.id(), ticks)?;
    let (a0, c0) = cpu_seconds(agent.id(), ticks)?;
    let t = Instant::now();
    for _ in 0..runs {
        client.launch("cpu", &LaunchRequest { job: "noop".into(), ..Default::default() }).await?;
    }
    // wait without adding load: one list a second
    loop {
        let items = client.list_items(Some("cpu"), 1000).await?;
        let ended = items.iter().filter(|i| i.state.is_terminal()).count();
        if ended >= runs {
            anyhow::ensure!(items.iter().all(|i| i.state == ItemState::Finished), "a run did not finish");
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "only {ended} of {runs} runs ended in 600 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wall = t.elapsed();
    let (s1, _) = cpu_seconds(server.id(), ticks)?;
    let (a1, c1) = cpu_seconds(agent.id(), ticks)?;
    agent.kill()?;
    server.kill()?;
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
    println!("  (not counted: the agent's children, supervisors and jobs: {:.2} ms per run)", per(c1 - c0));
    println!("  resolution: one clock tick is {:.0} ms over the whole burst", 1000.0 / ticks);
    Ok(())
}

struct Rig {
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
    Ok(Rig { client, url: server.base_url(), key, dir, _server: server })
}

impl Rig {
    fn agent(&self, liftoff: &PathBuf, queue: &str, max_jobs: &str) -> anyhow::Result<Child> {
        Command::new(liftoff)
            .args(["agent", "-q", queue, "-j", max_jobs, "--agent-key", "bench", "--work-dir"])
            .arg(self.dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &self.url)
            .env("LIFTOFF_API_KEY", &self.key)
            .env("TMPDIR", self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {}", liftoff.display()))
    }

    async fn wait(&self, id: &str, pred: impl Fn(&ItemView) -> bool) -> anyhow::Result<ItemView> {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let item = self.client.get_item(id).await?;
            if pred(&item) {
                return Ok(item);
            }
            anyhow::ensure!(Instant::now() < until, "timed out; item is {} ({:?})", item.state, item.reason);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
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
    let gz = liftoff_archive::pack_dir(&code)?;
    let digest = liftoff_archive::sha256_digest(&gz);
    r.client.upload_blob(&digest, gz).await?;
    let source = JobSourceSpec {
        code: Some(CodeSource {
            digest,
            entrypoint: vec!["sh".into(), "run.sh".into()],
            build_context: None,
            dockerfile: Some("Dockerfile".into()),
            base_image: None,
        }),
        ..Default::default()
    };
    let job = CreateJob { project: "default".into(), name: name.into(), source, aliases: vec![], runtime: None };
    r.client.create_job(&job).await?;
    Ok(())
}

async fn build(liftoff: &PathBuf, registry: &str, base: &str, samples: usize) -> anyhow::Result<()> {
    let r = rig("boxes", ResourceType::LocalContainer).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config = r.dir.path().join("launch-config.yaml");
    std::fs::write(
        &config,
        format!(
            "queues: [boxes]\nbuilder:\n  type: docker\n  destination: {registry}/liftoff-bench/build-{}\n",
            &run[..8]
        ),
    )?;
    let mut agent = Command::new(liftoff)
        .args(["agent", "-c"])
        .arg(&config)
        .args(["--agent-key", "bench", "--work-dir"])
        .arg(r.dir.path().join("work"))
        .env("LIFTOFF_BASE_URL", &r.url)
        .env("LIFTOFF_API_KEY", &r.key)
        .env("TMPDIR", r.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("failed to start {}", liftoff.display()))?;
    tokio::time::sleep(Duration::from_secs(2)).await; // registered and long-polling
    let launch = |job: String| {
        let client = r.client.clone();
        async move {
            let t = Instant::now();
            let id = client.launch("boxes", &LaunchRequest { job, ..Default::default() }).await?.item_id;
            anyhow::Ok((t, id))
        }
    };
    let (mut first, mut found, mut first_step, mut found_step) = (vec![], vec![], vec![], vec![]);
    for n in 0..samples {
        // new content: built and pushed
        built_job(&r, &format!("new-{n}"), base, &format!("{run}-{n}")).await?;
        let (t, id) = launch(format!("new-{n}")).await?;
        let item = r.wait(&id, |i| i.state == ItemState::Running || i.state.is_terminal()).await?;
        first.push(t.elapsed());
        let b = item.build.context("no build record")?;
        anyhow::ensure!(b.how == liftoff_core::api::BuildHow::Built, "expected a build, got {}", b.how.as_str());
        first_step.push(Duration::from_secs_f64(b.seconds));
        r.wait(&id, |i| i.state.is_terminal()).await?;
        // the same job again: its image is in the registry
        let (t, id) = launch(format!("new-{n}")).await?;
        let item = r.wait(&id, |i| i.state == ItemState::Running || i.state.is_terminal()).await?;
        found.push(t.elapsed());
        let b = item.build.context("no build record")?;
        anyhow::ensure!(b.how == liftoff_core::api::BuildHow::Found, "expected found, got {}", b.how.as_str());
        found_step.push(Duration::from_secs_f64(b.seconds));
        let end = r.wait(&id, |i| i.state.is_terminal()).await?;
        anyhow::ensure!(end.state == ItemState::Finished, "run ended {} ({:?})", end.state, end.reason);
    }
    agent.kill()?;
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

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let liftoff = match args.liftoff {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("liftoff"),
    };
    match args.what {
        What::Cpu { runs, jobs, db } => cpu(&liftoff, runs, jobs, db).await?,
        What::Build { registry, base, samples } => build(&liftoff, &registry, &base, samples).await?,
        What::Container { image, samples } => {
            let r = rig("boxes", ResourceType::LocalContainer).await?;
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
            let mut agent = r.agent(&liftoff, "boxes", "1")?;
            tokio::time::sleep(Duration::from_secs(2)).await; // registered and long-polling
            let (mut to_running, mut to_output) = (vec![], vec![]);
            for _ in 0..samples {
                let t = Instant::now();
                let id = r
                    .client
                    .launch("boxes", &LaunchRequest { job: "tiny".into(), ..Default::default() })
                    .await?
                    .item_id;
                r.wait(&id, |i| i.state == ItemState::Running || i.state.is_terminal()).await?;
                to_running.push(t.elapsed());
                loop {
                    let page = r.client.read_logs(&id, 0).await?;
                    if page.chunks.iter().any(|c| c.stream == LogStream::Stdout && c.data.contains("up")) {
                        break;
                    }
                    anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "no output from the container");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                to_output.push(t.elapsed());
                let end = r.wait(&id, |i| i.state.is_terminal()).await?;
                anyhow::ensure!(end.state == ItemState::Finished, "run ended {} ({:?})", end.state, end.reason);
            }
            agent.kill()?;
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
        }
        What::Rss { jobs } => {
            let r = rig("local", ResourceType::LocalProcess).await?;
            let code = r.dir.path().join("code");
            std::fs::create_dir_all(&code)?;
            std::fs::write(code.join("run.sh"), "echo up; sleep 30\n")?;
            let gz = liftoff_archive::pack_dir(&code)?;
            let digest = liftoff_archive::sha256_digest(&gz);
            r.client.upload_blob(&digest, gz).await?;
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
            r.client
                .create_job(&CreateJob {
                    project: "default".into(),
                    name: "nap".into(),
                    source,
                    aliases: vec![],
                    runtime: None,
                })
                .await?;
            let mut agent = r.agent(&liftoff, "local", "-1")?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let idle = rss_kib(agent.id())?;
            let mut ids = vec![];
            for _ in 0..jobs {
                ids.push(
                    r.client.launch("local", &LaunchRequest { job: "nap".into(), ..Default::default() }).await?.item_id,
                );
            }
            for id in &ids {
                r.wait(id, |i| i.state == ItemState::Running).await?;
            }
            let mut peak = 0;
            for _ in 0..20 {
                peak = peak.max(rss_kib(agent.id())?);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            for id in &ids {
                r.client.stop_item(id).await?;
            }
            agent.kill()?;
            println!("agent resident memory (VmRSS):");
            println!("  idle, polling one queue:           {:.1} MiB", idle as f64 / 1024.0);
            println!(
                "  running {jobs} local-process jobs: {:.1} MiB (highest of 20 samples over 5 s)",
                peak as f64 / 1024.0
            );
        }
    }
    Ok(())
}
