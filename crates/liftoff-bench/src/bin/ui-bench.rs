//! Web UI benchmark (not a test): the queue page's render time with many
//! items in the store. Starts a server in-process, enqueues `--items` items
//! on one queue (concurrently, through the API), signs in like a browser,
//! then times `GET /queues/{queue}` for the first page, a page deep in the
//! queue (keyset `before`), and each filter (state, agent, job, launcher,
//! launch time), and prints p50/p90/max.
//! Timed over loopback HTTP from the client, so each figure is the server's
//! time plus one loopback round trip.
//!
//! `cargo run --release -p liftoff-bench --bin ui-bench -- [--items 100000] [--db postgres://...]`

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use liftoff_client::Client;
use liftoff_core::ResourceType;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest};
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_server::{ServerConfig, start};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Database URL; SQLite in a temp directory when omitted.
    #[arg(long)]
    db: Option<String>,
    /// Items on the queue.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Requests timed per kind of page.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Concurrent launches while filling the queue.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
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
    let key = match server.admin_key.clone() {
        Some(k) => k,
        None => std::env::var("LIFTOFF_API_KEY").context("database already initialised: set LIFTOFF_API_KEY")?,
    };
    let base = server.base_url();
    let client = Client::new(&base, &key, "default")?;
    let queue = format!("uibench{}", std::process::id());
    client
        .create_queue(&CreateQueue {
            name: queue.clone(),
            resource: ResourceType::LocalContainer,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await?;
    let source =
        JobSourceSpec { image: Some(ImageSource { image: "busybox".into(), args: vec![] }), ..Default::default() };
    client
        .create_job(&CreateJob {
            project: "default".into(),
            name: queue.clone(),
            source,
            aliases: vec![],
            runtime: None,
        })
        .await?;
    let backend = if args.db.is_some() { "postgres" } else { "sqlite" };
    println!(
        "ui-bench: backend={backend}, {} items, {} cores",
        args.items,
        std::thread::available_parallelism()?.get()
    );

    let filled = Instant::now();
    let launches = futures::stream::iter(0..args.items)
        .map(|_| {
            let (client, queue) = (&client, &queue);
            async move { client.launch(queue, &LaunchRequest { job: queue.clone(), ..Default::default() }).await }
        })
        .buffer_unordered(args.concurrency);
    let mut launches = std::pin::pin!(launches);
    let mut n = 0usize;
    while let Some(r) = launches.next().await {
        r.context("launch")?;
        n += 1;
        if n.is_multiple_of(10_000) {
            eprintln!("  {n} items enqueued ({:.0}/s)", n as f64 / filled.elapsed().as_secs_f64());
        }
    }
    println!("filled the queue in {:.1}s", filled.elapsed().as_secs_f64());

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let signed_in = http
        .post(format!("{base}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("api_key={key}&next=%2F"))
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("sign-in set no cookie")?
        .to_string();

    let deep = args.items as i64 / 2;
    for (what, query) in [
        ("first page", String::new()),
        ("a page half way down (keyset before)", format!("?before={deep}")),
        ("state=pending filter", "?state=pending".to_string()),
        ("state=failed filter, which no item matches", "?state=failed".to_string()),
        ("agent filter, which no item matches", "?agent=nobody".to_string()),
        ("job filter, which no item matches", "?job=x%2Fy%2Fz%3Av1".to_string()),
        ("launcher filter, which every item matches", "?launched_by=admin".to_string()),
        ("launcher filter, which no item matches", "?launched_by=nobody".to_string()),
        ("launched within 1h, which every item matches", "?since=1h".to_string()),
        ("launched over 1h ago, which no item matches", "?until=1h".to_string()),
    ] {
        let url = format!("{base}/queues/{queue}{query}");
        let mut times = Vec::with_capacity(args.samples);
        for i in 0..args.samples + 5 {
            let t = Instant::now();
            let resp = http.get(&url).header("cookie", &cookie).send().await?;
            anyhow::ensure!(resp.status() == 200, "{url}: {}", resp.status());
            let body = resp.text().await?;
            if i >= 5 {
                times.push(t.elapsed());
            } else if !["failed", "nobody", "job=", "until="].iter().any(|q| query.contains(q)) {
                anyhow::ensure!(body.contains("Stop selected"), "{url} shows no items");
            }
        }
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "queue page, {what}: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms ({} requests)",
            ms(pct(0.5)),
            ms(pct(0.9)),
            ms(*times.last().unwrap()),
            times.len()
        );
    }
    server.shutdown().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
