//! The registries against real ones: Debian's docker-registry with htpasswd
//! Basic auth (LIFTOFF_TEST_REGISTRY, `.ci/docker.sh`), with token auth
//! behind `.ci/token_server.py` (LIFTOFF_TEST_TOKEN_REGISTRY), and with the
//! logins ECR, Artifact Registry and ACR end with, deletes disabled as on ECR
//! (LIFTOFF_TEST_CLOUD_REGISTRY, `.ci/token-registry.sh`); ECR's token comes from the moto server
//! (LIFTOFF_TEST_S3_ENDPOINT, `.ci/emulators.sh`). Each image checked is
//! `liftoff-test/busybox:1`, pushed there by those scripts.

#[cfg(feature = "aws")]
use liftoff_build::registry::EcrRegistry;
use liftoff_build::registry::{AcrRegistry, GarRegistry, OciRegistry, PushCheck, Registry, RegistryError, TokenSource};
use liftoff_cloud::{AccessToken, CloudError, Secret};
use liftoff_testkit::required_env;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use url::Url;

/// A docker config directory whose `auths` holds `user:password` for `host`.
fn docker_config(host: &str, login: Option<(&str, &str)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    liftoff_testkit::write_docker_config(dir.path(), host, login);
    dir
}

/// The digest of `name:tag` as the registry serves it, fetched and hashed
/// here without the code under test.
async fn served_digest(host: &str, name: &str, tag: &str, user: &str, password: &str) -> String {
    let body = reqwest::Client::new()
        .get(format!("http://{host}/v2/{name}/manifests/{tag}"))
        .basic_auth(user, Some(password))
        .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(&body)))
}

fn unauthorized(e: RegistryError) -> (String, String, String) {
    match e {
        RegistryError::Unauthorized { registry, source_name, message } => (registry, source_name, message),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

fn config_file(dir: &Path) -> String {
    dir.join("config.json").display().to_string()
}

#[tokio::test]
async fn an_htpasswd_registry_with_the_docker_config_credentials() {
    let Some(host) = required_env("LIFTOFF_TEST_REGISTRY") else { return };
    let user = std::env::var("LIFTOFF_TEST_REGISTRY_USER").unwrap();
    let password = std::env::var("LIFTOFF_TEST_REGISTRY_PASSWORD").unwrap();
    let good = docker_config(&host, Some((&user, &password)));
    let reg = OciRegistry::new(&host, "liftoff-test/busybox", Some(good.path().to_path_buf())).unwrap();
    assert_eq!(reg.repository(), format!("{host}/liftoff-test/busybox"));

    let digest = reg.manifest_digest("1").await.unwrap().expect("the image is there");
    assert_eq!(digest, served_digest(&host, "liftoff-test/busybox", "1", &user, &password).await);
    assert_eq!(reg.manifest_digest("no-such-tag").await.unwrap(), None);
    let creds = reg.credentials().await.unwrap().unwrap();
    assert_eq!((creds.username.as_str(), creds.serveraddress.as_str()), (user.as_str(), host.as_str()));
    assert_eq!(reg.push_check().await.unwrap(), PushCheck::Deleted);
    reg.check_push().await.unwrap();

    // the same through the config file: builder.destination wins over the registry block
    let file =
        format!("builder: {{type: docker, destination: '{host}/liftoff-test/busybox'}}\nregistry: {{type: local}}\n");
    let cfg = liftoff_core::launch_config::check_file_text(&file).unwrap().config;
    let chosen =
        liftoff_build::registry::from_config(&cfg, &liftoff_cloud::CloudEnv::Local, Some(good.path())).await.unwrap();
    assert_eq!(chosen.warnings.len(), 1, "{:?}", chosen.warnings);
    let liftoff_build::registry::Destination::Registry(from_file) = chosen.destination else { panic!() };
    assert_eq!(from_file.manifest_digest("1").await.unwrap(), Some(digest.clone()));

    let wrong = docker_config(&host, Some((&user, "not-the-password")));
    let reg = OciRegistry::new(&host, "liftoff-test/busybox", Some(wrong.path().to_path_buf())).unwrap();
    let e = reg.manifest_digest("1").await.unwrap_err();
    let shown = e.to_string();
    let (registry, source, _) = unauthorized(e);
    assert_eq!(registry, format!("registry {host}/liftoff-test/busybox"));
    assert_eq!(source, format!("auths.{host} in {}", config_file(wrong.path())));
    assert!(!shown.contains("not-the-password"), "{shown}");
    assert!(reg.check_push().await.is_err());

    let none = docker_config(&host, None);
    let reg = OciRegistry::new(&host, "liftoff-test/busybox", Some(none.path().to_path_buf())).unwrap();
    let (_, source, message) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert_eq!(source, format!("anonymous (no entry in {})", config_file(none.path())));
    assert!(message.contains("requires credentials"), "{message}");
}

#[tokio::test]
async fn a_token_auth_registry_gets_bearer_tokens_for_the_scope_it_needs() {
    let Some(host) = required_env("LIFTOFF_TEST_TOKEN_REGISTRY") else { return };
    let realm = std::env::var("LIFTOFF_TEST_TOKEN_REALM").unwrap();
    let registry = |login: Option<(&str, &str)>| {
        let dir = docker_config(&host, login);
        let reg = OciRegistry::new(&host, "liftoff-test/busybox", Some(dir.path().to_path_buf())).unwrap();
        (reg, dir)
    };

    let (reg, _dir) = registry(Some(("liftoff", "liftoff-token-password")));
    let digest = reg.manifest_digest("1").await.unwrap().expect("the image is there");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert_eq!(reg.manifest_digest("1").await.unwrap(), Some(digest.clone()), "again, with the cached token");
    assert_eq!(reg.manifest_digest("no-such-tag").await.unwrap(), None);
    assert_eq!(reg.push_check().await.unwrap(), PushCheck::Deleted);

    let (reg, dir) = registry(Some(("liftoff", "wrong-password")));
    let (registry_name, source, message) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert_eq!(registry_name, format!("registry {host}/liftoff-test/busybox"));
    assert_eq!(source, format!("auths.{host} in {}", config_file(dir.path())));
    assert!(message.contains(&format!("the token server {realm}")) && message.contains("401"), "{message}");

    // a user who may push but not delete: the push is proven, the blob stays
    let (reg, _dir) = registry(Some(("pusher", "pusher-password")));
    match reg.push_check().await.unwrap() {
        PushCheck::Kept { reason } => {
            assert!(reason.starts_with("the push works; these credentials may not delete"), "{reason}")
        }
        PushCheck::Deleted => panic!("the token server gives pusher no delete"),
    }

    // a pull-only user reads, but cannot push
    let (reg, _dir) = registry(Some(("puller", "puller-password")));
    assert_eq!(reg.manifest_digest("1").await.unwrap(), Some(digest.clone()));
    let e = reg.check_push().await.unwrap_err();
    let (_, _, message) = unauthorized(e);
    assert!(
        message
            .starts_with("they do not allow pull,push on liftoff-test/busybox (insufficient_scope, 401 Unauthorized)"),
        "{message}"
    );

    // anonymous tokens carry no access to this repository
    let (reg, _dir) = registry(None);
    let (_, source, _) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert!(source.starts_with("anonymous"), "{source}");
}

/// An append through a token-auth registry: Bearer tokens for `pull` (the
/// dependency image's manifest and config) and `pull,push` (blob HEADs,
/// uploads, the manifest PUT), then the tag list and a delete with a
/// `delete` token; a user who may push but not delete appends too.
#[tokio::test]
async fn an_append_through_a_token_auth_registry_uses_the_scopes_it_needs() {
    use liftoff_build::append::{AppendRequest, append, code_layer};
    use liftoff_build::{BuildContext, ContextRequest};
    let Some(host) = required_env("LIFTOFF_TEST_TOKEN_REGISTRY") else { return };
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("train.py"), format!("print({:?})\n", uuid::Uuid::new_v4().to_string())).unwrap();
    let ep = vec!["python".to_string(), "train.py".to_string()];
    let ctx = BuildContext::prepare(&ContextRequest {
        source_dir: code.path(),
        build_context: None,
        job_dockerfile: None,
        dockerfile_override: None,
        entrypoint: &ep,
        python_version: Some("3.11"),
        accelerator_base_image: None,
        python_base_image: "python:{version}",
    })
    .unwrap();
    let layer = code_layer(&ctx).unwrap();
    let digest = ctx.content_digest().unwrap();
    let tag = format!("lf-append-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    // busybox:1 stands for a dependency image: any single-platform image is extended alike
    let req = AppendRequest { dependencies: "1", tag: &tag, layer: &layer, entrypoint: &ep, context_digest: &digest };
    let dir = docker_config(&host, Some(("pusher", "pusher-password")));
    let pusher = OciRegistry::new(&host, "liftoff-test/busybox", Some(dir.path().to_path_buf())).unwrap();
    let appended = append(&pusher, &req).await.unwrap();
    assert!(appended.layer_uploaded && appended.config_uploaded, "{appended:?}");
    assert_eq!(pusher.manifest_digest(&tag).await.unwrap(), Some(appended.digest.clone()));

    let dir = docker_config(&host, Some(("liftoff", "liftoff-token-password")));
    let reg = OciRegistry::new(&host, "liftoff-test/busybox", Some(dir.path().to_path_buf())).unwrap();
    assert!(reg.tags().await.unwrap().contains(&tag), "the tag list has it");
    reg.delete_manifest(&appended.digest).await.unwrap();
    assert_eq!(reg.manifest_digest(&tag).await.unwrap(), None, "deleted");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn ecr_logs_in_with_the_token_of_get_authorization_token() {
    let Some(moto) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let Some(host) = required_env("LIFTOFF_TEST_CLOUD_REGISTRY") else { return };
    let endpoint = Url::parse(&format!("http://{host}/")).unwrap();
    let sdk = aws_sdk(&moto);

    let reg = EcrRegistry::new("123456789012", "us-east-1", "liftoff-test/busybox", &sdk)
        .unwrap()
        .with_endpoint(endpoint.clone());
    assert_eq!(reg.repository(), "123456789012.dkr.ecr.us-east-1.amazonaws.com/liftoff-test/busybox");
    let creds = reg.credentials().await.unwrap().unwrap();
    assert_eq!((creds.username.as_str(), creds.password.as_str()), ("AWS", "123456789012-auth-token"));
    let digest = reg.manifest_digest("1").await.unwrap().expect("the image is there");
    assert_eq!(digest, served_digest(&host, "liftoff-test/busybox", "1", "AWS", "123456789012-auth-token").await);
    assert_eq!(reg.manifest_digest("no-such-tag").await.unwrap(), None);
    // that registry, like ECR, has no blob deletes: the push is proven all the same
    match reg.push_check().await.unwrap() {
        PushCheck::Kept { reason } => {
            assert!(reason.contains("405 Method Not Allowed (deletes are not enabled: UNSUPPORTED"), "{reason}")
        }
        PushCheck::Deleted => panic!("the cloud-login registry has deletes disabled"),
    }

    // a repository given by name: the registry is the one the token is for
    let reg = EcrRegistry::for_repository("liftoff-test/busybox", &sdk).await.unwrap();
    assert_eq!(reg.repository(), "123456789012.dkr.ecr.us-east-1.amazonaws.com/liftoff-test/busybox");

    // no ECR API: the failure names GetAuthorizationToken
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = aws_sdk(&format!("http://127.0.0.1:{port}"));
    let reg =
        EcrRegistry::new("123456789012", "us-east-1", "liftoff-test/busybox", &dead).unwrap().with_endpoint(endpoint);
    let e = reg.manifest_digest("1").await.unwrap_err().to_string();
    assert!(
        e.starts_with(
            "ECR 123456789012.dkr.ecr.us-east-1.amazonaws.com: credentials from ECR GetAuthorizationToken (us-east-1)"
        ),
        "{e}"
    );
}

/// The SDK configuration a test's moto needs, without touching the process
/// environment (tests run in parallel threads).
#[cfg(feature = "aws")]
fn aws_sdk(endpoint: &str) -> aws_config::SdkConfig {
    let creds = aws_sdk_ecr::config::Credentials::new("testing", "testing", None, None, "liftoff test");
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ecr::config::SharedCredentialsProvider::new(creds))
        .build()
}

/// Gives a fixed token and records the scopes asked for. The real token
/// sources (ADC, Entra) are liftoff-cloud's, and tested there.
struct FixedToken {
    token: &'static str,
    scopes: Mutex<Vec<String>>,
}

impl FixedToken {
    fn new(token: &'static str) -> Arc<Self> {
        Arc::new(Self { token, scopes: Mutex::new(Vec::new()) })
    }
}

#[async_trait::async_trait]
impl TokenSource for FixedToken {
    async fn access_token(&self, scopes: &[&str]) -> Result<AccessToken, CloudError> {
        self.scopes.lock().unwrap().extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken { token: Secret::new(self.token), source: "the test's token source".into() })
    }
}

#[tokio::test]
async fn artifact_registry_logs_in_as_oauth2accesstoken() {
    let Some(host) = required_env("LIFTOFF_TEST_CLOUD_REGISTRY") else { return };
    let endpoint = Url::parse(&format!("http://{host}/")).unwrap();
    let tokens = FixedToken::new("liftoff-test-gcp-token");
    let reg = GarRegistry::new("us-central1", "liftoff-test", "gar", "busybox", tokens.clone())
        .unwrap()
        .with_endpoint(endpoint.clone());
    assert_eq!(reg.repository(), "us-central1-docker.pkg.dev/liftoff-test/gar/busybox");
    assert!(reg.manifest_digest("1").await.unwrap().is_some());
    assert_eq!(reg.manifest_digest("no-such-tag").await.unwrap(), None);
    reg.check_push().await.unwrap();
    let creds = reg.credentials().await.unwrap().unwrap();
    assert_eq!((creds.username.as_str(), creds.password.as_str()), ("oauth2accesstoken", "liftoff-test-gcp-token"));
    assert!(tokens.scopes.lock().unwrap().iter().all(|s| s == "https://www.googleapis.com/auth/cloud-platform"));

    let reg = GarRegistry::new("us-central1", "liftoff-test", "gar", "busybox", FixedToken::new("expired"))
        .unwrap()
        .with_endpoint(endpoint);
    let (registry, source, _) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert_eq!(registry, "Artifact Registry us-central1-docker.pkg.dev/liftoff-test/gar/busybox");
    assert_eq!(source, "a GCP access token from the test's token source");
}

/// ACR's `/oauth2/exchange`, checking what the real one checks: the grant
/// type, that `service` is the registry's host, and an access token (the
/// real one also verifies the token's signature and audience; here it must
/// be the one the test's Entra stand-in issued).
async fn exchange_server(service: &'static str) -> (Url, Arc<Mutex<u32>>) {
    use axum::{Form, Json, http::StatusCode, routing::post};
    use std::collections::HashMap;
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/oauth2/exchange",
        post(move |Form(form): Form<HashMap<String, String>>| {
            let counted = counted.clone();
            async move {
                *counted.lock().unwrap() += 1;
                let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
                let refuse = |status: StatusCode, message: &str| {
                    (status, Json(serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]})))
                };
                if field("grant_type") != "access_token" {
                    return refuse(StatusCode::BAD_REQUEST, "grant_type must be access_token");
                }
                if field("service") != service {
                    return refuse(StatusCode::BAD_REQUEST, "service does not name this registry");
                }
                if field("access_token") != "entra-token-for-the-test" {
                    return refuse(StatusCode::UNAUTHORIZED, "the access token is not valid");
                }
                (StatusCode::OK, Json(serde_json::json!({"refresh_token": "liftoff-test-acr-refresh-token"})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Url::parse(&format!("http://{addr}/")).unwrap(), calls)
}

#[tokio::test]
async fn acr_exchanges_an_entra_token_for_a_refresh_token() {
    let Some(host) = required_env("LIFTOFF_TEST_CLOUD_REGISTRY") else { return };
    let registry_api = Url::parse(&format!("http://{host}/")).unwrap();
    let (exchange, calls) = exchange_server("liftofftest.azurecr.io").await;
    let tokens = FixedToken::new("entra-token-for-the-test");
    let reg = AcrRegistry::with_endpoints(
        "liftofftest",
        "liftoff-test/busybox",
        tokens.clone(),
        registry_api.clone(),
        exchange.clone(),
    )
    .unwrap();
    assert_eq!(reg.repository(), "liftofftest.azurecr.io/liftoff-test/busybox");
    assert!(reg.manifest_digest("1").await.unwrap().is_some());
    assert_eq!(reg.manifest_digest("no-such-tag").await.unwrap(), None);
    reg.check_push().await.unwrap();
    let creds = reg.credentials().await.unwrap().unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("00000000-0000-0000-0000-000000000000", "liftoff-test-acr-refresh-token")
    );
    assert_eq!(*calls.lock().unwrap(), 1, "the refresh token is reused");
    assert_eq!(*tokens.scopes.lock().unwrap(), ["https://containerregistry.azure.net/.default"]);

    let reg = AcrRegistry::with_endpoints(
        "liftofftest",
        "liftoff-test/busybox",
        FixedToken::new("someone-elses-token"),
        registry_api.clone(),
        exchange.clone(),
    )
    .unwrap();
    let (registry, source, message) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert_eq!(registry, "ACR liftofftest.azurecr.io");
    assert_eq!(
        source,
        format!("a Microsoft Entra token from the test's token source, exchanged at {exchange}oauth2/exchange")
    );
    assert!(message.contains("401") && message.contains("the access token is not valid"), "{message}");

    // the exchange is for one registry: another's host is refused
    let reg = AcrRegistry::with_endpoints(
        "otherregistry",
        "liftoff-test/busybox",
        FixedToken::new("entra-token-for-the-test"),
        registry_api,
        exchange,
    )
    .unwrap();
    let (_, _, message) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert!(message.contains("service does not name this registry"), "{message}");
}

/// A registry stand-in that answers every request 401 with `challenge`
/// (`None`: no Www-Authenticate at all).
async fn challenging_registry(challenge: Option<&'static str>) -> String {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move || async move {
        match challenge {
            Some(c) => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, c)]).into_response(),
            None => StatusCode::UNAUTHORIZED.into_response(),
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

#[tokio::test]
async fn credentials_go_to_no_plain_http_token_realm_and_odd_challenges_are_named() {
    // 203.0.113.0/24 is TEST-NET-3: never reached, the realm is refused first
    let host = challenging_registry(Some(r#"Bearer realm="http://203.0.113.7/token",service="x""#)).await;
    let dir = docker_config(&host, Some(("ada", "s3cret")));
    let reg = OciRegistry::new(&host, "team/app", Some(dir.path().to_path_buf())).unwrap();
    let e = reg.manifest_digest("1").await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "registry {host}/team/app: its token realm http://203.0.113.7/token is not https: credentials are not sent there"
        )
    );

    let host = challenging_registry(Some("Negotiate")).await;
    let reg = OciRegistry::new(&host, "team/app", None).unwrap();
    let (_, source, message) = unauthorized(reg.manifest_digest("1").await.unwrap_err());
    assert_eq!(source, "anonymous (no docker config directory)");
    assert_eq!(message, "401 without a Basic or Bearer challenge (Www-Authenticate: 'Negotiate')");
    let host = challenging_registry(None).await;
    let reg = OciRegistry::new(&host, "team/app", None).unwrap();
    let (_, _, message) = unauthorized(reg.check_push().await.unwrap_err());
    assert_eq!(message, "401 without a Basic or Bearer challenge (Www-Authenticate: '')");
}

#[tokio::test]
async fn a_manifest_served_without_its_digest_header_is_hashed() {
    use axum::http::{Method, StatusCode};
    use axum::response::IntoResponse;
    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    let app = axum::Router::new().fallback(|method: Method, uri: axum::http::Uri| async move {
        match (method, uri.path()) {
            (Method::HEAD, "/v2/team/app/manifests/1") => StatusCode::OK.into_response(),
            (Method::GET, "/v2/team/app/manifests/1") => (StatusCode::OK, MANIFEST).into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let reg = OciRegistry::new(&host, "team/app", None).unwrap();
    let expected = format!("sha256:{}", hex::encode(Sha256::digest(MANIFEST.as_bytes())));
    assert_eq!(reg.manifest_digest("1").await.unwrap(), Some(expected));
    assert_eq!(reg.manifest_digest("2").await.unwrap(), None);
    let e = reg.manifest_digest("../x").await.unwrap_err().to_string();
    assert_eq!(e, format!("registry {host}/team/app: '../x' is neither a tag nor a digest"));
}
