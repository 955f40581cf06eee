//! `liftoff config check|schema` through the built binary: exit codes, text and JSON output.

use crate::support;

use std::path::Path;
use std::process::Output;
use support::liftoff;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

const VALID: &str = "\
entity: acme
queues: [a, b]
max_jobs: 2
environment: {type: aws, region: us-east-1}
builder:
  type: docker
  destination: 123456789012.dkr.ecr.us-east-1.amazonaws.com/repo
";

const INVALID: &str = "\
entity: acme
max_job: 2
builder:
  type: docker
  destination: registry.example.com/app:v1
  type: kaniko
";

#[test]
fn valid_file_exits_0_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", VALID);
    let out = liftoff(dir.path(), &["config", "check", &f]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: entity acme, queues a, b; max_jobs 2; builder docker -> 123456789012.dkr.ecr.us-east-1.amazonaws.com/repo; environment aws\n"
    );
}

#[test]
fn warnings_follow_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "w.yaml", "builder: {type: docker, destination: registry.example.com/app}\n");
    let out = liftoff(dir.path(), &["config", "check", &f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("ok: entity from the api key, no queues"), "{s}");
    assert!(lines[1..].iter().all(|l| l.starts_with("warning: ")), "{s}");
    assert!(s.contains("warning: builder.destination (line 1, column 38)"), "{s}");
    assert!(s.contains("warning: queues: no queues"), "{s}");
}

#[test]
fn empty_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "empty.yaml", "");
    let out = liftoff(dir.path(), &["config", "check", &f, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    assert_eq!(j["valid"], true);
    assert_eq!(j["config"]["max_jobs"], 1);
}

#[test]
fn invalid_file_exits_1_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.yaml", INVALID);
    let out = liftoff(dir.path(), &["config", "check", &f]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(s.contains("error: max_job (line 2, column 1): unknown key, did you mean 'max_jobs'? (value: 2)"), "{s}");
    assert!(s.contains("error: builder.destination (line 5, column 16): a destination carries no tag"), "{s}");
    assert!(s.contains("error: builder.type (line 6, column 3): duplicate key (first given on line 4)"), "{s}");
    assert_eq!(s.lines().filter(|l| l.starts_with("error: ")).count(), 3, "{s}");
    assert!(text(&out.stderr).contains("is not a valid launch config (3 errors)"), "{}", text(&out.stderr));
}

#[test]
fn json_output_for_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.yaml", INVALID);
    let out = liftoff(dir.path(), &["config", "check", "--format", "json", &f]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["valid"], false);
    assert_eq!(j["config"], serde_json::Value::Null);
    let errors = j["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3);
    assert_eq!(errors[0]["path"], "max_job");
    assert_eq!(errors[0]["value"], "2");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["column"], 1);
    assert!(errors[0]["message"].as_str().unwrap().contains("did you mean 'max_jobs'"));
}

#[test]
fn json_output_for_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "ok.yaml", VALID);
    let out = liftoff(dir.path(), &["config", "check", &f, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    assert_eq!(j["valid"], true);
    assert_eq!(j["errors"], serde_json::json!([]));
    assert_eq!(j["config"]["entity"], "acme");
    assert_eq!(j["config"]["queues"], serde_json::json!(["a", "b"]));
    assert_eq!(j["config"]["builder"]["destination"], "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo");
    assert_eq!(j["config"]["environment"]["region"], "us-east-1");
}

#[test]
fn unreadable_files_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    for format in ["text", "json"] {
        let out = liftoff(dir.path(), &["config", "check", missing.to_str().unwrap(), "--format", format]);
        assert_eq!(out.status.code(), Some(1), "{format}");
        let s = text(&out.stdout);
        assert!(s.contains("failed to read"), "{s}");
    }
    // a directory, bad utf-8, bad yaml and an oversized file are all exit 1
    let not_utf8 = dir.path().join("latin1.yaml");
    std::fs::write(&not_utf8, b"entity: caf\xe9\n").unwrap();
    let big = write(dir.path(), "big.yaml", &"# padding\n".repeat(110_000));
    let bad_yaml = write(dir.path(), "syntax.yaml", "queues: [a, b\n");
    for f in [dir.path().to_str().unwrap(), not_utf8.to_str().unwrap(), &big, &bad_yaml] {
        let out = liftoff(dir.path(), &["config", "check", f, "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{f}: {}", text(&out.stdout));
        assert_eq!(json(&out)["valid"], false, "{f}");
    }
}

#[test]
fn schema_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = liftoff(dir.path(), &["config", "schema"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let j = json(&out);
    assert_eq!(j["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(j["properties"]["builder"].is_object());
    assert_eq!(j["additionalProperties"], false);
}
