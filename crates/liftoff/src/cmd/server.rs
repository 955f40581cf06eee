//! `liftoff server`: runs the control plane until ctrl-c or SIGTERM.

use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7434", value_name = "ADDR")]
    listen: SocketAddr,
    /// Directory for the SQLite database, blobs and admin.key.
    #[arg(long, default_value = "./liftoff-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Database URL (postgres://...); SQLite in the data directory when absent.
    #[arg(long, env = "LIFTOFF_DB", value_name = "URL", conflicts_with = "db_file")]
    db: Option<String>,
    /// Read the database URL (which may hold a password) from FILE, e.g. a mounted Secret.
    #[arg(long, env = "LIFTOFF_DB_FILE", value_name = "FILE")]
    db_file: Option<PathBuf>,
    /// Where code archives and ended runs' logs go: file:///DIR, s3://BUCKET/PREFIX,
    /// gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [default: DATA_DIR/blobs].
    #[arg(long, env = "LIFTOFF_BLOB_STORE", value_name = "URL")]
    blob_store: Option<String>,
    /// An object_store option for the blob store, e.g. endpoint=http://127.0.0.1:9000 (repeatable).
    #[arg(long = "blob-option", value_name = "KEY=VALUE", value_parser = parse_option)]
    blob_options: Vec<(String, String)>,
    /// Seconds a claim stays valid without a heartbeat.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl: Option<u64>,
    /// An ended run's log of at most this many bytes stays in the database
    /// instead of going to the blob store; 0 sends every log there.
    #[arg(long, env = "LIFTOFF_LOG_KEEP_MAX_BYTES", value_name = "BYTES",
          default_value_t = liftoff_server::LOG_KEEP_MAX_BYTES)]
    log_keep_max_bytes: u64,
    /// Serve HTTPS with this PEM certificate (and chain), read again when it
    /// changes; needs --tls-key. HTTP/2 is offered through ALPN.
    #[arg(long, env = "LIFTOFF_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "LIFTOFF_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Make /metrics answer only `Authorization: Bearer <token>`, the token
    /// being this file's content (surrounding whitespace ignored).
    #[arg(long, env = "LIFTOFF_METRICS_TOKEN_FILE", value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// On the first start against a database, make this file's key the
    /// default entity's admin key instead of minting one (a key kept in a
    /// Kubernetes Secret, shared by every replica); no admin.key is written.
    #[arg(long, env = "LIFTOFF_ADMIN_KEY_FILE", value_name = "FILE")]
    admin_key_file: Option<PathBuf>,
    /// Encrypt the secrets the server stores (git credentials, its own
    /// signing secrets) under the key in FILE: 32 random bytes in base64
    /// (`openssl rand -base64 32`), e.g. a mounted Kubernetes Secret. Plain
    /// values in the database are encrypted on start.
    #[arg(long, env = "LIFTOFF_SECRETS_KEY_FILE", value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// A previous --secrets-key-file, to rotate: what is under it is
    /// re-encrypted under the new key on start, after which it is no longer
    /// needed. Repeatable.
    #[arg(long = "old-secrets-key-file", value_name = "FILE", requires = "secrets_key_file")]
    old_secrets_key_files: Vec<PathBuf>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = liftoff_server::ServerConfig::new(args.data_dir);
    cfg.listen = args.listen;
    cfg.db_url = match &args.db_file {
        Some(path) => Some(read_token_file(path, "--db-file", 1)?),
        None => args.db,
    };
    cfg.blob_store = args.blob_store;
    cfg.blob_options = args.blob_options;
    cfg.log_keep_max_bytes = args.log_keep_max_bytes;
    if let Some(secs) = args.lease_ttl {
        cfg.lease_ttl = Duration::from_secs(secs);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        cfg.tls = Some(liftoff_server::TlsFiles { cert, key, reload_every: Duration::from_secs(2) });
    }
    if let Some(path) = &args.metrics_token_file {
        cfg.metrics_token = Some(read_token_file(path, "--metrics-token-file", 16)?);
    }
    cfg.secrets_key_file = args.secrets_key_file;
    cfg.old_secrets_key_files = args.old_secrets_key_files;
    if let Some(path) = &args.admin_key_file {
        cfg.admin_key = Some(read_token_file(path, "--admin-key-file", 32)?);
    }
    let server = liftoff_server::start(cfg).await.context("failed to start the server")?;
    println!("liftoff server listening on {} (web UI at {}/)", server.base_url(), server.base_url());
    crate::signal::shutdown_requested().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// A secret from a file (one line; surrounding whitespace ignored), at least `min` characters.
fn read_token_file(path: &std::path::Path, flag: &str, min: usize) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {flag} {}", path.display()))?;
    let token = text.trim();
    if token.chars().count() < min || token.contains(char::is_whitespace) {
        anyhow::bail!("{flag} {} must hold one token of at least {min} characters and no spaces", path.display());
    }
    Ok(token.to_string())
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".to_string()),
    }
}
