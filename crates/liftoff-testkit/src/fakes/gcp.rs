//! A local GCP for the tests (liftoff-cloud's, liftoff's, and kube-fake's
//! kaniko executor, which reads `gs://` contexts from it): an OAuth token endpoint that checks what
//! Google's does for a service account's JWT bearer grant (RFC 7523), and a
//! fake of the subset of the GCS XML API that object_store uses.
//!
//! Why a fake: no GCS emulator installable here speaks the XML API
//! (fake-gcs-server 1.54 answers object_store's XML PUT with "invalid
//! uploadType"; gcp-storage-emulator answers without an ETag). What it does:
//! `PUT/GET/HEAD/DELETE /<bucket>/<object>` with `ETag`, `Last-Modified`,
//! `Content-Length` and `x-goog-generation`; a missing bucket or object is a
//! 404 with GCS's XML error body (`NoSuchBucket`/`NoSuchKey`); a request
//! without the bearer token this endpoint issued is a 401. How it differs
//! from GCS: no listing, no ranges, preconditions, multipart (XML
//! multipart uploads) or resumable uploads, no metadata headers, no
//! generations beyond a counter, no ACLs or IAM: any issued token may do
//! anything; ETags are counters, not MD5s.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Google's endpoint takes segments with or without `=` padding (some clients pad), so this does too.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A running token endpoint + GCS fake on 127.0.0.1.
pub struct GcpFake {
    pub base_url: String,
    pub token_uri: String,
    pub state: Arc<FakeState>,
    _dir: tempfile::TempDir,
    /// A service-account key file whose token_uri is this endpoint.
    pub key_file: PathBuf,
    pub client_email: String,
}

#[derive(Default)]
pub struct FakeState {
    /// PKCS#1 DER of the key the token endpoint trusts.
    public_key: Vec<u8>,
    client_email: String,
    token_uri: Mutex<String>,
    pub issued: Mutex<Vec<String>>,
    /// Requests the store accepted, with the bearer token each carried.
    pub authorized: Mutex<Vec<String>>,
    pub refused: Mutex<Vec<String>>,
    /// Why the token endpoint refused each assertion it refused.
    pub rejected: Mutex<Vec<String>>,
    buckets: Mutex<HashSet<String>>,
    objects: Mutex<HashMap<String, (Bytes, u64)>>,
    counter: Mutex<u64>,
}

/// An RSA key made with the `openssl` CLI: (PKCS#8 PEM, PKCS#1 public DER).
pub fn rsa_key(dir: &Path, name: &str) -> (String, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let der = dir.join(format!("{name}.pub.der"));
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&pem)
        .status()
        .expect("run openssl (the gcp tests make their keys with the openssl CLI)");
    assert!(ok.success(), "openssl genpkey failed");
    let ok = std::process::Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl rsa -RSAPublicKey_out failed");
    (std::fs::read_to_string(pem).unwrap(), std::fs::read(der).unwrap())
}

/// A service-account key file for `email`, signed with `pem`, pointing at `token_uri`.
pub fn key_file(dir: &Path, name: &str, email: &str, pem: &str, token_uri: &str, project: Option<&str>) -> PathBuf {
    let mut key = serde_json::json!({
        "type": "service_account",
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": token_uri,
    });
    if let Some(p) = project {
        key["project_id"] = p.into();
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&key).unwrap()).unwrap();
    path
}

pub const USER_CLIENT_ID: &str = "test-client.apps.googleusercontent.com";
pub const USER_CLIENT_SECRET: &str = "test-client-secret";
pub const USER_REFRESH_TOKEN: &str = "1//test-refresh-token";

/// An `authorized_user` file (what `gcloud auth application-default login` writes) for this endpoint.
pub fn user_file(dir: &Path, refresh_token: &str, token_uri: &str) -> PathBuf {
    let f = serde_json::json!({
        "type": "authorized_user",
        "client_id": USER_CLIENT_ID,
        "client_secret": USER_CLIENT_SECRET,
        "refresh_token": refresh_token,
        "quota_project_id": "quota-project",
        "token_uri": token_uri,
    });
    let path = dir.join("adc.json");
    std::fs::write(&path, serde_json::to_vec(&f).unwrap()).unwrap();
    path
}

impl GcpFake {
    /// Starts the fake with `buckets` existing.
    pub async fn start(buckets: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (pem, public_key) = rsa_key(dir.path(), "sa");
        let client_email = "liftoff-agent@my-project.iam.gserviceaccount.com".to_string();
        let state = Arc::new(FakeState {
            public_key,
            client_email: client_email.clone(),
            buckets: Mutex::new(buckets.iter().map(|b| b.to_string()).collect()),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let token_uri = format!("{base_url}/token");
        *state.token_uri.lock().unwrap() = token_uri.clone();
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let key_file = key_file(dir.path(), "sa", &client_email, &pem, &token_uri, Some("my-project"));
        Self { base_url, token_uri, state, _dir: dir, key_file, client_email }
    }
}

async fn handle(
    State(st): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/token" && method == Method::POST {
        return match token(&st, &body) {
            Ok(r) => r,
            Err(why) => {
                st.rejected.lock().unwrap().push(why.clone());
                let body = serde_json::json!({"error": "invalid_grant", "error_description": why});
                (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
            }
        };
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let bearer = auth.strip_prefix("Bearer ").unwrap_or_default().to_string();
    if !st.issued.lock().unwrap().contains(&bearer) {
        st.refused.lock().unwrap().push(format!("{method} {uri}"));
        return xml_error(StatusCode::UNAUTHORIZED, "AuthenticationRequired", "Authentication required.");
    }
    st.authorized.lock().unwrap().push(bearer);
    // object_store percent-encodes every character but unreserved ones, '/' in the object name too
    let path =
        percent_encoding::percent_decode_str(uri.path().trim_start_matches('/')).decode_utf8_lossy().into_owned();
    let Some((bucket, object)) = path.split_once('/') else {
        return xml_error(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "bucket operations are not faked");
    };
    if !st.buckets.lock().unwrap().contains(bucket) {
        return xml_error(StatusCode::NOT_FOUND, "NoSuchBucket", "The specified bucket does not exist.");
    }
    let key = format!("{bucket}/{object}");
    match method {
        Method::PUT => {
            let generation = {
                let mut c = st.counter.lock().unwrap();
                *c += 1;
                *c
            };
            st.objects.lock().unwrap().insert(key, (body, generation));
            let mut r = StatusCode::OK.into_response();
            set_meta(r.headers_mut(), generation, None);
            r
        }
        Method::GET | Method::HEAD => match st.objects.lock().unwrap().get(&key).cloned() {
            Some((bytes, generation)) => {
                let len = bytes.len();
                let mut r = if method == Method::GET { bytes.into_response() } else { StatusCode::OK.into_response() };
                set_meta(r.headers_mut(), generation, Some(len));
                r
            }
            None => xml_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist."),
        },
        Method::DELETE => match st.objects.lock().unwrap().remove(&key) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => xml_error(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist."),
        },
        _ => xml_error(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "not faked"),
    }
}

fn set_meta(h: &mut HeaderMap, generation: u64, len: Option<usize>) {
    h.insert("etag", HeaderValue::from_str(&format!("\"{generation:032x}\"")).unwrap());
    h.insert("x-goog-generation", HeaderValue::from_str(&generation.to_string()).unwrap());
    h.insert("last-modified", HeaderValue::from_static("Sun, 29 Nov 2026 12:00:00 GMT"));
    if let Some(len) = len {
        h.insert("content-length", HeaderValue::from_str(&len.to_string()).unwrap());
    }
}

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        format!("<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>");
    (status, [("content-type", "application/xml; charset=UTF-8")], body).into_response()
}

/// The JWT bearer grant: the assertion's signature with the trusted key,
/// then its claims, as Google's token endpoint checks them.
fn token(st: &FakeState, body: &[u8]) -> Result<Response, String> {
    let form: HashMap<String, String> = url_form(body);
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        // `gcloud auth application-default login` credentials (user_file below)
        let ok = form.get("client_id").map(String::as_str) == Some(USER_CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(USER_CLIENT_SECRET)
            && form.get("refresh_token").map(String::as_str) == Some(USER_REFRESH_TOKEN);
        if !ok {
            return Err("Token has been expired or revoked.".into());
        }
        let access = format!("ya29.user-token-{}", st.issued.lock().unwrap().len());
        st.issued.lock().unwrap().push(access.clone());
        return Ok(axum::Json(serde_json::json!({"access_token": access, "expires_in": 3599})).into_response());
    }
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err(format!("unsupported grant_type {:?}", form.get("grant_type")));
    }
    let Some(assertion) = form.get("assertion") else { return Err("no assertion".into()) };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else { return Err("not a JWT".into()) };
    let Ok(sig) = B64.decode(signature) else { return Err("bad signature encoding".into()) };
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        st.public_key.as_slice(),
    );
    if key.verify(format!("{header}.{claims}").as_bytes(), &sig).is_err() {
        return Err("Invalid JWT Signature.".into());
    }
    let h: serde_json::Value =
        serde_json::from_slice(&B64.decode(header).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if h["alg"] != "RS256" {
        return Err(format!("alg {} is not RS256", h["alg"]));
    }
    let c: serde_json::Value =
        serde_json::from_slice(&B64.decode(claims).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (iat, exp) = (c["iat"].as_i64().unwrap_or(0), c["exp"].as_i64().unwrap_or(0));
    let token_uri = st.token_uri.lock().unwrap().clone();
    let problems = [
        (c["iss"] != st.client_email.as_str(), format!("iss {} is not {}", c["iss"], st.client_email)),
        (c["aud"] != token_uri.as_str(), format!("aud {} is not {token_uri}", c["aud"])),
        (
            !c["scope"].as_str().unwrap_or_default().split(' ').any(|s| s == SCOPE),
            format!("scope {} lacks cloud-platform", c["scope"]),
        ),
        (exp <= now, "the assertion has expired".into()),
        (iat > now + 60, "iat is in the future".into()),
        (exp - iat > 3600, "the assertion lives longer than an hour".into()),
    ];
    if let Some((_, why)) = problems.iter().find(|(bad, _)| *bad) {
        return Err(why.clone());
    }
    let n = st.issued.lock().unwrap().len();
    let access = format!("ya29.test-token-{n}-{now}");
    st.issued.lock().unwrap().push(access.clone());
    Ok(axum::Json(serde_json::json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response())
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}
