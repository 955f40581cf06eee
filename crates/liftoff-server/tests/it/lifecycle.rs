//! Run lifecycle over real HTTP: preemption re-queues the same run with a
//! resume count (at most five times), failures keep their stage, warnings are
//! recorded once, run keys are scoped to their run and die with it, and an
//! agent taking a run back after a restart learns where its log continues.

use crate::support::{agent, image_job};
use liftoff_client::{Client, ClientError};
use liftoff_core::api::*;
use liftoff_core::{ItemEvent, ItemState, MAX_RESUMES, ResourceType, Stage};
use liftoff_server::{RunningServer, ServerConfig, start};
use std::time::Duration;

struct T {
    server: RunningServer,
    client: Client,
    agent: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    let server = start(cfg).await.unwrap();
    let client = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();
    client
        .create_queue(&CreateQueue {
            name: "q".into(),
            resource: ResourceType::LocalContainer,
            config: empty_object(),
            template_variables: vec![],
            prioritization: false,
        })
        .await
        .unwrap();
    image_job(&client, "img").await;
    let agent = agent(&client, &["q"]).await;
    T { server, client, agent, _dir: dir }
}

impl T {
    async fn claim(&self) -> Claim {
        self.client.claim(&self.agent, &["q".to_string()], Duration::from_millis(500)).await.unwrap().expect("an item")
    }
}

fn status(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, body }) => (status, body.code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_requeues_the_same_run_five_times_then_ends_preempted() {
    let t = setup().await;
    let launched = t.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
    for resume in 1..=MAX_RESUMES {
        let c = t.claim().await;
        assert_eq!((c.item.run_id.as_str(), c.item.resumes), (launched.run_id.as_str(), resume - 1));
        t.client.report(&c.item.id, c.fence, ItemEvent::Start).await.unwrap();
        let v = t.client.report(&c.item.id, c.fence, ItemEvent::Preempt).await.unwrap();
        assert_eq!((v.state, v.resumes), (ItemState::Pending, resume));
        // the old claim's token is dead: a late write from it is refused
        let (code, _) = status(t.client.report(&c.item.id, c.fence, ItemEvent::Finish).await);
        assert_eq!(code, 409);
    }
    let c = t.claim().await;
    assert_eq!(c.item.resumes, MAX_RESUMES);
    let v = t.client.report(&c.item.id, c.fence, ItemEvent::Preempt).await.unwrap();
    assert_eq!(v.state, ItemState::Preempted);
    assert!(v.reason.unwrap().contains("not re-queued"));
    assert!(t.client.claim(&t.agent, &["q".to_string()], Duration::ZERO).await.unwrap().is_none());
    assert_eq!(t.client.get_item(&launched.run_id).await.unwrap().attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_their_stage_and_warnings_are_recorded_once() {
    let t = setup().await;
    t.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
    let c = t.claim().await;
    for _ in 0..2 {
        t.client
            .add_warning(&c.item.id, Some(c.fence), Stage::Build, "pull failed; using the local image")
            .await
            .unwrap();
    }
    t.client.add_warning(&c.item.id, Some(c.fence), Stage::Agent, "another").await.unwrap();
    let (code, _) = status(t.client.add_warning(&c.item.id, Some(c.fence + 1), Stage::Run, "stale").await);
    assert_eq!(code, 409);
    let (code, field) = match t.client.add_warning(&c.item.id, None, Stage::Run, "no fence").await {
        Err(ClientError::Api { status, body }) => (status, body.field),
        other => panic!("{other:?}"),
    };
    assert_eq!((code, field.as_deref()), (422, Some("fence")));
    let fail = ItemEvent::Fail { reason: "image not found".into(), exit_code: None, stage: Some(Stage::Build) };
    t.client.report(&c.item.id, c.fence, fail).await.unwrap();
    let v = t.client.get_item(&c.item.id).await.unwrap();
    assert_eq!((v.state, v.stage), (ItemState::Failed, Some(Stage::Build)));
    let warnings: Vec<(Stage, &str)> = v.warnings.iter().map(|w| (w.stage, w.message.as_str())).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.contains(&(Stage::Build, "pull failed; using the local image")));
    // lists stay light: warnings only come with a single item
    assert!(t.client.list_items(None, 10).await.unwrap().iter().all(|i| i.warnings.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keys_see_only_their_run_and_die_with_it() {
    let t = setup().await;
    for _ in 0..2 {
        t.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
    }
    let (a, b) = (t.claim().await, t.claim().await);
    let key = a.run_api_key.clone().expect("a claim carries a run key");
    let as_run = Client::new(&t.server.base_url(), &key, "default").unwrap();
    assert_eq!(as_run.get_item(&a.item.id).await.unwrap().id, a.item.id);
    as_run.add_warning(&a.item.id, None, Stage::Run, "from the run itself").await.unwrap();
    assert_eq!(status(as_run.get_item(&b.item.id).await).0, 403);
    assert_eq!(status(as_run.list_queues().await).0, 403);
    assert_eq!(status(as_run.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await).0, 403);
    // a forged key: b's item under a's signature, or a's key with one character changed
    let forged = key.replace(&a.item.id, &b.item.id);
    let forged = Client::new(&t.server.base_url(), &forged, "default").unwrap();
    assert_eq!(status(forged.get_item(&b.item.id).await).0, 401);
    let mut tampered = key.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = Client::new(&t.server.base_url(), std::str::from_utf8(&tampered).unwrap(), "default").unwrap();
    assert_eq!(status(tampered.get_item(&a.item.id).await).0, 401);
    t.client.report(&a.item.id, a.fence, ItemEvent::Start).await.unwrap();
    t.client.report(&a.item.id, a.fence, ItemEvent::Finish).await.unwrap();
    assert_eq!(status(as_run.get_item(&a.item.id).await), (401, "unauthorized".to_string()));
    // b is preempted and claimed again: the first claim's key dies, the new one works
    let b_key = Client::new(&t.server.base_url(), b.run_api_key.as_deref().unwrap(), "default").unwrap();
    t.client.report(&b.item.id, b.fence, ItemEvent::Start).await.unwrap();
    t.client.report(&b.item.id, b.fence, ItemEvent::Preempt).await.unwrap();
    let again = t.claim().await;
    assert_eq!(again.item.id, b.item.id);
    assert_eq!(status(b_key.get_item(&b.item.id).await).0, 401, "the old claim's key");
    let new_key = Client::new(&t.server.base_url(), again.run_api_key.as_deref().unwrap(), "default").unwrap();
    assert_eq!(new_key.get_item(&b.item.id).await.unwrap().resumes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_lease_gives_the_log_position_of_that_claim() {
    let t = setup().await;
    t.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
    // a first claim writes some output and is preempted: its output is not this claim's
    let first = t.claim().await;
    let chunk = |fence, seq, stream, data: &str| AppendLog { fence, seq, stream, data: data.to_string() };
    t.client.append_log(&first.item.id, &chunk(first.fence, 0, LogStream::Stdout, "first claim\n")).await.unwrap();
    t.client.report(&first.item.id, first.fence, ItemEvent::Start).await.unwrap();
    t.client.report(&first.item.id, first.fence, ItemEvent::Preempt).await.unwrap();
    let c = t.claim().await;
    assert_eq!(c.item.id, first.item.id);
    let chunks = [
        (LogStream::Stdout, "one\n"),
        (LogStream::Agent, "liftoff agent: not output\n"),
        (LogStream::Stderr, "é\n"),
        (LogStream::Stdout, "a\0b\n"),
    ];
    for (i, (stream, data)) in chunks.into_iter().enumerate() {
        t.client.append_log(&c.item.id, &chunk(c.fence, i as i64 + 1, stream, data)).await.unwrap();
    }
    let plain = t.client.renew_lease(&c.item.id, c.fence).await.unwrap();
    assert_eq!(plain.log_position, None);
    let resumed = t.client.resume_lease(&c.item.id, c.fence).await.unwrap();
    let expected = LogPosition { next_seq: 5, stdout_bytes: 4 + 4, stderr_bytes: 3 };
    assert_eq!(resumed.log_position, Some(expected), "bytes as sent, this claim's only");
    // a NUL cannot be stored by PostgreSQL, so no store keeps one
    let log = t.client.read_logs(&c.item.id, 0).await.unwrap();
    assert_eq!(log.chunks.last().unwrap().data, "a\u{FFFD}b\n");
    assert_eq!(status(t.client.resume_lease(&c.item.id, c.fence + 1).await).0, 409);
}

/// An outcome may carry the log's last chunk: stored with it in one
/// request, under the same rules as `POST /logs`, both or neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_carries_the_logs_last_chunk() {
    let t = setup().await;
    t.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
    let c = t.claim().await;
    let id = c.item.id.clone();
    t.client.report(&id, c.fence, ItemEvent::Start).await.unwrap();
    let tail = |seq, data: String| Some(LogTail { seq, stream: LogStream::Stdout, data });
    // too large: refused by name, and the outcome not applied
    let big = "x".repeat(liftoff_core::api::MAX_LOG_CHUNK_CHARS + 1);
    let field = |r: Result<ItemView, ClientError>| match r {
        Err(ClientError::Api { status, body }) => (status, body.field),
        other => panic!("expected an API error, got {other:?}"),
    };
    let refused = field(t.client.report_with_log(&id, c.fence, ItemEvent::Finish, tail(0, big)).await);
    assert_eq!(refused, (400, Some("log.data".to_string())));
    let refused = field(t.client.report_with_log(&id, c.fence, ItemEvent::Finish, tail(-1, "a".into())).await);
    assert_eq!(refused, (400, Some("log.seq".to_string())));
    assert_eq!(t.client.get_item(&id).await.unwrap().state, ItemState::Running);
    let done = t.client.report_with_log(&id, c.fence, ItemEvent::Finish, tail(0, "last line\n".into())).await.unwrap();
    assert_eq!(done.state, ItemState::Finished);
    let log = t.client.read_logs(&id, 0).await.unwrap();
    let text: Vec<_> = log.chunks.iter().map(|c| c.data.as_str()).collect();
    assert_eq!((text, log.complete), (vec!["last line\n"], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_entity_of_a_key() {
    let t = setup().await;
    let elsewhere = t.client.with_entity("not-this-one");
    let me = elsewhere.whoami().await.unwrap();
    assert_eq!((me.entity.as_str(), me.role.as_str()), ("default", "admin"));
    let bad = Client::new(&t.server.base_url(), "lft_nope", "default").unwrap();
    assert_eq!(status(bad.whoami().await).0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_never_shows_its_run_key_in_debug_output() {
    let t = setup().await;
    t.client.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();
    let c = t.claim().await;
    let key = c.run_api_key.clone().unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains(&key) && shown.contains("<redacted>"), "{shown}");
}
