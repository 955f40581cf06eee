//! `BlobStore::open`: which URLs and options it takes, and how it refuses the rest.

use liftoff_store::{BlobStore, StoreError};

fn refusal(url: &str, options: &[(&str, &str)]) -> (String, String) {
    let options: Vec<(String, String)> = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match BlobStore::open(url, &options) {
        Err(StoreError::Invalid { field, message }) => (field, message),
        Err(other) => panic!("{url}: expected a refusal naming a field, got {other}"),
        Ok(_) => panic!("{url}: expected a refusal"),
    }
}

#[tokio::test]
async fn file_urls_work_and_bad_urls_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&format!("file://{}", dir.path().display()), &[]).unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    store.put(&digest, bytes::Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(store.get(&digest).await.unwrap().unwrap().as_ref(), b"x");
    assert!(dir.path().join("blobs/sha256").join("ab".repeat(32)).exists());

    let (field, message) = refusal("/srv/blobs", &[]);
    assert_eq!(field, "blob_store");
    assert!(message.contains("not a URL"), "{message}");
    let (_, message) = refusal("ftp://host/x", &[]);
    assert!(message.contains("unsupported blob store scheme 'ftp'"), "{message}");
    let (_, message) = refusal(&format!("file://{}", dir.path().display()), &[("endpoint", "x")]);
    assert!(message.contains("takes no options"), "{message}");
}

#[cfg(feature = "s3")]
#[test]
fn a_misspelt_option_is_named_and_its_value_never_shown() {
    let (field, message) = refusal("s3://bucket/prefix", &[("secret_acess_key", "hunter2")]);
    assert_eq!(field, "blob_option.secret_acess_key");
    assert!(!message.contains("hunter2"), "{message}");
}
