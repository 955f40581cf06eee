//! The API over real HTTP: a server on a loopback port, driven through the
//! real client (and raw reqwest where the client would refuse to send).

use crate::support::{agent, image_job};
use flate2::Compression;
use flate2::write::GzEncoder;
use liftoff_client::{Client, ClientError};
use liftoff_core::api::*;
use liftoff_core::job::{CodeSource, ImageSource, JobSourceSpec};
use liftoff_core::{ItemEvent, ItemState, Priority, ResourceType, TemplateVariable, VarKind};
use liftoff_server::{RunningServer, ServerConfig, start};
use liftoff_store::{ApiKeyRecord, KeyRole, SqlStore, Store};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct TestServer {
    server: RunningServer,
    client: Client,
    dir: tempfile::TempDir,
}

async fn serve(lease_ttl: Duration) -> TestServer {
    serve_on(lease_ttl, None).await
}

async fn serve_on(lease_ttl: Duration, db_url: Option<String>) -> TestServer {
    serve_with(lease_ttl, db_url, |_| {}).await
}

async fn serve_with(lease_ttl: Duration, db_url: Option<String>, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.lease_ttl = lease_ttl;
    cfg.max_json_body = 64 * 1024;
    cfg.db_url = db_url;
    tweak(&mut cfg);
    let server = start(cfg).await.unwrap();
    let key = server.admin_key.clone().expect("fresh data dir creates the admin key");
    let client = Client::new(&server.base_url(), &key, "default").unwrap();
    TestServer { server, client, dir }
}

fn api_err(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, ErrorBody) {
    match r {
        Err(ClientError::Api { status, body }) => (status, body),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn queue(c: &Client, name: &str, resource: ResourceType) {
    c.create_queue(&CreateQueue {
        name: name.into(),
        resource,
        config: serde_json::json!({"gpus": "{{gpus}}"}),
        template_variables: vec![TemplateVariable {
            name: "gpus".into(),
            kind: VarKind::Integer,
            min: Some(0.0),
            max: Some(4.0),
            allowed: None,
            default: Some(serde_json::json!(1)),
            description: None,
        }],
        prioritization: true,
    })
    .await
    .unwrap();
}

fn launch(job: &str) -> LaunchRequest {
    LaunchRequest { job: job.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_key_is_written_0600_and_works() {
    use std::os::unix::fs::PermissionsExt;
    let t = serve(Duration::from_secs(30)).await;
    let path = t.dir.path().join("admin.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim(), t.server.admin_key.as_deref().unwrap());
    let wrong = Client::new(&t.server.base_url(), "lft_wrong", "default").unwrap();
    let (status, body) = api_err(wrong.list_queues().await);
    assert_eq!((status, body.code.as_str()), (401, "unauthorized"));
    assert!(t.client.list_queues().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_claim_run_and_report_end_to_end() {
    // every log to the blob store, however small (by default, a short one stays in the database)
    let t = serve_with(Duration::from_secs(30), None, |cfg| cfg.log_keep_max_bytes = 0).await;
    let c = &t.client;
    queue(c, "gpu", ResourceType::LocalContainer).await;
    let job = image_job(c, "train").await;
    assert_eq!(job.full_name(), "default/default/train:v1");
    let mut req = launch("train");
    req.template_variables = BTreeMap::from([("gpus".into(), serde_json::json!("3"))]);
    req.run_config = serde_json::json!({"lr": 0.1});
    let launched = c.launch("gpu", &req).await.unwrap();
    let agent_id = agent(c, &["gpu"]).await;
    let claim = c.claim(&agent_id, &["gpu".into()], Duration::ZERO).await.unwrap().expect("an item");
    assert_eq!(claim.item.id, launched.item_id);
    assert_eq!(claim.item.spec.resource_config, serde_json::json!({"gpus": 3}), "template filled with a typed value");
    assert_eq!(claim.item.spec.run_config, serde_json::json!({"lr": 0.1}));
    assert_eq!((claim.fence, claim.log_seq_start), (1, 0));
    c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
    for (seq, line) in ["one\n", "two\n"].iter().enumerate() {
        let chunk =
            AppendLog { fence: claim.fence, seq: seq as i64, stream: LogStream::Stdout, data: line.to_string() };
        c.append_log(&claim.item.id, &chunk).await.unwrap();
    }
    let hb = c.renew_lease(&claim.item.id, claim.fence).await.unwrap();
    assert!(!hb.stop_requested);
    let done = c.report(&claim.item.id, claim.fence, ItemEvent::Finish).await.unwrap();
    assert_eq!((done.state, done.exit_code), (ItemState::Finished, Some(0)));
    let page = c.read_logs(&launched.run_id, 0).await.unwrap();
    assert!(page.complete);
    assert_eq!(page.chunks.iter().map(|c| c.data.as_str()).collect::<String>(), "one\ntwo\n");
    let shown = c.get_item(&launched.run_id).await.unwrap();
    assert_eq!(shown.id, launched.item_id, "runs can be looked up by run id");
    // the reaper moves the ended run's log to the blob store; reads are unchanged
    let mut archived = shown;
    for _ in 0..100 {
        if archived.log_archived {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        archived = c.get_item(&launched.item_id).await.unwrap();
    }
    assert!(archived.log_archived, "log archived within 5 s");
    let object = t.dir.path().join(format!("blobs/logs/default/{}.jsonl", launched.item_id));
    assert_eq!(std::fs::read_to_string(&object).unwrap().lines().count(), 2);
    let again = c.read_logs(&launched.item_id, 0).await.unwrap();
    assert_eq!(again.chunks, page.chunks);
    assert!(again.complete);
    assert_eq!(c.read_logs(&launched.item_id, 1).await.unwrap().chunks, page.chunks[1..].to_vec());
    let late = AppendLog { fence: claim.fence, seq: 2, stream: LogStream::Stdout, data: "late\n".into() };
    assert_eq!(api_err(c.append_log(&claim.item.id, &late).await).0, 409);
    // nothing left
    assert!(c.claim(&agent_id, &["gpu".into()], Duration::ZERO).await.unwrap().is_none());
}

/// A short run's log stays in the database (no object is written) and reads
/// the same; a longer one goes to the blob store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_log_stays_in_the_database_and_a_long_one_is_archived() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    image_job(c, "train").await;
    let agent_id = agent(c, &["q"]).await;
    let mut runs = vec![];
    // the short one ends first, so that the archiver's round that archives
    // the long one has already been through it
    for lines in [2usize, 200] {
        let launched = c.launch("q", &launch("train")).await.unwrap();
        let claim = c.claim(&agent_id, &["q".into()], Duration::ZERO).await.unwrap().expect("an item");
        c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
        let line = format!("{}\n", "x".repeat(40));
        for seq in 0..lines {
            let chunk =
                AppendLog { fence: claim.fence, seq: seq as i64, stream: LogStream::Stdout, data: line.clone() };
            c.append_log(&claim.item.id, &chunk).await.unwrap();
        }
        c.report(&claim.item.id, claim.fence, ItemEvent::Finish).await.unwrap();
        let page = c.read_logs(&launched.run_id, 0).await.unwrap();
        assert_eq!((page.chunks.len(), page.complete), (lines, true));
        runs.push((launched.item_id, page.chunks));
    }
    let (long, short) = (&runs[1], &runs[0]);
    let started = std::time::Instant::now();
    while !c.get_item(&long.0).await.unwrap().log_archived {
        assert!(started.elapsed() < Duration::from_secs(20), "the long log (8 KiB) was not archived within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let object = |id: &str| t.dir.path().join(format!("blobs/logs/default/{id}.jsonl"));
    assert_eq!(std::fs::read_to_string(object(&long.0)).unwrap().lines().count(), 200);
    assert!(!c.get_item(&short.0).await.unwrap().log_archived, "the short log (82 bytes) stays in the database");
    assert!(!object(&short.0).exists(), "no object for the short log");
    for (id, chunks) in [long, short] {
        let again = c.read_logs(id, 0).await.unwrap();
        assert_eq!((&again.chunks, again.complete), (chunks, true), "{id} reads the same");
        assert_eq!(c.read_logs(id, 1).await.unwrap().chunks, chunks[1..].to_vec());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_claim_wakes_on_enqueue() {
    // No periodic re-check within the test: only the enqueue's wake-up can
    // hand the item to the waiting claim before its 20 s bound.
    let t = serve_with(Duration::from_secs(30), None, |cfg| cfg.claim_recheck = Duration::from_secs(60)).await;
    let c = t.client.clone();
    queue(&c, "q", ResourceType::LocalContainer).await;
    image_job(&c, "j").await;
    let agent_id = agent(&c, &["q"]).await;
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let got = c.claim(&agent_id, &["q".into()], Duration::from_secs(20)).await.unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.launch("q", &launch("j")).await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert!(got.is_some(), "the waiting claim got the new item");
    assert!(waited < Duration::from_secs(10), "woken by the enqueue, not by the 20 s bound or a re-check ({waited:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_requeues_and_stale_token_is_refused() {
    let t = serve(Duration::from_millis(300)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    image_job(c, "j").await;
    let launched = c.launch("q", &launch("j")).await.unwrap();
    let a = agent(c, &["q"]).await;
    let first = c.claim(&a, &["q".into()], Duration::ZERO).await.unwrap().unwrap();
    c.report(&first.item.id, first.fence, ItemEvent::Start).await.unwrap();
    // no heartbeat: the reaper puts it back
    let mut item = c.get_item(&launched.item_id).await.unwrap();
    for _ in 0..100 {
        if item.state == ItemState::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        item = c.get_item(&launched.item_id).await.unwrap();
    }
    assert_eq!((item.state, item.attempts), (ItemState::Pending, 1));
    let second = c.claim(&a, &["q".into()], Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(second.fence, first.fence + 2, "the expiry and the new claim each took a fence");
    let before = c.get_item(&launched.item_id).await.unwrap();
    for r in [
        c.report(&first.item.id, first.fence, ItemEvent::Finish).await.map(|_| ()),
        c.renew_lease(&first.item.id, first.fence).await.map(|_| ()),
        c.append_log(
            &first.item.id,
            &AppendLog { fence: first.fence, seq: 0, stream: LogStream::Stdout, data: "x".into() },
        )
        .await,
    ] {
        let (status, body) = api_err(r);
        assert_eq!((status, body.code.as_str(), body.field.as_deref()), (409, "stale_fence", Some("fence")));
    }
    let after = c.get_item(&launched.item_id).await.unwrap();
    assert_eq!(before.state, after.state);
    assert_eq!(before.fence, after.fence);
    assert!(c.read_logs(&launched.item_id, 0).await.unwrap().chunks.is_empty());
}

/// After every way a holder loses an item (a preemption that re-queues it,
/// a stop it reported, a stop that ended by lease expiry, its own outcome),
/// each of its writes (event, lease, log chunk, warning) is refused and
/// changes nothing, even before anyone claims the item again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_changes_nothing_after_preemption_stop_or_outcome() {
    let t = serve(Duration::from_millis(400)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    image_job(c, "j").await;
    let a = agent(c, &["q"]).await;
    type Ending = fn(&Client, String, i64) -> futures::future::BoxFuture<'_, ()>;
    let endings: [(&str, Ending); 4] = [
        ("preempted", |c, id, fence| {
            Box::pin(async move {
                let v = c.report(&id, fence, ItemEvent::Preempt).await.unwrap();
                assert_eq!(v.state, ItemState::Pending);
            })
        }),
        ("stopped", |c, id, fence| {
            Box::pin(async move {
                c.stop_item(&id).await.unwrap();
                c.report(&id, fence, ItemEvent::Stopped { exit_code: Some(143) }).await.unwrap();
            })
        }),
        ("stop, then the lease ran out", |c, id, _| {
            Box::pin(async move {
                c.stop_item(&id).await.unwrap();
                for _ in 0..100 {
                    if c.get_item(&id).await.unwrap().state == ItemState::Stopped {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("the stopping item never expired");
            })
        }),
        ("finished", |c, id, fence| {
            Box::pin(async move {
                c.report(&id, fence, ItemEvent::Finish).await.unwrap();
            })
        }),
    ];
    for (how, end) in endings {
        let launched = c.launch("q", &launch("j")).await.unwrap();
        let claim = c.claim(&a, &["q".into()], Duration::from_secs(2)).await.unwrap().unwrap();
        assert_eq!(claim.item.id, launched.item_id);
        c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
        end(c, claim.item.id.clone(), claim.fence).await;
        let before = c.get_item(&launched.item_id).await.unwrap();
        assert!(before.fence > claim.fence, "{how}: leaving the held state took a new fence");
        let id = &claim.item.id;
        let chunk = AppendLog { fence: claim.fence, seq: 0, stream: LogStream::Stdout, data: "late".into() };
        let writes = [
            ("event", c.report(id, claim.fence, ItemEvent::Finish).await.map(|_| ())),
            ("lease", c.renew_lease(id, claim.fence).await.map(|_| ())),
            ("log", c.append_log(id, &chunk).await),
            ("warning", c.add_warning(id, Some(claim.fence), liftoff_core::Stage::Run, "late").await),
        ];
        for (what, r) in writes {
            let (status, body) = api_err(r);
            assert_eq!((status, body.code.as_str()), (409, "stale_fence"), "{how}: stale {what} write: {body:?}");
        }
        let after = c.get_item(&launched.item_id).await.unwrap();
        assert_eq!((after.state, after.fence, after.attempts), (before.state, before.fence, before.attempts), "{how}");
        assert!(c.read_logs(&launched.item_id, 0).await.unwrap().chunks.is_empty(), "{how}: no late chunk stored");
        // the preempted item is pending again: take it off the queue
        if after.state == ItemState::Pending {
            c.stop_item(&launched.item_id).await.unwrap();
        }
    }
}

/// A claim whose answer never reached the agent is given back at no cost:
/// the agent releases all its unstarted claims but those it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreceived_claim_is_released_without_costing_an_attempt() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    image_job(c, "j").await;
    let a = agent(c, &["q"]).await;
    let ids: Vec<String> = {
        let mut v = vec![];
        for _ in 0..3 {
            v.push(c.launch("q", &launch("j")).await.unwrap().item_id);
        }
        v
    };
    let lost = c.claim(&a, &["q".into()], Duration::ZERO).await.unwrap().unwrap();
    let kept = c.claim(&a, &["q".into()], Duration::ZERO).await.unwrap().unwrap();
    let started = c.claim(&a, &["q".into()], Duration::ZERO).await.unwrap().unwrap();
    c.report(&started.item.id, started.fence, ItemEvent::Start).await.unwrap();
    assert_eq!(lost.item.id, ids[0]);

    let released = c.release_claims(&a, std::slice::from_ref(&kept.item.id)).await.unwrap().released;
    assert_eq!(released, vec![lost.item.id.clone()], "only the claim the agent does not hold, never a started run");
    let back = c.get_item(&lost.item.id).await.unwrap();
    assert_eq!((back.state, back.attempts, back.agent_id.as_deref()), (ItemState::Pending, 0, None));
    assert!(back.fence > lost.fence);
    let (status, body) = api_err(c.report(&lost.item.id, lost.fence, ItemEvent::Start).await);
    assert_eq!((status, body.code.as_str()), (409, "stale_fence"));
    assert_eq!(c.get_item(&kept.item.id).await.unwrap().state, ItemState::Claimed);
    assert_eq!(c.get_item(&started.item.id).await.unwrap().state, ItemState::Running);
    // the released item is claimed again at once, by whoever asks
    let again = c.claim(&a, &["q".into()], Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(again.item.id, lost.item.id);
    let (status, _) = api_err(c.release_claims("no-such-agent", &[]).await);
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_race_runs_each_item_exactly_once() {
    claim_race(serve(Duration::from_secs(60)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_race_runs_each_item_exactly_once_on_postgres() {
    if let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_api").await {
        claim_race(serve_on(Duration::from_secs(60), Some(url)).await).await;
    }
}

/// 16 agents race over 2,000 items of mixed priority through the API.
async fn claim_race(t: TestServer) {
    const ITEMS: usize = 2000;
    const AGENTS: usize = 16;
    let c = t.client.clone();
    queue(&c, "race", ResourceType::LocalContainer).await;
    image_job(&c, "j").await;
    let mut ids = HashSet::new();
    for chunk in 0..ITEMS / 100 {
        let launches = (0..100).map(|i| {
            let c = c.clone();
            let mut req = launch("j");
            req.priority = Some(Priority::ALL[(chunk + i) % 4]);
            async move { c.launch("race", &req).await.unwrap().item_id }
        });
        ids.extend(futures::future::join_all(launches).await);
    }
    assert_eq!(ids.len(), ITEMS);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = vec![];
    for _ in 0..AGENTS {
        let (c, ran) = (c.clone(), ran.clone());
        let id = agent(&c, &["race"]).await;
        tasks.push(tokio::spawn(async move {
            while let Some(claim) = c.claim(&id, &["race".into()], Duration::from_millis(200)).await.unwrap() {
                c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
                c.report(&claim.item.id, claim.fence, ItemEvent::Finish).await.unwrap();
                ran.lock().unwrap().push(claim.item.id);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let ran = ran.lock().unwrap().clone();
    let unique: HashSet<_> = ran.iter().cloned().collect();
    assert_eq!(ran.len(), ITEMS, "runs in total");
    assert_eq!(unique, ids, "every item ran, none twice");
    let items = c.list_items(Some("race"), 1000).await.unwrap();
    assert!(items.iter().all(|i| i.state == ItemState::Finished && i.fence == 2), "one claim, one outcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    let base = t.server.base_url();
    let key = t.server.admin_key.clone().unwrap();
    let http = reqwest::Client::new();
    queue(c, "q", ResourceType::LocalContainer).await;
    image_job(c, "j").await;

    // malformed JSON
    let r = http
        .post(format!("{base}/api/v1/entities/default/queues"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "invalid_json");
    // a wrong type names the field
    let r = http
        .post(format!("{base}/api/v1/entities/default/queues"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "x", "resource": "local-process", "prioritization": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.field.as_deref(), Some("prioritization"), "{body:?}");
    // oversized body
    let r = http
        .post(format!("{base}/api/v1/entities/default/queues/q/items"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"job\": \"j\", \"args\": [\"{}\"]}}", "a".repeat(100 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "too_large");

    // unknown queue / job, naming them
    let (s, b) = api_err(c.launch("nope", &launch("j")).await);
    assert_eq!((s, b.field.as_deref()), (404, Some("queue")));
    assert!(b.message.contains("'nope'"));
    let (s, b) = api_err(c.launch("q", &launch("missing")).await);
    assert_eq!((s, b.field.as_deref()), (422, Some("job")));
    assert!(b.message.contains("missing"));

    // template variables: wrong type, out of range, unknown
    for (value, needle) in [(serde_json::json!("two"), "integer"), (serde_json::json!(9), "maximum")] {
        let mut req = launch("j");
        req.template_variables = BTreeMap::from([("gpus".into(), value)]);
        let (s, b) = api_err(c.launch("q", &req).await);
        assert_eq!((s, b.field.as_deref()), (422, Some("template_variables.gpus")));
        assert!(b.message.contains(needle), "{}", b.message);
    }
    let mut req = launch("j");
    req.template_variables = BTreeMap::from([("cpus".into(), serde_json::json!(1))]);
    let (s, b) = api_err(c.launch("q", &req).await);
    assert_eq!((s, b.field.as_deref()), (422, Some("template_variables.cpus")));

    // a job naming both an image and a code source
    let both = CreateJob {
        project: "default".into(),
        name: "both".into(),
        source: JobSourceSpec {
            image: Some(ImageSource { image: "busybox".into(), args: vec![] }),
            code: Some(CodeSource {
                digest: format!("sha256:{}", "0".repeat(64)),
                entrypoint: vec!["python".into()],
                build_context: None,
                dockerfile: None,
                base_image: None,
            }),
            git: None,
        },
        aliases: vec![],
        runtime: None,
    };
    let (s, b) = api_err(c.create_job(&both).await);
    assert_eq!((s, b.field.as_deref()), (422, Some("source")));

    // archives with ../, absolute paths or escaping links: refused, nothing stored
    for (name, link) in [("../evil", None), ("/abs", None), ("link", Some("../../etc/passwd"))] {
        let gz = evil_archive(name, link);
        let digest = liftoff_archive::sha256_digest(&gz);
        let (s, b) = api_err(c.upload_blob(&digest, gz).await);
        assert_eq!((s, b.field.as_deref()), (422, Some("archive")), "{name}: {}", b.message);
        let (s, _) = api_err(c.download_blob(&digest).await);
        assert_eq!(s, 404);
    }
    let blob_files = walk(&t.dir.path().join("blobs"));
    assert!(blob_files.is_empty(), "refused archives left files: {blob_files:?}");
    // digest mismatch
    let good = liftoff_archive::pack_dir(t.dir.path().join("blobs").as_path()).unwrap();
    let (s, b) = api_err(c.upload_blob(&format!("sha256:{}", "1".repeat(64)), good).await);
    assert_eq!((s, b.field.as_deref()), (422, Some("digest")));

    // another entity's key sees nothing
    let store = SqlStore::connect(&format!("sqlite://{}", t.dir.path().join("liftoff.db").display()), 3).await.unwrap();
    store.ensure_entity("other", 1).await.unwrap();
    store
        .insert_api_key(&ApiKeyRecord {
            id: "o".into(),
            hash: liftoff_server::hash_key("lft_other"),
            entity: "other".into(),
            role: KeyRole::Admin,
            created_at_ms: 1,
            expires_at_ms: None,
            name: None,
        })
        .await
        .unwrap();
    let intruder = Client::new(&base, "lft_other", "default").unwrap();
    let (s, b) = api_err(intruder.list_queues().await);
    assert_eq!(s, 404);
    assert!(!b.message.contains("\"q\""));
    let (s, _) = api_err(intruder.launch("q", &launch("j")).await);
    assert_eq!(s, 404);
    let own = Client::new(&base, "lft_other", "other").unwrap();
    assert!(own.list_queues().await.unwrap().is_empty(), "entities are isolated");
    let (s, _) = api_err(own.get_item(&c.launch("q", &launch("j")).await.unwrap().item_id).await);
    assert_eq!(s, 404, "another entity's item is not found");

    // nothing above enqueued anything but the one good launch
    assert_eq!(c.list_items(None, 100).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_the_routes() {
    let t = serve(Duration::from_secs(30)).await;
    let doc: serde_json::Value =
        reqwest::get(format!("{}/api/v1/openapi.json", t.server.base_url())).await.unwrap().json().await.unwrap();
    // 3.2 for the streams' `itemSchema`
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.2"));
    let paths = doc["paths"].as_object().unwrap();
    // each stream describes its events, and the id a client sends back is a
    // string of the events' id form (never `null`)
    for (path, event, id) in [
        ("/entities/{entity}/items/{id}/stream", "RunStreamEvent", &liftoff_core::rules::RUN_EVENT_ID),
        ("/entities/{entity}/queues/{queue}/stream", "QueueStreamEvent", &liftoff_core::rules::QUEUE_EVENT_ID),
    ] {
        let op = &paths[path]["get"];
        let stream = &op["responses"]["200"]["content"]["text/event-stream"];
        assert_eq!(stream["itemSchema"]["$ref"], format!("#/components/schemas/{event}"), "{path}");
        assert!(doc["components"]["schemas"][event].is_object(), "{event} is in the document");
        let header = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "Last-Event-ID").unwrap();
        assert_eq!(
            (&header["in"], &header["required"], &header["schema"]["type"]),
            (&"header".into(), &false.into(), &"string".into())
        );
        assert_eq!(header["schema"]["pattern"], id.pattern, "{path}");
        let schema = serde_json::to_string(&doc["components"]["schemas"][event]).unwrap();
        assert!(schema.contains(&serde_json::to_string(id.pattern).unwrap()), "{event}'s ids are {}", id.pattern);
    }
    // every handler's annotation, read from the sources, is in the document
    let sources = [
        include_str!("../../src/routes/agents.rs"),
        include_str!("../../src/routes/blobs.rs"),
        include_str!("../../src/routes/builds.rs"),
        include_str!("../../src/routes/events.rs"),
        include_str!("../../src/routes/items.rs"),
        include_str!("../../src/routes/jobs.rs"),
        include_str!("../../src/routes/keys.rs"),
        include_str!("../../src/routes/leases.rs"),
        include_str!("../../src/routes/logs.rs"),
        include_str!("../../src/routes/meta.rs"),
        include_str!("../../src/routes/queues.rs"),
    ];
    let mut operation_ids = std::collections::BTreeSet::new();
    for annotation in sources.iter().flat_map(|s| s.split("#[utoipa::path(").skip(1)) {
        let path = annotation.split("path = \"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        let method = annotation.split(',').next().unwrap().trim();
        let op = &paths.get(path).unwrap_or_else(|| panic!("the document lacks {path}"))[method];
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(operation_ids.insert(id.to_string()), "operationId {id} is used twice");
        // every operation but the document itself needs a key and says so
        if path != "/openapi.json" {
            assert!(op["responses"]["401"].is_object(), "{method} {path} does not document 401");
        }
        // every error it documents is the one error body
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
            }
        }
    }
    assert!(operation_ids.len() >= 34, "found only {operation_ids:?}");
    // every pattern it states is one the server checks with (the macros take
    // literals, so the annotations write some out)
    fn patterns<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(p) = m.get("pattern").and_then(|p| p.as_str()) {
                    out.push(p);
                }
                m.values().for_each(|v| patterns(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| patterns(v, out)),
            _ => {}
        }
    }
    let mut stated = Vec::new();
    patterns(&doc, &mut stated);
    assert!(stated.len() > 20, "{stated:?}");
    for p in stated {
        assert!(liftoff_core::rules::ALL.iter().any(|r| r.pattern == p), "the document's pattern {p} is not a rule");
    }
    // axum's own refusals are the documented JSON error too
    let base = t.server.base_url();
    let key = t.server.admin_key.clone().unwrap();
    let http = reqwest::Client::new();
    for (method, path, status, code) in [
        (reqwest::Method::GET, "/api/v1/nope", 404, "not_found"),
        (reqwest::Method::DELETE, "/api/v1/whoami", 405, "method_not_allowed"),
        (reqwest::Method::GET, "/api/v1/entities/default/items?limit=many", 400, "invalid"),
        (reqwest::Method::GET, "/api/v1/entities/default/items?limit=0", 400, "invalid"),
    ] {
        let r = http.request(method.clone(), format!("{base}{path}")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        if status == 405 {
            assert!(r.headers().contains_key("allow"), "{method} {path}: 405 says what is allowed");
        }
        let body: ErrorBody = r.json().await.unwrap_or_else(|e| panic!("{method} {path}: not the JSON error: {e}"));
        assert_eq!(body.code, code, "{method} {path}: {}", body.message);
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let metrics = reqwest::get(format!("{}/metrics", t.server.base_url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("liftoff_items_claimed_total 0"));
}

fn evil_archive(name: &str, link: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_mode(0o644);
    match link {
        Some(l) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
        }
        None => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(2);
            h.set_cksum();
            b.append(&h, &b"hi"[..]).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// A git remote's credential is stored for agents (their claims carry it) and shown to
/// nobody else: every job and item view in the API has it as `***`, raw JSON included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_credentials_reach_claims_only() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    let (base, key) = (t.server.base_url(), t.server.admin_key.clone().unwrap());
    let remote = "https://alice:T0ken-s3cret@git.example.com/acme/private.git";
    queue(c, "q", ResourceType::LocalProcess).await;
    let git = liftoff_core::job::GitSource {
        remote: remote.into(),
        commit: "main".into(),
        entrypoint: vec!["sh".into(), "run.sh".into()],
        diff_patch: None,
        build_context: None,
        dockerfile: None,
        base_image: None,
    };
    let created = c
        .create_job(&CreateJob {
            project: "default".into(),
            name: "private".into(),
            source: JobSourceSpec { git: Some(git), ..Default::default() },
            aliases: vec![],
            runtime: None,
        })
        .await
        .unwrap();
    let launched = c.launch("q", &launch("private")).await.unwrap();
    let agent_id = agent(c, &["q"]).await;
    let claim = c.claim(&agent_id, &["q".into()], Duration::ZERO).await.unwrap().expect("an item");
    let liftoff_core::JobSource::Git(g) = &claim.item.spec.source else { panic!("a git source") };
    assert_eq!(g.remote, remote, "the agent gets the stored remote");
    assert!(!format!("{claim:?}").contains("T0ken-s3cret"), "Debug of a claim redacts it");

    let redacted = "https://alice:***@git.example.com/acme/private.git";
    let liftoff_core::JobSource::Git(g) = &created.source else { panic!("a git source") };
    assert_eq!(g.remote, redacted, "the create response");
    let item = format!("entities/default/items/{}", launched.item_id);
    let event = c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
    assert!(!serde_json::to_string(&event).unwrap().contains("T0ken-s3cret"), "the event response");
    let http = reqwest::Client::new();
    for path in ["entities/default/jobs", "entities/default/jobs/default/private", "entities/default/items", &item] {
        let body = http
            .get(format!("{base}/api/v1/{path}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains("T0ken-s3cret") && body.contains(redacted), "{path}: {body}");
    }
    // The run's own key reads its item redacted too.
    let run = Client::new(&base, claim.run_api_key.as_deref().unwrap(), "default").unwrap();
    let liftoff_core::JobSource::Git(g) = run.get_item(&launched.item_id).await.unwrap().spec.source else {
        panic!("a git source")
    };
    assert_eq!(g.remote, redacted);
    let stopped = c.stop_item(&launched.item_id).await.unwrap();
    assert!(!serde_json::to_string(&stopped).unwrap().contains("T0ken-s3cret"), "the stop response");
}

/// A queue's config is checked against its resource type when the queue is
/// created, and again, filled, at each launch: 422 naming the option. The
/// reference's shape of template variables is read as ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_configs_are_checked_at_the_door_and_the_references_variables_are_accepted() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    let create = |name: &str, resource: &str, config: serde_json::Value, vars: serde_json::Value| {
        let body =
            serde_json::json!({"name": name, "resource": resource, "config": config, "template_variables": vars});
        let url = format!("{}/api/v1/entities/default/queues", t.server.base_url());
        let key = t.server.admin_key.clone().unwrap();
        async move { reqwest::Client::new().post(url).bearer_auth(key).json(&body).send().await.unwrap() }
    };
    // the reference's nesting, an unknown option, a bad value: refused, each named
    for (config, field, needle) in [
        (
            serde_json::json!({"resource_args": {"local-container": {"memory": "1g"}}}),
            "config.resource_args",
            "top level",
        ),
        (serde_json::json!({"memory": "1g", "privileged": true}), "config.privileged", "unsupported"),
        (serde_json::json!({"memory": "lots"}), "config.memory", "memory"),
    ] {
        let r = create("bad", "local-container", config, serde_json::json!([])).await;
        assert_eq!(r.status(), 422);
        let body: ErrorBody = r.json().await.unwrap();
        assert_eq!(body.field.as_deref(), Some(field), "{}", body.message);
        assert!(body.message.contains(needle), "{}", body.message);
    }
    assert!(c.list_queues().await.unwrap().is_empty(), "nothing was created");
    // the reference's shape of variables; a placeholder waits for the launch
    let vars = serde_json::json!({"mem": {"schema": {"type": "string", "enum": ["1g", "lots"], "default": "1g"}}});
    let r = create("ref", "local-container", serde_json::json!({"memory": "{{mem}}"}), vars).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let q = c.get_queue("ref").await.unwrap();
    assert_eq!(q.template_variables[0].name, "mem");
    assert_eq!(q.template_variables[0].allowed, Some(vec![serde_json::json!("1g"), serde_json::json!("lots")]));
    // a launch whose filled template breaks the option's syntax: 422 at the door
    let job = CreateJob {
        project: "default".into(),
        name: "j".into(),
        source: JobSourceSpec {
            image: Some(ImageSource { image: "busybox".into(), args: vec![] }),
            ..Default::default()
        },
        aliases: vec![],
        runtime: None,
    };
    c.create_job(&job).await.unwrap();
    let mut req = LaunchRequest { job: "j".into(), ..Default::default() };
    req.template_variables = BTreeMap::from([("mem".into(), serde_json::json!("lots"))]);
    let (s, b) = api_err(c.launch("ref", &req).await);
    assert_eq!((s, b.field.as_deref()), (422, Some("config.memory")), "{}", b.message);
    req.template_variables = BTreeMap::new();
    c.launch("ref", &req).await.unwrap();
    assert_eq!(c.list_items(None, 100).await.unwrap().len(), 1);
}

/// A run records the key that launched it (its name, else its id); the item
/// list filters by it; key names are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_record_their_launcher() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    queue(c, "other", ResourceType::LocalContainer).await;
    image_job(c, "j").await;
    let base = t.server.base_url();
    let named = c.create_named_key("member", Some("<script>ci</script>")).await.unwrap();
    assert_eq!(named.key.name.as_deref(), Some("<script>ci</script>"));
    let unnamed = c.create_key("member").await.unwrap();
    assert_eq!(unnamed.key.name, None);
    let ci = Client::new(&base, &named.secret, "default").unwrap();
    let anon = Client::new(&base, &unnamed.secret, "default").unwrap();

    let by_admin = c.launch("q", &launch("j")).await.unwrap();
    let by_ci = ci.launch("q", &launch("j")).await.unwrap();
    let by_ci_elsewhere = ci.launch("other", &launch("j")).await.unwrap();
    let by_anon = anon.launch("q", &launch("j")).await.unwrap();
    let shown = |id: String| async move {
        let i = c.get_item(&id).await.unwrap();
        (i.launched_by, i.launched_by_key)
    };
    let admin_id = c.list_keys().await.unwrap().into_iter().find(|k| k.role == "admin").unwrap().id;
    assert_eq!(
        shown(by_admin.run_id.clone()).await,
        (Some("admin".into()), Some(admin_id)),
        "the first admin key is named admin"
    );
    assert_eq!(shown(by_ci.run_id.clone()).await, (Some("<script>ci</script>".into()), Some(named.key.id.clone())));
    let unnamed_id = Some(unnamed.key.id.clone());
    assert_eq!(shown(by_anon.run_id.clone()).await, (unnamed_id.clone(), unnamed_id), "a key without a name: its id");

    let ids = |items: Vec<ItemView>| items.into_iter().map(|i| i.run_id).collect::<Vec<_>>();
    let ci_runs = c.list_items_launched_by(None, Some("<script>ci</script>"), 10).await.unwrap();
    assert_eq!(ids(ci_runs), [by_ci_elsewhere.run_id.clone(), by_ci.run_id.clone()]);
    let ci_on_q = c.list_items_launched_by(Some("q"), Some("<script>ci</script>"), 10).await.unwrap();
    assert_eq!(ids(ci_on_q), [by_ci.run_id]);
    assert!(c.list_items_launched_by(None, Some("nobody"), 10).await.unwrap().is_empty());
    assert_eq!(c.list_items(None, 10).await.unwrap().len(), 4, "no filter: every run");
    assert!(
        serde_json::to_string(&c.get_item(&by_admin.item_id).await.unwrap())
            .unwrap()
            .contains("\"launched_by\":\"admin\"")
    );

    // against the document's rule: 400; only spaces, which it cannot state: 422
    for (bad, status) in [("", 400), ("   ", 422), ("tab\there", 400), (&"x".repeat(65), 400)] {
        let (s, b) = api_err(c.create_named_key("member", Some(bad)).await);
        assert_eq!((s, b.field.as_deref()), (status, Some("name")), "{bad:?}: {}", b.message);
        assert!(b.message.starts_with("key name "), "{}", b.message);
    }
}

/// A pending run's priority changes (and with it the claim order); once
/// claimed it is refused with 409 `not_pending`; agent keys may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_changes_only_while_pending() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    image_job(c, "j").await;
    let first = c.launch("q", &launch("j")).await.unwrap();
    let second = c.launch("q", &launch("j")).await.unwrap();
    let raised = c.set_priority(&second.run_id, Priority::Critical).await.unwrap();
    assert_eq!(
        (raised.id.as_str(), raised.priority, raised.state),
        (second.item_id.as_str(), Priority::Critical, ItemState::Pending)
    );
    let history = c.item_history(&second.item_id).await.unwrap();
    assert_eq!(
        history.iter().map(|h| (h.event.as_str(), h.reason.as_deref())).collect::<Vec<_>>(),
        [("launch", None), ("priority", Some("priority medium → critical"))]
    );

    let agent_key = c.create_key("agent").await.unwrap().secret;
    let agent_client = Client::new(&t.server.base_url(), &agent_key, "default").unwrap();
    let (s, b) = api_err(agent_client.set_priority(&first.run_id, Priority::High).await);
    assert_eq!((s, b.code.as_str()), (403, "forbidden"));
    let (s, _) = api_err(c.set_priority("nope", Priority::High).await);
    assert_eq!(s, 404);
    let anonymous = Client::new(&t.server.base_url(), "lft_wrong", "default").unwrap();
    assert_eq!(api_err(anonymous.set_priority(&first.run_id, Priority::High).await).0, 401);
    let raw = reqwest::Client::new()
        .post(format!("{}/api/v1/entities/default/items/{}/priority", t.server.base_url(), first.run_id))
        .bearer_auth(t.server.admin_key.as_deref().unwrap())
        .json(&serde_json::json!({"priority": "urgent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400, "an unknown priority is refused");

    let agent_id = agent(c, &["q"]).await;
    let claim = c.claim(&agent_id, &["q".into()], Duration::ZERO).await.unwrap().expect("an item");
    assert_eq!(claim.item.id, second.item_id, "the raised run is claimed first");
    let (s, b) = api_err(c.set_priority(&second.run_id, Priority::Low).await);
    assert_eq!((s, b.code.as_str()), (409, "not_pending"));
    assert!(b.message.contains("is claimed: only a pending run's priority can change"), "{}", b.message);
    assert_eq!(c.get_item(&second.item_id).await.unwrap().priority, Priority::Critical, "unchanged");
}

/// Agents' versions are stored and shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_show_their_version() {
    let t = serve(Duration::from_secs(30)).await;
    let c = &t.client;
    queue(c, "q", ResourceType::LocalContainer).await;
    let req =
        RegisterAgent { queues: vec!["q".into()], hostname: "gpu-1".into(), max_jobs: 1, version: "0.9.2".into() };
    let registered = c.register_agent(&req).await.unwrap();
    assert_eq!(registered.version.as_deref(), Some("0.9.2"));
    assert_eq!(c.list_agents().await.unwrap()[0].version.as_deref(), Some("0.9.2"));
    let (s, b) = api_err(c.register_agent(&RegisterAgent { version: "v\n1".into(), ..req }).await);
    assert_eq!((s, b.field.as_deref()), (400, Some("version")));
}
