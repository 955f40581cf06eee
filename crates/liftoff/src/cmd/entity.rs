//! `liftoff entity`: creates entities and their admin keys, working on the
//! server's database directly (like the server's own first start), so no
//! instance-wide key is needed over HTTP.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use liftoff_core::queue::validate_name;
use liftoff_store::{SqlStore, Store};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum EntityCmd {
    /// Create an entity and print its first admin API key (shown once).
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print a new admin API key for an existing entity (shown once).
    Key {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// The database the server uses: the same flags as `liftoff server`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The server's data directory (its SQLite database lives there).
    #[arg(long, default_value = "./liftoff-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Database URL (postgres://...) when the server runs with --db.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

impl DbArgs {
    async fn open(&self) -> anyhow::Result<SqlStore> {
        let url = match &self.db {
            Some(u) => u.clone(),
            None => {
                let path = self.data_dir.join("liftoff.db");
                if !path.is_file() {
                    bail!(
                        "no database at {}: start `liftoff server --data-dir {}` once first, or pass --db",
                        path.display(),
                        self.data_dir.display()
                    );
                }
                format!("sqlite://{}", path.display())
            }
        };
        SqlStore::connect(&url, 3).await.context("failed to open the database")
    }
}

pub async fn run(cmd: EntityCmd) -> anyhow::Result<()> {
    match cmd {
        EntityCmd::Create { name, db } => {
            validate_name("entity name", &name).map_err(anyhow::Error::msg)?;
            let store = db.open().await?;
            if !store.ensure_entity(&name, liftoff_store::now_ms()).await? {
                bail!("entity '{name}' already exists; `liftoff entity key {name}` prints a new key for it");
            }
            let secret = liftoff_server::mint_admin_key(&store, &name).await?;
            eprintln!("created entity '{name}'; its admin API key (shown once):");
            println!("{secret}");
        }
        EntityCmd::Key { name, db } => {
            let store = db.open().await?;
            if !store.entity_exists(&name).await? {
                bail!("entity '{name}' does not exist; `liftoff entity create {name}` creates it");
            }
            let secret = liftoff_server::mint_admin_key(&store, &name).await?;
            eprintln!("new admin API key for entity '{name}' (shown once):");
            println!("{secret}");
        }
    }
    Ok(())
}
