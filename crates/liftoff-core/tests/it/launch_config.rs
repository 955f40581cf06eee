//! `launch-config.yaml`: the rules, the reference's acceptance items (§8 1–4),
//! the quirks fixed, and the schema's agreement with the validator.

use liftoff_core::launch_config::{
    AgentConfig, BuildContextStore, BuilderType, ConfigIssue, EnvironmentConfig, ImageDestination, ImageRef,
    MAX_FILE_BYTES, NO_QUEUES, Overrides, Platform, RegistryType, Resolved, check_file_text, json_schema, resolve,
};
use std::collections::BTreeMap;
use std::time::Duration;

fn check(yaml: &str) -> Resolved {
    match check_file_text(yaml) {
        Ok(r) => r,
        Err(e) => panic!("expected valid, got:\n{}\n--- file:\n{yaml}", render(&e)),
    }
}

fn cfg(yaml: &str) -> AgentConfig {
    check(yaml).config
}

fn errors(yaml: &str) -> Vec<ConfigIssue> {
    match check_file_text(yaml) {
        Ok(r) => panic!("expected errors, got valid {:?}\n--- file:\n{yaml}", r.config),
        Err(e) => e,
    }
}

fn render(issues: &[ConfigIssue]) -> String {
    issues.iter().map(|i| format!("  {i}\n")).collect()
}

/// The one error of `yaml`, which must be at `path` and mention `needle`.
fn one_error(yaml: &str, path: &str, needle: &str) -> ConfigIssue {
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "expected one error at {path}, got:\n{}", render(&e));
    assert_eq!(e[0].path, path, "{}", render(&e));
    assert!(e[0].message.contains(needle), "'{needle}' not in:\n{}", render(&e));
    e[0].clone()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn no_flags() -> Overrides {
    Overrides::default()
}

// ---- defaults, empty files, basics ----

#[test]
fn empty_file_is_valid_with_defaults() {
    for text in ["", "\n", "# only a comment\n", "{}", "~\n", "---\n"] {
        let r = check(text);
        let c = r.config;
        assert_eq!(c.entity, None);
        assert_eq!(c.queues, Vec::<String>::new());
        assert_eq!(c.max_jobs, Some(1));
        assert_eq!(c.max_schedulers, Some(1));
        assert!(!c.secure_mode);
        assert_eq!(c.verbosity, 0);
        assert_eq!(c.stopped_run_timeout, Duration::from_secs(60));
        assert_eq!(c.start_timeout, Duration::from_secs(1800));
        assert!(!c.allow_http_git);
        assert_eq!((c.builder, c.environment, c.registry), (None, None, None));
        assert!(r.warnings.iter().any(|w| w.path == "queues"), "no-queue warning expected: {:?}", r.warnings);
    }
}

#[test]
fn full_file_reads_every_key() {
    let c = cfg(r#"
entity: acme
project: launch
queues: [a, b]
queue: c
max_jobs: 4
max_schedulers: -1
secure_mode: true
verbosity: 2
stopped_run_timeout: 0
start_timeout: 600
base_url: https://liftoff.example.com:8443/
allow_http_git: off
builder:
  type: kaniko
  destination: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app
  platform: linux/arm64
  build-context-store: s3://my-bucket/build-contexts/
  build-job-name: my-builds
  secret-name: aws-creds
  secret-key: credentials
  kaniko-image: gcr.io/kaniko-project/executor:v1.23.0
  kaniko-config:
    spec:
      template:
        spec:
          nodeSelector: {pool: builds}
  accelerator:
    base_image: nvidia/cuda:12.4.1-runtime-ubuntu22.04
environment:
  type: aws
  region: us-east-1
  profile: launch
"#);
    assert_eq!(c.entity.as_deref(), Some("acme"));
    assert_eq!(c.project.as_deref(), Some("launch"));
    assert_eq!(c.queues, ["a", "b", "c"]);
    assert_eq!(c.max_jobs, Some(4));
    assert_eq!(c.max_schedulers, None);
    assert!(c.secure_mode);
    assert_eq!(c.verbosity, 2);
    assert_eq!(c.stopped_run_timeout, Duration::ZERO);
    assert_eq!(c.start_timeout, Duration::from_secs(600));
    assert_eq!(c.base_url.as_deref(), Some("https://liftoff.example.com:8443/"));
    assert!(!c.allow_http_git);
    let b = c.builder.unwrap();
    assert_eq!(b.builder_type, BuilderType::Kaniko);
    assert_eq!(
        b.destination,
        Some(ImageDestination::Ecr {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            repository: "team/app".into()
        })
    );
    assert_eq!(b.platform, Some(Platform::LinuxArm64));
    assert_eq!(
        b.build_context_store,
        Some(BuildContextStore::S3 { bucket: "my-bucket".into(), prefix: "build-contexts/".into() })
    );
    assert_eq!(b.build_job_name, "my-builds");
    let secret = b.secret.unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("aws-creds", "credentials"));
    assert_eq!(b.kaniko_image, "gcr.io/kaniko-project/executor:v1.23.0");
    assert_eq!(b.kaniko_config.unwrap()["spec"]["template"]["spec"]["nodeSelector"]["pool"], "builds");
    assert_eq!(b.accelerator_base_image.as_deref(), Some("nvidia/cuda:12.4.1-runtime-ubuntu22.04"));
    assert_eq!(
        c.environment,
        Some(EnvironmentConfig::Aws { region: "us-east-1".into(), profile: Some("launch".into()) })
    );
}

#[test]
fn builder_defaults() {
    let b = cfg("builder: {type: docker}\n").builder.unwrap();
    assert_eq!(b.builder_type, BuilderType::Docker);
    assert_eq!(b.build_job_name, "wandb-launch-container-build");
    assert_eq!(b.kaniko_image, liftoff_core::launch_config::DEFAULT_KANIKO_IMAGE);
    assert!(b.kaniko_image.starts_with("ghcr.io/osscontainertools/kaniko:") && b.kaniko_image.contains("@sha256:"));
    assert_eq!((b.destination, b.platform, b.secret), (None, None, None));
    assert_eq!(
        (b.namespace, b.service_account, b.build_deadline, b.cache, b.cache_repo),
        (None, None, 1800, true, None)
    );
}

#[test]
fn null_values_count_as_absent() {
    let c = cfg("entity:\nmax_jobs: ~\nbuilder: null\nqueues:\n");
    assert_eq!(c.entity, None);
    assert_eq!(c.max_jobs, Some(1));
    assert_eq!(c.builder, None);
}

// ---- §8 item 1: max_jobs and max_schedulers ----

#[test]
fn max_jobs_values() {
    for key in ["max_jobs", "max_schedulers"] {
        let get = |c: &AgentConfig| if key == "max_jobs" { c.max_jobs } else { c.max_schedulers };
        assert_eq!(get(&cfg("{}")), Some(1), "{key} default");
        assert_eq!(get(&cfg(&format!("{key}: \"8\"\n"))), Some(8), "{key} string cast");
        assert_eq!(get(&cfg(&format!("{key}: '8'\n"))), Some(8));
        assert_eq!(get(&cfg(&format!("{key}: 0\n"))), Some(0));
        assert_eq!(get(&cfg(&format!("{key}: -1\n"))), None, "{key} -1 is unlimited");
        assert_eq!(get(&cfg(&format!("{key}: \"-1\"\n"))), None);
        one_error(&format!("{key}: -29\n"), key, "-1 (unlimited) or at least 0");
        one_error(&format!("{key}: weird\n"), key, "expected an integer");
        one_error(&format!("{key}: \"weird\"\n"), key, "expected an integer");
        one_error(&format!("{key}: 2.5\n"), key, "expected an integer");
        one_error(&format!("{key}: true\n"), key, "expected an integer");
        one_error(&format!("{key}: [1]\n"), key, "expected an integer");
        one_error(&format!("{key}: 99999999999\n"), key, "at most");
    }
}

#[test]
fn max_jobs_zero_warns() {
    let r = check("max_jobs: 0\nqueues: [a]\n");
    assert!(r.warnings.iter().any(|w| w.path == "max_jobs" && w.message.contains("never")), "{:?}", r.warnings);
}

// ---- §8 item 2: resolution order ----

#[test]
fn resolution_order_file_env_flags() {
    let file = "entity: different-entity\nmax_jobs: 2\nregistry:\n  url: test\nqueues: [q]\n";
    let flags = Overrides { max_jobs: Some(-1), ..Overrides::default() };
    let r = resolve(Some(file), &env(&[("LIFTOFF_ENTITY", "diffentity")]), &flags).unwrap();
    assert_eq!(r.config.entity.as_deref(), Some("diffentity"));
    assert_eq!(r.config.max_jobs, None);
    let reg = r.config.registry.expect("registry kept");
    assert_eq!(reg.registry_type, None);
    assert_eq!(reg.uri.unwrap().uri(), "docker.io/test");
    // the reference's own variable works as a fallback
    let r = resolve(Some(file), &env(&[("WANDB_ENTITY", "diffentity")]), &no_flags()).unwrap();
    assert_eq!((r.config.entity.as_deref(), r.config.max_jobs), (Some("diffentity"), Some(2)));
    // LIFTOFF_ wins over WANDB_; the flag wins over both
    let both = env(&[("LIFTOFF_ENTITY", "lift"), ("WANDB_ENTITY", "wb")]);
    assert_eq!(resolve(Some(file), &both, &no_flags()).unwrap().config.entity.as_deref(), Some("lift"));
    let flags = Overrides { entity: Some("flag-entity".into()), ..Overrides::default() };
    assert_eq!(resolve(Some(file), &both, &flags).unwrap().config.entity.as_deref(), Some("flag-entity"));
    // an empty variable counts as unset
    let r = resolve(Some(file), &env(&[("LIFTOFF_ENTITY", "")]), &no_flags()).unwrap();
    assert_eq!(r.config.entity.as_deref(), Some("different-entity"));
}

#[test]
fn environment_variables_for_numbers() {
    let q = "queues: [q]\n";
    let r = resolve(Some(q), &env(&[("WANDB_LAUNCH_MAX_JOBS", "8")]), &no_flags()).unwrap();
    assert_eq!(r.config.max_jobs, Some(8));
    let r = resolve(Some(q), &env(&[("LIFTOFF_LAUNCH_MAX_JOBS", "-1"), ("WANDB_LAUNCH_MAX_JOBS", "3")]), &no_flags())
        .unwrap();
    assert_eq!(r.config.max_jobs, None);
    let r = resolve(Some(q), &env(&[("LIFTOFF_LAUNCH_START_TIMEOUT", "90")]), &no_flags()).unwrap();
    assert_eq!(r.config.start_timeout, Duration::from_secs(90));
    let r = resolve(Some(q), &env(&[("WANDB_LAUNCH_START_TIMEOUT", "30")]), &no_flags()).unwrap();
    assert_eq!(r.config.start_timeout, Duration::from_secs(30));

    let e = resolve(Some(q), &env(&[("LIFTOFF_LAUNCH_MAX_JOBS", "weird")]), &no_flags()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "LIFTOFF_LAUNCH_MAX_JOBS");
    assert_eq!(e[0].value.as_deref(), Some("weird"));
    assert_eq!((e[0].line, e[0].column), (None, None));
    let e = resolve(Some(q), &env(&[("WANDB_LAUNCH_MAX_JOBS", "-29")]), &no_flags()).unwrap_err();
    assert_eq!(e[0].path, "WANDB_LAUNCH_MAX_JOBS");
    let e = resolve(Some(q), &env(&[("WANDB_LAUNCH_START_TIMEOUT", "0")]), &no_flags()).unwrap_err();
    assert_eq!(e[0].path, "WANDB_LAUNCH_START_TIMEOUT");
    let e = resolve(Some(q), &env(&[("LIFTOFF_ENTITY", "bad entity")]), &no_flags()).unwrap_err();
    assert_eq!(e[0].path, "LIFTOFF_ENTITY");
}

#[test]
fn flags() {
    let file = "queues: [a]\nqueue: b\nverbosity: 1\nbase_url: http://localhost:7434\n";
    let flags = Overrides {
        queues: vec!["x".into(), "y".into(), "x".into()],
        verbosity: Some(2),
        base_url: Some("https://lift.example".into()),
        ..Overrides::default()
    };
    let c = resolve(Some(file), &BTreeMap::new(), &flags).unwrap().config;
    assert_eq!(c.queues, ["x", "y"], "-q replaces the file's queue and queues");
    assert_eq!(c.verbosity, 2);
    assert_eq!(c.base_url.as_deref(), Some("https://lift.example"));
    // -v 0 leaves the file's verbosity
    let flags = Overrides { verbosity: Some(0), ..Overrides::default() };
    assert_eq!(resolve(Some(file), &BTreeMap::new(), &flags).unwrap().config.verbosity, 1);
    // bad flags are named by the flag
    let flags = Overrides {
        max_jobs: Some(-5),
        base_url: Some("ftp://x".into()),
        queues: vec!["bad queue".into()],
        entity: Some("-x".into()),
        ..Overrides::default()
    };
    let e = resolve(Some(file), &BTreeMap::new(), &flags).unwrap_err();
    let paths: Vec<&str> = e.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["--entity", "--max-jobs", "--queue", "--base-url"], "{}", render(&e));
    assert!(e.iter().all(|i| i.line.is_none()));
}

#[test]
fn no_file_resolves_from_flags_alone() {
    let flags = Overrides { queues: vec!["q".into()], ..Overrides::default() };
    let c = resolve(None, &BTreeMap::new(), &flags).unwrap().config;
    assert_eq!(c.queues, ["q"]);
    assert_eq!(c.max_jobs, Some(1));
}

#[test]
fn resolve_refuses_no_queues_but_check_warns() {
    let e = resolve(Some("entity: acme\n"), &BTreeMap::new(), &no_flags()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "queues");
    assert_eq!(e[0].message, NO_QUEUES);
    let e = resolve(None, &BTreeMap::new(), &no_flags()).unwrap_err();
    assert_eq!(e[0].message, NO_QUEUES);
    let r = check("entity: acme\n");
    assert!(r.warnings.iter().any(|w| w.path == "queues"));
}

// ---- §8 item 3 ----

#[test]
fn registry_type_typo_is_refused_with_suggestion() {
    let e = one_error("registry:\n  type: ecrr\n", "registry.type", "did you mean 'ecr'");
    assert_eq!(e.value.as_deref(), Some("ecrr"));
    assert_eq!((e.line, e.column), (Some(2), Some(9)));
}

#[test]
fn docker_builder_with_ecr_registry_is_ok() {
    let r = check(
        "queues: [q]\nbuilder: {type: docker}\nenvironment: {type: aws, region: us-east-1}\nregistry:\n  type: ecr\n  uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/my-repo\n",
    );
    let reg = r.config.registry.unwrap();
    assert_eq!(reg.registry_type, Some(RegistryType::Ecr));
    assert!(r.warnings.iter().any(|w| w.path == "registry" && w.message.contains("deprecated")), "{:?}", r.warnings);
    // the repository form too
    let c = cfg(
        "builder: {type: docker}\nenvironment: {type: aws, region: us-east-1}\nregistry: {type: ecr, repository: my-repo}\n",
    );
    assert_eq!(c.registry.unwrap().repository.as_deref(), Some("my-repo"));
}

// ---- §8 item 4: destination URIs ----

#[test]
fn destination_uri_table() {
    let ok = |uri: &str| ImageDestination::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
    assert_eq!(
        ok("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo.with-dash/slash"),
        ImageDestination::Ecr {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            repository: "repo.with-dash/slash".into()
        }
    );
    assert_eq!(
        ok("https://x.azurecr.io/repo"),
        ImageDestination::Acr { registry: "x".into(), repository: "repo".into() }
    );
    assert_eq!(
        ok("us-central1-docker.pkg.dev/my-project/my-repo/my-image"),
        ImageDestination::Gar {
            region: "us-central1".into(),
            project: "my-project".into(),
            repository: "my-repo".into(),
            image: "my-image".into()
        }
    );
    assert_eq!(
        ok("registry.example.com/team/app"),
        ImageDestination::Oci { host: "registry.example.com".into(), repository: "team/app".into() }
    );
    assert_eq!(ok("host:5000/repo"), ImageDestination::Oci { host: "host:5000".into(), repository: "repo".into() });
    assert_eq!(
        ok("localhost:5000/a/b"),
        ImageDestination::Oci { host: "localhost:5000".into(), repository: "a/b".into() }
    );
    assert_eq!(
        ok("library/ubuntu"),
        ImageDestination::Oci { host: "docker.io".into(), repository: "library/ubuntu".into() }
    );

    let bad = |uri: &str, needle: &str| {
        let e = ImageDestination::parse(uri).expect_err(uri);
        assert!(e.contains(needle), "{uri}: '{e}' lacks '{needle}'");
    };
    bad("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:latest", "no tag");
    bad("x.azurecr.io/repo:v1", "no tag");
    bad("us-central1-docker.pkg.dev/p/r/image:tag", "no tag");
    bad("registry.example.com/app:1.0", "no tag");
    bad("host:5000/repo:tag", "no tag");
    bad("app:latest", "no tag");
    bad("us-central1-docker.pkg.dev/my-project/my-repo", "needs an image name");
    bad("123456789012.dkr.ecr.us-east-1.amazonaws.com", "no repository");
    bad("123456789012.dkr.ecr.us-east-1.amazonaws.com/", "no repository");
    bad("x.azurecr.io", "no repository");
    bad("localhost:5000", "no repository");
    bad("registry.example.com:5000", "no repository");
    bad(&format!("registry.example.com/app@sha256:{}", "a".repeat(64)), "no digest");
    bad("registry.example.com/App", "lower-case");
    bad("registry.example.com//app", "empty path component");
    bad("http://registry.example.com/app", "https");
    bad("registry.example.com/my app", "spaces");
    bad(
        "123456789012.ecr.us-east-1.amazonaws.com/repo",
        "did you mean '123456789012.dkr.ecr.us-east-1.amazonaws.com/repo'",
    );
}

#[test]
fn destination_in_file() {
    let c = cfg("builder: {type: docker, destination: 'https://x.azurecr.io/repo'}\n");
    assert_eq!(c.builder.unwrap().destination.unwrap().uri(), "x.azurecr.io/repo");
    // an unknown host is accepted with a warning
    let r = check("queues: [q]\nbuilder: {type: docker, destination: registry.example.com/app}\n");
    assert!(r.warnings.iter().any(|w| w.path == "builder.destination"), "{:?}", r.warnings);
    let e = one_error(
        "builder:\n  type: docker\n  destination: registry.example.com:5000/app:v2\n",
        "builder.destination",
        "no tag",
    );
    assert_eq!((e.line, e.column, e.value.as_deref()), (Some(3), Some(16), Some("registry.example.com:5000/app:v2")));
    one_error(
        "builder: {type: docker, destination: us-east1-docker.pkg.dev/p/r}\n",
        "builder.destination",
        "image name",
    );
}

// ---- region and project matching ----

#[test]
fn ecr_region_must_match_environment() {
    let e = one_error(
        "environment: {type: aws, region: eu-west-1}\nbuilder:\n  type: docker\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n",
        "builder.destination",
        "region 'us-east-1' differs from environment.region 'eu-west-1'",
    );
    assert_eq!(e.line, Some(4));
    one_error(
        "environment: {type: aws, region: eu-west-1}\nregistry: {type: ecr, uri: 1.dkr.ecr.us-east-1.amazonaws.com/r}\n",
        "registry.uri",
        "differs from environment.region",
    );
    cfg(
        "environment: {type: aws, region: us-east-1}\nbuilder: {type: docker, destination: 1.dkr.ecr.us-east-1.amazonaws.com/r}\n",
    );
}

#[test]
fn artifact_registry_region_and_project_must_match() {
    let env = "environment: {type: gcp, region: us-central1, project: my-project}\n";
    cfg(&format!("{env}builder: {{type: docker, destination: us-central1-docker.pkg.dev/my-project/r/i}}\n"));
    let e = errors(&format!(
        "{env}builder: {{type: docker, destination: europe-west1-docker.pkg.dev/other-project/r/i}}\n"
    ));
    assert_eq!(e.len(), 2, "{}", render(&e));
    assert!(e[0].message.contains("region") && e[1].message.contains("project"), "{}", render(&e));
    one_error(
        &format!("{env}registry: {{type: gcr, uri: us-central1-docker.pkg.dev/other-project/r/i}}\n"),
        "registry.uri",
        "project 'other-project' differs",
    );
    cfg(&format!("{env}registry: {{type: gcr, repository: my-artifact-repo, image-name: my-image}}\n"));
}

#[test]
fn destination_cloud_must_match_environment() {
    one_error(
        "environment: {type: gcp, region: us-central1, project: my-project}\nbuilder: {type: docker, destination: 1.dkr.ecr.us-east-1.amazonaws.com/r}\n",
        "builder.destination",
        "an ecr registry needs an aws environment, not gcp",
    );
    one_error(
        "environment: {type: aws, region: us-east-1}\nbuilder: {type: docker, destination: x.azurecr.io/r}\n",
        "builder.destination",
        "azure environment",
    );
    cfg("environment: {type: azure}\nbuilder: {type: docker, destination: x.azurecr.io/r}\n");
    cfg("environment: {type: local}\nbuilder: {type: docker, destination: x.azurecr.io/r}\n");
}

// ---- builder rules ----

#[test]
fn builder_rules() {
    one_error("builder: {destination: x.azurecr.io/r}\n", "builder.type", "needs a type");
    one_error("builder: {}\n", "builder.type", "needs a type");
    one_error("builder: {type: podman}\n", "builder.type", "must be one of docker, kaniko, noop");
    one_error("builder: {type: docker, platform: linux/386}\n", "builder.platform", "linux/amd64, linux/arm64");
    one_error("builder: docker\n", "builder", "expected a mapping");
    // kaniko needs a store, of a known kind, matching the environment, and a destination
    let k = "environment: {type: aws, region: us-east-1}\nbuilder:\n  type: kaniko\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n";
    one_error(k, "builder.build-context-store", "needs build-context-store");
    cfg(&format!("{k}  build-context-store: s3://bucket/prefix\n"));
    one_error(&format!("{k}  build-context-store: s3a://bucket/x\n"), "builder.build-context-store", "must be s3://");
    one_error(&format!("{k}  build-context-store: ftp://bucket/x\n"), "builder.build-context-store", "must be s3://");
    one_error(
        &format!("{k}  build-context-store: gs://bucket/x\n"),
        "builder.build-context-store",
        "gcp credentials but environment.type is aws",
    );
    one_error(
        "builder: {type: kaniko, build-context-store: s3://bucket, destination: 1.dkr.ecr.us-east-1.amazonaws.com/r}\n",
        "builder.build-context-store",
        "add environment.type: aws",
    );
    one_error(
        "environment: {type: aws, region: us-east-1}\nbuilder: {type: kaniko, build-context-store: s3://bucket}\n",
        "builder.destination",
        "pushes what it builds",
    );
    let az = "environment: {type: azure}\nbuilder:\n  type: kaniko\n  destination: x.azurecr.io/r\n";
    let c = cfg(&format!("{az}  build-context-store: https://account1.blob.core.windows.net/container1/ctx\n"));
    assert_eq!(
        c.builder.unwrap().build_context_store,
        Some(BuildContextStore::AzureBlob {
            account: "account1".into(),
            container: "container1".into(),
            prefix: "ctx".into()
        })
    );
    one_error(
        &format!("{az}  build-context-store: https://account1.example.com/c\n"),
        "builder.build-context-store",
        "must be",
    );
    cfg(
        "environment: {type: gcp, region: us-central1, project: my-project}\nbuilder: {type: kaniko, build-context-store: 'gs://bucket/x', destination: us-central1-docker.pkg.dev/my-project/r/i}\n",
    );
}

/// The rest of a kaniko setup, after a `kaniko-config` block.
const KANIKO_REST: &str = "  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n  build-context-store: s3://bucket/ctx\nenvironment: {type: aws, region: us-east-1}\n";

/// A complete kaniko setup on AWS, to which one line is added under `builder`.
const KANIKO: &str = "environment: {type: aws, region: us-east-1}\nbuilder:\n  type: kaniko\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r\n  build-context-store: s3://bucket/ctx\n";

#[test]
fn an_invalid_destination_is_one_error() {
    // not also "kaniko needs a destination"
    one_error(
        "environment: {type: aws, region: us-east-1}\nbuilder:\n  type: kaniko\n  build-context-store: s3://bucket/ctx\n  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r:tag\n",
        "builder.destination",
        "no tag",
    );
    // an ignored registry gets no unknown-host warning, but is still checked
    let r = check("queues: [q]\nbuilder: {type: docker, destination: x.azurecr.io/r}\nregistry: {url: test}\n");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].message.contains("replaces the registry"));
    one_error(
        "builder: {type: docker, destination: x.azurecr.io/r}\nregistry: {url: 'test:v1'}\n",
        "registry.url",
        "no tag",
    );
}

#[test]
fn secret_name_and_key_go_together() {
    one_error(&format!("{KANIKO}  secret-name: creds\n"), "builder.secret-key", "go together");
    one_error(&format!("{KANIKO}  secret-key: creds\n"), "builder.secret-name", "go together");
    one_error(
        &format!("{KANIKO}  secret-name: Creds\n  secret-key: k\n"),
        "builder.secret-name",
        "kubernetes secret name",
    );
    one_error(
        &format!("{KANIKO}  secret-name: creds\n  secret-key: 'a/b'\n"),
        "builder.secret-key",
        "kubernetes secret key",
    );
}

#[test]
fn build_job_name_is_a_kubernetes_name() {
    let c = cfg(&format!("{KANIKO}  build-job-name: liftoff-launch-container-build\n"));
    assert_eq!(c.builder.unwrap().build_job_name, "liftoff-launch-container-build");
    one_error(&format!("{KANIKO}  build-job-name: My_Builds\n"), "builder.build-job-name", "kubernetes name");
    one_error(&format!("{KANIKO}  build-job-name: {}\n", "a".repeat(64)), "builder.build-job-name", "63");
}

#[test]
fn kaniko_job_placement_deadline_and_cache() {
    let b = cfg(&format!(
        "{KANIKO}  namespace: builds\n  service-account: kaniko-builder\n  build-deadline: 600\n  cache: false\n  cache-repo: 1.dkr.ecr.us-east-1.amazonaws.com/r-cache\n"
    ))
    .builder
    .unwrap();
    assert_eq!(b.namespace.as_deref(), Some("builds"));
    assert_eq!(b.service_account.as_deref(), Some("kaniko-builder"));
    assert_eq!((b.build_deadline, b.cache), (600, false));
    assert_eq!(b.cache_repo.as_deref(), Some("1.dkr.ecr.us-east-1.amazonaws.com/r-cache"));
    one_error(&format!("{KANIKO}  namespace: Builds\n"), "builder.namespace", "kubernetes name");
    one_error(&format!("{KANIKO}  service-account: 'a b'\n"), "builder.service-account", "kubernetes");
    one_error(&format!("{KANIKO}  build-deadline: 10\n"), "builder.build-deadline", "60");
    one_error(&format!("{KANIKO}  build-deadline: 100000\n"), "builder.build-deadline", "86400");
    one_error(&format!("{KANIKO}  cache: maybe\n"), "builder.cache", "expected a boolean");
    one_error(&format!("{KANIKO}  cache-repo: 'reg.io/r:v1'\n"), "builder.cache-repo", "without a tag");
    one_error(&format!("{KANIKO}  build-job-name: {}\n", "a".repeat(31)), "builder.build-job-name", "at most 30");
}

#[test]
fn kaniko_keys_on_other_builders_warn() {
    let r = check("queues: [q]\nbuilder: {type: docker, build-context-store: 's3://bucket/x'}\n");
    assert!(
        r.warnings.iter().any(|w| w.path == "builder.build-context-store" && w.message.contains("only by kaniko")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.config.builder.unwrap().build_context_store, None, "ignored keys are not kept");
    // but their values are still checked
    one_error("builder: {type: docker, kaniko-config: [a]}\n", "builder.kaniko-config", "expected a mapping");
    one_error(
        "builder: {type: noop, build-context-store: 'ftp://x'}\n",
        "builder.build-context-store",
        "must be s3://",
    );
}

#[test]
fn kaniko_config_gets_the_runners_safety_checks() {
    one_error(
        &format!("{KANIKO}  kaniko-config: {{spec: {{template: {{spec: {{hostNetwork: true}}}}}}}}\n"),
        "builder.kaniko-config",
        "hostNetwork",
    );
    one_error(
        &format!(
            "{KANIKO}  kaniko-config: {{spec: {{template: {{spec: {{containers: [{{securityContext: {{privileged: true}}}}]}}}}}}}}\n"
        ),
        "builder.kaniko-config",
        "securityContext",
    );
}

#[test]
fn kaniko_config_must_be_a_mapping() {
    one_error(&format!("{KANIKO}  kaniko-config: [a]\n"), "builder.kaniko-config", "expected a mapping");
    one_error(&format!("{KANIKO}  kaniko-config: 'spec: {{}}'\n"), "builder.kaniko-config", "expected a mapping");
    one_error(&format!("{KANIKO}  kaniko-config: 7\n"), "builder.kaniko-config", "expected a mapping");
}

#[test]
fn accelerator_base_image() {
    for good in [
        "ubuntu:22.04",
        "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        "registry.example.com:5000/team/image:tag",
        &format!("ubuntu@sha256:{}", "0123456789abcdef".repeat(4)),
    ] {
        let c = cfg(&format!("builder:\n  type: docker\n  accelerator:\n    base_image: '{good}'\n"));
        assert_eq!(c.builder.unwrap().accelerator_base_image.as_deref(), Some(good));
        ImageRef::parse(good).unwrap();
    }
    for bad in ["ubuntu\\n:22.04", "ubuntu#x", "ubuntu as base", "ubuntu@sha256:abc", "Ubuntu:22.04"] {
        let e = errors(&format!("builder:\n  type: docker\n  accelerator:\n    base_image: \"{bad}\"\n"));
        assert_eq!(e[0].path, "builder.accelerator.base_image", "{bad}: {}", render(&e));
    }
    let c = cfg("builder:\n  type: docker\n  cuda:\n    base_image: nvidia/cuda:11.8.0-runtime-ubuntu22.04\n");
    assert!(c.builder.unwrap().accelerator_base_image.is_some(), "the legacy cuda key still works");
    one_error(
        "builder: {type: docker, accelerator: {base_image: a}, cuda: {base_image: b}}\n",
        "builder.cuda",
        "give one of them",
    );
    one_error("builder: {type: docker, accelerator: {}}\n", "builder.accelerator.base_image", "needs base_image");
    let e = errors("builder: {type: docker, accelerator: {base_imag: x}}\n");
    assert!(
        e.iter().any(|i| i.path == "builder.accelerator.base_imag" && i.message.contains("did you mean 'base_image'")),
        "{}",
        render(&e)
    );
}

// ---- environment and registry ----

#[test]
fn environment_rules() {
    one_error("environment: {type: aws}\n", "environment.region", "needs region");
    // as in the reference's code: region and project are resolved at run time when left out
    assert_eq!(
        cfg("environment: {type: gcp}\n").environment,
        Some(EnvironmentConfig::Gcp { region: None, project: None })
    );
    assert_eq!(
        cfg("environment: {type: gcp, region: us-central1}\n").environment,
        Some(EnvironmentConfig::Gcp { region: Some("us-central1".into()), project: None })
    );
    // a destination is still checked against what is given
    one_error(
        "environment: {type: gcp, project: my-project}\nbuilder: {type: docker, destination: us-central1-docker.pkg.dev/other-project/r/i}\n",
        "builder.destination",
        "differs from environment.project",
    );
    one_error("environment: {region: us-east-1}\n", "environment.type", "needs a type");
    one_error("environment: {type: awz, region: x}\n", "environment.type", "did you mean 'aws'");
    one_error(
        "environment: {type: aws, region: us-east-1, projet: x}\n",
        "environment.projet",
        "did you mean 'project'",
    );
    one_error(
        "environment: {type: gcp, region: r1, project: my-project, profile: p}\n",
        "environment.profile",
        "only by aws",
    );
    one_error("environment: {type: local, region: us-east-1}\n", "environment.region", "not used by type 'local'");
    one_error("environment: {type: aws, region: US East}\n", "environment.region", "region name");
    // quirk fixes: local is a type; azure needs no region
    assert_eq!(cfg("environment: {type: local}\n").environment, Some(EnvironmentConfig::Local));
    assert_eq!(cfg("environment: {type: azure}\n").environment, Some(EnvironmentConfig::Azure { region: None }));
    assert_eq!(
        cfg("environment: {type: aws, region: us-east-1, profile: prod}\n").environment,
        Some(EnvironmentConfig::Aws { region: "us-east-1".into(), profile: Some("prod".into()) })
    );
}

#[test]
fn registry_rules() {
    assert_eq!(cfg("registry: {type: local}\n").registry.unwrap().registry_type, Some(RegistryType::Local));
    one_error("registry: {type: local, uri: x.azurecr.io/r}\n", "registry.uri", "not used by type 'local'");
    one_error("registry: {type: acr}\n", "registry.uri", "needs uri");
    one_error("registry: {type: acr, uri: registry.example.com/r}\n", "registry.uri", "azurecr.io");
    one_error("registry: {type: ecr, uri: x.azurecr.io/r}\n", "registry.uri", "dkr.ecr");
    one_error("registry: {type: ecr}\n", "registry.uri", "needs uri");
    one_error(
        "environment: {type: aws, region: us-east-1}\nregistry: {type: ecr, uri: 1.dkr.ecr.us-east-1.amazonaws.com/r, repository: r}\n",
        "registry.repository",
        "not both",
    );
    one_error("registry: {type: ecr, repository: r}\n", "registry.type", "needs environment.type: aws");
    one_error(
        "registry: {type: gcr, uri: us-central1-docker.pkg.dev/my-project/r/i}\n",
        "registry.type",
        "needs environment.type: gcp",
    );
    let gcp = "environment: {type: gcp, region: us-central1, project: my-project}\n";
    one_error(
        &format!("{gcp}registry: {{type: gcr, repository: r}}\n"),
        "registry.image-name",
        "repository and image-name",
    );
    one_error(&format!("{gcp}registry: {{type: gcr, uri: gcr.io/my-project/i}}\n"), "registry.uri", "docker.pkg.dev");
    // url is a synonym of uri; both is an error
    let c = cfg("registry: {type: acr, url: 'https://my-registry.azurecr.io/my-repository'}\n");
    assert_eq!(
        c.registry.unwrap().uri,
        Some(ImageDestination::Acr { registry: "my-registry".into(), repository: "my-repository".into() })
    );
    one_error("registry: {uri: a.azurecr.io/r, url: a.azurecr.io/r}\n", "registry.url", "legacy name of uri");
    // without a type: not refused; a bare uri is kept, anything else ignored with a warning
    for (file, path) in [
        ("registry: {repository: r}\n", "registry"),
        ("registry: {image-name: i}\n", "registry"),
        ("registry: {uri: registry.example.com/r, repository: r}\n", "registry.repository"),
    ] {
        let r = check(file);
        assert!(
            r.warnings.iter().any(|w| w.path == path && w.message.starts_with("ignored:")),
            "{file}: {:?}",
            r.warnings
        );
    }
    let r = check("registry: {uri: registry.example.com/r, repository: r}\n");
    assert_eq!(r.config.registry.unwrap().uri.map(|u| u.uri()).as_deref(), Some("registry.example.com/r"));
    one_error("registry: {uri: x.azurecr.io/r:tag}\n", "registry.uri", "no tag");
}

#[test]
fn setup_document_examples_are_valid() {
    // the three tabs of the setup document, with its placeholders filled in
    cfg(
        "environment:\n  type: aws\n  region: us-east-1\nregistry:\n  type: ecr\n  uri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/my-repository\n",
    );
    cfg("environment:\n  type: aws\n  region: us-east-1\nregistry:\n  type: ecr\n  repository: my-repository-name\n");
    cfg(
        "environment:\n  type: gcp\n  region: us-central1\n  project: my-gcp-project\nregistry:\n  type: gcr\n  uri: us-central1-docker.pkg.dev/my-gcp-project/my-repo/my-image\n",
    );
    cfg(
        "environment:\n  type: gcp\n  region: us-central1\n  project: my-gcp-project\nregistry:\n  type: gcr\n  repository: my-artifact-repo\n  image-name: my-image-name\n",
    );
    cfg("environment:\n  type: azure\nregistry:\n  type: acr\n  uri: https://my-registry.azurecr.io/my-repository\n");
    cfg("builder:\n  type: docker\n");
    cfg(
        "environment: {type: aws, region: us-east-1}\nbuilder:\n  type: kaniko\n  build-context-store: s3://my-bucket/build-contexts/\n  build-job-name: wandb-image-build\n  destination: 123456789012.dkr.ecr.us-east-1.amazonaws.com/r\n  secret-name: my-secret\n  secret-key: credentials\n",
    );
    // its ECR example without `.dkr.` gets a pointed message
    one_error(
        "environment: {type: aws, region: us-east-1}\nregistry:\n  type: ecr\n  uri: 123456789012.ecr.us-east-1.amazonaws.com/my-repository\n",
        "registry.uri",
        "did you mean '123456789012.dkr.ecr.us-east-1.amazonaws.com/my-repository'",
    );
}

// ---- strictness: unknown keys, all errors at once, positions ----

#[test]
fn did_you_mean() {
    for (file, path, suggestion) in [
        ("queuez: [a]\n", "queuez", "queues"),
        ("max_job: 2\n", "max_job", "max_jobs"),
        ("buidler: {type: docker}\n", "buidler", "builder"),
        ("builder: {type: kaniko, build-context-stor: s3://b}\n", "builder.build-context-stor", "build-context-store"),
        ("stopped-run-timeout: 5\n", "stopped-run-timeout", "stopped_run_timeout"),
        ("builder: {type: docker, build_job_name: x}\n", "builder.build_job_name", "build-job-name"),
        ("registry: {type: ecr, imagename: x}\n", "registry.imagename", "image-name"),
    ] {
        let e = errors(file);
        let hit = e.iter().find(|i| i.path == path).unwrap_or_else(|| panic!("no error at {path}:\n{}", render(&e)));
        assert!(hit.message.contains(&format!("did you mean '{suggestion}'")), "{hit}");
    }
    let e = one_error("zzzzzz: 1\n", "zzzzzz", "unknown key; known keys: entity, project, queues");
    assert_eq!((e.line, e.column), (Some(1), Some(1)));
}

#[test]
fn all_errors_at_once() {
    let e = errors(
        "entity: acme\nmax_jobs: -29\nqueuez: [a]\nsecure_mode: maybe\nbuilder:\n  type: docker\n  destination: r.example.com/app:v1\n  platform: windows\nenvironment:\n  type: aws\n",
    );
    let paths: Vec<&str> = e.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        ["max_jobs", "queuez", "secure_mode", "builder.destination", "builder.platform", "environment.region"],
        "{}",
        render(&e)
    );
    let lines: Vec<Option<usize>> = e.iter().map(|i| i.line).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4), Some(7), Some(8), Some(10)]);
    assert_eq!(e[5].message, "an aws environment needs region");
}

#[test]
fn display_names_path_position_and_value() {
    let e = one_error("max_jobs: weird\n", "max_jobs", "expected an integer");
    assert_eq!(e.to_string(), "max_jobs (line 1, column 11): expected an integer (value: weird)");
}

#[test]
fn duplicate_keys_at_any_depth() {
    let e = one_error(
        "builder:\n  type: docker\n  type: kaniko\n",
        "builder.type",
        "duplicate key (first given on line 2)",
    );
    assert_eq!((e.line, e.column), (Some(3), Some(3)));
    one_error("entity: a\nqueues: [q]\nentity: b\n", "entity", "duplicate key");
    one_error(
        &format!("{KANIKO}  kaniko-config:\n    spec:\n      a: 1\n      a: 2\n"),
        "builder.kaniko-config.spec.a",
        "duplicate key",
    )
    .line
    .filter(|l| *l == 9)
    .expect("line 9");
}

#[test]
fn yaml_1_2_scalars() {
    let c = cfg("queues: [no, on, off, yes, y]\nqueue: No\n");
    assert_eq!(c.queues, ["no", "on", "off", "yes", "y", "No"]);
    let c = cfg("queue: no\n");
    assert_eq!(c.queues, ["no"]);
    // but booleans take the YAML 1.1 words, any case
    for (v, want) in [
        ("yes", true),
        ("Yes", true),
        ("ON", true),
        ("true", true),
        ("'true'", true),
        ("no", false),
        ("Off", false),
        ("FALSE", false),
    ] {
        assert_eq!(cfg(&format!("secure_mode: {v}\nallow_http_git: {v}\n")).secure_mode, want, "{v}");
        assert_eq!(cfg(&format!("allow_http_git: {v}\n")).allow_http_git, want, "{v}");
    }
    one_error("secure_mode: 1\n", "secure_mode", "expected a boolean");
    one_error("allow_http_git: enable\n", "allow_http_git", "expected a boolean");
}

#[test]
fn queue_and_queues_merge() {
    assert_eq!(cfg("queue: a\n").queues, ["a"]);
    assert_eq!(cfg("queues: [a, b]\nqueue: c\n").queues, ["a", "b", "c"]);
    assert_eq!(cfg("queues: [a, b, a]\nqueue: b\n").queues, ["a", "b"]);
    one_error("queues: a\n", "queues", "expected a list");
    one_error("queues: [a, 'b c']\n", "queues[1]", "1-64 letters");
    one_error("queue: [a]\n", "queue", "expected a string");
    one_error("queues: [a, '']\n", "queues[1]", "must not be empty");
}

#[test]
fn numbers_and_liftoff_keys() {
    assert_eq!(cfg("verbosity: 7\n").verbosity, 7);
    one_error("verbosity: -1\n", "verbosity", "at least 0");
    one_error("verbosity: 256\n", "verbosity", "at most 255");
    one_error("stopped_run_timeout: -1\n", "stopped_run_timeout", "at least 0");
    one_error("start_timeout: 0\n", "start_timeout", "at least 1");
    assert_eq!(cfg("start_timeout: '120'\n").start_timeout, Duration::from_secs(120));
    assert_eq!(cfg("base_url: http://127.0.0.1:7434\n").base_url.as_deref(), Some("http://127.0.0.1:7434"));
    one_error("base_url: ftp://x\n", "base_url", "http:// or https://");
    one_error("base_url: 'https://'\n", "base_url", "no host");
    let e = one_error("base_url: https://user:hunter2@x.example\n", "base_url", "credentials");
    assert_eq!(e.value.as_deref(), Some("<redacted>"));
    one_error("entity: 'bad entity'\n", "entity", "1-64 letters");
    one_error("project: .hidden\n", "project", "1-64 letters");
}

#[test]
fn secrets_are_redacted() {
    let e = one_error("api_token: s3cr3t-value\n", "api_token", "unknown key");
    assert_eq!(e.value.as_deref(), Some("<redacted>"));
    assert!(!e.to_string().contains("s3cr3t"));
    let e = one_error("builder: {type: docker, password: hunter2}\n", "builder.password", "unknown key");
    assert_eq!(e.value.as_deref(), Some("<redacted>"));
    // secret-name is a name, not a secret
    let e =
        one_error(&format!("{KANIKO}  secret-name: Bad_Name\n  secret-key: k\n"), "builder.secret-name", "secret name");
    assert_eq!(e.value.as_deref(), Some("Bad_Name"));
}

// ---- bounded input ----

#[test]
fn files_over_one_mib_are_refused() {
    let mut big = String::from("queues: [a]\n");
    while big.len() <= MAX_FILE_BYTES {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let e = errors(&big);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("at most 1048576 bytes"), "{}", e[0]);
    // just under the limit is read
    let mut fits = String::from("queues: [a]\n");
    while fits.len() + 70 < MAX_FILE_BYTES {
        fits.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    cfg(&fits);
}

#[test]
fn deep_nesting_and_aliases_are_refused_quickly() {
    let deep = format!("builder:\n  type: docker\n  kaniko-config: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let e = errors(&deep);
    assert!(e[0].message.contains("at most 64 levels of nesting"), "{}", render(&e));
    let deep_block: String = (0..500).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
    let e = errors(&format!(
        "builder:\n  type: docker\n  kaniko-config:\n{}",
        deep_block.lines().map(|l| format!("    {l}\n")).collect::<String>()
    ));
    assert!(e[0].message.contains("at most 64 levels of nesting"), "{}", render(&e));
    // 60 levels are fine
    let ok_block: String = (0..60).map(|i| format!("    {}k{i}:\n", " ".repeat(i))).collect();
    cfg(&format!("builder:\n  type: kaniko\n  kaniko-config:\n{ok_block}{KANIKO_REST}"));
    // the classic billion-laughs document: refused at the first alias, nothing expanded
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
    let e = errors(bomb);
    assert!(e.iter().any(|i| i.message.contains("aliases")), "{}", render(&e));
    one_error("queues: &q [a]\nqueue: *q\n", "queue", "aliases");
}

#[test]
fn syntax_errors_have_positions() {
    let e = errors("queues: [a, b\nentity: x\n");
    assert_eq!(e.len(), 1, "{}", render(&e));
    assert!(e[0].message.starts_with("invalid yaml"), "{}", e[0]);
    assert!(e[0].line.is_some() && e[0].column.is_some());
    one_error("a: 1\n---\nb: 2\n", "", "one yaml document");
    one_error("- a\n- b\n", "", "expected a mapping");
    one_error("!!binary entity: x\n", "", "tag");
    one_error("? [a, b]\n: c\n", "", "keys must be strings");
}

// ---- the schema agrees with the validator ----

/// Valid files that, between them, use every key the validator accepts.
const EVERY_KEY: &[&str] = &[
    r#"
entity: acme
project: launch
queues: [a]
queue: b
max_jobs: 2
max_schedulers: 1
secure_mode: yes
verbosity: 1
stopped_run_timeout: 30
start_timeout: 60
base_url: https://x.example
allow_http_git: no
environment: {type: aws, region: us-east-1, profile: p}
builder:
  type: kaniko
  destination: 1.dkr.ecr.us-east-1.amazonaws.com/r
  platform: linux/amd64
  build-context-store: s3://bucket/ctx
  build-job-name: builds
  secret-name: creds
  secret-key: credentials
  kaniko-image: gcr.io/kaniko-project/executor:v1.23.0
  namespace: builds
  service-account: image-builder
  build-deadline: 900
  cache: false
  cache-repo: reg.example/cache
  kaniko-config: {metadata: {labels: {a: b}}}
  accelerator: {base_image: ubuntu:22.04}
registry: {type: ecr, uri: 1.dkr.ecr.us-east-1.amazonaws.com/r}
"#,
    "builder: {type: docker, cuda: {base_image: ubuntu:22.04}}\n",
    "environment: {type: gcp, region: us-central1, project: my-project}\nregistry: {type: gcr, repository: r, image-name: i}\n",
    "environment: {type: azure, region: eastus}\nregistry: {type: acr, url: x.azurecr.io/r}\n",
];

/// `path.key` for every key of every mapping in a JSON value, down to `depth` levels.
fn key_paths(v: &serde_json::Value, prefix: &str, depth: usize, out: &mut std::collections::BTreeSet<String>) {
    if let (Some(o), true) = (v.as_object(), depth > 0) {
        for (k, v) in o {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            key_paths(v, &p, depth - 1, out);
            out.insert(p);
        }
    }
}

#[test]
fn the_schema_lists_exactly_the_keys_the_validator_accepts() {
    let schema = json_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    // keys in the schema, as paths
    let mut in_schema = std::collections::BTreeSet::new();
    for (k, prop) in schema["properties"].as_object().unwrap() {
        in_schema.insert(k.clone());
        if let Some(block) = prop["anyOf"][0]["properties"].as_object() {
            for (bk, bprop) in block {
                in_schema.insert(format!("{k}.{bk}"));
                for nested in bprop["anyOf"][0]["properties"].as_object().into_iter().flatten() {
                    in_schema.insert(format!("{k}.{bk}.{}", nested.0));
                }
            }
        }
    }
    // keys used by the valid files (as YAML read into JSON), which the validator accepted
    let mut accepted = std::collections::BTreeSet::new();
    for file in EVERY_KEY {
        check(file);
        key_paths(&yaml_as_json(file), "", 3, &mut accepted);
    }
    accepted.retain(|p| !p.starts_with("builder.kaniko-config."));
    assert_eq!(in_schema, accepted, "schema keys vs keys of the valid files");
    // and each of those keys, with its first two letters swapped, is refused with a suggestion of itself
    for path in &in_schema {
        let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
        let mut chars: Vec<char> = key.chars().collect();
        chars.swap(0, 1);
        let typo: String = chars.into_iter().collect();
        let file = match parent {
            "" => format!("{typo}: 1\n"),
            "builder" => format!("builder: {{type: docker, {typo}: 1}}\n"),
            "builder.accelerator" | "builder.cuda" => {
                format!("builder: {{type: docker, {}: {{{typo}: 1}}}}\n", &parent[8..])
            }
            "environment" => format!("environment: {{type: azure, {typo}: 1}}\n"),
            "registry" => format!("registry: {{{typo}: 1}}\n"),
            other => panic!("unexpected parent {other}"),
        };
        let e = errors(&file);
        let want = format!("{}{typo}", if parent.is_empty() { String::new() } else { format!("{parent}.") });
        assert!(
            e.iter().any(|i| i.path == want && i.message.contains(&format!("did you mean '{key}'"))),
            "{file}: {}",
            render(&e)
        );
    }
}

/// A YAML file as JSON, read by another parser so that the key listing above
/// does not trust the code under test.
fn yaml_as_json(file: &str) -> serde_json::Value {
    serde_saphyr::from_str::<serde_json::Value>(file).unwrap()
}

#[test]
fn schema_refuses_what_the_validator_refuses() {
    let schema = json_schema();
    for block in ["builder", "environment", "registry"] {
        assert_eq!(schema["properties"][block]["anyOf"][0]["additionalProperties"], false);
    }
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["builder"]["anyOf"][0]["required"], serde_json::json!(["type"]));
    assert_eq!(schema["properties"]["max_jobs"]["default"], 1);
    assert_eq!(schema["properties"]["max_jobs"]["anyOf"][0]["minimum"], -1);
    let env_rules = schema["properties"]["environment"]["anyOf"][0]["allOf"].to_string();
    assert!(env_rules.contains("\"aws\"") && env_rules.contains("\"region\""), "{env_rules}");
}

#[test]
fn config_serializes_for_the_cli() {
    let c = cfg("queues: [a]\nbuilder: {type: docker, destination: x.azurecr.io/r}\nenvironment: {type: azure}\n");
    let j = serde_json::to_value(&c).unwrap();
    assert_eq!(j["builder"]["destination"], "x.azurecr.io/r");
    assert_eq!(j["builder"]["type"], "docker");
    assert_eq!(j["environment"]["type"], "azure");
    assert_eq!(j["stopped_run_timeout"], 60);
}

proptest::proptest! {
    /// Any text gets an answer, never a panic.
    #[test]
    fn arbitrary_text_never_panics(s in "[a-z_:\\-\\[\\]{}, \\n'\"#&*!|>0-9.@/~?%]{0,300}") {
        let _ = check_file_text(&s);
    }

    /// Plausible files built from real keys and odd values get an answer, never a panic.
    #[test]
    fn plausible_files_never_panic(
        entries in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "entity", "queues", "queue", "max_jobs", "secure_mode", "base_url", "builder.type",
                    "builder.destination", "builder.build-context-store", "builder.build-job-name",
                    "builder.secret-name", "builder.kaniko-image", "builder.accelerator", "environment.type",
                    "environment.region", "environment.project", "registry.type", "registry.uri", "registry.url",
                    "registry.repository",
                ]),
                proptest::sample::select(vec![
                    "", "~", "x", "-1", "'8'", "[a, b]", "{a: 1}", "kaniko", "aws", "gcp", "ecr", "gcr",
                    "s3://bucket/x", "gs://b", "1.dkr.ecr.us-east-1.amazonaws.com/r", "x.azurecr.io/r:t",
                    "us-central1-docker.pkg.dev/p/r", "host:5000", "https://", "@sha256:", "A//B", "yes",
                ]),
            ),
            0..8,
        )
    ) {
        let mut file = String::new();
        for (key, value) in entries {
            match key.split_once('.') {
                Some((block, k)) => file.push_str(&format!("{block}: {{{k}: {value}}}\n")),
                None => file.push_str(&format!("{key}: {value}\n")),
            }
        }
        let _ = check_file_text(&file);
        let _ = resolve(Some(&file), &BTreeMap::new(), &Overrides::default());
    }
}
