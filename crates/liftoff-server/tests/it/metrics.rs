//! `/metrics` checked by the real tools: `promtool check metrics` on the
//! output after a run of jobs, `promtool check rules` on the README's alerts,
//! and a real Prometheus server that scrapes the server and answers PromQL
//! with what the jobs did. The jobs are driven through the real client, as
//! an agent drives them (claims, start and outcome events, build records).
//!
//! Needs `LIFTOFF_TEST_PROMTOOL` and `LIFTOFF_TEST_PROMETHEUS` (set by
//! `.ci/prometheus.sh`); without them the tests skip, or fail under `CI`.

use crate::support::{agent, image_job};
use liftoff_client::Client;
use liftoff_core::api::*;
use liftoff_core::{ItemEvent, ResourceType, Stage};
use liftoff_server::{RunningServer, ServerConfig, start};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The value of `var`, or `None` (skip) outside CI; under CI a missing
/// component fails the test.
fn required_env(var: &str) -> Option<PathBuf> {
    liftoff_testkit::required_env(var).map(PathBuf::from)
}

struct TestServer {
    server: RunningServer,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn serve(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    tweak(&mut cfg);
    let server = start(cfg).await.unwrap();
    let key = server.admin_key.clone().unwrap();
    let client = Client::new(&server.base_url(), &key, "default").unwrap();
    TestServer { server, client, _dir: dir }
}

async fn queue(c: &Client, name: &str) {
    let req = CreateQueue {
        name: name.into(),
        resource: ResourceType::LocalContainer,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: false,
    };
    c.create_queue(&req).await.unwrap();
}

/// What [`run_jobs`] did, and so what the metrics must say.
struct Ran {
    ids: Vec<String>,
}

/// On queue `q` (one agent): 2 runs finish, 1 fails while running (stage
/// `run`), 1 fails before starting (stage `build`), 1 is left running (its
/// image found), 1 left pending, 1 stopped while pending. One image is
/// recorded as built (12 s), one as found (0.5 s). Queue `idle` has no agent.
async fn run_jobs(c: &Client) -> Ran {
    queue(c, "q").await;
    queue(c, "idle").await;
    image_job(c, "j").await;
    let agent = agent(c, &["q"]).await;
    let mut ids = vec![];
    for _ in 0..7 {
        let launched = c.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await.unwrap();
        ids.push(launched.item_id);
        ids.push(launched.run_id);
    }
    let queues = vec!["q".to_string()];
    let mut claims = vec![];
    for _ in 0..5 {
        claims.push(c.claim(&agent, &queues, Duration::from_secs(5)).await.unwrap().expect("an item to claim"));
    }
    let build = |how, seconds| BuildRecord {
        image: "localhost:5000/j:abc".into(),
        digest: None,
        how,
        seconds,
        builder: "docker".into(),
    };
    let report = |i: usize, e: ItemEvent| {
        let claim = &claims[i];
        c.report(&claim.item.id, claim.fence, e)
    };
    c.record_build(&claims[0].item.id, claims[0].fence, build(BuildHow::Built, 12.0)).await.unwrap();
    for i in [0, 1, 2, 4] {
        report(i, ItemEvent::Start).await.unwrap();
    }
    report(0, ItemEvent::Finish).await.unwrap();
    report(1, ItemEvent::Finish).await.unwrap();
    let fail = |stage| ItemEvent::Fail { reason: "boom".into(), exit_code: Some(3), stage: Some(stage) };
    report(2, fail(Stage::Run)).await.unwrap();
    report(3, fail(Stage::Build)).await.unwrap();
    c.record_build(&claims[4].item.id, claims[4].fence, build(BuildHow::Found, 0.5)).await.unwrap();
    // items 6 and 7 were never claimed: stop the last one
    assert_eq!(c.stop_item(&ids[12]).await.unwrap().state, liftoff_core::ItemState::Stopped);
    Ran { ids }
}

async fn scrape(base: &str, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (ct, resp.text().await.unwrap())
}

/// The sample `name{labels}` (labels as written, in order), parsed.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn promtool(tool: &Path, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The README's alert rules: the YAML block after its "Two example alerts".
fn readme_rules() -> String {
    let readme = include_str!("../../../../README.md");
    let from = readme.find("Two example alerts").expect("README has the example alerts");
    let block = &readme[from..];
    let start = block.find("```yaml\n").unwrap() + "```yaml\n".len();
    block[start..start + block[start..].find("```").unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_after_a_run_of_jobs_and_the_readme_rules() {
    let Some(tool) = required_env("LIFTOFF_TEST_PROMTOOL") else { return };
    let t = serve(|_| {}).await;
    let ran = run_jobs(&t.client).await;
    let base = t.server.base_url();

    let (ct, text) = scrape(&base, None).await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let (ok, lint) = promtool(&tool, &["check", "metrics"], text.as_bytes());
    assert!(ok && lint.trim().is_empty(), "promtool check metrics: {lint}\n{text}");
    // the figures the run of jobs left, in the format promtool read
    for (series, want) in [
        ("liftoff_items_enqueued_total", 7.0),
        ("liftoff_items_claimed_total", 5.0),
        (r#"liftoff_queue_items{entity="default",queue="q",state="finished"}"#, 2.0),
        (r#"liftoff_queue_items{entity="default",queue="q",state="pending"}"#, 1.0),
        (r#"liftoff_queue_items{entity="default",queue="idle",state="pending"}"#, 0.0),
        (r#"liftoff_queue_agents{entity="default",queue="q"}"#, 1.0),
        (r#"liftoff_queue_agents{entity="default",queue="idle"}"#, 0.0),
        ("liftoff_runs_running", 1.0),
        (r#"liftoff_queue_item_failures_total{stage="build"}"#, 1.0),
        (r#"liftoff_builds_total{how="built"}"#, 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    let age = sample(&text, r#"liftoff_queue_oldest_item_age_seconds{entity="default",queue="q"}"#).unwrap();
    assert!(age > 0.0 && age < 120.0, "oldest pending age {age}");
    assert_eq!(sample(&text, r#"liftoff_queue_oldest_item_age_seconds{entity="default",queue="idle"}"#), Some(0.0));

    // Prometheus is offered OpenMetrics, with its end marker.
    let (ct, om) = scrape(&base, Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.ends_with("# EOF\n") && om.contains("liftoff_items_claimed_total 5\n"), "{om}");

    // No label carries an item or run id (nor anything else the jobs named).
    for id in &ran.ids {
        assert!(!text.contains(id.as_str()) && !om.contains(id.as_str()), "{id} is in a label:\n{text}");
    }

    let (ok, out) = promtool(&tool, &["check", "rules", "/dev/stdin"], readme_rules().as_bytes());
    assert!(ok && out.contains("SUCCESS: 2 rules found"), "promtool check rules on the README's alerts: {out}");
}

/// A lease the reaper expires counts once, and the run it fails (at
/// `max_attempts` 1) counts as failed at stage `agent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_counts_and_the_run_it_fails_too() {
    let t = serve(|cfg| {
        cfg.lease_ttl = Duration::from_millis(300);
        cfg.max_attempts = 1;
    })
    .await;
    let c = &t.client;
    queue(c, "q").await;
    image_job(c, "j").await;
    let agent = c
        .register_agent(&RegisterAgent {
            queues: vec!["q".into()],
            hostname: "h".into(),
            max_jobs: 1,
            version: "t".into(),
        })
        .await
        .unwrap()
        .id;
    let launched = c.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await.unwrap();
    let claim = c.claim(&agent, &["q".to_string()], Duration::from_secs(5)).await.unwrap().unwrap();
    c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
    // no renewal: the reaper fails it once the lease (and the start grace) ran out
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.get_item(&launched.item_id).await.unwrap().state != liftoff_core::ItemState::Failed {
        assert!(tokio::time::Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, text) = scrape(&t.server.base_url(), None).await;
    assert_eq!(sample(&text, "liftoff_lease_expiries_total"), Some(1.0), "{text}");
    let ended = r#"liftoff_runs_finished_total{entity="default",queue="q",runner="local-container",result="failed"}"#;
    assert_eq!(sample(&text, ended), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"liftoff_queue_item_failures_total{stage="agent"}"#), Some(1.0), "{text}");
    let ran =
        r#"liftoff_run_duration_seconds_count{entity="default",queue="q",runner="local-container",result="failed"}"#;
    assert_eq!(sample(&text, ran), Some(1.0), "{text}");
}

/// Kills the Prometheus server when the test ends, however it ends.
struct PrometheusProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus scraping `target` with `token` as its bearer token (the server's scrape token).
fn start_prometheus(bin: &Path, dir: &Path, target: std::net::SocketAddr, token: &str) -> PrometheusProcess {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
             scrape_configs:\n  - job_name: liftoff\n    authorization: {{credentials: '{token}'}}\n    \
             static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("prometheus.log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    PrometheusProcess { child, port, log }
}

/// Every value of the instant query `promql`, as `(labels, value)`.
async fn query(prom: &PrometheusProcess, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let url =
        reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{}/api/v1/query", prom.port), &[("query", promql)])
            .unwrap();
    let body: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse().unwrap()))
        .collect()
}

async fn scalar(prom: &PrometheusProcess, promql: &str) -> Option<f64> {
    let r = query(prom, promql).await;
    assert!(r.len() <= 1, "{promql} gave several series: {r:?}");
    r.first().map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_server_and_promql_agrees_with_the_jobs() {
    let Some(bin) = required_env("LIFTOFF_TEST_PROMETHEUS") else { return };
    // /metrics wants a scrape token: Prometheus sends it, anyone else is refused
    let token = "scrape-token-0123456789abcdef";
    let t = serve(|c| c.metrics_token = Some(token.into())).await;
    run_jobs(&t.client).await;
    let refused = reqwest::get(format!("{}/metrics", t.server.base_url())).await.unwrap();
    assert_eq!(refused.status(), 401, "/metrics without the scrape token");
    let dir = tempfile::tempdir().unwrap();
    let prom = start_prometheus(&bin, dir.path(), t.server.addr, token);

    // Wait for a scrape that succeeded (Prometheus parses OpenMetrics strictly).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready =
            reqwest::get(format!("http://127.0.0.1:{}/-/ready", prom.port)).await.is_ok_and(|r| r.status() == 200);
        if ready && scalar(&prom, "liftoff_items_claimed_total").await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no successful scrape within 60 s; up = {:?}; prometheus log:\n{}",
            if ready { query(&prom, "up").await } else { vec![] },
            std::fs::read_to_string(&prom.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scalar(&prom, r#"up{job="liftoff"}"#).await, Some(1.0));

    for (promql, want) in [
        // items and states, from the store
        (r#"liftoff_queue_items{queue="q",state="finished"}"#, 2.0),
        (r#"liftoff_queue_items{queue="q",state="failed"}"#, 2.0),
        (r#"liftoff_queue_items{queue="q",state="running"}"#, 1.0),
        (r#"liftoff_queue_items{queue="q",state="pending"}"#, 1.0),
        (r#"liftoff_queue_items{queue="q",state="stopped"}"#, 1.0),
        (r#"liftoff_queue_items{queue="q",state="claimed"}"#, 0.0),
        (r#"sum(liftoff_queue_items{queue="q"})"#, 7.0),
        (r#"count(liftoff_queue_items{queue="idle"})"#, 8.0),
        ("liftoff_runs_running", 1.0),
        (r#"liftoff_agents{status="polling"}"#, 1.0),
        (r#"liftoff_queue_agents{queue="idle"}"#, 0.0),
        // what this process counted
        (r#"sum(liftoff_runs_finished_total{result="finished"})"#, 2.0),
        (r#"sum(liftoff_runs_finished_total{queue="q",runner="local-container",result="failed"})"#, 2.0),
        (r#"sum(liftoff_runs_finished_total{result="stopped"})"#, 1.0),
        (r#"liftoff_queue_item_failures_total{stage="run"}"#, 1.0),
        (r#"liftoff_queue_item_failures_total{stage="build"}"#, 1.0),
        // histograms' counts: every claim waited, 4 runs started, 3 of them ended
        (r#"liftoff_queue_wait_seconds_count{queue="q"}"#, 5.0),
        (r#"liftoff_claim_to_running_seconds_count{runner="local-container"}"#, 4.0),
        (r#"sum(liftoff_run_duration_seconds_count{queue="q"})"#, 3.0),
        (r#"liftoff_builds_total{how="found"}"#, 1.0),
        (r#"liftoff_builds_total{how="built"}"#, 1.0),
        ("sum(liftoff_build_duration_seconds_count)", 2.0),
        ("sum(liftoff_build_duration_seconds_sum)", 12.5),
        (
            r#"liftoff_build_duration_seconds_bucket{how="built",le="+Inf"} - ignoring(le) liftoff_build_duration_seconds_bucket{how="built",le=~"8(\\.0)?"}"#,
            1.0,
        ),
        ("liftoff_items_enqueued_total", 7.0),
        ("liftoff_lease_expiries_total", 0.0),
        (
            r#"sum(liftoff_http_request_duration_seconds_count{method="POST",route="/api/v1/entities/{entity}/claims",status="200"})"#,
            5.0,
        ),
        (r#"sum(liftoff_db_transaction_duration_seconds_count{op="enqueue"})"#, 7.0),
        (r#"count(liftoff_build_info{version!=""})"#, 1.0),
    ] {
        assert_eq!(scalar(&prom, promql).await, Some(want), "{promql}");
    }
    let age = scalar(&prom, r#"liftoff_queue_oldest_item_age_seconds{queue="q"}"#).await.unwrap();
    assert!(age > 0.0, "oldest pending age {age}");
    // the README's stuck-queue alert expression, with a threshold it passes
    let stuck = "max by (entity, queue) (liftoff_queue_oldest_item_age_seconds) > 0";
    let fired: Vec<_> = query(&prom, stuck).await.into_iter().map(|(m, _)| m["queue"].clone()).collect();
    assert_eq!(fired, vec![serde_json::json!("q")]);
    // no series of the process counters' histograms is labelled by a raw path
    let routes = query(&prom, "count by (route) (liftoff_http_request_duration_seconds_count)").await;
    for (m, _) in routes {
        let route = m["route"].as_str().unwrap();
        assert!(!route.contains("/items/") || route.contains("{id}"), "raw path in a label: {route}");
    }
    drop(prom);
}
