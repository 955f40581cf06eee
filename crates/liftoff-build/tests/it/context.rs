//! Build contexts from real directories: Dockerfile precedence (item 21),
//! requirements and Python version (items 22, 24), `.dockerignore`, paths
//! that leave the code, the digest and the tar. No engine needed (the real
//! build is in `python_build.rs`).

use liftoff_build::{BuildContext, ContextError, ContextLimits, ContextRequest};
use std::path::Path;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn entrypoint(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn request<'a>(dir: &'a Path, ep: &'a [String]) -> ContextRequest<'a> {
    ContextRequest {
        source_dir: dir,
        build_context: None,
        job_dockerfile: None,
        dockerfile_override: None,
        entrypoint: ep,
        python_version: None,
        accelerator_base_image: None,
        python_base_image: "python:{version}",
    }
}

fn paths(ctx: &BuildContext) -> Vec<String> {
    ctx.paths().map(str::to_string).collect()
}

/// The tar's entries: (path, mode, mtime, uid, content).
fn tar_entries(ctx: &BuildContext) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
    let mut bytes = Vec::new();
    let n = ctx.write_tar(&mut bytes).unwrap();
    assert_eq!(n, bytes.len() as u64, "write_tar counts what it wrote");
    let mut archive = tar::Archive::new(bytes.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut content).unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            (path, h.mode().unwrap(), h.mtime().unwrap(), h.uid().unwrap(), content)
        })
        .collect()
}

#[test]
fn dockerfile_precedence_override_job_adjacent_generated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "Dockerfile.override", "FROM busybox:override\n");
    write(d, "Dockerfile.job", "FROM busybox:job\n");
    write(d, "app/Dockerfile.wandb", "FROM busybox:adjacent\n");
    write(d, "app/train.py", "print('hi')\n");
    let ep = entrypoint(&["python", "app/train.py", "--epochs", "3"]);

    let mut req = request(d, &ep);
    req.dockerfile_override = Some("Dockerfile.override");
    req.job_dockerfile = Some("Dockerfile.job");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.dockerfile_path(), "Dockerfile.override");
    assert_eq!(ctx.base_images(), vec!["busybox:override"]);
    assert_eq!(ctx.entrypoint(), ep.as_slice(), "a named Dockerfile keeps the entrypoint");

    req.dockerfile_override = None;
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.dockerfile_text(), "FROM busybox:job\n");

    // beside the entrypoint: the context is that directory, the script is
    // named relative to it
    req.job_dockerfile = None;
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.dockerfile_path(), "Dockerfile.wandb");
    assert_eq!(ctx.base_images(), vec!["busybox:adjacent"]);
    assert_eq!(ctx.entrypoint(), entrypoint(&["python", "train.py", "--epochs", "3"]).as_slice());
    assert_eq!(paths(&ctx), vec!["Dockerfile.wandb", "train.py"]);
    // Dockerfile.liftoff is preferred to the reference's name
    write(d, "app/Dockerfile.liftoff", "FROM busybox:liftoff\n");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.dockerfile_path(), "Dockerfile.liftoff");
    assert_eq!(ctx.base_images(), vec!["busybox:liftoff"]);

    // nothing: generated, with the code under src/
    std::fs::remove_file(d.join("app/Dockerfile.liftoff")).unwrap();
    std::fs::remove_file(d.join("app/Dockerfile.wandb")).unwrap();
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.dockerfile_path(), "Dockerfile.liftoff");
    assert_eq!(ctx.base_images(), vec!["python:3.11"]);
    assert_eq!(ctx.entrypoint(), ep.as_slice());
    assert!(paths(&ctx).contains(&"src/app/train.py".to_string()), "{:?}", paths(&ctx));
    assert!(paths(&ctx).contains(&"src/Dockerfile.job".to_string()));
    assert!(ctx.dockerfile_text().ends_with("ENTRYPOINT [\"python\",\"app/train.py\",\"--epochs\",\"3\"]\n"));
}

#[test]
fn build_context_subdirectory_and_named_dockerfiles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "svc/Dockerfile", "FROM busybox:svc\nCOPY . /app\n");
    write(d, "svc/main.sh", "echo hi\n");
    write(d, "outside.txt", "not in the context\n");
    write(d, "docker/gpu.Dockerfile", "FROM busybox:gpu\n");
    let ep = entrypoint(&["sh", "main.sh"]);
    let mut req = request(d, &ep);
    req.build_context = Some("svc");
    req.job_dockerfile = Some("Dockerfile");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(paths(&ctx), vec!["Dockerfile", "main.sh"]);

    req.job_dockerfile = Some("Dockerfile.gpu");
    let err = BuildContext::prepare(&req).unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile does not exist at svc/Dockerfile.gpu");

    req.build_context = Some("nope");
    let err = BuildContext::prepare(&req).unwrap_err();
    assert_eq!(err.to_string(), "build context 'nope' does not exist in the job's code");
    req.build_context = Some("outside.txt");
    assert!(matches!(BuildContext::prepare(&req).unwrap_err(), ContextError::MissingBuildContext { .. }));
}

#[test]
fn paths_that_leave_the_code_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('hi')\n");
    write(elsewhere.path(), "Dockerfile", "FROM secret\n");
    std::os::unix::fs::symlink(elsewhere.path(), d.join("linked")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("Dockerfile"), d.join("Dockerfile.link")).unwrap();
    let ep = entrypoint(&["python", "train.py"]);
    let mut req = request(d, &ep);

    for (bc, why) in
        [("../x", "it climbs out with '..'"), ("/etc", "it is absolute"), ("linked", "a link leads out of it")]
    {
        req.build_context = Some(bc);
        let err = BuildContext::prepare(&req).unwrap_err().to_string();
        assert_eq!(err, format!("build context '{bc}' must stay inside the job's code: {why}"));
    }
    req.build_context = None;
    for (file, why) in [
        ("../Dockerfile", "it climbs out with '..'"),
        ("/etc/passwd", "it is absolute"),
        ("Dockerfile.link", "a link leads out of it"),
        ("linked/Dockerfile", "a link leads out of it"),
    ] {
        req.dockerfile_override = Some(file);
        let err = BuildContext::prepare(&req).unwrap_err().to_string();
        assert_eq!(err, format!("Dockerfile '{file}' must stay inside the job's code: {why}"));
    }
    // links inside the tree are sent as links, never followed
    req.dockerfile_override = None;
    let ctx = BuildContext::prepare(&req).unwrap();
    let entries = tar_entries(&ctx);
    let link = entries.iter().find(|e| e.0 == "src/Dockerfile.link").expect("the link is sent");
    assert!(link.4.is_empty(), "as a link, without the target's content");
    assert!(!entries.iter().any(|e| e.0.starts_with("src/linked/")), "a linked directory is not entered");
}

#[test]
fn requirements_precedence_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('hi')\n");
    let ep = entrypoint(&["python", "train.py"]);
    let req = request(d, &ep);

    // nothing
    let ctx = BuildContext::prepare(&req).unwrap();
    assert!(!ctx.dockerfile_text().contains("pip install"));
    assert!(ctx.warnings().iter().any(|w| w.starts_with("no requirements file found")), "{:?}", ctx.warnings());

    // frozen
    write(d, "requirements.frozen.txt", "numpy==1.26.4\ntorch==2.0.1+cu118\n");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert!(
        ctx.dockerfile_text().contains(
            "COPY src/requirements.frozen.txt ./\nRUN pip install --no-cache-dir --extra-index-url \
             https://download.pytorch.org/whl/cu118 -r requirements.frozen.txt\n"
        ),
        "{}",
        ctx.dockerfile_text()
    );

    // pyproject wins over frozen, written to src/requirements.txt
    write(d, "pyproject.toml", "[project]\nname = \"job\"\ndependencies = [\"numpy>=1.26\", \"pandas\"]\n");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert!(ctx.dockerfile_text().contains("RUN pip install --no-cache-dir -r requirements.txt\n"));
    let entries = tar_entries(&ctx);
    let generated = entries.iter().find(|e| e.0 == "src/requirements.txt").expect("generated requirements");
    assert_eq!(generated.4, b"numpy>=1.26\npandas\n");

    // requirements.txt wins over both; with wheels/ the install is offline
    write(d, "requirements.txt", "liftoff-hello==0.1\nnumpy\n");
    write(d, "wheels/liftoff_hello-0.1-py3-none-any.whl", "not really a zip");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert!(ctx.dockerfile_text().contains("--no-index --find-links wheels -r requirements.txt\n"));
    let entries = tar_entries(&ctx);
    assert_eq!(entries.iter().find(|e| e.0 == "src/requirements.txt").unwrap().4, b"liftoff-hello==0.1\nnumpy\n");
    assert_eq!(
        ctx.warnings()[1..],
        ["numpy is in requirements.txt but not present in wheels/: the install reads wheels/ only and will fail"],
        "after the Python version's warning"
    );

    let bad = tempfile::tempdir().unwrap();
    write(bad.path(), "pyproject.toml", "[project\n");
    let err = BuildContext::prepare(&request(bad.path(), &ep)).unwrap_err().to_string();
    assert!(err.starts_with("pyproject.toml is not valid TOML"), "{err}");
}

#[test]
fn python_version_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('hi')\n");
    write(d, "requirements.txt", "");
    let ep = entrypoint(&["python", "train.py"]);
    let mut req = request(d, &ep);

    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.base_images(), vec!["python:3.11"]);
    assert!(ctx.warnings()[0].starts_with("no Python version given"), "{:?}", ctx.warnings());
    write(d, "runtime.txt", "python-3.9.18\n");
    assert_eq!(BuildContext::prepare(&req).unwrap().base_images(), vec!["python:3.9"]);
    write(d, ".python-version", "3.10.14\n");
    assert_eq!(BuildContext::prepare(&req).unwrap().base_images(), vec!["python:3.10"]);
    req.python_version = Some("3.12");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(ctx.base_images(), vec!["python:3.12"]);
    assert!(ctx.warnings().is_empty(), "{:?}", ctx.warnings());

    req.python_version = Some("latest");
    let err = BuildContext::prepare(&req).unwrap_err().to_string();
    assert_eq!(err, "python_version does not name a Python version ('latest'): expected e.g. 3.11 or 3.11.4");

    req.python_version = Some("3.10");
    req.accelerator_base_image = Some("nvidia/cuda:12.4.1-runtime-ubuntu22.04");
    assert_eq!(
        BuildContext::prepare(&req).unwrap().base_images(),
        vec!["python:3.10", "nvidia/cuda:12.4.1-runtime-ubuntu22.04"]
    );
    req.accelerator_base_image = Some("Ubuntu:22.04");
    let err = BuildContext::prepare(&req).unwrap_err().to_string();
    assert!(err.starts_with("builder.accelerator.base_image 'Ubuntu:22.04' is not a valid image reference"), "{err}");
}

#[test]
fn dockerignore_is_honoured_and_build_files_are_always_sent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, ".dockerignore", "*.ckpt\ndata\n!data/keep.txt\n**/__pycache__\nDockerfile\n.dockerignore\n");
    write(d, "Dockerfile", "FROM busybox:1\n");
    write(d, "model.ckpt", "big");
    write(d, "sub/model.ckpt", "kept: *.ckpt is anchored at the root");
    write(d, "data/a.bin", "x");
    write(d, "data/keep.txt", "keep");
    write(d, "pkg/__pycache__/m.pyc", "x");
    write(d, "pkg/m.py", "x");
    write(d, ".git/HEAD", "ref: refs/heads/main\n");
    let ep = entrypoint(&["sh", "-c", "true"]);
    let mut req = request(d, &ep);
    req.job_dockerfile = Some("Dockerfile");
    let ctx = BuildContext::prepare(&req).unwrap();
    assert_eq!(
        paths(&ctx),
        vec![".dockerignore", "Dockerfile", "data/keep.txt", "pkg", "pkg/m.py", "sub", "sub/model.ckpt"],
        "the Dockerfile and .dockerignore are sent although excluded; .git never"
    );

    let bad = tempfile::tempdir().unwrap();
    write(bad.path(), ".dockerignore", "ok\n!\n");
    let err = BuildContext::prepare(&request(bad.path(), &ep)).unwrap_err().to_string();
    assert_eq!(err, ".dockerignore line 2: illegal exclusion pattern \"!\"");
}

#[test]
fn content_digest_follows_content_and_modes_not_times() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('one')\n");
    write(d, "lib/util.py", "X = 1\n");
    write(d, "requirements.txt", "");
    let ep = entrypoint(&["python", "train.py"]);
    let req = request(d, &ep);
    let digest = || BuildContext::prepare(&req).unwrap().content_digest().unwrap();
    let first = digest();
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
    assert_eq!(digest(), first, "stable");
    // the same files elsewhere (another checkout): the same digest
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "train.py", "print('one')\n");
    write(other.path(), "lib/util.py", "X = 1\n");
    write(other.path(), "requirements.txt", "");
    let elsewhere = BuildContext::prepare(&request(other.path(), &ep)).unwrap().content_digest().unwrap();
    assert_eq!(elsewhere, first, "the digest does not depend on where the code is");

    // new mtimes only (as a fresh checkout gives): same digest, same tar
    let tar_before = {
        let mut b = Vec::new();
        BuildContext::prepare(&req).unwrap().write_tar(&mut b).unwrap();
        b
    };
    for f in ["train.py", "lib/util.py", "requirements.txt"] {
        let file = std::fs::File::options().append(true).open(d.join(f)).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
    }
    assert_eq!(digest(), first, "times do not count");
    let mut tar_after = Vec::new();
    BuildContext::prepare(&req).unwrap().write_tar(&mut tar_after).unwrap();
    assert_eq!(tar_before, tar_after, "the tar is byte for byte the same");

    // one source file changes: a new digest
    write(d, "lib/util.py", "X = 2\n");
    let changed = digest();
    assert_ne!(changed, first);
    // the executable bit counts
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("train.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(digest(), changed);
    // so does the Dockerfile (another Python version)
    let mut req2 = request(d, &ep);
    req2.python_version = Some("3.12");
    assert_ne!(BuildContext::prepare(&req2).unwrap().content_digest().unwrap(), digest());
}

#[test]
fn tar_is_normalised_and_files_are_checked_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('hi')\n");
    write(d, "run.sh", "#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(d.join("train.py"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let ep = entrypoint(&["python", "train.py"]);
    let ctx = BuildContext::prepare(&request(d, &ep)).unwrap();
    let entries = tar_entries(&ctx);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, vec!["Dockerfile.liftoff", "src", "src/run.sh", "src/train.py"]);
    for (path, mode, mtime, uid, _) in &entries {
        assert_eq!((*mtime, *uid), (0, 0), "{path}");
        let want = if path == "src" || path == "src/run.sh" { 0o755 } else { 0o644 };
        assert_eq!(*mode, want, "{path}");
    }
    assert_eq!(entries[0].4, ctx.dockerfile_text().as_bytes());

    // a file that changes between prepare and write is refused, not sent half
    write(d, "train.py", "print('a longer program')\n");
    let err = ctx.write_tar(std::io::sink()).unwrap_err().to_string();
    assert_eq!(err, "'src/train.py' changed while the build context was being read: its size changed");
}

#[test]
fn size_limits_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('hi')\n");
    write(d, "data/big.bin", &"x".repeat(10_000));
    let ep = entrypoint(&["python", "train.py"]);
    let limits = ContextLimits { max_bytes: 4_096, max_entries: 100 };
    let err = BuildContext::prepare_with_limits(&request(d, &ep), limits).unwrap_err().to_string();
    assert!(err.starts_with("the build context is too large: "), "{err}");
    assert!(
        err.ends_with(
            "exceeds the limit of 4096 bytes; leave out data, checkpoints and environments with .dockerignore"
        ),
        "{err}"
    );
    write(d, ".dockerignore", "data\n");
    let ctx = BuildContext::prepare_with_limits(&request(d, &ep), limits).unwrap();
    assert!(ctx.total_bytes() < 4_096);
    let few = ContextLimits { max_bytes: 1 << 20, max_entries: 2 };
    assert!(matches!(
        BuildContext::prepare_with_limits(&request(d, &ep), few).unwrap_err(),
        ContextError::TooLarge { .. }
    ));
}

#[test]
fn generated_dockerfile_needs_an_entrypoint_and_warns_about_a_missing_script() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "requirements.txt", "");
    let err = BuildContext::prepare(&request(dir.path(), &[])).unwrap_err();
    assert!(matches!(err, ContextError::NoEntrypoint));
    let ep = entrypoint(&["python", "./train.py"]);
    let ctx = BuildContext::prepare(&request(dir.path(), &ep)).unwrap();
    assert!(
        ctx.warnings()
            .contains(&"./train.py (the entrypoint's script) is not present in the build context".to_string()),
        "{:?}",
        ctx.warnings()
    );
    let ep = entrypoint(&["python", "-m", "pkg.train"]);
    let ctx = BuildContext::prepare(&request(dir.path(), &ep)).unwrap();
    assert!(
        !ctx.warnings().iter().any(|w| w.contains("entrypoint")),
        "an option names no script: {:?}",
        ctx.warnings()
    );
}

#[tokio::test]
async fn tar_stream_is_the_same_tar() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('hi')\n");
    // more than one chunk
    write(d, "data.bin", &"0123456789".repeat(100_000));
    let ep = entrypoint(&["python", "train.py"]);
    let ctx = BuildContext::prepare(&request(d, &ep)).unwrap();
    let mut whole = Vec::new();
    ctx.write_tar(&mut whole).unwrap();
    let chunks: Vec<_> = ctx.tar_stream().collect().await;
    assert!(chunks.len() > 1, "{} chunks", chunks.len());
    let streamed: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    assert_eq!(streamed, whole);

    // a file that changed ends the stream with the error
    write(d, "data.bin", "short");
    let last = ctx.tar_stream().collect::<Vec<_>>().await.pop().unwrap();
    let err = last.unwrap_err().to_string();
    assert_eq!(err, "'src/data.bin' changed while the build context was being read: its size changed");
}
