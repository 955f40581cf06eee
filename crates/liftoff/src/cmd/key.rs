//! `liftoff key`: create, list and revoke the entity's API keys (admin keys
//! only). A new key's secret is printed once, on stdout, and kept nowhere.

use crate::connect::Globals;
use crate::output::{self, FormatArg, Table};
use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use liftoff_core::api::ApiKeyView;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a key and print its secret (shown once).
    Create {
        /// admin: everything in the entity; member: launch, stop and read;
        /// agent: what `liftoff agent` needs and nothing else.
        #[arg(long, value_enum)]
        role: Role,
        /// Who or what will use it; runs it launches show it as "launched by".
        #[arg(long)]
        name: Option<String>,
        /// Write the secret to this new file (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List the entity's keys (ids and roles, never secrets).
    List(FormatArg),
    /// Revoke a key: it stops working on every server within a second.
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    Admin,
    Member,
    Agent,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Agent => "agent",
        }
    }
}

pub async fn run(globals: &Globals, cmd: KeyCmd) -> anyhow::Result<()> {
    let client = globals.client()?;
    match cmd {
        KeyCmd::Create { role, name, secret_file: Some(path), format } => {
            // Created first, so that an existing file is never overwritten by a key that then fails.
            let mut file = new_secret_file(&path)?;
            let created = match client.create_named_key(role.as_str(), name.as_deref()).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(anyhow::Error::new(e).context("failed to create the key"));
                }
            };
            use std::io::Write;
            writeln!(file, "{}", created.secret).with_context(|| format!("failed to write {}", path.display()))?;
            output::emit(format.format, &created.key, |k| {
                let mut t = Table::key_values();
                t.row(["id", k.id.as_str()])
                    .row(["role", k.role.as_str()])
                    .row(["name", &output::opt(k.name.as_deref())])
                    .row(["secret in", &path.display().to_string()]);
                t
            })
        }
        KeyCmd::Create { role, name, secret_file: None, format } => {
            let created =
                client.create_named_key(role.as_str(), name.as_deref()).await.context("failed to create the key")?;
            output::emit(format.format, &created, |c| {
                let mut t = Table::key_values();
                t.row(["id", c.key.id.as_str()])
                    .row(["role", c.key.role.as_str()])
                    .row(["name", &output::opt(c.key.name.as_deref())])
                    .row(["secret", c.secret.as_str()]);
                t
            })?;
            eprintln!("the secret is shown once; store it now (for an agent: a 0600 file, `--api-key-file`)");
            Ok(())
        }
        KeyCmd::List(f) => {
            let keys = client.list_keys().await.context("failed to list keys")?;
            output::emit(f.format, &keys, |ks| list_table(ks))
        }
        KeyCmd::Revoke { id } => {
            let key = client.revoke_key(&id).await.with_context(|| format!("failed to revoke key '{id}'"))?;
            println!("revoked {} key {}", key.role, key.id);
            Ok(())
        }
    }
}

/// A new file only its owner can read or write; an existing one is refused.
fn new_secret_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| {
        format!("cannot create the secret file {} (an existing file is never overwritten)", path.display())
    })
}

fn list_table(keys: &[ApiKeyView]) -> Table {
    let mut t = Table::with_header(["ID", "ROLE", "NAME", "CREATED"]);
    for k in keys {
        t.row([k.id.clone(), k.role.clone(), output::opt(k.name.as_deref()), output::time_ms(k.created_at_ms)]);
    }
    t
}
