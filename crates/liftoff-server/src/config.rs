use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// [`ServerConfig::log_keep_max_bytes`] by default: a few dozen lines. For a
/// run that prints little, the log's object (a file created and synced on
/// the local blob store) cost more than the run's rows in the database
/// (`agent-bench cpu`); a sweep of 100,000 such runs keeps at most 400 MB.
pub const LOG_KEEP_MAX_BYTES: u64 = 4096;

/// How a server runs. [`ServerConfig::new`] gives the embedded defaults.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Holds the SQLite database, blobs and `admin.key`.
    pub data_dir: PathBuf,
    /// `postgres://...`; SQLite in `data_dir` when `None`.
    pub db_url: Option<String>,
    /// How long a claim stays valid without a heartbeat.
    pub lease_ttl: Duration,
    /// Blob store URL (see `liftoff_store::BlobStore::open`); `<data_dir>/blobs` when `None`.
    pub blob_store: Option<String>,
    /// object_store options for `blob_store` (endpoint, credentials...). Never logged.
    pub blob_options: Vec<(String, String)>,
    /// Lease expiries before an item fails.
    pub max_attempts: u32,
    /// Upper bound on a claim's long-poll wait.
    pub max_claim_wait: Duration,
    /// How often a waiting claim looks at the store without a wake-up (an
    /// enqueue on another server sharing the database wakes no one here).
    pub claim_recheck: Duration,
    /// Bound on JSON request bodies.
    pub max_json_body: usize,
    /// Bound on uploaded code archives.
    pub max_blob_body: usize,
    /// Event streams (SSE) open at once; more are refused with 503.
    pub max_event_streams: usize,
    /// How often an event stream looks at the store without a wake-up (a
    /// change made through another server sharing the database wakes no one here).
    pub stream_recheck: Duration,
    /// Print the admin key on first start (off in tests and quickstart).
    pub print_admin_key: bool,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 through ALPN) with this certificate
    /// and key, read again when they change; plain HTTP when `None` (behind
    /// an ingress that terminates TLS).
    pub tls: Option<crate::tls::TlsFiles>,
    /// The default entity's admin key on the first start, instead of a new
    /// one (no `admin.key` is written then). Never logged.
    pub admin_key: Option<String>,
    /// The key-encryption key of the secrets stored in the database (git
    /// credentials, the server's own secrets): 32 bytes in base64. `None`:
    /// stored plain (and a database holding sealed ones is refused).
    pub secrets_key_file: Option<PathBuf>,
    /// Earlier keys: values sealed under them are re-wrapped under
    /// `secrets_key_file` on start, after which they are no longer needed.
    pub old_secrets_key_files: Vec<PathBuf>,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`. Never logged.
    pub metrics_token: Option<String>,
    /// An ended run's log of at most this many bytes stays in the database
    /// instead of going to the blob store (0: every log goes there).
    pub log_keep_max_bytes: u64,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7434)),
            data_dir,
            db_url: None,
            blob_store: None,
            blob_options: Vec::new(),
            lease_ttl: Duration::from_secs(30),
            max_attempts: 3,
            max_claim_wait: Duration::from_secs(30),
            claim_recheck: Duration::from_secs(1),
            max_json_body: 1 << 20,
            max_blob_body: 256 << 20,
            max_event_streams: 512,
            stream_recheck: Duration::from_secs(1),
            print_admin_key: true,
            tls: None,
            metrics_token: None,
            log_keep_max_bytes: LOG_KEEP_MAX_BYTES,
            admin_key: None,
            secrets_key_file: None,
            old_secrets_key_files: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Database URLs and blob options may hold passwords and keys.
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("db_url", &self.db_url.as_ref().map(|_| "<set>"))
            .field("blob_store", &self.blob_store)
            .field("blob_options", &self.blob_options.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("tls", &self.tls)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "<set>"))
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("secrets_key_file", &self.secrets_key_file)
            .field("old_secrets_key_files", &self.old_secrets_key_files)
            .finish_non_exhaustive()
    }
}
