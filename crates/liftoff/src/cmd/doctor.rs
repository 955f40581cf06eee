//! `liftoff doctor -c launch-config.yaml`: pre-flight checks of what the
//! agent will need, each PASS, FAIL (with the fix) or SKIP (not used by this
//! configuration); exit 1 on any FAIL.

mod kubernetes;

use crate::cmd::config::read_bounded;
use crate::output::{Format, FormatArg};
use anyhow::bail;
use clap::Args;
use liftoff_cloud::{CloudEnv, CloudError, ContextStore};
use liftoff_core::launch_config::{self, AgentConfig, BuilderType, ImageDestination};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The launch-config.yaml to check.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// Docker engine of the docker builder [default: DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, value_name = "HOST")]
    docker_host: Option<String>,
    /// A runner the agent serves queues of (`kubernetes`, `sagemaker`, `vertex`): its cluster or
    /// service is asked what the agent may do. Repeatable.
    #[arg(long = "runner", value_name = "TYPE")]
    runners: Vec<liftoff_core::ResourceType>,
    /// The namespace the kubernetes runner's Jobs go to [default: the kubeconfig context's, or the pod's].
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Fail,
    /// Not used by this configuration.
    Skip,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, status: Status::Pass, detail: detail.into(), fix: None }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
}

fn skip(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, status: Status::Skip, detail: detail.into(), fix: None }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let checks = checks(&args).await;
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let report = Report { ok: failed == 0, checks };
    let out = match args.format.format {
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Text => render(&report),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

fn render(r: &Report) -> String {
    let width = r.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in &r.checks {
        let status = match c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        s.push_str(&format!("{status}  {:width$}  {}\n", c.name, c.detail));
        if let Some(f) = &c.fix {
            s.push_str(&format!("      {:width$}  fix: {f}\n", ""));
        }
    }
    s
}

async fn checks(args: &DoctorArgs) -> Vec<Check> {
    let mut out = Vec::new();
    let cfg = match read_bounded(&args.config).and_then(|t| launch_config::check_file_text(&t)) {
        Ok(r) => {
            let mut detail = format!("{} is valid", args.config.display());
            for w in &r.warnings {
                detail.push_str(&format!("; warning: {w}"));
            }
            out.push(pass("config", detail));
            r.config
        }
        Err(issues) => {
            let detail = issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            out.push(fail(
                "config",
                detail,
                format!("correct {} (`liftoff config check` lists every error)", args.config.display()),
            ));
            return out;
        }
    };

    let env = check_credentials(&cfg, &mut out).await;
    let store = check_store(&cfg, env.as_ref(), &mut out).await;
    out.push(check_builder(&cfg, args.docker_host.as_deref()).await);
    out.push(check_registry(&cfg, env.as_ref()).await);
    out.push(check_regions(&cfg, env.as_ref(), store.as_ref()).await);
    for r in &args.runners {
        out.push(match r {
            liftoff_core::ResourceType::Kubernetes => kubernetes::check_runner(args.namespace.as_deref()).await,
            r => check_runner(*r, env.as_ref()).await,
        });
    }
    out
}

/// The runner's service answers the environment's credentials: a read of a
/// job that does not exist ("not found" is a pass: the call was allowed)
/// and of its logs.
async fn check_runner(runner: liftoff_core::ResourceType, env: Option<&CloudEnv>) -> Check {
    use liftoff_core::ResourceType;
    const PROBE: &str = "liftoff-doctor-probe";
    let fix = format!("grant what `liftoff permissions -c <config> --runner {runner}` lists");
    match (runner, env) {
        (ResourceType::Sagemaker, Some(CloudEnv::Aws(aws))) => {
            let api = liftoff_run::sagemaker::SageMakerApi::new(aws.clone());
            match api.sagemaker("DescribeTrainingJob", serde_json::json!({"TrainingJobName": PROBE})).await {
                Ok(_) => {}
                // "Requested resource not found": the call was allowed
                Err(e) if e.code == "ValidationException" => {}
                Err(e) => return fail("sagemaker", format!("DescribeTrainingJob failed: {e}"), fix),
            }
            let streams = serde_json::json!({"logGroupName": liftoff_run::sagemaker::LOG_GROUP, "logStreamNamePrefix": format!("{PROBE}/")});
            match api.logs("DescribeLogStreams", streams).await {
                Ok(_) => {}
                Err(e) if e.code == "ResourceNotFoundException" => {}
                Err(e) => return fail("sagemaker", format!("CloudWatch Logs DescribeLogStreams failed: {e}"), fix),
            }
            pass(
                "sagemaker",
                format!(
                    "SageMaker and CloudWatch Logs answer in {} (DescribeTrainingJob, DescribeLogStreams)",
                    aws.region()
                ),
            )
        }
        (ResourceType::Vertex, Some(CloudEnv::Gcp(gcp))) => {
            let api = liftoff_run::vertex::VertexApi::new(gcp.clone());
            let path = format!("{}/customJobs/0", api.parent());
            match api.vertex(reqwest::Method::GET, &path, None).await {
                Ok(_) => {}
                Err(e) if e.status == "NOT_FOUND" => {}
                Err(e) => return fail("vertex", format!("customJobs.get failed: {e}"), fix),
            }
            let list = serde_json::json!({"resourceNames": [format!("projects/{}", api.project())], "pageSize": 1,
                "filter": format!("resource.type=\"ml_job\" AND resource.labels.job_id=\"{PROBE}\"")});
            if let Err(e) = api.list_entries(&list).await {
                return fail("vertex", format!("Cloud Logging entries:list failed: {e}"), fix);
            }
            pass(
                "vertex",
                format!("Vertex AI and Cloud Logging answer in {} (customJobs.get, entries:list)", api.parent()),
            )
        }
        (ResourceType::Sagemaker, _) => fail(
            "sagemaker",
            "the sagemaker runner needs an aws environment",
            "set environment: {type: aws, region: ...}",
        ),
        (ResourceType::Vertex, _) => {
            fail("vertex", "the vertex runner needs a gcp environment", "set environment: {type: gcp, ...}")
        }
        (other, _) => skip("runner", format!("{other} is not a cloud runner: nothing to call")),
    }
}

/// The registry answers and accepts a push: a tiny blob is uploaded with the
/// credentials the agent will use, then deleted.
async fn check_registry(cfg: &AgentConfig, env: Option<&CloudEnv>) -> Check {
    const NAME: &str = "registry";
    use liftoff_build::registry::{Destination, PushCheck, RegistryError};
    let cloud_env = cfg.environment.as_ref().is_some_and(|e| e.type_name() != "local");
    let local = CloudEnv::Local;
    let env = match env {
        Some(e) => e,
        None if cloud_env => {
            return fail(
                NAME,
                "not checked: the environment's credentials did not resolve",
                "fix the credentials first",
            );
        }
        None => &local,
    };
    let chosen = match liftoff_build::registry::from_config(cfg, env, None).await {
        Ok(c) => c,
        Err(e) => return fail(NAME, e.to_string(), "correct the registry block or builder.destination"),
    };
    let registry = match chosen.destination {
        Destination::LocalEngine => {
            return skip(NAME, "no destination: built images stay in the agent's engine (nothing is pushed)");
        }
        Destination::Registry(r) => r,
    };
    let login = match registry.login().await {
        Ok(l) => l,
        Err(e) => return fail(NAME, e.to_string(), "make the credentials the message names available to the agent"),
    };
    match registry.push_check().await {
        Ok(check) => {
            let blob = match check {
                PushCheck::Deleted => "a test blob was pushed and deleted".to_string(),
                PushCheck::Kept { reason } => format!("a test blob was pushed (and kept: {reason})"),
            };
            let mut detail =
                format!("{} accepts pushes with credentials from {}: {blob}", registry.describe(), login.source);
            for w in &chosen.warnings {
                detail.push_str(&format!("; warning: {w}"));
            }
            pass(NAME, detail)
        }
        Err(e) => {
            let fix = match &e {
                RegistryError::Unauthorized { .. } => format!(
                    "log the agent's user in (`docker login {}`), or grant its identity push rights \
                     (`liftoff permissions -c <this file>`)",
                    registry.repository().split('/').next().unwrap_or_default()
                ),
                _ => "check the registry's address and that the agent's host reaches it".to_string(),
            };
            fail(NAME, e.to_string(), fix)
        }
    }
}

/// The environment, when its credentials resolve.
async fn check_credentials(cfg: &AgentConfig, out: &mut Vec<Check>) -> Option<CloudEnv> {
    let env = match CloudEnv::resolve(cfg.environment.as_ref()).await {
        Ok(e) => e,
        Err(e) => {
            out.push(credentials_failed(&e));
            return None;
        }
    };
    match env.identity().await {
        Ok(None) => out.push(skip("credentials", "environment local (or none): no cloud credentials are used")),
        Ok(Some(id)) => {
            let account = id.account.as_ref().map(|a| format!(" (account {a})")).unwrap_or_default();
            let mut detail = format!("{} credentials of {}{account} from {}", env.type_name(), id.who, id.source);
            // the binary always has liftoff-cloud's gcp feature
            if let CloudEnv::Gcp(g) = &env {
                detail.push_str(&format!(
                    "; project {} (from {}), region {} (from {})",
                    g.project(),
                    g.project_source(),
                    g.region(),
                    g.region_source()
                ));
            }
            out.push(pass("credentials", detail));
        }
        Err(e) => {
            out.push(credentials_failed(&e));
            return None;
        }
    }
    Some(env)
}

fn credentials_failed(e: &CloudError) -> Check {
    let fix = match e {
        CloudError::NoCredentials { cloud, tried, fix } => {
            return fail("credentials", format!("no {cloud} credentials found (tried {tried})"), fix.clone());
        }
        CloudError::NotBuiltIn(f) => format!("use a liftoff built with the '{f}' feature"),
        CloudError::Config(_) => "set what the message names in the environment block".into(),
        _ => "see the message: it names the credential source that failed".into(),
    };
    fail("credentials", e.to_string(), fix)
}

async fn check_store(cfg: &AgentConfig, env: Option<&CloudEnv>, out: &mut Vec<Check>) -> Option<ContextStore> {
    const NAME: &str = "build-context store";
    let Some(uri) = cfg.builder.as_ref().and_then(|b| b.build_context_store.as_ref()) else {
        out.push(skip(NAME, "no builder.build-context-store"));
        return None;
    };
    let Some(env) = env else {
        out.push(fail(
            NAME,
            format!("{uri}: not checked, the credentials did not resolve"),
            "fix the credentials first",
        ));
        return None;
    };
    let store = match ContextStore::open(uri, env).await {
        Ok(s) => s,
        Err(e) => {
            out.push(fail(
                NAME,
                e.to_string(),
                "set builder.build-context-store to a store of the environment's cloud",
            ));
            return None;
        }
    };
    match store.verify().await {
        Ok(()) => out.push(pass(NAME, format!("{uri} is writable (a marker object was written and deleted)"))),
        Err(e) => {
            let text = e.to_string();
            let fix = if text.contains("does not exist") {
                store_create_hint(uri)
            } else {
                "grant the agent's identity what `liftoff permissions -c <this file>` lists".into()
            };
            out.push(fail(NAME, text, fix));
        }
    }
    Some(store)
}

fn store_create_hint(uri: &launch_config::BuildContextStore) -> String {
    use launch_config::BuildContextStore as S;
    match uri {
        S::S3 { bucket, .. } => format!("create it (`aws s3 mb s3://{bucket}`) or correct the URI"),
        S::Gcs { bucket, .. } => {
            format!("create it (`gcloud storage buckets create gs://{bucket}`) or correct the URI")
        }
        S::AzureBlob { account, container, .. } => format!(
            "create it (`az storage container create --account-name {account} --name {container} --auth-mode login`) or correct the URI"
        ),
    }
}

async fn check_builder(cfg: &AgentConfig, docker_host: Option<&str>) -> Check {
    const NAME: &str = "builder";
    match cfg.builder.as_ref().map(|b| b.builder_type) {
        None => skip(NAME, "no builder block: code and git jobs need a base_image"),
        Some(BuilderType::Noop) => skip(NAME, "noop builds nothing"),
        Some(BuilderType::Kaniko) => kubernetes::check_kaniko(cfg).await,
        Some(BuilderType::Docker) => {
            let host = docker_host
                .map(str::to_string)
                .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
                .unwrap_or_else(|| liftoff_run::container::DEFAULT_DOCKER_HOST.to_string());
            match liftoff_run::bollard_engine::BollardEngine::connect_to(&host).await {
                Ok(_) => pass(NAME, format!("the docker engine at {host} answers")),
                Err(e) => fail(
                    NAME,
                    format!("{e:#}"),
                    "start the engine, or point DOCKER_HOST or --docker-host at the one the agent will use",
                ),
            }
        }
    }
}

async fn check_regions(cfg: &AgentConfig, env: Option<&CloudEnv>, store: Option<&ContextStore>) -> Check {
    const NAME: &str = "regions";
    let mut seen: Vec<(String, String)> = Vec::new();
    if let Some(r) = env.and_then(CloudEnv::region) {
        seen.push(("environment".into(), r.to_string()));
    }
    let destination = cfg
        .builder
        .as_ref()
        .and_then(|b| b.destination.as_ref())
        .or(cfg.registry.as_ref().and_then(|r| r.uri.as_ref()));
    match destination {
        Some(d @ ImageDestination::Ecr { region, .. }) | Some(d @ ImageDestination::Gar { region, .. }) => {
            seen.push((format!("destination {}", d.uri()), region.clone()))
        }
        _ => {}
    }
    if let Some(s) = store
        && let Some(r) = s.bucket_region().await
    {
        seen.push((format!("bucket of {}", s.uri()), r));
    }
    if seen.len() < 2 {
        return skip(NAME, "fewer than two regions to compare");
    }
    let first = &seen[0].1;
    let listed = seen.iter().map(|(what, r)| format!("{what}: {r}")).collect::<Vec<_>>().join(", ");
    if seen.iter().all(|(_, r)| r == first) {
        pass(NAME, format!("all in {first} ({listed})"))
    } else {
        fail(
            NAME,
            format!("the regions differ ({listed})"),
            "use one region: set environment.region to the region of the registry and the bucket, or move them",
        )
    }
}
