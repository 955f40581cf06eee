use crate::StoreError;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

/// Content-addressed blobs (code archives) in any `object_store` backend:
/// the local filesystem by default, S3, GCS or Azure Blob at scale.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

impl BlobStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// Opens the store a URL names: `file:///dir`, `s3://bucket[/prefix]`,
    /// `gs://bucket[/prefix]` or `az://container[/prefix]` (also
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER[/prefix]`). Cloud
    /// credentials and endpoints come from the usual environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and then from `options`, whose keys are
    /// object_store's (`endpoint`, `allow_http`, `access_key_id`, ...).
    pub fn open(url: &str, options: &[(String, String)]) -> Result<Self, StoreError> {
        let invalid = |message: String| StoreError::Invalid { field: "blob_store".into(), message };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            invalid(format!("blob store '{url}' is not a URL (e.g. file:///srv/blobs, s3://bucket/prefix)"))
        })?;
        if scheme == "file" {
            if !options.is_empty() {
                return Err(invalid("a file:// blob store takes no options".into()));
            }
            return Self::local(std::path::Path::new(rest));
        }
        let azure_https =
            scheme == "https" && rest.split('/').next().is_some_and(|h| h.ends_with(".blob.core.windows.net"));
        // The part after the bucket (or, for https, after the container) is a key prefix.
        let skip = if azure_https { 2 } else { 1 };
        let prefix: String = rest.split('/').skip(skip).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("/");
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" => remote::s3(url, options)?,
            "gs" => remote::gcs(url, options)?,
            "az" | "abfs" | "abfss" => remote::azure(url, options)?,
            _ if azure_https => remote::azure(url, options)?,
            other => return Err(invalid(format!("unsupported blob store scheme '{other}': use file, s3, gs or az"))),
        };
        if prefix.is_empty() {
            Ok(Self::new(store))
        } else {
            Ok(Self::new(Arc::new(object_store::prefix::PrefixStore::new(store, prefix.as_str()))))
        }
    }

    /// A store rooted at a local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Blob(object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })
        })?;
        // Synced before a write is answered: an archived log's rows are
        // dropped from the database (whose commits are synced) right after,
        // and an uploaded code archive is referenced by the job made next;
        // without it a power loss could keep the reference and lose the file.
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Ok(Self::new(Arc::new(fs)))
    }

    fn path(digest: &str) -> Path {
        Path::from(format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")))
    }

    /// Stores `bytes` under `digest` (the caller has computed and checked it).
    /// Content-addressed, so writing the same digest again changes nothing;
    /// no existence check first (one request fewer, and not every
    /// S3/GCS-compatible store answers HEAD).
    pub async fn put(&self, digest: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner.put(&Self::path(digest), PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    fn log_path(entity: &str, item_id: &str) -> Path {
        Path::from(format!("logs/{entity}/{item_id}.jsonl"))
    }

    /// Stores an ended run's whole log (JSON lines of chunks), replacing any earlier copy.
    pub async fn put_log(&self, entity: &str, item_id: &str, jsonl: Bytes) -> Result<(), StoreError> {
        self.inner.put(&Self::log_path(entity, item_id), PutPayload::from_bytes(jsonl)).await?;
        Ok(())
    }

    pub async fn get_log(&self, entity: &str, item_id: &str) -> Result<Option<Bytes>, StoreError> {
        match self.inner.get(&Self::log_path(entity, item_id)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, digest: &str) -> Result<Option<Bytes>, StoreError> {
        match self.inner.get(&Self::path(digest)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The cloud backends, each behind its cargo feature; without it the URL is
/// refused with the feature to enable.
mod remote {
    use crate::StoreError;
    use object_store::ObjectStore;
    use std::sync::Arc;

    #[cfg_attr(all(feature = "s3", feature = "gcs", feature = "azure"), expect(dead_code))]
    fn missing(feature: &str, url: &str) -> StoreError {
        StoreError::Invalid {
            field: "blob_store".into(),
            message: format!("blob store '{url}' needs liftoff built with the '{feature}' feature"),
        }
    }

    /// Applies `key=value` options through the backend's own key parser, so a
    /// misspelt key is refused by name (values are never echoed: they may be secrets).
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    fn configure<B, K: std::str::FromStr>(
        mut builder: B,
        options: &[(String, String)],
        set: impl Fn(B, K, &str) -> B,
    ) -> Result<B, StoreError> {
        for (k, v) in options {
            let key = k.parse::<K>().map_err(|_| StoreError::Invalid {
                field: format!("blob_option.{k}"),
                message: format!("unknown blob store option '{k}'"),
            })?;
            builder = set(builder, key, v);
        }
        Ok(builder)
    }

    pub fn s3(url: &str, options: &[(String, String)]) -> Result<Arc<dyn ObjectStore>, StoreError> {
        #[cfg(feature = "s3")]
        {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let b = configure(AmazonS3Builder::from_env().with_url(url), options, |b, k: AmazonS3ConfigKey, v| {
                b.with_config(k, v)
            })?;
            Ok(Arc::new(b.build()?))
        }
        #[cfg(not(feature = "s3"))]
        {
            let _ = options;
            Err(missing("s3", url))
        }
    }

    pub fn gcs(url: &str, options: &[(String, String)]) -> Result<Arc<dyn ObjectStore>, StoreError> {
        #[cfg(feature = "gcs")]
        {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let b =
                configure(GoogleCloudStorageBuilder::from_env().with_url(url), options, |b, k: GoogleConfigKey, v| {
                    b.with_config(k, v)
                })?;
            Ok(Arc::new(b.build()?))
        }
        #[cfg(not(feature = "gcs"))]
        {
            let _ = options;
            Err(missing("gcs", url))
        }
    }

    pub fn azure(url: &str, options: &[(String, String)]) -> Result<Arc<dyn ObjectStore>, StoreError> {
        #[cfg(feature = "azure")]
        {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let b = configure(MicrosoftAzureBuilder::from_env().with_url(url), options, |b, k: AzureConfigKey, v| {
                b.with_config(k, v)
            })?;
            Ok(Arc::new(b.build()?))
        }
        #[cfg(not(feature = "azure"))]
        {
            let _ = options;
            Err(missing("azure", url))
        }
    }
}
