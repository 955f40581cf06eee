//! Registry credentials for pulls, from the Docker client's `config.json`
//! (what `docker login` writes), so an agent host logged in to a registry
//! pulls from it as its users expect. Only inline `auths` entries are read;
//! credential helpers (`credsStore`, `credHelpers`) are not run.

use base64::Engine;
use liftoff_run::container::RegistryAuth;
use std::path::{Path, PathBuf};

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// The registry host of an image reference (`docker.io` when it names none).
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Credentials for `image`'s registry from `<dir>/config.json`, if any.
/// A config that cannot be read or parsed is an error (never silently
/// anonymous); a registry it does not mention is `None`.
pub fn registry_auth(image: &str, dir: &Path) -> anyhow::Result<Option<RegistryAuth>> {
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) if t.len() <= 1 << 20 => t,
        Ok(_) => anyhow::bail!("{} is larger than 1 MiB", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("failed to read {}: {e}", path.display()),
    };
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", path.display()))?;
    let host = registry_host(image);
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else { return Ok(None) };
    let entry = auths.iter().find(|(k, _)| normalise(k) == normalise(host)).map(|(_, v)| v);
    let Some(entry) = entry else { return Ok(None) };
    let (username, password) = if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| anyhow::anyhow!("auths.{host}.auth in {} is not base64", path.display()))?;
        let raw = String::from_utf8(raw)
            .map_err(|_| anyhow::anyhow!("auths.{host}.auth in {} is not UTF-8", path.display()))?;
        let (u, p) = raw
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("auths.{host}.auth in {} is not user:password", path.display()))?;
        (u.to_string(), p.to_string())
    } else {
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
        match (field("username"), field("password")) {
            (Some(u), Some(p)) => (u, p),
            _ => return Ok(None),
        }
    };
    Ok(Some(RegistryAuth { username, password, serveraddress: host.to_string() }))
}

/// `https://index.docker.io/v1/` and `docker.io` name the same registry;
/// `https://host/` and `host` too.
fn normalise(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_by_registry_host() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("ada:s3cret");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"auth": b64},
                "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}
            }})
            .to_string(),
        )
        .unwrap();
        let a = registry_auth("127.0.0.1:5000/team/img:1", dir.path()).unwrap().unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str(), a.serveraddress.as_str()),
            ("ada", "s3cret", "127.0.0.1:5000")
        );
        let hub = registry_auth("library/busybox", dir.path()).unwrap().unwrap();
        assert_eq!(hub.username, "hub");
        assert!(registry_auth("ghcr.io/x/y", dir.path()).unwrap().is_none());
        assert!(registry_auth("img", tempfile::tempdir().unwrap().path()).unwrap().is_none(), "no config: anonymous");
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        assert!(registry_auth("img", dir.path()).unwrap_err().to_string().contains("not valid JSON"));
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox:1"), "docker.io");
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert_eq!(
            registry_host("123.dkr.ecr.us-east-1.amazonaws.com/repo:tag"),
            "123.dkr.ecr.us-east-1.amazonaws.com"
        );
    }
}
