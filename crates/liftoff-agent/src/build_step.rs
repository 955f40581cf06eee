//! The build step of a run's pipeline, between fetching its code and
//! preparing its runner: the build context and its content-addressed tag,
//! then the image found in the registry (no build), built by this agent
//! (one agent per content, through the server's build claims), or waited
//! for while another agent builds it. Recorded on the run.

use crate::abort_on_drop::AbortOnDrop;
use crate::agent::AgentOptions;
use liftoff_build::append::{AppendError, AppendRequest};
use liftoff_build::context::{BuildContext, ContextRequest};
use liftoff_build::tag::{TagInputs, content_tag};
use liftoff_build::{BuildRequest, BuildSetup, Destination, Push, TarContext};
use liftoff_client::Client;
use liftoff_core::api::{BuildClaimAnswer, BuildHow, BuildRecord, ItemView, LogStream};
use liftoff_core::{JobSource, Stage};
use liftoff_run::{BuiltImage, JobError, JobErrorCode, LogSender};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn build_error(code: JobErrorCode, message: impl Into<String>) -> JobError {
    JobError::new(Stage::Build, code, message)
}

async fn say(logs: &LogSender, line: impl Into<String>) {
    let mut line = line.into();
    line.push('\n');
    let _ = logs.send((LogStream::Build, line)).await;
}

/// The image a run gets, and the record of how.
pub struct Built {
    pub image: BuiltImage,
    pub record: BuildRecord,
    /// The context's warnings (a missing requirements file...).
    pub warnings: Vec<String>,
}

/// The local repository of dependency images that stay in the agent's engine.
const LOCAL_DEPENDENCIES: &str = "liftoff/dependencies";

/// The local name of images that stay in the agent's engine: the job's
/// name (without entity, project or version), docker-safe.
fn local_repository(item: &ItemView) -> String {
    let name = item.spec.job.rsplit('/').next().unwrap_or_default();
    let name = name.split(':').next().unwrap_or_default();
    let job: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let job = job.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("liftoff/{}", if job.is_empty() { "job" } else { job })
}

/// Gets the run's image: see the module documentation.
pub async fn build(
    client: &Client,
    item: &ItemView,
    dir: &Path,
    setup: &BuildSetup,
    opts: &AgentOptions,
    logs: &LogSender,
) -> Result<Built, JobError> {
    let started = Instant::now();
    let spec = &item.spec;
    let (build_context, dockerfile, base_image) = match &spec.source {
        JobSource::Git(g) => (g.build_context.clone(), g.dockerfile.clone(), g.base_image.clone()),
        JobSource::Code(c) => (c.build_context.clone(), c.dockerfile.clone(), c.base_image.clone()),
        JobSource::Image(_) => return Err(build_error(JobErrorCode::Internal, "an image job has nothing to build")),
    };
    let entrypoint = spec.entrypoint.clone();
    let python_base = base_image.unwrap_or_else(|| setup.python_base_image.clone());
    let (source_dir, accelerator, runtime) =
        (dir.to_path_buf(), setup.accelerator_base_image.clone(), spec.runtime.clone());
    let context = tokio::task::spawn_blocking(move || {
        BuildContext::prepare(&ContextRequest {
            source_dir: &source_dir,
            build_context: build_context.as_deref(),
            job_dockerfile: dockerfile.as_deref(),
            dockerfile_override: None,
            entrypoint: &entrypoint,
            python_version: runtime.as_deref(),
            accelerator_base_image: accelerator.as_deref(),
            python_base_image: &python_base,
        })
        .and_then(|c| c.content_digest().map(|d| (c, d)))
    })
    .await
    .map_err(|e| build_error(JobErrorCode::Internal, e.to_string()))?;
    let (context, context_digest) = context.map_err(|e| build_error(JobErrorCode::Build, e.to_string()))?;
    let warnings = context.warnings().to_vec();
    let entrypoint = context.entrypoint().to_vec();
    say(
        logs,
        format!(
            "liftoff build: context {context_digest}, {} ({} files, {} KiB; +{} ms)",
            context.dockerfile_path(),
            context.paths().count(),
            context.total_bytes() / 1024,
            started.elapsed().as_millis()
        ),
    )
    .await;

    let builder = &setup.builder;
    let mut base_digests = Vec::new();
    for base in context.base_images() {
        let digest =
            builder.base_digest(&base, logs).await.map_err(|e| build_error(JobErrorCode::Build, e.to_string()))?;
        base_digests.push((base, digest));
    }
    let bases: Vec<&str> = base_digests.iter().map(|(b, _)| b.as_str()).collect();
    say(
        logs,
        format!("liftoff build: base images {} resolved (+{} ms)", bases.join(", "), started.elapsed().as_millis()),
    )
    .await;
    let tag = content_tag(&TagInputs {
        context_digest: &context_digest,
        base_digests: &base_digests,
        build_args: &setup.build_args,
        platform: setup.platform.as_deref(),
    });
    let repository = match &setup.destination {
        Destination::LocalEngine => local_repository(item),
        Destination::Registry(r) => r.repository().to_string(),
    };
    let image = format!("{repository}:{tag}");
    // recorded as `repo:tag@digest` (pushed) or `repo:tag` (in the engine)
    let record = |how: BuildHow, digest: Option<String>| BuildRecord {
        image: match (&setup.destination, &digest) {
            (Destination::Registry(_), Some(d)) => format!("{image}@{d}"),
            _ => image.clone(),
        },
        digest,
        how,
        seconds: started.elapsed().as_secs_f64(),
        builder: builder.name().to_string(),
    };

    // Found already?
    if let Some(found) = find(setup, &image, &tag).await? {
        say(logs, format!("liftoff build: {image} exists ({}); no build", found.1.as_deref().unwrap_or("local"))).await;
        let auth = registry_auth(setup).await?;
        return Ok(Built {
            image: BuiltImage { image: found.0.clone(), entrypoint, auth },
            record: record(BuildHow::Found, found.1),
            warnings,
        });
    }

    // A generated Dockerfile's code is appended to its dependency image:
    // no builder run for the code.
    let appendable = match context.dependency_context() {
        Ok(deps) => Some(deps),
        Err(why) => {
            say(logs, format!("liftoff build: building the whole image: {why}")).await;
            None
        }
    };

    let key = claim_key(setup, opts, &image);
    let context = Arc::new(context);
    let work = || async {
        match &appendable {
            Some(deps) => {
                // shared by every job with the same dependencies: one repository per registry or engine
                let deps_repository = match &setup.destination {
                    Destination::LocalEngine => LOCAL_DEPENDENCIES.to_string(),
                    Destination::Registry(_) => repository.clone(),
                };
                let deps =
                    dependency_image(client, setup, &deps_repository, deps.clone(), &base_digests, opts, logs).await?;
                let digest =
                    append_code(setup, &deps, &context, &context_digest, &tag, &image, &entrypoint, logs).await?;
                let reference = match &setup.destination {
                    Destination::Registry(r) => format!("{}@{digest}", r.repository()),
                    Destination::LocalEngine => image.clone(),
                };
                Ok((reference, Some(digest), BuildHow::Appended))
            }
            None => {
                let tar: Arc<dyn TarContext> = context.clone();
                let (reference, digest) = build_and_push(setup, tar, &image, &tag, logs).await?;
                Ok((reference, digest, BuildHow::Built))
            }
        }
    };
    let (reference, digest, how) = match claimed_or_found(client, setup, &key, &image, &tag, opts, logs, work).await? {
        Got::Mine(done) => done,
        Got::Found((reference, digest)) => (reference, digest, BuildHow::Waited),
    };
    let auth = registry_auth(setup).await?;
    Ok(Built { image: BuiltImage { image: reference, entrypoint, auth }, record: record(how, digest), warnings })
}

/// An image this agent made, or found made by another.
enum Got<T> {
    Mine(T),
    /// `(reference, digest)`.
    Found((String, Option<String>)),
}

/// Who did the work a build claim guards.
enum Claimed<T> {
    /// This agent, with its result.
    Mine(T),
    /// Another agent finished it while this one waited.
    Theirs,
}

/// Runs `work` under the server's build claim on `key` (one agent per
/// content does it; the others wait, then find its result), renewing the
/// claim while it runs and finishing it with the outcome. `gone`: the image
/// of a done claim was found missing (pruned): win it again.
async fn under_build_claim<T>(
    client: &Client,
    key: &str,
    image: &str,
    opts: &AgentOptions,
    logs: &LogSender,
    gone: bool,
    work: impl std::future::Future<Output = Result<(String, Option<String>, T), JobError>>,
) -> Result<Claimed<(String, Option<String>, T)>, JobError> {
    let mut waited = false;
    loop {
        let answer = match client.claim_build(key, &opts.agent_id, gone).await {
            Ok(a) => a,
            // a server restarting: asked again (the job's start timeout bounds it)
            Err(e) if e.is_transient() => {
                tracing::warn!(%key, error = %e, "could not claim the build; asking again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                return Err(build_error(JobErrorCode::Report, format!("could not claim the build of {image}: {e}")));
            }
        };
        match answer {
            BuildClaimAnswer::Held { holder, retry_after_ms } => {
                if !waited {
                    say(logs, format!("liftoff build: agent {holder} is building {image}; waiting for it")).await;
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(retry_after_ms.clamp(100, 5000) as u64)).await;
            }
            BuildClaimAnswer::Done { .. } => return Ok(Claimed::Theirs),
            BuildClaimAnswer::Won { fence, lease_ttl_ms } => {
                // renewals stop with the build, also when the job is dropped
                // midway (a stop, the agent shutting down): the lease then
                // runs out and another agent builds
                let keeper =
                    AbortOnDrop(tokio::spawn(keep_build(client.clone(), key.to_string(), fence, lease_ttl_ms)));
                let result = work.await;
                drop(keeper);
                let finished = result.as_ref().ok().map(|(reference, _, _)| reference.as_str());
                if let Err(e) = client.update_build(key, fence, true, finished).await {
                    tracing::warn!(%key, error = %e, "could not finish the build claim");
                }
                return result.map(Claimed::Mine);
            }
        }
    }
}

/// [`under_build_claim`], then the image of a claim another agent finished:
/// this agent's result, or the image (reference, digest) found where the
/// other agent put it. An image whose claim is done but which is gone from the
/// registry (pruned) is claimed again (`gone`) and rebuilt.
#[expect(clippy::too_many_arguments, reason = "the claim's key and the image's names, each needed")]
async fn claimed_or_found<T, F, Fut>(
    client: &Client,
    setup: &BuildSetup,
    key: &str,
    image: &str,
    tag: &str,
    opts: &AgentOptions,
    logs: &LogSender,
    work: F,
) -> Result<Got<(String, Option<String>, T)>, JobError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(String, Option<String>, T), JobError>>,
{
    let mut gone = false;
    loop {
        if let Claimed::Mine(done) = under_build_claim(client, key, image, opts, logs, gone, work()).await? {
            return Ok(Got::Mine(done));
        }
        // the registry (or engine) is the truth: the server only says who built
        match find(setup, image, tag).await? {
            Some(found) => {
                say(logs, format!("liftoff build: {image} was built by another agent")).await;
                return Ok(Got::Found(found));
            }
            None if !gone => {
                say(logs, format!("liftoff build: {image} was built before but is gone (pruned?); building it again"))
                    .await;
                gone = true;
            }
            None => {
                return Err(build_error(
                    JobErrorCode::Build,
                    format!("{image} was reported built by another agent but is not there"),
                ));
            }
        }
    }
}

/// The run's dependency image in `registry`, keyed by what determines it
/// (the dependency context's digest, base images, build args, platform):
/// found, built by this agent under a build claim, or waited for. Returns
/// its reference (`repo:lf-deps-<hex>`).
async fn dependency_image(
    client: &Client,
    setup: &BuildSetup,
    repository: &str,
    deps: BuildContext,
    base_digests: &[(String, String)],
    opts: &AgentOptions,
    logs: &LogSender,
) -> Result<String, JobError> {
    let deps = Arc::new(deps);
    let digest = {
        let deps = deps.clone();
        tokio::task::spawn_blocking(move || deps.content_digest())
            .await
            .map_err(|e| build_error(JobErrorCode::Internal, e.to_string()))?
            .map_err(|e| build_error(JobErrorCode::Build, e.to_string()))?
    };
    let tag = dependency_tag(&content_tag(&TagInputs {
        context_digest: &digest,
        base_digests,
        build_args: &setup.build_args,
        platform: setup.platform.as_deref(),
    }));
    let image = format!("{repository}:{tag}");
    if let Some((_, Some(d))) = find(setup, &image, &tag).await? {
        say(logs, format!("liftoff build: dependency image {image} exists ({d})")).await;
        return Ok(image);
    }
    say(logs, format!("liftoff build: building the dependency image {image}")).await;
    let work = || async {
        let (reference, digest) = build_and_push(setup, deps.clone(), &image, &tag, logs).await?;
        Ok((reference, digest, ()))
    };
    // found built by another agent, or built here: either way it is there now
    claimed_or_found(client, setup, &claim_key(setup, opts, &image), &image, &tag, opts, logs, work).await?;
    Ok(image)
}

/// The build claim's key for `image`: images kept in an engine are per host.
fn claim_key(setup: &BuildSetup, opts: &AgentOptions, image: &str) -> String {
    match &setup.destination {
        Destination::LocalEngine => format!("{}/{image}", opts.hostname),
        Destination::Registry(_) => image.to_string(),
    }
}

/// `lf-deps-<hex>` from a content tag `lf-<hex>`: dependency images are told
/// apart from code images in the repository (and by `liftoff image prune`).
fn dependency_tag(content_tag: &str) -> String {
    format!("{}{}", liftoff_build::append::DEPENDENCY_TAG_PREFIX, content_tag.trim_start_matches("lf-"))
}

/// Appends the code as a layer to dependency image `deps` (`repo:tag`) and
/// tags it `tag` (`image` in full): through the registry's API, or loaded
/// into the engine. Returns the new manifest's digest (the image id in an engine).
#[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename them")]
async fn append_code(
    setup: &BuildSetup,
    deps: &str,
    context: &Arc<BuildContext>,
    context_digest: &str,
    tag: &str,
    image: &str,
    entrypoint: &[String],
    logs: &LogSender,
) -> Result<String, JobError> {
    let started = Instant::now();
    let layer = {
        let context = context.clone();
        tokio::task::spawn_blocking(move || liftoff_build::append::code_layer(&context))
            .await
            .map_err(|e| build_error(JobErrorCode::Internal, e.to_string()))?
            .map_err(|e| build_error(JobErrorCode::Build, e.to_string()))?
    };
    let packed = started.elapsed();
    let failed = |e: AppendError| {
        let code = match e {
            AppendError::Registry(liftoff_build::RegistryError::Unauthorized { .. }) => JobErrorCode::Credentials,
            AppendError::Registry(_) => JobErrorCode::Push,
            AppendError::Dependencies { .. } | AppendError::Engine(_) => JobErrorCode::Build,
        };
        build_error(code, e.to_string())
    };
    let sizes = format!("{} KiB, {} KiB compressed", layer.tar_bytes / 1024, layer.gzip.len() / 1024);
    let (digest, how) = match &setup.destination {
        Destination::Registry(registry) => {
            let deps_tag = deps.rsplit_once(':').map_or(deps, |(_, t)| t);
            let req = AppendRequest { dependencies: deps_tag, tag, layer: &layer, entrypoint, context_digest };
            let appended = liftoff_build::append::append(&**registry, &req).await.map_err(failed)?;
            let sent = |uploaded: bool| if uploaded { "uploaded" } else { "already in the registry" };
            let how = format!(
                "layer {}, config {}; {deps} is {}",
                sent(appended.layer_uploaded),
                sent(appended.config_uploaded),
                appended.dependencies_digest
            );
            (appended.digest, how)
        }
        Destination::LocalEngine => {
            let engine = setup.engine.get().await.map_err(|e| build_error(JobErrorCode::Build, format!("{e:#}")))?;
            let id = liftoff_build::append::append_in_engine(
                engine.docker(),
                deps,
                image,
                &layer,
                entrypoint,
                context_digest,
            )
            .await
            .map_err(failed)?;
            (id, "loaded into the engine".to_string())
        }
    };
    say(
        logs,
        format!(
            "liftoff build: appended the code ({sizes}) to {deps}: {image} is {digest} ({how}) in {} ms, {} ms of it to pack",
            started.elapsed().as_millis(),
            packed.as_millis(),
        ),
    )
    .await;
    Ok(digest)
}

/// The image to run if it exists: `repo@digest` in a registry, `repo:tag` in the engine.
async fn find(setup: &BuildSetup, image: &str, tag: &str) -> Result<Option<(String, Option<String>)>, JobError> {
    match &setup.destination {
        Destination::Registry(r) => {
            let digest = r.manifest_digest(tag).await.map_err(|e| build_error(JobErrorCode::Push, e.to_string()))?;
            Ok(digest.map(|d| (format!("{}@{d}", r.repository()), Some(d))))
        }
        Destination::LocalEngine => {
            let id =
                setup.builder.local_image(image).await.map_err(|e| build_error(JobErrorCode::Build, e.to_string()))?;
            Ok(id.map(|id| (image.to_string(), Some(id))))
        }
    }
}

async fn registry_auth(setup: &BuildSetup) -> Result<Option<liftoff_run::container::RegistryAuth>, JobError> {
    match &setup.destination {
        Destination::LocalEngine => Ok(None),
        Destination::Registry(r) => {
            r.credentials().await.map_err(|e| build_error(JobErrorCode::Credentials, e.to_string()))
        }
    }
}

async fn build_and_push(
    setup: &BuildSetup,
    context: Arc<dyn TarContext>,
    image: &str,
    tag: &str,
    logs: &LogSender,
) -> Result<(String, Option<String>), JobError> {
    let push = match &setup.destination {
        Destination::LocalEngine => None,
        Destination::Registry(r) => {
            let login = r.login().await.map_err(|e| build_error(JobErrorCode::Credentials, e.to_string()))?;
            Some(Push { registry: r.describe(), source: login.source, auth: login.auth })
        }
    };
    let req = BuildRequest { context, image, platform: setup.platform.as_deref(), build_args: &setup.build_args, push };
    setup.builder.build(req, logs).await.map_err(|e| {
        let code =
            if matches!(e, liftoff_build::BuildError::Push { .. }) { JobErrorCode::Push } else { JobErrorCode::Build };
        build_error(code, e.to_string())
    })?;
    match find(setup, image, tag).await? {
        Some(found) => Ok(found),
        None => Err(build_error(JobErrorCode::Push, format!("{image} was pushed but the registry does not have it"))),
    }
}

/// Renews the build lease every TTL/3 until aborted.
async fn keep_build(client: Client, key: String, fence: i64, ttl_ms: i64) {
    let every = Duration::from_millis((ttl_ms / 3).max(50) as u64);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = client.update_build(&key, fence, false, None).await {
            tracing::warn!(%key, error = %e, "could not renew the build claim");
            if e.is_conflict() {
                return;
            }
        }
    }
}
