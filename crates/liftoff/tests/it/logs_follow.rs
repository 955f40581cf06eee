//! `liftoff run logs -f` (the real binary) follows a live run through the
//! server's event stream: each line is printed before the next one is even
//! written, and the command exits once the run ends; `run show` then
//! prints the run's timeline with the cause of each change.

use liftoff_client::Client;
use liftoff_core::ItemEvent;
use liftoff_core::api::*;
use liftoff_core::job::{ImageSource, JobSourceSpec};
use liftoff_core::{ItemState, ResourceType};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_prints_a_live_runs_lines_as_they_come_and_exits_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = liftoff_server::ServerConfig::new(dir.path().join("data"));
    cfg.listen = ([127, 0, 0, 1], 0).into();
    cfg.print_admin_key = false;
    // only wake-ups can deliver within the test's bounds
    cfg.stream_recheck = Duration::from_secs(60);
    let server = liftoff_server::start(cfg).await.expect("server starts");
    let (url, key) = (server.base_url(), server.admin_key.clone().unwrap());
    let c = Client::new(&url, &key, "default").unwrap();
    let queue = CreateQueue {
        name: "q".into(),
        resource: ResourceType::LocalContainer,
        config: empty_object(),
        template_variables: vec![],
        prioritization: false,
    };
    c.create_queue(&queue).await.unwrap();
    let source =
        JobSourceSpec { image: Some(ImageSource { image: "busybox:1".into(), args: vec![] }), ..Default::default() };
    let job = CreateJob { project: "default".into(), name: "img".into(), source, aliases: vec![], runtime: None };
    c.create_job(&job).await.unwrap();
    let agent = c
        .register_agent(&RegisterAgent {
            queues: vec!["q".into()],
            hostname: "t".into(),
            max_jobs: -1,
            version: "t".into(),
        })
        .await
        .unwrap()
        .id;
    let run = c.launch("q", &LaunchRequest { job: "img".into(), ..Default::default() }).await.unwrap();

    // this test plays the agent; the command follows the run by its run id
    let mut child = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["--base-url", &url, "--api-key", &key, "run", "logs", "-f", &run.run_id])
        .current_dir(dir.path())
        .env_remove("LIFTOFF_BASE_URL")
        .env_remove("LIFTOFF_API_KEY")
        .env_remove("LIFTOFF_ENTITY")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run liftoff");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });

    let claim = c.claim(&agent, &["q".into()], Duration::from_secs(5)).await.unwrap().unwrap();
    let (id, fence) = (claim.item.id.clone(), claim.fence);
    c.report(&id, fence, ItemEvent::Start).await.unwrap();
    for seq in 0..3 {
        let line = format!("epoch {seq}");
        let chunk = AppendLog { fence, seq, stream: LogStream::Stdout, data: format!("{line}\n") };
        c.append_log(&id, &chunk).await.unwrap();
        let printed = tokio::time::timeout(BOUND, lines.recv()).await;
        let printed = printed.unwrap_or_else(|_| panic!("'{line}' was not printed within {BOUND:?}"));
        assert_eq!(printed.as_deref(), Some(line.as_str()), "printed in order, before the next line exists");
    }
    let err = AppendLog { fence, seq: 3, stream: LogStream::Stderr, data: "a warning\n".into() };
    c.append_log(&id, &err).await.unwrap();
    assert!(child.try_wait().unwrap().is_none(), "still following while the run is live");
    let done = c.report(&id, fence, ItemEvent::Finish).await.unwrap();
    assert_eq!(done.state, ItemState::Finished);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < BOUND, "`run logs -f` did not exit within {BOUND:?} of the run's end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}, stderr: {stderr}");
    assert_eq!(stderr, "a warning\n", "stderr chunks go to stderr");
    assert_eq!(lines.recv().await, None, "nothing more on stdout");

    // `run show` prints the timeline with who caused each change
    let show = Command::new(env!("CARGO_BIN_EXE_liftoff"))
        .args(["--base-url", &url, "--api-key", &key, "run", "show", &run.run_id])
        .current_dir(dir.path())
        .env_remove("LIFTOFF_ENTITY")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{shown}{}", String::from_utf8_lossy(&show.stderr));
    let timeline: Vec<&str> = shown.lines().filter_map(|l| l.split_once("Z  ").map(|(_, rest)| rest)).collect();
    assert_eq!(
        timeline,
        [
            "launch -> pending (user)".to_string(),
            format!("claim -> claimed (agent {agent})"),
            format!("start -> running (agent {agent})"),
            format!("finish -> finished (agent {agent})"),
        ],
        "{shown}"
    );
    server.shutdown().await;
}
