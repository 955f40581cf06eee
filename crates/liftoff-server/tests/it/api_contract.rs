//! The API contract: schemathesis (PyPI), with every check it has, against
//! a live server and the OpenAPI document that server serves. Every
//! operation is tried with data the document admits (it must be accepted,
//! or refused only for a reason the document gives: 404, 409, 422) and with
//! data it does not (it must be refused), every response must match its
//! documented status, content type and schema, no request may cause a
//! server error, and the links are followed from created objects.
//!
//! The server is seeded first (queues, jobs, an agent, launched and claimed
//! items, a finished run with a log line) so that the generated requests
//! reach the operations' own rules rather than 404. The two event streams
//! are tried too: schemathesis checks each event against the response's
//! `itemSchema`; a stream that stays open (a queue's, a live run's) is read
//! for at most the `request-timeout` that `schemathesis.toml` gives the two,
//! and the run stream's requests all name the finished run, whose stream
//! ends at once. Their own tests are in `events.rs`.
//!
//! Needs `LIFTOFF_TEST_SCHEMATHESIS` (the `st` program, set by
//! `.ci/schemathesis.sh`); without it the test skips, or fails under `CI`.

use liftoff_client::Client;
use liftoff_core::api::*;
use liftoff_core::job::{CodeSource, ImageSource, JobSourceSpec};
use liftoff_core::queue::{TemplateVariable, VarKind};
use liftoff_core::{ItemEvent, ResourceType};
use liftoff_server::{ServerConfig, start};
use liftoff_testkit::required_env;
use std::time::Duration;

/// Objects for the generated requests to find; returns the run id of the
/// finished run.
async fn seed(c: &Client) -> String {
    let var = |name: &str, kind| TemplateVariable {
        name: name.into(),
        kind,
        min: Some(1.0),
        max: Some(8.0),
        allowed: None,
        default: Some(serde_json::json!(1)),
        description: None,
    };
    c.create_queue(&CreateQueue {
        name: "gpu".into(),
        resource: ResourceType::LocalContainer,
        config: serde_json::json!({"cpus": "{{cpus}}", "memory": "1g"}),
        template_variables: vec![var("cpus", VarKind::Integer)],
        prioritization: true,
    })
    .await
    .unwrap();
    c.create_queue(&CreateQueue {
        name: "cpu".into(),
        resource: ResourceType::LocalProcess,
        config: serde_json::json!({}),
        template_variables: vec![],
        prioritization: false,
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "print('hello')\n").unwrap();
    let archive = liftoff_archive::pack_dir(dir.path()).unwrap();
    let digest = liftoff_archive::sha256_digest(&archive);
    c.upload_blob(&digest, archive).await.unwrap();
    let code = CodeSource {
        digest,
        entrypoint: vec!["python3".into(), "main.py".into()],
        build_context: None,
        dockerfile: None,
        base_image: None,
    };
    for (name, source) in [
        ("hello", JobSourceSpec { code: Some(code), ..Default::default() }),
        (
            "boxes",
            JobSourceSpec {
                image: Some(ImageSource { image: "busybox:1".into(), args: vec![] }),
                ..Default::default()
            },
        ),
    ] {
        let job = CreateJob {
            project: "default".into(),
            name: name.into(),
            source,
            aliases: vec!["stable".into()],
            runtime: None,
        };
        c.create_job(&job).await.unwrap();
    }
    let agent = c
        .register_agent(&RegisterAgent {
            queues: vec!["gpu".into(), "cpu".into()],
            hostname: "contract".into(),
            max_jobs: 4,
            version: "test".into(),
        })
        .await
        .unwrap();
    let mut runs = vec![];
    for (queue, job) in [("cpu", "hello"), ("gpu", "boxes"), ("gpu", "boxes"), ("cpu", "hello"), ("cpu", "hello")] {
        runs.push(c.launch(queue, &LaunchRequest { job: job.into(), ..Default::default() }).await.unwrap().run_id);
    }
    let claim = c.claim(&agent.id, &["cpu".into()], Duration::from_millis(100)).await.unwrap();
    assert!(claim.is_some(), "the seed claims an item");
    // a run that ends, for the run stream: transitions, a log line, the end
    let claim = c.claim(&agent.id, &["cpu".into()], Duration::from_millis(100)).await.unwrap().unwrap();
    let (id, fence) = (claim.item.id.clone(), claim.fence);
    c.report(&id, fence, ItemEvent::Start).await.unwrap();
    c.append_log(&id, &AppendLog { fence, seq: 0, stream: LogStream::Stdout, data: "hello\n".into() }).await.unwrap();
    c.report(&id, fence, ItemEvent::Finish).await.unwrap();
    assert_eq!(claim.item.run_id, runs[3], "the second claim took the second cpu launch");
    claim.item.run_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_and_no_server_error() {
    let Some(st) = required_env("LIFTOFF_TEST_SCHEMATHESIS") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().join("data"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    // a claim that finds nothing waits at most this long
    cfg.max_claim_wait = Duration::from_millis(200);
    let server = start(cfg).await.unwrap();
    let key = server.admin_key.clone().unwrap();
    let base = server.base_url();
    let finished_run = seed(&Client::new(&base, &key, "default").unwrap()).await;

    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    // A fixed seed keeps CI repeatable; set the variable to explore others.
    let seed = std::env::var("LIFTOFF_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261130".into());
    let mut cmd = tokio::process::Command::new(&st);
    cmd.args(["--config-file", config, "--no-color", "run"])
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--url", &format!("{base}/api/v1")])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all"])
        .args(["--max-examples", "50", "--workers", "2", "--seed", &seed, "--request-timeout", "10"])
        // its example database and caches go to the scratch directory, not the source tree
        .current_dir(dir.path())
        .env("HOME", dir.path())
        // the run stream's requests name it (schemathesis.toml)
        .env("LIFTOFF_TEST_STREAM_RUN", &finished_run)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis (seed {seed}) found problems:\n{text}");
    // what it did, for the log
    let summary = text.split("SUMMARY").nth(1).unwrap_or(&text);
    eprintln!("schemathesis, seed {seed}:{summary}");
    // and it really tried every operation, the two streams included
    let counts = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:"))
        .and_then(|l| l.trim().split_once(" selected / "))
        .map(|(s, t)| {
            (s.trim().parse::<usize>().unwrap(), t.trim_end_matches(" total").trim().parse::<usize>().unwrap())
        })
        .unwrap_or_else(|| panic!("no 'Operations:' line in:\n{text}"));
    assert_eq!(counts.0, counts.1, "every operation is selected:\n{text}");
    assert!(text.contains(&format!("Tested: {}", counts.0)), "every selected operation was tested:\n{text}");
    assert!(!text.contains("No tests were run"), "{text}");
    // Each test phase ran and passed: a phase schemathesis skips (the
    // stateful phase when it finds no links it can follow, say) is listed
    // as skipped with its reason, and fails this test.
    let phases = test_phases(&text);
    for phase in ["Coverage", "Fuzzing", "Stateful"] {
        let status = phases.iter().find(|(name, _)| name == phase).map(|(_, status)| status.as_str());
        assert_eq!(status, Some("passed"), "the {phase} phase ran and passed; phases: {phases:?}\n{text}");
    }
    let scenarios = stateful_field(&text, "Scenarios:")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no stateful 'Scenarios:' count in:\n{text}"));
    let links_covered = stateful_field(&text, "API Links:")
        .and_then(|v| v.split(" covered").next()?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no stateful 'API Links:' count in:\n{text}"));
    assert!(scenarios > 0 && links_covered > 0, "stateful scenarios ran and followed links:\n{text}");
    server.shutdown().await;
}

/// The "Test Phases:" summary schemathesis prints last: each phase's name
/// and status (`passed`, `skipped (reason)`, `failed`, `errored`,
/// `interrupted`), from the icon it is printed with.
fn test_phases(text: &str) -> Vec<(String, String)> {
    let Some(from) = text.find("Test Phases:") else { panic!("no 'Test Phases:' summary in:\n{text}") };
    let mut phases = vec![];
    for line in text[from..].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        let (icon, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let (name, reason) = match rest.split_once(" (") {
            Some((name, reason)) => (name.trim(), reason.trim_end_matches(')')),
            None => (rest, ""),
        };
        let status = match icon {
            "\u{2705}" => "passed".to_string(),
            "\u{23ed}" | "\u{23ed}\u{fe0f}" => format!("skipped ({reason})"),
            "\u{274c}" => "failed".to_string(),
            "\u{1f6ab}" => "errored".to_string(),
            "\u{26a1}" => "interrupted".to_string(),
            other => format!("unknown ({other})"),
        };
        phases.push((name.to_string(), status));
    }
    phases
}

/// A field of the stateful phase's table (`Scenarios:`, `API Links:`).
fn stateful_field<'t>(text: &'t str, field: &str) -> Option<&'t str> {
    text.lines().find_map(|l| l.trim().strip_prefix(field)).map(str::trim)
}
