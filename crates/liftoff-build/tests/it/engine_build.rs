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
    let out = run_keeping(docker, tag, entrypoint).await;
    let _ = docker.remove_image(tag, Some(RemoveImageOptions { force: true, ..Default::default() }), None).await;
    out
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
    liftoff_testkit::python_wheel::make_wheel(d, "0.1");

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

/// Issue 16's proof that an appended image is the built one: the same
/// Python job (a dependency from `wheels/`, a package directory, an
/// executable script, a link, a `.dockerignore`) built whole by the engine
/// from the generated Dockerfile, and as its dependency image (built and
/// pushed by the docker builder) plus the code appended through the
/// Distribution API. Inside both running containers: the same user, the
/// same environment, the same tree under the working directory (names,
/// owners, modes, kinds, sizes, link targets, contents) and the same output
/// from the image's own entrypoint; and the same for the image appended in
/// the engine (`POST /images/load`). Appending again gives the same
/// manifest digest and uploads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_image_runs_exactly_as_the_built_one() {
    use liftoff_build::append::{AppendRequest, append, code_layer};
    use liftoff_build::registry::OciRegistry;
    use liftoff_build::{BuildRequest, Builder, DockerBuilder, Push, Registry};
    let Some(host) = required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(python_image) = required_env("LIFTOFF_TEST_PYTHON_IMAGE") else { return };
    let Some(registry_host) = required_env("LIFTOFF_TEST_REGISTRY") else { return };
    let Some(user) = required_env("LIFTOFF_TEST_REGISTRY_USER") else { return };
    let Some(password) = required_env("LIFTOFF_TEST_REGISTRY_PASSWORD") else { return };
    let docker = connect(&host).await;

    let code = tempfile::tempdir().unwrap();
    let d = code.path();
    write(
        d,
        "train.py",
        "import os, sys, liftoff_hello\nfrom pkg import helper\n\
         print(liftoff_hello.NAME, helper.VALUE, os.getuid(), os.getcwd(), sys.argv[1:])\n\
         print(open('link.txt').read().strip(), os.access('run.sh', os.X_OK))\n",
    );
    write(d, "pkg/__init__.py", "");
    write(d, "pkg/helper.py", "VALUE = 42\n");
    write(d, "data/notes.txt", "kept\n");
    write(d, "data/skip.bin", "left out\n");
    write(d, ".dockerignore", "data/skip.bin\n");
    write(d, "run.sh", "#!/bin/sh\necho run\n");
    write(d, "requirements.txt", "liftoff-hello==0.1\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("data/notes.txt", d.join("link.txt")).unwrap();
    liftoff_testkit::python_wheel::make_wheel(d, "0.1");
    let ep: Vec<String> = ["python", "train.py", "--epochs", "1"].iter().map(|s| s.to_string()).collect();
    let ctx = BuildContext::prepare(&ContextRequest {
        source_dir: d,
        build_context: None,
        job_dockerfile: None,
        dockerfile_override: None,
        entrypoint: &ep,
        python_version: Some("3.11"),
        accelerator_base_image: None,
        python_base_image: &python_image,
    })
    .unwrap();
    let deps = ctx.dependency_context().expect("a generated build splits");
    let deps_paths: Vec<&str> = deps.paths().collect();
    assert_eq!(
        deps_paths,
        vec![
            "Dockerfile.liftoff",
            "src",
            "src/requirements.txt",
            "wheels",
            "wheels/liftoff_hello-0.1-py3-none-any.whl"
        ],
        "the dependency image's context holds only what its Dockerfile copies"
    );

    // whole, from the generated Dockerfile
    let (built, _, _) = build(&docker, &ctx, "equivalence-built").await;

    // the dependency image, built and pushed as the docker builder does
    let marker = uuid::Uuid::new_v4().to_string();
    let path = format!("liftoff-test/append-{}", &marker[..8]);
    let config_dir = tempfile::tempdir().unwrap();
    liftoff_testkit::write_docker_config(config_dir.path(), &registry_host, Some((&user, &password)));
    let registry = OciRegistry::new(&registry_host, &path, Some(config_dir.path().to_path_buf())).unwrap();
    let login = registry.login().await.unwrap();
    let builder = DockerBuilder::new(liftoff_run::SharedEngine::new(Some(host.clone())), None);
    let (logs, mut rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let deps_image = format!("{registry_host}/{path}:lf-deps-test");
    let push = Push { registry: registry.describe(), auth: login.auth.clone(), source: login.source.clone() };
    let args = Default::default();
    let req = BuildRequest {
        context: std::sync::Arc::new(deps),
        image: &deps_image,
        platform: None,
        build_args: &args,
        push: Some(push),
    };
    builder.build(req, &logs).await.unwrap();

    // the code appended
    let layer = code_layer(&ctx).unwrap();
    let digest = ctx.content_digest().unwrap();
    let req = AppendRequest {
        dependencies: "lf-deps-test",
        tag: "lf-appended",
        layer: &layer,
        entrypoint: ctx.entrypoint(),
        context_digest: &digest,
    };
    let first = append(&registry, &req).await.unwrap();
    assert!(first.layer_uploaded && first.config_uploaded, "{first:?}");
    let again = append(&registry, &AppendRequest { tag: "lf-appended-again", ..req }).await.unwrap();
    assert_eq!(again.digest, first.digest, "the same content gives the same manifest digest");
    assert!(!again.layer_uploaded && !again.config_uploaded, "nothing is sent twice: {again:?}");
    assert_eq!(registry.manifest_digest("lf-appended").await.unwrap(), Some(first.digest.clone()));

    // pulled from the registry into the engine, as a run would
    let appended = format!("{registry_host}/{path}@{}", first.digest);
    let credentials = bollard::auth::DockerCredentials {
        username: Some(user.clone()),
        password: Some(password.clone()),
        serveraddress: Some(registry_host.clone()),
        ..Default::default()
    };
    let pull =
        bollard::query_parameters::CreateImageOptions { from_image: Some(appended.clone()), ..Default::default() };
    let mut stream = docker.create_image(Some(pull), None, Some(credentials));
    while let Some(event) = stream.next().await {
        event.unwrap();
    }

    let inspect = "id; pwd; env | grep -v '^HOSTNAME=' | sort; \
                   find . -printf '%p %U:%G %m %y %s %l\\n' | sort; \
                   find . -type f -exec sha256sum {} + | sort -k2";
    let shell = Some(vec!["sh".to_string(), "-c".to_string(), inspect.to_string()]);
    // and loaded into the engine from the dependency image it built, as for an agent without a registry
    let loaded = format!("liftoff-test/append-loaded-{}:lf-test", &marker[..8]);
    let id = liftoff_build::append::append_in_engine(&docker, &deps_image, &loaded, &layer, ctx.entrypoint(), &digest)
        .await
        .unwrap();
    assert_eq!(docker.inspect_image(&loaded).await.unwrap().id, Some(id));

    let (code_built, tree_built) = run_keeping(&docker, &built, shell.clone()).await;
    let (code_appended, tree_appended) = run_keeping(&docker, &appended, shell.clone()).await;
    let (code_loaded, tree_loaded) = run_keeping(&docker, &loaded, shell).await;
    assert_eq!((code_built, code_appended, code_loaded), (0, 0, 0), "{tree_built}\n{tree_appended}");
    assert_eq!(tree_loaded, tree_built, "the image loaded into the engine is the built one too");
    assert!(tree_built.contains("uid=1000") && tree_built.contains("./pkg/helper.py 1000:0 644 f"), "{tree_built}");
    assert!(
        tree_built.contains("./run.sh 1000:0 755 f") && tree_built.contains("./link.txt 1000:0 777 l"),
        "{tree_built}"
    );
    assert!(!tree_built.contains("skip.bin"), "{tree_built}");
    assert!(!tree_built.contains("./wheels"), "the wheels are installed, not copied into the code: {tree_built}");
    assert_eq!(tree_appended, tree_built, "user, environment and tree are the built image's");
    let (code_built, out_built) = run(&docker, &built, None).await;
    let (code_appended, out_appended) = run(&docker, &appended, None).await;
    assert_eq!((code_built, code_appended), (0, 0), "{out_built}\n{out_appended}");
    assert_eq!(out_built, "liftoff-hello 0.1 42 1000 /home/liftoff ['--epochs', '1']\nkept True\n");
    assert_eq!(out_appended, out_built, "the entrypoint's output");
    let (code_loaded, out_loaded) = run(&docker, &loaded, None).await;
    assert_eq!((code_loaded, out_loaded), (0, out_built));
}

/// [`run`] without removing the image afterwards.
async fn run_keeping(docker: &Docker, image: &str, entrypoint: Option<Vec<String>>) -> (i64, String) {
    let container = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            ContainerCreateBody {
                image: Some(image.to_string()),
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
    (code, logs.concat())
}
