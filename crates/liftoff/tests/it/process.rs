//! The binary as users run it: the README's quickstart, an agent process
//! receiving SIGTERM or SIGKILL while it runs a job, an agent using a
//! Docker credential helper, and what a local process leaves behind and can
//! see of the agent.

use liftoff_client::Client;
use liftoff_core::ItemState;
use liftoff_testkit::{is_root, processes_with_env, required_env, skip, wait_until_none_left};
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
    server_with(dir, |_| {}).await
}

/// [`server_in`], with `configure` applied to the server's config.
async fn server_with(
    dir: &Path,
    configure: impl FnOnce(&mut liftoff_server::ServerConfig),
) -> (liftoff_server::RunningServer, String, String, Client) {
    let mut cfg = liftoff_server::ServerConfig::new(dir.join("data"));
    configure(&mut cfg);
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
    assert!(stderr.contains("web UI:    run `liftoff quickstart --keep`"), "the way to the web UI:\n{stderr}");
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
        // its lock file, away from other agents serving a queue `q` on this machine
        .env("TMPDIR", dir.path())
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
    Some((required_env("LIFTOFF_TEST_DOCKER_HOST")?, required_env("LIFTOFF_TEST_DOCKER_IMAGE")?))
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

/// [`wait_until_ended`], showing the agent's log, the item and the run's
/// processes if it never ends.
async fn wait_until_ended_or_show(
    client: &Client,
    item_id: &str,
    what: &str,
    agent_log: &Path,
) -> liftoff_core::api::ItemView {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let item = client.get_item(item_id).await.unwrap();
        if item.state.is_terminal() {
            return item;
        }
        if Instant::now() >= until {
            let procs: Vec<String> = processes_with_env(&format!("LIFTOFF_RUN_ID={}", item.run_id))
                .iter()
                .map(|p| {
                    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    format!("{stat} [{}]", String::from_utf8_lossy(&cmd).replace('\0', " "))
                })
                .collect();
            panic!(
                "{what} never ended; item {item:?}\nprocesses:\n{}\nagent:\n{}",
                procs.join("\n"),
                std::fs::read_to_string(agent_log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
                liftoff_core::api::LogStream::Agent | liftoff_core::api::LogStream::Build => {}
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

/// Creates the local-process queue `local` (with `config` as its template
/// and a string variable `flavour`) and a code job `name` running `sh run.sh`.
async fn local_queue_and_job(client: &Client, config: serde_json::Value, jobs: &[(&str, &str)]) {
    client
        .create_queue(&liftoff_core::api::CreateQueue {
            name: "local".into(),
            resource: liftoff_core::ResourceType::LocalProcess,
            config,
            template_variables: vec![liftoff_core::TemplateVariable {
                name: "flavour".into(),
                kind: liftoff_core::VarKind::String,
                min: None,
                max: None,
                allowed: None,
                default: Some("plain".into()),
                description: None,
            }],
            prioritization: false,
        })
        .await
        .unwrap();
    for (name, script) in jobs {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("run.sh"), script).unwrap();
        let gz = liftoff_archive::pack_dir(src.path()).unwrap();
        let digest = liftoff_archive::sha256_digest(&gz);
        client.upload_blob(&digest, gz).await.unwrap();
        let source = liftoff_core::JobSourceSpec {
            code: Some(liftoff_core::job::CodeSource {
                digest,
                entrypoint: vec!["sh".into(), "run.sh".into()],
                build_context: None,
                dockerfile: None,
                base_image: None,
            }),
            ..Default::default()
        };
        let job = liftoff_core::api::CreateJob {
            project: "default".into(),
            name: name.to_string(),
            source,
            aliases: vec![],
            runtime: None,
        };
        client.create_job(&job).await.unwrap();
    }
}

async fn launch_local(client: &Client, job: &str) -> liftoff_core::api::ItemView {
    let req = liftoff_core::api::LaunchRequest { job: job.into(), ..Default::default() };
    let id = client.launch("local", &req).await.unwrap().item_id;
    client.get_item(&id).await.unwrap()
}

/// `liftoff agent` on the queue `local`, one job at a time, its log in
/// `dir/agent.log`; `env` is added to (or, with `None`, removed from) the
/// test's own environment.
fn local_agent(dir: &Path, url: &str, args: &[&str], env: &[(&str, Option<&std::ffi::OsStr>)]) -> AgentChild {
    AgentChild(local_agent_command(dir, url, args, env).spawn().unwrap())
}

fn local_agent_command(dir: &Path, url: &str, args: &[&str], env: &[(&str, Option<&std::ffi::OsStr>)]) -> Command {
    local_agent_command_of(Path::new(env!("CARGO_BIN_EXE_liftoff")), dir, url, args, env)
}

/// [`local_agent_command`] running the `liftoff` binary at `program`.
fn local_agent_command_of(
    program: &Path,
    dir: &Path,
    url: &str,
    args: &[&str],
    env: &[(&str, Option<&std::ffi::OsStr>)],
) -> Command {
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let mut cmd = Command::new(program);
    cmd.args(["agent", "-q", "local", "-j", "1", "--agent-key", &format!("local-{}", dir.display()), "--work-dir"])
        .arg(dir.join("work"))
        .args(args)
        .env("LIFTOFF_BASE_URL", url)
        .env("TMPDIR", dir)
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// A `liftoff agent` process, killed should its test fail before it ends it.
struct AgentChild(std::process::Child);

impl std::ops::Deref for AgentChild {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for AgentChild {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The run's stdout as stored so far.
async fn stdout_of(client: &Client, item_id: &str) -> String {
    let (mut out, mut after) = (String::new(), 0);
    loop {
        let page = client.read_logs(item_id, after).await.unwrap();
        if page.chunks.is_empty() {
            return out;
        }
        let stdout = page.chunks.iter().filter(|c| c.stream == liftoff_core::api::LogStream::Stdout);
        out.extend(stdout.map(|c| c.data.as_str()));
        after = page.next_seq;
    }
}

/// Waits (30 s at most) until the run's stdout has a line starting `child `,
/// which the jobs below print once their background child has written its
/// pid; that pid.
async fn child_pid(client: &Client, item_id: &str, agent_log: &Path) -> i32 {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = stdout_of(client, item_id).await;
        if let Some(pid) = out.lines().find_map(|l| l.strip_prefix("child ")) {
            return pid.trim().parse().unwrap();
        }
        assert!(
            Instant::now() < until,
            "the job's child never started; stdout: {out}\nagent:\n{}",
            std::fs::read_to_string(agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until none of the run's processes is left (the supervisor's and
/// every job process's carry its run id), at most `bound`.
async fn assert_all_gone(run_id: &str, bound: Duration, what: &str) {
    wait_until_none_left(&format!("LIFTOFF_RUN_ID={run_id}"), bound, what).await;
}

/// A background child, in the job's process group or in a session of its
/// own, writes its pid to `child.pid`; the main script waits for it, prints
/// it, and then `then`.
fn script_with_child(setsid: &str, child_body: &str, then: &str) -> String {
    format!(
        "{setsid} sh -c 'echo $$ > child.pid; {child_body}' &\nwhile [ ! -s child.pid ]; do sleep 0.02; done\n\
         echo \"child $(cat child.pid)\"\n{then}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ends_when_its_main_process_does_and_takes_its_children_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let forever = "exec sleep infinity";
    let jobs = [
        ("same-group", script_with_child("", forever, "exit 0")),
        ("own-session", script_with_child("setsid", forever, "exit 0")),
    ];
    let jobs: Vec<(&str, &str)> = jobs.iter().map(|(n, s)| (*n, s.as_str())).collect();
    local_queue_and_job(&client, serde_json::json!({}), &jobs).await;
    let mut agent = local_agent(dir.path(), &url, &[], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    for (job, _) in &jobs {
        let item = launch_local(&client, job).await;
        // the child holds the run's stdout forever: only killing it ends the run
        let ended = wait_until_ended(&client, &item.id, job).await;
        let out = stdout_of(&client, &item.id).await;
        assert_eq!(ended.state, ItemState::Finished, "{job}: {:?}; stdout: {out}", ended.reason);
        let child: i32 = out.strip_prefix("child ").unwrap().trim().parse().unwrap();
        assert!(kill(Pid::from_raw(child), None).is_err(), "{job}: the child {child} is gone");
        assert_all_gone(&ended.run_id, Duration::ZERO, job).await;
    }
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stop_ends_a_run_whose_setsid_child_ignores_sigterm_and_frees_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let stubborn = script_with_child("setsid", "trap \"\" TERM; while :; do sleep 1; done", "wait");
    local_queue_and_job(&client, serde_json::json!({}), &[("stubborn", &stubborn), ("next", "echo next\n")]).await;
    let mut agent = local_agent(dir.path(), &url, &[], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let item = launch_local(&client, "stubborn").await;
    let child = child_pid(&client, &item.id, &dir.path().join("agent.log")).await;
    // queued behind it: the agent (one job at a time) takes it only once the slot is free
    let next = launch_local(&client, "next").await;
    let stop = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["run", "stop", &item.id])
        .env("LIFTOFF_BASE_URL", &url)
        .env("LIFTOFF_API_KEY", &key)
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let stopped = wait_until_ended_or_show(&client, &item.id, "the stopped run", &dir.path().join("agent.log")).await;
    assert_eq!(
        (stopped.state, stopped.exit_code),
        (ItemState::Stopped, Some(143)),
        "the main process's own status (SIGTERM): {:?}",
        stopped.reason
    );
    assert!(kill(Pid::from_raw(child), None).is_err(), "the child ignoring SIGTERM is gone");
    assert_all_gone(&stopped.run_id, Duration::ZERO, "after run stop").await;
    let after = wait_until_ended(&client, &next.id, "the next run").await;
    assert_eq!(after.state, ItemState::Finished, "{:?}", after.reason);
    assert_eq!(stdout_of(&client, &next.id).await, "next\n");
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stop_kills_a_run_deaf_to_sigterm_after_stopped_run_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let deaf = format!(
        "trap \"\" TERM\n{}",
        script_with_child("setsid", "trap \"\" TERM; while :; do sleep 1; done", "while :; do sleep 1; done")
    );
    local_queue_and_job(&client, serde_json::json!({}), &[("deaf", &deaf)]).await;
    let config = dir.path().join("launch-config.yaml");
    std::fs::write(&config, "stopped_run_timeout: 1\n").unwrap();
    let config = config.display().to_string();
    let mut agent = local_agent(dir.path(), &url, &["-c", &config], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let item = launch_local(&client, "deaf").await;
    let child = child_pid(&client, &item.id, &dir.path().join("agent.log")).await;
    client.stop_item(&item.id).await.unwrap();
    let stopped = wait_until_ended(&client, &item.id, "the deaf run").await;
    assert_eq!(
        (stopped.state, stopped.exit_code),
        (ItemState::Stopped, Some(137)),
        "killed once the timeout was over: {:?}",
        stopped.reason
    );
    assert!(kill(Pid::from_raw(child), None).is_err(), "the child ignoring SIGTERM is gone");
    assert_all_gone(&stopped.run_id, Duration::ZERO, "after the kill").await;
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    server.shutdown().await;
}

/// The kernel also sends the parent-death signal when the thread that
/// spawned the supervisor exits, though the agent lives on: the supervisor
/// must tell the two apart. This test process plays the agent.
#[test]
fn a_supervisor_outlives_the_agent_thread_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let (started, go) = (dir.path().join("started"), dir.path().join("go"));
    let script =
        format!("touch '{}'; while [ ! -e '{}' ]; do sleep 0.02; done; exit 7", started.display(), go.display());
    let spawner = std::thread::spawn(move || {
        let thread = std::fs::read_link("/proc/thread-self").unwrap();
        let supervisor = Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["__supervise", "--agent-pid", &std::process::id().to_string(), "--", "sh", "-c", &script])
            .spawn()
            .unwrap();
        // the supervisor has set its parent-death signal before it started the job
        let until = Instant::now() + Duration::from_secs(10);
        while !started.exists() {
            assert!(Instant::now() < until, "the job never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        (supervisor, thread)
    });
    let (mut supervisor, thread) = spawner.join().unwrap();
    // the signal is sent before the thread's /proc entry goes
    let until = Instant::now() + Duration::from_secs(10);
    while Path::new("/proc").join(&thread).exists() {
        assert!(Instant::now() < until, "the thread {} never went", thread.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(&go, "").unwrap();
    assert_eq!(supervisor.wait().unwrap().code(), Some(7), "the job ran to its own end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_leaves_no_local_process_running() {
    let dir = tempfile::tempdir().unwrap();
    // a short lease, so that the item soon runs again under another agent
    let (server, url, key, client) = server_with(dir.path(), |c| c.lease_ttl = Duration::from_secs(2)).await;
    let script = script_with_child(
        "setsid",
        "trap \"\" TERM HUP INT; while :; do sleep 1; done",
        "sleep infinity &\nsleep infinity\n",
    );
    local_queue_and_job(&client, serde_json::json!({}), &[("forever", &script)]).await;
    let mut agent = local_agent(dir.path(), &url, &[], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let item = launch_local(&client, "forever").await;
    let child = child_pid(&client, &item.id, &dir.path().join("agent.log")).await;
    let before = processes_with_env(&format!("LIFTOFF_RUN_ID={}", item.run_id));
    assert!(before.contains(&child), "the setsid child {child} is found among {before:?}");
    assert!(before.len() >= 4, "supervisor, main, child, sleeps: {before:?}");
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGKILL).unwrap();
    agent.wait().unwrap();
    // the item goes back on its queue when the lease runs out; by then
    // nothing of this copy may run
    assert_all_gone(&item.run_id, Duration::from_secs(5), "after the agent's SIGKILL").await;
    assert_eq!(client.get_item(&item.id).await.unwrap().state, ItemState::Running, "nothing was reported");
    // the item runs again, under a new agent, and only that copy is alive
    let mut second = local_agent(dir.path(), &url, &["--grace", "0"], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let until = Instant::now() + Duration::from_secs(30);
    let again = loop {
        let out = stdout_of(&client, &item.id).await;
        let children: Vec<i32> = out.lines().filter_map(|l| l.strip_prefix("child ")?.trim().parse().ok()).collect();
        if let [first, again] = children[..] {
            assert_eq!(first, child);
            break again;
        }
        assert!(Instant::now() < until, "the item never ran again: {out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(client.get_item(&item.id).await.unwrap().attempts, 1, "re-run after the lease ran out");
    let now = processes_with_env(&format!("LIFTOFF_RUN_ID={}", item.run_id));
    assert!(now.contains(&again) && !now.contains(&child), "only the second copy: {now:?}");
    assert!(now.iter().all(|p| !before.contains(p)), "nothing of the first copy: {now:?} {before:?}");
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    assert!(second.wait().unwrap().success());
    assert_all_gone(&item.run_id, Duration::ZERO, "after the second agent stopped").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_process_sees_only_harmless_agent_variables_and_what_its_queue_passes() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let key_file = dir.path().join("agent.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // the job reads its agent's environment through its supervisor's parent
    let script = "env\necho ---\n\
                  printf '%s' \"$LC_LIFTOFF_TEST\" | od -An -tx1 | tr -d ' \\n'; echo\n\
                  agent=$(awk '{print $4}' /proc/$PPID/stat)\n\
                  echo \"agent: $(tr '\\0' ' ' < /proc/$agent/cmdline)\"\n\
                  if tr '\\0' '\\n' < /proc/$agent/environ > agent.env; then echo agent-environ; cat agent.env; fi\n";
    // a queue passes the agent's variables by name, except those that may hold secrets
    let config = serde_json::json!({"env": {
        "FROM_TEMPLATE": "{{flavour}}",
        "REGION": "${LIFTOFF_TEST_REGION}",
        "DB": "${DATABASE_URL}",
        "LIFTOFF_RUN_ID": "forged",
    }});
    local_queue_and_job(&client, config, &[("env", script)]).await;
    let mut req = liftoff_core::api::LaunchRequest { job: "env".into(), ..Default::default() };
    req.template_variables.insert("flavour".into(), "chocolate".into());
    let item_id = client.launch("local", &req).await.unwrap().item_id;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff\xfeok");
    let aws = "aws-secret-4711";
    let db = "postgres://app:db-password-4711@db.internal/app";
    let mut agent = local_agent(
        dir.path(),
        &url,
        &[],
        &[
            ("LIFTOFF_API_KEY", None),
            ("LIFTOFF_API_KEY_FILE", Some(key_file.as_os_str())),
            ("AWS_SECRET_ACCESS_KEY", Some(aws.as_ref())),
            ("DATABASE_URL", Some(db.as_ref())),
            ("LIFTOFF_TEST_REGION", Some("eu-west-4711".as_ref())),
            ("LC_LIFTOFF_TEST", Some(not_utf8)),
            ("NOT_UTF8_EITHER", Some(not_utf8)),
        ],
    );
    let item = wait_until_ended(&client, &item_id, "the env job").await;
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    let agent_log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(agent.wait().unwrap().success(), "the agent ran with variables that are not UTF-8:\n{agent_log}");
    let out = stdout_of(&client, &item_id).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}\n{out}\n{agent_log}", item.reason);
    let (job_env, rest) = out.split_once("---\n").unwrap();
    let job_vars: Vec<&str> = job_env.lines().collect();
    assert!(job_vars.contains(&"FROM_TEMPLATE=chocolate"), "the queue's template passes it:\n{job_env}");
    assert!(job_vars.contains(&"REGION=eu-west-4711"), "the queue passes it by name:\n{job_env}");
    assert!(job_vars.contains(&"DB=${DATABASE_URL}"), "a URL is not expanded:\n{job_env}");
    assert!(!job_env.contains("LIFTOFF_TEST_REGION"), "only under the name the queue gave:\n{job_env}");
    assert!(job_vars.contains(&format!("LIFTOFF_RUN_ID={}", item.run_id).as_str()), "not forged:\n{job_env}");
    assert!(job_vars.iter().any(|v| v.starts_with("PATH=")), "PATH is inherited:\n{job_env}");
    for secret in [aws, db, &key] {
        assert!(!job_env.contains(secret), "{secret} reached the job:\n{job_env}");
    }
    for name in ["AWS_SECRET_ACCESS_KEY=", "DATABASE_URL=", "NOT_UTF8_EITHER=", "LIFTOFF_API_KEY_FILE="] {
        assert!(!job_vars.iter().any(|v| v.starts_with(name)), "{name} reached the job:\n{job_env}");
    }
    let run_key = job_vars.iter().find_map(|v| v.strip_prefix("LIFTOFF_API_KEY=")).unwrap();
    assert!(run_key.starts_with("lft_run."), "the run's own key, not the agent's: {run_key}");
    let mut rest = rest.lines();
    assert_eq!(rest.next(), Some("fffe6f6b"), "a non-UTF-8 locale variable is passed on byte for byte");
    let agent_line = rest.next().unwrap();
    assert!(agent_line.starts_with("agent: ") && agent_line.contains(" agent -q local"), "{agent_line}");
    let agent_environ: Vec<&str> = rest.skip_while(|l| *l != "agent-environ").skip(1).collect();
    assert!(!agent_environ.join("\n").contains(&key), "the agent's key is not in its environment");
    if is_root() {
        // root may read a non-dumpable process's environment: only the key
        // file keeps the key out of it
        assert!(agent_environ.iter().any(|v| v.starts_with("LIFTOFF_API_KEY_FILE=")), "{agent_environ:?}");
    } else {
        assert!(agent_environ.is_empty(), "the agent is not dumpable: {agent_environ:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_as_another_user_cannot_read_the_agents_environment() {
    if !is_root() {
        return skip("only root can run jobs as another user");
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let script = format!(
        "echo \"uid $(id -u) home $HOME\"\n\
         agent=$(awk '{{print $4}}' /proc/$PPID/stat)\n\
         if cat /proc/$agent/environ > /dev/null 2>&1; then echo environ-read; else echo environ-refused; fi\n\
         echo mine > mine.txt && echo wrote\n{}",
        script_with_child("setsid", "exec sleep infinity", "exit 0")
    );
    local_queue_and_job(&client, serde_json::json!({}), &[("nobody", &script)]).await;
    // the key in the agent's environment, where a job of the same user (here root) could read it
    let mut agent = local_agent(dir.path(), &url, &["--run-as", "nobody"], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let item = launch_local(&client, "nobody").await;
    let ended = wait_until_ended(&client, &item.id, "the job run as nobody").await;
    let out = stdout_of(&client, &item.id).await;
    let agent_log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert_eq!(ended.state, ItemState::Finished, "{:?}\n{out}\n{agent_log}", ended.reason);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["uid 65534 home /nonexistent", "environ-refused", "wrote"], "{out}");
    let child: i32 = lines[3].strip_prefix("child ").unwrap().parse().unwrap();
    assert!(kill(Pid::from_raw(child), None).is_err(), "the root supervisor killed nobody's child");
    assert_all_gone(&ended.run_id, Duration::ZERO, "run as nobody").await;
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    server.shutdown().await;
}

/// The agent starts each local process through the small
/// `liftoff-supervisor` beside `liftoff`, not by re-executing `liftoff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_is_supervised_by_the_small_supervisor_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let script = "echo \"parent $(readlink /proc/$PPID/exe)\"\necho \"args $(tr '\\0' ' ' < /proc/$PPID/cmdline)\"\n";
    local_queue_and_job(&client, serde_json::json!({}), &[("who", script)]).await;
    let mut agent = local_agent(dir.path(), &url, &[], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let item = launch_local(&client, "who").await;
    let ended = wait_until_ended(&client, &item.id, "the job").await;
    let out = stdout_of(&client, &item.id).await;
    assert_eq!(ended.state, ItemState::Finished, "{:?}\n{out}", ended.reason);
    let small = Path::new(env!("CARGO_BIN_EXE_liftoff-supervisor")).canonicalize().unwrap();
    assert_eq!(out.lines().next(), Some(format!("parent {}", small.display()).as_str()), "{out}");
    assert!(
        out.contains(&format!(
            "args {} __supervise --agent-pid {} -- ",
            env!("CARGO_BIN_EXE_liftoff-supervisor"),
            agent.id()
        )),
        "{out}"
    );
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(!log.contains("is not beside"), "no fallback warning: {log}");
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    server.shutdown().await;
}

/// Without root, a job of the agent's own user could read its memory and
/// environment, were the agent dumpable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_the_agents_own_user_cannot_read_its_environment() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !is_root() {
        return skip("only root can start an agent as another user");
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let script = "echo \"uid $(id -u)\"\n\
                  agent=$(awk '{print $4}' /proc/$PPID/stat)\n\
                  echo \"agent $(tr '\\0' ' ' < /proc/$agent/cmdline)\"\n\
                  if cat /proc/$agent/environ > /dev/null 2>&1; then echo environ-read; else echo environ-refused; fi\n";
    local_queue_and_job(&client, serde_json::json!({}), &[("same-user", script)]).await;
    // the agent runs as nobody, in a directory of nobody's
    let home = dir.path().join("nobody");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // a copy of the binary nobody can reach: the build's own may sit under a
    // directory only root may enter (a checkout in a `mktemp -d` folder)
    let binary = dir.path().join("liftoff");
    std::fs::copy(env!("CARGO_BIN_EXE_liftoff"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = local_agent_command_of(&binary, &home, &url, &[], &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
    let mut agent = AgentChild(cmd.uid(65534).gid(65534).spawn().unwrap());
    let item = launch_local(&client, "same-user").await;
    let ended = wait_until_ended(&client, &item.id, "the job of the agent's user").await;
    let out = stdout_of(&client, &item.id).await;
    let agent_log = std::fs::read_to_string(home.join("agent.log")).unwrap();
    assert_eq!(ended.state, ItemState::Finished, "{:?}\n{out}\n{agent_log}", ended.reason);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "uid 65534", "{out}");
    assert!(lines[1].starts_with("agent ") && lines[1].contains(" agent -q local"), "{out}");
    assert_eq!(lines[2], "environ-refused", "{out}");
    // only `liftoff` was copied: the agent supervised with it, and said so
    assert!(agent_log.contains("liftoff-supervisor is not beside"), "{agent_log}");
    kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    server.shutdown().await;
}

#[test]
fn an_agent_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.key");
    std::fs::write(&key_file, "lft_something\n").unwrap();
    // stderr of an agent given the key file with `mode`, which fails either way (no server)
    let agent_with_mode = |mode: u32| {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_liftoff"))
            .args(["agent", "-q", "local", "--api-key-file"])
            .arg(&key_file)
            .env("LIFTOFF_BASE_URL", "http://127.0.0.1:9")
            .env_remove("LIFTOFF_API_KEY")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = agent_with_mode(0o644);
    assert!(err.contains(&key_file.display().to_string()) && err.contains("mode 644"), "{err}");
    // the agent's own group may read it (a Kubernetes Secret with an fsGroup: 0440), not write it
    let err = agent_with_mode(0o660);
    assert!(err.contains("mode 660"), "{err}");
    let err = agent_with_mode(0o440);
    assert!(!err.contains("mode 440") && err.contains("127.0.0.1:9"), "read, then the server is unreachable: {err}");
    // a key in the environment too: which one is meant is unclear
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["agent", "-q", "local"])
        .env("LIFTOFF_API_KEY_FILE", &key_file)
        .env("LIFTOFF_BASE_URL", "http://127.0.0.1:9")
        .env("LIFTOFF_API_KEY", "lft_other")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("given twice") && err.contains(&key_file.display().to_string()), "{err}");
}

/// A local process starts as a shell would start it: no signal blocked
/// (the supervisor blocks the ones it waits for; the job must not inherit
/// that, or it would be deaf to a stop's SIGTERM and a shell's `wait`
/// would never wake), and as another user too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_process_starts_with_no_signal_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key, client) = server_in(dir.path()).await;
    let script = "exec grep -E '^(SigBlk|Uid)' /proc/self/status\n";
    local_queue_and_job(&client, serde_json::json!({}), &[("mask", script)]).await;
    let users: &[&[&str]] = if is_root() { &[&[], &["--run-as", "nobody"]] } else { &[&[]] };
    for args in users {
        let mut agent = local_agent(dir.path(), &url, args, &[("LIFTOFF_API_KEY", Some(key.as_ref()))]);
        let item = launch_local(&client, "mask").await;
        let ended = wait_until_ended(&client, &item.id, "the job printing its signal mask").await;
        let out = stdout_of(&client, &item.id).await;
        assert_eq!(ended.state, ItemState::Finished, "{args:?}: {:?}\n{out}", ended.reason);
        assert!(out.contains("SigBlk:\t0000000000000000\n"), "{args:?}: the job's signal mask is empty:\n{out}");
        if !args.is_empty() {
            assert!(out.contains("Uid:\t65534\t65534\t65534\t65534\n"), "run as nobody:\n{out}");
        }
        kill(Pid::from_raw(agent.id() as i32), Signal::SIGTERM).unwrap();
        assert!(agent.wait().unwrap().success());
    }
    if !is_root() {
        skip("only root can run jobs as another user (the run-as half)");
    }
    server.shutdown().await;
}
