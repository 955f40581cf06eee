//! Benchmark harness (not a test): starts a server in-process on loopback and
//! prints enqueue→claim latency of an idle waiting agent and claim
//! throughput with concurrent agents, over real HTTP.
//!
//! `cargo run --release -p liftoff-bench -- [--db postgres://...]`

use anyhow::Context;
use clap::Parser;
use liftoff_client::Client;
use liftoff_core::ResourceType;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest, RegisterAgent};
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_server::{ServerConfig, start};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Database URL; SQLite in a temp directory when omitted.
    #[arg(long)]
    db: Option<String>,
    /// Concurrent agents in the throughput run.
    #[arg(long, default_value_t = 16)]
    agents: usize,
    /// Items claimed in the throughput run.
    #[arg(long, default_value_t = 5000)]
    items: usize,
    /// Enqueue→claim samples in the latency run.
    #[arg(long, default_value_t = 300)]
    samples: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.print_admin_key = false;
    cfg.db_url = args.db.clone();
    let server = start(cfg).await.context("failed to start the server")?;
    // A reused database has no fresh admin key: then read it from the env.
    let key = match server.admin_key.clone() {
        Some(k) => k,
        None => std::env::var("LIFTOFF_API_KEY").context("database already initialised: set LIFTOFF_API_KEY")?,
    };
    let client = Client::new(&server.base_url(), &key, "default")?;
    let run = format!("bench{}", std::process::id());
    // The burst has a queue of its own: the latency samples' items stay
    // claimed (never started) until their leases run out and requeue them,
    // which in a slow burst would hand the burst's agents more items than
    // it launched.
    let burst = format!("{run}-burst");
    for name in [&run, &burst] {
        client
            .create_queue(&CreateQueue {
                name: name.clone(),
                resource: ResourceType::LocalContainer,
                config: serde_json::json!({}),
                template_variables: vec![],
                prioritization: true,
            })
            .await?;
    }
    let source =
        JobSourceSpec { image: Some(ImageSource { image: "busybox".into(), args: vec![] }), ..Default::default() };
    client
        .create_job(&CreateJob { project: "default".into(), name: run.clone(), source, aliases: vec![], runtime: None })
        .await?;
    let backend = if args.db.is_some() { "postgres" } else { "sqlite" };
    println!(
        "liftoff-bench: backend={backend}, server {}, {} cores",
        server.base_url(),
        std::thread::available_parallelism()?.get()
    );

    latency(&client, &run, args.samples).await?;
    throughput(&client, &burst, &run, args.agents, args.items).await?;
    server.shutdown().await;
    Ok(())
}

async fn register(client: &Client, queue: &str) -> anyhow::Result<String> {
    let req = RegisterAgent {
        queues: vec![queue.to_string()],
        hostname: "bench".into(),
        max_jobs: -1,
        version: "bench".into(),
    };
    Ok(client.register_agent(&req).await?.id)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// An agent waits in a long-poll; each sample enqueues one item and measures
/// until the agent holds it.
async fn latency(client: &Client, queue: &str, samples: usize) -> anyhow::Result<()> {
    let agent = register(client, queue).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(1);
    let waiter = {
        let (client, queue) = (client.clone(), queue.to_string());
        tokio::spawn(async move {
            for _ in 0..samples {
                loop {
                    if client.claim(&agent, std::slice::from_ref(&queue), Duration::from_secs(10)).await?.is_some() {
                        break;
                    }
                }
                tx.send(Instant::now()).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut lat = Vec::with_capacity(samples);
    // its parts: the launch's answer, and from it to the claim's (the two overlap)
    let (mut launch, mut after) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    let req = LaunchRequest { job: queue.to_string(), ..Default::default() };
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(10)).await; // let the agent settle into its wait
        let t0 = Instant::now();
        client.launch(queue, &req).await?;
        let answered = Instant::now();
        let got = rx.recv().await.context("waiter ended early")?;
        lat.push(got - t0);
        launch.push(answered - t0);
        after.push(got.saturating_duration_since(answered));
    }
    waiter.await??;
    for v in [&mut lat, &mut launch, &mut after] {
        v.sort();
    }
    println!(
        "enqueue->claim latency, idle waiting agent: n={samples} p50={:.2} ms p99={:.2} ms max={:.2} ms \
         (launch answered: p50 {:.2} ms; claim answered after it: p50 {:.2} ms)",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
        ms(percentile(&launch, 0.5)),
        ms(percentile(&after, 0.5)),
    );
    Ok(())
}

/// Fills `queue` with launches of `job`, then `agents` concurrent agents
/// claim until it is empty.
async fn throughput(client: &Client, queue: &str, job: &str, agents: usize, items: usize) -> anyhow::Result<()> {
    let req = LaunchRequest { job: job.to_string(), ..Default::default() };
    let t = Instant::now();
    for batch in (0..items).collect::<Vec<_>>().chunks(64) {
        let futs = batch.iter().map(|_| client.launch(queue, &req));
        for r in futures::future::join_all(futs).await {
            r?;
        }
    }
    let enq = t.elapsed();
    let mut tasks = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..agents {
        ids.push(register(client, queue).await?);
    }
    let start = Instant::now();
    for id in ids {
        let (client, queue) = (client.clone(), queue.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while client.claim(&id, std::slice::from_ref(&queue), Duration::ZERO).await?.is_some() {
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let took = start.elapsed();
    anyhow::ensure!(total == items, "claimed {total} of {items} items");
    println!(
        "claims/s with {agents} concurrent agents: {:.0} ({total} claims in {:.2} s; enqueue rate {:.0}/s)",
        total as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        items as f64 / enq.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
