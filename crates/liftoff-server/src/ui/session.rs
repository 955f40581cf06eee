//! Sign-in, sessions and CSRF tokens.
//!
//! A session is a cookie `lft_session=<hex entity>.<key id>.<expiry ms>.<mac>`,
//! the MAC an HMAC-SHA256 under a secret kept in `server_secrets` (like run
//! keys): no table and no write per sign-in, and every server on the database
//! accepts it. It names the API key it was opened with, and each request
//! looks that key up again, so revoking the key (or its expiry) ends its
//! sessions at once. The CSRF token of a session is another HMAC of the
//! cookie's value: forms carry it, and every mutation checks it.

use super::page::{Chrome, UiError, render};
use crate::app::AppState;
use crate::auth::hash_key;
use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use liftoff_store::{KeyRole, Launcher};
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;

pub const COOKIE_NAME: &str = "lft_session";
/// How long a session lasts from sign-in.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Signs and checks session cookies and CSRF tokens.
#[derive(Clone)]
pub struct Sessions {
    secret: Arc<Vec<u8>>,
}

impl Sessions {
    /// Reads the shared secret, creating it on first start.
    pub async fn load(
        store: &dyn liftoff_store::Store,
        keys: Option<&crate::secrets_key::SecretsKeys>,
    ) -> Result<Self, crate::secrets_at_rest::SecretsAtRestError> {
        let secret = crate::secrets_at_rest::server_secret(store, keys, "ui-sessions").await?;
        Ok(Self { secret: Arc::new(secret.into_bytes()) })
    }

    #[cfg(test)]
    fn with_secret(secret: &[u8]) -> Self {
        Self { secret: Arc::new(secret.to_vec()) }
    }

    fn tag(&self, body: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The cookie value of a session of `key_id` (of `entity`) ending at `expires_ms`.
    pub fn mint(&self, entity: &str, key_id: &str, expires_ms: i64) -> String {
        let body = format!("{}.{key_id}.{expires_ms}", hex::encode(entity));
        let tag = self.tag(&body);
        format!("{body}.{tag}")
    }

    /// `(entity, key id)` of a genuine, unexpired session cookie value.
    pub fn verify(&self, value: &str, now_ms: i64) -> Option<(String, String)> {
        let (body, tag) = value.rsplit_once('.')?;
        let want = self.tag(body);
        // constant-time compare through the MAC itself
        if !constant_eq(want.as_bytes(), tag.as_bytes()) {
            return None;
        }
        let mut parts = body.split('.');
        let entity = String::from_utf8(hex::decode(parts.next()?).ok()?).ok()?;
        let key_id = parts.next()?.to_string();
        let expires: i64 = parts.next()?.parse().ok()?;
        (parts.next().is_none() && expires > now_ms).then_some((entity, key_id))
    }

    /// The CSRF token of the session whose cookie value is `cookie`.
    pub fn csrf(&self, cookie: &str) -> String {
        self.tag(&format!("csrf.{cookie}"))
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signed-in user of a page. Without a valid session, a page redirects
/// to the sign-in page (which brings the user back afterwards).
#[derive(Debug, Clone)]
pub struct UiSession {
    pub entity: String,
    pub role: KeyRole,
    pub csrf: String,
    /// The session's key, which the runs launched from the UI record.
    pub launcher: Launcher,
}

impl UiSession {
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome { entity: self.entity.clone(), csrf: self.csrf.clone(), nav, signed_in: true }
    }

    /// Refuses a mutation whose form lacks this session's CSRF token.
    pub fn check_csrf(&self, token: Option<&str>) -> Result<(), UiError> {
        match token {
            Some(t) if constant_eq(t.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(UiError::Forbidden("the form's CSRF token is missing or stale; reload the page".into())),
        }
    }

    /// Admins and members launch and stop; only admins manage agents.
    pub fn may_manage(&self) -> bool {
        self.role == KeyRole::Admin
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let back = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        let to_signin = || UiError::SignIn(back.clone());
        let value = cookie_value(&parts.headers, COOKIE_NAME).ok_or_else(to_signin)?;
        let (entity, key_id) = st.ui_sessions.verify(value, liftoff_store::now_ms()).ok_or_else(to_signin)?;
        let key = st.store.list_api_keys(&entity).await?.into_iter().find(|k| k.id == key_id).ok_or_else(to_signin)?;
        if key.expires_at_ms.is_some_and(|t| t <= liftoff_store::now_ms()) || !ui_role(&key.role) {
            return Err(to_signin());
        }
        let launcher = key.launcher();
        Ok(UiSession { entity, role: key.role, csrf: st.ui_sessions.csrf(value), launcher })
    }
}

/// People sign in with admin and member keys; agent and run keys are for machines.
fn ui_role(role: &KeyRole) -> bool {
    matches!(role, KeyRole::Admin | KeyRole::Member)
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a local path may be the page to return to (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

pub async fn signin_page(Query(q): Query<NextQuery>) -> Result<Response, UiError> {
    render(SignInPage { chrome: Chrome::signed_out(), next: safe_next(q.next.as_deref()), error: None })
}

/// `POST /signin`: the API key from the form becomes a session cookie.
pub async fn signin(State(st): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let form = super::page::Form::parse(&body);
    let next = safe_next(form.get("next"));
    let refuse = |m: &str| {
        let page = SignInPage { chrome: Chrome::signed_out(), next: next.clone(), error: Some(m.to_string()) };
        match render(page) {
            Ok(mut r) => {
                *r.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
                r
            }
            Err(e) => e.into_response(),
        }
    };
    let secret = form.get("api_key").unwrap_or("").trim();
    if secret.is_empty() || secret.len() > 512 {
        return refuse("enter an API key");
    }
    let key = match st.store.find_api_key(&hash_key(secret)).await {
        Ok(Some(k)) => k,
        Ok(None) => return refuse("unknown API key"),
        Err(e) => return UiError::from(e).into_response(),
    };
    let now = liftoff_store::now_ms();
    if key.expires_at_ms.is_some_and(|t| t <= now) {
        return refuse("this API key has expired");
    }
    if !ui_role(&key.role) {
        return refuse("an agent key cannot sign in; use an admin or member key");
    }
    let expires = key.expires_at_ms.map_or(now + SESSION_TTL_MS, |t| t.min(now + SESSION_TTL_MS));
    let value = st.ui_sessions.mint(&key.entity, &key.id, expires);
    let mut resp = Redirect::to(&next).into_response();
    let cookie = session_cookie(&value, (expires - now) / 1000, over_tls(&headers));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

/// `POST /signout`: drops the cookie.
pub async fn signout(session: UiSession, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response, UiError> {
    session.check_csrf(super::page::Form::parse(&body).get("csrf"))?;
    let mut resp = Redirect::to("/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie("", 0, over_tls(&headers))) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(resp)
}

/// The server speaks plain HTTP; behind a TLS-terminating proxy that says
/// so, the cookie is marked `Secure` (trusting the header can only make the
/// cookie stricter).
fn over_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_only_as_minted_and_unexpired() {
        let s = Sessions::with_secret(b"secret");
        let v = s.mint("acme", "key-1", 1_000);
        assert_eq!(s.verify(&v, 999), Some(("acme".into(), "key-1".into())));
        assert_eq!(s.verify(&v, 1_000), None, "expired");
        assert_eq!(Sessions::with_secret(b"other").verify(&v, 0), None, "another installation");
        assert_eq!(s.verify(&v.replace("key-1", "key-2"), 0), None, "another key");
        assert_eq!(s.verify(&v.replace(".1000.", ".9999."), 0), None, "a later expiry");
        assert_ne!(s.csrf(&v), s.csrf(&s.mint("acme", "key-1", 2_000)), "one token per session");
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_next(Some("/queues/a?state=pending")), "/queues/a?state=pending");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookie_is_http_only_strict_and_secure_over_tls() {
        let c = session_cookie("v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age=60"));
        assert!(c.ends_with("; Secure"));
        assert!(!session_cookie("v", 60, false).contains("Secure"));
    }
}
