//! Key roles over real HTTP: what admin, member and agent keys may do, and
//! revocation, which takes effect on every server within a second.

use crate::support::image_job;
use liftoff_client::{Client, ClientError};
use liftoff_core::api::*;
use liftoff_core::{ItemEvent, ItemState, ResourceType};
use liftoff_server::{RunningServer, ServerConfig, start};
use std::time::{Duration, Instant};

async fn serve(dir: &std::path::Path, db_url: Option<String>) -> RunningServer {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.db_url = db_url;
    start(cfg).await.unwrap()
}

fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u16 {
    match r {
        Err(ClientError::Api { status, .. }) => status,
        Ok(_) => 200,
        Err(e) => panic!("expected an answer, got {e}"),
    }
}

async fn setup(admin: &Client) {
    admin
        .create_queue(&CreateQueue {
            name: "q".into(),
            resource: ResourceType::LocalContainer,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await
        .unwrap();
    image_job(admin, "j").await;
}

fn register() -> RegisterAgent {
    RegisterAgent { queues: vec!["q".into()], hostname: "h".into(), max_jobs: 1, version: "t".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_its_part_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None).await;
    let url = server.base_url();
    let admin = Client::new(&url, server.admin_key.as_deref().unwrap(), "default").unwrap();
    setup(&admin).await;
    let member_key = admin.create_key("member").await.unwrap();
    let agent_key = admin.create_key("agent").await.unwrap();
    assert_eq!((member_key.key.role.as_str(), agent_key.key.role.as_str()), ("member", "agent"));
    let member = Client::new(&url, &member_key.secret, "default").unwrap();
    let agent = Client::new(&url, &agent_key.secret, "default").unwrap();
    assert_eq!(agent.whoami().await.unwrap().role, "agent");

    // a member launches, reads and stops, and may not set up or act as an agent
    let id = member.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await.unwrap().item_id;
    assert_eq!(status(member.list_items(None, 10).await), 200);
    assert_eq!(status(member.list_queues().await), 200);
    assert_eq!(status(member.list_agents().await), 200);
    assert_eq!(status(member.register_agent(&register()).await), 403);
    let q = CreateQueue {
        name: "q2".into(),
        resource: ResourceType::LocalProcess,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: false,
    };
    assert_eq!(status(member.create_queue(&q).await), 403);
    assert_eq!(status(member.create_key("admin").await), 403, "a member cannot mint itself an admin key");
    assert_eq!(status(member.list_keys().await), 403);

    // an agent registers, claims, renews, logs and reports; it may not launch, list or set up
    let agent_id = agent.register_agent(&register()).await.unwrap().id;
    let claim = agent.claim(&agent_id, &["q".into()], Duration::from_secs(2)).await.unwrap().unwrap();
    assert_eq!(claim.item.id, id);
    agent.renew_lease(&id, claim.fence).await.unwrap();
    agent.report(&id, claim.fence, ItemEvent::Start).await.unwrap();
    let chunk = AppendLog { fence: claim.fence, seq: 0, stream: LogStream::Stdout, data: "hi\n".into() };
    agent.append_log(&id, &chunk).await.unwrap();
    agent.add_warning(&id, Some(claim.fence), liftoff_core::Stage::Run, "w").await.unwrap();
    assert_eq!(agent.get_item(&id).await.unwrap().state, ItemState::Running, "it reads the item it runs");
    assert_eq!(status(agent.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await), 403);
    assert_eq!(status(agent.list_items(None, 10).await), 403);
    assert_eq!(status(agent.list_jobs().await), 403);
    assert_eq!(status(agent.read_logs(&id, 0).await), 403);
    assert_eq!(status(agent.stop_item(&id).await), 403);
    assert_eq!(status(agent.create_key("agent").await), 403);
    assert_eq!(status(agent.stop_agent_polling(&agent_id).await), 403);
    agent.report(&id, claim.fence, ItemEvent::Finish).await.unwrap();
    assert_eq!(member.read_logs(&id, 0).await.unwrap().chunks[0].data, "hi\n");

    // keys are listed without secrets; a key cannot revoke itself (so the
    // last admin key, which only itself could revoke, stays)
    let keys = admin.list_keys().await.unwrap();
    let mut roles: Vec<&str> = keys.iter().map(|k| k.role.as_str()).collect();
    roles.sort();
    assert_eq!(roles, ["admin", "agent", "member"]);
    let admin_id = keys.iter().find(|k| k.role == "admin").unwrap().id.clone();
    assert!(!serde_json::to_string(&keys).unwrap().contains(&member_key.secret));
    match admin.revoke_key(&admin_id).await {
        Err(ClientError::Api { status: 409, body }) => {
            assert_eq!((body.code.as_str(), body.field.as_deref()), ("self_revocation", Some("id")), "{}", body.message)
        }
        other => panic!("expected the last admin key to be kept, got {other:?}"),
    }
    assert_eq!(status(admin.create_key("root").await), 400);
    // another admin key may revoke it; then the new one is the last and stays
    let second = admin.create_key("admin").await.unwrap();
    let second_client = Client::new(&url, &second.secret, "default").unwrap();
    second_client.revoke_key(&admin_id).await.unwrap();
    assert_eq!(status(admin.list_keys().await), 401, "the revoked key stops working");
    assert_eq!(status(second_client.revoke_key(&second.key.id).await), 409);
    server.shutdown().await;
}

/// Two servers on one PostgreSQL: a key revoked through one stops working
/// on the other within a second, though the other had just used it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_on_every_server_within_a_second() {
    let Some(db) = liftoff_testkit::fresh_postgres_database("liftoff_keys").await else { return };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = serve(d1.path(), Some(db.clone())).await;
    let two = serve(d2.path(), Some(db)).await;
    let admin = Client::new(&one.base_url(), one.admin_key.as_deref().unwrap(), "default").unwrap();
    let member = admin.create_key("member").await.unwrap();
    let on_two = Client::new(&two.base_url(), &member.secret, "default").unwrap();
    assert_eq!(status(on_two.list_queues().await), 200, "the other server knows (and caches) the key");
    admin.revoke_key(&member.key.id).await.unwrap();
    let revoked = Instant::now();
    loop {
        // the time the request was sent, not answered: a slow answer is no late acceptance
        let sent = revoked.elapsed();
        match status(on_two.list_queues().await) {
            401 => break,
            200 => assert!(sent < Duration::from_secs(1), "still accepted {sent:?} after the revocation"),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    one.shutdown().await;
    two.shutdown().await;
}
