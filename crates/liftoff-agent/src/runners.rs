//! From a launch spec to a checked plan: what every runner shares (macros,
//! the run's variables, secure mode's entrypoint lock), then the checks of
//! the runner the agent's [`RunnerRegistry`] has for the queue's resource.

use crate::agent::AgentOptions;
use liftoff_core::api::ItemView;
use liftoff_core::macros;
use liftoff_core::run_env::{MAX_ENV_VALUE, RunFacts, run_env};
use liftoff_core::{JobSource, ResourceType, Stage};
use liftoff_run::local_container::LocalContainerRunner;
use liftoff_run::local_process::LocalProcessRunner;
use liftoff_run::{JobError, JobErrorCode, Plan, RunRequest, Runner, RunnerRegistry, SharedEngine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The runners every agent has: `local-process` and `local-container`
/// (on the agent's one engine connection, `engine`).
pub fn local_runners(opts: &AgentOptions, engine: &SharedEngine) -> RunnerRegistry {
    let mut registry = RunnerRegistry::default();
    registry
        .register(Arc::new(LocalProcessRunner { supervisor: opts.supervisor.clone(), run_as: opts.run_as.clone() }))
        .register(Arc::new(LocalContainerRunner::new(engine.clone(), opts.docker_config.clone())));
    registry
}

/// Every runner this agent has: the local ones (on the builder's engine
/// connection, if it builds), the cloud runner of its environment:
/// `sagemaker` with an `aws` environment, `vertex` with a `gcp` one, and
/// `kubernetes` when a cluster can be found (`LIFTOFF_KUBECONFIG`,
/// `KUBECONFIG`, `~/.kube/config`, or the pod's service account).
pub fn agent_runners(opts: &AgentOptions, env: &liftoff_cloud::CloudEnv) -> RunnerRegistry {
    let engine = match &opts.build {
        Some(setup) => setup.engine.clone(),
        None => SharedEngine::new(opts.docker_host.clone()),
    };
    let mut registry = local_runners(opts, &engine);
    let poll = liftoff_run::remote_job::poll_from_env();
    match env {
        liftoff_cloud::CloudEnv::Aws(aws) => {
            let api = liftoff_run::sagemaker::SageMakerApi::new(aws.clone());
            registry.register(Arc::new(liftoff_run::sagemaker::SageMakerRunner::new(api, poll)));
        }
        liftoff_cloud::CloudEnv::Gcp(gcp) => {
            let api = liftoff_run::vertex::VertexApi::new(gcp.clone());
            registry.register(Arc::new(liftoff_run::vertex::VertexRunner::new(api, poll)));
        }
        _ => {}
    }
    if let Some(source) = liftoff_run::kubernetes::ClusterSource::detect() {
        registry.register(Arc::new(liftoff_run::kubernetes::KubernetesRunner::new(source, opts.docker_config.clone())));
    }
    registry
}

/// Checks the spec against the agent's rules and its runner's, and builds
/// what to run, and whether its image is to be built. Every problem found
/// is reported at once.
pub fn plan(
    registry: &RunnerRegistry,
    item: &ItemView,
    dir: &Path,
    run_key: Option<&str>,
    base_url: &str,
    opts: &AgentOptions,
) -> Result<(Arc<dyn Runner>, Plan, bool), JobError> {
    let spec = &item.spec;
    let mut problems = Vec::new();
    if opts.secure_mode && spec.entrypoint_overridden {
        problems.push(
            "this agent is configured to lock the \"entrypoint\" override, but the launch overrides it".to_string(),
        );
    }
    let image = match &spec.source {
        JobSource::Image(i) => Some(i.image.clone()),
        JobSource::Git(g) => g.base_image.clone(),
        JobSource::Code(c) => c.base_image.clone(),
    };
    // `${image_uri}` and friends, then the agent's environment variables.
    let facts = BTreeMap::from([
        ("run_id", item.run_id.clone()),
        ("run_name", item.run_id.clone()),
        ("project_name", spec.project.clone()),
        ("entity_name", item.entity.clone()),
        ("queue_name", item.queue.clone()),
        ("image_uri", image.clone().unwrap_or_default()),
    ]);
    let agent_env = |name: &str| std::env::var(name).ok().filter(|_| !looks_secret(name));
    let resource_args = macros::expand(&spec.resource_config, &macros::run_lookup(&facts, &agent_env));
    let env = run_env(
        &RunFacts {
            run_id: &item.run_id,
            item_id: &item.id,
            entity: &item.entity,
            project: &spec.project,
            queue: &item.queue,
            job: &spec.job,
            base_url,
            api_key: run_key,
            run_config: &spec.run_config,
            file_overrides: &spec.file_overrides,
            resumes: item.resumes,
            image: image.as_deref(),
        },
        MAX_ENV_VALUE,
    );
    // With a builder, code and git jobs get an image built from their code
    // (their base_image, if any, becomes the generated Dockerfile's base).
    let will_build = opts.build.is_some()
        && !matches!(spec.source, JobSource::Image(_))
        && registry.get(spec.resource).is_some_and(|r| r.runs_images());
    let req = RunRequest {
        item,
        dir,
        env,
        resource_args,
        image: if will_build { None } else { image },
        will_build,
        secure_mode: opts.secure_mode,
        base_url,
        agent_key: &opts.agent_key,
        agent_id: &opts.agent_id,
    };
    let Some(runner) = registry.get(spec.resource) else {
        if spec.resource == ResourceType::Kubernetes
            && let Err(errors) = liftoff_core::kube_args::check(&req.resource_args, opts.secure_mode)
        {
            problems.extend(errors);
        }
        let served: Vec<&str> = registry.resources().into_iter().map(ResourceType::as_str).collect();
        let why = match spec.resource {
            ResourceType::Sagemaker => " (sagemaker needs an agent with an aws environment)",
            ResourceType::Vertex => " (vertex needs an agent with a gcp environment)",
            ResourceType::Kubernetes => {
                " (kubernetes needs an agent that finds a cluster: LIFTOFF_KUBECONFIG, KUBECONFIG, ~/.kube/config, \
                 or a pod's service account)"
            }
            _ => " yet",
        };
        problems.push(format!(
            "this agent cannot run resource '{}'{why} ({} only)",
            spec.resource,
            served.join(" and ")
        ));
        return Err(JobError::new(Stage::Agent, JobErrorCode::UnsupportedResource, problems.join("; ")));
    };
    match runner.check(&req) {
        Ok(plan) if problems.is_empty() => Ok((runner.clone(), plan, will_build)),
        Ok(_) => Err(JobError::new(Stage::Agent, JobErrorCode::Spec, problems.join("; "))),
        Err(e) if e.code == JobErrorCode::Spec && !problems.is_empty() => {
            problems.push(e.message);
            Err(JobError::new(Stage::Agent, JobErrorCode::Spec, problems.join("; ")))
        }
        Err(e) => Err(e),
    }
}

/// Agent variables that `${NAME}` never expands: a launcher can put a macro
/// in a template variable's value, and must not read the agent's secrets
/// through its run's environment. URLs and DSNs are in: they carry
/// passwords (`DATABASE_URL`). (The reference expands any variable.)
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "URL", "URI", "DSN"]
        .iter()
        .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_agent_variables_are_not_expanded() {
        for name in [
            "LIFTOFF_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "AZURE_STORAGE_KEY",
            "DATABASE_URL",
            "MONGO_URI",
            "SENTRY_DSN",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["CUDA_VISIBLE_DEVICES", "HOME", "AWS_REGION", "HOSTNAME"] {
            assert!(!looks_secret(name), "{name}");
        }
    }
}
