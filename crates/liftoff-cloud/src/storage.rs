//! [`ContextStore`]: a build-context store URI opened with the environment's credentials.

use crate::{CloudEnv, CloudError};
use bytes::Bytes;
use liftoff_core::launch_config::BuildContextStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A bucket or container and prefix, ready for uploads. Keys are relative to
/// the URI's prefix: `s3://b/ctx` with key `job/x.tar` is object `ctx/job/x.tar`.
#[derive(Clone)]
pub struct ContextStore {
    store: Arc<dyn ObjectStore>,
    uri: BuildContextStore,
    /// `Some` for S3: the endpoint a bucket-region probe goes to.
    s3_endpoint: Option<String>,
}

impl std::fmt::Debug for ContextStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContextStore({})", self.uri)
    }
}

impl ContextStore {
    /// Opens `uri` with `env`'s credentials; calls nothing yet.
    #[cfg_attr(
        not(any(feature = "aws", feature = "gcp", feature = "azure")),
        allow(unreachable_code, reason = "without a cloud no store can be opened")
    )]
    pub async fn open(uri: &BuildContextStore, env: &CloudEnv) -> Result<Self, CloudError> {
        #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
        let fail = |e: object_store::Error| CloudError::Storage { uri: uri.to_string(), message: e.to_string() };
        let (store, s3_endpoint): (Arc<dyn ObjectStore>, _) = match (uri, env) {
            #[cfg(feature = "aws")]
            (BuildContextStore::S3 { bucket, .. }, CloudEnv::Aws(a)) => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(a.region())
                    .with_credentials(Arc::new(crate::store_credentials::AwsBridge::new(a.clone())));
                let endpoint = match a.endpoint_url() {
                    // moto, localstack and MinIO want path-style requests
                    Some(e) => {
                        b = b
                            .with_endpoint(e)
                            .with_allow_http(e.starts_with("http://"))
                            .with_virtual_hosted_style_request(false);
                        format!("{}/{bucket}", e.trim_end_matches('/'))
                    }
                    None => format!("https://{bucket}.s3.amazonaws.com"),
                };
                (Arc::new(b.build().map_err(fail)?), Some(endpoint))
            }
            #[cfg(feature = "gcp")]
            (BuildContextStore::Gcs { bucket, .. }, CloudEnv::Gcp(g)) => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::new()
                    .with_bucket_name(bucket)
                    .with_credentials(Arc::new(crate::store_credentials::GcpBridge(g.clone())));
                if let Some(e) = g.storage_endpoint() {
                    b = b.with_base_url(e).with_client_options(
                        object_store::ClientOptions::new().with_allow_http(e.starts_with("http://")),
                    );
                }
                (Arc::new(b.build().map_err(fail)?), None)
            }
            #[cfg(feature = "azure")]
            (BuildContextStore::AzureBlob { account, container, .. }, CloudEnv::Azure(a)) => {
                let b = object_store::azure::MicrosoftAzureBuilder::new()
                    .with_account(account)
                    .with_container_name(container);
                let b = if a.uses_azurite() {
                    b.with_use_emulator(true)
                } else {
                    b.with_credentials(Arc::new(crate::store_credentials::AzureBridge(a.clone())))
                };
                (Arc::new(b.build().map_err(fail)?), None)
            }
            #[allow(unreachable_patterns, reason = "reached when a cloud's feature is off or the clouds differ")]
            _ => {
                return Err(CloudError::Config(format!(
                    "{uri} is reached with {} credentials but environment.type is {}: set environment.type: {}",
                    uri.environment_type(),
                    env.type_name(),
                    uri.environment_type()
                )));
            }
        };
        Ok(Self { store, uri: uri.clone(), s3_endpoint })
    }

    pub fn uri(&self) -> &BuildContextStore {
        &self.uri
    }

    fn prefix(&self) -> &str {
        match &self.uri {
            BuildContextStore::S3 { prefix, .. }
            | BuildContextStore::Gcs { prefix, .. }
            | BuildContextStore::AzureBlob { prefix, .. } => prefix.trim_matches('/'),
        }
    }

    fn path(&self, key: &str) -> Result<ObjectPath, CloudError> {
        let key = key.trim_matches('/');
        let full = match (self.prefix(), key) {
            (p, "") => p.to_string(),
            ("", k) => k.to_string(),
            (p, k) => format!("{p}/{k}"),
        };
        ObjectPath::parse(&full)
            .map_err(|e| CloudError::Storage { uri: self.uri.to_string(), message: format!("key '{key}': {e}") })
    }

    /// A write's error in words that say what to do (a write's 404 is a missing bucket).
    fn explain(&self, what: &str, e: object_store::Error) -> CloudError {
        let uri = self.uri.to_string();
        let (kind, container) = match &self.uri {
            BuildContextStore::AzureBlob { container, .. } => ("container", container.as_str()),
            BuildContextStore::S3 { bucket, .. } | BuildContextStore::Gcs { bucket, .. } => ("bucket", bucket.as_str()),
        };
        let text = e.to_string();
        let missing =
            format!("{what}: the {kind} '{container}' does not exist: create it, or fix builder.build-context-store");
        let denied = format!(
            "{what}: the {kind} '{container}' is not accessible with these credentials ({}): grant what `liftoff permissions` lists",
            first_line(&text)
        );
        let message = match &e {
            object_store::Error::NotFound { .. } => missing,
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => denied,
            _ if text.contains("NoSuchBucket") || text.contains("ContainerNotFound") => missing,
            _ if text.contains("AccessDenied") || text.contains("403 Forbidden") => denied,
            _ => format!("{what}: {text}"),
        };
        CloudError::Storage { uri, message }
    }

    /// Checks that the store exists and is writable: puts a marker object and deletes it.
    pub async fn verify(&self) -> Result<(), CloudError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let marker = self.path(&format!(".liftoff-verify-{}-{nanos}", std::process::id()))?;
        self.store
            .put(&marker, Bytes::from_static(b"liftoff doctor\n").into())
            .await
            .map_err(|e| self.explain("writing a marker object", e))?;
        self.store.delete(&marker).await.map_err(|e| self.explain("deleting the marker object", e))?;
        Ok(())
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), CloudError> {
        let path = self.path(key)?;
        self.store.put(&path, bytes.into()).await.map_err(|e| self.explain(&format!("uploading {key}"), e))?;
        Ok(())
    }

    /// Uploads one file, streamed (multipart above 10 MiB).
    pub async fn put_file(&self, local: &Path, key: &str) -> Result<u64, CloudError> {
        let path = self.path(key)?;
        let local_err = |e: std::io::Error| CloudError::Storage {
            uri: self.uri.to_string(),
            message: format!("cannot read {}: {e}", local.display()),
        };
        let mut file = tokio::fs::File::open(local).await.map_err(local_err)?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), path);
        let n = match tokio::io::copy(&mut file, &mut writer).await {
            Ok(n) => n,
            Err(e) => {
                // a failed multipart upload is aborted, not left to bill
                let _ = writer.abort().await;
                return Err(CloudError::Storage {
                    uri: self.uri.to_string(),
                    message: format!("uploading {} to {key}: {e}", local.display()),
                });
            }
        };
        tokio::io::AsyncWriteExt::shutdown(&mut writer).await.map_err(|e| {
            match e.downcast::<object_store::Error>() {
                Ok(e) => self.explain(&format!("uploading {key}"), e),
                Err(e) => CloudError::Storage { uri: self.uri.to_string(), message: format!("uploading {key}: {e}") },
            }
        })?;
        Ok(n)
    }

    /// Uploads every regular file under `local_dir` to `key_prefix/<relative path>`;
    /// returns how many. Symbolic links are not followed (a link out of the
    /// tree must not upload what it points to).
    pub async fn put_dir(&self, local_dir: &Path, key_prefix: &str) -> Result<usize, CloudError> {
        let dir = local_dir.to_path_buf();
        let files = tokio::task::spawn_blocking(move || walk(&dir))
            .await
            .map_err(|e| CloudError::Storage { uri: self.uri.to_string(), message: e.to_string() })?
            .map_err(|e| CloudError::Storage { uri: self.uri.to_string(), message: e })?;
        for rel in &files {
            let rel_key: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let key = format!("{}/{}", key_prefix.trim_matches('/'), rel_key.join("/"));
            self.put_file(&local_dir.join(rel), key.trim_start_matches('/')).await?;
        }
        Ok(files.len())
    }

    /// Uploads what `body` yields as object `key`, streamed (multipart
    /// above 10 MiB; a failed upload is aborted). Returns the bytes written.
    pub async fn put_stream(
        &self,
        key: &str,
        mut body: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<u64, CloudError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let path = self.path(key)?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), path);
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let written = match chunk {
                Ok(c) => writer.write_all(&c).await.map(|()| c.len() as u64),
                Err(e) => Err(e),
            };
            match written {
                Ok(len) => n += len,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(CloudError::Storage {
                        uri: self.uri.to_string(),
                        message: format!("uploading {key}: {e}"),
                    });
                }
            }
        }
        writer.shutdown().await.map_err(|e| match e.downcast::<object_store::Error>() {
            Ok(e) => self.explain(&format!("uploading {key}"), e),
            Err(e) => CloudError::Storage { uri: self.uri.to_string(), message: format!("uploading {key}: {e}") },
        })?;
        Ok(n)
    }

    /// Whether object `key` exists (a HEAD).
    pub async fn exists(&self, key: &str) -> Result<bool, CloudError> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.explain(&format!("looking for {key}"), e)),
        }
    }

    /// Deletes object `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), CloudError> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.explain(&format!("deleting {key}"), e)),
        }
    }

    /// Object `key`'s URI in the store's own scheme: `s3://b/p/k`,
    /// `gs://b/p/k`, `https://<account>.blob.core.windows.net/<c>/p/k`
    /// (what kaniko's `--context` takes).
    pub fn object_uri(&self, key: &str) -> Result<String, CloudError> {
        let path = self.path(key)?;
        Ok(match &self.uri {
            BuildContextStore::S3 { bucket, .. } => format!("s3://{bucket}/{path}"),
            BuildContextStore::Gcs { bucket, .. } => format!("gs://{bucket}/{path}"),
            BuildContextStore::AzureBlob { account, container, .. } => {
                format!("https://{account}.blob.core.windows.net/{container}/{path}")
            }
        })
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, CloudError> {
        let path = self.path(key)?;
        let r = self.store.get(&path).await.map_err(|e| match e {
            // a missing object, not a missing bucket as on a write
            object_store::Error::NotFound { .. } => {
                CloudError::Storage { uri: self.uri.to_string(), message: format!("reading {key}: no such object") }
            }
            e => self.explain(&format!("reading {key}"), e),
        })?;
        r.bytes().await.map_err(|e| self.explain(&format!("reading {key}"), e))
    }

    /// The S3 bucket's region (`x-amz-bucket-region`, which S3 sends even to
    /// an unsigned request); `None` for other stores or a bucket that does not answer.
    pub async fn bucket_region(&self) -> Option<String> {
        let url = self.s3_endpoint.as_ref()?;
        let resp = reqwest::Client::new().head(url).timeout(std::time::Duration::from_secs(10)).send().await.ok()?;
        resp.headers().get("x-amz-bucket-region")?.to_str().ok().map(str::to_string)
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Relative paths of the regular files under `root`, sorted.
fn walk(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let ty = entry.file_type().map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            let child = rel.join(entry.file_name());
            if ty.is_dir() {
                stack.push(child);
            } else if ty.is_file() {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}
