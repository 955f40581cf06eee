//! Contexts really build and run on a real engine (the legacy builder, no
//! network), streamed to `/build`: the generated Python Dockerfile for a job
//! whose one dependency comes from a local wheel in its `wheels/` directory,
//! and a job's own Dockerfile beside its script, both with a `.dockerignore`.
//!
//! Needs `LIFTOFF_TEST_DOCKER_HOST` and `LIFTOFF_TEST_DOCKER_IMAGE`
//! (`.ci/docker.sh`) and `LIFTOFF_TEST_PYTHON_IMAGE` (`.ci/python-base.sh`:
//! Debian's Python 3.11, pip and venv, imported from an mmdebstrap rootfs).
//! Without them the tests return early, unless `CI` is set: then they fail.

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptions, LogsOptions, RemoveContainerOptions, RemoveImageOptions, WaitContainerOptions,
};
use futures::StreamExt;
use liftoff_build::{BuildContext, ContextRequest};
use liftoff_testkit::required_env;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A pure-Python wheel made with the host's Python (zipfile, with a RECORD
/// whose hashes pip checks): the job's one dependency, installed offline.
fn make_wheel(dir: &Path) {
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "liftoff_hello/__init__.py": b"NAME = 'liftoff-hello 0.1'\n",
    "liftoff_hello-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: liftoff-hello\nVersion: 0.1\n",
    "liftoff_hello-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: liftoff-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={digest},{len(data)}\n"
record += "liftoff_hello-0.1.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("liftoff_hello-0.1.dist-info/RECORD", record)
"#;
    let out = dir.join("wheels/liftoff_hello-0.1-py3-none-any.whl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let status = std::process::Command::new("python3").arg("-c").arg(script).arg(&out).status().unwrap();
    assert!(status.success(), "making the test wheel failed");
}

async fn connect(host: &str) -> Docker {
    let socket = host.strip_prefix("unix://").unwrap_or(host);
    Docker::connect_with_unix(socket, 600, bollard::API_DEFAULT_VERSION).unwrap().negotiate_version().await.unwrap()
}

/// Builds the context streamed from its tree, without the engine's cache
/// (which would hide a broken install after a first run), under a tag per
/// content so that test runs at once do not share an image. Returns the
/// tag, the build's output and its time.
async fn build(docker: &Docker, ctx: &BuildContext, name: &str) -> (String, String, Duration) {
    let digest = ctx.content_digest().unwrap();
    let tag = format!("liftoff-test/{name}:{}", &digest[7..19]);
    let options = BuildImageOptions {
        dockerfile: ctx.dockerfile_path().to_string(),
        t: Some(tag.clone()),
        rm: true,
        forcerm: true,
        nocache: true,
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(ctx.tar_stream())));
    let mut output = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.stream {
                    output.push_str(&s);
                }
                if let Some(e) = info.error_detail.and_then(|e| e.message) {
                    panic!("build failed: {e}\n{output}");
                }
            }
            Err(e) => panic!("build failed: {e}\n{output}"),
        }
    }
    (tag, output, started.elapsed())
}

/// Runs the image without network (with `entrypoint` if given), then
/// removes the container and the image; returns the exit code and output.
async fn run(docker: &Docker, tag: &str, entrypoint: Option<Vec<String>>) -> (i64, String) {
    let container = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(tag.to_string()),
                entrypoint,
                host_config: Some(HostConfig { network_mode: Some("none".to_string()), ..Default::default() }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    docker.start_container(&container, None).await.unwrap();
    let waited = docker
        .wait_container(&container, Some(WaitContainerOptions { condition: "not-running".to_string() }))
        .next()
        .await;
    let code = match waited {
        Some(Ok(r)) => r.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        other => panic!("waiting for the container failed: {other:?}"),
    };
    let logs_options = LogsOptions { stdout: true, stderr: true, ..Default::default() };
    let logs: Vec<String> = docker
        .logs(&container, Some(logs_options))
        .map(|frame| frame.map(|f| f.to_string()).unwrap_or_default())
        .collect()
        .await;
    let remove = RemoveContainerOptions { force: true, ..Default::default() };
    let _ = docker.remove_container(&container, Some(remove)).await;
    let _ = docker.remove_image(tag, Some(RemoveImageOptions { force: true, ..Default::default() }), None).await;
    (code, logs.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_python_dockerfile_builds_and_runs_offline() {
    let Some(host) = required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(python_image) = required_env("LIFTOFF_TEST_PYTHON_IMAGE") else { return };
    let docker = connect(&host).await;

    let code = tempfile::tempdir().unwrap();
    let d = code.path();
    write(
        d,
        "train.py",
        "import os, sys\nimport liftoff_hello\n\
         print(f'hello from {liftoff_hello.NAME} on python {sys.version_info[0]}.{sys.version_info[1]} as uid {os.getuid()}')\n\
         print('cwd', os.getcwd())\n\
         print('secret present', os.path.exists('secret.txt'))\n\
         print('keep', open('data/keep.txt').read().strip())\n\
         print('data/big.bin present', os.path.exists('data/big.bin'))\n\
         print('args', sys.argv[1:])\n",
    );
    write(d, "requirements.txt", "liftoff-hello==0.1\n");
    write(d, ".python-version", "3.11\n");
    write(d, "secret.txt", "must not reach the image\n");
    write(d, "data/big.bin", "a checkpoint\n");
    write(d, "data/keep.txt", "kept by an exception\n");
    write(d, ".dockerignore", "secret.txt\ndata\n!data/keep.txt\n");
    make_wheel(d);

    let ep: Vec<String> = ["python", "train.py", "--epochs", "1"].iter().map(|s| s.to_string()).collect();
    let req = ContextRequest {
        source_dir: d,
        build_context: None,
        job_dockerfile: None,
        dockerfile_override: None,
        entrypoint: &ep,
        python_version: None,
        accelerator_base_image: None,
        python_base_image: &python_image,
    };
    let ctx = BuildContext::prepare(&req).unwrap();
    assert!(ctx.warnings().is_empty(), "{:?}", ctx.warnings());
    assert!(ctx.dockerfile_text().contains("--no-index --find-links wheels"), "{}", ctx.dockerfile_text());
    let paths: Vec<&str> = ctx.paths().collect();
    assert!(!paths.contains(&"src/secret.txt") && paths.contains(&"src/data/keep.txt"), "{paths:?}");

    let (tag, output, build_time) = build(&docker, &ctx, "context-python").await;
    assert!(output.contains("Successfully installed liftoff-hello-0.1"), "{output}");
    eprintln!("generated Python build (context streamed, no cache): {build_time:?} on {python_image}");
    // the image's own ENTRYPOINT, from the job's
    let (code, logs) = run(&docker, &tag, None).await;
    assert_eq!(code, 0, "{logs}");
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(
        lines,
        vec![
            "hello from liftoff-hello 0.1 on python 3.11 as uid 1000",
            "cwd /home/liftoff",
            "secret present False",
            "keep kept by an exception",
            "data/big.bin present False",
            "args ['--epochs', '1']",
        ],
        "{logs}"
    );
}

/// A job's own Dockerfile beside its script: the context is the script's
/// directory, the entrypoint names the script from there; the engine gets
/// the Dockerfile and `.dockerignore` although `.dockerignore` lists them
/// (it reads both, then leaves them out of the image), and long paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_beside_the_script_builds_and_runs() {
    let Some(host) = required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(busybox) = required_env("LIFTOFF_TEST_DOCKER_IMAGE") else { return };
    let docker = connect(&host).await;

    let code = tempfile::tempdir().unwrap();
    let d = code.path();
    write(d, "README.md", "outside the context\n");
    write(d, "app/Dockerfile.liftoff", &format!("FROM {busybox}\nCOPY . /app\nWORKDIR /app\n"));
    write(d, "app/.dockerignore", "secret.txt\nDockerfile.liftoff\n.dockerignore\n");
    write(d, "app/run.sh", "#!/bin/sh\nfind . | sort\ncat ./deep/*/*.txt\n");
    write(d, "app/secret.txt", "must not reach the image\n");
    let long = format!("deep/{}/{}.txt", "d".repeat(120), "f".repeat(60));
    write(d, &format!("app/{long}"), "a long path\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("app/run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();

    let ep: Vec<String> = vec!["app/run.sh".to_string()];
    let req = ContextRequest {
        source_dir: d,
        build_context: None,
        job_dockerfile: None,
        dockerfile_override: None,
        entrypoint: &ep,
        python_version: None,
        accelerator_base_image: None,
        python_base_image: "unused:{version}",
    };
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.dockerfile_path(), "Dockerfile.liftoff");
    assert_eq!(ctx.entrypoint(), ["./run.sh"]);
    let (tag, _, build_time) = build(&docker, &ctx, "context-adjacent").await;
    eprintln!("Dockerfile beside the script (busybox): {build_time:?}");
    let (code, logs) = run(&docker, &tag, Some(ctx.entrypoint().to_vec())).await;
    assert_eq!(code, 0, "{logs}");
    let dir = format!("./deep/{}", "d".repeat(120));
    let file = format!("./{long}");
    let mut want = vec![".", "./deep", &dir, &file, "./run.sh"];
    want.sort();
    want.push("a long path");
    assert_eq!(logs.lines().collect::<Vec<_>>(), want, "{logs}");
}
