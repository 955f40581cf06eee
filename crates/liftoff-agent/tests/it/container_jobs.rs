//! The agent's local-container runner against a real Docker engine (started
//! by scripts/test.sh through .ci/docker.sh), with a real server.

use crate::support;

use base64::Engine;
use liftoff_agent::AgentOptions;
use liftoff_core::api::LogStream;
use liftoff_core::{ItemState, ResourceType, Stage};
use std::time::{Duration, Instant};
use support::{Rig, required_env, rig};

struct Docker {
    host: String,
    image: String,
}

fn docker() -> Option<Docker> {
    Some(Docker { host: required_env("LIFTOFF_TEST_DOCKER_HOST")?, image: required_env("LIFTOFF_TEST_DOCKER_IMAGE")? })
}

async fn container_rig(config: serde_json::Value) -> Rig {
    let r = rig().await;
    r.queue("boxes", ResourceType::LocalContainer, config).await;
    r
}

fn options(r: &Rig, d: &Docker) -> AgentOptions {
    AgentOptions {
        queues: vec!["boxes".into()],
        docker_host: Some(d.host.clone()),
        agent_key: format!("test-{}", uuid::Uuid::new_v4()),
        ..r.options(2, Duration::from_secs(5))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_job_keeps_its_streams_apart_and_its_exact_exit_code() {
    let Some(d) = docker() else { return };
    let r = container_rig(serde_json::json!({"env": ["MY_RUN=${run_id}"], "memory": "64m"})).await;
    r.image_job(
        "img",
        &d.image,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; echo run=$MY_RUN; exit 3",
        ],
    )
    .await;
    let (stop, agent) = r.agent_with(options(&r, &d));
    let id = r.launch_on("boxes", "img").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!(
        (item.state, item.exit_code, item.stage),
        (ItemState::Failed, Some(3), Some(Stage::Run)),
        "{:?}",
        item.reason
    );
    let out = r.logs(&id, LogStream::Stdout).await;
    let err = r.logs(&id, LogStream::Stderr).await;
    let out_lines: Vec<&str> = out.lines().collect();
    assert_eq!(out_lines.len(), 2001, "{}", &out[out.len().saturating_sub(300)..]);
    for (n, l) in out_lines[..2000].iter().enumerate() {
        assert_eq!(*l, format!("out {n}"));
    }
    assert_eq!(out_lines[2000], format!("run={}", item.run_id), "the ${{run_id}} macro reached the container's env");
    assert_eq!(err.lines().count(), 2000);
    assert!(err.lines().enumerate().all(|(n, l)| l == format!("err {n}")));
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_job_on_a_base_image_sees_its_code_and_reaches_the_server_with_its_run_key() {
    let Some(d) = docker() else { return };
    let r = container_rig(serde_json::json!({})).await;
    r.code_job(
        "code",
        "echo pwd=$(pwd)\nls /mnt/liftoff\necho run=$LIFTOFF_RUN_ID\n\
         wget -q -O - --header \"Authorization: Bearer $LIFTOFF_API_KEY\" \"$LIFTOFF_BASE_URL/api/v1/whoami\"; echo\n",
        Some(&d.image),
    )
    .await;
    let (stop, agent) = r.agent_with(options(&r, &d));
    let id = r.launch_on("boxes", "code").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    let out = r.logs(&id, LogStream::Stdout).await;
    assert_eq!(item.state, ItemState::Finished, "{out}\n{}", r.logs(&id, LogStream::Stderr).await);
    assert!(out.contains("pwd=/mnt/liftoff\n") && out.contains("run.sh\n"), "{out}");
    assert!(out.contains(&format!("run={}\n", item.run_id)), "{out}");
    assert!(out.contains(r#""role":"run""#), "the run's own key works from the container: {out}");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_stops_a_running_container_within_the_grace_period() {
    let Some(d) = docker() else { return };
    let r = container_rig(serde_json::json!({})).await;
    r.image_job(
        "polite",
        &d.image,
        &["sh", "-c", "trap 'echo bye; exit 7' TERM; echo up; while true; do sleep 0.1; done"],
    )
    .await;
    r.image_job("stubborn", &d.image, &["sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"]).await;
    let opts = AgentOptions { stop_timeout: Duration::from_secs(2), ..options(&r, &d) };
    let (stop, agent) = r.agent_with(opts);
    for (job, code, min, max) in [("polite", 7, 0, 2_000), ("stubborn", 137, 2_000, 8_000)] {
        let id = r.launch_on("boxes", job).await;
        r.wait_for(&id, |i| i.state == ItemState::Running, Duration::from_secs(60)).await;
        while !r.logs(&id, LogStream::Stdout).await.contains("up") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let asked = Instant::now();
        r.client.stop_item(&id).await.unwrap();
        let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
        let took = asked.elapsed().as_millis();
        assert_eq!((item.state, item.exit_code), (ItemState::Stopped, Some(code)), "{job}: {:?}", item.reason);
        assert!((min..max).contains(&took), "{job} stopped in {took} ms");
    }
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_with_the_registry_credentials_of_the_docker_config() {
    let Some(d) = docker() else { return };
    let (Some(reg), Some(user), Some(pass)) = (
        required_env("LIFTOFF_TEST_REGISTRY"),
        required_env("LIFTOFF_TEST_REGISTRY_USER"),
        required_env("LIFTOFF_TEST_REGISTRY_PASSWORD"),
    ) else {
        return;
    };
    let r = container_rig(serde_json::json!({})).await;
    // a name of its own in the registry (see .ci/docker.sh)
    let image = format!("{reg}/liftoff-test/agent-pull:1");
    r.image_job("remote", &image, &["sh", "-c", "echo pulled"]).await;
    // no credentials: the pull is refused, the item fails at build, naming the image
    // (after removing any copy an earlier run left in the engine)
    let rmi = std::process::Command::new("docker")
        .args(["rmi", "--force", &image])
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", r.dir.path())
        .output()
        .expect("the docker CLI of docker.io");
    let err = String::from_utf8_lossy(&rmi.stderr);
    assert!(rmi.status.success() || err.contains("No such image"), "docker rmi: {err}");
    let empty = r.dir.path().join("no-creds");
    std::fs::create_dir_all(&empty).unwrap();
    let (stop, agent) = r.agent_with(AgentOptions { docker_config: Some(empty), ..options(&r, &d) });
    let id = r.launch_on("boxes", "remote").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!((item.state, item.stage), (ItemState::Failed, Some(Stage::Build)), "{:?}", item.reason);
    assert!(item.reason.as_deref().unwrap().contains(&image), "{:?}", item.reason);
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    // with a docker config holding them (as `docker login` writes it), it runs
    let creds = r.dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(creds.join("config.json"), serde_json::json!({"auths": {reg.clone(): {"auth": auth}}}).to_string())
        .unwrap();
    let (stop, agent) = r.agent_with(AgentOptions { docker_config: Some(creds), ..options(&r, &d) });
    let id = r.launch_on("boxes", "remote").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert_eq!(r.logs(&id, LogStream::Stdout).await, "pulled\n");
    assert!(!r.logs(&id, LogStream::Agent).await.contains(&pass), "the password is never logged");
    // now the image is local under a fixed tag: it is not pulled again, so
    // no credentials are needed and nothing is a warning
    let empty = r.dir.path().join("no-creds");
    let (stop2, agent2) = (stop, agent);
    stop2.send(()).unwrap();
    agent2.await.unwrap().unwrap();
    let (stop, agent) = r.agent_with(AgentOptions { docker_config: Some(empty), ..options(&r, &d) });
    let id = r.launch_on("boxes", "remote").await;
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
    assert!(item.warnings.is_empty(), "{:?}", item.warnings);
    assert!(r.logs(&id, LogStream::Agent).await.contains("not pulled again"));
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
