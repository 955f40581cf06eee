//! Agent benchmarks (not tests), against a server started in-process and a
//! real `liftoff agent` process:
//!
//! * `container`: enqueue→running latency of a tiny image on the
//!   local-container runner (needs a Docker engine: `DOCKER_HOST`);
//! * `rss`: the agent's resident memory while idle and while it runs 50
//!   local-process jobs.
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
