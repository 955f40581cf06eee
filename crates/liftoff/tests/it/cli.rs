//! End-to-end tests of the `liftoff` binary against an in-process server.

use crate::support;

use std::path::Path;
use std::process::Output;
use support::liftoff;

/// Runs the binary off the async runtime's worker threads.
async fn liftoff_async(cwd: &Path, args: &[&str]) -> Output {
    let cwd = cwd.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        liftoff(&cwd, &refs)
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A server on an ephemeral port with its data in `dir`; returns it with its
/// base URL and admin key.
async fn start_server(dir: &Path) -> (liftoff_server::RunningServer, String, String) {
    let mut cfg = liftoff_server::ServerConfig::new(dir.join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    let server = liftoff_server::start(cfg).await.expect("server starts");
    let url = server.base_url();
    let key = server.admin_key.clone().expect("fresh server has an admin key");
    (server, url, key)
}

#[test]
fn malformed_set_var_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = liftoff(
        dir.path(),
        &["--base-url", "http://127.0.0.1:9", "--api-key", "k", "launch", "-q", "q", "-j", "j", "--set-var", "foo"],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"--set-var value must be in the format "--set-var key1=value1", instead got: foo"#),
        "stderr: {err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_api_key_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = liftoff(dir.path(), &["--base-url", "http://127.0.0.1:9", "queue", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no API key: set LIFTOFF_API_KEY or pass --api-key"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_create_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key) = start_server(dir.path()).await;
    let g = ["--base-url", url.as_str(), "--api-key", key.as_str()];

    let config = dir.path().join("queue.yaml");
    std::fs::write(&config, "config:\n  env:\n    MODE: \"{{mode}}\"\ntemplate_variables:\n  - name: mode\n    type: string\n    default: fast\n").unwrap();
    let cfg_arg = config.to_str().unwrap();
    let out = liftoff_async(
        dir.path(),
        &[&g[..], &["queue", "create", "gpu", "--resource", "local-process", "--config", cfg_arg, "--priority"]]
            .concat(),
    )
    .await;
    assert_ok(&out);

    let out = liftoff_async(dir.path(), &[&g[..], &["queue", "list", "--format", "json"]].concat()).await;
    assert_ok(&out);
    let queues: serde_json::Value = serde_json::from_slice(&out.stdout).expect("queue list prints JSON");
    let q = queues.as_array().unwrap().iter().find(|q| q["name"] == "gpu").expect("the queue is listed");
    assert_eq!(q["resource"], "local-process");
    assert_eq!(q["prioritization"], true);
    assert_eq!(q["config"]["env"]["MODE"], "{{mode}}");
    assert_eq!(q["template_variables"][0]["name"], "mode");

    let out = liftoff_async(dir.path(), &[&g[..], &["queue", "show", "gpu"]].concat()).await;
    assert_ok(&out);
    assert!(text(&out.stdout).contains("local-process"));

    let out = liftoff_async(dir.path(), &[&g[..], &["queue", "create", "other", "--resource", "nomad"]].concat()).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nomad"), "stderr: {}", text(&out.stderr));

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_create_code_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key) = start_server(dir.path()).await;
    let g = ["--base-url", url.as_str(), "--api-key", key.as_str()];

    let code = dir.path().join("my job");
    std::fs::create_dir(&code).unwrap();
    std::fs::write(code.join("main.py"), "print('hi')\n").unwrap();
    let code_arg = code.to_str().unwrap();
    let out =
        liftoff_async(dir.path(), &[&g[..], &["job", "create", "code", code_arg, "-E", "python main.py"]].concat())
            .await;
    assert_ok(&out);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().next(), Some("default/default/my-job:v1"), "stdout: {stdout}");
    assert!(stdout.contains("digest: sha256:"), "stdout: {stdout}");

    let out =
        liftoff_async(dir.path(), &[&g[..], &["job", "create", "code", code_arg, "-E", "python 'main.py"]].concat())
            .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("-E"), "stderr: {}", text(&out.stderr));

    let out = liftoff_async(dir.path(), &[&g[..], &["job", "list", "--format", "json"]].concat()).await;
    assert_ok(&out);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("job list prints JSON");
    let job = jobs.as_array().unwrap().iter().find(|j| j["name"] == "my-job").expect("the job is listed");
    assert_eq!(job["version"], 1);
    let aliases: Vec<&str> = job["aliases"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(aliases.contains(&"latest"), "aliases: {aliases:?}");
    assert_eq!(job["source"]["entrypoint"], serde_json::json!(["python", "main.py"]));

    let out =
        liftoff_async(dir.path(), &[&g[..], &["job", "show", "default/my-job:v1", "--format", "json"]].concat()).await;
    assert_ok(&out);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["version"], 1);

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn entity_create_gives_an_isolated_entity_and_a_working_key() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, default_key) = start_server(dir.path()).await;
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let out = liftoff_async(dir.path(), &["entity", "create", "acme", "--data-dir", data_arg]).await;
    assert_ok(&out);
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("lft_"), "stdout is the key alone: {key}");

    let acme = ["--base-url", url.as_str(), "--api-key", key.as_str(), "-e", "acme"];
    let out =
        liftoff_async(dir.path(), &[&acme[..], &["queue", "create", "q", "--resource", "local-process"]].concat())
            .await;
    assert_ok(&out);
    let out = liftoff_async(dir.path(), &[&acme[..], &["queue", "list", "--format", "json"]].concat()).await;
    assert_ok(&out);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().len(), 1);

    // acme's key sees nothing of `default`, and `default` sees nothing of acme
    let out =
        liftoff_async(dir.path(), &["--base-url", url.as_str(), "--api-key", key.as_str(), "queue", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not found"), "{}", text(&out.stderr));
    let g = ["--base-url", url.as_str(), "--api-key", default_key.as_str()];
    let out = liftoff_async(dir.path(), &[&g[..], &["queue", "list", "--format", "json"]].concat()).await;
    assert_ok(&out);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), serde_json::json!([]));

    let again = liftoff_async(dir.path(), &["entity", "create", "acme", "--data-dir", data_arg]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    let second = liftoff_async(dir.path(), &["entity", "key", "acme", "--data-dir", data_arg]).await;
    assert_ok(&second);
    assert_ne!(text(&second.stdout).trim(), key, "a new key each time");
    let nobody = liftoff_async(dir.path(), &["entity", "key", "nobody", "--data-dir", data_arg]).await;
    assert!(text(&nobody.stderr).contains("does not exist"), "{}", text(&nobody.stderr));
    let bad = liftoff_async(dir.path(), &["entity", "create", "../x", "--data-dir", data_arg]).await;
    assert!(text(&bad.stderr).contains("entity name"), "{}", text(&bad.stderr));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_list_and_show_never_print_a_git_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key) = start_server(dir.path()).await;
    let g = ["--base-url", url.as_str(), "--api-key", key.as_str()];
    let remote = "https://alice:T0ken-s3cret@git.example.com/acme/private.git";
    let out = liftoff_async(
        dir.path(),
        &[&g[..], &["job", "create", "git", remote, "--commit", "main", "-E", "sh run.sh"]].concat(),
    )
    .await;
    assert_ok(&out);
    assert!(!text(&out.stdout).contains("T0ken-s3cret"), "stdout: {}", text(&out.stdout));
    for args in [
        &["job", "list"][..],
        &["job", "list", "--format", "json"],
        &["job", "show", "default/private"],
        &["job", "show", "default/private", "--format", "json"],
    ] {
        let out = liftoff_async(dir.path(), &[&g[..], args].concat()).await;
        assert_ok(&out);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(stdout.contains("alice:***@git.example.com"), "{args:?}: {stdout}");
        assert!(!stdout.contains("T0ken-s3cret") && !stderr.contains("T0ken-s3cret"), "{args:?}: {stdout}{stderr}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_create_list_and_revoke() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key) = start_server(dir.path()).await;
    let d = dir.path();
    let with = |extra: &[&str]| {
        let mut v = vec!["--base-url", url.as_str(), "--api-key", key.as_str()];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        liftoff_async(d, &refs).await
    };
    let file = d.join("agent.key");
    let out = run(with(&["key", "create", "--role", "agent", "--secret-file", file.to_str().unwrap()])).await;
    assert_ok(&out);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(secret.starts_with("lft_") && !text(&out.stdout).contains(&secret), "the secret went to the file only");
    let again = run(with(&["key", "create", "--role", "agent", "--secret-file", file.to_str().unwrap()])).await;
    assert!(!again.status.success() && text(&again.stderr).contains("never overwritten"), "{}", text(&again.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), secret, "the existing file is untouched");

    let listed = run(with(&["key", "list", "--format", "json"])).await;
    assert_ok(&listed);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let agent = keys.iter().find(|k| k["role"] == "agent").expect("the agent key is listed");
    assert!(!text(&listed.stdout).contains(&secret));
    // the agent key cannot manage keys
    let refused =
        run(vec!["--base-url".into(), url.clone(), "--api-key".into(), secret.clone(), "key".into(), "list".into()])
            .await;
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("an agent key may not"),
        "{}",
        text(&refused.stderr)
    );
    let revoked = run(with(&["key", "revoke", agent["id"].as_str().unwrap()])).await;
    assert_ok(&revoked);
    let after =
        run(vec!["--base-url".into(), url.clone(), "--api-key".into(), secret, "run".into(), "list".into()]).await;
    assert!(!after.status.success() && text(&after.stderr).contains("unknown API key"), "{}", text(&after.stderr));
    server.shutdown().await;
}

/// A second server on a data directory in use refuses to start and names
/// the holder (here this test process, which runs the first in-process).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_one_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _) = start_server(dir.path()).await;
    let data = dir.path().join("data");
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["server", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // a server that starts runs until stopped: give it 30 s to refuse, then fail
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            let _ = second.wait();
            panic!("the second server started on a data directory in use");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success(), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    let holder =
        format!("data directory {} is in use by liftoff server pid {} on ", data.display(), std::process::id());
    assert!(err.contains(&holder), "stderr: {err}");
    server.shutdown().await;
}

/// `key create --name`, then a run launched with that key: `run show` names
/// its launcher, `run list --launched-by` finds it, and `run priority`
/// changes it while pending and is refused once an agent claimed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_their_launcher_and_change_priority_while_pending() {
    use liftoff_core::api::{CreateJob, CreateQueue, LaunchRequest, RegisterAgent};
    let dir = tempfile::tempdir().unwrap();
    let (server, url, key) = start_server(dir.path()).await;
    let d = dir.path();
    let run = |api_key: &str, extra: &[&str]| {
        let mut v = vec!["--base-url", url.as_str(), "--api-key", api_key];
        v.extend_from_slice(extra);
        let args: Vec<String> = v.into_iter().map(String::from).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            liftoff_async(d, &refs).await
        }
    };
    let created = run(&key, &["key", "create", "--role", "member", "--name", "ci-bot", "--format", "json"]).await;
    assert_ok(&created);
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(created["key"]["name"], "ci-bot");
    let secret = created["secret"].as_str().unwrap().to_string();
    let refused = run(&key, &["key", "create", "--role", "member", "--name", ""]).await;
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("key name must be"),
        "{}",
        text(&refused.stderr)
    );

    let admin = liftoff_client::Client::new(&url, &key, "default").unwrap();
    let queue = CreateQueue {
        name: "q".into(),
        resource: liftoff_core::ResourceType::LocalContainer,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: true,
    };
    admin.create_queue(&queue).await.unwrap();
    let source = liftoff_core::job::JobSourceSpec {
        image: Some(liftoff_core::job::ImageSource { image: "busybox:1".into(), args: vec![] }),
        ..Default::default()
    };
    let job = CreateJob { project: "default".into(), name: "j".into(), source, aliases: vec![], runtime: None };
    admin.create_job(&job).await.unwrap();
    let ci = liftoff_client::Client::new(&url, &secret, "default").unwrap();
    let launched = ci.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await.unwrap();
    admin.launch("q", &LaunchRequest { job: "j".into(), ..Default::default() }).await.unwrap();

    let shown = run(&key, &["run", "show", &launched.run_id]).await;
    assert_ok(&shown);
    let line = text(&shown.stdout).lines().find(|l| l.starts_with("launched by:")).map(str::to_string);
    assert_eq!(line.as_deref().map(|l| l.split_whitespace().last()), Some(Some("ci-bot")), "{}", text(&shown.stdout));
    let listed = run(&key, &["run", "list", "--launched-by", "ci-bot", "--format", "json"]).await;
    assert_ok(&listed);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["run_id"], launched.run_id.as_str());

    let changed = run(&secret, &["run", "priority", &launched.run_id, "critical"]).await;
    assert_ok(&changed);
    assert_eq!(text(&changed.stdout).trim(), "critical");
    let bad = run(&secret, &["run", "priority", &launched.run_id, "urgent"]).await;
    assert!(!bad.status.success() && text(&bad.stderr).contains("urgent"), "{}", text(&bad.stderr));
    let agent = RegisterAgent { queues: vec!["q".into()], hostname: "h".into(), max_jobs: 1, version: "1.2.3".into() };
    let agent_id = admin.register_agent(&agent).await.unwrap().id;
    let agents = run(&key, &["agent", "list"]).await;
    assert_ok(&agents);
    let row = text(&agents.stdout).lines().find(|l| l.starts_with(&agent_id)).map(str::to_string).unwrap_or_default();
    assert_eq!(row.split_whitespace().take(3).collect::<Vec<_>>(), [agent_id.as_str(), "h", "1.2.3"], "{row}");
    let claim = admin.claim(&agent_id, &["q".into()], std::time::Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(claim.item.run_id, launched.run_id, "the critical run is claimed first");
    let late = run(&secret, &["run", "priority", &launched.run_id, "low"]).await;
    assert!(!late.status.success(), "refused once claimed");
    assert!(text(&late.stderr).contains("only a pending run's priority can change"), "{}", text(&late.stderr));
    server.shutdown().await;
}
