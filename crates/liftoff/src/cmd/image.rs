//! `liftoff image prune`: deletes the images Liftoff left in a repository
//! (its content-tagged `lf-*` tags) that are older than a given age, keeping
//! the newest few, through the registry's Distribution API (manifest
//! DELETE); the registry's own garbage collection then frees their blobs.
//!
//! Three kinds of images are told apart: dependency images (`lf-deps-*`),
//! images built whole, and code images appended to a dependency image
//! (labelled with it). An appended image's `created` is its dependency
//! image's (appends are reproducible), so its age is not its own: it goes
//! exactly when its dependency image goes, and is kept as long as that one
//! is. Dependency images and whole builds are judged by their own
//! `created`: the newest `--keep-last` of each kind are kept whatever their
//! age, the rest deleted when older than `--older-than`. A manifest that a
//! tag of anyone else's (not `lf-*`) also names is never deleted.

use crate::cmd::config::read_bounded;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use liftoff_build::append::{CONFIG_LIMIT, DEPENDENCIES_LABEL, DEPENDENCY_TAG_PREFIX};
use liftoff_build::registry::{Destination, OciRegistry, SharedRegistry};
use liftoff_core::launch_config;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Tags Liftoff makes: `lf-<hex>` and `lf-deps-<hex>`.
const LIFTOFF_TAG_PREFIX: &str = "lf-";
/// Registry requests in flight at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Delete the images Liftoff made in a repository that are older than
    /// --older-than, keeping the newest --keep-last of each kind.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The repository, `host[:port]/path`, reached with the docker config's
    /// credentials (`$DOCKER_CONFIG`, else ~/.docker).
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    repository: Option<String>,
    /// Prune the builder's destination of this launch-config.yaml instead,
    /// logged in as the agent is (ECR, Artifact Registry, ACR through its environment).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Delete images created longer ago than this: `30d`, `12h`, `45m`, `90s`.
    #[arg(long, value_parser = parse_age)]
    older_than: Duration,
    /// Keep the newest N dependency images and the newest N whole builds,
    /// whatever their age.
    #[arg(long, default_value_t = 0)]
    keep_last: usize,
    /// List what would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `30d`, `12h`, `45m`, `90s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("'{text}' is not an age such as 30d, 12h, 45m or 90s"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("'{text}' is not an age such as 30d, 12h, 45m or 90s (units: d, h, m, s)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// One `lf-*` tag and what its image is.
#[derive(Debug, Clone)]
struct Tagged {
    tag: String,
    digest: String,
    created: Option<jiff::Timestamp>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Dependencies,
    Built,
    /// Appended to the dependency image of this tag.
    Appended {
        dependencies: String,
    },
}

impl Kind {
    /// The order kinds are shown in.
    fn rank(&self) -> u8 {
        match self {
            Kind::Dependencies => 0,
            Kind::Appended { .. } => 1,
            Kind::Built => 2,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Kind::Dependencies => "dependencies",
            Kind::Built => "built",
            Kind::Appended { .. } => "appended",
        }
    }
}

/// What prune decided for a tag, and why.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    delete: bool,
    why: String,
}

pub async fn run(cmd: ImageCmd) -> anyhow::Result<()> {
    let ImageCmd::Prune(args) = cmd;
    let registry = registry(&args).await?;
    eprintln!("reading the tags of {}", registry.describe());
    let tags = registry.tags().await.context("could not list the repository's tags")?;
    let (ours, others): (Vec<String>, Vec<String>) = tags.into_iter().partition(|t| t.starts_with(LIFTOFF_TAG_PREFIX));
    let mut images: Vec<Tagged> =
        futures::stream::iter(ours.iter().cloned().map(|tag| describe(registry.clone(), tag)))
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
    // shown by kind, newest first
    images.sort_by(|a, b| a.kind.rank().cmp(&b.kind.rank()).then(b.created.cmp(&a.created)).then(a.tag.cmp(&b.tag)));
    // manifests that tags of anyone else's name too are not ours to delete
    let foreign: BTreeSet<String> = futures::stream::iter(others.iter().cloned().map(|tag| {
        let registry = registry.clone();
        async move { registry.manifest_digest(&tag).await }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_filter_map(|d| async move { Ok(d) })
    .try_collect()
    .await?;
    let now = jiff::Timestamp::now();
    let verdicts = decide(&images, &foreign, now, args.older_than, args.keep_last);

    let mut deleted = 0;
    let mut gone: BTreeSet<&str> = BTreeSet::new();
    println!("{:<12} {:<12} {:<34} {:<23} WHY", "", "KIND", "TAG", "CREATED");
    for image in &images {
        let v = &verdicts[&image.tag];
        let created =
            image.created.map(|c| c.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or("unknown".into());
        let what = match (v.delete, args.dry_run) {
            (false, _) => "keep",
            (true, true) => "would delete",
            (true, false) => "delete",
        };
        println!("{what:<12} {:<12} {:<34} {created:<23} {}", image.kind.name(), image.tag, v.why);
        if v.delete && !args.dry_run && gone.insert(&image.digest) {
            registry
                .delete_manifest(&image.digest)
                .await
                .with_context(|| format!("could not delete {} ({})", image.tag, image.digest))?;
            deleted += 1;
        }
    }
    let doomed = images.iter().filter(|i| verdicts[&i.tag].delete).count();
    if args.dry_run {
        println!("dry run: {doomed} of {} Liftoff images would be deleted; nothing was", images.len());
    } else {
        println!(
            "deleted {deleted} manifests ({doomed} tags) of {} Liftoff images; the registry frees their blobs when it \
             collects garbage (`registry garbage-collect` for the Distribution registry; ECR, Artifact Registry and \
             ACR do it themselves)",
            images.len()
        );
    }
    if !others.is_empty() {
        println!("{} tags not made by Liftoff were left alone", others.len());
    }
    Ok(())
}

/// The registry to prune: a repository named on the command line, or a
/// launch config's destination.
async fn registry(args: &PruneArgs) -> anyhow::Result<SharedRegistry> {
    if let Some(repository) = &args.repository {
        let (host, path) = repository
            .split_once('/')
            .filter(|(h, p)| !h.is_empty() && !p.is_empty())
            .with_context(|| format!("'{repository}' is not a repository: expected host[:port]/path"))?;
        if path.contains(':') || path.contains('@') {
            bail!("'{repository}' names a tag or digest: give the repository alone (host[:port]/path)");
        }
        return Ok(Arc::new(OciRegistry::new(host, path, docker_config_dir())?));
    }
    let file = args.config.as_ref().context("a repository or --config")?;
    let checked = read_bounded(file).and_then(|t| launch_config::check_file_text(&t)).map_err(|issues| {
        anyhow::anyhow!(
            "{} is not a valid launch config: {}",
            file.display(),
            issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        )
    })?;
    let env = liftoff_cloud::CloudEnv::resolve(checked.config.environment.as_ref())
        .await
        .context("could not set up the config's environment")?;
    let chosen = liftoff_build::registry::from_config(&checked.config, &env, None).await?;
    match chosen.destination {
        Destination::Registry(r) => Ok(r),
        Destination::LocalEngine => {
            bail!("{} has no registry (builder.destination): its images stay in the engine", file.display())
        }
    }
}

fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// Reads `tag`'s manifest and config: its digest, time and kind. `None`
/// when the tag went away meanwhile.
async fn describe(registry: SharedRegistry, tag: String) -> anyhow::Result<Option<Tagged>> {
    let Some(manifest) = registry.manifest(&tag).await? else { return Ok(None) };
    let parsed: serde_json::Value =
        serde_json::from_slice(&manifest.bytes).with_context(|| format!("{tag}: the manifest is not JSON"))?;
    let mut created = None;
    let mut dependencies = None;
    if let Some(config) = parsed.pointer("/config/digest").and_then(|d| d.as_str()) {
        let bytes = registry.blob(config, CONFIG_LIMIT).await?;
        let config: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("{tag}: the image config is not JSON"))?;
        created = config.get("created").and_then(|c| c.as_str()).and_then(|c| c.parse().ok());
        dependencies = config
            .pointer(&format!("/config/Labels/{}", DEPENDENCIES_LABEL.replace('~', "~0").replace('/', "~1")))
            .and_then(|l| l.as_str())
            .and_then(|l| l.split('@').next())
            .and_then(|r| r.rsplit_once(':'))
            .map(|(_, t)| t.to_string());
    }
    let kind = match dependencies {
        _ if tag.starts_with(DEPENDENCY_TAG_PREFIX) => Kind::Dependencies,
        Some(dependencies) => Kind::Appended { dependencies },
        None => Kind::Built,
    };
    Ok(Some(Tagged { tag, digest: manifest.digest, created, kind }))
}

/// The verdict for every tag (see the module documentation).
fn decide(
    images: &[Tagged],
    foreign: &BTreeSet<String>,
    now: jiff::Timestamp,
    older_than: Duration,
    keep_last: usize,
) -> BTreeMap<String, Verdict> {
    let cutoff = now.checked_sub(jiff::SignedDuration::try_from(older_than).unwrap_or(jiff::SignedDuration::MAX)).ok();
    let mut out = BTreeMap::new();
    for kind in [Kind::Dependencies, Kind::Built] {
        let mut of_kind: Vec<&Tagged> = images.iter().filter(|i| i.kind == kind).collect();
        // newest first; an unknown time counts as newest (nothing is deleted for want of a date)
        of_kind.sort_by(|a, b| {
            let newest_first = match (a.created, b.created) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            };
            newest_first.then(a.tag.cmp(&b.tag))
        });
        for (rank, image) in of_kind.into_iter().enumerate() {
            let verdict = match image.created {
                _ if rank < keep_last => Verdict { delete: false, why: format!("among the {keep_last} newest") },
                None => Verdict { delete: false, why: "its config gives no time".into() },
                Some(c) if cutoff.is_none_or(|cut| c >= cut) => {
                    Verdict { delete: false, why: format!("newer than {}", humanize(older_than)) }
                }
                Some(_) => Verdict { delete: true, why: format!("older than {}", humanize(older_than)) },
            };
            out.insert(image.tag.clone(), verdict);
        }
    }
    for image in images {
        if let Kind::Appended { dependencies } = &image.kind {
            let verdict = match out.get(dependencies) {
                Some(v) if v.delete => {
                    Verdict { delete: true, why: format!("its dependency image {dependencies} goes") }
                }
                Some(_) => Verdict { delete: false, why: format!("its dependency image {dependencies} stays") },
                None => Verdict { delete: false, why: format!("its dependency image {dependencies} is not here") },
            };
            out.insert(image.tag.clone(), verdict);
        }
    }
    // a manifest goes only if every tag naming it goes, and no foreign tag names it
    for image in images {
        let shared_keep = images.iter().any(|o| o.digest == image.digest && !out[&o.tag].delete);
        if out[&image.tag].delete && (foreign.contains(&image.digest) || shared_keep) {
            let why = if foreign.contains(&image.digest) {
                "a tag not made by Liftoff names the same image"
            } else {
                "another kept tag names the same image"
            };
            out.insert(image.tag.clone(), Verdict { delete: false, why: why.into() });
        }
    }
    out
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(86_400) && s > 0 => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) && s > 0 => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) && s > 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str, digest: &str, days_ago: i64, kind: Kind) -> Tagged {
        let now: jiff::Timestamp = "2026-12-06T00:00:00Z".parse().unwrap();
        let created = Some(now.checked_sub(jiff::SignedDuration::from_hours(24 * days_ago)).unwrap());
        Tagged { tag: tag.into(), digest: digest.into(), created, kind }
    }

    #[test]
    fn ages_parse_and_anything_else_is_refused() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        for bad in ["", "30", "d", "3w", "-1d", "1.5h"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn old_images_go_the_newest_stay_and_appended_ones_follow_their_dependencies() {
        let now: jiff::Timestamp = "2026-12-06T00:00:00Z".parse().unwrap();
        let deps = |d: &str| Kind::Appended { dependencies: d.into() };
        let images = vec![
            image("lf-deps-old", "sha256:d1", 40, Kind::Dependencies),
            image("lf-deps-older", "sha256:d2", 50, Kind::Dependencies),
            image("lf-deps-new", "sha256:d3", 2, Kind::Dependencies),
            image("lf-a1", "sha256:a1", 40, deps("lf-deps-old")),
            image("lf-a2", "sha256:a2", 50, deps("lf-deps-older")),
            image("lf-a3", "sha256:a3", 2, deps("lf-deps-new")),
            image("lf-b-old", "sha256:b1", 31, Kind::Built),
            image("lf-b-new", "sha256:b2", 29, Kind::Built),
            image("lf-b-shared", "sha256:x", 60, Kind::Built),
        ];
        let foreign = BTreeSet::from(["sha256:x".to_string()]);
        let v = decide(&images, &foreign, now, Duration::from_secs(30 * 86_400), 2);
        let deleted: Vec<&str> = images.iter().filter(|i| v[&i.tag].delete).map(|i| i.tag.as_str()).collect();
        assert_eq!(deleted, vec!["lf-deps-older", "lf-a2"]);
        assert_eq!(v["lf-deps-old"].why, "among the 2 newest");
        assert_eq!(v["lf-a1"].why, "its dependency image lf-deps-old stays");
        assert_eq!(v["lf-a2"].why, "its dependency image lf-deps-older goes");
        assert_eq!(v["lf-b-shared"].why, "a tag not made by Liftoff names the same image");
        let v = decide(&images, &foreign, now, Duration::from_secs(30 * 86_400), 0);
        assert!(v["lf-deps-old"].delete && v["lf-a1"].delete && v["lf-b-old"].delete);
        assert!(!v["lf-deps-new"].delete && !v["lf-a3"].delete && !v["lf-b-new"].delete);
    }
}
