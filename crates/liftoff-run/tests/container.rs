//! The `local-container` runner against a real Docker engine and a real
//! registry (`source .ci/docker.sh` starts both and exports the variables).
//! Without `LIFTOFF_TEST_DOCKER_HOST` the engine tests skip, unless `CI` is
//! set: then they fail.

use bollard::query_parameters::{InspectContainerOptions, ListImagesOptions, RemoveImageOptions};
use liftoff_core::api::LogStream;
use liftoff_core::docker_options;
use liftoff_run::LogLine;
use liftoff_run::container::{CODE_MOUNT, ContainerRunner, ContainerSpec, RegistryAuth, RunningContainer};
use liftoff_testkit::required_env;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

macro_rules! engine {
    () => {
        match required_env("LIFTOFF_TEST_DOCKER_HOST") {
            Some(host) => ContainerRunner::connect_to(&host).await.expect("connect to the test engine"),
            None => return,
        }
    };
}

fn image() -> String {
    std::env::var("LIFTOFF_TEST_DOCKER_IMAGE").unwrap_or_else(|_| "liftoff-test/busybox:1".to_string())
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("liftoff-test-{what}-{}-{nanos}", std::process::id())
}

fn shell(name: &str, script: &str) -> ContainerSpec {
    ContainerSpec {
        name: unique(name),
        image: image(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: vec![script.into()],
        labels: BTreeMap::from([("liftoff.test".to_string(), name.to_string())]),
        ..Default::default()
    }
}

fn follow(c: &RunningContainer) -> (mpsc::Receiver<LogLine>, JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = mpsc::channel(64);
    let c = c.clone();
    (rx, tokio::spawn(async move { c.stream_logs(0, tx).await }))
}

/// Every line until the log stream ends, split by stream.
async fn drain(mut rx: mpsc::Receiver<LogLine>, task: JoinHandle<anyhow::Result<()>>) -> (Vec<String>, Vec<String>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some((stream, line)) = rx.recv().await {
        match stream {
            LogStream::Stdout => out.push(line),
            LogStream::Stderr => err.push(line),
            LogStream::Agent | LogStream::Build => panic!("agent line from a container: {line}"),
        }
    }
    task.await.unwrap().expect("log stream");
    (out, err)
}

/// Starts `spec`, waits for it, and returns its exit code and output; removes it.
async fn run(r: &ContainerRunner, spec: &ContainerSpec) -> (i64, Vec<String>, Vec<String>) {
    let c = r.start(spec).await.expect("start");
    let (rx, task) = follow(&c);
    let code = c.wait().await.expect("wait");
    let (out, err) = drain(rx, task).await;
    c.remove().await.expect("remove");
    (code, out, err)
}

/// Reads lines until one equals `want` (the container is ready for the next step).
async fn until_line(rx: &mut mpsc::Receiver<LogLine>, want: &str) {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some((_, line)) = rx.recv().await {
            if line.trim_end() == want {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no line '{want}' in the container's output");
}

async fn inspect(c: &RunningContainer) -> bollard::models::ContainerInspectResponse {
    let docker = bollard::Docker::connect_with_unix(
        std::env::var("LIFTOFF_TEST_DOCKER_HOST").unwrap().trim_start_matches("unix://"),
        30,
        &bollard::ClientVersion { major_version: 1, minor_version: 41 },
    )
    .unwrap();
    docker.inspect_container(c.id(), None::<InspectContainerOptions>).await.unwrap()
}

#[tokio::test]
async fn exit_codes_are_exact() {
    let r = engine!();
    for (script, want) in [("exit 0", 0), ("exit 3", 3), ("echo x; exit 42", 42), ("kill -9 $$", 137)] {
        let (code, _, _) = run(&r, &shell("exit", script)).await;
        assert_eq!(code, want, "{script}");
    }
}

#[tokio::test]
async fn stdout_and_stderr_stay_apart_complete_and_in_order() {
    let r = engine!();
    let script = r#"i=0; while [ $i -lt 2000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; printf tail"#;
    let (code, out, err) = run(&r, &shell("logs", script)).await;
    assert_eq!(code, 0);
    let want = |prefix: &str| (0..2000).map(|i| format!("{prefix} {i}\n")).collect::<Vec<_>>();
    let mut want_out = want("out");
    want_out.push("tail".to_string());
    assert_eq!(out.len(), 2001, "first {:?} last {:?}", &out[..3], &out[out.len().saturating_sub(3)..]);
    assert_eq!(out, want_out, "stdout complete, in order, and the unterminated last line kept");
    assert_eq!(err, want("err"), "stderr complete and in order");
}

#[tokio::test]
async fn env_entrypoint_and_cmd_are_passed() {
    let r = engine!();
    let mut spec = ContainerSpec {
        entrypoint: Some(vec!["/bin/echo".into(), "from-entrypoint".into()]),
        cmd: vec!["a b".into(), "; echo HACKED".into()],
        ..shell("args", "")
    };
    let (code, out, _) = run(&r, &spec).await;
    assert_eq!((code, out), (0, vec!["from-entrypoint a b ; echo HACKED\n".to_string()]), "one token each, no shell");

    spec = shell("env", r#"echo "$A|$B|$C""#);
    spec.env = BTreeMap::from([("A".into(), "1".into()), ("B".into(), "from spec".into())]);
    spec.options = docker_options::parse(&serde_json::json!({"env": ["B=from options", "C=x=y"]})).unwrap();
    let (code, out, _) = run(&r, &spec).await;
    assert_eq!((code, out), (0, vec!["1|from options|x=y\n".to_string()]), "options.env wins over the run's env");

    // `command` replaces entrypoint and arguments, split like words, never run through a shell
    spec = shell("command", "echo not this");
    spec.options = docker_options::parse(&serde_json::json!({"command": "echo 'hello world' $HOME;"})).unwrap();
    let (code, out, _) = run(&r, &spec).await;
    assert_eq!((code, out), (0, vec!["hello world $HOME;\n".to_string()]));
}

#[tokio::test]
async fn resource_options_are_applied() {
    let r = engine!();
    let mut spec = shell(
        "options",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; pwd; ulimit -n; ulimit -Hn; \
         cat /sys/fs/cgroup/pids/pids.max; df -k /dev/shm | tail -1 | awk '{print $2}'",
    );
    spec.options = docker_options::parse(&serde_json::json!({
        "memory": "64m", "workdir": "/tmp", "ulimit": "nofile=1024:2048", "pids-limit": 50, "shm-size": "8m",
        "cpus": 0.5,
    }))
    .unwrap();
    let c = r.start(&spec).await.unwrap();
    let (rx, task) = follow(&c);
    assert_eq!(c.wait().await.unwrap(), 0);
    let (out, err) = drain(rx, task).await;
    assert_eq!(out, ["67108864\n", "/tmp\n", "1024\n", "2048\n", "50\n", "8192\n"], "stderr: {err:?}");
    let host = inspect(&c).await.host_config.unwrap();
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.privileged, Some(false));
    c.remove().await.unwrap();
}

#[tokio::test]
async fn only_the_code_directory_of_the_host_is_visible() {
    let r = engine!();
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("train.py"), "print('hi')\n").unwrap();
    let mut spec = shell(
        "mount",
        "pwd; cat train.py; echo written > out.txt; \
         grep -c . /proc/self/mountinfo >/dev/null; ls /var/run/docker.sock 2>&1 | grep -c 'No such file'",
    );
    spec.code_mount = Some(code.path().to_path_buf());
    let c = r.start(&spec).await.unwrap();
    let (rx, task) = follow(&c);
    assert_eq!(c.wait().await.unwrap(), 0);
    let (out, err) = drain(rx, task).await;
    assert_eq!(out, [format!("{CODE_MOUNT}\n"), "print('hi')\n".into(), "1\n".into()], "stderr: {err:?}");
    assert_eq!(std::fs::read_to_string(code.path().join("out.txt")).unwrap(), "written\n", "mounted read-write");

    let inspected = inspect(&c).await;
    let mounts = inspected.mounts.unwrap_or_default();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].destination.as_deref(), Some(CODE_MOUNT));
    assert_eq!(mounts[0].source.as_deref(), code.path().to_str());
    assert_eq!(mounts[0].rw, Some(true));
    let host = inspected.host_config.unwrap();
    assert_eq!(host.privileged, Some(false));
    assert!(host.binds.unwrap_or_default().is_empty());
    assert!(host.cap_add.unwrap_or_default().is_empty());
    c.remove().await.unwrap();

    let mut relative = shell("mount-relative", "true");
    relative.code_mount = Some("relative/dir".into());
    let e = r.start(&relative).await.err().expect("a relative code mount is refused").to_string();
    assert!(e.contains("'relative/dir' is not an absolute path"), "{e}");
}

#[tokio::test]
async fn stop_gives_the_job_its_grace_period() {
    let r = engine!();
    // traps TERM and exits with its own code, well within the grace period
    let c = r
        .start(&shell("stop-trap", r#"trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.1; done"#))
        .await
        .unwrap();
    let (mut rx, task) = follow(&c);
    until_line(&mut rx, "ready").await;
    let t = Instant::now();
    assert_eq!(c.stop(Duration::from_secs(10)).await.unwrap(), 7);
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    let (out, _) = drain(rx, task).await;
    assert_eq!(out, ["bye\n"]);
    c.remove().await.unwrap();

    // ignores TERM: killed once the grace period is over
    let c = r.start(&shell("stop-ignore", r#"trap '' TERM; echo ready; while :; do sleep 0.1; done"#)).await.unwrap();
    let (mut rx, task) = follow(&c);
    until_line(&mut rx, "ready").await;
    let t = Instant::now();
    assert_eq!(c.stop(Duration::from_secs(2)).await.unwrap(), 137);
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "took {took:?}");
    drain(rx, task).await;
    assert_eq!(c.stop(Duration::from_secs(2)).await.unwrap(), 137, "stopping again just reports the code");
    c.remove().await.unwrap();
    c.remove().await.expect("removing twice is fine");
}

#[tokio::test]
async fn a_restarted_agent_finds_its_container_by_label_and_adopts_it() {
    let r = engine!();
    let host_key = unique("host");
    let mut spec = shell("adopt", "echo started; echo to-stderr >&2; sleep 2; echo done; exit 5");
    spec.labels.insert("liftoff.agent-host".into(), host_key.clone());
    spec.labels.insert("liftoff.run".into(), "run-1".into());
    let started = r.start(&spec).await.unwrap();
    let id = started.id().to_string();
    drop(started); // the agent dies; the container runs on

    let again = ContainerRunner::connect_to(r.host()).await.unwrap();
    let found = again.list_labelled("liftoff.agent-host", &host_key).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, id);
    assert_eq!(found[0].name, spec.name);
    assert!(found[0].running);
    assert_eq!(found[0].exit_code, None);
    assert_eq!(found[0].labels.get("liftoff.run").map(String::as_str), Some("run-1"));
    assert!(again.list_labelled("liftoff.agent-host", "someone-else").await.unwrap().iter().all(|f| f.id != id));

    let c = again.handle(&id);
    let (rx, task) = follow(&c);
    assert_eq!(c.wait().await.unwrap(), 5);
    let (out, err) = drain(rx, task).await;
    assert_eq!((out, err), (vec!["started\n".to_string(), "done\n".to_string()], vec!["to-stderr\n".to_string()]));

    let exited = again.list_labelled("liftoff.agent-host", &host_key).await.unwrap();
    assert_eq!((exited[0].running, exited[0].exit_code), (false, Some(5)));
    assert_eq!(c.wait().await.unwrap(), 5, "the code stays readable until removal");
    c.remove().await.unwrap();
    assert!(again.list_labelled("liftoff.agent-host", &host_key).await.unwrap().is_empty());
}

#[tokio::test]
async fn logs_resume_from_a_given_second() {
    let r = engine!();
    let c = r.start(&shell("since", "echo early; sleep 2; echo late >&2; echo later")).await.unwrap();
    let (mut rx, task) = follow(&c);
    until_line(&mut rx, "early").await;
    // after "early" was written, and at least a second before "late"
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 1;
    drain(rx, task).await;
    assert_eq!(c.wait().await.unwrap(), 0);
    let (tx, rx) = mpsc::channel(16);
    let resumed = r.handle(c.id());
    let task = tokio::spawn(async move { resumed.stream_logs(since, tx).await });
    let (out, err) = drain(rx, task).await;
    assert_eq!((out, err), (vec!["later\n".to_string()], vec!["late\n".to_string()]));
    c.remove().await.unwrap();
}

#[tokio::test]
async fn pulls_from_a_registry_with_credentials() {
    let r = engine!();
    let Some(registry) = required_env("LIFTOFF_TEST_REGISTRY") else { return };
    let auth = RegistryAuth {
        username: std::env::var("LIFTOFF_TEST_REGISTRY_USER").unwrap(),
        password: std::env::var("LIFTOFF_TEST_REGISTRY_PASSWORD").unwrap(),
        serveraddress: registry.clone(),
    };
    let image = format!("{registry}/liftoff-test/busybox:1");
    let docker = bollard::Docker::connect_with_unix(
        std::env::var("LIFTOFF_TEST_DOCKER_HOST").unwrap().trim_start_matches("unix://"),
        30,
        &bollard::ClientVersion { major_version: 1, minor_version: 41 },
    )
    .unwrap();
    let _ = docker.remove_image(&image, None::<RemoveImageOptions>, None).await;
    let (tx, mut rx) = mpsc::channel(1000);

    let e = r.ensure_image(&image, None, &tx).await.expect_err("no credentials, no local copy").to_string();
    assert!(e.contains(&format!("failed to pull image '{image}'")), "{e}");
    assert!(e.contains("no basic auth credentials") || e.contains("unauthorized"), "{e}");
    let wrong = RegistryAuth { password: "wrong".into(), ..auth.clone() };
    assert!(r.ensure_image(&image, Some(wrong), &tx).await.is_err());

    r.ensure_image(&image, Some(auth.clone()), &tx).await.unwrap();
    let mut lines = Vec::new();
    while let Ok((stream, line)) = rx.try_recv() {
        assert_eq!(stream, LogStream::Agent);
        assert!(line.starts_with(&format!("pull {image}: ")) && line.ends_with('\n'), "{line:?}");
        lines.push(line);
    }
    // the layers are already in the engine (the image was pushed from it), so no per-layer lines here
    assert!(lines.iter().any(|l| l.contains("Status: Downloaded newer image")), "{lines:?}");
    assert!(lines.len() < 30, "one line per layer status change, not a flood: {lines:?}");

    let (code, out, _) = run(&r, &ContainerSpec { image: image.clone(), ..shell("pulled", "echo pulled") }).await;
    assert_eq!((code, out), (0, vec!["pulled\n".to_string()]));

    // a fixed tag the engine has is not pulled again: no credentials are
    // needed now, and nothing is a warning
    assert_eq!(r.ensure_image(&image, None, &tx).await.unwrap(), None);
    let mut said = Vec::new();
    while let Ok((_, line)) = rx.try_recv() {
        said.push(line);
    }
    assert!(
        said.len() == 1 && said[0].contains("present in the engine as sha256:") && said[0].contains("not pulled again"),
        "{said:?}"
    );

    // a layer the engine lacks: real download progress, reported once per status change
    let data = format!("{registry}/liftoff-test/data:1");
    // An engine kept from an earlier run may hold this image under another
    // registry port (the registry moves to a free port when restarted): the
    // engine would then find the image's config and download no layer.
    let images = docker.list_images(None::<ListImagesOptions>).await.unwrap();
    for stale in images.iter().filter(|i| i.repo_tags.iter().any(|t| t.ends_with("/liftoff-test/data:1"))) {
        let force = RemoveImageOptions { force: true, ..Default::default() };
        docker.remove_image(&stale.id, Some(force), None).await.unwrap();
    }
    r.ensure_image(&data, Some(auth.clone()), &tx).await.unwrap();
    let mut lines = Vec::new();
    while let Ok((_, line)) = rx.try_recv() {
        lines.push(line);
    }
    for status in ["Pulling fs layer", "Downloading", "Extracting", "Pull complete"] {
        let n = lines.iter().filter(|l| l.ends_with(&format!(": {status}\n"))).count();
        assert_eq!(n, 1, "one '{status}' line for the one layer: {lines:?}");
    }
    assert!(lines.len() < 12, "{lines:?}");

    let missing = format!("{registry}/liftoff-test/absent:1");
    let e = r.ensure_image(&missing, Some(auth), &tx).await.expect_err("missing image").to_string();
    assert!(e.contains(&format!("failed to pull image '{missing}'")) && e.contains("not found"), "{e}");
}

#[tokio::test]
async fn a_missing_image_is_named() {
    let r = engine!();
    let (tx, _rx) = mpsc::channel(100);
    let e = r.ensure_image("liftoff-test/absent:1", None, &tx).await.expect_err("no such image").to_string();
    assert!(e.starts_with("failed to pull image 'liftoff-test/absent:1': "), "{e}");

    let e = r.start(&ContainerSpec { image: "liftoff-test/absent:1".into(), ..shell("absent", "true") }).await;
    let e = e.err().expect("no such image").to_string();
    assert!(e.contains("from image 'liftoff-test/absent:1'") && e.contains("No such image"), "{e}");
}

#[tokio::test]
async fn the_local_image_is_used_when_the_registry_cannot_be_reached() {
    let r = engine!();
    let (tx, mut rx) = mpsc::channel(100);
    // `latest` is pulled every time; docker.io cannot be reached from CI and
    // the image is local: used, with a warning
    let docker = bollard::Docker::connect_with_unix(
        std::env::var("LIFTOFF_TEST_DOCKER_HOST").unwrap().trim_start_matches("unix://"),
        30,
        &bollard::ClientVersion { major_version: 1, minor_version: 41 },
    )
    .unwrap();
    let tag = bollard::query_parameters::TagImageOptions {
        repo: Some("liftoff-test/busybox".into()),
        tag: Some("latest".into()),
    };
    docker.tag_image(&image(), Some(tag)).await.unwrap();
    let warning = r.ensure_image("liftoff-test/busybox:latest", None, &tx).await.unwrap();
    assert!(warning.is_some_and(|w| w.contains("using the local image")));
    let (_, line) = rx.try_recv().unwrap();
    assert!(line.contains("pull failed") && line.contains("using the local image"), "{line}");
    // a fixed tag the engine has is not pulled at all
    assert_eq!(r.ensure_image(&image(), None, &tx).await.unwrap(), None);
    let (_, line) = rx.try_recv().unwrap();
    assert!(line.contains("not pulled again"), "{line}");
}

#[tokio::test]
async fn gpus_without_a_gpu_runtime_fail_the_run_clearly() {
    let r = engine!();
    let mut spec = shell("gpus", "true");
    let key = unique("gpu-host");
    spec.labels.insert("liftoff.agent-host".into(), key.clone());
    spec.options = docker_options::parse(&serde_json::json!({"gpus": "all"})).unwrap();
    let e = r.start(&spec).await.err().expect("no GPU runtime here").to_string();
    assert!(e.contains("with gpus 'all'") && e.contains("GPU runtime"), "{e}");
    assert!(r.list_labelled("liftoff.agent-host", &key).await.unwrap().is_empty(), "the failed container is removed");
}

#[tokio::test]
async fn a_bad_docker_host_gives_a_clear_error() {
    let e = ContainerRunner::connect_to("unix:///nonexistent/liftoff/docker.sock").await.err().unwrap().to_string();
    assert!(e.contains("no docker engine socket at '/nonexistent/liftoff/docker.sock'"), "{e}");
    assert!(e.contains("start an engine") && e.contains("DOCKER_HOST"), "{e}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let host = format!("tcp://127.0.0.1:{port}");
    let e = ContainerRunner::connect_to(&host).await.err().unwrap().to_string();
    assert!(e.contains(&format!("cannot reach the docker engine at '{host}'")) && e.contains("start an engine"), "{e}");

    let e = ContainerRunner::connect_to("tcp://192.0.2.1:2375").await.err().unwrap().to_string();
    assert!(e.contains("not on loopback"), "{e}");
}
