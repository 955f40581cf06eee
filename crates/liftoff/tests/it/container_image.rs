//! The `liftoff` container image (`deploy/Dockerfile`): built on the test
//! engine around the binary this build made, on a Debian base made by
//! mmdebstrap (`.ci/debian-base.sh`; nothing can be pulled here), then run:
//! `liftoff --version`, and `liftoff server` as the image's user, answering
//! `/healthz`.

use liftoff_testkit::component::required_env;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn docker(host: &str, config: &Path, args: &[&str]) -> Output {
    // Debian's client (20.10) matches the engine; /usr/local/bin/docker may shadow it.
    let cli = if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" };
    Command::new(cli)
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("run the docker CLI")
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the test's image and container however the test ends.
struct Cleanup<'a> {
    host: &'a str,
    config: &'a Path,
    container: String,
    image: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = docker(self.host, self.config, &["rm", "-f", &self.container]);
        let _ = docker(self.host, self.config, &["rmi", "-f", &self.image]);
    }
}

// Blocking docker CLI calls on the test's own single-threaded runtime: nothing else runs on it.
#[tokio::test]
async fn image_builds_on_a_given_base_and_runs_liftoff() {
    let Some(host) = required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(base) = required_env("LIFTOFF_TEST_DEBIAN_IMAGE") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("docker-config");
    std::fs::create_dir(&config).unwrap();
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/Dockerfile");
    std::fs::copy(&dockerfile, context.join("Dockerfile")).expect("deploy/Dockerfile exists");
    std::fs::copy(env!("CARGO_BIN_EXE_liftoff"), context.join("liftoff")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_liftoff-supervisor"), context.join("liftoff-supervisor")).unwrap();

    let tag = format!("liftoff-test/liftoff:{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let guard = Cleanup {
        host: &host,
        config: &config,
        container: format!("liftoff-image-test-{}", std::process::id()),
        image: tag.clone(),
    };
    let started = Instant::now();
    ok(
        "docker build",
        docker(
            &host,
            &config,
            &["build", "-q", "--build-arg", &format!("BASE={base}"), "-t", &tag, &context.to_string_lossy()],
        ),
    );
    eprintln!("image built in {:?}", started.elapsed());

    let version = ok(
        "liftoff --version in the image",
        docker(&host, &config, &["run", "--rm", "--network", "none", &tag, "--version"]),
    );
    assert_eq!(version.trim(), format!("liftoff {}", env!("CARGO_PKG_VERSION")));
    // the agent's local runs are supervised by the small binary beside it
    let supervised = ok(
        "liftoff-supervisor in the image",
        docker(
            &host,
            &config,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "/bin/sh",
                &tag,
                "-c",
                // the shell plays the agent, the supervisor's parent (`; :` keeps it from exec'ing)
                "liftoff-supervisor __supervise --agent-pid $$ -- echo supervised; :",
            ],
        ),
    );
    assert_eq!(supervised.trim(), "supervised");

    let user =
        ok("docker image inspect", docker(&host, &config, &["image", "inspect", "-f", "{{.Config.User}}", &tag]));
    assert_eq!(user.trim(), "65532:65532", "the image runs as a non-root user");

    // The default command serves from the image's data directory as that user;
    // only the listen address changes (host network: the engine has no bridge).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    ok(
        "docker run liftoff server",
        docker(
            &host,
            &config,
            &[
                "run",
                "-d",
                "--name",
                &guard.container,
                "--network",
                "host",
                &tag,
                "server",
                "--listen",
                &listen,
                "--data-dir",
                "/var/lib/liftoff",
            ],
        ),
    );
    let url = format!("http://{listen}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match get(&url).await {
            Some(body) => break body,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            None => {
                let logs = docker(&host, &config, &["logs", &guard.container]);
                panic!(
                    "liftoff server in the image did not answer {url} within 20 s; logs:\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
        }
    };
    assert_eq!(body, "ok\n");
    let logs = ok("docker logs", docker(&host, &config, &["logs", &guard.container]));
    assert!(logs.contains("liftoff server listening"), "logs: {logs}");
}

/// The body of a 200 answer to GET `url`, or `None` if not answered (yet).
async fn get(url: &str) -> Option<String> {
    let resp = reqwest::Client::new().get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
    if resp.status() != reqwest::StatusCode::OK {
        return None;
    }
    resp.text().await.ok()
}
