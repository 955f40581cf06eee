//! Any OCI registry: credentials from the docker config (`config.json` and
//! its credential helpers), read by `liftoff_run::registry_auth` as pulls
//! read them; without any, anonymous.

use super::distribution::{Distribution, OverDistribution, base_url};
use super::{Login, LoginSource, RegistryError};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

/// A registry reached with the docker config's credentials.
pub struct OciRegistry {
    repository: String,
    client: Distribution,
}

/// The docker config's entry for one host.
struct DockerConfigLogin {
    /// `None`: no config directory at all (no `$DOCKER_CONFIG`, no `$HOME`).
    dir: Option<PathBuf>,
    repository: String,
}

#[async_trait]
impl LoginSource for DockerConfigLogin {
    async fn login(&self) -> Result<Login, RegistryError> {
        let Some(dir) = &self.dir else {
            return Ok(Login { auth: None, source: "anonymous (no docker config directory)".into(), expires: None });
        };
        let found = liftoff_run::registry_auth::registry_auth_and_source(&self.repository, dir).await.map_err(|e| {
            RegistryError::Other { registry: format!("registry {}", self.repository), message: e.to_string() }
        })?;
        Ok(match found {
            Some((auth, source)) => Login { auth: Some(auth), source, expires: None },
            None => Login {
                auth: None,
                source: format!("anonymous (no entry in {})", dir.join("config.json").display()),
                expires: None,
            },
        })
    }
}

impl OciRegistry {
    /// `host` as written in the destination (`127.0.0.1:5000`, `docker.io`),
    /// `path` the repository in it; `docker_config` the directory holding
    /// `config.json` (`None`: no docker config).
    pub fn new(host: &str, path: &str, docker_config: Option<PathBuf>) -> Result<Self, RegistryError> {
        let repository = format!("{host}/{path}");
        let describe = format!("registry {repository}");
        // Docker Hub's API lives on registry-1.docker.io
        let api_host = if host == "docker.io" { "registry-1.docker.io" } else { host };
        let base = base_url(api_host).map_err(|m| RegistryError::Other { registry: describe.clone(), message: m })?;
        // and names official images library/<name>
        let api_path = if host == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path.into() };
        let login = Arc::new(DockerConfigLogin { dir: docker_config, repository: repository.clone() });
        Ok(Self { client: Distribution::new(base, &api_path, describe, login), repository })
    }
}

impl OverDistribution for OciRegistry {
    fn client(&self) -> &Distribution {
        &self.client
    }

    fn repository_uri(&self) -> &str {
        &self.repository
    }

    fn kind(&self) -> &'static str {
        "registry"
    }
}
