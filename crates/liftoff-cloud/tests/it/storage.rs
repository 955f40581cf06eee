//! Build-context uploads read back equal on S3 (moto), Azure Blob (Azurite)
//! and GCS (the fake in liftoff-testkit's fakes/gcp.rs), each through the environment's
//! own credentials; `verify` on a missing bucket; AWS identity through STS.

use crate::support;

use bytes::Bytes;
use liftoff_cloud::azure::AzureEnvBuilder;
use liftoff_cloud::{AwsEnv, AzureEnv, CloudEnv, ContextStore, GcpEnv};
use liftoff_core::launch_config::BuildContextStore;
use support::gcp_fake::GcpFake;
use support::{required_env, sample_tree, unique};

async fn round_trip(store: &ContextStore) {
    store.verify().await.expect("verify");
    store.put("single/hello.txt", Bytes::from_static(b"hello\n")).await.unwrap();
    assert_eq!(store.get("single/hello.txt").await.unwrap(), Bytes::from_static(b"hello\n"));

    let dir = tempfile::tempdir().unwrap();
    let files = sample_tree(dir.path());
    let n = store.put_file(&dir.path().join("pkg/sub/data.bin"), "file/data.bin").await.unwrap();
    assert_eq!(n, 70_000);
    assert_eq!(store.get("file/data.bin").await.unwrap(), files[2].1);

    assert_eq!(store.put_dir(dir.path(), "tree").await.unwrap(), files.len());
    for (rel, bytes) in &files {
        assert_eq!(store.get(&format!("tree/{rel}")).await.unwrap(), bytes.as_slice(), "{rel} read back");
    }
}

async fn moto_env(endpoint: &str, region: &str) -> AwsEnv {
    AwsEnv::builder(region).endpoint(endpoint).static_credentials("testing", "testing").load().await
}

#[tokio::test]
async fn s3_upload_and_read_back() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let env = CloudEnv::Aws(moto_env(&endpoint, "us-east-1").await);
    let uri = BuildContextStore::parse(&format!("s3://liftoff-test/{}", unique("ctx"))).unwrap();
    let store = ContextStore::open(&uri, &env).await.unwrap();
    round_trip(&store).await;
    assert_eq!(store.bucket_region().await.as_deref(), Some("us-east-1"));
}

#[tokio::test]
async fn s3_missing_bucket_does_not_exist() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let env = CloudEnv::Aws(moto_env(&endpoint, "us-east-1").await);
    let uri = BuildContextStore::parse("s3://liftoff-no-such-bucket/ctx").unwrap();
    let e = ContextStore::open(&uri, &env).await.unwrap().verify().await.unwrap_err().to_string();
    assert!(e.contains("s3://liftoff-no-such-bucket/ctx") && e.contains("does not exist"), "{e}");
}

#[tokio::test]
async fn aws_identity_through_sts() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let env = CloudEnv::Aws(moto_env(&endpoint, "us-east-1").await);
    let id = env.identity().await.unwrap().unwrap();
    assert!(id.who.starts_with("arn:aws:"), "{id:?}");
    assert_eq!(id.account.as_deref(), Some("123456789012"));
    assert_eq!(id.source, "Static");
}

#[tokio::test]
async fn azure_blob_upload_and_read_back() {
    if required_env("LIFTOFF_TEST_AZURITE").is_none() {
        return;
    }
    // Azurite takes its well-known account key, not Entra tokens over plain
    // http, so this covers the store and not the token bridge
    let env = CloudEnv::Azure(AzureEnv::builder().azurite().build().unwrap());
    let uri = format!("https://devstoreaccount1.blob.core.windows.net/liftoff-test/{}", unique("ctx"));
    let store = ContextStore::open(&BuildContextStore::parse(&uri).unwrap(), &env).await.unwrap();
    round_trip(&store).await;
}

#[tokio::test]
async fn azure_missing_container_does_not_exist() {
    if required_env("LIFTOFF_TEST_AZURITE").is_none() {
        return;
    }
    let env = CloudEnv::Azure(AzureEnvBuilder::default().azurite().build().unwrap());
    let uri = BuildContextStore::parse("https://devstoreaccount1.blob.core.windows.net/no-such-container").unwrap();
    let e = ContextStore::open(&uri, &env).await.unwrap().verify().await.unwrap_err().to_string();
    assert!(e.contains("container 'no-such-container' does not exist"), "{e}");
}

#[tokio::test]
async fn gcs_upload_and_read_back_with_the_token_the_key_earned() {
    let fake = GcpFake::start(&["liftoff-test"]).await;
    let env = GcpEnv::builder()
        .key_file(&fake.key_file)
        .region(Some("us-central1"))
        .storage_endpoint(&fake.base_url)
        .load()
        .await
        .unwrap();
    // the project comes from the key, and doctor can say so
    assert_eq!(env.project(), "my-project");
    assert!(env.project_source().contains("project_id"), "{}", env.project_source());
    let id = env.identity().await.unwrap();
    assert_eq!(id.who, fake.client_email);
    assert!(id.source.starts_with("GOOGLE_APPLICATION_CREDENTIALS ("), "{}", id.source);

    let env = CloudEnv::Gcp(env);
    let uri = BuildContextStore::parse(&format!("gs://liftoff-test/{}", unique("ctx"))).unwrap();
    let store = ContextStore::open(&uri, &env).await.unwrap();
    round_trip(&store).await;

    // every store request carried a token the endpoint issued, and none was refused
    let issued = fake.state.issued.lock().unwrap().clone();
    let authorized = fake.state.authorized.lock().unwrap().clone();
    assert!(!issued.is_empty() && !authorized.is_empty());
    assert!(authorized.iter().all(|t| issued.contains(t)));
    assert!(fake.state.refused.lock().unwrap().is_empty(), "{:?}", fake.state.refused);

    let missing = BuildContextStore::parse("gs://no-such-bucket/ctx").unwrap();
    let e = ContextStore::open(&missing, &env).await.unwrap().verify().await.unwrap_err().to_string();
    assert!(e.contains("bucket 'no-such-bucket' does not exist"), "{e}");
}

#[tokio::test]
async fn gcp_key_the_endpoint_does_not_trust_is_refused_without_leaking_it() {
    let fake = GcpFake::start(&["liftoff-test"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = support::gcp_fake::rsa_key(dir.path(), "other");
    let key = support::gcp_fake::key_file(dir.path(), "other", &fake.client_email, &pem, &fake.token_uri, None);
    // no project in the key and none configured: a config error that says where to set it
    let e = GcpEnv::builder().key_file(&key).region(Some("us-central1")).load().await.err().unwrap().to_string();
    assert!(e.contains("no gcp project") && e.contains("environment.project"), "{e}");

    let env = GcpEnv::builder().key_file(&key).region(Some("us-central1")).project(Some("p")).load().await.unwrap();
    let e = env.access_token().await.unwrap_err().to_string();
    assert!(e.starts_with("gcp credentials from GOOGLE_APPLICATION_CREDENTIALS ("), "{e}");
    // the endpoint's own reason, and what to check
    assert!(e.contains("refused the request (400 Bad Request): invalid_grant: Invalid JWT Signature."), "{e}");
    assert!(e.contains("token_uri is reachable"), "{e}");
    assert_eq!(*fake.state.rejected.lock().unwrap(), ["Invalid JWT Signature."], "one request, not retried");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!e.contains(&body[..40]), "{e}");
    assert!(fake.state.issued.lock().unwrap().is_empty());
}

#[tokio::test]
async fn reading_a_missing_key_names_the_key() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let env = CloudEnv::Aws(moto_env(&endpoint, "us-east-1").await);
    let uri = BuildContextStore::parse(&format!("s3://liftoff-test/{}", unique("ctx"))).unwrap();
    let e = ContextStore::open(&uri, &env).await.unwrap().get("nope.tar").await.unwrap_err().to_string();
    assert!(e.ends_with("reading nope.tar: no such object"), "{e}");
}

#[tokio::test]
async fn gcp_user_credentials_refresh_at_their_token_uri() {
    use support::gcp_fake::{USER_REFRESH_TOKEN, user_file};
    let fake = GcpFake::start(&["liftoff-test"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = user_file(dir.path(), USER_REFRESH_TOKEN, &fake.token_uri);
    let env = GcpEnv::builder()
        .key_file(&file)
        .region(Some("us-central1"))
        .storage_endpoint(&fake.base_url)
        .load()
        .await
        .unwrap();
    assert_eq!((env.project(), env.project_source()), ("quota-project", "the credentials' quota_project_id"));
    let store = ContextStore::open(&BuildContextStore::parse("gs://liftoff-test/user").unwrap(), &CloudEnv::Gcp(env))
        .await
        .unwrap();
    store.put("a.txt", Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(store.get("a.txt").await.unwrap(), Bytes::from_static(b"a"));

    let revoked = "1//revoked-refresh-token-value";
    let file = user_file(dir.path(), revoked, &fake.token_uri);
    let env = GcpEnv::builder().key_file(&file).region(Some("us-central1")).load().await.unwrap();
    let e = env.access_token().await.unwrap_err().to_string();
    assert!(e.contains("invalid_grant: Token has been expired or revoked."), "{e}");
    assert!(e.contains("gcloud auth application-default login"), "{e}");
    assert!(!e.contains(revoked) && !e.contains("test-client-secret"), "{e}");
}
