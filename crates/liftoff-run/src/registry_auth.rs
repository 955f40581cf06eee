//! Registry credentials for pulls, from the Docker client's `config.json`
//! (what `docker login` writes), so an agent host logged in to a registry
//! pulls from it as its users expect. As the Docker CLI does, a credential
//! helper named for the registry in `credHelpers`, else the `credsStore`
//! helper, is asked first (`docker-credential-<name> get`, found on `PATH`;
//! this is how ECR, Artifact Registry and ACR logins are usually kept);
//! without either, the inline `auths` entry is used.

use crate::container::RegistryAuth;
use base64::Engine;
use liftoff_core::ImageRef;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a credential helper may take (some call a cloud API).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most read of a helper's stdout or stderr.
const HELPER_OUTPUT_LIMIT: u64 = 64 * 1024;

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// Credentials for `image`'s registry from `<dir>/config.json`, if any.
/// A config that cannot be read or parsed, or a helper that fails, is an
/// error (never silently anonymous); a registry nothing knows is `None`.
pub async fn registry_auth(image: &str, dir: &Path) -> anyhow::Result<Option<RegistryAuth>> {
    registry_auth_with(image, dir, None, HELPER_TIMEOUT).await
}

/// [`registry_auth`] in `dir`, else in [`default_config_dir`]: what pulls
/// use (the `local-container` runner's, the docker builder's base images).
/// `None` when there is no config directory at all.
pub async fn pull_auth(image: &str, dir: Option<&Path>) -> anyhow::Result<Option<RegistryAuth>> {
    match dir.map(Path::to_path_buf).or_else(default_config_dir) {
        Some(dir) => registry_auth(image, &dir).await,
        None => Ok(None),
    }
}

/// [`registry_auth`] and the source of the credentials, for messages:
/// `credHelpers.<host> in <dir>/config.json (docker-credential-<name>)`,
/// `credsStore in ...` or `auths.<host> in ...`. Pushes (liftoff-build's
/// registries) read credentials through this too, so pulls and pushes
/// share one credential path.
pub async fn registry_auth_and_source(image: &str, dir: &Path) -> anyhow::Result<Option<(RegistryAuth, String)>> {
    lookup(image, dir, None, HELPER_TIMEOUT).await
}

/// [`registry_auth`], looking helpers up in `path` instead of `$PATH`.
async fn registry_auth_with(
    image: &str,
    dir: &Path,
    path: Option<OsString>,
    timeout: Duration,
) -> anyhow::Result<Option<RegistryAuth>> {
    Ok(lookup(image, dir, path, timeout).await?.map(|(auth, _)| auth))
}

async fn lookup(
    image: &str,
    dir: &Path,
    path: Option<OsString>,
    timeout: Duration,
) -> anyhow::Result<Option<(RegistryAuth, String)>> {
    let file = dir.join("config.json");
    let text = match std::fs::read(&file) {
        Ok(t) if t.len() <= 1 << 20 => t,
        Ok(_) => anyhow::bail!("{} is larger than 1 MiB", file.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("failed to read {}: {e}", file.display()),
    };
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", file.display()))?;
    let image = ImageRef::parse(image).map_err(|e| anyhow::anyhow!("image '{image}' is not a valid reference: {e}"))?;
    let host = image.registry();
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| normalise(k) == normalise(host)))
        .map(|(k, v)| (format!("credHelpers.{k}"), v))
        .or_else(|| config.get("credsStore").map(|v| ("credsStore".to_string(), v)));
    if let Some((field, name)) = helper {
        let name = name.as_str().filter(|n| valid_helper_name(n)).ok_or_else(|| {
            anyhow::anyhow!(
                "{field} in {} must name a credential helper (letters, digits, '.', '_', '-'), not {name}",
                file.display()
            )
        })?;
        let source = format!("{field} in {} (docker-credential-{name})", file.display());
        return Ok(run_helper(name, &field, host, path, timeout).await?.map(|a| (a, source)));
    }
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else { return Ok(None) };
    let entry = auths.iter().find(|(k, _)| normalise(k) == normalise(host));
    let Some((key, entry)) = entry else { return Ok(None) };
    let source = format!("auths.{key} in {}", file.display());
    let (username, password) = if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| anyhow::anyhow!("auths.{host}.auth in {} is not base64", file.display()))?;
        let raw = String::from_utf8(raw)
            .map_err(|_| anyhow::anyhow!("auths.{host}.auth in {} is not UTF-8", file.display()))?;
        let (u, p) = raw
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("auths.{host}.auth in {} is not user:password", file.display()))?;
        (u.to_string(), p.to_string())
    } else {
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
        match (field("username"), field("password")) {
            (Some(u), Some(p)) => (u, p),
            _ => return Ok(None),
        }
    };
    Ok(Some((RegistryAuth { username, password, serveraddress: host.to_string() }, source)))
}

fn valid_helper_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// At most [`HELPER_OUTPUT_LIMIT`] bytes of a helper's pipe.
async fn read_bounded(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(HELPER_OUTPUT_LIMIT).read_to_end(&mut buf).await;
    }
    buf
}

/// `docker-credential-<name> get` with the registry on stdin, as the Docker
/// CLI runs it. "credentials not found" is `None` (the CLI pulls anonymously
/// then too); any other failure is an error naming the helper. The helper's
/// output is never quoted on success or when it is not the JSON expected,
/// since it may hold the secret.
async fn run_helper(
    name: &str,
    field: &str,
    host: &str,
    path: Option<OsString>,
    timeout: Duration,
) -> anyhow::Result<Option<RegistryAuth>> {
    let program = format!("docker-credential-{name}");
    let mut command = tokio::process::Command::new(&program);
    command.arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("credential helper {program} (from {field}) is not on PATH"),
        _ => anyhow::anyhow!("failed to run credential helper {program} (from {field}): {e}"),
    })?;
    // Docker Hub's helper key is its v1 URL; other registries go by host.
    let server = if host == "docker.io" { "https://index.docker.io/v1/" } else { host };
    let (mut stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let talk = async {
        if let Some(stdin) = stdin.as_mut() {
            // a helper that does not read its input is its own business
            let _ = stdin.write_all(server.as_bytes()).await;
        }
        drop(stdin);
        let (out, err) = tokio::join!(read_bounded(stdout), read_bounded(stderr));
        (child.wait().await, out, err)
    };
    let (status, out, err) = tokio::time::timeout(timeout, talk).await.map_err(|_| {
        anyhow::anyhow!("credential helper {program} (from {field}) did not answer within {} s", timeout.as_secs())
    })?;
    let status = status.map_err(|e| anyhow::anyhow!("credential helper {program}: {e}"))?;
    let said = |b: &[u8]| String::from_utf8_lossy(b).trim().chars().take(300).collect::<String>();
    if !status.success() {
        let message = [said(&out), said(&err)].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
        if message.contains("credentials not found") {
            return Ok(None);
        }
        anyhow::bail!("credential helper {program} (from {field}) failed for {server} ({status}): {message}");
    }
    let answer: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    let field_of = |k: &str| answer.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(username), Some(secret)) = (field_of("Username"), field_of("Secret")) else {
        anyhow::bail!(
            "credential helper {program} (from {field}) gave no {{\"Username\", \"Secret\"}} JSON for {server}"
        );
    };
    Ok(Some(RegistryAuth { username, password: secret, serveraddress: host.to_string() }))
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

    /// Writes `docker-credential-<name>`, a shell script running `body`, into
    /// `dir/bin`; returns a search path with that directory first.
    fn helper(dir: &Path, name: &str, body: &str) -> OsString {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut search = bin.into_os_string();
        search.push(":/usr/bin:/bin");
        search
    }

    #[tokio::test]
    async fn credential_helpers_are_asked_as_the_docker_cli_asks_them() {
        let dir = tempfile::tempdir().unwrap();
        let known = r#"[ "$1" = get ] || exit 3
read -r server
case "$server" in
  reg.example:5000) echo '{"ServerURL":"reg.example:5000","Username":"ada","Secret":"s3cret"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"tok"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#;
        let path = helper(dir.path(), "known", known);
        helper(dir.path(), "broken", "echo 'the keychain is locked' >&2; exit 2");
        helper(dir.path(), "garbage", "echo 'Secret: s3cret, not JSON'");
        let write =
            |config: serde_json::Value| std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let auth = |image: &'static str| registry_auth_with(image, dir.path(), Some(path.clone()), HELPER_TIMEOUT);

        // credsStore serves every registry; its answer wins over an inline entry
        let b64 = base64::engine::general_purpose::STANDARD.encode("inline:pw");
        write(serde_json::json!({"credsStore": "known", "auths": {"reg.example:5000": {"auth": b64}}}));
        let a = auth("reg.example:5000/team/img:1").await.unwrap().unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str(), a.serveraddress.as_str()),
            ("ada", "s3cret", "reg.example:5000")
        );
        let hub = auth("busybox").await.unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("<token>", "tok"),
            "Docker Hub is asked by its v1 URL"
        );
        assert!(auth("ghcr.io/x/y").await.unwrap().is_none(), "not found: anonymous, as with the docker CLI");

        // credHelpers names a helper per registry and beats credsStore
        write(serde_json::json!({"credsStore": "broken", "credHelpers": {"reg.example:5000": "known"}}));
        assert_eq!(auth("reg.example:5000/img").await.unwrap().unwrap().username, "ada");
        let (_, source) =
            lookup("reg.example:5000/img", dir.path(), Some(path.clone()), HELPER_TIMEOUT).await.unwrap().unwrap();
        let file = dir.path().join("config.json");
        assert_eq!(source, format!("credHelpers.reg.example:5000 in {} (docker-credential-known)", file.display()));
        let e = auth("ghcr.io/x/y").await.unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-broken (from credsStore) failed for ghcr.io")
                && e.contains("the keychain is locked"),
            "{e}"
        );

        write(serde_json::json!({"credsStore": "garbage"}));
        let e = auth("ghcr.io/x/y").await.unwrap_err().to_string();
        assert!(e.contains("gave no") && !e.contains("s3cret"), "the output is not quoted: {e}");
        write(serde_json::json!({"credHelpers": {"ghcr.io": "absent"}}));
        let e = auth("ghcr.io/x/y").await.unwrap_err().to_string();
        assert_eq!(e, "credential helper docker-credential-absent (from credHelpers.ghcr.io) is not on PATH");
        write(serde_json::json!({"credsStore": "../../bin/sh"}));
        let e = auth("ghcr.io/x/y").await.unwrap_err().to_string();
        assert!(e.starts_with("credsStore in ") && e.contains("must name a credential helper"), "{e}");
    }

    #[tokio::test]
    async fn a_helper_that_hangs_is_killed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = helper(dir.path(), "slow", "echo $$ > \"$(dirname \"$0\")/pid\"; exec sleep 120");
        std::fs::write(dir.path().join("config.json"), r#"{"credsStore": "slow"}"#).unwrap();
        let started = std::time::Instant::now();
        let e = registry_auth_with("ghcr.io/x", dir.path(), Some(path), Duration::from_secs(1)).await.unwrap_err();
        let e = e.to_string();
        assert_eq!(e, "credential helper docker-credential-slow (from credsStore) did not answer within 1 s");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(dir.path().join("bin/pid")).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // gone, or a zombie waiting for the runtime to reap it
        let alive = loop {
            let alive = std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z "));
            if !alive || std::time::Instant::now() > deadline {
                break alive;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!alive, "the helper was killed");
    }

    #[tokio::test]
    async fn finds_credentials_by_registry_host() {
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
        let a = registry_auth("127.0.0.1:5000/team/img:1", dir.path()).await.unwrap().unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str(), a.serveraddress.as_str()),
            ("ada", "s3cret", "127.0.0.1:5000")
        );
        let hub = registry_auth("library/busybox", dir.path()).await.unwrap().unwrap();
        assert_eq!(hub.username, "hub");
        let (_, source) = registry_auth_and_source("127.0.0.1:5000/x", dir.path()).await.unwrap().unwrap();
        assert_eq!(source, format!("auths.127.0.0.1:5000 in {}", dir.path().join("config.json").display()));
        assert!(registry_auth("ghcr.io/x/y", dir.path()).await.unwrap().is_none());
        let none = tempfile::tempdir().unwrap();
        assert!(registry_auth("img", none.path()).await.unwrap().is_none(), "no config: anonymous");
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        assert!(registry_auth("img", dir.path()).await.unwrap_err().to_string().contains("not valid JSON"));
    }
}
