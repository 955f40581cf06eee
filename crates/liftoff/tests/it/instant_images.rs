//! Fault injection for instant images, with the real binary: the agent
//! appending a code layer is killed with SIGKILL after the layer's upload
//! and before the manifest (the registry, behind a recording proxy, holds
//! the manifest PUT). The run's lease and the build claim run out; the next
//! agent finishes the image without sending the layer again, and the run
//! runs once.
//!
//! Needs the Docker engine and the registry (`.ci/docker.sh`) and the test's
//! Python image (`.ci/python-base.sh`); without them the test returns early,
//! unless `CI` is set: then it fails.

use liftoff_client::Client;
use liftoff_core::api::{BuildHow, CreateJob, CreateQueue, ItemView, LaunchRequest, LogStream, empty_object};
use liftoff_core::job::{CodeSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType};
use liftoff_testkit::{ProcessGroup, RecordingProxy, Upstream, required_env};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Python job whose `train.py` prints `line`, its dependency from `wheels/`.
async fn python_job(client: &Client, name: &str, python: &str, line: &str) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("train.py"), format!("import liftoff_hello\nprint({line:?})\n")).unwrap();
    std::fs::write(src.path().join("requirements.txt"), "liftoff-hello==0.1\n").unwrap();
    liftoff_testkit::python_wheel::make_wheel(src.path(), "0.1");
    let gz = liftoff_archive::pack_dir(src.path()).unwrap();
    let digest = liftoff_archive::sha256_digest(&gz);
    client.upload_blob(&digest, gz).await.unwrap();
    let code = CodeSource {
        digest,
        entrypoint: vec!["python".into(), "train.py".into()],
        build_context: None,
        dockerfile: None,
        base_image: Some(python.to_string()),
    };
    let source = JobSourceSpec { code: Some(code), ..Default::default() };
    let req = CreateJob {
        project: "default".into(),
        name: name.into(),
        source,
        aliases: vec![],
        runtime: Some("3.11".into()),
    };
    client.create_job(&req).await.unwrap();
}

fn agent(
    dir: &Path,
    n: u32,
    url: &str,
    key: &str,
    docker_host: &str,
    config: &Path,
    docker_config: &Path,
) -> ProcessGroup {
    let log = std::fs::File::create(dir.join(format!("agent-{n}.log"))).unwrap();
    ProcessGroup::spawn(
        Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["agent", "-c"])
            .arg(config)
            .arg("--work-dir")
            .arg(dir.join(format!("work-{n}")))
            .env("LIFTOFF_BASE_URL", url)
            .env("LIFTOFF_API_KEY", key)
            .env("DOCKER_HOST", docker_host)
            .env("DOCKER_CONFIG", docker_config)
            .env("TMPDIR", dir)
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap()
}

async fn wait_for(
    client: &Client,
    id: &str,
    what: &str,
    done: impl Fn(&ItemView) -> bool,
    bound: Duration,
) -> ItemView {
    let until = Instant::now() + bound;
    loop {
        let item = client.get_item(id).await.unwrap();
        if done(&item) {
            return item;
        }
        assert!(Instant::now() < until, "{what}: {item:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_of(client: &Client, id: &str, stream: LogStream) -> String {
    let (mut text, mut after) = (String::new(), 0);
    loop {
        let page = client.read_logs(id, after).await.unwrap();
        text.extend(page.chunks.iter().filter(|c| c.stream == stream).map(|c| c.data.as_str()));
        if page.chunks.is_empty() || page.next_seq <= after {
            return text;
        }
        after = page.next_seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_the_layer_upload_and_the_manifest_leaves_an_image_the_next_finishes() {
    let Some(docker_host) = required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(registry_host) = required_env("LIFTOFF_TEST_REGISTRY") else { return };
    let Some(user) = required_env("LIFTOFF_TEST_REGISTRY_USER") else { return };
    let Some(password) = required_env("LIFTOFF_TEST_REGISTRY_PASSWORD") else { return };
    let Some(python) = required_env("LIFTOFF_TEST_PYTHON_IMAGE") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = liftoff_server::ServerConfig::new(dir.path().join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    cfg.lease_ttl = Duration::from_secs(3);
    let server = liftoff_server::start(cfg).await.unwrap();
    let (url, key) = (server.base_url(), server.admin_key.clone().unwrap());
    let client = Client::new(&url, &key, "default").unwrap();
    let queue = CreateQueue {
        name: "q".into(),
        resource: ResourceType::LocalContainer,
        config: empty_object(),
        template_variables: vec![],
        prioritization: false,
    };
    client.create_queue(&queue).await.unwrap();

    let registry = RecordingProxy::start(Upstream::Tcp(registry_host.parse().unwrap())).await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("liftoff-test/killed-{}", &marker[..8]);
    let docker_config = dir.path().join("docker-config");
    liftoff_testkit::write_docker_config(&docker_config, &registry.addr.to_string(), Some((&user, &password)));
    let config = dir.path().join("launch-config.yaml");
    let yaml = format!("queues: [q]\nmax_jobs: 1\nbuilder:\n  type: docker\n  destination: {}/{path}\n", registry.addr);
    std::fs::write(&config, yaml).unwrap();
    let start = |n| agent(dir.path(), n, &url, &key, &docker_host, &config, &docker_config);

    // the dependency image first, with the code of a first version
    let mut first = start(0);
    python_job(&client, "killed", &python, &format!("first {marker}")).await;
    let id = client.launch("q", &LaunchRequest { job: "killed".into(), ..Default::default() }).await.unwrap().item_id;
    let item = wait_for(&client, &id, "the first run", |i| i.state.is_terminal(), Duration::from_secs(240)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(item.build.unwrap().how, BuildHow::Appended);

    // a code change: its append is frozen at the manifest, then the agent killed
    python_job(&client, "killed", &python, &format!("second {marker}")).await;
    let put_manifest = format!("PUT /v2/{path}/manifests/lf-");
    let post_blob = format!("POST /v2/{path}/blobs/uploads/");
    let blobs = registry.count(post_blob.as_bytes());
    registry.hold(put_manifest.as_bytes());
    let id = client.launch("q", &LaunchRequest { job: "killed".into(), ..Default::default() }).await.unwrap().item_id;
    let until = Instant::now() + Duration::from_secs(120);
    while registry.held() == 0 {
        assert!(Instant::now() < until, "the append never reached its manifest");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registry.count(post_blob.as_bytes()) - blobs, 2, "the layer and the config were uploaded");
    kill(Pid::from_raw(first.id() as i32), Signal::SIGKILL).unwrap();
    let _ = first.child().wait();
    registry.cut_held();
    first.kill_all();
    let uploaded = registry.count(post_blob.as_bytes());

    let mut second = start(1);
    let item =
        wait_for(&client, &id, "the run after the kill", |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    let build_log = log_of(&client, &id, LogStream::Build).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{build_log}", item.reason);
    assert_eq!(item.attempts, 1, "one lease ran out: the killed agent's");
    assert_eq!(item.build.as_ref().unwrap().how, BuildHow::Appended, "{build_log}");
    assert!(build_log.contains("layer already in the registry, config already in the registry"), "{build_log}");
    assert_eq!(registry.count(post_blob.as_bytes()), uploaded, "nothing was uploaded again");
    assert_eq!(log_of(&client, &id, LogStream::Stdout).await, format!("second {marker}\n"), "it ran once");
    second.kill_all();
}

/// Pushes a layerless image whose config says `created` and carries `labels`; returns its digest.
async fn push_image(
    registry: &dyn liftoff_build::Registry,
    tag: &str,
    created: &str,
    labels: serde_json::Value,
) -> String {
    use sha2::Digest;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Labels": labels}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []
    });
    let config = serde_json::to_vec(&config).unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&config)));
    registry.put_blob(&digest, config.clone().into()).await.unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": digest},
        "layers": []
    });
    let media = "application/vnd.docker.distribution.manifest.v2+json";
    registry.put_manifest(tag, media, serde_json::to_vec(&manifest).unwrap().into()).await.unwrap()
}

/// `liftoff image prune` on the local registry: a dry run lists and deletes
/// nothing; the real one deletes the old dependency image, the image
/// appended to it and an old whole build, and keeps the two newest of each
/// kind, the young, the appended image of a kept dependency image, and an
/// old image that a tag of someone else's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_prune_deletes_old_images_and_those_appended_to_them_and_keeps_the_rest() {
    use liftoff_build::Registry;
    use liftoff_build::registry::OciRegistry;
    let Some(registry_host) = required_env("LIFTOFF_TEST_REGISTRY") else { return };
    let Some(user) = required_env("LIFTOFF_TEST_REGISTRY_USER") else { return };
    let Some(password) = required_env("LIFTOFF_TEST_REGISTRY_PASSWORD") else { return };
    let dir = tempfile::tempdir().unwrap();
    liftoff_testkit::write_docker_config(dir.path(), &registry_host, Some((&user, &password)));
    let path = format!("liftoff-test/prune-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let registry = OciRegistry::new(&registry_host, &path, Some(dir.path().to_path_buf())).unwrap();
    let ago = |days: i64| (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days)).to_string();
    let on = |deps: &str| serde_json::json!({"dev.liftoff.dependencies": format!("{registry_host}/{path}:{deps}@sha256:00")});
    push_image(&registry, "lf-deps-new", &ago(1), serde_json::json!({})).await;
    push_image(&registry, "lf-deps-old", &ago(40), serde_json::json!({})).await;
    push_image(&registry, "lf-deps-older", &ago(50), serde_json::json!({})).await;
    push_image(&registry, "lf-on-new", &ago(1), on("lf-deps-new")).await;
    push_image(&registry, "lf-on-older", &ago(50), on("lf-deps-older")).await;
    push_image(&registry, "lf-built-young", &ago(10), serde_json::json!({})).await;
    push_image(&registry, "lf-built-old", &ago(60), serde_json::json!({})).await;
    push_image(&registry, "lf-built-older", &ago(65), serde_json::json!({})).await;
    let long_ago = ago(70);
    let shared = push_image(&registry, "lf-built-shared", &long_ago, serde_json::json!({"shared": "yes"})).await;
    assert_eq!(push_image(&registry, "release", &long_ago, serde_json::json!({"shared": "yes"})).await, shared);

    let repository = format!("{registry_host}/{path}");
    let prune = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["image", "prune", &repository, "--older-than", "30d", "--keep-last", "2"])
            .args(extra)
            .env("DOCKER_CONFIG", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let line =
        |out: &str, tag: &str| out.lines().find(|l| l.contains(&format!(" {tag} "))).unwrap_or_default().to_string();
    let dry = prune(&["--dry-run"]);
    assert!(line(&dry, "lf-deps-older").starts_with("would delete"), "{dry}");
    assert!(line(&dry, "lf-on-older").contains("its dependency image lf-deps-older goes"), "{dry}");
    assert!(dry.contains("dry run: 3 of 9 Liftoff images would be deleted; nothing was"), "{dry}");
    assert!(registry.manifest_digest("lf-deps-older").await.unwrap().is_some(), "a dry run deletes nothing");

    let out = prune(&[]);
    assert!(line(&out, "lf-built-shared").contains("a tag not made by Liftoff names the same image"), "{out}");
    assert!(line(&out, "lf-deps-old").contains("among the 2 newest"), "{out}");
    for gone in ["lf-deps-older", "lf-on-older", "lf-built-older"] {
        assert_eq!(registry.manifest_digest(gone).await.unwrap(), None, "{gone} was deleted\n{out}");
    }
    for kept in
        ["lf-deps-new", "lf-deps-old", "lf-on-new", "lf-built-young", "lf-built-old", "lf-built-shared", "release"]
    {
        assert!(registry.manifest_digest(kept).await.unwrap().is_some(), "{kept} was kept\n{out}");
    }
    assert_eq!(registry.manifest_digest("release").await.unwrap(), Some(shared));
    // by kind, newest first
    let tags: Vec<&str> =
        out.lines().skip(1).take(9).filter_map(|l| l.split_whitespace().find(|w| w.starts_with("lf-"))).collect();
    assert_eq!(
        tags,
        [
            "lf-deps-new",
            "lf-deps-old",
            "lf-deps-older",
            "lf-on-new",
            "lf-on-older",
            "lf-built-young",
            "lf-built-old",
            "lf-built-older",
            "lf-built-shared"
        ],
        "{out}"
    );
    assert!(out.contains("1 tags not made by Liftoff were left alone"), "{out}");
}
