//! The fakes as programs, as a person uses them: `--help`, a listening
//! server, refusals in the service's shapes, a job driven over the admin
//! endpoints and run by `--auto`.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `bin` on a free port; the guard and the URL it prints.
fn start(bin: &str, args: &[&str]) -> (liftoff_testkit::ProcessGroup, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", "127.0.0.1:0"]).args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut group = liftoff_testkit::ProcessGroup::spawn(&mut cmd).unwrap();
    let out = group.child().stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().unwrap().unwrap();
    // the rest (vertex-fake's credentials) is read too: a closed pipe would end the fake
    std::thread::spawn(move || lines.for_each(drop));
    let url = first.rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    (group, url)
}

#[test]
fn both_fakes_explain_themselves() {
    for (bin, mentions) in [
        (env!("CARGO_BIN_EXE_sagemaker-fake"), "AWS_ENDPOINT_URL_SAGEMAKER"),
        (env!("CARGO_BIN_EXE_vertex-fake"), "LIFTOFF_VERTEX_ENDPOINT"),
    ] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(mentions) && text.contains("--auto"), "{bin}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sagemaker_fake_refuses_unsigned_calls_as_sagemaker_does() {
    let (_fake, url) = start(env!("CARGO_BIN_EXE_sagemaker-fake"), &[]);
    let http = reqwest::Client::new();
    let resp = http
        .post(&url)
        .header("x-amz-target", "SageMaker.DescribeTrainingJob")
        .header("content-type", "application/x-amz-json-1.1")
        .body(r#"{"TrainingJobName":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.headers()["x-amzn-errortype"], "MissingAuthenticationTokenException");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Missing Authentication Token");
    let admin = http.get(format!("{url}/_fake/jobs")).send().await.unwrap();
    let body: serde_json::Value = admin.json().await.unwrap();
    assert_eq!(body["jobs"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vertex_fake_issues_tokens_and_runs_a_job_by_itself_with_auto() {
    let (_fake, url) = start(env!("CARGO_BIN_EXE_vertex-fake"), &["--auto", "1"]);
    let http = reqwest::Client::new();
    let jobs = format!("{url}/v1/projects/p/locations/europe-west4/customJobs");
    let job =
        serde_json::json!({"displayName": "t", "jobSpec": {"workerPoolSpecs": [{"containerSpec": {"imageUri": "i"}}]}});
    let refused = http.post(&jobs).json(&job).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let err: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    let form = [("grant_type", "refresh_token"), ("refresh_token", liftoff_testkit::fakes::vertex::REFRESH_TOKEN)];
    let token: serde_json::Value =
        http.post(format!("{url}/token")).form(&form).send().await.unwrap().json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let created: serde_json::Value =
        http.post(&jobs).bearer_auth(&token).json(&job).send().await.unwrap().json().await.unwrap();
    let name = created["name"].as_str().unwrap().to_string();
    // --auto 1: running at once, succeeded after a second
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got: serde_json::Value =
            http.get(format!("{url}/v1/{name}")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        if got["state"] == "JOB_STATE_SUCCEEDED" {
            break;
        }
        assert!(std::time::Instant::now() < until, "{got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = name.rsplit('/').next().unwrap();
    let filter = format!("resource.type=\"ml_job\" AND resource.labels.job_id=\"{id}\"");
    let list = serde_json::json!({"resourceNames": ["projects/p"], "filter": filter, "orderBy": "timestamp asc"});
    let entries: serde_json::Value = http
        .post(format!("{url}/v2/entries:list"))
        .bearer_auth(&token)
        .json(&list)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entries["entries"][0]["textPayload"], "fake training step 1", "{entries}");
}
