//! A server whose certificate a private CA issued, reached over https by
//! the CLI (as the agent reaches it): refused without that CA, with a hint
//! naming `--ca-cert`; accepted with `--ca-cert FILE` or `LIFTOFF_CA_CERT`.
//! The CA and the certificate are made with the openssl CLI.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `ca.crt`, and `tls.crt`/`tls.key` for 127.0.0.1 issued by it.
fn private_ca(dir: &Path) {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=Liftoff test CA",
            ][..],
            &days,
        ]
        .concat(),
    );
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1"],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            &[
                "x509",
                "-req",
                "-in",
                "tls.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tls.crt",
                "-extfile",
                "san.ext",
            ][..],
            &days,
        ]
        .concat(),
    );
}

fn cli(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_liftoff"));
    c.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("LIFTOFF_") || k == "RUST_LOG" || k == "SSL_CERT_FILE" || k == "SSL_CERT_DIR" {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run liftoff")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_cas_server_is_trusted_with_ca_cert_and_refused_with_a_hint_without() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private_ca(d);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", "data"])
        .args(["--tls-cert", "tls.crt", "--tls-key", "tls.key"])
        .current_dir(d)
        .env_remove("LIFTOFF_DB")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.crt")).unwrap()).unwrap();
    let probe = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !probe.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < until, "the https server never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = std::fs::read_to_string(d.join("data/admin.key")).unwrap();
    let list = ["--base-url", &url, "--api-key", key.trim(), "queue", "list"];

    let refused = cli(d, &list, &[]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("UnknownIssuer") && said.contains("hint:") && said.contains("--ca-cert FILE"), "{said}");

    let with_flag = cli(d, &[&list[..], &["--ca-cert", "ca.crt"]].concat(), &[]);
    assert!(with_flag.status.success(), "{}", String::from_utf8_lossy(&with_flag.stderr));
    let with_env = cli(d, &list, &[("LIFTOFF_CA_CERT", &d.join("ca.crt"))]);
    assert!(with_env.status.success(), "{}", String::from_utf8_lossy(&with_env.stderr));

    // a file that is no certificate is named, and so is a missing one
    let bad = cli(d, &[&list[..], &["--ca-cert", "tls.csr"]].concat(), &[]);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && said.contains("--ca-cert tls.csr"), "{said}");
    let missing = cli(d, &[&list[..], &["--ca-cert", "nope.crt"]].concat(), &[]);
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && said.contains("--ca-cert: failed to read nope.crt"), "{said}");
    server.kill().await.unwrap();
}
