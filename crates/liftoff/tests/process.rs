//! The binary as users run it: the README's quickstart, an agent process
//! receiving SIGTERM or SIGKILL while it runs a job, and an agent using a
//! Docker credential helper.

use liftoff_client::Client;
use liftoff_core::ItemState;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A server on a loopback port with its data in `dir/data`: the server, its
/// URL, its admin key and a client.
async fn server_in(dir: &Path) -> (liftoff_server::RunningServer, String, String, Client) {
    let mut cfg = liftoff_server::ServerConfig::new(dir.join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    let server = liftoff_server::start(cfg).await.unwrap();
    let (url, key) = (server.base_url(), server.admin_key.clone().unwrap());
    let client = Client::new(&url, &key, "default").unwrap();
    (server, url, key, client)
}

#[test]
fn quickstart_runs_the_hello_job_to_finished() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["quickstart", "--data-dir"])
        .arg(data.path())
        .current_dir(repo_root())
        .env_remove("LIFTOFF_API_KEY")
        .env_remove("LIFTOFF_BASE_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "quickstart failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("hello from liftoff"), "the run config reached the job:\n{stdout}");
    assert!(stderr.contains("finished"), "final state printed:\n{stderr}");
    assert!(stderr.contains("http://127.0.0.1:"), "server URL printed:\n{stderr}");
    assert!(data.path().join("admin.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claiming_then_stops_running_jobs_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("run.sh"), "echo started; sleep 60 & wait\n").unwrap();
    let cli = |args: Vec<String>| {
        let (url, key) = (url.clone(), key.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_liftoff"))
                    .args(&args)
                    .env("LIFTOFF_BASE_URL", url)
                    .env("LIFTOFF_API_KEY", key)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(cli(s(&["queue", "create", "q", "--resource", "local-process"])).await.status.success());
    let job = cli(vec![
        "job".into(),
        "create".into(),
        "code".into(),
        code.display().to_string(),
        "-E".into(),
        "sh run.sh".into(),
        "-n".into(),
        "sleepy".into(),
    ])
    .await;
    assert!(job.status.success(), "{}", String::from_utf8_lossy(&job.stderr));
    let launched = cli(s(&["launch", "-q", "q", "-j", "sleepy"])).await;
    assert!(launched.status.success(), "{}", String::from_utf8_lossy(&launched.stderr));
    let item_id = String::from_utf8_lossy(&launched.stdout).trim().to_string();

    let mut agent = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["agent", "-q", "q", "--grace", "2", "--work-dir"])
        .arg(dir.path().join("work"))
        .env("LIFTOFF_BASE_URL", &url)
        .env("LIFTOFF_API_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while client.get_item(&item_id).await.unwrap().state != ItemState::Running {
        assert!(Instant::now() < until, "the job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a second item must not be claimed once SIGTERM arrives
    let second = client
        .launch("q", &liftoff_core::api::LaunchRequest { job: "sleepy".into(), ..Default::default() })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "agent did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "agent exit status {status:?}");
    assert!(t.elapsed() >= Duration::from_secs(2), "the running job got its grace period ({:?})", t.elapsed());
    let item = client.get_item(&item_id).await.unwrap();
    assert_eq!(item.state, ItemState::Stopped, "{:?}", item.reason);
    assert_eq!(client.get_item(&second.item_id).await.unwrap().state, ItemState::Pending, "max_jobs 1: never claimed");
    let agents = client.list_agents().await.unwrap();
    assert_eq!(agents[0].status, liftoff_core::api::AgentStatus::Stopped);
    server.shutdown().await;
}

/// The Docker engine of scripts/test.sh, or `None` (skip) outside CI.
fn docker_env() -> Option<(String, String)> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (get("LIFTOFF_TEST_DOCKER_HOST"), get("LIFTOFF_TEST_DOCKER_IMAGE")) {
        (Some(h), Some(i)) => Some((h, i)),
        _ if std::env::var_os("CI").is_some() => panic!("LIFTOFF_TEST_DOCKER_HOST is not set; run scripts/test.sh"),
        _ => {
            eprintln!("skipping: no Docker engine (scripts/test.sh starts one)");
            None
        }
    }
}

/// Creates the local-container queue `boxes` and a job running `sh -c
/// script` in `image`, and launches it there; the item id.
async fn launch_in_a_container_queue(client: &Client, image: &str, script: &str) -> String {
    client
        .create_queue(&liftoff_core::api::CreateQueue {
            name: "boxes".into(),
            resource: liftoff_core::ResourceType::LocalContainer,
            config: serde_json::json!({}),
            template_variables: vec![],
            prioritization: false,
        })
        .await
        .unwrap();
    client
        .create_job(&liftoff_core::api::CreateJob {
            project: "default".into(),
            name: "boxed".into(),
            source: liftoff_core::JobSourceSpec {
                image: Some(liftoff_core::job::ImageSource {
                    image: image.to_string(),
                    args: vec!["sh".into(), "-c".into(), script.into()],
                }),
                ..Default::default()
            },
            aliases: vec![],
            runtime: None,
        })
        .await
        .unwrap();
    let launch = liftoff_core::api::LaunchRequest { job: "boxed".into(), ..Default::default() };
    client.launch("boxes", &launch).await.unwrap().item_id
}

/// Polls the item until it is terminal (60 s at most); `what` names it in the failure.
async fn wait_until_ended(client: &Client, item_id: &str, what: &str) -> liftoff_core::api::ItemView {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let item = client.get_item(item_id).await.unwrap();
        if item.state.is_terminal() {
            return item;
        }
        assert!(Instant::now() < until, "{what} never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agent process finds registry credentials the way the Docker CLI
/// does: `credsStore` in `$DOCKER_CONFIG/config.json` names a helper on
/// `PATH`, which is asked for the registry's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pulls_with_the_credential_helper_of_its_docker_config() {
    use std::os::unix::fs::PermissionsExt;
    let Some((docker_host, _)) = docker_env() else { return };
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set; run scripts/test.sh"));
    let (reg, user, password) =
        (env("LIFTOFF_TEST_REGISTRY"), env("LIFTOFF_TEST_REGISTRY_USER"), env("LIFTOFF_TEST_REGISTRY_PASSWORD"));
    // a name of its own in the registry, so that no other test's pull or removal interferes
    let image = format!("{reg}/liftoff-test/helper-pull:1");
    let dir = tempfile::tempdir().unwrap();
    let (bin, config) = (dir.path().join("bin"), dir.path().join("docker-config"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&config).unwrap();
    let helper = bin.join("docker-credential-liftoff-test");
    let asked = dir.path().join("asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread -r server\necho \"$1 $server\" >> '{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(config.join("config.json"), r#"{"auths": {}, "credsStore": "liftoff-test"}"#).unwrap();
    let rmi =
        Command::new("docker").args(["rmi", "--force", &image]).env("DOCKER_HOST", &docker_host).output().unwrap();
    let err = String::from_utf8_lossy(&rmi.stderr);
    assert!(rmi.status.success() || err.contains("No such image"), "docker rmi: {err}");

    let (_server, url, key, client) = server_in(dir.path()).await;
    let item_id = launch_in_a_container_queue(&client, &image, "echo pulled").await;
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut agent = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["agent", "-q", "boxes", "--agent-key", &format!("helper-{}", std::process::id()), "--work-dir"])
        .arg(dir.path().join("work"))
        .env("LIFTOFF_BASE_URL", &url)
        .env("LIFTOFF_API_KEY", &key)
        .env("DOCKER_HOST", &docker_host)
        .env("DOCKER_CONFIG", &config)
        .env("PATH", path)
        .env("TMPDIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let item = wait_until_ended(&client, &item_id, "the run").await;
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    let page = client.read_logs(&item_id, 0).await.unwrap();
    let text = |stream| page.chunks.iter().filter(|c| c.stream == stream).map(|c| c.data.as_str()).collect::<String>();
    let agent_said = text(liftoff_core::api::LogStream::Agent);
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{agent_said}", item.reason);
    assert_eq!(text(liftoff_core::api::LogStream::Stdout), "pulled\n");
    assert!(agent_said.contains(&format!("pulling {image} as {user}")), "{agent_said}");
    assert!(!agent_said.contains(&password), "the secret is never logged: {agent_said}");
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), format!("get {reg}\n"), "asked once, for the registry host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_is_restarted_and_reports_its_containers_true_outcome() {
    sigkill_then_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_ended_while_its_agent_was_dead_is_reported_by_the_restarted_agent() {
    sigkill_then_restart(true).await;
}

/// Kills the agent while its container runs, then starts it again with the
/// same agent key; with `exit_first`, only after the container has exited.
async fn sigkill_then_restart(exit_first: bool) {
    let Some((docker_host, image)) = docker_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    // output before the kill, while no agent runs, and after the restart;
    // the last line has no newline
    let script = "echo started; echo err-start >&2; sleep 2; echo while-dead; echo err-while-dead >&2; sleep 4; \
                  echo finishing; printf 'no newline'; exit 5";
    let item_id = launch_in_a_container_queue(&client, &image, script).await;
    // unique: the other test of this pair shares the engine
    let agent_key = format!("sigkill-{}-{exit_first}", std::process::id());
    let agent = |n: u32| {
        let log = std::fs::File::create(dir.path().join(format!("agent-{n}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["agent", "-q", "boxes", "--agent-key", &agent_key, "--work-dir"])
            .arg(dir.path().join("work"))
            .env("LIFTOFF_BASE_URL", &url)
            .env("LIFTOFF_API_KEY", &key)
            .env("DOCKER_HOST", &docker_host)
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let agent_logs = || {
        (1..=2)
            .map(|n| std::fs::read_to_string(dir.path().join(format!("agent-{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let mut first = agent(1);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let page = client.read_logs(&item_id, 0).await.unwrap();
        // the container's own output, not the agent's line quoting the command
        let out = liftoff_core::api::LogStream::Stdout;
        if page.chunks.iter().any(|c| c.stream == out && c.data.contains("started")) {
            break;
        }
        assert!(Instant::now() < until, "the container never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(Pid::from_raw(first.id() as i32), Signal::SIGKILL).unwrap();
    first.wait().unwrap();
    assert_eq!(client.get_item(&item_id).await.unwrap().state, ItemState::Running, "the kill reported nothing");
    // the job ends 6 s after its first line; the lease (30 s) outlives either wait
    tokio::time::sleep(Duration::from_secs(if exit_first { 8 } else { 3 })).await;
    let mut second = agent(2);
    let item = wait_until_ended(&client, &item_id, "the re-adopted run").await;
    assert_eq!(
        (item.state, item.exit_code),
        (ItemState::Failed, Some(5)),
        "the container's own exit code: {:?}",
        item.reason
    );
    assert_eq!(item.attempts, 0, "taken back under the same lease, not re-run; agents said:\n{}", agent_logs());
    let (mut log, mut out, mut err) = (String::new(), String::new(), String::new());
    let mut after = 0;
    loop {
        let page = client.read_logs(&item_id, after).await.unwrap();
        if page.chunks.is_empty() {
            break;
        }
        for c in &page.chunks {
            log.push_str(&c.data);
            match c.stream {
                liftoff_core::api::LogStream::Stdout => out.push_str(&c.data),
                liftoff_core::api::LogStream::Stderr => err.push_str(&c.data),
                liftoff_core::api::LogStream::Agent => {}
            }
        }
        after = page.next_seq;
    }
    if exit_first {
        assert!(log.contains("the container ended while no agent was watching"), "{log}");
    } else {
        assert!(log.contains("re-adopted"), "{log}");
    }
    // every byte once: what was stored before the kill is not repeated, what
    // was written while no agent ran is not lost
    assert_eq!(out, "started\nwhile-dead\nfinishing\nno newline", "stdout; whole log:\n{log}");
    assert_eq!(err, "err-start\nerr-while-dead\n", "stderr; whole log:\n{log}");
    // `liftoff agent list` shows both agents: the killed one never said stopped
    let out = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["agent", "list", "--format", "json"])
        .env("LIFTOFF_BASE_URL", &url)
        .env("LIFTOFF_API_KEY", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let agents: Vec<liftoff_core::api::AgentView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(agents.len(), 2);
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    assert!(second.wait().unwrap().success());
    server.shutdown().await;
}
