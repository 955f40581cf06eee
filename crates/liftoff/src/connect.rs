//! Turns the global options into a [`Client`], resolving defaults and the API key.

use anyhow::{Context, bail};
use liftoff_client::Client;
use std::path::Path;

pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:7434";
pub const DEFAULT_ENTITY: &str = "default";
/// Where `liftoff server` (run from the same directory) writes the admin key.
const LOCAL_ADMIN_KEY: &str = "liftoff-data/admin.key";

/// The global options as given (flag or environment); `None` when neither was.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub entity: Option<String>,
    /// A PEM bundle of CA certificates to trust beside the system's.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Globals {
    pub fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL)
    }

    pub fn entity(&self) -> &str {
        self.entity.as_deref().unwrap_or(DEFAULT_ENTITY)
    }

    /// The key given, else the one in `./liftoff-data/admin.key`.
    pub fn api_key(&self) -> anyhow::Result<String> {
        if let Some(k) = self.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            return Ok(k.to_string());
        }
        let path = Path::new(LOCAL_ADMIN_KEY);
        if path.is_file() {
            return read_key_file(path);
        }
        bail!("no API key: set LIFTOFF_API_KEY or pass --api-key")
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        self.client_for(self.base_url(), self.entity())
    }

    /// A client with the resolved key but another URL or entity.
    pub fn client_for(&self, base_url: &str, entity: &str) -> anyhow::Result<Client> {
        let key = self.api_key()?;
        match &self.ca_cert {
            None => {
                Client::new(base_url, &key, entity).with_context(|| format!("failed to set up a client for {base_url}"))
            }
            Some(path) => {
                let pem = read_ca(path)?;
                Client::with_ca(base_url, &key, entity, &pem)
                    .with_context(|| format!("--ca-cert {}: not a usable PEM certificate bundle", path.display()))
            }
        }
    }
}

/// Largest CA bundle read (a system bundle is about 200 KB).
const MAX_CA_BUNDLE: u64 = 4 << 20;

fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("--ca-cert: failed to read {}", path.display()))?;
    let mut pem = Vec::new();
    f.take(MAX_CA_BUNDLE + 1)
        .read_to_end(&mut pem)
        .with_context(|| format!("--ca-cert: failed to read {}", path.display()))?;
    if pem.len() as u64 > MAX_CA_BUNDLE {
        bail!("--ca-cert: {} is over {} MiB, not a CA bundle", path.display(), MAX_CA_BUNDLE >> 20);
    }
    Ok(pem)
}

/// Reads an API key file (one line; surrounding whitespace ignored).
pub fn read_key_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(key.to_string())
}
