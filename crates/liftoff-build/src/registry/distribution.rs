//! The Distribution (OCI) API client every registry kind shares: the auth
//! dance (anonymous, Basic, Bearer tokens from the challenge's realm), the
//! manifest HEAD and the push check.
//!
//! Hand-written over reqwest rather than oci-client: it needs only a HEAD, a
//! blob upload and a blob DELETE, it must tell 401 from 403 and name the
//! credential source in both, and it reads every body bounded; oci-client
//! would bring its own token cache and error types to wrap, and more crates.

use super::challenge::parse_challenges;
use super::{Login, LoginSource, Manifest, PushCheck, RegistryError};
use base64::Engine;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex;
use url::Url;

/// What a manifest HEAD accepts: OCI and Docker images and indexes.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// The most read of an error body (for its message).
const ERROR_BODY_LIMIT: usize = 16 * 1024;
/// The most read of a token answer.
const TOKEN_BODY_LIMIT: usize = 256 * 1024;
/// The most read of a manifest (only when the registry sent no digest header).
const MANIFEST_BODY_LIMIT: usize = 4 << 20;
/// The most read of one page of a tag list.
const TAGS_BODY_LIMIT: usize = 8 << 20;
/// How long a login without an expiry is reused (a docker config can change).
const LOGIN_REUSE: Duration = Duration::from_secs(300);
/// Tokens and logins are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// How the registry wants to be authenticated, learnt from its first 401.
#[derive(Clone)]
enum Scheme {
    Unknown,
    Basic,
    Bearer,
}

struct AuthState {
    login: Option<(Login, Instant)>,
    scheme: Scheme,
    /// Bearer tokens by the actions they were asked for (`pull`, `pull,push`, `delete`).
    tokens: HashMap<String, (String, Instant)>,
}

/// One repository of one registry.
/// A registry whose operations all go through one [`Distribution`] client:
/// OCI, ECR, Artifact Registry and ACR differ only in how they log in.
pub(crate) trait OverDistribution: Send + Sync {
    fn client(&self) -> &Distribution;
    fn repository_uri(&self) -> &str;
    /// For messages: `ECR`, `Artifact Registry`, `ACR`, `registry`.
    fn kind(&self) -> &'static str;
}

#[async_trait::async_trait]
impl<T: OverDistribution> super::Registry for T {
    fn repository(&self) -> &str {
        self.repository_uri()
    }

    fn describe(&self) -> String {
        format!("{} {}", self.kind(), self.repository_uri())
    }

    async fn login(&self) -> Result<Login, RegistryError> {
        self.client().current_login().await
    }

    async fn manifest_digest(&self, tag: &str) -> Result<Option<String>, RegistryError> {
        self.client().manifest_digest(tag).await
    }

    async fn push_check(&self) -> Result<PushCheck, RegistryError> {
        self.client().push_check().await
    }

    async fn manifest(&self, reference: &str) -> Result<Option<Manifest>, RegistryError> {
        self.client().manifest(reference).await
    }

    async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, RegistryError> {
        self.client().blob(digest, limit).await
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        self.client().has_blob(digest).await
    }

    async fn put_blob(&self, digest: &str, blob: bytes::Bytes) -> Result<(), RegistryError> {
        self.client().put_blob(digest, blob).await
    }

    async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: bytes::Bytes,
    ) -> Result<String, RegistryError> {
        self.client().put_manifest(reference, media_type, body).await
    }

    async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        self.client().tags().await
    }

    async fn delete_manifest(&self, digest: &str) -> Result<(), RegistryError> {
        self.client().delete_manifest(digest).await
    }
}

pub(crate) struct Distribution {
    http: reqwest::Client,
    /// `http(s)://host[:port]/`: https, except for loopback hosts (as Docker
    /// treats them as insecure registries by default), or a test's endpoint.
    base: Url,
    /// The repository path in the registry (`team/app`).
    name: String,
    /// For messages: [`super::Registry::describe`].
    registry: String,
    login: Arc<dyn LoginSource>,
    state: Mutex<AuthState>,
}

/// `http://` for loopback hosts, `https://` for the rest.
pub(crate) fn base_url(host: &str) -> Result<Url, String> {
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.split(':').next().unwrap_or(host),
    };
    let loopback = bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let scheme = if loopback { "http" } else { "https" };
    Url::parse(&format!("{scheme}://{host}/")).map_err(|e| format!("'{host}' is not a registry host: {e}"))
}

impl Distribution {
    pub(crate) fn new(base: Url, name: &str, registry: String, login: Arc<dyn LoginSource>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // a redirect would carry our Authorization header elsewhere
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            base,
            name: name.to_string(),
            registry,
            login,
            state: Mutex::new(AuthState { login: None, scheme: Scheme::Unknown, tokens: HashMap::new() }),
        }
    }

    pub(crate) fn set_base(&mut self, base: Url) {
        self.base = base;
    }

    fn other(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Other { registry: self.registry.clone(), message: message.into() }
    }

    fn unauthorized(&self, source: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            source_name: source.to_string(),
            message: message.into(),
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{}/{path}", self.name));
        u
    }

    /// The login, reused until it expires (or [`LOGIN_REUSE`]).
    pub(crate) async fn current_login(&self) -> Result<Login, RegistryError> {
        let mut st = self.state.lock().await;
        if let Some((l, until)) = &st.login
            && Instant::now() < *until
        {
            return Ok(l.clone());
        }
        let l = self.login.login().await?;
        let until = match l.expires.and_then(|e| e.duration_since(SystemTime::now()).ok()) {
            Some(left) => Instant::now() + left.saturating_sub(EXPIRY_MARGIN).min(LOGIN_REUSE),
            // an expiry in the past (moto's ECR tokens): ask each time
            None if l.expires.is_some() => Instant::now(),
            None => Instant::now() + LOGIN_REUSE,
        };
        st.login = Some((l.clone(), until));
        Ok(l)
    }

    /// Forgets the login and tokens after a refusal, so the next call asks again.
    async fn forget(&self) {
        let mut st = self.state.lock().await;
        st.login = None;
        st.tokens.clear();
    }

    /// The Authorization header to send up front, if the scheme is known.
    async fn known_header(&self, actions: &str) -> Result<Option<(String, String)>, RegistryError> {
        let scheme = self.state.lock().await.scheme.clone();
        match scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => {
                let l = self.current_login().await?;
                Ok(l.auth.as_ref().map(|a| (basic(&a.username, &a.password), l.source.clone())))
            }
            Scheme::Bearer => {
                let st = self.state.lock().await;
                let cached = st.tokens.get(actions).filter(|(_, until)| Instant::now() < *until);
                let source = st.login.as_ref().map(|(l, _)| l.source.clone()).unwrap_or_default();
                Ok(cached.map(|(t, _)| (format!("Bearer {t}"), source)))
            }
        }
    }

    /// Sends the request `build` makes (called again for the retry), doing
    /// the auth dance on a 401: Basic with the login, or a Bearer token from
    /// the challenge's realm for `actions` on this repository. A second 401,
    /// or a 403, is [`RegistryError::Unauthorized`].
    async fn send(
        &self,
        actions: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let known = self.known_header(actions).await?;
        let first = self.attempt(&build, known.as_ref().map(|(h, _)| h.as_str())).await?;
        if first.status() == StatusCode::FORBIDDEN {
            let source = match known {
                Some((_, s)) => s,
                None => "anonymous".to_string(),
            };
            return Err(self.refused(first, &source, actions).await);
        }
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenges: Vec<_> = first
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let login = self.current_login().await?;
        let (auth_header, scheme) = if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = c.param("realm").ok_or_else(|| self.other("its Bearer challenge names no realm"))?;
            let realm =
                Url::parse(realm).map_err(|e| self.other(format!("its token realm '{realm}' is not a URL: {e}")))?;
            // credentials go to the realm: only over https, unless both ends are loopback
            let local = |u: &Url| u.host_str().and_then(|h| base_url(h).ok()).is_some_and(|b| b.scheme() == "http");
            if realm.scheme() != "https" && !(local(&realm) && local(&self.base)) {
                return Err(self.other(format!("its token realm {realm} is not https: credentials are not sent there")));
            }
            let service = c.param("service").map(str::to_string);
            let scope = format!("repository:{}:{actions}", self.name);
            let token = self.fetch_token(&realm, service.as_deref(), &scope, &login).await?;
            self.state.lock().await.tokens.insert(actions.to_string(), token.clone());
            (format!("Bearer {}", token.0), Scheme::Bearer)
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(a) = &login.auth else {
                return Err(self.unauthorized(&login.source, "the registry requires credentials (Basic auth)"));
            };
            (basic(&a.username, &a.password), Scheme::Basic)
        } else {
            let got = first.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
            return Err(self.unauthorized(
                &login.source,
                format!("401 without a Basic or Bearer challenge (Www-Authenticate: '{got}')"),
            ));
        };
        self.state.lock().await.scheme = scheme;
        let second = self.attempt(&build, Some(&auth_header)).await?;
        if matches!(second.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let e = self.refused(second, &login.source, actions).await;
            self.forget().await;
            return Err(e);
        }
        Ok(second)
    }

    async fn attempt(
        &self,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
        auth: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut req = build(&self.http);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.send().await.map_err(|e| self.other(format!("cannot reach {}: {}", self.base, error_chain(&e))))
    }

    /// [`RegistryError::Unauthorized`] with the registry's own words.
    async fn refused(&self, resp: Response, source: &str, actions: &str) -> RegistryError {
        let status = resp.status();
        // a token without the actions asked for: the registry says so in its challenge
        let scope_short = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .any(|c| c.param("error") == Some("insufficient_scope"));
        let said = error_text(resp).await;
        let message = match status {
            StatusCode::FORBIDDEN => format!("access denied (403): {said}"),
            _ if scope_short => {
                format!("they do not allow {actions} on {} (insufficient_scope, {status}): {said}", self.name)
            }
            _ => format!("authentication failed ({status}): {said}"),
        };
        self.unauthorized(source, message)
    }

    /// A Bearer token from `realm` for `scope`, with the login's credentials
    /// as Basic auth (none: an anonymous token), and how long to use it.
    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
        login: &Login,
    ) -> Result<(String, Instant), RegistryError> {
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.http.get(url);
        if let Some(a) = &login.auth {
            req = req.basic_auth(&a.username, Some(&a.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.other(format!("cannot reach its token server {realm}: {}", error_chain(&e))))?;
        let status = resp.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let said = error_text(resp).await;
            return Err(
                self.unauthorized(&login.source, format!("the token server {realm} refused them ({status}): {said}"))
            );
        }
        if !status.is_success() {
            let said = error_text(resp).await;
            return Err(self.other(format!("its token server {realm} answered {status}: {said}")));
        }
        let body = read_bounded(resp, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| self.other(format!("reading a token from {realm}: {e}")))?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.other(format!("its token server {realm} did not answer a token: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.other(format!("its token server {realm} answered no token")))?;
        // the spec's default lifetime is 60 s
        let life = Duration::from_secs(t.expires_in.unwrap_or(60)).saturating_sub(Duration::from_secs(10));
        Ok((token, Instant::now() + life))
    }

    /// `HEAD /v2/<name>/manifests/<reference>`: its digest, `None` on 404.
    pub(crate) async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, RegistryError> {
        check_reference(reference).map_err(|m| self.other(m))?;
        let url = self.url(&format!("manifests/{reference}"));
        let head = |m: Method| {
            let url = url.clone();
            move |c: &reqwest::Client| c.request(m.clone(), url.clone()).header(header::ACCEPT, MANIFEST_TYPES)
        };
        let resp = self.send("pull", head(Method::HEAD)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_success() => {}
            s => return Err(self.other(format!("manifest HEAD {reference} answered {s}"))),
        }
        if let Some(d) = digest_header(&resp) {
            return Ok(Some(d));
        }
        // some registries leave the header out of HEAD: hash the manifest itself
        let resp = self.send("pull", head(Method::GET)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.other(format!("manifest GET {reference} answered {}", resp.status())));
        }
        if let Some(d) = digest_header(&resp) {
            return Ok(Some(d));
        }
        let body = read_bounded(resp, MANIFEST_BODY_LIMIT)
            .await
            .map_err(|e| self.other(format!("reading manifest {reference}: {e}")))?;
        Ok(Some(format!("sha256:{}", hex::encode(Sha256::digest(&body)))))
    }

    /// Uploads a tiny unique blob (POST, then a monolithic PUT with its
    /// digest), then deletes it.
    pub(crate) async fn push_check(&self) -> Result<PushCheck, RegistryError> {
        let blob = bytes::Bytes::from(format!("liftoff push check {}\n", uuid::Uuid::new_v4()));
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
        self.put_blob(&digest, blob).await?;
        let blob_url = self.url(&format!("blobs/{digest}"));
        match self.send("delete", |c| c.delete(blob_url.clone())).await {
            Ok(r) if r.status().is_success() => Ok(PushCheck::Deleted),
            Ok(r) => {
                let s = r.status();
                let said = error_text(r).await;
                let why = if s == StatusCode::METHOD_NOT_ALLOWED { "deletes are not enabled" } else { "it refused" };
                Ok(PushCheck::Kept {
                    reason: format!("the push works; deleting the test blob {digest} answered {s} ({why}: {said})"),
                })
            }
            Err(RegistryError::Unauthorized { message, .. }) => Ok(PushCheck::Kept {
                reason: format!("the push works; these credentials may not delete the test blob {digest}: {message}"),
            }),
            Err(e) => Err(e),
        }
    }
}

impl Distribution {
    /// `GET /v2/<name>/manifests/<reference>`: the manifest as stored (its
    /// bytes are what its digest is of), `None` on 404.
    pub(crate) async fn manifest(&self, reference: &str) -> Result<Option<Manifest>, RegistryError> {
        check_reference(reference).map_err(|m| self.other(m))?;
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send("pull", |c| c.get(url.clone()).header(header::ACCEPT, MANIFEST_TYPES)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_success() => {}
            s => return Err(self.other(format!("manifest GET {reference} answered {s}: {}", error_text(resp).await))),
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let bytes = read_bounded(resp, MANIFEST_BODY_LIMIT)
            .await
            .map_err(|e| self.other(format!("reading manifest {reference}: {e}")))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(self.other(format!("manifest {reference} arrived with digest {digest}")));
        }
        Ok(Some(Manifest { media_type, digest, bytes }))
    }

    /// `GET /v2/<name>/blobs/<digest>`, at most `limit` bytes, checked
    /// against its digest. A redirect (ECR and the clouds keep blobs in
    /// object storage) is followed without the registry's credentials.
    pub(crate) async fn blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, RegistryError> {
        check_reference(digest).map_err(|m| self.other(m))?;
        let url = self.url(&format!("blobs/{digest}"));
        let mut resp = self.send("pull", |c| c.get(url.clone())).await?;
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| self.other(format!("blob {digest}: a redirect without Location")))?;
            let target = url.join(location).map_err(|e| self.other(format!("blob {digest}: bad redirect: {e}")))?;
            resp = self
                .http
                .get(target)
                .send()
                .await
                .map_err(|e| self.other(format!("blob {digest}: {}", error_chain(&e))))?;
        }
        if !resp.status().is_success() {
            let s = resp.status();
            return Err(self.other(format!("blob GET {digest} answered {s}: {}", error_text(resp).await)));
        }
        let bytes = read_bounded(resp, limit).await.map_err(|e| self.other(format!("reading blob {digest}: {e}")))?;
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if got != digest {
            return Err(self.other(format!("blob {digest} arrived with digest {got}")));
        }
        Ok(bytes)
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: whether the repository has it.
    pub(crate) async fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        check_reference(digest).map_err(|m| self.other(m))?;
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send("pull,push", |c| c.head(url.clone())).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            // a redirect to object storage: the registry has it
            s if s.is_success() || s.is_redirection() => Ok(true),
            s => Err(self.other(format!("blob HEAD {digest} answered {s}"))),
        }
    }

    /// Uploads a blob in one piece: `POST .../blobs/uploads/`, then a
    /// monolithic `PUT` with its digest. Every registry takes this form (a
    /// chunked `PATCH` or a single-request `POST ?digest=` are optional in
    /// the spec, and ECR refuses the latter).
    pub(crate) async fn put_blob(&self, digest: &str, blob: bytes::Bytes) -> Result<(), RegistryError> {
        let start = self.url("blobs/uploads/");
        let resp = self.send("pull,push", |c| c.post(start.clone()).header(header::CONTENT_LENGTH, 0)).await?;
        if resp.status() != StatusCode::ACCEPTED {
            let s = resp.status();
            return Err(self.other(format!("starting a blob upload answered {s}: {}", error_text(resp).await)));
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.other("starting a blob upload answered no Location"))?;
        let mut put = self.base.join(location).map_err(|e| self.other(format!("bad upload Location: {e}")))?;
        put.query_pairs_mut().append_pair("digest", digest);
        if put.host_str() != self.base.host_str() || put.port_or_known_default() != self.base.port_or_known_default() {
            return Err(
                self.other(format!("the upload Location leaves the registry: {}", put.origin().ascii_serialization()))
            );
        }
        let resp = self
            .send("pull,push", |c| {
                c.put(put.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, blob.len())
                    .body(blob.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let s = resp.status();
            return Err(self.other(format!("uploading blob {digest} answered {s}: {}", error_text(resp).await)));
        }
        Ok(())
    }

    /// `PUT /v2/<name>/manifests/<reference>`; returns the manifest's digest.
    pub(crate) async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: bytes::Bytes,
    ) -> Result<String, RegistryError> {
        check_reference(reference).map_err(|m| self.other(m))?;
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self
            .send("pull,push", |c| c.put(url.clone()).header(header::CONTENT_TYPE, media_type).body(body.clone()))
            .await?;
        if !resp.status().is_success() {
            let s = resp.status();
            return Err(self.other(format!("manifest PUT {reference} answered {s}: {}", error_text(resp).await)));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        match digest_header(&resp) {
            Some(d) if d != digest => {
                Err(self.other(format!("manifest PUT {reference}: the registry says {d}, not {digest}")))
            }
            _ => Ok(digest),
        }
    }

    /// `GET /v2/<name>/tags/list`, every page (the `Link` header's `next`).
    pub(crate) async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        let mut tags = Vec::new();
        let mut first = self.url("tags/list");
        first.set_query(Some("n=1000"));
        let mut next = Some(first.to_string());
        let mut pages = 0;
        while let Some(page) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(self.other("tags/list: more than 10,000 pages"));
            }
            let url = self.base.join(&page).map_err(|e| self.other(format!("tags/list: bad next page: {e}")))?;
            if url.origin() != self.base.origin() {
                return Err(self.other("tags/list: the next page leaves the registry"));
            }
            let resp = self.send("pull", |c| c.get(url.clone())).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            if !resp.status().is_success() {
                let s = resp.status();
                return Err(self.other(format!("tags/list answered {s}: {}", error_text(resp).await)));
            }
            next =
                resp.headers().get(header::LINK).and_then(|v| v.to_str().ok()).and_then(|l| {
                    l.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(u, _)| u.to_string())
                });
            let body =
                read_bounded(resp, TAGS_BODY_LIMIT).await.map_err(|e| self.other(format!("reading tags/list: {e}")))?;
            #[derive(serde::Deserialize)]
            struct TagList {
                tags: Option<Vec<String>>,
            }
            let list: TagList =
                serde_json::from_slice(&body).map_err(|e| self.other(format!("tags/list is not a tag list: {e}")))?;
            tags.extend(list.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// `DELETE /v2/<name>/manifests/<digest>`: removes the manifest and
    /// every tag on it (the registry's garbage collector frees the blobs).
    pub(crate) async fn delete_manifest(&self, digest: &str) -> Result<(), RegistryError> {
        check_reference(digest).map_err(|m| self.other(m))?;
        let url = self.url(&format!("manifests/{digest}"));
        let resp = self.send("delete", |c| c.delete(url.clone())).await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            StatusCode::METHOD_NOT_ALLOWED => Err(self
                .other(format!("deleting manifest {digest} answered 405: deletes are not enabled on this registry"))),
            s => Err(self.other(format!("deleting manifest {digest} answered {s}: {}", error_text(resp).await))),
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn digest_header(resp: &Response) -> Option<String> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.starts_with("sha256:") || d.starts_with("sha512:"))
        .map(str::to_string)
}

/// A tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest, so that it can go in a URL path.
fn check_reference(r: &str) -> Result<(), String> {
    let tag = !r.is_empty()
        && r.len() <= 128
        && !r.starts_with(['.', '-'])
        && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    let digest = r.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if tag || digest { Ok(()) } else { Err(format!("'{r}' is neither a tag nor a digest")) }
}

/// At most `limit` bytes of the body; more is an error.
pub(crate) async fn read_bounded(mut resp: Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What an error answer says, short: the Distribution `errors` list's codes
/// and messages, else its text, else its status.
pub(crate) async fn error_text(mut resp: Response) -> String {
    let status = resp.status();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = ERROR_BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(errors) = v.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| {
                let field = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or_default();
                format!("{} {}", field("code"), field("message")).trim().to_string()
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text: String = String::from_utf8_lossy(&body).trim().chars().take(300).collect();
    if text.is_empty() { status.to_string() } else { text }
}

/// A reqwest error with its causes (its Display alone says "error sending request").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_reached_over_http_the_rest_over_https() {
        for (host, url) in [
            ("127.0.0.1:5000", "http://127.0.0.1:5000/"),
            ("127.1.2.3", "http://127.1.2.3/"),
            ("localhost:5000", "http://localhost:5000/"),
            ("[::1]:5000", "http://[::1]:5000/"),
            ("registry.example.com", "https://registry.example.com/"),
            ("10.0.0.1:5000", "https://10.0.0.1:5000/"),
            ("localhost.example.com", "https://localhost.example.com/"),
        ] {
            assert_eq!(base_url(host).unwrap().as_str(), url, "{host}");
        }
    }

    #[test]
    fn references_must_be_tags_or_digests() {
        assert!(check_reference("1").is_ok());
        assert!(check_reference("v1.2_rc-3").is_ok());
        assert!(check_reference(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in ["", "../x", "a/b", "-x", "x?y", "sha256:zz", &"a".repeat(129)] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }
}
