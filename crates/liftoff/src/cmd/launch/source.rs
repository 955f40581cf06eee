//! The job a one-step launch runs: a directory, a git commit or an image
//! becomes a version of a job, or reuses the latest one when nothing changed.

use crate::cmd::job::{BuildArgs, dir_name, git_name, image_name, job_name, pack_dir, source_summary};
use anyhow::{Context, bail};
use liftoff_client::Client;
use liftoff_core::api::{CreateJob, JobView};
use liftoff_core::job::{CodeSource, GitSource, ImageSource};
use liftoff_core::{JobSource, JobSourceSpec};
use std::path::PathBuf;

/// Where the code comes from.
#[derive(Debug)]
pub enum Origin {
    Dir(PathBuf),
    Git { url: String, commit: String },
    Image(String),
}

/// Makes (or finds) the job version for `origin`. `command` is the job's
/// entrypoint for a directory or a commit; without one, the latest
/// version's entrypoint is kept. Reports on stderr what it did. Returns
/// the version as `project/name:vN`: exactly this one, whatever is made meanwhile.
pub async fn ensure_job(
    client: &Client,
    origin: Origin,
    name: Option<&str>,
    project: &str,
    command: Option<Vec<String>>,
    build: BuildArgs,
    runtime: Option<String>,
) -> anyhow::Result<String> {
    let name = job_name(name, || match &origin {
        Origin::Dir(d) => dir_name(d),
        Origin::Git { url, .. } => git_name(url),
        Origin::Image(i) => image_name(i),
    })?;
    let latest = latest_version(client, project, &name).await?;
    let entrypoint = |kind: &str| -> anyhow::Result<Vec<String>> {
        if let Some(c) = &command {
            return Ok(c.clone());
        }
        match latest.as_ref().map(|j| j.source.entrypoint()).filter(|e| !e.is_empty()) {
            Some(e) => Ok(e.to_vec()),
            None => bail!(
                "the job {project}/{name} has no command yet: give the {kind}'s command after `--`, \
                 e.g. `liftoff launch -q QUEUE PATH -- python3 main.py`"
            ),
        }
    };
    let mut archive = None;
    let source = match origin {
        Origin::Dir(dir) => {
            let entrypoint = entrypoint("directory")?;
            let (digest, bytes) = pack_dir(&dir).await?;
            archive = Some(bytes);
            JobSource::Code(CodeSource {
                digest,
                entrypoint,
                build_context: build.build_context,
                dockerfile: build.dockerfile,
                base_image: build.base_image,
            })
        }
        Origin::Git { url, commit } => JobSource::Git(GitSource {
            remote: url,
            commit,
            entrypoint: entrypoint("commit")?,
            diff_patch: None,
            build_context: build.build_context,
            dockerfile: build.dockerfile,
            base_image: build.base_image,
        }),
        Origin::Image(image) => JobSource::Image(ImageSource { image, args: Vec::new() }),
    };
    if let Some(job) = latest
        && job.source.clone().without_credentials() == source.clone().without_credentials()
        && job.runtime == runtime
    {
        eprintln!(
            "job: {} unchanged ({}): nothing uploaded, no new version",
            job.full_name(),
            source_summary(&job.source)
        );
        return Ok(pinned(&job));
    }
    let mut uploaded = String::new();
    if let (Some(bytes), JobSource::Code(code)) = (archive, &source) {
        if already_stored(client, &code.digest).await? {
            uploaded = ", archive already on the server".into();
        } else {
            let size = bytes.len();
            client.upload_blob(&code.digest, bytes).await.context("failed to upload the code archive")?;
            uploaded = format!(", uploaded {size} bytes");
        }
    }
    let req = CreateJob { project: project.to_string(), name, source: spec(source), aliases: Vec::new(), runtime };
    let job = client
        .create_job(&req)
        .await
        .with_context(|| format!("failed to create a version of job '{}/{}'", req.project, req.name))?;
    eprintln!("job: {} created ({}{uploaded})", job.full_name(), source_summary(&job.source));
    Ok(pinned(&job))
}

/// The job's latest version; `None` when there is no such job.
async fn latest_version(client: &Client, project: &str, name: &str) -> anyhow::Result<Option<JobView>> {
    match client.get_job(project, name, "latest").await {
        Ok(j) => Ok(Some(j)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to look up job '{project}/{name}'")),
    }
}

/// Whether a job version of this entity already holds the archive (the
/// server keeps every archive a version names), so it need not be sent again.
async fn already_stored(client: &Client, digest: &str) -> anyhow::Result<bool> {
    let jobs = client.list_jobs().await.context("failed to list jobs")?;
    Ok(jobs.iter().any(|j| matches!(&j.source, JobSource::Code(c) if c.digest == digest)))
}

fn pinned(job: &JobView) -> String {
    format!("{}/{}:v{}", job.project, job.name, job.version)
}

fn spec(source: JobSource) -> JobSourceSpec {
    match source {
        JobSource::Code(c) => JobSourceSpec { code: Some(c), ..Default::default() },
        JobSource::Git(g) => JobSourceSpec { git: Some(g), ..Default::default() },
        JobSource::Image(i) => JobSourceSpec { image: Some(i), ..Default::default() },
    }
}
