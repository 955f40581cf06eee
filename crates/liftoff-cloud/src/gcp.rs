//! [`GcpEnv`]: Google application default credentials, in their order:
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server;
//! region and project resolved as the reference does (inventory item 34).
//!
//! The token exchanges are written here rather than taken from gcp_auth
//! (0.12), which does honour a key's `token_uri` but reports every refusal
//! as "token request failed", keeping Google's reason (`invalid_grant:
//! Invalid JWT Signature.`, a disabled key, a deleted account) out of the
//! error, and retries a refused grant four times. Each is one form POST or
//! GET: a service account's RFC 7523 JWT bearer grant, signed RS256 with
//! aws-lc-rs and posted to the key's own `token_uri`; an `authorized_user`
//! refresh token (RFC 6749 §6); the metadata server's token.

use crate::{AccessToken, CloudError, Identity, Secret};
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The scope every token is asked for (Artifact Registry, GCS, Vertex).
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const NO_CREDENTIALS_FIX: &str = "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS \
     to a service-account key file, or run on a GCP VM or GKE with a service account";
/// How long the metadata server may take to answer before it counts as absent.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// A GCP environment: credentials, project and region, each with where it came from.
#[derive(Clone)]
pub struct GcpEnv {
    creds: Creds,
    source: String,
    project: Resolved,
    region: Resolved,
    storage_endpoint: Option<String>,
}

/// A value and where it came from, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub value: String,
    pub source: String,
}

#[derive(Clone)]
enum Creds {
    ServiceAccount(Arc<ServiceAccount>),
    User(Arc<UserCredentials>),
    Metadata(Arc<Metadata>),
}

/// How to build a [`GcpEnv`]: the config's values, and for tests a key file
/// instead of the process environment.
#[derive(Debug, Clone, Default)]
pub struct GcpEnvBuilder {
    region: Option<String>,
    project: Option<String>,
    key_file: Option<PathBuf>,
    storage_endpoint: Option<String>,
}

impl GcpEnvBuilder {
    pub fn region(mut self, region: Option<&str>) -> Self {
        self.region = region.map(str::to_string);
        self
    }

    pub fn project(mut self, project: Option<&str>) -> Self {
        self.project = project.map(str::to_string);
        self
    }

    /// A credentials file used as if GOOGLE_APPLICATION_CREDENTIALS named it.
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// A GCS endpoint instead of storage.googleapis.com (an emulator or a test's fake);
    /// `STORAGE_EMULATOR_HOST` does the same from the environment, as in Google's libraries.
    pub fn storage_endpoint(mut self, url: impl Into<String>) -> Self {
        self.storage_endpoint = Some(url.into());
        self
    }

    /// Finds the credentials (reading files; the metadata server only when no
    /// file is found), then the project and the region.
    pub async fn load(self) -> Result<GcpEnv, CloudError> {
        let key_file = self.key_file.clone().or_else(|| {
            std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|v| !v.is_empty()).map(PathBuf::from)
        });
        let (creds, source, cred_project) = find_credentials(key_file.as_deref()).await?;
        let project = match (self.project, cred_project) {
            (Some(p), _) => Resolved { value: p, source: "environment.project".into() },
            (None, Some(p)) => p,
            (None, None) => {
                return Err(CloudError::Config(format!(
                    "no gcp project: the credentials from {source} name none; set environment.project, \
                     or `gcloud auth application-default set-quota-project <project>`"
                )));
            }
        };
        let region = match self.region {
            Some(r) => Resolved { value: r, source: "environment.region".into() },
            None => pick_region(None, gcloud_region().await, std::env::var("GOOGLE_CLOUD_REGION").ok())?,
        };
        let storage_endpoint = self.storage_endpoint.or_else(|| {
            std::env::var("STORAGE_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .map(|h| if h.contains("://") { h } else { format!("http://{h}") })
        });
        Ok(GcpEnv { creds, source, project, region, storage_endpoint })
    }
}

impl GcpEnv {
    pub fn builder() -> GcpEnvBuilder {
        GcpEnvBuilder::default()
    }

    pub fn project(&self) -> &str {
        &self.project.value
    }

    pub fn region(&self) -> &str {
        &self.region.value
    }

    /// Where the project came from: `environment.project`, the key's `project_id`...
    pub fn project_source(&self) -> &str {
        &self.project.source
    }

    pub fn region_source(&self) -> &str {
        &self.region.source
    }

    /// The GCS endpoint override, if any.
    pub fn storage_endpoint(&self) -> Option<&str> {
        self.storage_endpoint.as_deref()
    }

    /// The credential source: `GOOGLE_APPLICATION_CREDENTIALS (/path/key.json)`, `metadata server`...
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A `cloud-platform` access token (cached until shortly before it expires).
    pub async fn access_token(&self) -> Result<AccessToken, CloudError> {
        let fail = |message: String| CloudError::Credentials {
            cloud: "gcp",
            source_name: self.source.clone(),
            message: format!("{message}; {}", fix_for(&self.creds)),
        };
        let token = match &self.creds {
            Creds::ServiceAccount(sa) => sa.cache.get(|| sa.fetch()).await,
            Creds::User(u) => u.cache.get(|| u.fetch()).await,
            Creds::Metadata(m) => m.cache.get(|| m.fetch()).await,
        }
        .map_err(fail)?;
        Ok(AccessToken { token: Secret::new(token), source: self.source.clone() })
    }

    /// The service account's e-mail, or the user credentials' client; checked by getting a token.
    pub async fn identity(&self) -> Result<Identity, CloudError> {
        self.access_token().await?;
        let who = match &self.creds {
            Creds::ServiceAccount(sa) => sa.email.clone(),
            Creds::User(u) => format!("gcloud user credentials (OAuth client {})", u.client_id),
            Creds::Metadata(_) => metadata_email().await.unwrap_or_else(|| "the VM's default service account".into()),
        };
        // the project is not the identity's: `project()` and `project_source()` say which is used
        Ok(Identity { who, source: self.source.clone(), account: None })
    }
}

fn fix_for(creds: &Creds) -> &'static str {
    match creds {
        Creds::ServiceAccount(_) => {
            "check that the key is not deleted or disabled (`gcloud iam service-accounts keys list`) and that its token_uri is reachable"
        }
        Creds::User(_) => "run `gcloud auth application-default login` again",
        Creds::Metadata(_) => "check the VM's service account and its access scopes",
    }
}

/// The error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The fields of a credentials file that choose how it is used.
#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    project_id: Option<String>,
    quota_project_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
    private_key: Option<String>,
}

async fn find_credentials(key_file: Option<&Path>) -> Result<(Creds, String, Option<Resolved>), CloudError> {
    let mut tried = Vec::new();
    if let Some(path) = key_file {
        let source = format!("GOOGLE_APPLICATION_CREDENTIALS ({})", path.display());
        return read_file(path, &source).map(|(c, p)| (c, source, p));
    }
    tried.push("GOOGLE_APPLICATION_CREDENTIALS (not set)".to_string());
    if let Some(path) = gcloud_adc_path() {
        if path.is_file() {
            let source = format!("gcloud's application default credentials ({})", path.display());
            return read_file(&path, &source).map(|(c, p)| (c, source, p));
        }
        tried.push(format!("gcloud's application default credentials ({}: no such file)", path.display()));
    }
    match tokio::time::timeout(METADATA_TIMEOUT, metadata_get("project/project-id")).await {
        Ok(Ok(project)) => {
            let project = Resolved { value: project, source: "the metadata server's project".into() };
            let m = Metadata { cache: TokenCache::default() };
            return Ok((Creds::Metadata(Arc::new(m)), "the metadata server".into(), Some(project)));
        }
        Ok(Err(e)) => tried.push(format!("the metadata server ({e})")),
        Err(_) => tried.push(format!("the metadata server (no answer in {} s)", METADATA_TIMEOUT.as_secs())),
    }
    Err(CloudError::NoCredentials { cloud: "gcp", tried: tried.join(", "), fix: NO_CREDENTIALS_FIX.into() })
}

/// `$CLOUDSDK_CONFIG/application_default_credentials.json`, else `~/.config/gcloud/...`.
fn gcloud_adc_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config/gcloud"),
    };
    Some(dir.join("application_default_credentials.json"))
}

fn read_file(path: &Path, source: &str) -> Result<(Creds, Option<Resolved>), CloudError> {
    let bad = |message: String| CloudError::Credentials { cloud: "gcp", source_name: source.to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    // serde_json's messages quote no input, so a key never reaches an error
    let f: CredentialsFile =
        serde_json::from_str(&text).map_err(|e| bad(format!("{} is not a credentials file: {e}", path.display())))?;
    match f.kind.as_str() {
        "service_account" => {
            let email = f.client_email.clone().ok_or_else(|| bad("the key has no client_email".into()))?;
            let key = private_key(f.private_key.as_deref())
                .map_err(|m| bad(format!("the service-account key cannot be used: {m}")))?;
            let token_uri = f.token_uri.clone().unwrap_or_else(|| GOOGLE_TOKEN_URI.into());
            let project = f
                .project_id
                .map(|p| Resolved { value: p, source: format!("the service account key's project_id ({email})") });
            let sa = ServiceAccount { email, key, token_uri, cache: TokenCache::default() };
            Ok((Creds::ServiceAccount(Arc::new(sa)), project))
        }
        "authorized_user" => {
            let need = |v: Option<String>, name: &str| v.ok_or_else(|| bad(format!("the file has no {name}")));
            let user = UserCredentials {
                client_id: need(f.client_id, "client_id")?,
                client_secret: Secret::new(need(f.client_secret, "client_secret")?),
                refresh_token: Secret::new(need(f.refresh_token, "refresh_token")?),
                token_uri: f.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.into()),
                cache: TokenCache::default(),
            };
            let project =
                f.quota_project_id.map(|p| Resolved { value: p, source: "the credentials' quota_project_id".into() });
            Ok((Creds::User(Arc::new(user)), project))
        }
        other => Err(bad(format!(
            "credentials of type '{other}' are not supported yet (service_account and authorized_user are); \
             use a service-account key or `gcloud auth application-default login`"
        ))),
    }
}

const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA: &str = "http://metadata.google.internal/computeMetadata/v1";

/// A token kept until a minute before it expires, as Google's libraries do.
#[derive(Default)]
struct TokenCache(Mutex<Option<(Secret, Instant)>>);

impl TokenCache {
    async fn get<F: Future<Output = Result<TokenResponse, String>>>(
        &self,
        fetch: impl FnOnce() -> F,
    ) -> Result<String, String> {
        let mut cached = self.0.lock().await;
        if let Some((t, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(t.expose().to_string());
        }
        let t = fetch().await?;
        let life = Duration::from_secs(t.expires_in.unwrap_or(3600).saturating_sub(60));
        *cached = Some((Secret::new(t.access_token.clone()), Instant::now() + life));
        Ok(t.access_token)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// Sends a token request; a refusal keeps the endpoint's OAuth error
/// (`invalid_grant: ...`), which names the problem and never the secret.
async fn exchange(req: reqwest::RequestBuilder, url: &str) -> Result<TokenResponse, String> {
    let resp = req
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", chain(&e.without_url())))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let reason = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) if v["error"].is_string() => match v["error_description"].as_str() {
                Some(d) => format!("{}: {d}", v["error"].as_str().unwrap_or_default()),
                None => v["error"].as_str().unwrap_or_default().to_string(),
            },
            _ => body.chars().take(200).collect::<String>().trim().to_string(),
        };
        return Err(format!("{url} refused the request ({status}): {reason}"));
    }
    resp.json().await.map_err(|e| format!("{url} answered without an access token: {e}"))
}

/// A service-account key.
struct ServiceAccount {
    email: String,
    key: RsaKeyPair,
    token_uri: String,
    cache: TokenCache,
}

impl ServiceAccount {
    /// The JWT bearer grant: an assertion from the key's account for the
    /// cloud-platform scope, addressed to (and posted to) its `token_uri`.
    async fn fetch(&self) -> Result<TokenResponse, String> {
        let iat =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": CLOUD_PLATFORM,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + 3600,
        });
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| "signing the assertion failed".to_string())?;
        let assertion = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)];
        exchange(reqwest::Client::new().post(&self.token_uri).form(&form), &self.token_uri).await
    }
}

/// The key's `private_key`: PKCS#8 PEM. Messages never quote it.
fn private_key(pem: Option<&str>) -> Result<RsaKeyPair, String> {
    let pem = pem.ok_or("it has no private_key")?;
    let body: String = pem.lines().map(str::trim).filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).map_err(|_| "its private_key is not PEM")?;
    RsaKeyPair::from_pkcs8(&der).map_err(|_| "its private_key is not a PKCS#8 RSA key".to_string())
}

/// `gcloud auth application-default login` credentials: a refresh token
/// exchanged at `token_uri` (RFC 6749 §6).
struct UserCredentials {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    token_uri: String,
    cache: TokenCache,
}

impl UserCredentials {
    async fn fetch(&self) -> Result<TokenResponse, String> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        exchange(reqwest::Client::new().post(&self.token_uri).form(&form), &self.token_uri).await
    }
}

/// The VM's (or GKE workload's) service account, through the metadata server.
struct Metadata {
    cache: TokenCache,
}

impl Metadata {
    async fn fetch(&self) -> Result<TokenResponse, String> {
        let url = format!("{METADATA}/instance/service-accounts/default/token?scopes={CLOUD_PLATFORM}");
        exchange(reqwest::Client::new().get(&url).header("Metadata-Flavor", "Google"), &url).await
    }
}

/// A metadata value (`project/project-id`...).
async fn metadata_get(path: &str) -> Result<String, String> {
    let resp = reqwest::Client::new()
        .get(format!("{METADATA}/{path}"))
        .header("Metadata-Flavor", "Google")
        .timeout(METADATA_TIMEOUT)
        .send()
        .await
        .map_err(|e| chain(&e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("{path}: {}", resp.status()));
    }
    resp.text().await.map(|t| t.trim().to_string()).map_err(|e| e.to_string())
}

/// `gcloud config get-value compute/region`, when gcloud is installed.
async fn gcloud_region() -> Option<String> {
    let out = tokio::process::Command::new("gcloud")
        .args(["config", "get-value", "compute/region"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.ok()?.ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The region as the reference picks it: the config, else gcloud's value
/// (ignored if it contains "unset"), else `GOOGLE_CLOUD_REGION`, else an error.
pub fn pick_region(config: Option<&str>, gcloud: Option<String>, env: Option<String>) -> Result<Resolved, CloudError> {
    if let Some(r) = config {
        return Ok(Resolved { value: r.to_string(), source: "environment.region".into() });
    }
    if let Some(r) = gcloud.filter(|r| !r.is_empty() && !r.contains("unset")) {
        return Ok(Resolved { value: r, source: "gcloud config compute/region".into() });
    }
    if let Some(r) = env.filter(|r| !r.is_empty()) {
        return Ok(Resolved { value: r, source: "GOOGLE_CLOUD_REGION".into() });
    }
    Err(CloudError::Config(
        "no gcp region: set environment.region, or `gcloud config set compute/region <region>`, or GOOGLE_CLOUD_REGION"
            .into(),
    ))
}

async fn metadata_email() -> Option<String> {
    metadata_get("instance/service-accounts/default/email").await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // inventory item 34
    #[test]
    fn region_from_config_then_gcloud_then_the_environment() {
        let r = |c: Option<&str>, g: Option<&str>, e: Option<&str>| {
            pick_region(c, g.map(str::to_string), e.map(str::to_string)).map(|r| (r.value, r.source))
        };
        assert_eq!(r(Some("europe-west4"), Some("us-east1"), None).unwrap().0, "europe-west4");
        assert_eq!(
            r(None, Some("us-east1"), Some("asia-east1")).unwrap(),
            ("us-east1".into(), "gcloud config compute/region".into())
        );
        assert_eq!(
            r(None, Some("(unset)"), Some("asia-east1")).unwrap(),
            ("asia-east1".into(), "GOOGLE_CLOUD_REGION".into())
        );
        assert_eq!(r(None, None, Some("asia-east1")).unwrap().0, "asia-east1");
        let e = r(None, Some("(unset)"), None).unwrap_err().to_string();
        assert!(e.contains("no gcp region") && e.contains("GOOGLE_CLOUD_REGION"), "{e}");
    }

    #[tokio::test]
    async fn an_unreadable_or_foreign_file_names_itself_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ext.json");
        std::fs::write(&p, r#"{"type":"external_account","client_secret":"do-not-print-me"}"#).unwrap();
        let e = GcpEnv::builder().key_file(&p).region(Some("r")).load().await.err().unwrap().to_string();
        assert!(e.contains("GOOGLE_APPLICATION_CREDENTIALS") && e.contains("external_account"), "{e}");
        assert!(!e.contains("do-not-print-me"), "{e}");
        let p = dir.path().join("broken.json");
        std::fs::write(&p, r#"{"type":"service_account","private_key":"do-not-print-me", "#).unwrap();
        let e = GcpEnv::builder().key_file(&p).load().await.err().unwrap().to_string();
        assert!(e.contains("is not a credentials file") && !e.contains("do-not-print-me"), "{e}");
    }
}
