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

    /// A store rooted at a local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Blob(object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::new(Arc::new(fs)))
    }

    fn path(digest: &str) -> Path {
        Path::from(format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")))
    }

    /// Stores `bytes` under `digest` (the caller has computed and checked it),
    /// unless a blob with that digest is already there.
    pub async fn put(&self, digest: &str, bytes: Bytes) -> Result<bool, StoreError> {
        let path = Self::path(digest);
        match self.inner.head(&path).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.put(&path, PutPayload::from_bytes(bytes)).await?;
        Ok(true)
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
