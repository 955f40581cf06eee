//! The server's own TLS and the scrape token of `/metrics`: a real client
//! (reqwest over rustls) negotiates HTTP/2 through ALPN, sees a certificate
//! replaced on disk on its next connection without a restart, and bad files
//! fail the start naming the file.

use liftoff_server::{RunningServer, ServerConfig, TlsFiles, start};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM, cert DER).
fn self_signed() -> (String, String, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem(), ck.cert.der().to_vec())
}

fn files(dir: &Path) -> TlsFiles {
    TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key"), reload_every: Duration::from_millis(100) }
}

/// Replaces `path` the way a Kubernetes Secret volume does: written beside, then renamed over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn serve(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut cfg = ServerConfig::new(dir.join("data"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    tweak(&mut cfg);
    start(cfg).await.expect("server starts")
}

/// A new client (so a new connection) trusting `roots` only.
fn client(roots: &[&str], http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder().tls_certs_only(
        roots.iter().map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()).collect::<Vec<_>>(),
    );
    b = b.tls_info(true).timeout(Duration::from_secs(5));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// GET `url`: status, HTTP version and the server's certificate (DER).
async fn get(c: &reqwest::Client, url: &str) -> (u16, reqwest::Version, Vec<u8>) {
    let resp = c.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let cert = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the TLS connection's peer certificate")
        .to_vec();
    (resp.status().as_u16(), resp.version(), cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_offers_h2_and_a_replaced_certificate_serves_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (a_crt, a_key, a_der) = self_signed();
    let (b_crt, b_key, b_der) = self_signed();
    let tls = files(dir.path());
    std::fs::write(&tls.cert, &a_crt).unwrap();
    std::fs::write(&tls.key, &a_key).unwrap();
    let server = serve(dir.path(), |c| c.tls = Some(tls.clone())).await;
    let base = server.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let url = format!("{base}/healthz");

    let (status, version, cert) = get(&client(&[&a_crt, &b_crt], false), &url).await;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2), "h2 negotiated through ALPN");
    assert_eq!(cert, a_der);
    let (status, version, _) = get(&client(&[&a_crt], true), &url).await;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_11), "HTTP/1.1 still offered");
    // The API itself over h2, not just the health route.
    let key = server.admin_key.clone().unwrap();
    let who = client(&[&a_crt], false).get(format!("{base}/api/v1/whoami")).bearer_auth(&key).send().await.unwrap();
    assert_eq!((who.status().as_u16(), who.version()), (200, reqwest::Version::HTTP_2));

    // A half-done replacement (new key, old certificate) is not served: the old pair stays.
    replace(&tls.key, &b_key);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&client(&[&a_crt, &b_crt], false), &url).await.2, a_der, "a mismatched pair is not served");
    replace(&tls.cert, &b_crt);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, cert) = get(&client(&[&a_crt, &b_crt], false), &url).await;
        assert_eq!(status, 200);
        if cert == b_der {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was not served within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a client that trusts only the old certificate is now refused
    let old_only = client(&[&a_crt], false).get(&url).send().await;
    assert!(old_only.is_err(), "a client trusting only the replaced certificate connected: {old_only:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_fail_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a_crt, a_key, _) = self_signed();
    let (_, b_key, _) = self_signed();
    let tls = files(dir.path());
    let start_err = |tls: TlsFiles| {
        let dir = dir.path().to_path_buf();
        async move {
            let mut cfg = ServerConfig::new(dir.join("data"));
            cfg.listen = "127.0.0.1:0".parse().unwrap();
            cfg.print_admin_key = false;
            cfg.tls = Some(tls);
            match start(cfg).await {
                Ok(_) => panic!("the server started"),
                Err(e) => e.to_string(),
            }
        }
    };
    let shown = |p: &PathBuf| p.display().to_string();

    let e = start_err(tls.clone()).await;
    assert!(e.contains(&shown(&tls.cert)) && e.contains("cannot read"), "{e}");

    std::fs::write(&tls.cert, "not a certificate").unwrap();
    std::fs::write(&tls.key, &a_key).unwrap();
    let e = start_err(tls.clone()).await;
    assert!(e.contains(&shown(&tls.cert)) && e.contains("no PEM certificate"), "{e}");

    std::fs::write(&tls.cert, &a_crt).unwrap();
    std::fs::write(&tls.key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let e = start_err(tls.clone()).await;
    assert!(e.contains(&shown(&tls.key)) && e.contains("private key"), "{e}");

    std::fs::write(&tls.key, &b_key).unwrap();
    let e = start_err(tls.clone()).await;
    assert!(e.contains("does not belong to the certificate") && e.contains(&shown(&tls.key)), "{e}");
    // nothing of the key's content in any message
    assert!(!e.contains("PRIVATE KEY"), "{e}");
}

#[tokio::test]
async fn metrics_with_a_scrape_token_refuse_other_callers() {
    let dir = tempfile::tempdir().unwrap();
    let token = "scrape-token-0123456789abcdef";
    let server = serve(dir.path(), |c| c.metrics_token = Some(token.into())).await;
    let url = format!("{}/metrics", server.base_url());
    let c = reqwest::Client::new();

    let none = c.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body = none.text().await.unwrap();
    assert!(body.contains("scrape token") && !body.contains(token), "{body}");
    let wrong = c.get(&url).bearer_auth("scrape-token-0123456789abcdeX").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    // an API key is no scrape token
    let admin = c.get(&url).bearer_auth(server.admin_key.clone().unwrap()).send().await.unwrap();
    assert_eq!(admin.status(), 401);
    let ok = c.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("liftoff_"), "the metrics");
    // the health route stays open
    assert_eq!(c.get(format!("{}/healthz", server.base_url())).send().await.unwrap().status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_scrape_token_metrics_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), |_| {}).await;
    let resp = reqwest::get(format!("{}/metrics", server.base_url())).await.unwrap();
    assert_eq!(resp.status(), 200);
    server.shutdown().await;
}
