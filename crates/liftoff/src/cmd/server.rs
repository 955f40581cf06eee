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
    /// Seconds a claim stays valid without a heartbeat.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl: Option<u64>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = liftoff_server::ServerConfig::new(args.data_dir);
    cfg.listen = args.listen;
    cfg.db_url = args.db;
    if let Some(secs) = args.lease_ttl {
        cfg.lease_ttl = Duration::from_secs(secs);
    }
    let server = liftoff_server::start(cfg).await.context("failed to start the server")?;
    println!("liftoff server listening on {}", server.base_url());
    crate::signal::shutdown_requested().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(())
}
