//! Secrets at rest, on SQLite and PostgreSQL: a database from before
//! encryption is sealed on the first start with `--secrets-key-file`, after
//! which no stored row holds a git credential or a server secret in the
//! clear; agents still get the credential in their claims; a wrong key or
//! none fails the start naming the key file and the flag; and a new key
//! with the old one given re-wraps everything, after which the old key is
//! no longer needed.

use base64::Engine;
use liftoff_client::Client;
use liftoff_core::JobSourceSpec;
use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest, RegisterAgent};
use liftoff_core::{JobSource, ResourceType};
use liftoff_server::{RunningServer, ServerConfig, StartError, start};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKEN: &str = "ghp_S3cretT0kenAtRest";

/// Every stored text a secret could be in: job sources, launch specs, server secrets.
async fn raw_rows(db: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db).await.unwrap();
    let mut out = Vec::new();
    for q in ["SELECT source AS v FROM jobs", "SELECT spec AS v FROM items", "SELECT value AS v FROM server_secrets"] {
        for r in sqlx::query(q).fetch_all(&pool).await.unwrap() {
            out.push(sqlx::Row::get::<String, _>(&r, "v"));
        }
    }
    pool.close().await;
    out
}

fn key_file(dir: &Path, name: &str) -> PathBuf {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, base64::engine::general_purpose::STANDARD.encode(key) + "\n").unwrap();
    p
}

async fn try_serve(data: &Path, db: &str, key: Option<&Path>, old: &[&Path]) -> Result<RunningServer, StartError> {
    let mut cfg = ServerConfig::new(data.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.db_url = Some(db.to_string());
    cfg.secrets_key_file = key.map(Path::to_path_buf);
    cfg.old_secrets_key_files = old.iter().map(|p| p.to_path_buf()).collect();
    start(cfg).await
}

async fn serve(data: &Path, db: &str, key: Option<&Path>, old: &[&Path]) -> RunningServer {
    try_serve(data, db, key, old).await.unwrap_or_else(|e| panic!("server starts: {e}"))
}

fn failed(r: Result<RunningServer, StartError>) -> String {
    match r {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

async fn git_job(c: &Client, name: &str) {
    let git = liftoff_core::job::GitSource {
        remote: format!("https://bot:{TOKEN}@git.example.com/acme/{name}.git"),
        commit: "main".into(),
        entrypoint: vec!["sh".into(), "run.sh".into()],
        diff_patch: None,
        build_context: None,
        dockerfile: None,
        base_image: None,
    };
    let req = CreateJob {
        project: "default".into(),
        name: name.into(),
        source: JobSourceSpec { git: Some(git), ..Default::default() },
        aliases: vec![],
        runtime: None,
    };
    c.create_job(&req).await.unwrap();
    let launch: LaunchRequest = serde_json::from_value(serde_json::json!({"job": name})).unwrap();
    c.launch("q", &launch).await.unwrap();
}

/// Claims the next item and returns its git remote as the agent gets it.
async fn claimed_remote(c: &Client) -> String {
    let req = RegisterAgent { queues: vec!["q".into()], hostname: "t".into(), max_jobs: -1, version: "t".into() };
    let agent = c.register_agent(&req).await.unwrap().id;
    let claim = c.claim(&agent, &["q".into()], Duration::ZERO).await.unwrap().expect("an item");
    let JobSource::Git(g) = claim.item.spec.source else { panic!("a git source") };
    g.remote
}

/// The bytes of the SQLite database and its WAL, when `db` is one.
fn sqlite_files(db: &str) -> Vec<u8> {
    let Some(path) = db.strip_prefix("sqlite://") else { return Vec::new() };
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn secrets_sealed_rotated_and_refused(db: String, dir: &Path) {
    let data = dir.join("data");
    let (key_a, key_b, wrong) = (key_file(dir, "key-a"), key_file(dir, "key-b"), key_file(dir, "wrong"));

    // 1. before encryption: plain, as every database so far
    let server = serve(&data, &db, None, &[]).await;
    let admin = server.admin_key.clone().unwrap();
    let c = Client::new(&server.base_url(), &admin, "default").unwrap();
    let q = CreateQueue {
        name: "q".into(),
        resource: ResourceType::LocalProcess,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: false,
    };
    c.create_queue(&q).await.unwrap();
    git_job(&c, "one").await;
    server.shutdown().await;
    let before = raw_rows(&db).await;
    if db.starts_with("sqlite://") {
        assert!(contains(&sqlite_files(&db), TOKEN), "the file held the credential before");
    }
    assert!(before.iter().any(|r| r.contains(TOKEN)), "the credential was stored plain before");
    let plain_secrets: Vec<String> = before.iter().filter(|r| r.starts_with("lft_")).cloned().collect();
    assert_eq!(plain_secrets.len(), 2, "run-keys and ui-sessions, plain: {before:?}");

    // 2. the first start with a key seals what was plain
    let server = serve(&data, &db, Some(&key_a), &[]).await;
    let c = Client::new(&server.base_url(), &admin, "default").unwrap();
    git_job(&c, "two").await;
    if db.starts_with("sqlite://") {
        let bytes = sqlite_files(&db);
        assert!(!contains(&bytes, TOKEN), "the database file or its WAL still holds the credential");
        for s in &plain_secrets {
            assert!(!contains(&bytes, s), "the database file or its WAL still holds a server secret");
        }
    }
    let rows = raw_rows(&db).await;
    for r in &rows {
        assert!(!r.contains(TOKEN), "a stored row holds the credential: {r}");
        for s in &plain_secrets {
            assert!(!r.contains(s.as_str()), "a stored row holds a server secret in the clear");
        }
    }
    assert!(rows.iter().filter(|r| r.contains("lfenc1.")).count() >= 6, "2 jobs, 2 items, 3 server secrets: {rows:?}");
    // the agent gets the credential; views show it redacted, as before
    assert_eq!(claimed_remote(&c).await, format!("https://bot:{TOKEN}@git.example.com/acme/one.git"));
    let job = c.get_job("default", "two", "latest").await.unwrap();
    let JobSource::Git(g) = job.source else { panic!("a git source") };
    assert_eq!(g.remote, "https://bot:***@git.example.com/acme/two.git");
    server.shutdown().await;

    // 3. no key, or the wrong one: refused, naming the flag and the file
    let e = failed(try_serve(&data, &db, None, &[]).await);
    assert!(e.contains("--secrets-key-file") && e.contains("encrypted"), "{e}");
    let e = failed(try_serve(&data, &db, Some(&wrong), &[]).await);
    assert!(e.contains(&wrong.display().to_string()) && e.contains("--old-secrets-key-file"), "{e}");
    assert!(!e.contains(TOKEN));

    // 4. rotation: the new key with the old one re-wraps everything...
    let server = serve(&data, &db, Some(&key_b), &[&key_a]).await;
    server.shutdown().await;
    let rows = raw_rows(&db).await;
    let a_id = liftoff_server::SecretsKeys::read(&key_a, &[]).unwrap().current_id().to_string();
    let b_id = liftoff_server::SecretsKeys::read(&key_b, &[]).unwrap().current_id().to_string();
    assert!(rows.iter().all(|r| !r.contains(&format!("lfenc1.{a_id}."))), "nothing left under the old key");
    assert!(rows.iter().filter(|r| r.contains(&format!("lfenc1.{b_id}."))).count() >= 6);
    // ... and the old key is no longer needed
    std::fs::remove_file(&key_a).unwrap();
    let server = serve(&data, &db, Some(&key_b), &[]).await;
    let c = Client::new(&server.base_url(), &admin, "default").unwrap();
    assert_eq!(claimed_remote(&c).await, format!("https://bot:{TOKEN}@git.example.com/acme/two.git"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_secrets_sealed_rotated_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("liftoff.db").display());
    secrets_sealed_rotated_and_refused(db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_secrets_sealed_rotated_and_refused() {
    let Some(db) = liftoff_testkit::fresh_postgres_database("liftoff_secrets").await else { return };
    let dir = tempfile::tempdir().unwrap();
    secrets_sealed_rotated_and_refused(db, dir.path()).await;
}
