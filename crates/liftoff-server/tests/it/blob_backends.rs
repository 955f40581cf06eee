//! The blob store on real cloud storage emulators (moto for S3, azurite for
//! Azure Blob): code archives go up and come back, and an ended run's log is
//! archived there and read back. GCS has no usable emulator here (see
//! `.ci/emulators.sh`).

use liftoff_client::Client;
use liftoff_core::api::*;
use liftoff_core::job::{CodeSource, JobSourceSpec};
use liftoff_core::{ItemEvent, ResourceType};
use liftoff_server::{ServerConfig, start};
use liftoff_testkit::required_env;
use std::time::Duration;

async fn round_trip(blob_store: String, options: Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.lease_ttl = Duration::from_secs(30);
    cfg.blob_store = Some(blob_store.clone());
    cfg.blob_options = options;
    cfg.log_keep_max_bytes = 0; // the log goes to the blob store, however short
    let server = start(cfg).await.unwrap();
    let c = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();

    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("main.py"), "print('hi')\n").unwrap();
    let gz = liftoff_archive::pack_dir(code.path()).unwrap();
    let digest = liftoff_archive::sha256_digest(&gz);
    c.upload_blob(&digest, gz.clone()).await.unwrap();
    assert_eq!(c.download_blob(&digest).await.unwrap().as_ref(), gz.as_slice(), "{blob_store}: archive round trip");
    assert!(!dir.path().join("blobs").exists(), "{blob_store}: nothing went to the local data dir");

    c.create_queue(&CreateQueue {
        name: "q".into(),
        resource: ResourceType::LocalProcess,
        config: empty_object(),
        template_variables: vec![],
        prioritization: false,
    })
    .await
    .unwrap();
    let source = JobSourceSpec {
        code: Some(CodeSource {
            digest,
            entrypoint: vec!["python3".into(), "main.py".into()],
            build_context: None,
            dockerfile: None,
            base_image: None,
        }),
        ..Default::default()
    };
    c.create_job(&CreateJob { project: "default".into(), name: "j".into(), source, aliases: vec![], runtime: None })
        .await
        .unwrap();
    let launched = c.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await.unwrap();
    let req = RegisterAgent { queues: vec!["q".into()], hostname: "t".into(), max_jobs: 1, version: "t".into() };
    let agent = c.register_agent(&req).await.unwrap().id;
    let claim = c.claim(&agent, &["q".into()], Duration::ZERO).await.unwrap().unwrap();
    c.report(&claim.item.id, claim.fence, ItemEvent::Start).await.unwrap();
    let chunk = AppendLog { fence: claim.fence, seq: 0, stream: LogStream::Stdout, data: "hi\n".into() };
    c.append_log(&claim.item.id, &chunk).await.unwrap();
    c.report(&claim.item.id, claim.fence, ItemEvent::Finish).await.unwrap();
    let mut item = c.get_item(&launched.item_id).await.unwrap();
    for _ in 0..100 {
        if item.log_archived {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        item = c.get_item(&launched.item_id).await.unwrap();
    }
    assert!(item.log_archived, "{blob_store}: log archived");
    let page = c.read_logs(&launched.item_id, 0).await.unwrap();
    assert_eq!(page.chunks.iter().map(|c| c.data.as_str()).collect::<String>(), "hi\n", "{blob_store}: log read back");
    assert!(page.complete);
    server.shutdown().await;
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blob_store() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let options = opts(&[
        ("endpoint", &endpoint),
        ("allow_http", "true"),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
        ("region", "us-east-1"),
    ]);
    round_trip(format!("s3://liftoff-test/{}", unique()), options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_store() {
    if required_env("LIFTOFF_TEST_AZURITE").is_none() {
        return;
    }
    round_trip(format!("az://liftoff-test/{}", unique()), opts(&[("use_emulator", "true")])).await;
}
