//! A server told to stop (SIGTERM in `liftoff server`) ends its waiting
//! long polls at once instead of after their wait.

use liftoff_client::Client;
use liftoff_core::ResourceType;
use liftoff_core::api::{CreateQueue, RegisterAgent};
use liftoff_server::{ServerConfig, start};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_ends_waiting_claims_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    let server = start(cfg).await.unwrap();
    let c = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();
    c.create_queue(&CreateQueue {
        name: "q".into(),
        resource: ResourceType::LocalProcess,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: false,
    })
    .await
    .unwrap();
    let reg = RegisterAgent { queues: vec!["q".into()], hostname: "h".into(), max_jobs: 1, version: "t".into() };
    let agent = c.register_agent(&reg).await.unwrap().id;
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (c, agent) = (c.clone(), agent.clone());
            tokio::spawn(async move { c.claim(&agent, &["q".into()], Duration::from_secs(25)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // the claims are waiting
    let asked = Instant::now();
    server.shutdown().await;
    for w in waiters {
        assert!(w.await.unwrap().unwrap().is_none(), "a stopping server hands out nothing");
    }
    // the claims waited 25 s at most; well under that means they were ended, not timed out
    assert!(asked.elapsed() < Duration::from_secs(10), "shutdown took {:?}", asked.elapsed());
}
