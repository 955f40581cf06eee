//! The agent against a real server on loopback, running real processes.

use crate::support;

use liftoff_agent::{AgentOptions, run_agent};
use liftoff_core::ItemState;
use liftoff_core::api::{LaunchRequest, LogStream};
use std::time::{Duration, Instant};
use support::rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_arrive_complete_and_in_order_with_the_run_environment() {
    let r = rig().await;
    r.job(
        "count",
        "i=0; while [ $i -lt 5000 ]; do echo \"line $i\"; i=$((i+1)); done\n\
         echo oops >&2\n\
         echo \"env run=$LIFTOFF_RUN_ID queue=$LIFTOFF_QUEUE project=$LIFTOFF_PROJECT config=$LIFTOFF_CONFIG\"\n",
    )
    .await;
    let id = r.launch("count").await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!((item.state, item.exit_code), (ItemState::Finished, Some(0)), "{:?}", item.reason);
    let stdout = r.logs(&id, LogStream::Stdout).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5001);
    for (n, line) in lines[..5000].iter().enumerate() {
        assert_eq!(*line, format!("line {n}"), "no line lost, duplicated or reordered");
    }
    assert_eq!(lines[5000], format!("env run={} queue=local project=default config={{\"lr\":0.5}}", item.run_id));
    assert_eq!(r.logs(&id, LogStream::Stderr).await, "oops\n", "stderr kept apart");
    assert!(r.logs(&id, LogStream::Agent).await.contains("starting sh run.sh"));
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_carry_the_exit_code_and_never_kill_the_agent() {
    let r = rig().await;
    r.job("three", "echo about to fail; exit 3\n").await;
    r.job("ok", "echo fine\n").await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let failed = r.launch("three").await;
    let item = r.wait_for(&failed, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!((item.state, item.exit_code), (ItemState::Failed, Some(3)));
    assert!(item.reason.unwrap().contains("exited with code 3"));
    // an entrypoint that cannot start fails the item, not the agent
    let req =
        LaunchRequest { job: "ok".into(), entrypoint: Some(vec!["/nonexistent/binary".into()]), ..Default::default() };
    let bad = r.client.launch("local", &req).await.unwrap().item_id;
    let item = r.wait_for(&bad, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!(item.state, ItemState::Failed);
    assert!(item.reason.as_deref().unwrap().contains("failed to start"), "{:?}", item.reason);
    let good = r.launch("ok").await;
    let item = r.wait_for(&good, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!(item.state, ItemState::Finished, "the agent is still serving");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

/// A stop signals the job's whole process group, not only its main
/// process: a background child that traps SIGTERM gets it (the SIGKILL
/// sweep after the main process ends would give it no chance to say so)
/// and is gone. The main process traps SIGTERM too, only to give the
/// child's trap time to write before it exits 143 (at most 2 s): the sweep
/// follows the main process's exit at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_stops_the_whole_process_group() {
    let r = rig().await;
    let (pid_file, term_file) = (r.dir.path().join("child.pid"), r.dir.path().join("child.term"));
    let script = format!(
        "sh -c 'trap \"echo TERM > {term}; exit 0\" TERM; echo $$ > {pid}; sleep 60 & wait' &\n\
         trap 'i=0; while [ ! -s {term} ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done; exit 143' TERM\n\
         while [ ! -s {pid} ]; do sleep 0.02; done\necho started\nwait\n",
        pid = pid_file.display(),
        term = term_file.display()
    );
    r.job("sleepy", &script).await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let id = r.launch("sleepy").await;
    r.wait_for(&id, |i| i.state == ItemState::Running, Duration::from_secs(30)).await;
    let until = Instant::now() + Duration::from_secs(30);
    while !r.logs(&id, LogStream::Stdout).await.contains("started") {
        assert!(Instant::now() < until, "the job never started its child");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let child: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(liftoff_testkit::is_alive(child), "the child runs");
    let asked = Instant::now();
    r.client.stop_item(&id).await.unwrap();
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!(item.state, ItemState::Stopped);
    assert!(asked.elapsed() < Duration::from_secs(10), "stopped within the grace period ({:?})", asked.elapsed());
    assert_eq!(item.exit_code, Some(143), "SIGTERM");
    assert_eq!(
        std::fs::read_to_string(&term_file).ok().as_deref(),
        Some("TERM\n"),
        "the background child got the SIGTERM: the group was signalled"
    );
    assert!(!liftoff_testkit::is_alive(child), "the background child is gone");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_the_grace_period_then_stops_what_is_left() {
    let r = rig().await;
    r.job("short", "sleep 1; echo done\n").await;
    r.job("long", "sleep 60 & wait\n").await;
    let (stop, agent) = r.agent(2, Duration::from_secs(4));
    let short = r.launch("short").await;
    let long = r.launch("long").await;
    for id in [&short, &long] {
        r.wait_for(id, |i| i.state == ItemState::Running, Duration::from_secs(30)).await;
    }
    let t = Instant::now();
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(15), "bounded shutdown ({:?})", t.elapsed());
    assert_eq!(r.client.get_item(&short).await.unwrap().state, ItemState::Finished, "finished within the grace period");
    assert_eq!(r.client.get_item(&long).await.unwrap().state, ItemState::Stopped, "stopped after the grace period");
    let agents = r.client.list_agents().await.unwrap();
    assert_eq!(agents[0].status, liftoff_core::api::AgentStatus::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_jobs_bounds_concurrency() {
    let r = rig().await;
    r.job("nap", "sleep 0.7\n").await;
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(r.launch("nap").await);
    }
    let (stop, agent) = r.agent(2, Duration::from_secs(5));
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let items = r.client.list_items(Some("local"), 100).await.unwrap();
        let held = items.iter().filter(|i| i.state.is_leased()).count();
        peak = peak.max(held);
        if items.iter().all(|i| i.state.is_terminal()) {
            assert!(items.iter().all(|i| i.state == ItemState::Finished));
            break;
        }
        assert!(Instant::now() < until, "jobs did not finish");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(peak, 2, "at most max_jobs at once, and the agent used them");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_on_a_missing_queue() {
    let r = rig().await;
    let opts = AgentOptions { queues: vec!["local".into(), "nope".into()], ..r.options(1, Duration::from_secs(1)) };
    let err = run_agent(r.client.clone(), opts, std::future::pending()).await.unwrap_err().to_string();
    assert!(err.contains("missing nope") && err.contains("available queues in entity 'default': local"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_preparation_ends_the_item_stopped_without_starting_it() {
    let r = rig().await;
    let hold = r.hanging_git_job("hangs").await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let id = r.launch("hangs").await;
    r.wait_for(&id, |i| i.state == ItemState::Claimed, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the fetch is under way
    r.client.stop_item(&id).await.unwrap();
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(10)).await;
    assert_eq!(item.state, ItemState::Stopped);
    assert_eq!(item.started_at_ms, None, "it never started");
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_can_ask_an_agent_to_stop_polling() {
    let r = rig().await;
    r.job("sleepy", "echo started; sleep 60 & wait\n").await;
    // room for two jobs and a 3 s grace: the agent is still up, with a free
    // slot and maybe a claim waiting, when the second item arrives
    let (_stop, agent) = r.agent(2, Duration::from_secs(3));
    let id = r.launch("sleepy").await;
    r.wait_for(&id, |i| i.state == ItemState::Running, Duration::from_secs(30)).await;
    let agent_id = r.client.list_agents().await.unwrap()[0].id.clone();
    let asked = Instant::now();
    r.client.stop_agent_polling(&agent_id).await.unwrap();
    let later = r.launch("sleepy").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!agent.is_finished(), "the agent is still in its grace period");
    assert_eq!(r.client.get_item(&later).await.unwrap().state, ItemState::Pending, "it claims nothing more");
    // it gives the job its grace, stops it, exits
    tokio::time::timeout(Duration::from_secs(30), agent).await.expect("the agent exits").unwrap().unwrap();
    assert!(asked.elapsed() >= Duration::from_secs(3), "the running job got its grace ({:?})", asked.elapsed());
    assert_eq!(r.client.get_item(&id).await.unwrap().state, ItemState::Stopped);
    assert_eq!(r.client.get_item(&later).await.unwrap().state, ItemState::Pending);
    let a = &r.client.list_agents().await.unwrap()[0];
    assert_eq!((a.status, a.stop_polling), (liftoff_core::api::AgentStatus::Stopped, true));
}

/// The runs of one code job fetch its archive from the server once: the
/// agent keeps what it downloaded and checked, by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_of_one_code_job_download_its_archive_once() {
    use liftoff_testkit::{RecordingProxy, Upstream};
    let r = rig().await;
    r.job("again", "echo \"run $LIFTOFF_RUN_ID\"\n").await;
    r.job("other", "echo other\n").await;
    let proxy = RecordingProxy::start(Upstream::Tcp(r.server.addr)).await;
    let (stop, agent) = r.agent_via(&proxy.url(), r.options(1, Duration::from_secs(5)));
    let mut ids = vec![];
    for job in ["again", "again", "other", "again"] {
        let id = r.launch(job).await;
        let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
        assert_eq!(item.state, ItemState::Finished, "{:?}", item.reason);
        ids.push(id);
    }
    assert_eq!(proxy.count(b"/blobs/sha256:"), 2, "one download per archive, not per run");
    assert!(!r.logs(&ids[0], LogStream::Agent).await.contains("cached"), "the first run downloaded it");
    for n in [1, 3] {
        assert!(r.logs(&ids[n], LogStream::Agent).await.contains("(cached by this agent)"), "run {n}");
        assert!(r.logs(&ids[n], LogStream::Stdout).await.starts_with("run "), "run {n} ran its code");
    }
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
