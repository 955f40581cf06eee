//! `liftoff doctor` and `liftoff permissions` through the built binary:
//! doctor against moto (STS, S3) and the test Docker engine, PASS on good
//! setups and FAIL with the fix on broken ones; exit codes; JSON output.

use liftoff_testkit::fakes::gcp as gcp_fake;

use liftoff_testkit::required_env;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// The binary with no AWS setting of this machine: only what `env` gives.
/// HOME is the test's directory (no ~/.aws), instance metadata is off.
fn liftoff(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_liftoff"));
    c.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("LIFTOFF_") || k == "DOCKER_HOST" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("HOME", dir).env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run liftoff")
}

fn moto_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

fn run(dir: &Path, config: &str, env: &[(&'static str, String)], extra: &[&str]) -> (Output, String) {
    std::fs::write(dir.join("launch-config.yaml"), config).unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["doctor", "-c", "launch-config.yaml"];
    args.extend(extra);
    let out = liftoff(dir, &args, &env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name} line:\n{text}"))
}

fn kaniko(region: &str, store: &str) -> String {
    format!(
        "queues: [default]\nenvironment: {{type: aws, region: {region}}}\nbuilder:\n  type: kaniko\n  destination: 123456789012.dkr.ecr.{region}.amazonaws.com/trainer\n  build-context-store: {store}\n"
    )
}

/// The test registry (htpasswd Basic auth) and a docker config dir in `dir`
/// logged in to it with `password`: the env pair to give the binary.
fn registry_login(dir: &Path, password: &str) -> Option<(String, (&'static str, String))> {
    use base64::Engine;
    let registry = required_env("LIFTOFF_TEST_REGISTRY")?;
    let user = required_env("LIFTOFF_TEST_REGISTRY_USER")?;
    let config = dir.join(format!("docker-{}", unique()));
    std::fs::create_dir_all(&config).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = serde_json::json!({"auths": {registry.clone(): {"auth": auth}}});
    std::fs::write(config.join("config.json"), json.to_string()).unwrap();
    Some((registry, ("DOCKER_CONFIG", config.display().to_string())))
}

/// An aws environment and store, pushing to the test registry (no ECR
/// registry can be reached from here: moto serves ECR's API, not its registry).
fn aws_to_test_registry(registry: &str, store: &str) -> String {
    format!(
        "queues: [default]\nenvironment: {{type: aws, region: us-east-1}}\nbuilder:\n  type: kaniko\n  destination: {registry}/liftoff-test/doctor\n  build-context-store: {store}\n"
    )
}

/// The Kubernetes API fake, served by a runtime of its own while the test
/// runs the binary; its kubeconfig written in `dir`: the env pair to give.
/// (Fields drop in order: the runtime, then the fake.)
struct Kube {
    rt: tokio::runtime::Runtime,
    fake: liftoff_testkit::fakes::kubernetes::KubeFake,
    env: (&'static str, String),
}

fn kube_fake(dir: &Path) -> Kube {
    use liftoff_testkit::fakes::kubernetes::{KubeFake, KubeFakeOptions};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(KubeFake::start(KubeFakeOptions::default())).unwrap();
    let file = dir.join("kubeconfig");
    std::fs::write(&file, fake.kubeconfig()).unwrap();
    Kube { rt, fake, env: ("LIFTOFF_KUBECONFIG", file.display().to_string()) }
}

impl Kube {
    /// Creates Secret `name` in `default` holding `keys` (through the API, as kubectl would).
    fn secret(&self, name: &str, keys: &[&str]) {
        let data: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), "eA==".into())).collect();
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data});
        let url = format!("{}/api/v1/namespaces/default/secrets", self.fake.url);
        let status =
            self.rt.block_on(async { reqwest::Client::new().post(url).json(&body).send().await.unwrap().status() });
        assert_eq!(status, 201);
    }
}

#[test]
fn good_aws_setup_passes_every_check() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let Some(password) = required_env("LIFTOFF_TEST_REGISTRY_PASSWORD") else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((registry, login)) = registry_login(dir.path(), &password) else { return };
    let config = aws_to_test_registry(&registry, &format!("s3://liftoff-test/doctor-{}", unique()));
    let mut env = moto_env(&endpoint);
    env.push(login);
    let kube = kube_fake(dir.path());
    env.push(kube.env.clone());
    let (out, text) = run(dir.path(), &config, &env, &[]);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("FAIL"), "{text}");
    assert!(line(&text, "config").starts_with("PASS"), "{text}");
    let creds = line(&text, "credentials");
    assert!(
        creds.starts_with("PASS") && creds.contains("arn:aws:") && creds.contains("account 123456789012"),
        "{text}"
    );
    assert!(creds.contains("from environment variables"), "{text}");
    assert!(line(&text, "build-context store").starts_with("PASS"), "{text}");
    let builder = line(&text, "builder");
    assert!(builder.starts_with("PASS") && builder.contains("namespace default exists"), "{text}");
    assert!(builder.contains("the agent may make all"), "{text}");
    let reg = line(&text, "registry");
    assert!(reg.starts_with("PASS") && reg.contains("accepts pushes") && reg.contains("config.json"), "{text}");
    let regions = line(&text, "regions");
    assert!(regions.starts_with("PASS") && regions.contains("bucket of s3://liftoff-test"), "{text}");

    let (out, json) = run(dir.path(), &config, &env, &["--format", "json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["ok"], true);
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["config", "credentials", "build-context store", "builder", "registry", "regions"]);
    assert!(v["checks"].as_array().unwrap().iter().all(|c| c["status"] == "pass" || c["status"] == "skip"), "{v:#}");
}

/// kaniko with no cluster to be found: the builder check fails and says how to give one.
#[test]
fn kaniko_without_a_cluster_fails_the_builder_check() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = aws_to_test_registry("127.0.0.1:9", "s3://liftoff-test/ctx");
    let mut env = moto_env(&endpoint);
    env.push(("KUBECONFIG", String::new()));
    let (out, text) = run(dir.path(), &config, &env, &[]);
    assert!(!out.status.success(), "{text}");
    let builder = line(&text, "builder");
    assert!(builder.starts_with("FAIL") && builder.contains("no cluster was found"), "{text}");
    assert!(text.contains("LIFTOFF_KUBECONFIG"), "{text}");
}

#[test]
fn docker_builder_and_registry_are_reached() {
    let Some(docker) = required_env("LIFTOFF_TEST_DOCKER_HOST") else { return };
    let Some(password) = required_env("LIFTOFF_TEST_REGISTRY_PASSWORD") else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((registry, login)) = registry_login(dir.path(), &password) else { return };
    let config = format!("queues: [default]\nbuilder: {{type: docker, destination: {registry}/liftoff-test/doctor}}\n");
    let env = vec![("DOCKER_HOST", docker), login];
    let (out, text) = run(dir.path(), &config, &env, &[]);
    assert!(out.status.success(), "{text}");
    assert!(line(&text, "builder").starts_with("PASS") && line(&text, "builder").contains("answers"), "{text}");
    assert!(line(&text, "registry").starts_with("PASS"), "{text}");

    // a wrong password: the registry check fails, naming the registry, the
    // credential source and how to fix it, never the password
    let (_, bad) = registry_login(dir.path(), "not-the-password").unwrap();
    let (out, text) = run(dir.path(), &config, &[("DOCKER_HOST", env[0].1.clone()), bad], &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let reg = line(&text, "registry");
    assert!(reg.starts_with("FAIL") && reg.contains(&registry) && reg.contains("config.json"), "{text}");
    assert!(text.contains(&format!("fix: log the agent's user in (`docker login {registry}`)")), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");

    // a registry nobody answers at
    let config = "queues: [default]\nbuilder: {type: docker, destination: 127.0.0.1:9/liftoff-test/doctor}\n";
    let (out, text) = run(dir.path(), config, &env, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "registry").starts_with("FAIL") && text.contains("fix: check the registry's address"),
        "{text}"
    );

    let (out, text) = run(dir.path(), config, &[], &["--docker-host", "unix:///nonexistent/docker.sock"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(line(&text, "builder").starts_with("FAIL"), "{text}");
    assert!(text.contains("fix: start the engine"), "{text}");
}

#[test]
fn missing_bucket_fails_with_how_to_create_it() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, text) =
        run(dir.path(), &kaniko("us-east-1", "s3://liftoff-no-such-bucket/ctx"), &moto_env(&endpoint), &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let store = line(&text, "build-context store");
    assert!(store.starts_with("FAIL") && store.contains("'liftoff-no-such-bucket' does not exist"), "{text}");
    assert!(text.contains("fix: create it (`aws s3 mb s3://liftoff-no-such-bucket`)"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("check(s) failed"));
}

#[test]
fn wrong_region_fails_naming_both_regions() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    // the bucket is in us-east-1 (moto's default); the environment says us-west-2
    let (out, text) = run(dir.path(), &kaniko("us-west-2", "s3://liftoff-test/ctx"), &moto_env(&endpoint), &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let regions = line(&text, "regions");
    assert!(regions.starts_with("FAIL") && regions.contains("environment: us-west-2"), "{text}");
    assert!(regions.contains("bucket of s3://liftoff-test/ctx: us-east-1"), "{text}");
    assert!(text.contains("fix: use one region"), "{text}");
}

#[test]
fn no_credentials_fail_naming_the_sources_tried() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("AWS_ENDPOINT_URL", endpoint)];
    let (out, text) = run(dir.path(), &kaniko("us-east-1", "s3://liftoff-test/ctx"), &env, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["ok"], false);
    let creds = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "credentials").unwrap();
    assert_eq!(creds["status"], "fail");
    let detail = creds["detail"].as_str().unwrap();
    assert!(detail.starts_with("no aws credentials found (tried environment variables"), "{detail}");
    assert!(detail.contains("web identity") && detail.contains("EC2 instance metadata"), "{detail}");
    assert!(creds["fix"].as_str().unwrap().contains("aws configure"), "{creds}");
    let store = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "build-context store").unwrap();
    assert_eq!(store["status"], "fail");
}

#[test]
fn an_invalid_config_is_the_one_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (out, text) = run(dir.path(), "environment: {type: aws}\n", &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let config = line(&text, "config");
    assert!(config.starts_with("FAIL") && config.contains("needs region"), "{text}");
    assert!(text.contains("fix: correct launch-config.yaml"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("PASS") || l.starts_with("FAIL")).count(), 1, "{text}");
}

#[test]
fn permissions_prints_the_policy_and_its_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), kaniko("eu-west-1", "s3://my-bucket/ctx")).unwrap();
    let out = liftoff(dir.path(), &["permissions", "-c", "c.yaml"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("arn:aws:ecr:eu-west-1:123456789012:repository/trainer"), "{text}");
    assert!(text.contains("\"arn:aws:s3:::my-bucket/ctx/*\""), "{text}");
    let out = liftoff(dir.path(), &["permissions", "-c", "c.yaml", "--format", "json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["aws"]["Statement"].as_array().unwrap().len(), 4);
    std::fs::write(dir.path().join("bad.yaml"), "environment: {type: aws}\n").unwrap();
    let out = liftoff(dir.path(), &["permissions", "-c", "bad.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs region"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_setup_shows_where_project_and_region_come_from() {
    let fake = gcp_fake::GcpFake::start(&["liftoff-test"]).await;
    let dir = tempfile::tempdir().unwrap();
    // neither region nor project in the file: the project from the key, the
    // region from GOOGLE_CLOUD_REGION (gcloud, with an empty config here, has none)
    let config = "queues: [default]\nenvironment: {type: gcp}\nbuilder:\n  type: kaniko\n  destination: us-central1-docker.pkg.dev/my-project/repo/trainer\n  build-context-store: gs://liftoff-test/ctx\n";
    let env = vec![
        ("GOOGLE_APPLICATION_CREDENTIALS", fake.key_file.display().to_string()),
        ("STORAGE_EMULATOR_HOST", fake.base_url.clone()),
        ("GOOGLE_CLOUD_REGION", "us-central1".to_string()),
        ("CLOUDSDK_CONFIG", dir.path().join("gcloud").display().to_string()),
        ("LIFTOFF_KUBECONFIG", dir.path().join("kubeconfig").display().to_string()),
    ];
    let kube = liftoff_testkit::fakes::kubernetes::KubeFake::start(Default::default()).await.unwrap();
    std::fs::write(dir.path().join("kubeconfig"), kube.kubeconfig()).unwrap();
    let path = dir.path().to_path_buf();
    let (out, text) = tokio::task::spawn_blocking(move || run(&path, config, &env, &[])).await.unwrap();
    // Artifact Registry itself cannot be reached from here: that check, and only it, fails
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let registry = line(&text, "registry");
    assert!(
        registry.starts_with("FAIL") && registry.contains("Artifact Registry us-central1-docker.pkg.dev"),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("FAIL")).count(), 1, "{text}");
    let creds = line(&text, "credentials");
    assert!(creds.starts_with("PASS") && creds.contains(&fake.client_email), "{text}");
    assert!(creds.contains("project my-project (from the service account key's project_id"), "{text}");
    assert!(creds.contains("region us-central1 (from GOOGLE_CLOUD_REGION)"), "{text}");
    assert!(line(&text, "build-context store").starts_with("PASS"), "{text}");
    assert!(line(&text, "builder").starts_with("PASS"), "{text}");
    assert!(line(&text, "regions").starts_with("PASS"), "{text}");
    assert!(!fake.state.issued.lock().unwrap().is_empty());
    assert!(fake.state.refused.lock().unwrap().is_empty());
}

#[test]
fn permissions_lists_what_the_cloud_runners_need() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aws.yaml"), "queues: [q]\nenvironment: {type: aws, region: eu-west-1}\n").unwrap();
    let out = liftoff(dir.path(), &["permissions", "-c", "aws.yaml", "--runner", "sagemaker", "--format", "json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statements = v["aws"]["Statement"].as_array().unwrap();
    let mut actions: Vec<&str> =
        statements.iter().flat_map(|s| s["Action"].as_array().unwrap()).map(|a| a.as_str().unwrap()).collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "iam:PassRole",
            "logs:DescribeLogStreams",
            "logs:GetLogEvents",
            "sagemaker:AddTags",
            "sagemaker:CreateTrainingJob",
            "sagemaker:DescribeTrainingJob",
            "sagemaker:Search",
            "sagemaker:StopTrainingJob",
        ]
    );
    let pass_role = statements.iter().find(|s| s["Action"][0] == "iam:PassRole").unwrap();
    assert_eq!(pass_role["Condition"]["StringEquals"]["iam:PassedToService"], "sagemaker.amazonaws.com");
    let logs = statements.iter().find(|s| s["Sid"] == "LiftoffSageMakerLogs").unwrap();
    assert_eq!(logs["Resource"], "arn:aws:logs:eu-west-1:<account-id>:log-group:/aws/sagemaker/TrainingJobs:*");
    let jobs = statements.iter().find(|s| s["Sid"] == "LiftoffSageMakerJobs").unwrap();
    assert_eq!(jobs["Resource"], "arn:aws:sagemaker:eu-west-1:<account-id>:training-job/*");
    // without --runner, none of it
    let out = liftoff(dir.path(), &["permissions", "-c", "aws.yaml"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("No cloud grants are needed"));

    std::fs::write(
        dir.path().join("gcp.yaml"),
        "queues: [q]\nenvironment: {type: gcp, region: europe-west4, project: my-project-1}\n",
    )
    .unwrap();
    let out = liftoff(dir.path(), &["permissions", "-c", "gcp.yaml", "--runner", "vertex"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for p in [
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.cancel",
        "aiplatform.customJobs.list",
        "logging.logEntries.list",
    ] {
        assert!(text.contains(&format!("  {p}\n")), "{p}: {text}");
    }
    assert!(text.contains("gcloud projects add-iam-policy-binding my-project-1"), "{text}");
    let out = liftoff(dir.path(), &["permissions", "-c", "gcp.yaml", "--runner", "vertex", "--format", "json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["gcp"]["permissions"].as_array().unwrap().len(), 5);
    let bad = liftoff(dir.path(), &["permissions", "-c", "gcp.yaml", "--runner", "lambda"], &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown resource type 'lambda'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_calls_each_cloud_runners_service_with_the_agents_credentials() {
    use liftoff_testkit::fakes::sagemaker::{SageMakerFake, SageMakerFakeOptions};
    use liftoff_testkit::fakes::vertex::{VertexFake, VertexFakeOptions};
    let Some(moto) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let sm = SageMakerFake::start(SageMakerFakeOptions::default()).await.unwrap();
    let vx = VertexFake::start(VertexFakeOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let aws = "queues: [q]\nenvironment: {type: aws, region: us-east-1}\n";
    let mut env = moto_env(&moto);
    env.push(("AWS_ENDPOINT_URL_SAGEMAKER", sm.url.clone()));
    let path = dir.path().to_path_buf();
    let (out, text) = {
        let env = env.clone();
        tokio::task::spawn_blocking(move || run(&path, aws, &env, &["--runner", "sagemaker"])).await.unwrap()
    };
    assert!(out.status.success(), "{text}");
    assert!(line(&text, "sagemaker").starts_with("PASS"), "{text}");
    assert!(sm.calls().contains(&"DescribeTrainingJob".to_string()), "the call reached SageMaker");
    // keys SageMaker does not know
    env[1].1 = "AKIAUNKNOWN".into();
    let path = dir.path().to_path_buf();
    let (out, text) =
        tokio::task::spawn_blocking(move || run(&path, aws, &env, &["--runner", "sagemaker"])).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed = line(&text, "sagemaker");
    assert!(failed.starts_with("FAIL") && failed.contains("UnrecognizedClientException"), "{text}");
    assert!(text.contains("liftoff permissions -c <config> --runner sagemaker"), "{text}");

    let credentials = dir.path().join("adc.json");
    std::fs::write(&credentials, vx.credentials_json("my-project-1").to_string()).unwrap();
    let gcp = "queues: [q]\nenvironment: {type: gcp, region: europe-west4, project: my-project-1}\n";
    let env = vec![
        ("GOOGLE_APPLICATION_CREDENTIALS", credentials.display().to_string()),
        ("LIFTOFF_VERTEX_ENDPOINT", vx.url.clone()),
        ("LIFTOFF_LOGGING_ENDPOINT", vx.url.clone()),
        ("CLOUDSDK_CONFIG", dir.path().join("gcloud").display().to_string()),
        ("LIFTOFF_KUBECONFIG", dir.path().join("kubeconfig").display().to_string()),
    ];
    let kube = liftoff_testkit::fakes::kubernetes::KubeFake::start(Default::default()).await.unwrap();
    std::fs::write(dir.path().join("kubeconfig"), kube.kubeconfig()).unwrap();
    let path = dir.path().to_path_buf();
    let (out, text) =
        tokio::task::spawn_blocking(move || run(&path, gcp, &env, &["--runner", "vertex"])).await.unwrap();
    assert!(out.status.success(), "{text}");
    let passed = line(&text, "vertex");
    assert!(passed.starts_with("PASS") && passed.contains("projects/my-project-1/locations/europe-west4"), "{text}");
}

/// The rights a queue's runs need, asked of the cluster: each verb on each
/// resource of `liftoff permissions`' Role in the runs' namespace, and the
/// ClusterRole's list across namespaces; the namespace must exist. The
/// fake's RBAC authorizer answers as a real cluster's does.
#[test]
fn the_kubernetes_runners_rights_are_asked_of_the_cluster() {
    use liftoff_cloud::kube_rbac::{agent_cluster_role, agent_role};
    use liftoff_testkit::fakes::kubernetes::Rbac;
    let dir = tempfile::tempdir().unwrap();
    let kube = kube_fake(dir.path());
    let env = vec![kube.env.clone()];
    let config = "queues: [default]\n";
    let user = "system:serviceaccount:default:liftoff-agent";
    let check = |extra: &[&str]| {
        let mut args = vec!["--runner", "kubernetes"];
        args.extend(extra);
        let (out, text) = run(dir.path(), config, &env, &args);
        (out.status.success(), line(&text, "kubernetes").to_string(), text)
    };

    // everything allowed (no rules), and exactly the shipped Role and ClusterRole
    let (ok, l, text) = check(&[]);
    assert!(ok && l.starts_with("PASS") && l.contains("namespace default exists"), "{text}");
    let calls: usize = l.split("make all ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(calls >= 15, "every verb of every rule is asked: {l}");
    kube.fake.set_rbac(Some(Rbac::new(user, "default", &agent_role(), &agent_cluster_role()).unwrap()));
    let (ok, l, text) = check(&[]);
    assert!(ok && l.starts_with("PASS") && l.contains(&format!("all {calls} calls")), "{text}");

    // a Role without pods/log and without deleting Secrets: both named, with the fix
    let mut role = agent_role();
    for rule in role["rules"].as_array_mut().unwrap() {
        if rule["resources"] == serde_json::json!(["pods/log"]) {
            rule["resources"] = serde_json::json!(["pods"]);
        }
        if rule["resources"] == serde_json::json!(["secrets"]) {
            rule["verbs"] = serde_json::json!(["create", "list"]);
        }
    }
    kube.fake.set_rbac(Some(Rbac::new(user, "default", &role, &agent_cluster_role()).unwrap()));
    let (ok, l, text) = check(&[]);
    assert!(!ok && l.starts_with("FAIL"), "{text}");
    assert!(l.contains("2 of the") && l.contains("in namespace default: get pods/log, delete secrets"), "{text}");
    assert!(
        text.contains("fix: bind the Role and ClusterRole that `liftoff permissions --runner kubernetes`"),
        "{text}"
    );

    // the Role bound where the runs are not, and no ClusterRole
    kube.fake.add_namespace("team");
    kube.fake.set_rbac(Some(Rbac::new(user, "team", &agent_role(), &serde_json::json!({"rules": []})).unwrap()));
    let (ok, l, text) = check(&["--namespace", "team"]);
    assert!(!ok && l.contains("cluster-wide (finding its Jobs after a restart): list jobs.batch"), "{text}");
    assert!(!l.contains("in namespace team:"), "{text}");
    let (ok, l, text) = check(&[]);
    assert!(!ok && l.contains("could not check namespace default") && l.contains("403"), "{text}");

    // a namespace that does not exist
    kube.fake.set_rbac(None);
    let (ok, l, text) = check(&["--namespace", "nope"]);
    assert!(!ok && l.contains("namespace nope does not exist"), "{text}");
    assert!(text.contains("kubectl create namespace nope"), "{text}");
}

/// kaniko's `secret-name`/`secret-key`: the Secret must exist in the build
/// namespace and hold the key, or the build pods find no credentials.
#[test]
fn kanikos_credentials_secret_must_hold_its_key() {
    let Some(endpoint) = required_env("LIFTOFF_TEST_S3_ENDPOINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let kube = kube_fake(dir.path());
    let mut env = moto_env(&endpoint);
    env.push(kube.env.clone());
    let config = format!(
        "{}  secret-name: aws-creds\n  secret-key: credentials\n",
        kaniko("us-east-1", &format!("s3://liftoff-test/doctor-{}", unique()))
    );
    let builder = |env: &[(&'static str, String)]| {
        let (_, text) = run(dir.path(), &config, env, &[]);
        (line(&text, "builder").to_string(), text)
    };
    let (l, text) = builder(&env);
    assert!(
        l.starts_with("FAIL") && l.contains("builder.secret-name: there is no Secret aws-creds in namespace default"),
        "{text}"
    );
    assert!(text.contains("kubectl create secret generic aws-creds -n default --from-file=credentials="), "{text}");
    kube.secret("aws-creds", &["config"]);
    let (l, text) = builder(&env);
    assert!(l.starts_with("FAIL") && l.contains("has no key credentials (it has: config)"), "{text}");
    kube.secret("aws-creds-2", &["credentials"]);
    let config2 = config.replace("secret-name: aws-creds", "secret-name: aws-creds-2");
    let (_, text) = run(dir.path(), &config2, &env, &[]);
    let l = line(&text, "builder");
    assert!(l.starts_with("PASS") && l.contains("Secret aws-creds-2 holds credentials"), "{text}");
}
