//! The store contract: every case runs against SQLite and against a real
//! PostgreSQL (`LIFTOFF_TEST_POSTGRES_URL`; under `CI` a missing server fails).

use liftoff_core::api::{AgentStatus, LaunchSpec, LogStream, LogTail, RegisterAgent};
use liftoff_core::job::{ImageSource, JobSource};
use liftoff_core::{ItemEvent, ItemState, Priority, Queue, ResourceType, Stage, TransitionCause};
use liftoff_store::{ApiKeyRecord, KeyRole, Launcher, NewItem, NewJobVersion, SqlStore, Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;

const TTL: i64 = 10_000;
/// A lease that has run out by the time anyone looks.
const SHORT: i64 = 1;

async fn sqlite() -> (SqlStore, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    (SqlStore::connect(&url, 3).await.unwrap(), Some(dir))
}

async fn postgres() -> Option<(SqlStore, Option<tempfile::TempDir>)> {
    let url = liftoff_testkit::fresh_postgres_database("liftoff_test").await?;
    Some((SqlStore::connect(&url, 3).await.unwrap(), None))
}

fn queue(name: &str, prioritization: bool) -> Queue {
    Queue {
        entity: "acme".into(),
        name: name.into(),
        resource: ResourceType::LocalProcess,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization,
        created_at_ms: 1,
    }
}

fn item(id: &str, queue: &str, priority: Priority, prioritized: bool) -> NewItem {
    NewItem {
        id: id.into(),
        run_id: format!("run-{id}"),
        entity: "acme".into(),
        queue: queue.into(),
        priority,
        prioritized,
        spec: LaunchSpec {
            job: "acme/p/j:v1".into(),
            project: "p".into(),
            source: JobSource::Image(ImageSource { image: "busybox".into(), args: vec![] }),
            entrypoint: vec![],
            args: vec![],
            run_config: serde_json::json!({}),
            resource: ResourceType::LocalProcess,
            resource_config: serde_json::json!({}),
            runtime: None,
            entrypoint_overridden: false,
            file_overrides: serde_json::json!({}),
        },
        now_ms: 1,
        launched_by: None,
    }
}

async fn claim_one(s: &SqlStore, q: &str) -> Option<liftoff_core::api::ItemView> {
    claim_for(s, q, TTL).await
}

async fn claim_for(s: &SqlStore, q: &str, ttl: i64) -> Option<liftoff_core::api::ItemView> {
    s.claim("acme", &[q.to_string()], "agent-1", ttl).await.unwrap().map(|c| c.item)
}

/// Runs the reaper until it expires something (leases end by the database's
/// clock, so a test waits for them: with `SHORT` leases, milliseconds).
async fn expire_soon(s: &SqlStore) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let expired = s.expire_leases().await.unwrap();
        if !expired.is_empty() {
            return expired;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "no lease expired within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn entities_keys_and_queues(s: SqlStore) {
    assert!(s.ensure_entity("acme", 1).await.unwrap());
    assert!(!s.ensure_entity("acme", 2).await.unwrap(), "second ensure creates nothing");
    assert!(s.entity_exists("acme").await.unwrap());
    assert!(!s.entity_exists("nobody").await.unwrap());
    let key = ApiKeyRecord {
        id: "k1".into(),
        hash: "h1".into(),
        entity: "acme".into(),
        role: KeyRole::Run { item_id: "i1".into() },
        created_at_ms: 1,
        expires_at_ms: Some(99),
        name: Some("ci <bot>".into()),
    };
    s.insert_api_key(&key).await.unwrap();
    assert_eq!(s.find_api_key("h1").await.unwrap(), Some(key));
    assert_eq!(s.find_api_key("nope").await.unwrap(), None);

    s.create_queue(&queue("gpu", true)).await.unwrap();
    assert!(matches!(s.create_queue(&queue("gpu", true)).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_queue("acme", "gpu").await.unwrap().unwrap().name, "gpu");
    assert_eq!(s.get_queue("other", "gpu").await.unwrap(), None, "queues are entity-scoped");
    assert_eq!(s.list_queues("acme").await.unwrap().len(), 1);
}

async fn job_versions_and_aliases(s: SqlStore) {
    let src = JobSource::Image(ImageSource { image: "busybox:1".into(), args: vec![] });
    let prod = vec!["prod".to_string()];
    let new = |runtime, aliases, now_ms| NewJobVersion {
        entity: "acme",
        project: "p",
        name: "train",
        source: &src,
        runtime,
        aliases,
        now_ms,
    };
    let v1 = s.create_job_version(&new(None, &prod, 1)).await.unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.aliases, vec!["latest", "prod", "v1"]);
    let v2 = s.create_job_version(&new(Some("3.11"), &[], 2)).await.unwrap();
    assert_eq!(v2.aliases, vec!["latest", "v2"]);
    assert_eq!(s.get_job("acme", "p", "train", "latest").await.unwrap().unwrap().version, 2);
    let v1_again = s.get_job("acme", "p", "train", "v1").await.unwrap().unwrap();
    assert_eq!(v1_again.aliases, vec!["prod", "v1"], "latest moved to v2");
    assert_eq!(s.get_job("acme", "p", "train", "prod").await.unwrap().unwrap().version, 1);
    assert!(s.get_job("other", "p", "train", "latest").await.unwrap().is_none());
    let listed = s.list_jobs("acme").await.unwrap();
    assert_eq!(listed.len(), 2);
    let listed: Vec<_> = listed.iter().map(|j| (j.version, j.aliases.clone(), j.runtime.clone())).collect();
    assert_eq!(
        listed,
        vec![
            (1, vec!["prod".to_string(), "v1".to_string()], None),
            (2, vec!["latest".to_string(), "v2".to_string()], Some("3.11".to_string()))
        ],
        "each version once, with its own aliases"
    );
}

async fn claims_follow_priority_then_fifo(s: SqlStore) {
    s.create_queue(&queue("prio", true)).await.unwrap();
    s.create_queue(&queue("fifo", false)).await.unwrap();
    for (id, p) in [("a", Priority::Low), ("b", Priority::High), ("c", Priority::High), ("d", Priority::Critical)] {
        s.enqueue(&item(id, "prio", p, true)).await.unwrap();
        s.enqueue(&item(&format!("f{id}"), "fifo", p, false)).await.unwrap();
    }
    let mut order = vec![];
    while let Some(i) = claim_one(&s, "prio").await {
        assert_eq!(i.state, ItemState::Claimed);
        assert_eq!(i.agent_id.as_deref(), Some("agent-1"));
        order.push(i.id);
    }
    assert_eq!(order, vec!["d", "b", "c", "a"]);
    let mut fifo = vec![];
    while let Some(i) = claim_one(&s, "fifo").await {
        fifo.push(i.id);
    }
    assert_eq!(fifo, vec!["fa", "fb", "fc", "fd"], "prioritization off: FIFO");
    // round robin is the caller's order of queues
    s.enqueue(&item("x", "prio", Priority::Low, true)).await.unwrap();
    s.enqueue(&item("y", "fifo", Priority::Low, false)).await.unwrap();
    let got = s.claim("acme", &["fifo".into(), "prio".into()], "a", TTL).await.unwrap().unwrap();
    assert_eq!((got.item.id.as_str(), got.log_seq_start), ("y", 0));
    assert!(matches!(
        s.enqueue(&item("z", "fifo", Priority::Low, false)).await.and(s.enqueue(&NewItem { id: "z2".into(), ..item("z", "fifo", Priority::Low, false) }).await),
        Err(StoreError::Conflict(m)) if m.contains("run id")
    ));
}

async fn stale_fences_are_refused_and_change_nothing(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("i", "q", Priority::Medium, false)).await.unwrap();
    let first = claim_for(&s, "q", SHORT).await.unwrap();
    let f1 = first.fence;
    // lease runs out, item goes back, another agent claims: a newer fence
    assert_eq!(expire_soon(&s).await, vec!["i".to_string()]);
    let pending = s.get_item("acme", "i").await.unwrap().unwrap();
    assert_eq!((pending.state, pending.attempts, pending.agent_id), (ItemState::Pending, 1, None));
    let second = claim_one(&s, "q").await.unwrap();
    let f2 = second.fence;
    assert!(f2 > f1);

    let stale = |r: Result<_, StoreError>| matches!(r, Err(StoreError::StaleFence { sent, current, .. }) if sent == f1 && current == f2);
    assert!(stale(s.renew_lease("acme", "i", f1, TTL).await.map(|_| ())));
    assert!(stale(s.apply_event("acme", "i", Some(f1), &ItemEvent::Start, TTL + 3).await.map(|_| ())));
    assert!(stale(s.append_log("acme", "i", f1, 0, LogStream::Stdout, "x").await));
    let after = s.get_item("acme", "i").await.unwrap().unwrap();
    assert_eq!(after, second, "refused writes changed nothing");
    assert!(s.read_log("acme", "i", 0, 10).await.unwrap().is_empty());

    let running = s.apply_event("acme", "i", Some(f2), &ItemEvent::Start, TTL + 4).await.unwrap();
    assert_eq!(running.state, ItemState::Running);
    assert!(running.started_at_ms.is_some());
    let done = s.apply_event("acme", "i", Some(f2), &ItemEvent::Finish, TTL + 5).await.unwrap();
    assert_eq!((done.state, done.exit_code, done.ended_at_ms), (ItemState::Finished, Some(0), Some(TTL + 5)));
    let again = s
        .apply_event("acme", "i", None, &ItemEvent::Fail { reason: "x".into(), exit_code: None, stage: None }, TTL + 6)
        .await;
    assert!(matches!(again, Err(StoreError::Transition(_))), "terminal states are never left");
}

async fn lease_expiry_requeues_until_the_limit(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("i", "q", Priority::Medium, false)).await.unwrap();
    for attempt in 1..=3u32 {
        let c = claim_for(&s, "q", SHORT).await.expect("claimable again");
        // renewing keeps it alive past the original deadline
        s.renew_lease("acme", "i", c.fence, TTL).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(s.expire_leases().await.unwrap().is_empty(), "renewed lease must not expire");
        s.renew_lease("acme", "i", c.fence, SHORT).await.unwrap();
        assert_eq!(expire_soon(&s).await.len(), 1);
        let v = s.get_item("acme", "i").await.unwrap().unwrap();
        assert_eq!(v.attempts, attempt);
    }
    let v = s.get_item("acme", "i").await.unwrap().unwrap();
    assert_eq!(v.state, ItemState::Failed);
    assert!(v.reason.unwrap().contains("lease expired 3 times"));
    assert!(claim_one(&s, "q").await.is_none());
}

async fn stop_requests(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("p", "q", Priority::Medium, false)).await.unwrap();
    let v = s.apply_event("acme", "p", None, &ItemEvent::RequestStop, 1).await.unwrap();
    assert_eq!(v.state, ItemState::Stopped, "a pending item stops at once");
    s.enqueue(&item("r", "q", Priority::Medium, false)).await.unwrap();
    let c = claim_one(&s, "q").await.unwrap();
    s.apply_event("acme", "r", Some(c.fence), &ItemEvent::Start, 2).await.unwrap();
    let v = s.apply_event("acme", "run-r", None, &ItemEvent::RequestStop, 3).await.unwrap();
    assert_eq!(v.state, ItemState::Stopping, "lookup by run id works too");
    let v = s.apply_event("acme", "r", Some(c.fence), &ItemEvent::Stopped { exit_code: Some(143) }, 4).await.unwrap();
    assert_eq!((v.state, v.exit_code), (ItemState::Stopped, Some(143)));
}

async fn log_chunks_in_order_idempotent(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("i", "q", Priority::Medium, false)).await.unwrap();
    let c = claim_for(&s, "q", SHORT).await.unwrap();
    s.append_log("acme", "i", c.fence, 0, LogStream::Stdout, "a\n").await.unwrap();
    s.append_log("acme", "i", c.fence, 1, LogStream::Stderr, "b\n").await.unwrap();
    s.append_log("acme", "i", c.fence, 1, LogStream::Stderr, "b\n").await.unwrap(); // retry: ignored
    let gap = s.append_log("acme", "i", c.fence, 5, LogStream::Stdout, "z").await;
    assert!(matches!(gap, Err(StoreError::Invalid { field, .. }) if field == "seq"));
    let chunks = s.read_log("acme", "i", 0, 100).await.unwrap();
    let text: Vec<_> = chunks.iter().map(|c| (c.seq, c.stream, c.data.as_str())).collect();
    assert_eq!(text, vec![(0, LogStream::Stdout, "a\n"), (1, LogStream::Stderr, "b\n")]);
    assert_eq!(s.read_log("acme", "i", 1, 100).await.unwrap().len(), 1);
    assert!(matches!(s.read_log("other", "i", 0, 1).await, Err(StoreError::NotFound(_))));
    // a re-claim after a lost lease continues the sequence
    expire_soon(&s).await;
    let again = s.claim("acme", &["q".into()], "agent-2", TTL).await.unwrap().unwrap();
    assert!(again.item.fence > c.fence);
    assert_eq!(again.log_seq_start, 2);
    // each claim's output is counted apart, in bytes as sent; a NUL is not stored
    s.append_log("acme", "i", again.item.fence, 2, LogStream::Stdout, "x\0é\n").await.unwrap();
    s.append_log("acme", "i", again.item.fence, 3, LogStream::Agent, "said\n").await.unwrap();
    let old = s.log_position("acme", "i", c.fence).await.unwrap();
    assert_eq!((old.next_seq, old.stdout_bytes, old.stderr_bytes), (4, 2, 2));
    let now = s.log_position("acme", "i", again.item.fence).await.unwrap();
    assert_eq!((now.next_seq, now.stdout_bytes, now.stderr_bytes), (4, 5, 0));
    assert_eq!(s.read_log("acme", "i", 2, 1).await.unwrap()[0].data, "x\u{FFFD}é\n");

    // ended runs are offered for archiving; archiving drops the rows and closes the log
    assert!(s.logs_to_archive(10).await.unwrap().is_empty(), "a running item's log stays open");
    assert_eq!(s.claim_log_archive("acme", "i", TTL).await.unwrap(), None);
    assert!(matches!(s.mark_log_archived("acme", "i", 0, Some(3)).await, Err(StoreError::Conflict(_))));
    s.apply_event("acme", "i", Some(again.item.fence), &ItemEvent::Start, TTL + 12).await.unwrap();
    s.apply_event("acme", "i", Some(again.item.fence), &ItemEvent::Finish, TTL + 13).await.unwrap();
    assert_eq!(s.logs_to_archive(10).await.unwrap(), vec![("acme".to_string(), "i".to_string())]);
    let claim = s.claim_log_archive("acme", "i", TTL).await.unwrap().expect("an archive claim");
    assert!(s.logs_to_archive(10).await.unwrap().is_empty(), "a claimed log is not offered again");
    s.mark_log_archived("acme", "i", claim, Some(3)).await.unwrap();
    assert!(s.logs_to_archive(10).await.unwrap().is_empty());
    assert_eq!(s.claim_log_archive("acme", "i", TTL).await.unwrap(), None, "an archived log is never archived again");
    assert!(s.get_item("acme", "i").await.unwrap().unwrap().log_archived);
    assert!(s.read_log("acme", "i", 0, 100).await.unwrap().is_empty(), "rows dropped");
    let late = s.append_log("acme", "i", again.item.fence, 4, LogStream::Stdout, "late").await;
    // refused twice over: the outcome took a new fence, and the log is closed
    assert!(matches!(late, Err(StoreError::StaleFence { .. } | StoreError::Conflict(_))), "closed log refuses chunks");
}

/// An outcome that carries the log's last chunk stores both or neither.
async fn an_outcome_carries_the_last_chunk(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("i", "q", Priority::Medium, false)).await.unwrap();
    let c = claim_one(&s, "q").await.unwrap();
    s.apply_event("acme", "i", Some(c.fence), &ItemEvent::Start, 2).await.unwrap();
    s.append_log("acme", "i", c.fence, 0, LogStream::Stdout, "a\n").await.unwrap();
    let tail = |seq, data: &str| LogTail { seq, stream: LogStream::Stderr, data: data.into() };
    // a gap: neither the chunk nor the outcome
    let gap = s.append_log_then_event("acme", "i", c.fence, &tail(5, "z"), &ItemEvent::Finish, 3).await;
    assert!(matches!(gap, Err(StoreError::Invalid { field, .. }) if field == "seq"));
    assert_eq!(
        s.get_item("acme", "i").await.unwrap().unwrap().state,
        ItemState::Running,
        "the outcome was not applied"
    );
    // a stale fence: neither
    let stale = s.append_log_then_event("acme", "i", c.fence - 1, &tail(1, "z"), &ItemEvent::Finish, 3).await;
    assert!(matches!(stale, Err(StoreError::StaleFence { .. })));
    assert_eq!(s.read_log("acme", "i", 0, 10).await.unwrap().len(), 1, "the chunk was not stored");
    // both, and the history puts the outcome after the chunk
    let v = s.append_log_then_event("acme", "i", c.fence, &tail(1, "b\n"), &ItemEvent::Finish, 3).await.unwrap();
    assert_eq!(v.state, ItemState::Finished);
    let chunks = s.read_log("acme", "i", 0, 10).await.unwrap();
    let text: Vec<_> = chunks.iter().map(|c| (c.seq, c.stream, c.data.as_str())).collect();
    assert_eq!(text, vec![(0, LogStream::Stdout, "a\n"), (1, LogStream::Stderr, "b\n")]);
    let finish = s.item_history("acme", "i", 0, 10).await.unwrap().into_iter().last().unwrap();
    assert_eq!((finish.event.as_str(), finish.log_seq), ("finish", 2));
    // a retry of the whole report (its answer lost) changes nothing
    let again = s.append_log_then_event("acme", "i", c.fence, &tail(1, "b\n"), &ItemEvent::Finish, 4).await;
    assert!(matches!(again, Err(StoreError::StaleFence { .. } | StoreError::Conflict(_))));
    assert_eq!(s.read_log("acme", "i", 0, 10).await.unwrap().len(), 2);
}

async fn concurrent_claims_take_each_item_once(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    for i in 0..300 {
        s.enqueue(&item(&format!("i{i:04}"), "q", Priority::Medium, false)).await.unwrap();
    }
    let s = Arc::new(s);
    let mut tasks = vec![];
    for a in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = vec![];
            while let Some(i) = s.claim("acme", &["q".into()], &format!("agent-{a}"), TTL).await.unwrap() {
                got.push(i.item.id);
            }
            got
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 300, "every item claimed");
    assert_eq!(unique.len(), 300, "no item claimed twice");
}

/// A claim that finds a queue empty does not hide what comes after it:
/// every way an item becomes pending (a launch, a lease expiry, a release,
/// a preemption) is seen by the next claim; an agent told to stop polling
/// gets nothing without making the queue look empty to the others.
async fn empty_queues_fill_again(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    assert!(claim_one(&s, "q").await.is_none(), "empty at first");
    assert!(claim_one(&s, "q").await.is_none(), "and still");
    s.enqueue(&item("a", "q", Priority::Medium, false)).await.unwrap();
    let c = claim_for(&s, "q", SHORT).await.expect("a launch after an empty claim is claimed");
    assert!(claim_one(&s, "q").await.is_none());
    assert_eq!(expire_soon(&s).await, vec!["a".to_string()]);
    let c2 = claim_one(&s, "q").await.expect("a lease expiry after an empty claim is claimed again");
    assert!(c2.fence > c.fence);
    assert!(claim_one(&s, "q").await.is_none());
    assert_eq!(s.release_unstarted("acme", "agent-1", &[]).await.unwrap(), vec!["a".to_string()]);
    let c3 = claim_one(&s, "q").await.expect("a release after an empty claim is claimed again");
    s.apply_event("acme", "a", Some(c3.fence), &ItemEvent::Start, 2).await.unwrap();
    assert!(claim_one(&s, "q").await.is_none());
    let v = s.apply_event("acme", "a", Some(c3.fence), &ItemEvent::Preempt, 3).await.unwrap();
    assert_eq!(v.state, ItemState::Pending);
    // an agent told to stop polling gets nothing, and the others still do
    let req = RegisterAgent { queues: vec!["q".into()], hostname: "h".into(), max_jobs: -1, version: "1".into() };
    s.register_agent("acme", "stopped", &req, 1).await.unwrap();
    s.set_agent_stop_polling("acme", "stopped").await.unwrap();
    assert!(s.claim("acme", &["q".to_string()], "stopped", TTL).await.unwrap().is_none());
    let c4 = claim_one(&s, "q").await.expect("a preempted item is claimed again, whatever a stopped agent got");
    assert_eq!(c4.id, "a");
    // several queues: the empty one is passed over, the other claimed
    s.create_queue(&queue("r", false)).await.unwrap();
    s.enqueue(&item("b", "r", Priority::Medium, false)).await.unwrap();
    let both = ["q".to_string(), "r".to_string()];
    let got = s.claim("acme", &both, "agent-1", TTL).await.unwrap().expect("the item in the second queue");
    assert_eq!(got.item.id, "b");
    assert!(s.claim("acme", &both, "agent-1", TTL).await.unwrap().is_none());
}

async fn agents(s: SqlStore) {
    let req = RegisterAgent { queues: vec!["q".into()], hostname: "h".into(), max_jobs: -1, version: "0.3.1".into() };
    let a = s.register_agent("acme", "ag1", &req, 1).await.unwrap();
    assert_eq!((a.status, a.stop_polling, a.max_jobs), (AgentStatus::Polling, false, -1));
    assert_eq!(a.version.as_deref(), Some("0.3.1"));
    let unversioned = RegisterAgent { version: " ".into(), ..req.clone() };
    assert_eq!(s.register_agent("acme", "ag0", &unversioned, 1).await.unwrap().version, None, "none sent: none shown");
    let a = s.agent_heartbeat("acme", "ag1", AgentStatus::Running, 5).await.unwrap();
    assert_eq!((a.status, a.heartbeat_at_ms), (AgentStatus::Running, 5));
    assert!(s.set_agent_stop_polling("acme", "ag1").await.unwrap().stop_polling);
    assert!(matches!(s.agent_heartbeat("other", "ag1", AgentStatus::Running, 6).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.list_agents("acme").await.unwrap().len(), 2);
    assert_eq!(s.get_agent("acme", "ag1").await.unwrap().map(|a| a.id), Some("ag1".to_string()));
    assert_eq!(s.get_agent("other", "ag1").await.unwrap(), None, "agents are entity-scoped");
}

/// Every write a holder makes (renew, event, log chunk, warning) is refused
/// once it lost the item, to expiry or after the stop it reported, and
/// changes nothing anywhere.
async fn lost_holders_change_nothing(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    let refused = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::StaleFence { .. } | StoreError::Conflict(_))), "{r:?}")
    };
    let writes_are_refused = async |id: &str, fence: i64, next_seq: i64| {
        let before = s.get_item("acme", id).await.unwrap().unwrap();
        refused(s.renew_lease("acme", id, fence, TTL).await.map(|_| ()));
        refused(s.apply_event("acme", id, Some(fence), &ItemEvent::Finish, 9).await.map(|_| ()));
        refused(s.append_log("acme", id, fence, next_seq, LogStream::Stdout, "late\n").await);
        refused(s.add_warning("acme", id, Some(fence), Stage::Run, "late", 9).await.map(|_| ()));
        assert_eq!(s.get_item("acme", id).await.unwrap().unwrap(), before, "the item is unchanged");
        assert_eq!(s.read_log("acme", id, 0, 10).await.unwrap().len() as i64, next_seq, "no chunk was added");
        assert!(s.list_warnings("acme", id).await.unwrap().is_empty(), "no warning was added");
    };

    // expired: the item went back to pending
    s.enqueue(&item("e", "q", Priority::Medium, false)).await.unwrap();
    let c = claim_for(&s, "q", SHORT).await.unwrap();
    s.apply_event("acme", "e", Some(c.fence), &ItemEvent::Start, 2).await.unwrap();
    s.append_log("acme", "e", c.fence, 0, LogStream::Stdout, "ran\n").await.unwrap();
    assert_eq!(expire_soon(&s).await, vec!["e".to_string()]);
    writes_are_refused("e", c.fence, 1).await;

    // stopped: the holder reported the stop, and the run has ended
    s.create_queue(&queue("q2", false)).await.unwrap();
    s.enqueue(&item("t", "q2", Priority::Medium, false)).await.unwrap();
    let c = claim_one(&s, "q2").await.unwrap();
    s.apply_event("acme", "t", Some(c.fence), &ItemEvent::Start, 2).await.unwrap();
    s.apply_event("acme", "t", None, &ItemEvent::RequestStop, 3).await.unwrap();
    s.add_warning("acme", "t", Some(c.fence), Stage::Run, "stopping", 3).await.unwrap();
    s.apply_event("acme", "t", Some(c.fence), &ItemEvent::Stopped { exit_code: Some(143) }, 4).await.unwrap();
    let before = s.list_warnings("acme", "t").await.unwrap();
    assert_eq!(before.len(), 1, "a stopping holder may still write");
    // the stop took a new fence and ended the run: refused either way
    let gone = |r: Result<(), StoreError>| matches!(r, Err(StoreError::StaleFence { .. } | StoreError::Conflict(_)));
    let renewed = s.renew_lease("acme", "t", c.fence, TTL).await.map(|_| ());
    let shown = format!("{renewed:?}");
    assert!(gone(renewed), "{shown}");
    let late = s.add_warning("acme", "t", Some(c.fence), Stage::Run, "late", 5).await.map(|_| ());
    let shown = format!("{late:?}");
    assert!(gone(late), "{shown}");
    assert_eq!(s.list_warnings("acme", "t").await.unwrap(), before);
    let late = s.append_log("acme", "t", c.fence, 0, LogStream::Stdout, "late\n").await;
    let shown = format!("{late:?}");
    assert!(gone(late), "an ended run takes no chunks: {shown}");
    assert!(s.read_log("acme", "t", 0, 10).await.unwrap().is_empty());
}

/// Lease deadlines come from the database's clock: whatever time the caller
/// believes it is (its `now_ms` for the event's timestamps), a lease runs
/// `ttl` from the database's now, and a fresh lease is never expired.
async fn lease_deadlines_use_the_database_clock(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&NewItem { now_ms: i64::MAX / 4, ..item("i", "q", Priority::Medium, false) }).await.unwrap();
    // the test database runs on this machine, so its clock is this clock
    let before = liftoff_store::now_ms();
    let c = claim_one(&s, "q").await.unwrap();
    let after = liftoff_store::now_ms();
    let deadline = c.lease_expires_at_ms.unwrap();
    assert!((before + TTL - 1000..=after + TTL + 1000).contains(&deadline), "{before} {deadline} {after}");
    // a caller whose clock is years ahead changes no deadline
    s.apply_event("acme", "i", Some(c.fence), &ItemEvent::Start, i64::MAX / 4).await.unwrap();
    assert!(s.expire_leases().await.unwrap().is_empty(), "a fresh lease is not expired");
    let renewed = s.renew_lease("acme", "i", c.fence, 2 * TTL).await.unwrap();
    let deadline = renewed.lease_expires_at_ms.unwrap();
    let now = liftoff_store::now_ms();
    assert!((now + 2 * TTL - 2000..=now + 2 * TTL + 1000).contains(&deadline), "{now} {deadline}");
    assert_eq!(s.get_item("acme", "i").await.unwrap().unwrap().lease_expires_at_ms, Some(deadline));
}

/// Of several servers archiving at once, exactly one claims a run's log; a
/// claim whose archiver died runs out and is taken over, and the archiver
/// that lost it can no longer close the log.
async fn one_archiver_per_log(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    for id in ["a", "b"] {
        s.enqueue(&item(id, "q", Priority::Medium, false)).await.unwrap();
        let c = claim_one(&s, "q").await.unwrap();
        s.append_log("acme", id, c.fence, 0, LogStream::Stdout, "out\n").await.unwrap();
        s.append_log("acme", id, c.fence, 1, LogStream::Stderr, "err\n").await.unwrap();
        s.apply_event("acme", id, Some(c.fence), &ItemEvent::Start, 2).await.unwrap();
        s.apply_event("acme", id, Some(c.fence), &ItemEvent::Finish, 3).await.unwrap();
    }
    let s = Arc::new(s);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_log_archive("acme", "a", TTL).await.unwrap() })
        })
        .collect();
    let mut won = vec![];
    for r in racers {
        won.extend(r.await.unwrap());
    }
    assert_eq!(won.len(), 1, "exactly one archiver wins: {won:?}");
    assert_eq!(s.logs_to_archive(10).await.unwrap(), vec![("acme".to_string(), "b".to_string())]);
    s.mark_log_archived("acme", "a", won[0], Some(1)).await.unwrap();
    assert!(s.read_log("acme", "a", 0, 10).await.unwrap().is_empty(), "the archived chunks are dropped");

    // a claim that runs out (its archiver died) is taken over
    let dead = s.claim_log_archive("acme", "b", SHORT).await.unwrap().expect("claim");
    let start = std::time::Instant::now();
    let taken = loop {
        if let Some(c) = s.claim_log_archive("acme", "b", TTL).await.unwrap() {
            break c;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the claim never ran out");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_ne!(taken, dead);
    let late = s.mark_log_archived("acme", "b", dead, Some(0)).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert!(!s.get_item("acme", "b").await.unwrap().unwrap().log_archived);
    assert_eq!(s.read_log("acme", "b", 0, 10).await.unwrap().len(), 2, "the lost claim dropped nothing");
    // only the chunks the archiver read and stored are dropped
    s.mark_log_archived("acme", "b", taken, Some(0)).await.unwrap();
    assert!(s.get_item("acme", "b").await.unwrap().unwrap().log_archived);
    let left: Vec<_> = s.read_log("acme", "b", 0, 10).await.unwrap().into_iter().map(|c| c.seq).collect();
    assert_eq!(left, [1]);
    assert_eq!(s.claim_log_archive("acme", "b", TTL).await.unwrap(), None);
}

/// An ended run's log of at most the given size is kept in the database:
/// not offered to archivers, read as before; a larger one, a live run's and
/// one an archiver holds are left alone.
async fn small_logs_stay_in_the_database(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    // small: 8 bytes; large: 20 bytes; live: 4 bytes, still running; held: 4 bytes, claimed by an archiver
    for (id, lines) in [
        ("small", &["out\n", "err\n"][..]),
        ("large", &["0123456789\n", "012345678\n"]),
        ("live", &["abc\n"]),
        ("held", &["abc\n"]),
    ] {
        s.enqueue(&item(id, "q", Priority::Medium, false)).await.unwrap();
        let c = claim_one(&s, "q").await.unwrap();
        s.apply_event("acme", id, Some(c.fence), &ItemEvent::Start, 2).await.unwrap();
        for (seq, line) in lines.iter().enumerate() {
            s.append_log("acme", id, c.fence, seq as i64, LogStream::Stdout, line).await.unwrap();
        }
        if id != "live" {
            s.apply_event("acme", id, Some(c.fence), &ItemEvent::Finish, 3).await.unwrap();
        }
    }
    let held = s.claim_log_archive("acme", "held", TTL).await.unwrap().expect("an archive claim");
    assert_eq!(s.keep_small_logs(10).await.unwrap(), 1, "only the small ended log, not held, is kept");
    assert_eq!(s.keep_small_logs(10).await.unwrap(), 0, "kept once");
    let small = s.get_item("acme", "small").await.unwrap().unwrap();
    assert!(!small.log_archived, "a kept log is read from the database");
    let data: Vec<_> = s.read_log("acme", "small", 0, 10).await.unwrap().into_iter().map(|c| c.data).collect();
    assert_eq!(data, ["out\n", "err\n"]);
    let todo = s.logs_to_archive(10).await.unwrap();
    assert_eq!(todo, vec![("acme".to_string(), "large".to_string())], "the kept log is not offered, the large one is");
    assert_eq!(s.claim_log_archive("acme", "small", TTL).await.unwrap(), None, "nor can it be claimed");
    // the held one is archived by its holder as before
    s.mark_log_archived("acme", "held", held, Some(0)).await.unwrap();
    assert!(s.get_item("acme", "held").await.unwrap().unwrap().log_archived);
    // the live one, once ended, is kept by the next round
    let live = s.get_item("acme", "live").await.unwrap().unwrap();
    s.apply_event("acme", "live", Some(live.fence), &ItemEvent::Finish, 4).await.unwrap();
    assert_eq!(s.keep_small_logs(10).await.unwrap(), 1);
    assert_eq!(s.read_log("acme", "live", 0, 10).await.unwrap().len(), 1);
}

/// Item ids and run ids share one namespace per entity: no run id may name
/// another item, so a lookup never matches two items.
async fn item_ids_and_run_ids_never_collide(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    let a = s.enqueue(&NewItem { run_id: "r1".into(), ..item("i1", "q", Priority::Medium, false) }).await.unwrap();
    let run_id_is_an_item_id =
        s.enqueue(&NewItem { run_id: "i1".into(), ..item("i2", "q", Priority::Medium, false) }).await;
    assert!(matches!(run_id_is_an_item_id, Err(StoreError::Conflict(m)) if m.contains("run id 'i1'")));
    let item_id_is_a_run_id =
        s.enqueue(&NewItem { run_id: "r3".into(), ..item("r1", "q", Priority::Medium, false) }).await;
    assert!(matches!(item_id_is_a_run_id, Err(StoreError::Conflict(_))), "{item_id_is_a_run_id:?}");
    // the refused enqueues left nothing behind
    assert_eq!(s.list_items("acme", None, None, 10).await.unwrap(), vec![a.clone()]);
    assert_eq!(s.get_item("acme", "i1").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_item("acme", "r1").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_item("acme", "i2").await.unwrap(), None);
    assert_eq!(s.get_item("acme", "r3").await.unwrap(), None);
    // an item whose run id is its own id is one item; names are per entity
    s.enqueue(&NewItem { run_id: "same".into(), ..item("same", "q", Priority::Medium, false) }).await.unwrap();
    s.create_queue(&Queue { entity: "other".into(), ..queue("q", false) }).await.unwrap();
    let other = NewItem { entity: "other".into(), run_id: "r1".into(), ..item("o1", "q", Priority::Medium, false) };
    s.enqueue(&other).await.unwrap();
    assert_eq!(s.get_item("other", "r1").await.unwrap().map(|i| i.id), Some("o1".into()));
    assert_eq!(s.get_item("acme", "r1").await.unwrap().map(|i| i.id), Some("i1".into()));
}

/// One build per image content: of many agents asking at once one wins;
/// the rest wait until it finishes and then get its image; a failed or
/// abandoned build, or a done one whose image is gone, is claimed again, and
/// its old holder's writes are refused.
async fn builds_are_claimed_once(s: SqlStore) {
    use liftoff_core::api::BuildClaimAnswer as A;
    let s = Arc::new(s);
    let mut tasks = vec![];
    for a in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_build("acme", "reg/app:abc", &format!("agent-{a}"), TTL, false).await
        }));
    }
    let mut won = vec![];
    for t in tasks {
        match t.await.unwrap().unwrap() {
            A::Won { fence, .. } => won.push(fence),
            A::Held { holder, .. } => assert!(holder.starts_with("agent-")),
            A::Done { .. } => panic!("nothing was built yet"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one agent builds");
    let fence = won[0];
    // the holder renews; a wrong fence is refused
    s.update_build("acme", "reg/app:abc", fence, TTL, None).await.unwrap();
    assert!(matches!(
        s.update_build("acme", "reg/app:abc", fence + 1, TTL, None).await,
        Err(StoreError::StaleFence { .. })
    ));
    // the same key in another entity is another build
    assert!(matches!(s.claim_build("other", "reg/app:abc", "x", TTL, false).await.unwrap(), A::Won { .. }));
    // a failure frees it at once: the next asker builds, under a new fence
    s.update_build("acme", "reg/app:abc", fence, TTL, Some(None)).await.unwrap();
    let A::Won { fence: second, .. } = s.claim_build("acme", "reg/app:abc", "agent-9", TTL, false).await.unwrap()
    else {
        panic!("a failed build is claimed again")
    };
    assert!(second > fence);
    assert!(s.update_build("acme", "reg/app:abc", fence, TTL, Some(Some("reg/app:abc@sha256:00"))).await.is_err());
    s.update_build("acme", "reg/app:abc", second, TTL, Some(Some("reg/app:abc@sha256:11"))).await.unwrap();
    assert_eq!(
        s.claim_build("acme", "reg/app:abc", "agent-1", TTL, false).await.unwrap(),
        A::Done { image: "reg/app:abc@sha256:11".into() }
    );
    // its image pruned from the registry: an agent that found it gone wins it
    // again, under a new fence; the others then wait for that build
    let A::Won { fence: third, .. } = s.claim_build("acme", "reg/app:abc", "agent-2", TTL, true).await.unwrap() else {
        panic!("a done build whose image is gone is claimed again")
    };
    assert!(third > second);
    assert!(matches!(s.claim_build("acme", "reg/app:abc", "agent-3", TTL, true).await.unwrap(), A::Held { .. }));
    s.update_build("acme", "reg/app:abc", third, TTL, Some(Some("reg/app:abc@sha256:22"))).await.unwrap();
    assert_eq!(
        s.claim_build("acme", "reg/app:abc", "agent-1", TTL, false).await.unwrap(),
        A::Done { image: "reg/app:abc@sha256:22".into() }
    );
    // an abandoned build (its lease ran out) is claimed again
    let A::Won { fence: f, .. } = s.claim_build("acme", "reg/app:def", "agent-1", 30, false).await.unwrap() else {
        panic!()
    };
    assert!(matches!(s.claim_build("acme", "reg/app:def", "agent-2", TTL, false).await.unwrap(), A::Held { .. }));
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    assert!(matches!(s.claim_build("acme", "reg/app:def", "agent-2", TTL, false).await.unwrap(), A::Won { .. }));
    assert!(s.update_build("acme", "reg/app:def", f, TTL, None).await.is_err(), "the old holder lost it");
}

/// The run's build record is written by its holder only, and read back with the item.
async fn build_records(s: SqlStore) {
    use liftoff_core::api::{BuildHow, BuildRecord};
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("i1", "q", Priority::Medium, false)).await.unwrap();
    let held = claim_one(&s, "q").await.unwrap();
    let record = BuildRecord {
        image: "reg/app:abc@sha256:11".into(),
        digest: Some("sha256:11".into()),
        how: BuildHow::Found,
        seconds: 0.25,
        builder: "docker".into(),
    };
    assert!(matches!(
        s.set_build_record("acme", "i1", held.fence + 1, &record).await,
        Err(StoreError::StaleFence { .. })
    ));
    assert_eq!(s.get_item("acme", "i1").await.unwrap().unwrap().build, None);
    s.set_build_record("acme", "i1", held.fence, &record).await.unwrap();
    assert_eq!(s.get_item("acme", "i1").await.unwrap().unwrap().build, Some(record));
}

/// `(event, from, to, cause, agent, fence)` of each history entry.
type Entry = (String, Option<ItemState>, ItemState, TransitionCause, Option<String>, Option<i64>);

async fn history(s: &SqlStore, id: &str) -> Vec<Entry> {
    let h = s.item_history("acme", id, 0, 100).await.unwrap();
    let seqs: Vec<i64> = h.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, (1..=h.len() as i64).collect::<Vec<_>>(), "item seqs are dense from 1");
    h.into_iter().map(|t| (t.event, t.from, t.to, t.cause, t.agent_id, t.fence)).collect()
}

fn entry(event: &str, from: Option<ItemState>, to: ItemState, cause: TransitionCause) -> Entry {
    (event.into(), from, to, cause, None, None)
}

async fn history_records_every_change_with_its_cause(s: SqlStore) {
    use ItemState::*;
    s.create_queue(&queue("q", false)).await.unwrap();
    assert_eq!(s.queue_history_head("acme", "q").await.unwrap(), 0);
    s.enqueue(&NewItem { now_ms: 100, ..item("i", "q", Priority::Medium, false) }).await.unwrap();
    let c = claim_one(&s, "q").await.unwrap();
    s.apply_event("acme", "i", Some(c.fence), &ItemEvent::Start, 200).await.unwrap();
    s.append_log("acme", "i", c.fence, 0, LogStream::Stdout, "a\n").await.unwrap();
    s.append_log("acme", "i", c.fence, 1, LogStream::Stdout, "b\n").await.unwrap();
    s.apply_event("acme", "i", Some(c.fence), &ItemEvent::Finish, 300).await.unwrap();
    let agent = Some("agent-1".to_string());
    let by_agent = |event: &str, from, to| {
        (event.to_string(), Some(from), to, TransitionCause::Agent, agent.clone(), Some(c.fence))
    };
    assert_eq!(
        history(&s, "i").await,
        vec![
            entry("launch", None, Pending, TransitionCause::User),
            by_agent("claim", Pending, Claimed),
            by_agent("start", Claimed, Running),
            by_agent("finish", Running, Finished),
        ]
    );
    let full = s.item_history("acme", "run-i", 0, 100).await.unwrap();
    assert_eq!(full.len(), 4, "found by run id too");
    let times: Vec<i64> = full.iter().map(|t| t.at_ms).collect();
    assert_eq!((times[0], times[2], times[3]), (100, 200, 300));
    let log_seqs: Vec<i64> = full.iter().map(|t| t.log_seq).collect();
    assert_eq!(log_seqs, [0, 0, 0, 2], "the finish came after both log chunks");
    assert_eq!(full[3].exit_code, Some(0));
    assert_eq!(s.item_history("acme", "i", 2, 100).await.unwrap().len(), 2, "after seq 2");

    // a user's stop, the reaper's expiry and an agent's failure, with their details
    s.enqueue(&item("s", "q", Priority::Medium, false)).await.unwrap();
    s.apply_event("acme", "s", None, &ItemEvent::RequestStop, 1).await.unwrap();
    s.apply_event("acme", "s", None, &ItemEvent::RequestStop, 2).await.unwrap_err();
    assert_eq!(
        history(&s, "s").await,
        vec![
            entry("launch", None, Pending, TransitionCause::User),
            entry("request-stop", Some(Pending), Stopped, TransitionCause::User)
        ]
    );
    s.enqueue(&item("e", "q", Priority::Medium, false)).await.unwrap();
    let c1 = claim_for(&s, "q", SHORT).await.unwrap();
    assert_eq!(expire_soon(&s).await, vec!["e".to_string()]);
    let c2 = claim_one(&s, "q").await.unwrap();
    let fail = ItemEvent::Fail { reason: "boom".into(), exit_code: Some(3), stage: Some(Stage::Run) };
    s.apply_event("acme", "e", Some(c2.fence), &fail, 5).await.unwrap();
    let h = s.item_history("acme", "e", 0, 100).await.unwrap();
    let got: Vec<_> = h.iter().map(|t| (t.event.as_str(), t.to, t.cause, t.fence)).collect();
    assert_eq!(
        got,
        [
            ("launch", Pending, TransitionCause::User, None),
            ("claim", Claimed, TransitionCause::Agent, Some(c1.fence)),
            ("lease-expired", Pending, TransitionCause::LeaseExpiry, None),
            ("claim", Claimed, TransitionCause::Agent, Some(c2.fence)),
            ("fail", Failed, TransitionCause::Agent, Some(c2.fence)),
        ]
    );
    assert_eq!(h[2].agent_id.as_deref(), Some("agent-1"), "the expiry names the agent that lost the lease");
    assert_eq!((h[4].reason.as_deref(), h[4].exit_code, h[4].stage), (Some("boom"), Some(3), Some(Stage::Run)));

    // an agent's release of a claim it never started
    s.enqueue(&item("r", "q", Priority::Medium, false)).await.unwrap();
    let cr = claim_one(&s, "q").await.unwrap();
    assert_eq!(s.release_unstarted("acme", "agent-1", &[]).await.unwrap(), vec!["r".to_string()]);
    let h = s.item_history("acme", "r", 0, 100).await.unwrap();
    let last = h.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.to, last.cause, last.fence),
        ("release", Pending, TransitionCause::Agent, Some(cr.fence))
    );
    assert!(last.reason.as_deref().unwrap().contains("released unstarted"), "{last:?}");

    // the queue's changes, in commit order, numbered without gaps
    let q = s.queue_history("acme", "q", 0, 100).await.unwrap();
    let seqs: Vec<i64> = q.iter().map(|t| t.queue_seq.unwrap()).collect();
    assert_eq!(seqs, (1..=14).collect::<Vec<_>>());
    assert_eq!(s.queue_history_head("acme", "q").await.unwrap(), 14);
    assert_eq!(s.queue_history("acme", "q", 12, 100).await.unwrap().len(), 2);
    assert!(s.queue_history("other", "q", 0, 100).await.unwrap().is_empty(), "scoped by entity");
    for pair in q.windows(2).filter(|w| w[0].item_id == w[1].item_id) {
        assert!(pair[0].seq < pair[1].seq, "an item's changes keep their order in the queue's: {pair:?}");
    }
    assert_eq!(s.item_history("acme", "i", 0, 100).await.unwrap()[0].queue_seq, Some(1), "numbered once, kept");
    // later changes take the next numbers
    s.enqueue(&item("n", "q", Priority::Medium, false)).await.unwrap();
    assert_eq!(s.item_history("acme", "n", 0, 100).await.unwrap()[0].queue_seq, None, "not numbered before a look");
    let next = s.queue_history("acme", "q", 14, 100).await.unwrap();
    assert_eq!((next.len(), next[0].item_id.as_str(), next[0].queue_seq), (1, "n", Some(15)));
}

async fn stale_writes_record_nothing(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.enqueue(&item("i", "q", Priority::Medium, false)).await.unwrap();
    let first = claim_for(&s, "q", SHORT).await.unwrap();
    expire_soon(&s).await;
    let second = claim_one(&s, "q").await.unwrap();
    let head = s.queue_history_head("acme", "q").await.unwrap();
    let before = s.item_history("acme", "i", 0, 100).await.unwrap();
    for event in [ItemEvent::Start, ItemEvent::Finish, ItemEvent::Preempt] {
        let r = s.apply_event("acme", "i", Some(first.fence), &event, 9).await;
        assert!(matches!(r, Err(StoreError::StaleFence { .. })), "{event:?}: {r:?}");
    }
    // an event the state machine refuses records nothing either
    assert!(s.apply_event("acme", "i", Some(second.fence), &ItemEvent::Finish, 9).await.is_err());
    assert_eq!(s.item_history("acme", "i", 0, 100).await.unwrap(), before);
    assert_eq!(s.queue_history_head("acme", "q").await.unwrap(), head);
}

/// What `/metrics` reads: every queue of every entity with its counts per
/// state and its oldest pending item, every agent, items by id alone.
async fn metrics_stats(s: SqlStore) {
    s.create_queue(&queue("q", false)).await.unwrap();
    s.create_queue(&queue("empty", false)).await.unwrap();
    s.create_queue(&Queue { entity: "other".into(), resource: ResourceType::LocalContainer, ..queue("q", false) })
        .await
        .unwrap();
    s.enqueue(&item("i1", "q", Priority::Medium, false)).await.unwrap();
    s.enqueue(&NewItem { now_ms: 500, ..item("i2", "q", Priority::Medium, false) }).await.unwrap();
    s.enqueue(&NewItem { now_ms: 700, ..item("i3", "q", Priority::Medium, false) }).await.unwrap();
    assert_eq!(claim_one(&s, "q").await.unwrap().id, "i1");
    let stats = s.queue_stats().await.unwrap();
    let find = |e: &str, q: &str| stats.iter().find(|x| x.entity == e && x.queue == q).unwrap().clone();
    assert_eq!(stats.len(), 3, "{stats:?}");
    let q = find("acme", "q");
    assert_eq!((q.items.get(&ItemState::Pending), q.items.get(&ItemState::Claimed)), (Some(&2), Some(&1)));
    assert_eq!(q.items.len(), 2, "states without items are absent: {q:?}");
    assert_eq!(q.oldest_pending_created_ms, Some(500), "the claimed item is not pending");
    let empty = find("acme", "empty");
    assert!(empty.items.is_empty() && empty.oldest_pending_created_ms.is_none());
    assert_eq!(find("other", "q").resource, ResourceType::LocalContainer);

    let req = RegisterAgent { queues: vec!["q".into()], hostname: "h".into(), max_jobs: -1, version: "0".into() };
    s.register_agent("acme", "ag1", &req, 1).await.unwrap();
    s.register_agent("acme", "ag2", &req, 1).await.unwrap();
    s.agent_heartbeat("acme", "ag2", AgentStatus::Stopped, 9).await.unwrap();
    let mut agents = s.agent_stats().await.unwrap();
    agents.sort_by_key(|a| a.heartbeat_at_ms);
    assert_eq!(
        agents.iter().map(|a| (a.status, a.heartbeat_at_ms)).collect::<Vec<_>>(),
        [(AgentStatus::Polling, 1), (AgentStatus::Stopped, 9)]
    );
    assert_eq!(agents[0].queues, ["q"]);

    let found = s.items_by_id(&["i1".to_string(), "nope".to_string()]).await.unwrap();
    assert_eq!(found.iter().map(|i| (i.id.as_str(), i.state)).collect::<Vec<_>>(), [("i1", ItemState::Claimed)]);
}

/// The web UI's queue page: newest first, keyset pages by sequence, filters
/// by state, job and agent, one queue and one entity only.
async fn queue_pages(s: SqlStore) {
    use liftoff_store::ItemFilter;
    s.create_queue(&queue("q", false)).await.unwrap();
    s.create_queue(&queue("other", false)).await.unwrap();
    for i in 0..5 {
        let mut it = item(&format!("i{i}"), "q", Priority::Medium, false);
        if i == 3 {
            it.spec.job = "acme/p/other:v2".into();
        }
        s.enqueue(&it).await.unwrap();
    }
    s.enqueue(&item("elsewhere", "other", Priority::Medium, false)).await.unwrap();
    let claimed = claim_one(&s, "q").await.unwrap();
    assert_eq!(claimed.id, "i0");
    let ids = |p: &liftoff_store::ItemPage| p.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();

    let all = ItemFilter::default();
    let first = s.queue_page("acme", "q", &all, None, 2).await.unwrap();
    assert_eq!(ids(&first), ["i4", "i3"]);
    let second = s.queue_page("acme", "q", &all, first.next_before, 2).await.unwrap();
    assert_eq!(ids(&second), ["i2", "i1"]);
    let last = s.queue_page("acme", "q", &all, second.next_before, 2).await.unwrap();
    assert_eq!((ids(&last), last.next_before), (vec!["i0".to_string()], None));

    let f = |state: Option<&str>, job: Option<&str>, agent: Option<&str>| ItemFilter {
        state: state.map(Into::into),
        job: job.map(Into::into),
        agent: agent.map(Into::into),
        ..ItemFilter::default()
    };
    let page = |filter: ItemFilter| {
        let s = s.clone();
        async move { ids(&s.queue_page("acme", "q", &filter, None, 10).await.unwrap()) }
    };
    assert_eq!(page(f(Some("claimed"), None, None)).await, ["i0"]);
    assert_eq!(page(f(Some("pending"), None, None)).await, ["i4", "i3", "i2", "i1"]);
    assert_eq!(page(f(None, Some("acme/p/other:v2"), None)).await, ["i3"]);
    assert_eq!(page(f(None, None, Some("agent-1"))).await, ["i0"]);
    assert!(page(f(Some("pending"), None, Some("agent-1"))).await.is_empty());
    assert!(s.queue_page("nobody", "q", &all, None, 10).await.unwrap().items.is_empty(), "entity-scoped");
}

fn launched_by(name: &str) -> Option<Launcher> {
    Some(Launcher { name: name.into(), key_id: format!("key-{name}") })
}

/// Items record who launched them; the queue page and the item list filter
/// by launcher and (the page) by launch time, keyset pages still in order.
async fn launchers_and_launch_times(s: SqlStore) {
    use liftoff_store::ItemFilter;
    s.create_queue(&queue("q", false)).await.unwrap();
    s.create_queue(&queue("other", false)).await.unwrap();
    for i in 0..6 {
        let who = if i % 2 == 0 { "alice" } else { "<script>bob</script>" };
        let it = NewItem {
            now_ms: 1_000 * (i + 1),
            launched_by: launched_by(who),
            ..item(&format!("i{i}"), "q", Priority::Medium, false)
        };
        s.enqueue(&it).await.unwrap();
    }
    s.enqueue(&NewItem { launched_by: launched_by("alice"), ..item("o1", "other", Priority::Medium, false) })
        .await
        .unwrap();
    s.enqueue(&item("anon", "q", Priority::Medium, false)).await.unwrap();
    let shown = s.get_item("acme", "i0").await.unwrap().unwrap();
    assert_eq!((shown.launched_by.as_deref(), shown.launched_by_key.as_deref()), (Some("alice"), Some("key-alice")));
    assert_eq!(s.get_item("acme", "anon").await.unwrap().unwrap().launched_by, None);

    let ids = |p: &liftoff_store::ItemPage| p.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    let alice = ItemFilter { launcher: Some("alice".into()), ..ItemFilter::default() };
    let first = s.queue_page("acme", "q", &alice, None, 2).await.unwrap();
    assert_eq!(ids(&first), ["i4", "i2"]);
    let second = s.queue_page("acme", "q", &alice, first.next_before, 2).await.unwrap();
    assert_eq!((ids(&second), second.next_before), (vec!["i0".to_string()], None));
    let bob = ItemFilter { launcher: Some("<script>bob</script>".into()), ..ItemFilter::default() };
    assert_eq!(ids(&s.queue_page("acme", "q", &bob, None, 10).await.unwrap()), ["i5", "i3", "i1"]);

    // launched in [2000, 5000): i1..i3, paged two at a time, with a launcher too
    let window = ItemFilter { since_ms: Some(2_000), until_ms: Some(5_000), ..ItemFilter::default() };
    let first = s.queue_page("acme", "q", &window, None, 2).await.unwrap();
    assert_eq!(ids(&first), ["i3", "i2"]);
    let second = s.queue_page("acme", "q", &window, first.next_before, 2).await.unwrap();
    assert_eq!((ids(&second), second.next_before), (vec!["i1".to_string()], None));
    let both = ItemFilter { launcher: Some("alice".into()), ..window };
    assert_eq!(ids(&s.queue_page("acme", "q", &both, None, 10).await.unwrap()), ["i2"]);

    let listed = |queue: Option<&'static str>, launcher: Option<&'static str>| {
        let s = s.clone();
        async move {
            s.list_items("acme", queue, launcher, 100).await.unwrap().into_iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(None, Some("alice")).await, ["o1", "i4", "i2", "i0"]);
    assert_eq!(listed(Some("q"), Some("alice")).await, ["i4", "i2", "i0"]);
    assert_eq!(listed(Some("other"), None).await, ["o1"]);
    assert!(listed(None, Some("nobody")).await.is_empty());
    assert!(s.list_items("other-entity", None, Some("alice"), 10).await.unwrap().is_empty(), "entity-scoped");
}

/// A pending item's priority changes its place in a prioritising queue's
/// claim order, is recorded in its history, and is refused once claimed.
async fn priority_changes_while_pending(s: SqlStore) {
    s.create_queue(&queue("prio", true)).await.unwrap();
    s.create_queue(&queue("fifo", false)).await.unwrap();
    for id in ["a", "b", "c"] {
        s.enqueue(&item(id, "prio", Priority::Medium, true)).await.unwrap();
        s.enqueue(&item(&format!("f{id}"), "fifo", Priority::Medium, false)).await.unwrap();
    }
    let raised = s.set_priority("acme", "run-c", Priority::Critical, 50).await.unwrap();
    assert_eq!((raised.id.as_str(), raised.priority), ("c", Priority::Critical), "found by run id too");
    s.set_priority("acme", "a", Priority::Low, 51).await.unwrap();
    assert_eq!(s.get_item("acme", "a").await.unwrap().unwrap().priority, Priority::Low);
    let mut order = vec![];
    while let Some(i) = claim_one(&s, "prio").await {
        order.push(i.id);
    }
    assert_eq!(order, ["c", "b", "a"]);
    // a FIFO queue records the priority but keeps its order
    s.set_priority("acme", "fc", Priority::Critical, 52).await.unwrap();
    let mut fifo = vec![];
    while let Some(i) = claim_one(&s, "fifo").await {
        fifo.push(i.id);
    }
    assert_eq!(fifo, ["fa", "fb", "fc"]);

    let history = s.item_history("acme", "c", 0, 10).await.unwrap();
    let change = &history[1];
    assert_eq!(
        (change.event.as_str(), change.from, change.to),
        ("priority", Some(ItemState::Pending), ItemState::Pending)
    );
    assert_eq!((change.cause, change.at_ms), (TransitionCause::User, 50));
    assert_eq!(change.reason.as_deref(), Some("priority medium → critical"));
    assert_eq!(history[2].event, "claim");

    let before = s.get_item("acme", "c").await.unwrap().unwrap();
    let refused = s.set_priority("acme", "c", Priority::Low, 60).await;
    assert!(
        matches!(&refused, Err(StoreError::NotPending { run_id, state: ItemState::Claimed }) if run_id == "run-c"),
        "{refused:?}"
    );
    assert_eq!(s.get_item("acme", "c").await.unwrap().unwrap(), before, "nothing changed");
    assert_eq!(s.item_history("acme", "c", 0, 10).await.unwrap().len(), history.len(), "nothing recorded");
    assert!(matches!(s.set_priority("other", "b", Priority::Low, 60).await, Err(StoreError::NotFound(_))));
    // the same priority again changes nothing worth a history entry
    s.enqueue(&item("d", "prio", Priority::High, true)).await.unwrap();
    s.set_priority("acme", "d", Priority::High, 70).await.unwrap();
    assert_eq!(s.item_history("acme", "d", 0, 10).await.unwrap().len(), 1);
}

/// Saved filters: unique per queue, listed by name, deleted, entity-scoped.
async fn saved_filters(s: SqlStore) {
    use liftoff_store::SavedFilter;
    let f = |queue: &str, name: &str, query: &str| SavedFilter {
        entity: "acme".into(),
        queue: queue.into(),
        name: name.into(),
        query: query.into(),
        created_at_ms: 1,
    };
    s.save_filter(&f("q", "mine", "launched_by=alice")).await.unwrap();
    s.save_filter(&f("q", "<b>failed</b>", "state=failed&since=24h")).await.unwrap();
    s.save_filter(&f("other", "mine", "state=pending")).await.unwrap();
    let dup = s.save_filter(&f("q", "mine", "state=running")).await;
    assert!(matches!(&dup, Err(StoreError::Conflict(m)) if m.contains("'mine'")), "{dup:?}");
    let listed = s.list_saved_filters("acme", "q").await.unwrap();
    assert_eq!(listed, [f("q", "<b>failed</b>", "state=failed&since=24h"), f("q", "mine", "launched_by=alice")]);
    assert!(s.list_saved_filters("other-entity", "q").await.unwrap().is_empty());
    assert!(matches!(s.delete_saved_filter("other-entity", "q", "mine").await, Err(StoreError::NotFound(_))));
    s.delete_saved_filter("acme", "q", "mine").await.unwrap();
    assert!(matches!(s.delete_saved_filter("acme", "q", "mine").await, Err(StoreError::NotFound(_))));
    assert_eq!(s.list_saved_filters("acme", "q").await.unwrap().len(), 1);
    assert_eq!(s.list_saved_filters("acme", "other").await.unwrap().len(), 1, "the other queue's is kept");
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { let (s, _dir) = super::sqlite().await; super::$case(s).await }
        )* }
        mod on_postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { if let Some((s, _)) = super::postgres().await { super::$case(s).await } }
        )* }
    };
}

contract!(
    entities_keys_and_queues,
    job_versions_and_aliases,
    claims_follow_priority_then_fifo,
    stale_fences_are_refused_and_change_nothing,
    lease_expiry_requeues_until_the_limit,
    stop_requests,
    log_chunks_in_order_idempotent,
    concurrent_claims_take_each_item_once,
    an_outcome_carries_the_last_chunk,
    agents,
    empty_queues_fill_again,
    lost_holders_change_nothing,
    lease_deadlines_use_the_database_clock,
    one_archiver_per_log,
    small_logs_stay_in_the_database,
    item_ids_and_run_ids_never_collide,
    builds_are_claimed_once,
    build_records,
    history_records_every_change_with_its_cause,
    stale_writes_record_nothing,
    metrics_stats,
    queue_pages,
    launchers_and_launch_times,
    priority_changes_while_pending,
    saved_filters,
);

/// PostgreSQL only: while the items grow, the store refreshes the tables'
/// statistics at each doubling of its launches (1,000, 2,000, ...), so that
/// the cached plans of claims are not those of a near-empty table
/// (`sql_store/growth_analyze.rs`). `last_analyze` is set by an explicit
/// `ANALYZE` alone, never by autovacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statistics_are_refreshed_as_the_items_grow() {
    let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_test").await else { return };
    let s = SqlStore::connect(&url, 3).await.unwrap();
    s.create_queue(&queue("q", false)).await.unwrap();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let analysed = || async {
        let row: (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE last_analyze IS NOT NULL), COUNT(*) FROM pg_stat_user_tables \
             WHERE relname IN ('items', 'item_transitions', 'item_names', 'log_chunks')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(row.1, 4, "the four tables exist");
        row.0
    };
    for i in 0..999 {
        s.enqueue(&item(&format!("i{i}"), "q", Priority::Medium, false)).await.unwrap();
    }
    assert_eq!(analysed().await, 0, "not before the 1,000th launch");
    s.enqueue(&item("i999", "q", Priority::Medium, false)).await.unwrap();
    let start = std::time::Instant::now();
    while analysed().await < 4 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the 1,000th launch analysed the item tables");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (estimate,): (f32,) =
        sqlx::query_as("SELECT reltuples FROM pg_class WHERE relname = 'items'").fetch_one(&pool).await.unwrap();
    assert!(estimate >= 999.0, "the planner now counts the launched items: {estimate}");
    // the next one comes at 2,000 launches, not at every launch after 1,000
    let (at,): (String,) =
        sqlx::query_as("SELECT CAST(last_analyze AS TEXT) FROM pg_stat_user_tables WHERE relname = 'items'")
            .fetch_one(&pool)
            .await
            .unwrap();
    for i in 1000..1010 {
        s.enqueue(&item(&format!("i{i}"), "q", Priority::Medium, false)).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (again,): (String,) =
        sqlx::query_as("SELECT CAST(last_analyze AS TEXT) FROM pg_stat_user_tables WHERE relname = 'items'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(at, again, "no ANALYZE between 1,000 and 2,000 launches");
}

/// PostgreSQL only: connections the database dropped while they sat idle in
/// the store's pool (a restart, an idle timeout) are replaced, not handed to
/// a request: the store pings a connection idle for a second or more before
/// using it (`PING_IF_IDLE` in `sql_store/mod.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_dropped_while_idle_fail_no_request() {
    let Some(url) = liftoff_testkit::fresh_postgres_database("liftoff_test").await else { return };
    let s = Arc::new(SqlStore::connect(&url, 3).await.unwrap());
    s.create_queue(&queue("q", false)).await.unwrap();
    // several connections at once, so that the pool holds more than one
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get_queue("acme", "q").await.unwrap().expect("the queue") })
        })
        .collect();
    for r in reads {
        r.await.unwrap();
    }
    let admin = sqlx::AnyPool::connect(&url).await.unwrap();
    let (dropped,): (i64,) = sqlx::query_as(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(dropped >= 1, "the store's connections were dropped");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    for i in 0..20 {
        s.get_queue("acme", "q").await.unwrap_or_else(|e| panic!("read {i} after the drop: {e}"));
        s.enqueue(&item(&format!("after-{i}"), "q", Priority::Medium, false))
            .await
            .unwrap_or_else(|e| panic!("launch {i} after the drop: {e}"));
    }
}
