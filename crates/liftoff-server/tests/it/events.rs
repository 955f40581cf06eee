//! Item histories and the live event streams over real HTTP: a run's
//! stream carries every state change and log line in commit order, a
//! reconnect with `Last-Event-ID` gets exactly what it missed, a queue's
//! stream sees launches, the stream cap answers 503, and a stopping server
//! ends its streams.

use liftoff_client::{Client, ClientError, RunEvent};
use liftoff_core::api::*;
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_core::{ItemEvent, ItemState, ResourceType, TransitionCause};
use liftoff_server::{RunningServer, ServerConfig, start};
use std::time::Duration;

struct T {
    server: RunningServer,
    client: Client,
    agent: String,
    _dir: tempfile::TempDir,
}

/// A server whose streams look at the store only once a minute unless
/// woken: what these tests see arrived through the wake-ups.
async fn setup(tweak: impl FnOnce(&mut ServerConfig)) -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.stream_recheck = Duration::from_secs(60);
    tweak(&mut cfg);
    let server = start(cfg).await.unwrap();
    let client = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();
    prepare(&client).await;
    let agent = register(&client).await;
    T { server, client, agent, _dir: dir }
}

async fn prepare(client: &Client) {
    let queue = CreateQueue {
        name: "q".into(),
        resource: ResourceType::LocalContainer,
        config: empty_object(),
        template_variables: vec![],
        prioritization: false,
    };
    client.create_queue(&queue).await.unwrap();
    let source =
        JobSourceSpec { image: Some(ImageSource { image: "busybox:1".into(), args: vec![] }), ..Default::default() };
    let job = CreateJob { project: "default".into(), name: "img".into(), source, aliases: vec![], runtime: None };
    client.create_job(&job).await.unwrap();
}

async fn register(client: &Client) -> String {
    let req = RegisterAgent { queues: vec!["q".into()], hostname: "t".into(), max_jobs: -1, version: "t".into() };
    client.register_agent(&req).await.unwrap().id
}

async fn launch(c: &Client) -> LaunchResponse {
    c.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap()
}

/// The next event, or a failure naming what was awaited (no test waits forever).
async fn next(events: &mut liftoff_client::RunEvents, what: &str) -> RunEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .unwrap_or_else(|_| panic!("no event within 20 s while waiting for {what}"))
        .unwrap()
        .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
}

fn transition(e: &RunEvent) -> (&str, ItemState, TransitionCause) {
    match e {
        RunEvent::Transition(t) => (t.event.as_str(), t.to, t.cause),
        other => panic!("expected a transition, got {other:?}"),
    }
}

fn log(e: &RunEvent) -> (i64, &str) {
    match e {
        RunEvent::Log(c) => (c.seq, c.data.as_str()),
        other => panic!("expected a log chunk, got {other:?}"),
    }
}

async fn append(c: &Client, id: &str, fence: i64, seq: i64, data: &str) {
    let chunk = AppendLog { fence, seq, stream: LogStream::Stdout, data: data.into() };
    c.append_log(id, &chunk).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stream_carries_every_change_and_log_line_live_in_order() {
    let t = setup(|_| {}).await;
    let c = &t.client;
    let run = launch(c).await;
    let mut events = c.run_events(&run.run_id, None);
    assert_eq!(
        transition(&next(&mut events, "the launch").await),
        ("launch", ItemState::Pending, TransitionCause::User)
    );

    // each write is seen before the next is made: the stream is live
    let claim = c.claim(&t.agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let (id, fence) = (claim.item.id.clone(), claim.fence);
    assert_eq!(
        transition(&next(&mut events, "the claim").await),
        ("claim", ItemState::Claimed, TransitionCause::Agent)
    );
    c.report(&id, fence, ItemEvent::Start).await.unwrap();
    assert_eq!(
        transition(&next(&mut events, "the start").await),
        ("start", ItemState::Running, TransitionCause::Agent)
    );
    for seq in 0..3 {
        append(c, &id, fence, seq, &format!("line {seq}\n")).await;
        assert_eq!(log(&next(&mut events, "a log line").await), (seq, format!("line {seq}\n").as_str()));
    }
    // a burst: lines then the outcome, read afterwards, still in commit order
    append(c, &id, fence, 3, "line 3\n").await;
    append(c, &id, fence, 4, "line 4\n").await;
    c.report(&id, fence, ItemEvent::Finish).await.unwrap();
    assert_eq!(log(&next(&mut events, "line 3").await).0, 3);
    assert_eq!(log(&next(&mut events, "line 4").await).0, 4);
    let finish = next(&mut events, "the finish").await;
    assert_eq!(transition(&finish), ("finish", ItemState::Finished, TransitionCause::Agent));
    assert_eq!(next(&mut events, "the end").await, RunEvent::End { state: ItemState::Finished });
    assert_eq!(events.next().await.unwrap(), None, "nothing after the end");

    // the history endpoint says the same, with the agent and its fence
    let history = c.item_history(&run.item_id).await.unwrap();
    let got: Vec<_> = history.iter().map(|h| (h.event.as_str(), h.cause, h.agent_id.as_deref(), h.fence)).collect();
    let agent = Some(t.agent.as_str());
    assert_eq!(
        got,
        [
            ("launch", TransitionCause::User, None, None),
            ("claim", TransitionCause::Agent, agent, Some(fence)),
            ("start", TransitionCause::Agent, agent, Some(fence)),
            ("finish", TransitionCause::Agent, agent, Some(fence)),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    t.server.shutdown().await;
}

/// Every event of a finished run with its id; then, from every id, a fresh
/// connection gets exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_gets_exactly_what_was_missed() {
    let t = setup(|_| {}).await;
    let c = &t.client;
    let run = launch(c).await;
    let claim = c.claim(&t.agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let (id, fence) = (claim.item.id.clone(), claim.fence);
    c.report(&id, fence, ItemEvent::Start).await.unwrap();
    append(c, &id, fence, 0, "a\n").await;

    // a client that saw the first three events, then lost its connection
    let mut first = c.run_events(&run.run_id, None);
    for what in ["launch", "claim", "start"] {
        next(&mut first, what).await;
    }
    let resume_at = first.last_event_id().unwrap().to_string();
    drop(first);
    append(c, &id, fence, 1, "b\n").await;
    c.report(&id, fence, ItemEvent::Finish).await.unwrap();
    let mut resumed = c.run_events(&run.run_id, Some(resume_at));
    let mut rest = vec![];
    while let Some(e) = resumed.next().await.unwrap() {
        rest.push(e);
    }
    assert_eq!(rest.len(), 4, "{rest:?}");
    assert_eq!((log(&rest[0]), log(&rest[1])), ((0, "a\n"), (1, "b\n")));
    assert_eq!(transition(&rest[2]).0, "finish");
    assert_eq!(rest[3], RunEvent::End { state: ItemState::Finished });

    // the whole run, then every suffix
    let mut all = vec![];
    let mut events = c.run_events(&id, None);
    while let Some(e) = events.next().await.unwrap() {
        all.push((events.last_event_id().unwrap().to_string(), e));
    }
    assert_eq!(all.len(), 7, "launch, claim, start, 2 lines, finish, end: {all:?}");
    for k in 0..all.len() - 1 {
        let mut from = c.run_events(&id, Some(all[k].0.clone()));
        let mut got = vec![];
        while let Some(e) = from.next().await.unwrap() {
            got.push(e);
        }
        let want: Vec<_> = all[k + 1..].iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(got, want, "resuming after event {k} ({})", all[k].0);
    }
    let bad = c.open_run_stream(&id, Some("nonsense")).await.err().expect("a malformed id is refused");
    assert!(
        matches!(&bad, ClientError::Api { status: 400, body } if body.field.as_deref() == Some("Last-Event-ID")),
        "{bad:?}"
    );
    t.server.shutdown().await;
}

async fn within<T>(f: impl std::future::Future<Output = Result<Option<T>, ClientError>>, what: &str) -> T {
    let got = tokio::time::timeout(Duration::from_secs(20), f).await;
    got.unwrap_or_else(|_| panic!("no {what} within 20 s")).unwrap().unwrap_or_else(|| panic!("ended before {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_stream_sees_launches_and_state_changes() {
    let t = setup(|_| {}).await;
    let c = &t.client;
    let before = launch(c).await; // not seen: a new stream starts with the next change
    let mut q = c.queue_events("q", None).await.unwrap();
    let run = launch(c).await;
    let got = within(q.next(), "the launch").await;
    assert_eq!(
        (got.item_id.as_str(), got.event.as_str(), got.to),
        (run.item_id.as_str(), "launch", ItemState::Pending)
    );
    c.stop_item(&before.item_id).await.unwrap();
    let got = within(q.next(), "the stop").await;
    assert_eq!(
        (got.item_id.as_str(), got.to, got.cause),
        (before.item_id.as_str(), ItemState::Stopped, TransitionCause::User)
    );
    let resume_at = got.queue_seq.unwrap();
    drop(q);
    c.claim(&t.agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let mut q = c.queue_events("q", Some(&resume_at.to_string())).await.unwrap();
    let got = within(q.next(), "the claim").await;
    assert_eq!(
        (got.item_id.as_str(), got.event.as_str(), got.queue_seq),
        (run.item_id.as_str(), "claim", Some(resume_at + 1))
    );
    let missing = c.queue_events("nope", None).await.err().unwrap();
    assert_eq!(missing.status(), Some(404));
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_and_end_when_the_server_stops() {
    let t = setup(|cfg| cfg.max_event_streams = 1).await;
    let c = &t.client;
    let metrics =
        || async { reqwest::get(format!("{}/metrics", t.server.base_url())).await.unwrap().text().await.unwrap() };
    assert!(metrics().await.contains("\nliftoff_event_streams 0\n"));
    let open = c.queue_events("q", None).await.unwrap();
    assert!(metrics().await.contains("\nliftoff_event_streams 1\n"), "{}", metrics().await);
    let refused = c.queue_events("q", None).await.err().expect("a second stream is refused");
    assert!(
        matches!(&refused, ClientError::Api { status: 503, body } if body.code == "too_many_streams"),
        "{refused:?}"
    );
    // a client that goes away gives its slot back
    drop(open);
    let started = std::time::Instant::now();
    let mut open = loop {
        match c.queue_events("q", None).await {
            Ok(s) => break s,
            Err(e) if e.status() == Some(503) && started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the slot of a closed stream was not given back within 20 s: {e}"),
        }
    };
    // a stopping server ends the open stream instead of waiting for it
    let stopped = tokio::time::timeout(Duration::from_secs(20), t.server.shutdown()).await;
    assert!(stopped.is_ok(), "the server did not stop within 20 s with a stream open");
    let end = tokio::time::timeout(Duration::from_secs(5), open.next()).await.expect("the stream ended");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

/// Two servers on one PostgreSQL: a stream on one sees what is done
/// through the other (the periodic look at the store, 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sees_changes_made_through_another_server() {
    let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_events").await else { return };
    let a = setup(|cfg| {
        cfg.db_url = Some(url.clone());
        cfg.stream_recheck = Duration::from_secs(1);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.db_url = Some(url);
    let b = start(cfg).await.unwrap();
    let key = a.client.create_key("admin").await.unwrap().secret;
    let on_b = Client::new(&b.base_url(), &key, "default").unwrap();
    let run = launch(&a.client).await;
    let mut events = on_b.run_events(&run.run_id, None);
    assert_eq!(transition(&next(&mut events, "the launch").await).0, "launch");
    let claim = a.client.claim(&a.agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(transition(&next(&mut events, "the claim made through A").await).0, "claim");
    append(&a.client, &claim.item.id, claim.fence, 0, "from A\n").await;
    assert_eq!(log(&next(&mut events, "the line sent to A").await), (0, "from A\n"));
    b.shutdown().await;
    a.server.shutdown().await;
}

/// A log longer than a page, streamed from the database and again once the
/// reaper archived it: the same events with the same ids, from any id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_archived_logs_stream_the_same() {
    let t = setup(|cfg| cfg.log_keep_max_bytes = 0).await;
    let c = &t.client;
    let run = launch(c).await;
    let claim = c.claim(&t.agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let (id, fence) = (claim.item.id.clone(), claim.fence);
    c.report(&id, fence, ItemEvent::Start).await.unwrap();
    const LINES: i64 = 1100;
    let mut live = c.run_events(&id, None);
    for seq in 0..LINES {
        append(c, &id, fence, seq, &format!("{seq}\n")).await;
    }
    c.report(&id, fence, ItemEvent::Finish).await.unwrap();
    let mut from_db = vec![];
    while let Some(e) = live.next().await.unwrap() {
        from_db.push((live.last_event_id().unwrap().to_string(), e));
    }
    assert_eq!(from_db.len() as i64, 3 + LINES + 2);
    let logs: Vec<i64> = from_db[3..3 + LINES as usize].iter().map(|(_, e)| log(e).0).collect();
    assert_eq!(logs, (0..LINES).collect::<Vec<_>>());
    assert_eq!(from_db[3 + LINES as usize].0, format!("4.{LINES}"));

    let started = std::time::Instant::now();
    while !c.get_item(&id).await.unwrap().log_archived {
        assert!(started.elapsed() < Duration::from_secs(20), "the reaper did not archive the log within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in [0, 2, 500, 501, LINES as usize + 3] {
        let mut from = c.run_events(&run.run_id, Some(from_db[k].0.clone()));
        let mut got = vec![];
        while let Some(e) = from.next().await.unwrap() {
            got.push((from.last_event_id().unwrap().to_string(), e));
        }
        assert_eq!(got, from_db[k + 1..], "from the archive, after event {k}");
    }
    t.server.shutdown().await;
}

/// The server restarts while a client follows a run: the client's stream
/// ends without `end`, it reconnects with its last id to the new server and
/// gets the rest, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_resumes_across_a_server_restart() {
    let t = setup(|_| {}).await;
    let c = &t.client;
    let run = launch(c).await;
    let claim = c.claim(&t.agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let (id, fence) = (claim.item.id.clone(), claim.fence);
    c.report(&id, fence, ItemEvent::Start).await.unwrap();
    append(c, &id, fence, 0, "before\n").await;
    let mut events = c.run_events(&run.run_id, None);
    for what in ["launch", "claim", "start", "the first line"] {
        next(&mut events, what).await;
    }
    let addr = t.server.addr;
    t.server.shutdown().await;
    let mut cfg = ServerConfig::new(t._dir.path().to_path_buf());
    cfg.listen = addr;
    cfg.print_admin_key = false;
    let again = start(cfg).await.expect("the server starts again on its port");
    append(c, &id, fence, 1, "after\n").await;
    c.report(&id, fence, ItemEvent::Finish).await.unwrap();
    assert_eq!(log(&next(&mut events, "the line sent after the restart").await), (1, "after\n"));
    assert_eq!(transition(&next(&mut events, "the finish").await).0, "finish");
    assert_eq!(next(&mut events, "the end").await, RunEvent::End { state: ItemState::Finished });
    again.shutdown().await;
}
