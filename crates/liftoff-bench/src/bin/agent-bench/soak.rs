//! `agent-bench soak`: Liftoff at scale, as users run it hardest. Several
//! `liftoff server` processes on one PostgreSQL, many `liftoff agent`
//! processes (split between the servers), and a trivial job launched many
//! times. Then it checks, from the job's side and the server's:
//!
//! * every item ran exactly once: the job appends its run id to a file
//!   (O_APPEND, one short write per run), and the file holds each launched
//!   run's id once, and nothing else;
//! * every item finished, with no lease expiry (`attempts` 0);
//! * no log line was lost: each run's stdout is exactly its one line;
//!
//! and prints throughput (items over the time from the first enqueue to the
//! last end), enqueue→start latency (p50, p99, from the server's own
//! timestamps) and the servers' and agents' resident memory at the end.

use super::{Started, code_job, rss_kib};
use anyhow::Context;
use liftoff_client::Client;
use liftoff_core::api::{CreateQueue, LaunchRequest, LogStream};
use liftoff_core::{ItemState, ResourceType};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Requests the bench keeps in flight while it enqueues and checks.
const IN_FLIGHT: usize = 64;

pub async fn soak(
    liftoff: &Path,
    db: &str,
    servers: usize,
    agents: usize,
    items: usize,
    jobs: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(servers >= 1 && agents >= 1 && items >= 1, "--servers, --agents and --items must be at least 1");
    let dir = tempfile::tempdir()?;
    // Servers: the first creates the schema and the admin key.
    let mut procs: Vec<Started> = vec![];
    let mut urls = vec![];
    // One blob store for all servers, as in a deployment: an archive
    // uploaded through one is served by the others.
    let blobs = dir.path().join("blobs");
    std::fs::create_dir_all(&blobs)?;
    let blob_store = format!("file://{}", blobs.display());
    for n in 0..servers {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = dir.path().join(format!("server{n}"));
        let mut cmd = Command::new(liftoff);
        cmd.args(["server", "--listen", &format!("127.0.0.1:{port}"), "--db", db, "--blob-store", &blob_store])
            .arg("--data-dir")
            .arg(&data);
        let mut server = Started::spawn("server", &mut cmd, dir.path().join(format!("server{n}.log")))?;
        let until = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            server.ensure_running()?;
            anyhow::ensure!(Instant::now() < until, "server {n} did not start in 60 s; {}", server.output_tail());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        procs.push(server);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let key_file = dir.path().join("server0/admin.key");
    let key = std::fs::read_to_string(&key_file)
        .with_context(|| {
            format!("{} (the database must be empty: its admin key is made on first start)", key_file.display())
        })?
        .trim()
        .to_string();
    let clients: Vec<Client> = urls.iter().map(|u| Client::new(u, &key, "default")).collect::<Result<_, _>>()?;
    let client = &clients[0];
    client
        .create_queue(&CreateQueue {
            name: "soak".into(),
            resource: ResourceType::LocalProcess,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await?;
    let ran = dir.path().join("ran.txt");
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code)?;
    std::fs::write(
        code.join("run.sh"),
        format!("echo \"$LIFTOFF_RUN_ID\" >> '{}'\necho \"ran $LIFTOFF_RUN_ID\"\n", ran.display()),
    )?;
    code_job(client, &code, "mark", &["sh", "run.sh"], None).await?;
    for n in 0..agents {
        let agent_key = client.create_key("agent").await?.secret;
        let mut cmd = Command::new(liftoff);
        cmd.args(["agent", "-q", "soak", "-j", &jobs.to_string(), "--agent-key", &format!("soak{n}"), "--work-dir"])
            .arg(dir.path().join(format!("work{n}")))
            .env("LIFTOFF_BASE_URL", &urls[n % servers])
            .env("LIFTOFF_API_KEY", &agent_key)
            .env("TMPDIR", dir.path());
        procs.push(Started::spawn("agent", &mut cmd, dir.path().join(format!("agent{n}.log")))?);
    }
    println!(
        "soak: {servers} servers on {}, {agents} agents (max_jobs {jobs}), {items} items of a one-line job",
        redact(db)
    );
    // Enqueue everything, spread over the servers, IN_FLIGHT at a time.
    let t0 = Instant::now();
    let req = LaunchRequest { job: "mark".into(), ..Default::default() };
    let mut ids: Vec<String> = Vec::with_capacity(items);
    let mut launched = futures::stream::iter(0..items)
        .map(|n| {
            let (c, req) = (clients[n % servers].clone(), req.clone());
            async move { c.launch("soak", &req).await }
        })
        .buffer_unordered(IN_FLIGHT);
    use futures::StreamExt;
    let mut run_ids = HashMap::new();
    while let Some(r) = launched.next().await {
        let r = r?;
        run_ids.insert(r.item_id.clone(), r.run_id.clone());
        ids.push(r.item_id);
        if ids.len().is_multiple_of(10_000) {
            println!("  enqueued {} in {:.0} s", ids.len(), t0.elapsed().as_secs_f64());
        }
    }
    drop(launched);
    let enqueued = t0.elapsed();
    // Wait for the end: the job's file counts the runs without loading the
    // servers. A minute without a new run ends the wait too (runs that
    // failed never write): the checks below then say what became of them.
    let (mut last_print, mut last_change, mut last_lines) = (Instant::now(), Instant::now(), 0);
    loop {
        let lines = std::fs::read_to_string(&ran).map(|t| t.lines().count()).unwrap_or(0);
        for p in procs.iter_mut() {
            p.ensure_running()?;
        }
        if lines >= items {
            break;
        }
        if lines != last_lines {
            (last_change, last_lines) = (Instant::now(), lines);
        } else if last_change.elapsed() >= Duration::from_secs(60) {
            println!("  no run for 60 s, {lines} of {items} done: checking what became of the rest");
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(30) {
            println!("  {lines} runs done at {:.0} s", t0.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The last runs report their end just after writing the file.
    let mut views = Vec::with_capacity(items);
    let mut fetched = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let c = client.clone();
            async move {
                let until = Instant::now() + Duration::from_secs(30);
                loop {
                    let item = c.get_item(&id).await?;
                    if item.state.is_terminal() || Instant::now() >= until {
                        let stdout = stdout_of(&c, &id).await?;
                        return anyhow::Ok((item, stdout));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(r) = fetched.next().await {
        views.push(r?);
    }
    drop(fetched);
    let rss: Vec<(String, u64)> = procs.iter().map(|p| (p.what.to_string(), rss_kib(p.pid()).unwrap_or(0))).collect();
    // From the job's side: each run id once, and only launched ones.
    let text = std::fs::read_to_string(&ran)?;
    let mut seen = HashSet::new();
    let expected: HashSet<&String> = run_ids.values().collect();
    let (mut twice, mut unknown) = (0, 0);
    for line in text.lines() {
        if !seen.insert(line.to_string()) {
            twice += 1;
        }
        if !expected.contains(&line.to_string()) {
            unknown += 1;
        }
    }
    let missing = expected.len().saturating_sub(seen.len() - unknown.min(seen.len()));
    // From the server's side.
    let not_finished = views.iter().filter(|(i, _)| i.state != ItemState::Finished).count();
    // `attempts` counts lease expiries: 0 is a run that was never taken back
    let retried = views.iter().filter(|(i, _)| i.attempts != 0).count();
    let bad_log = views.iter().filter(|(i, out)| *out != format!("ran {}\n", i.run_id)).count();
    let mut lat: Vec<i64> =
        views.iter().filter_map(|(i, _)| Some(i.started_at_ms? - i.created_at_ms)).collect::<Vec<_>>();
    lat.sort_unstable();
    let first = views.iter().map(|(i, _)| i.created_at_ms).min().unwrap_or(0);
    let last = views.iter().filter_map(|(i, _)| i.ended_at_ms).max().unwrap_or(0);
    let span = (last - first).max(1) as f64 / 1000.0;
    let p = |q: f64| lat.get(((lat.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(0);
    println!(
        "  enqueue: {items} items in {:.1} s ({:.0}/s)",
        enqueued.as_secs_f64(),
        items as f64 / enqueued.as_secs_f64()
    );
    println!("  throughput: {:.0} runs/s ({items} runs, first enqueue to last end {span:.1} s)", items as f64 / span);
    println!(
        "  enqueue -> start, all items enqueued at once (server timestamps): p50 {} ms, p99 {} ms, max {} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    println!(
        "  exactly once, from the job's side: {} distinct run ids written, {twice} written twice, {unknown} not launched, {missing} missing",
        seen.len()
    );
    println!(
        "  server side: {not_finished} not finished, {retried} retried after a lease expiry, {bad_log} whose stdout is not exactly its line"
    );
    for (n, (what, kib)) in rss.iter().enumerate().filter(|(_, (w, _))| w == "server") {
        println!("  {what} {n} resident memory at the end: {:.1} MiB", *kib as f64 / 1024.0);
    }
    let agents_rss: Vec<u64> = rss.iter().filter(|(w, _)| w == "agent").map(|(_, k)| *k).collect();
    if let (Some(lo), Some(hi)) = (agents_rss.iter().min(), agents_rss.iter().max()) {
        println!("  agents' resident memory at the end: {:.1}–{:.1} MiB", *lo as f64 / 1024.0, *hi as f64 / 1024.0);
    }
    anyhow::ensure!(
        twice == 0 && unknown == 0 && missing == 0 && not_finished == 0 && retried == 0 && bad_log == 0,
        "the soak found runs that did not run exactly once or lost their log (see above); logs in {}",
        dir.keep().display()
    );
    Ok(())
}

/// The run's whole stdout.
async fn stdout_of(c: &Client, id: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = c.read_logs(id, after).await?;
        for chunk in page.chunks.iter().filter(|c| c.stream == LogStream::Stdout) {
            out.push_str(&chunk.data);
        }
        if page.complete || page.chunks.is_empty() || page.next_seq <= after {
            return Ok(out);
        }
        after = page.next_seq;
    }
}

/// The database URL without its password.
fn redact(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(s), Some(at)) if at > s => match db[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &db[..s + 3], &db[at..]),
            None => db.to_string(),
        },
        _ => db.to_string(),
    }
}
