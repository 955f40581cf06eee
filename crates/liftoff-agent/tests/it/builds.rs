//! Builds in the agent's pipeline, against a real Docker engine and a real
//! registry (htpasswd Basic auth), both started by scripts/test.sh through
//! .ci/docker.sh: a code job is built once, found on the next launch, built
//! again when its code changes; two agents build the same new content once;
//! a push with wrong credentials fails at stage `build`, naming the registry.

use crate::support;

use liftoff_agent::AgentOptions;
use liftoff_build::BuildSetup;
use liftoff_core::api::{BuildHow, CreateJob, LogStream};
use liftoff_core::job::{CodeSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType, Stage};
use std::sync::Arc;
use std::time::Duration;
use support::{Rig, required_env, rig};

struct Components {
    docker_host: String,
    base: String,
    registry: String,
    user: String,
    password: String,
}

fn components() -> Option<Components> {
    Some(Components {
        docker_host: required_env("LIFTOFF_TEST_DOCKER_HOST")?,
        base: required_env("LIFTOFF_TEST_DOCKER_IMAGE")?,
        registry: required_env("LIFTOFF_TEST_REGISTRY")?,
        user: required_env("LIFTOFF_TEST_REGISTRY_USER")?,
        password: required_env("LIFTOFF_TEST_REGISTRY_PASSWORD")?,
    })
}

/// `dir` uploaded as a code archive and made job `name`'s new version.
async fn code_job_from(
    r: &Rig,
    name: &str,
    dir: &std::path::Path,
    entrypoint: &[&str],
    dockerfile: Option<&str>,
    base_image: Option<&str>,
    runtime: Option<&str>,
) {
    let gz = liftoff_archive::pack_dir(dir).unwrap();
    let digest = liftoff_archive::sha256_digest(&gz);
    r.client.upload_blob(&digest, gz).await.unwrap();
    let code = CodeSource {
        digest,
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        build_context: None,
        dockerfile: dockerfile.map(str::to_string),
        base_image: base_image.map(str::to_string),
    };
    let source = JobSourceSpec { code: Some(code), ..Default::default() };
    let runtime = runtime.map(str::to_string);
    let req = CreateJob { project: "default".into(), name: name.into(), source, aliases: vec![], runtime };
    r.client.create_job(&req).await.unwrap();
}

/// A code job from `files`, run as `sh run.sh`, built from its own Dockerfile.
async fn files_job(r: &Rig, name: &str, files: &[(&str, String)]) {
    let src = tempfile::tempdir().unwrap();
    for (path, text) in files {
        std::fs::write(src.path().join(path), text).unwrap();
    }
    code_job_from(r, name, src.path(), &["sh", "run.sh"], Some("Dockerfile"), None, None).await;
}

fn job_files(c: &Components, marker: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Dockerfile", format!("FROM {}\nCOPY . /app\nWORKDIR /app\nENTRYPOINT [\"sh\", \"run.sh\"]\n", c.base)),
        ("run.sh", "echo \"hello from the image: $(cat data.txt)\"\n".into()),
        ("data.txt", marker.to_string()),
    ]
}

/// [`job_files`] with a slow step before the copy (unique, so the engine's
/// layer cache cannot skip it): how long the build takes.
fn slow_job_files(c: &Components, marker: &str, seconds: u32) -> Vec<(&'static str, String)> {
    let mut files = job_files(c, marker);
    files[0].1 = format!(
        "FROM {}\nRUN sleep {seconds} && echo {marker}\nCOPY . /app\nWORKDIR /app\nENTRYPOINT [\"sh\", \"run.sh\"]\n",
        c.base
    );
    files
}

/// An agent config with the docker builder pushing to `repo`.
fn docker_to(repo: &str) -> String {
    format!("queues: [boxes]\nbuilder:\n  type: docker\n  destination: {repo}\n")
}

/// A server with one `local-container` queue, `boxes`.
async fn boxes_rig() -> Rig {
    let r = rig().await;
    r.queue("boxes", ResourceType::LocalContainer, serde_json::json!({})).await;
    r
}

/// A docker config dir holding `password` for the test registry.
fn docker_config(r: &Rig, c: &Components, password: &str) -> std::path::PathBuf {
    let dir = r.dir.path().join(format!("docker-config-{}", uuid::Uuid::new_v4()));
    liftoff_testkit::write_docker_config(&dir, &c.registry, Some((&c.user, password)));
    dir
}

async fn setup(c: &Components, yaml: &str, docker_config: Option<std::path::PathBuf>) -> BuildSetup {
    let resolved = liftoff_core::launch_config::resolve(
        Some(yaml),
        &Default::default(),
        &liftoff_core::launch_config::Overrides::default(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let engine = liftoff_run::SharedEngine::new(Some(c.docker_host.clone()));
    let env = liftoff_cloud::CloudEnv::resolve(resolved.config.environment.as_ref()).await.unwrap();
    BuildSetup::from_config(&resolved.config, &env, engine, docker_config).await.unwrap().expect("a docker builder").0
}

fn options(r: &Rig, c: &Components, build: BuildSetup) -> AgentOptions {
    AgentOptions {
        queues: vec!["boxes".into()],
        docker_host: Some(c.docker_host.clone()),
        agent_key: format!("test-{}", uuid::Uuid::new_v4()),
        build: Some(Arc::new(build)),
        start_timeout: Duration::from_secs(120),
        ..r.options(2, Duration::from_secs(5))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_job_is_built_once_found_next_time_and_built_again_when_its_code_changes() {
    let Some(c) = components() else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    files_job(&r, "built", &job_files(&c, &marker)).await;
    let repo = format!("{}/liftoff-test/built-{}", c.registry, &marker[..8]);
    let yaml = docker_to(&repo);
    let creds = docker_config(&r, &c, &c.password);
    let (stop, agent) = r.agent_with(options(&r, &c, setup(&c, &yaml, Some(creds.clone())).await));

    let first = r.launch_on("boxes", "built").await;
    let item = r.wait_for(&first, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(r.logs(&first, LogStream::Stdout).await, format!("hello from the image: {marker}\n"));
    let built = item.build.expect("the run records its image");
    assert_eq!(built.how, BuildHow::Built);
    assert_eq!(built.builder, "docker");
    let digest = built.digest.clone().expect("a pushed image has a digest");
    assert!(
        built.image.starts_with(&format!("{repo}:lf-")) && built.image.ends_with(&format!("@{digest}")),
        "{}",
        built.image
    );
    let build_log = r.logs(&first, LogStream::Build).await;
    assert!(build_log.contains("Step 1/4 : FROM"), "{build_log}");
    assert!(build_log.contains(&format!("pushing {repo}:lf-")), "{build_log}");

    // unchanged: found in the registry, nothing built
    let second = r.launch_on("boxes", "built").await;
    let item = r.wait_for(&second, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    let found = item.build.expect("the run records its image");
    assert_eq!((found.how, &found.image), (BuildHow::Found, &built.image));
    let build_log = r.logs(&second, LogStream::Build).await;
    assert!(!build_log.contains("Step 1/"), "{build_log}");
    assert!(build_log.contains("no build"), "{build_log}");

    // one changed file: a new tag, built
    files_job(&r, "built", &job_files(&c, &format!("{marker}-changed"))).await;
    let third = r.launch_on("boxes", "built").await;
    let item = r.wait_for(&third, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    let rebuilt = item.build.expect("the run records its image");
    assert_eq!(rebuilt.how, BuildHow::Built);
    assert_ne!(rebuilt.image.split('@').next(), built.image.split('@').next(), "a new tag");
    assert_eq!(r.logs(&third, LogStream::Stdout).await, format!("hello from the image: {marker}-changed\n"));
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// A proxy in front of the engine's unix socket that holds the first
/// `POST /.../build` request (the bytes before it pass at once) until
/// `release` is notified: a build that takes as long as the test needs,
/// whatever the machine's speed. Returns the `unix://` address and whether
/// a build was held.
async fn engine_holding_the_first_build(
    engine: &str,
    dir: &std::path::Path,
    release: Arc<tokio::sync::Notify>,
) -> (String, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = engine.strip_prefix("unix://").expect("a unix:// engine").to_string();
    let path = dir.join(format!("engine-{}.sock", uuid::Uuid::new_v4().simple()));
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let held = Arc::new(AtomicBool::new(false));
    let seen = held.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, release, held) = (upstream.clone(), release.clone(), held.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::UnixStream::connect(&upstream).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                // Scan what the client sends for the build request's line;
                // once one is held and released, pass the rest through.
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 65536];
                    let n = match cr.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    // a request line starting in `buf`, and whether it is whole
                    let post = buf.windows(6).position(|w| w == b"POST /");
                    let line_end = post.and_then(|i| buf[i..].iter().position(|b| *b == b'\n').map(|e| i + e));
                    let is_build =
                        |i: usize, e: usize| buf[i..e].windows(7).any(|w| w == b"/build?" || w == b"/build ");
                    let pass = match (post, line_end) {
                        (Some(i), Some(e)) if is_build(i, e) && !held.swap(true, Ordering::SeqCst) => {
                            if sw.write_all(&buf[..i]).await.is_err() {
                                return;
                            }
                            release.notified().await;
                            if sw.write_all(&buf[i..]).await.is_err() {
                                return;
                            }
                            let _ = tokio::io::copy(&mut cr, &mut sw).await;
                            return;
                        }
                        // keep a request line that is not whole yet, or a tail that may begin one
                        (Some(i), None) => i,
                        _ => {
                            (1..6).rev().find(|k| buf.ends_with(&b"POST /"[..*k])).map_or(buf.len(), |k| buf.len() - k)
                        }
                    };
                    if sw.write_all(&buf[..pass]).await.is_err() {
                        return;
                    }
                    buf.drain(..pass);
                }
            });
        }
    });
    (format!("unix://{}", path.display()), seen)
}

/// Two agents get the same new content at once. The first build is held
/// at the engine until the other agent is seen waiting for it (its run's
/// build log says so), so the second really waits, on any machine: the
/// content is built once, the other run records `Waited`, and its log
/// shows the wait and the image it then used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_build_the_same_new_content_once() {
    let Some(c) = components() else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    files_job(&r, "shared", &job_files(&c, &marker)).await;
    let repo = format!("{}/liftoff-test/shared-{}", c.registry, &marker[..8]);
    let yaml = docker_to(&repo);
    let creds = docker_config(&r, &c, &c.password);
    let release = Arc::new(tokio::sync::Notify::new());
    let (engine, held) = engine_holding_the_first_build(&c.docker_host, r.dir.path(), release.clone()).await;
    let held_c = Components { docker_host: engine.clone(), ..components().unwrap() };
    let a = r.launch_on("boxes", "shared").await;
    let b = r.launch_on("boxes", "shared").await;
    let mut agents = vec![];
    for n in 0..2 {
        let opts = AgentOptions {
            max_jobs: 1,
            work_dir: r.work.join(format!("agent-{n}")),
            ..options(&r, &held_c, setup(&held_c, &yaml, Some(creds.clone())).await)
        };
        agents.push(r.agent_with(opts));
    }
    const WAITING: &str = "; waiting for it";
    let until = std::time::Instant::now() + Duration::from_secs(120);
    let waiter = 'seen: loop {
        for id in [&a, &b] {
            if r.logs(id, LogStream::Build).await.contains(WAITING) {
                break 'seen id.clone();
            }
        }
        assert!(std::time::Instant::now() < until, "no agent was seen waiting for the other's build");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(held.load(std::sync::atomic::Ordering::SeqCst), "the build was held at the engine while the other waited");
    release.notify_one();
    let builder = if waiter == a { &b } else { &a };
    let mut steps = 0;
    for id in [&a, &b] {
        let item = r.wait_for(id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
        assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
        let how = item.build.expect("recorded").how;
        let log = r.logs(id, LogStream::Build).await;
        steps += log.matches("Step 1/").count();
        if id == builder {
            assert_eq!(how, BuildHow::Built, "{log}");
        } else {
            assert_eq!(how, BuildHow::Waited, "{log}");
            let (wait, used) = (log.find(WAITING), log.find("was built by another agent"));
            assert!(wait.is_some() && used > wait, "the waiter waited, then used the image:\n{log}");
        }
        assert_eq!(r.logs(id, LogStream::Stdout).await, format!("hello from the image: {marker}\n"));
    }
    assert_eq!(steps, 1, "the content was built once");
    for (stop, agent) in agents {
        stop.send(()).unwrap();
        agent.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_wrong_credentials_fails_at_build_naming_the_registry_and_the_credentials() {
    let Some(c) = components() else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    files_job(&r, "refused", &job_files(&c, &marker)).await;
    let repo = format!("{}/liftoff-test/refused-{}", c.registry, &marker[..8]);
    let yaml = docker_to(&repo);
    let creds = docker_config(&r, &c, "not-the-password");
    let (stop, agent) = r.agent_with(options(&r, &c, setup(&c, &yaml, Some(creds)).await));
    let id = r.launch_on("boxes", "refused").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Build)), "{:?}", item.reason);
    let reason = item.reason.unwrap();
    eprintln!("reason: {reason}");
    assert!(reason.contains(&c.registry), "names the registry: {reason}");
    assert!(reason.contains("config.json"), "names the credential source: {reason}");
    assert!(!reason.contains("not-the-password"), "never the secret: {reason}");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_registry_the_image_stays_in_the_engine_and_is_found_there() {
    let Some(c) = components() else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let job = format!("local-{}", &marker[..8]);
    files_job(&r, &job, &job_files(&c, &marker)).await;
    let (stop, agent) =
        r.agent_with(options(&r, &c, setup(&c, "queues: [boxes]\nbuilder: {type: docker}\n", None).await));
    let mut records = vec![];
    for _ in 0..2 {
        let id = r.launch_on("boxes", &job).await;
        let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
        assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
        assert_eq!(r.logs(&id, LogStream::Stdout).await, format!("hello from the image: {marker}\n"));
        records.push(item.build.expect("recorded"));
    }
    assert_eq!((records[0].how, records[1].how), (BuildHow::Built, BuildHow::Found));
    assert!(records[0].image.starts_with(&format!("liftoff/{job}:lf-")), "{}", records[0].image);
    assert_eq!(records[0].image, records[1].image);
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_job_without_a_dockerfile_gets_a_generated_one_that_really_builds() {
    let Some(c) = components() else { return };
    let Some(python) = required_env("LIFTOFF_TEST_PYTHON_IMAGE") else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("train.py"),
        "import sys\nprint('trained on', open('data.txt').read(), sys.version_info[:2])\n",
    )
    .unwrap();
    std::fs::write(src.path().join("data.txt"), &marker).unwrap();
    // no network in builds here: nothing to install; the comment makes this
    // run's dependency image its own (dependency images are shared by content)
    std::fs::write(src.path().join("requirements.txt"), format!("# {marker}\n")).unwrap();
    code_job_from(&r, "py", src.path(), &["python", "train.py"], None, None, None).await;
    let mut build = setup(&c, "queues: [boxes]\nbuilder: {type: docker}\n", None).await;
    // the engine has a Python 3.11 image made from Debian's packages under this name
    let (repo, _) = python.rsplit_once(':').unwrap();
    build.python_base_image = format!("{repo}:{{version}}");
    let (stop, agent) = r.agent_with(options(&r, &c, build));
    let id = r.launch_on("boxes", "py").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(240)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(r.logs(&id, LogStream::Stdout).await, format!("trained on {marker} (3, 11)\n"));
    let build_log = r.logs(&id, LogStream::Build).await;
    let record = item.build.expect("recorded");
    assert_eq!(record.how, BuildHow::Appended, "{build_log}");
    assert!(build_log.contains(&format!("FROM {repo}:3.11")), "the generated Dockerfile was used: {build_log}");
    assert!(build_log.contains("building the dependency image liftoff/dependencies:lf-deps-"), "{build_log}");
    assert!(build_log.contains("loaded into the engine"), "{build_log}");
    // the engine has the appended image under its recorded name and id
    let docker = bollard::Docker::connect_with_unix(
        c.docker_host.trim_start_matches("unix://"),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let inspect = docker.inspect_image(&record.image).await.unwrap();
    assert_eq!(inspect.id, record.digest);
    let labels = inspect.config.and_then(|c| c.labels).unwrap_or_default();
    assert!(
        labels.get("dev.liftoff.dependencies").is_some_and(|d| d.starts_with("liftoff/dependencies:lf-deps-")),
        "{labels:?}"
    );
    // no Python version was given: the default is a warning on the run, at stage build
    assert!(item.warnings.iter().any(|w| w.stage == Stage::Build && w.message.contains("3.11")), "{:?}", item.warnings);
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// Inventory items 19 and 29: an agent without a builder (noop, or no
/// builder block) runs no build; a code job without a base image fails at
/// once with the reference's words and what to do, before anything is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_builder_a_code_job_without_a_base_image_fails_clearly() {
    let r = boxes_rig().await;
    r.code_job("plain", "echo never\n", None).await;
    let opts = AgentOptions {
        queues: vec!["boxes".into()],
        agent_key: format!("test-{}", uuid::Uuid::new_v4()),
        ..r.options(1, Duration::from_secs(5))
    };
    let (stop, agent) = r.agent_with(opts);
    let id = r.launch_on("boxes", "plain").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Agent)), "{:?}", item.reason);
    let reason = item.reason.unwrap();
    assert!(reason.contains("Attempted build with noop builder"), "{reason}");
    assert!(reason.contains("builder: {type: docker}") && reason.contains("base_image"), "says what to do: {reason}");
    assert!(item.build.is_none());
    assert!(!r.logs(&id, LogStream::Agent).await.contains("unpacked"), "nothing was fetched");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// Fault injection: the agent building an image dies midway (its task is
/// aborted: no outcome, no release, no more renewals). The item's lease and
/// the build's lease run out; another agent claims the item, wins the build
/// claim, builds and runs it: the run ends once, built once by the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_whose_agent_dies_is_built_by_another_agent() {
    let Some(c) = components() else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let files = slow_job_files(&c, &marker, 6);
    files_job(&r, "orphan", &files).await;
    let repo = format!("{}/liftoff-test/orphan-{}", c.registry, &marker[..8]);
    let yaml = docker_to(&repo);
    let creds = docker_config(&r, &c, &c.password);
    let id = r.launch_on("boxes", "orphan").await;
    let first = AgentOptions {
        max_jobs: 1,
        work_dir: r.work.join("first"),
        ..options(&r, &c, setup(&c, &yaml, Some(creds.clone())).await)
    };
    let (_stop_first, first) = r.agent_with(first);
    // the first agent is building
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !r.logs(&id, LogStream::Build).await.contains("Step 2/") {
        assert!(std::time::Instant::now() < until, "the first agent never started building");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.abort();
    let _ = first.await;
    let second = AgentOptions {
        max_jobs: 1,
        work_dir: r.work.join("second"),
        ..options(&r, &c, setup(&c, &yaml, Some(creds)).await)
    };
    let (stop, second) = r.agent_with(second);
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(item.attempts, 1, "one lease expired: the first agent's");
    assert_eq!(item.build.expect("recorded").how, BuildHow::Built);
    assert_eq!(r.logs(&id, LogStream::Stdout).await, format!("hello from the image: {marker}\n"), "it ran once");
    stop.send(()).unwrap();
    second.await.unwrap().unwrap();
}

/// The credentials may read (the existence check passes: the tag is not
/// there) but not push: the engine's push is refused by the registry's token
/// server, and the run fails at stage `build` naming the registry and where
/// the credentials came from, never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_refused_after_the_build_fails_at_build_naming_the_registry_and_the_credentials() {
    let Some(c) = components() else { return };
    let Some(registry) = required_env("LIFTOFF_TEST_TOKEN_REGISTRY") else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    files_job(&r, "pull-only", &job_files(&c, &marker)).await;
    let repo = format!("{registry}/liftoff-test/pull-only-{}", &marker[..8]);
    let yaml = docker_to(&repo);
    // .ci/token-registry.sh: `puller` may pull, not push
    let creds = r.dir.path().join("puller");
    liftoff_testkit::write_docker_config(&creds, &registry, Some(("puller", "puller-password")));
    let (stop, agent) = r.agent_with(options(&r, &c, setup(&c, &yaml, Some(creds)).await));
    let id = r.launch_on("boxes", "pull-only").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Build)), "{:?}", item.reason);
    let reason = item.reason.unwrap();
    assert!(reason.contains(&format!("the push of {repo}:lf-")), "failed at the push: {reason}");
    assert!(
        reason.contains(&registry) && reason.contains("config.json"),
        "names the registry and the source: {reason}"
    );
    assert!(!reason.contains("puller-password"), "{reason}");
    assert!(r.logs(&id, LogStream::Build).await.contains("Successfully built"), "the build itself succeeded");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// A Dockerfile step that fails fails the run at stage `build`, with the
/// engine's words, and the build's output in the run's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dockerfile_step_fails_the_run_at_build() {
    let Some(c) = components() else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let mut files = job_files(&c, &marker);
    files[0].1 = format!("FROM {}\nRUN echo {marker} && exit 3\n", c.base);
    files_job(&r, "broken", &files).await;
    let (stop, agent) =
        r.agent_with(options(&r, &c, setup(&c, "queues: [boxes]\nbuilder: {type: docker}\n", None).await));
    let id = r.launch_on("boxes", "broken").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Build)), "{:?}", item.reason);
    let reason = item.reason.unwrap();
    assert!(reason.contains("the build of liftoff/broken:lf-") && reason.contains("non-zero code: 3"), "{reason}");
    assert!(r.logs(&id, LogStream::Build).await.contains(&marker), "the step's output is in the log");
    assert!(item.build.is_none(), "no image was recorded");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// A Python code job built from the generated Dockerfile on `python` (the
/// test's Python image): `train.py` prints `line`, and its one dependency
/// comes from `wheels/`.
async fn python_job(r: &Rig, name: &str, python: &str, line: &str) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("train.py"), format!("import liftoff_hello\nprint({line:?}, liftoff_hello.NAME)\n"))
        .unwrap();
    std::fs::write(src.path().join("requirements.txt"), "liftoff-hello==0.1\n").unwrap();
    liftoff_testkit::python_wheel::make_wheel(src.path(), "0.1");
    code_job_from(r, name, src.path(), &["python", "train.py"], None, Some(python), Some("3.11")).await;
}

/// Issue 16's first proof, on the local registry: a Python job with its
/// dependency in `wheels/` gets its dependency image built once, and its
/// code appended; a one-line change of its code is appended again with no
/// builder run (the engine, behind a recording proxy, gets no `/build`
/// request) and the container runs the new line; an unchanged relaunch
/// finds its image with one manifest HEAD (the registry is behind a
/// recording proxy too); once both images are pruned from the registry,
/// the next launch makes them again although the server's claims say done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_only_change_is_appended_to_the_dependency_image_with_no_builder_run() {
    use liftoff_testkit::{RecordingProxy, Upstream};
    let Some(c) = components() else { return };
    let Some(python) = required_env("LIFTOFF_TEST_PYTHON_IMAGE") else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let engine = RecordingProxy::start(Upstream::Unix(c.docker_host.trim_start_matches("unix://").into())).await;
    let registry = RecordingProxy::start(Upstream::Tcp(c.registry.parse().unwrap())).await;
    let proxied = Components {
        docker_host: format!("tcp://{}", engine.addr),
        registry: registry.addr.to_string(),
        ..components().unwrap()
    };
    let path = format!("liftoff-test/instant-{}", &marker[..8]);
    let repo = format!("{}/{path}", proxied.registry);
    let creds = docker_config(&r, &proxied, &c.password);
    let (stop, agent) =
        r.agent_with(options(&r, &proxied, setup(&proxied, &docker_to(&repo), Some(creds.clone())).await));
    const BUILD: &[u8] = b"/build?";

    python_job(&r, "instant", &python, &format!("first {marker}")).await;
    let first = r.launch_on("boxes", "instant").await;
    let item = r.wait_for(&first, |i| i.state.is_terminal(), Duration::from_secs(240)).await;
    let log = r.logs(&first, LogStream::Build).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{log}", item.reason);
    assert_eq!(r.logs(&first, LogStream::Stdout).await, format!("first {marker} liftoff-hello 0.1\n"));
    assert_eq!(item.build.as_ref().expect("recorded").how, BuildHow::Appended, "{log}");
    assert!(log.contains(&format!("building the dependency image {repo}:lf-deps-")), "{log}");
    assert!(log.contains(": RUN pip install --no-cache-dir --no-index --find-links wheels"), "{log}");
    assert!(!log.contains("COPY --chown=1000:0 src/"), "the dependency image has no code: {log}");
    assert_eq!(engine.count(BUILD), 1, "one engine build: the dependency image's");

    python_job(&r, "instant", &python, &format!("second {marker}")).await;
    let second = r.launch_on("boxes", "instant").await;
    let item = r.wait_for(&second, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    let log = r.logs(&second, LogStream::Build).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{log}", item.reason);
    let record = item.build.expect("recorded");
    assert_eq!(record.how, BuildHow::Appended, "{log}");
    assert!(record.image.starts_with(&format!("{repo}:lf-")) && !record.image.contains("lf-deps-"), "{}", record.image);
    assert!(log.contains(&format!("dependency image {repo}:lf-deps-")) && log.contains(" exists ("), "{log}");
    assert!(log.contains("layer uploaded"), "{log}");
    assert_eq!(engine.count(BUILD), 1, "a code-only change starts no builder");
    assert_eq!(
        r.logs(&second, LogStream::Stdout).await,
        format!("second {marker} liftoff-hello 0.1\n"),
        "the new code ran"
    );

    let heads = format!("HEAD /v2/{path}/manifests/");
    let before = registry.count(heads.as_bytes());
    let third = r.launch_on("boxes", "instant").await;
    let item = r.wait_for(&third, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    let found = item.build.expect("recorded");
    assert_eq!((found.how, &found.image), (BuildHow::Found, &record.image));
    assert_eq!(registry.count(heads.as_bytes()) - before, 1, "found with one manifest HEAD");
    assert_eq!(engine.count(BUILD), 1);

    // both images pruned from the registry: the server's claims say done, the
    // registry says gone; the agent claims them again and makes them again
    use liftoff_build::Registry;
    let oci = liftoff_build::registry::OciRegistry::new(&proxied.registry, &path, Some(creds)).unwrap();
    let deps_tag = log.split(&format!("{repo}:")).find_map(|rest| rest.strip_prefix("lf-deps-")).unwrap();
    let deps_tag = format!("lf-deps-{}", &deps_tag[..24]);
    for tag in [record.image.split('@').next().unwrap().rsplit_once(':').unwrap().1, deps_tag.as_str()] {
        let digest = oci.manifest_digest(tag).await.unwrap().unwrap_or_else(|| panic!("{tag} is there"));
        oci.delete_manifest(&digest).await.unwrap();
    }
    let fourth = r.launch_on("boxes", "instant").await;
    let item = r.wait_for(&fourth, |i| i.state.is_terminal(), Duration::from_secs(240)).await;
    let log = r.logs(&fourth, LogStream::Build).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{log}", item.reason);
    assert_eq!(item.build.expect("recorded").how, BuildHow::Appended, "{log}");
    assert_eq!(
        log.matches("is gone (pruned?); building it again").count(),
        2,
        "the image and its dependency image: {log}"
    );
    assert_eq!(engine.count(BUILD), 2, "the dependency image was built again");
    assert_eq!(r.logs(&fourth, LogStream::Stdout).await, format!("second {marker} liftoff-hello 0.1\n"));
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// Two agents get the same new code at once, on a dependency image that
/// exists: the append's manifest PUT is held at the registry until the
/// other agent is seen waiting for the image's build claim, so the second
/// really waits: the code is appended once (one manifest PUT, two blob
/// uploads: the layer and the config), the other run records `Waited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_appending_the_same_new_code_upload_it_once() {
    use liftoff_testkit::{RecordingProxy, Upstream};
    let Some(c) = components() else { return };
    let Some(python) = required_env("LIFTOFF_TEST_PYTHON_IMAGE") else { return };
    let r = boxes_rig().await;
    let marker = uuid::Uuid::new_v4().to_string();
    let registry = RecordingProxy::start(Upstream::Tcp(c.registry.parse().unwrap())).await;
    let proxied = Components { registry: registry.addr.to_string(), ..components().unwrap() };
    let path = format!("liftoff-test/twice-{}", &marker[..8]);
    let repo = format!("{}/{path}", proxied.registry);
    let creds = docker_config(&r, &proxied, &c.password);
    let mut agents = vec![];
    for n in 0..2 {
        let opts = AgentOptions {
            max_jobs: 1,
            work_dir: r.work.join(format!("agent-{n}")),
            ..options(&r, &proxied, setup(&proxied, &docker_to(&repo), Some(creds.clone())).await)
        };
        agents.push(r.agent_with(opts));
    }
    python_job(&r, "twice", &python, &format!("first {marker}")).await;
    let first = r.launch_on("boxes", "twice").await;
    let item = r.wait_for(&first, |i| i.state.is_terminal(), Duration::from_secs(240)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);

    python_job(&r, "twice", &python, &format!("second {marker}")).await;
    let put_manifest = format!("PUT /v2/{path}/manifests/lf-");
    let post_blob = format!("POST /v2/{path}/blobs/uploads/");
    let (manifests, blobs) = (registry.count(put_manifest.as_bytes()), registry.count(post_blob.as_bytes()));
    registry.hold(put_manifest.as_bytes());
    let a = r.launch_on("boxes", "twice").await;
    let b = r.launch_on("boxes", "twice").await;
    const WAITING: &str = "; waiting for it";
    let until = std::time::Instant::now() + Duration::from_secs(120);
    // the append reaches its manifest (held), and the other agent waits for its claim
    while registry.held() == 0 {
        assert!(std::time::Instant::now() < until, "no append reached its manifest");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiter = 'seen: loop {
        for id in [&a, &b] {
            if r.logs(id, LogStream::Build).await.contains(WAITING) {
                break 'seen id.clone();
            }
        }
        assert!(std::time::Instant::now() < until, "no agent was seen waiting for the other's append");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(registry.held(), 1, "one append only reached its manifest");
    registry.release_held();
    for id in [&a, &b] {
        let item = r.wait_for(id, |i| i.state.is_terminal(), Duration::from_secs(120)).await;
        let log = r.logs(id, LogStream::Build).await;
        assert_eq!(item.state, ItemState::Finished, "{:?}\n{log}", item.reason);
        let expected = if *id == waiter { BuildHow::Waited } else { BuildHow::Appended };
        assert_eq!(item.build.expect("recorded").how, expected, "{log}");
        assert_eq!(r.logs(id, LogStream::Stdout).await, format!("second {marker} liftoff-hello 0.1\n"));
    }
    assert_eq!(registry.count(put_manifest.as_bytes()) - manifests, 1, "one append");
    assert_eq!(registry.count(post_blob.as_bytes()) - blobs, 2, "the layer and the config, uploaded once");
    for (stop, agent) in agents {
        stop.send(()).unwrap();
        agent.await.unwrap().unwrap();
    }
}
