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
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Where code archives and ended runs' logs go: file:///DIR, s3://BUCKET/PREFIX,
    /// gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [default: DATA_DIR/blobs].
    #[arg(long, value_name = "URL")]
    blob_store: Option<String>,
    /// An object_store option for the blob store, e.g. endpoint=http://127.0.0.1:9000 (repeatable).
    #[arg(long = "blob-option", value_name = "KEY=VALUE", value_parser = parse_option)]
    blob_options: Vec<(String, String)>,
    /// Seconds a claim stays valid without a heartbeat.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl: Option<u64>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = liftoff_server::ServerConfig::new(args.data_dir);
    cfg.listen = args.listen;
    cfg.db_url = args.db;
    cfg.blob_store = args.blob_store;
    cfg.blob_options = args.blob_options;
    if let Some(secs) = args.lease_ttl {
        cfg.lease_ttl = Duration::from_secs(secs);
    }
    let server = liftoff_server::start(cfg).await.context("failed to start the server")?;
    println!("liftoff server listening on {} (web UI at {}/)", server.base_url(), server.base_url());
    crate::signal::shutdown_requested().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(())
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".to_string()),
    }
}
