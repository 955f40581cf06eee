//! `liftoff job`: create jobs from a code directory, a git commit or an image; list and show them.

use crate::connect::Globals;
use crate::output::{self, FormatArg, Table};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use liftoff_client::Client;
use liftoff_core::api::{CreateJob, JobView};
use liftoff_core::job::{CodeSource, GitSource, ImageSource, redact_git_remote, split_git_credential};
use liftoff_core::{JobRef, JobSource, JobSourceSpec};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Create a job (or a new version of one).
    #[command(subcommand)]
    Create(Box<CreateCmd>),
    /// List the entity's jobs.
    List(FormatArg),
    /// Show one job version.
    Show {
        /// `[project/]name[:alias]`; alias defaults to `latest`.
        name: String,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum CreateCmd {
    /// From a local directory, uploaded as a code archive.
    Code(CodeArgs),
    /// From a commit of a git repository.
    Git(GitArgs),
    /// From a container image.
    Image(ImageArgs),
}

/// Options every job kind takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Job name [default: derived from the source].
    #[arg(short, long)]
    name: Option<String>,
    /// Project the job belongs to.
    #[arg(short, long, default_value = "default")]
    project: String,
    /// Extra alias for this version (repeatable).
    #[arg(long = "alias", value_name = "A")]
    aliases: Vec<String>,
    /// Python version the job expects, e.g. 3.11.
    #[arg(long, value_name = "V")]
    runtime: Option<String>,
}

#[derive(Debug, Args)]
pub struct CodeArgs {
    dir: PathBuf,
    /// Command to run, e.g. "python main.py".
    #[arg(short = 'E', long, value_name = "ENTRYPOINT")]
    entrypoint: String,
    #[command(flatten)]
    build: BuildArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// How code and git jobs become images.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile to build with, relative to the build context [default:
    /// `Dockerfile.liftoff` (or `Dockerfile.wandb`) beside the entrypoint's
    /// script, else one generated for Python].
    #[arg(long, value_name = "PATH")]
    pub(crate) dockerfile: Option<String>,
    /// The subdirectory of the code that is the build context.
    #[arg(long, value_name = "DIR")]
    pub(crate) build_context: Option<String>,
    /// An image to run the code in, mounted, on agents without a builder
    /// (with a builder: the base of the generated Dockerfile).
    #[arg(long, value_name = "IMAGE")]
    pub(crate) base_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct GitArgs {
    url: String,
    /// Commit SHA to run.
    #[arg(long, value_name = "SHA")]
    commit: String,
    /// Command to run, e.g. "python main.py".
    #[arg(short = 'E', long, value_name = "ENTRYPOINT")]
    entrypoint: String,
    #[command(flatten)]
    build: BuildArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    image: String,
    /// Arguments passed to the image's command.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "ARG")]
    args: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

pub async fn run(globals: &Globals, cmd: JobCmd) -> anyhow::Result<()> {
    match cmd {
        JobCmd::Create(c) => create(globals, *c).await,
        JobCmd::List(f) => {
            let jobs = globals.client()?.list_jobs().await.context("failed to list jobs")?;
            // The server already redacts credentials; an older one may not have.
            let jobs: Vec<JobView> = jobs.into_iter().map(JobView::without_credentials).collect();
            output::emit(f.format, &jobs, |js| list_table(js))
        }
        JobCmd::Show { name, format } => {
            let r = JobRef::parse(&name).map_err(anyhow::Error::msg)?;
            let client = match &r.entity {
                Some(e) => globals.client_for(globals.base_url(), e)?,
                None => globals.client()?,
            };
            let project = r.project.as_deref().unwrap_or("default");
            let job =
                client.get_job(project, &r.name, &r.alias).await.with_context(|| format!("failed to get job '{r}'"))?;
            output::emit(format.format, &job.without_credentials(), show_table)
        }
    }
}

async fn create(globals: &Globals, cmd: CreateCmd) -> anyhow::Result<()> {
    match cmd {
        CreateCmd::Code(a) => {
            let entrypoint = split_entrypoint(&a.entrypoint)?;
            let name = job_name(a.common.name.as_deref(), || dir_name(&a.dir))?;
            let client = globals.client()?;
            let (digest, size) = upload_dir(&client, &a.dir).await?;
            let code = CodeSource {
                digest: digest.clone(),
                entrypoint,
                build_context: a.build.build_context,
                dockerfile: a.build.dockerfile,
                base_image: a.build.base_image,
            };
            let job =
                create_job(&client, a.common, name, JobSourceSpec { code: Some(code), ..Default::default() }).await?;
            println!("{}", job.full_name());
            println!("digest: {digest}");
            println!("size: {size} bytes");
            Ok(())
        }
        CreateCmd::Git(a) => {
            let entrypoint = split_entrypoint(&a.entrypoint)?;
            let name = job_name(a.common.name.as_deref(), || git_name(&a.url))?;
            let git = GitSource {
                remote: a.url,
                commit: a.commit,
                entrypoint,
                diff_patch: None,
                build_context: a.build.build_context,
                dockerfile: a.build.dockerfile,
                base_image: a.build.base_image,
            };
            let job =
                create_job(&globals.client()?, a.common, name, JobSourceSpec { git: Some(git), ..Default::default() })
                    .await?;
            println!("{}", job.full_name());
            Ok(())
        }
        CreateCmd::Image(a) => {
            let name = job_name(a.common.name.as_deref(), || image_name(&a.image))?;
            let image = ImageSource { image: a.image, args: a.args };
            let job = create_job(
                &globals.client()?,
                a.common,
                name,
                JobSourceSpec { image: Some(image), ..Default::default() },
            )
            .await?;
            println!("{}", job.full_name());
            Ok(())
        }
    }
}

async fn create_job(
    client: &Client,
    common: CommonArgs,
    name: String,
    source: JobSourceSpec,
) -> anyhow::Result<JobView> {
    let req = CreateJob { project: common.project, name, source, aliases: common.aliases, runtime: common.runtime };
    client.create_job(&req).await.with_context(|| format!("failed to create job '{}/{}'", req.project, req.name))
}

/// Packs `dir`, uploads the archive and returns its digest and size in bytes.
pub async fn upload_dir(client: &Client, dir: &Path) -> anyhow::Result<(String, usize)> {
    let (digest, bytes) = pack_dir(dir).await?;
    let size = bytes.len();
    client.upload_blob(&digest, bytes).await.context("failed to upload the code archive")?;
    Ok((digest, size))
}

/// Packs `dir` as a code archive: its digest and bytes.
pub async fn pack_dir(dir: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let owned = dir.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || liftoff_archive::pack_dir(&owned))
        .await
        .context("packing task failed")?
        .with_context(|| format!("failed to pack {}", dir.display()))?;
    Ok((liftoff_archive::sha256_digest(&bytes), bytes))
}

/// Splits `-E` the way a POSIX shell would.
pub fn split_entrypoint(e: &str) -> anyhow::Result<Vec<String>> {
    match shlex::split(e) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => bail!("-E must not be empty"),
        None => bail!("-E {e:?} cannot be split into words: check its quotes and escapes"),
    }
}

/// The given name, else one derived from the source.
pub(crate) fn job_name(given: Option<&str>, derive: impl FnOnce() -> Option<String>) -> anyhow::Result<String> {
    if let Some(n) = given {
        return Ok(n.to_string());
    }
    derive()
        .map(|n| sanitize(&n))
        .filter(|n| !n.is_empty())
        .context("cannot derive a job name from the source: pass -n NAME")
}

pub(crate) fn dir_name(dir: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// `https://host/org/repo.git` → `repo`.
pub(crate) fn git_name(url: &str) -> Option<String> {
    // Without its credential, which would be the last part of `https://user:token@host`.
    let (url, _) = split_git_credential(url);
    let last = url.trim_end_matches('/').rsplit(['/', ':']).next()?;
    Some(last.strip_suffix(".git").unwrap_or(last).to_string())
}

/// `registry:5000/org/repo:tag@sha256:...` → `repo`.
pub(crate) fn image_name(image: &str) -> Option<String> {
    let without_digest = image.split('@').next()?;
    let last = without_digest.rsplit('/').next()?;
    Some(last.split(':').next()?.to_string())
}

/// Keeps `[A-Za-z0-9._-]` (others become `-`), drops leading `.`/`-`, caps at 64 characters.
fn sanitize(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    cleaned.trim_start_matches(['.', '-']).chars().take(64).collect()
}

/// A source in a few words: the kind, a short digest, commit or image.
pub(crate) fn source_summary(s: &JobSource) -> String {
    match s {
        JobSource::Code(c) => format!("code {}", c.digest.get(..19).unwrap_or(&c.digest)),
        JobSource::Git(g) => {
            format!("git {}@{}", redact_git_remote(&g.remote), g.commit.get(..12).unwrap_or(&g.commit))
        }
        JobSource::Image(i) => format!("image {}", i.image),
    }
}

fn list_table(jobs: &[JobView]) -> Table {
    let mut t = Table::with_header(["JOB", "VERSION", "ALIASES", "SOURCE", "CREATED"]);
    for j in jobs {
        t.row([
            format!("{}/{}", j.project, j.name),
            format!("v{}", j.version),
            j.aliases.join(","),
            source_summary(&j.source),
            output::time_ms(j.created_at_ms),
        ]);
    }
    t
}

fn show_table(j: &JobView) -> Table {
    let mut t = Table::key_values();
    t.row(["job:".to_string(), j.full_name()]);
    t.row(["aliases:".to_string(), j.aliases.join(", ")]);
    t.row(["source:".to_string(), source_summary(&j.source)]);
    if let JobSource::Code(c) = &j.source {
        t.row(["digest:", c.digest.as_str()]);
    }
    if let JobSource::Image(i) = &j.source
        && !i.args.is_empty()
    {
        t.row([
            "args:".to_string(),
            shlex::try_join(i.args.iter().map(String::as_str)).unwrap_or_else(|_| i.args.join(" ")),
        ]);
    }
    let ep = j.source.entrypoint();
    if !ep.is_empty() {
        t.row([
            "entrypoint:".to_string(),
            shlex::try_join(ep.iter().map(String::as_str)).unwrap_or_else(|_| ep.join(" ")),
        ]);
    }
    t.row(["runtime:".to_string(), output::opt(j.runtime.as_deref())]);
    t.row(["created:".to_string(), output::time_ms(j.created_at_ms)]);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_names() {
        assert_eq!(git_name("https://github.com/acme/train-net.git").as_deref(), Some("train-net"));
        assert_eq!(git_name("git@github.com:acme/repo.git/").as_deref(), Some("repo"));
        assert_eq!(git_name("https://alice:t0ken@git.example.com").as_deref(), Some("git.example.com"));
        assert_eq!(image_name("ghcr.io:5000/acme/trainer:1.2@sha256:ab").as_deref(), Some("trainer"));
        assert_eq!(image_name("busybox").as_deref(), Some("busybox"));
        assert_eq!(sanitize(".my dir!"), "my-dir-");
    }

    #[test]
    fn splits_entrypoints() {
        assert_eq!(split_entrypoint("python 'main file.py' -x").unwrap(), ["python", "main file.py", "-x"]);
        assert!(split_entrypoint("python 'oops").unwrap_err().to_string().contains("-E"));
        assert!(split_entrypoint("  ").is_err());
    }
}
