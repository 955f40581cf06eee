//! The run lifecycle on the local-process runner with a real server: start
//! timeout, secure mode, stopped_run_timeout, spec checks that fail only
//! their item (with a stage), the run environment (run key, split config,
//! file overrides, resume count).

use crate::support;

use liftoff_agent::AgentOptions;
use liftoff_core::api::{LaunchRequest, LogStream, RegisterAgent};
use liftoff_core::{ItemEvent, ItemState, ResourceType, Stage};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_does_not_start_in_time_is_cancelled_and_failed() {
    let r = rig().await;
    let hold = r.hanging_git_job("hangs").await;
    let opts = AgentOptions { start_timeout: Duration::from_secs(1), ..r.options(1, Duration::from_secs(5)) };
    let (stop, agent) = r.agent_with(opts);
    let id = r.launch("hangs").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Run)));
    assert!(item.reason.as_deref().unwrap().contains("run failed to start within 1 seconds"), "{:?}", item.reason);
    assert_eq!(item.started_at_ms, None);
    assert!(r.logs(&id, LogStream::Agent).await.contains("failed to start within"), "the error is in the run's log");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_refuses_an_entrypoint_override_and_runs_the_rest() {
    let r = rig().await;
    r.job("ok", "echo fine\n").await;
    let opts = AgentOptions { secure_mode: true, ..r.options(1, Duration::from_secs(5)) };
    let (stop, agent) = r.agent_with(opts);
    let req = LaunchRequest {
        job: "ok".into(),
        entrypoint: Some(vec!["sh".into(), "-c".into(), "id".into()]),
        ..Default::default()
    };
    let overridden = r.client.launch("local", &req).await.unwrap().item_id;
    let item = r.wait_for(&overridden, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Agent)));
    assert!(item.reason.as_deref().unwrap().contains("lock the \"entrypoint\" override"), "{:?}", item.reason);
    assert_eq!(item.started_at_ms, None, "nothing ran");
    let plain = r.launch("ok").await;
    let item = r.wait_for(&plain, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_stop_request_becomes_a_kill_after_stopped_run_timeout() {
    let r = rig().await;
    // the whole group ignores SIGTERM (an ignored signal stays ignored across exec)
    r.job("stubborn", "trap '' TERM; echo started; sleep 60 & wait\n").await;
    let opts = AgentOptions { stop_timeout: Duration::from_millis(1500), ..r.options(1, Duration::from_secs(30)) };
    let (stop, agent) = r.agent_with(opts);
    let id = r.launch("stubborn").await;
    r.wait_for(&id, |i| i.state == ItemState::Running, Duration::from_secs(20)).await;
    while !r.logs(&id, LogStream::Stdout).await.contains("started") {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    r.client.stop_item(&id).await.unwrap();
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    let took = asked.elapsed();
    assert_eq!((item.state, item.exit_code), (ItemState::Stopped, Some(137)), "killed: {:?}", item.reason);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "killed after the timeout ({took:?})"
    );
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A queue an older server left with unsafe options: each launch on it is
/// refused at the server's door naming every option (the agent's own check
/// of the same rules, behind it, is tested in liftoff-core and liftoff-run),
/// and other work goes on.
async fn unsafe_docker_options_are_refused_at_launch_naming_each_option() {
    let r = rig().await;
    r.queue_unchecked(
        "boxes",
        ResourceType::LocalContainer,
        serde_json::json!({"privileged": true, "cap-add": "SYS_ADMIN", "memory": "64m"}),
    )
    .await;
    r.image_job("img", "liftoff-test/busybox:1", &["true"]).await;
    r.job("ok", "echo fine\n").await;
    let opts = AgentOptions { queues: vec!["boxes".into(), "local".into()], ..r.options(1, Duration::from_secs(5)) };
    let (stop, agent) = r.agent_with(opts);
    let bad = r.client.launch("boxes", &LaunchRequest { job: "img".into(), ..Default::default() }).await;
    let Err(liftoff_client::ClientError::Api { status: 422, body }) = bad else { panic!("{bad:?}") };
    let reason = body.message;
    assert!(reason.contains("'privileged'") && reason.contains("'cap-add'"), "{reason}");
    assert!(!reason.contains("option 'memory'"), "allowed options are not blamed: {reason}");
    assert!(r.client.list_items(Some("boxes"), 10).await.unwrap().is_empty(), "nothing was enqueued");
    let good = r.launch("ok").await;
    assert_eq!(r.wait_for(&good, |i| i.state.is_terminal(), Duration::from_secs(20)).await.state, ItemState::Finished);
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_gets_its_own_key_its_config_split_and_its_resume_count() {
    let r = rig().await;
    // the run calls the server with its own key, and rebuilds its config
    let script = r#"python3 - <<'PY'
import json, os, urllib.request
key = os.environ["LIFTOFF_API_KEY"]
req = urllib.request.Request(os.environ["LIFTOFF_BASE_URL"] + "/api/v1/whoami", headers={"Authorization": "Bearer " + key})
print("role=" + json.load(urllib.request.urlopen(req))["role"])
parts = sorted((k for k in os.environ if k.startswith("LIFTOFF_CONFIG_")), key=lambda k: int(k.rsplit("_", 1)[1]))
config = json.loads("".join(os.environ[k] for k in parts))
print("parts=%d size=%d" % (len(parts), len(config["blob"])))
print("plain=" + str("LIFTOFF_CONFIG" in os.environ))
print("files=" + os.environ["LIFTOFF_FILE_OVERRIDES"])
print("resume=%s/%s" % (os.environ.get("LIFTOFF_RESUME"), os.environ.get("LIFTOFF_RESUME_COUNT")))
print("admin=" + str(key == "ADMIN_KEY"))
PY
"#;
    r.job("env", &script.replace("ADMIN_KEY", r.server.admin_key.as_deref().unwrap())).await;
    let req = LaunchRequest {
        job: "env".into(),
        run_config: serde_json::json!({"blob": "x".repeat(70_000)}),
        file_overrides: BTreeMap::from([("conf/train.yaml".to_string(), serde_json::json!({"lr": 0.1}))]),
        ..Default::default()
    };
    let id = r.client.launch("local", &req).await.unwrap().item_id;
    // a first holder is preempted: the item comes back with resume count 1
    let fake = r
        .client
        .register_agent(&RegisterAgent {
            queues: vec!["local".into()],
            hostname: "f".into(),
            max_jobs: 1,
            version: "t".into(),
        })
        .await
        .unwrap();
    let c = r.client.claim(&fake.id, &["local".into()], Duration::from_secs(1)).await.unwrap().unwrap();
    r.client.report(&c.item.id, c.fence, ItemEvent::Start).await.unwrap();
    r.client.report(&c.item.id, c.fence, ItemEvent::Preempt).await.unwrap();
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    let out = r.logs(&id, LogStream::Stdout).await;
    assert_eq!(item.state, ItemState::Finished, "{out}\n{}", r.logs(&id, LogStream::Stderr).await);
    assert!(out.contains("role=run\n"), "{out}");
    assert!(out.contains("parts=3 size=70000\n") && out.contains("plain=False\n"), "{out}");
    assert!(out.contains(r#"files={"conf/train.yaml":{"lr":0.1}}"#), "{out}");
    assert!(out.contains("resume=allow/1\n"), "{out}");
    assert!(out.contains("admin=False\n"), "the agent's key never reaches the run: {out}");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_reach_the_process_as_they_are_without_a_shell() {
    let r = rig().await;
    r.job("args", "echo \"argc=$#\"; for a in \"$@\"; do echo \"arg=$a\"; done; echo \"pwd=$(pwd)\"\n").await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let req = LaunchRequest {
        job: "args".into(),
        args: vec!["--epochs".into(), "10".into(), "; echo HACKED".into(), "$(id)".into()],
        ..Default::default()
    };
    let id = r.client.launch("local", &req).await.unwrap().item_id;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!(item.state, ItemState::Finished);
    let out = r.logs(&id, LogStream::Stdout).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], ["argc=4", "arg=--epochs", "arg=10", "arg=; echo HACKED", "arg=$(id)"], "{out}");
    // the work dir is named after the claim's fence; the outcome took the next one
    let claim_fence = item.fence - 1;
    assert!(lines[5].starts_with("pwd=") && lines[5].ends_with(&format!("{}-{claim_fence}", item.run_id)), "{out}");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_kubernetes_args_are_named_before_anything_is_enqueued() {
    let r = rig().await;
    let manifest = serde_json::json!({"spec": {"template": {"spec": {
        "hostNetwork": true,
        "containers": [{"name": "c", "securityContext": {"privileged": true}}]
    }}}});
    r.queue_unchecked("k8s", ResourceType::Kubernetes, manifest).await;
    r.image_job("img", "busybox:1", &[]).await;
    let bad = r.client.launch("k8s", &LaunchRequest { job: "img".into(), ..Default::default() }).await;
    let Err(liftoff_client::ClientError::Api { status: 422, body }) = bad else { panic!("{bad:?}") };
    assert!(body.message.contains("unsafe resource_args.kubernetes option 'securityContext'"), "{}", body.message);
    assert!(body.message.contains("option 'hostNetwork'"), "{}", body.message);
    // a safe manifest is enqueued, and an agent without the runner says so
    r.queue("k8s-safe", ResourceType::Kubernetes, serde_json::json!({"spec": {"backoffLimit": 0}})).await;
    let opts = AgentOptions { queues: vec!["k8s-safe".into()], ..r.options(1, Duration::from_secs(5)) };
    let (stop, agent) = r.agent_with(opts);
    let id = r.launch_on("k8s-safe", "img").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Agent)));
    let reason = item.reason.unwrap();
    assert!(
        reason.contains("this agent cannot run resource 'kubernetes' (kubernetes needs an agent that finds a cluster")
            && reason.contains("(local-process and local-container only)"),
        "no runner is registered for it: {reason}"
    );
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_image_reference_fails_before_any_pull() {
    let r = rig().await;
    r.queue("docker", ResourceType::LocalContainer, serde_json::json!({})).await;
    r.image_job("upper", "Registry.example/Team/App:1", &[]).await;
    // no engine is needed: the reference is checked with the rest of the spec
    let opts = AgentOptions {
        queues: vec!["docker".into()],
        docker_host: Some("unix:///nonexistent/liftoff/docker.sock".into()),
        ..r.options(1, Duration::from_secs(5))
    };
    let (stop, agent) = r.agent_with(opts);
    let id = r.launch_on("docker", "upper").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Agent)));
    let reason = item.reason.unwrap();
    assert!(
        reason.contains(
            "image 'Registry.example/Team/App:1' is not a valid reference: repository names are lower-case ('Team')"
        ),
        "{reason}"
    );
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// A short run's output goes with its outcome: the last chunk rides in the
/// outcome's request instead of one of its own; nothing of it is lost.
/// (Three runs: the last chunk rides only if it is still being gathered,
/// for up to 50 ms, when the run ends; one of them is enough to show it,
/// and a machine stalled that long three times does not fail the test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_runs_last_output_is_sent_with_its_outcome() {
    let r = rig().await;
    r.job("short", "echo one; echo two >&2; echo three\n").await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let mut chunks = 0;
    for _ in 0..3 {
        let id = r.launch("short").await;
        let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
        assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
        assert_eq!(r.logs(&id, LogStream::Stdout).await, "one\nthree\n");
        assert_eq!(r.logs(&id, LogStream::Stderr).await, "two\n");
        chunks += r.client.read_logs(&id, 0).await.unwrap().chunks.len() as u64;
    }
    let metrics = reqwest::get(format!("{}/metrics", r.server.base_url())).await.unwrap().text().await.unwrap();
    let count = |route: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("liftoff_http_request_duration_seconds_count{"))
            .filter(|l| l.contains(&format!("route=\"/api/v1/entities/{{entity}}/items/{{id}}/{route}\"")))
            .filter(|l| l.contains("method=\"POST\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(count("events"), 6, "each run's start and finish were reported:\n{metrics}");
    let apart = count("logs");
    assert!(apart < chunks, "{apart} of the {chunks} chunks were sent on their own: none rode with an outcome");
    assert!(apart >= chunks - 3, "{apart} of {chunks} sent on their own: at most one per run rides with its outcome");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
