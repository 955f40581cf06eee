use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How a server runs. [`ServerConfig::new`] gives the embedded defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Holds the SQLite database, blobs and `admin.key`.
    pub data_dir: PathBuf,
    /// `postgres://...`; SQLite in `data_dir` when `None`.
    pub db_url: Option<String>,
    /// How long a claim stays valid without a heartbeat.
    pub lease_ttl: Duration,
    /// Lease expiries before an item fails.
    pub max_attempts: u32,
    /// Upper bound on a claim's long-poll wait.
    pub max_claim_wait: Duration,
    /// Bound on JSON request bodies.
    pub max_json_body: usize,
    /// Bound on uploaded code archives.
    pub max_blob_body: usize,
    /// Print the admin key on first start (off in tests and quickstart).
    pub print_admin_key: bool,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7434)),
            data_dir,
            db_url: None,
            lease_ttl: Duration::from_secs(30),
            max_attempts: 3,
            max_claim_wait: Duration::from_secs(30),
            max_json_body: 1 << 20,
            max_blob_body: 256 << 20,
            print_admin_key: true,
        }
    }
}
