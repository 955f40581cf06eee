//! Fault injection around a run's lease and log: a final report held past
//! the lease TTL, a launch with 300 KB of arguments, a job printing a 1 MB
//! line. Each run must happen once and end with its real outcome.

use crate::support;

use liftoff_core::ItemState;
use liftoff_core::api::{LaunchRequest, LogStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::rig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How many lines `marker` holds: one per start of the job.
fn runs_recorded(marker: &Path) -> usize {
    std::fs::read_to_string(marker).map(|s| s.lines().count()).unwrap_or(0)
}

/// What the proxy does to a matching request.
#[derive(Clone)]
enum Fault {
    /// Hold it this long, then pass it on.
    Delay(Duration),
    /// Pass the first one on, wait until the server shows item `id` in
    /// `state` (the request is committed), then drop the connection before
    /// its answer. Whether it saw that is the returned flag.
    LoseFirstAnswerOnce { client: liftoff_client::Client, id: String, state: ItemState, seen: Arc<AtomicBool> },
}

/// A loopback HTTP/1.1 proxy in front of `upstream` that applies `fault` to
/// every request whose head and body contain all of `hold_if`. Returns its
/// address and a count of the requests it matched.
async fn faulty_proxy(upstream: String, hold_if: &'static [&'static str], fault: Fault) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = Arc::new(AtomicUsize::new(0));
    let count = held.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, held, fault) = (upstream.clone(), held.clone(), fault.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                // Answers go back to the client until `swallow` is set; from
                // then on they are dropped, the client's connection kept open.
                let swallow = Arc::new(AtomicBool::new(false));
                let swallowing = swallow.clone();
                let answers = tokio::spawn(async move {
                    let mut chunk = [0u8; 8192];
                    loop {
                        match sr.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) if !swallowing.load(Ordering::SeqCst) => {
                                if cw.write_all(&chunk[..n]).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                        }
                    }
                });
                // Client to server, one request at a time.
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match cr.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 8192];
                        match cr.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request: Vec<u8> = buf.drain(..head_end + len).collect();
                    let text = String::from_utf8_lossy(&request);
                    if hold_if.iter().all(|needle| text.contains(needle)) {
                        let n = held.fetch_add(1, Ordering::SeqCst);
                        match &fault {
                            Fault::Delay(d) => tokio::time::sleep(*d).await,
                            Fault::LoseFirstAnswerOnce { client, id, state, seen } if n == 0 => {
                                swallow.store(true, Ordering::SeqCst);
                                let _ = sw.write_all(&request).await;
                                // cut the line (the client sees it closed, with no
                                // answer) only once the server has stored the event
                                let until = std::time::Instant::now() + Duration::from_secs(30);
                                while std::time::Instant::now() < until {
                                    if client.get_item(id).await.is_ok_and(|i| i.state == *state) {
                                        seen.store(true, Ordering::SeqCst);
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                                answers.abort();
                                return;
                            }
                            Fault::LoseFirstAnswerOnce { .. } => {}
                        }
                    }
                    if sw.write_all(&request).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), count)
}

/// The finish report is held for longer than the lease TTL (3 s): the agent
/// keeps renewing meanwhile, so the lease never runs out and the job is not
/// run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_report_delayed_past_the_lease_ttl_does_not_rerun_the_job() {
    let r = rig().await;
    let marker = r.dir.path().join("runs");
    r.job("once", &format!("echo started >> {}\necho done\n", marker.display())).await;
    let id = r.launch("once").await;
    let upstream = r.server.addr.to_string();
    let (proxy, held) =
        faulty_proxy(upstream, &["/events", "\"event\":\"finish\""], Fault::Delay(Duration::from_secs(5))).await;
    let (stop, agent) = r.agent_via(&proxy, r.options(1, Duration::from_secs(5)));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!(held.load(Ordering::SeqCst), 1, "the finish report went through the proxy and was held once");
    assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{:?}", item.reason);
    assert_eq!(runs_recorded(&marker), 1, "the job ran once");
    let _ = stop.send(());
    agent.await.unwrap().unwrap();
}

/// 300 KB of arguments: the agent's own "starting ..." line would exceed
/// the server's chunk bound; it is cut, the job gets every byte of its
/// arguments, runs once and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_with_300_kb_of_arguments_runs_once_and_finishes() {
    let r = rig().await;
    let marker = r.dir.path().join("runs");
    let script =
        format!("echo started >> {}\necho \"args: $# bytes: $(printf %s \"$1$2$3\" | wc -c)\"\n", marker.display());
    r.job("big-args", &script).await;
    let req = LaunchRequest {
        job: "big-args".into(),
        args: (0..3).map(|i| char::from(b'a' + i).to_string().repeat(100_000)).collect(),
        ..Default::default()
    };
    let id = r.client.launch("local", &req).await.unwrap().item_id;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{:?}", item.reason);
    assert_eq!(runs_recorded(&marker), 1);
    let stdout = r.logs(&id, LogStream::Stdout).await;
    assert!(stdout.contains("args: 3 bytes: 300000"), "{stdout}");
    let agent_log = r.logs(&id, LogStream::Agent).await;
    assert!(agent_log.contains("more bytes cut by the agent]"), "the command line was cut with a marker");
    let _ = stop.send(());
    agent.await.unwrap().unwrap();

    // Past the documented bound, the launch is refused and names the field.
    let mut too_big = req.clone();
    too_big.args.push("d".repeat(200_000));
    match r.client.launch("local", &too_big).await {
        Err(liftoff_client::ClientError::Api { status, body }) => {
            assert_eq!((status, body.field.as_deref()), (400, Some("args[3]")), "{}", body.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A 1 MB line on stdout arrives whole (in pieces no larger than the
/// server's chunk bound), and the run finishes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_printing_a_1_mb_line_finishes_once_with_its_whole_log() {
    let r = rig().await;
    let marker = r.dir.path().join("runs");
    let script =
        format!("echo started >> {}\nhead -c 1000000 /dev/zero | tr '\\0' x\necho\necho after\n", marker.display());
    r.job("wide", &script).await;
    let id = r.launch("wide").await;
    let (stop, agent) = r.agent(1, Duration::from_secs(5));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(60)).await;
    assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{:?}", item.reason);
    assert_eq!(runs_recorded(&marker), 1);
    let stdout = r.logs(&id, LogStream::Stdout).await;
    assert_eq!(stdout.len(), 1_000_000 + "\nafter\n".len());
    assert!(stdout.starts_with("xxxx") && stdout.ends_with("x\nafter\n"));
    let _ = stop.send(());
    agent.await.unwrap().unwrap();
}

/// An agent told to stop while it prepares an item (its git fetch hangs)
/// gives the item back to its queue, costing no attempt, instead of ending
/// a run that never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopping_during_preparation_gives_the_item_back() {
    let r = rig().await;
    let hold = r.hanging_git_job("hangs").await;
    let (stop, agent) = r.agent(1, Duration::from_millis(200));
    let id = r.launch("hangs").await;
    let claimed = r.wait_for(&id, |i| i.state == ItemState::Claimed, Duration::from_secs(30)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), agent).await.expect("the agent exits").unwrap().unwrap();
    let item = r.client.get_item(&id).await.unwrap();
    assert_eq!((item.state, item.attempts, item.started_at_ms), (ItemState::Pending, 0, None), "{:?}", item.reason);
    assert!(item.fence > claimed.fence, "the old claim is fenced out");
    hold.abort();
}

/// The agent's `start` is stored but its answer is lost (the connection
/// drops, as when a server dies after committing): the retry finds the item
/// already running under the agent's fence, and the run goes on and
/// finishes, instead of being taken for a stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_answer_was_lost_is_not_taken_for_a_stop() {
    let r = rig().await;
    let marker = r.dir.path().join("runs");
    r.job("once", &format!("echo started >> {}\necho done\n", marker.display())).await;
    let id = r.launch("once").await;
    let seen_running = Arc::new(AtomicBool::new(false));
    let fault = Fault::LoseFirstAnswerOnce {
        client: r.client.clone(),
        id: id.clone(),
        state: ItemState::Running,
        seen: seen_running.clone(),
    };
    let (proxy, matched) = faulty_proxy(r.server.addr.to_string(), &["/events", "\"event\":\"start\""], fault).await;
    let (tx, agent) = r.agent_via(&proxy, r.options(1, Duration::from_secs(5)));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert!(seen_running.load(Ordering::SeqCst), "the line was cut after the server stored the start");
    assert_eq!(matched.load(Ordering::SeqCst), 2, "the start was sent, its answer lost, and sent again");
    assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{:?}", item.reason);
    assert_eq!(runs_recorded(&marker), 1);
    let agent_log = r.logs(&id, LogStream::Agent).await;
    assert!(
        agent_log.contains("the start was already recorded under this claim"),
        "the retried start took the recovery path (found the item running under its own fence):\n{agent_log}"
    );
    let _ = tx.send(());
    agent.await.unwrap().unwrap();
}

/// The outcome, carrying the log's last chunk, is stored but its answer is
/// lost: the retry is refused (the outcome took a new fence), the agent
/// finds the run ended as it reported, and the log holds every line once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_whose_answer_was_lost_ends_the_run_once_with_its_whole_log() {
    let r = rig().await;
    let marker = r.dir.path().join("runs");
    r.job("once", &format!("echo started >> {}\necho one\necho two\n", marker.display())).await;
    let id = r.launch("once").await;
    let seen = Arc::new(AtomicBool::new(false));
    let fault = Fault::LoseFirstAnswerOnce {
        client: r.client.clone(),
        id: id.clone(),
        state: ItemState::Finished,
        seen: seen.clone(),
    };
    let (proxy, matched) = faulty_proxy(r.server.addr.to_string(), &["/events", "\"event\":\"finish\""], fault).await;
    let (tx, agent) = r.agent_via(&proxy, r.options(1, Duration::from_secs(5)));
    let item = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(30)).await;
    assert_eq!((item.state, item.attempts), (ItemState::Finished, 0), "{:?}", item.reason);
    // the agent took the refusal of its retry for what it was: its own finish
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while matched.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.load(Ordering::SeqCst), "the line was cut after the server stored the finish");
    assert_eq!(matched.load(Ordering::SeqCst), 2, "the finish was sent, its answer lost, and sent again");
    assert_eq!(runs_recorded(&marker), 1);
    assert_eq!(r.logs(&id, LogStream::Stdout).await, "one\ntwo\n", "every line once");
    let _ = tx.send(());
    agent.await.unwrap().unwrap();
    let history = r.client.item_history(&id).await.unwrap();
    let ends = history.iter().filter(|t| t.to.is_terminal()).count();
    assert_eq!(ends, 1, "one outcome recorded: {history:?}");
}
