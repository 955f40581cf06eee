//! `liftoff launch`: puts a job on a queue. The job is named (`-j`), or
//! made in the same step from a directory, a git commit or an image; with
//! `--follow` or `--wait` the command stays until the run ends and exits
//! with its exit code.

mod source;
mod watch;

use crate::cmd::job::{BuildArgs, split_entrypoint};
use crate::connect::Globals;
use crate::output::{Format, FormatArg};
use anyhow::{Context, bail};
use clap::Args;
use liftoff_core::Priority;
use liftoff_core::api::{LaunchRequest, empty_object};
use source::Origin;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes with --follow or --wait:
  the job's own exit code   the run's command ran (0 when it finished)
  122                       the run was stopped
  123                       the run was preempted more often than it may be re-queued
  125                       the run failed before its command started (source, build, image,
                            agent), or without an exit code of its own
  130                       Ctrl-C: the command stopped watching and left the run as it was
  1                         liftoff itself failed (bad input, server unreachable)
Without them: 0 once the run is queued.";

#[derive(Debug, Args)]
#[command(after_long_help = EXIT_CODES)]
pub struct LaunchArgs {
    /// Queue to put the run on.
    #[arg(short, long, value_name = "QUEUE")]
    queue: String,
    /// A directory to run: packed as a code job's archive and made a new
    /// version of the job named after it (or -n), unless the latest version
    /// already holds the same archive and command.
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// An existing job to run: `[[entity/]project/]name[:alias]`.
    #[arg(short, long, value_name = "JOB")]
    job: Option<String>,
    /// A git repository to run (with --commit), made a job version like a PATH.
    #[arg(long, value_name = "URL", requires = "commit")]
    git: Option<String>,
    /// The commit of --git to run.
    #[arg(long, value_name = "SHA", requires = "git")]
    commit: Option<String>,
    /// An image to run, made a job version like a PATH.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// The job's name for a PATH, --git or --image [default: from the source].
    #[arg(short = 'n', long, value_name = "NAME")]
    name: Option<String>,
    /// The job's project for a PATH, --git or --image.
    #[arg(short = 'p', long, default_value = "default", value_name = "PROJECT")]
    project: String,
    /// Python version the job expects (PATH or --git), e.g. 3.11.
    #[arg(long, value_name = "V")]
    runtime: Option<String>,
    #[command(flatten)]
    build: BuildArgs,
    /// The command: a PATH's or commit's entrypoint (kept from the latest
    /// version when omitted), or the command overriding a job's or image's.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
    /// Command overriding the job's entrypoint, e.g. "python train.py" (one
    /// string, split as a shell would; the words after `--` do the same).
    #[arg(short = 'E', long, value_name = "ENTRYPOINT")]
    entrypoint: Option<String>,
    /// Arguments appended to the entrypoint.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "ARG")]
    args: Vec<String>,
    /// JSON (or YAML, by extension) file holding the run config object.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Queue template variable, `key=value` (repeatable).
    #[arg(long = "set-var", value_name = "KEY=VALUE")]
    set_vars: Vec<String>,
    /// Item priority: critical, high, medium or low.
    #[arg(long)]
    priority: Option<Priority>,
    /// Run id to use instead of a generated one.
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// `PATH=FILE`: merge the object in FILE (JSON, or YAML by extension) into
    /// the run's config file PATH (relative, .json/.yaml/.yml); repeatable.
    #[arg(long = "file-override", value_name = "PATH=FILE")]
    file_overrides: Vec<String>,
    /// Print the run's log and state changes until it ends, then exit with
    /// its exit code (see the exit codes below).
    #[arg(short, long, conflicts_with = "wait")]
    follow: bool,
    /// Wait for the run to end (state changes only), then exit with its exit code.
    #[arg(long)]
    wait: bool,
    /// On Ctrl-C while following or waiting, stop the run (and wait for it
    /// to stop) without asking [default: ask on a terminal, else leave it running].
    #[arg(long)]
    stop_on_interrupt: bool,
    /// `json`: print the run's view on stdout (its final view with --follow,
    /// whose log then goes to stderr, or --wait).
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(globals: &Globals, args: LaunchArgs) -> anyhow::Result<ExitCode> {
    let template_variables = parse_set_vars(&args.set_vars)?;
    let command = match (&args.entrypoint, args.command.is_empty()) {
        (Some(_), false) => bail!("give the command once: after `--` or with -E, not both"),
        (Some(e), true) => Some(split_entrypoint(e)?),
        (None, false) => Some(args.command.clone()),
        (None, true) => None,
    };
    let run_config = match &args.config {
        Some(path) => serde_json::Value::Object(crate::input::read_object_file(path)?),
        None => empty_object(),
    };
    let file_overrides = parse_file_overrides(&args.file_overrides)?;
    let origin = origin(&args)?;
    let client = globals.client()?;
    let (job, entrypoint) = match origin {
        None => (args.job.clone().unwrap_or_default(), command),
        Some(origin) => {
            // the queue first: a launch that cannot happen makes no job version
            client.get_queue(&args.queue).await.with_context(|| format!("cannot launch on queue '{}'", args.queue))?;
            let is_image = matches!(origin, Origin::Image(_));
            // A directory's or commit's command is its job's entrypoint; an image's overrides.
            let (job_command, launch_command) = if is_image { (None, command) } else { (command, None) };
            let ensured = source::ensure_job(
                &client,
                origin,
                args.name.as_deref(),
                &args.project,
                job_command,
                args.build,
                args.runtime.clone(),
            )
            .await?;
            (ensured, launch_command)
        }
    };
    let req = LaunchRequest {
        job,
        entrypoint,
        args: args.args,
        run_config,
        template_variables,
        priority: args.priority,
        run_id: args.run_id,
        file_overrides,
    };
    let resp = client
        .launch(&args.queue, &req)
        .await
        .with_context(|| format!("failed to launch '{}' on queue '{}'", req.job, args.queue))?;
    let json = args.format.format == Format::Json;
    let show = match (args.follow, args.wait, json) {
        (true, _, false) => watch::Show::Log,
        (true, _, true) => watch::Show::LogToStderr,
        (false, true, _) => watch::Show::States,
        (false, false, _) => {
            if json {
                let item = client.get_item(&resp.item_id).await.context("failed to read the launched run")?;
                crate::output::print_json(&item)?;
            } else {
                println!("{}", resp.item_id);
            }
            eprintln!("run id: {}", resp.run_id);
            return Ok(ExitCode::SUCCESS);
        }
    };
    eprintln!("item: {}", resp.item_id);
    eprintln!("run: {}", resp.run_id);
    let (item, code) = watch::watch(&client, &resp.item_id, &resp.run_id, show, args.stop_on_interrupt).await?;
    if let (true, Some(item)) = (json, item) {
        crate::output::print_json(&item)?;
    }
    Ok(ExitCode::from(code))
}

/// What to make a job version from; `None` for `-j JOB`.
fn origin(args: &LaunchArgs) -> anyhow::Result<Option<Origin>> {
    let given: Vec<&str> = [
        args.path.as_ref().map(|_| "PATH"),
        args.job.as_ref().map(|_| "-j"),
        args.git.as_ref().map(|_| "--git"),
        args.image.as_ref().map(|_| "--image"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.as_slice() {
        [_] => {}
        [] => bail!("name what to run: a PATH, -j JOB, --git URL --commit SHA or --image IMAGE"),
        many => bail!("name one thing to run, not {}", many.join(" and ")),
    }
    let build_given =
        args.build.dockerfile.is_some() || args.build.build_context.is_some() || args.build.base_image.is_some();
    if args.job.is_some() {
        if args.name.is_some() || args.project != "default" || args.runtime.is_some() || build_given {
            bail!(
                "-n, -p, --runtime, --dockerfile, --build-context and --base-image make a job version: use them with a PATH, --git or --image, not -j"
            );
        }
        return Ok(None);
    }
    if args.image.is_some() && (args.runtime.is_some() || build_given) {
        bail!("--runtime, --dockerfile, --build-context and --base-image apply to a PATH or --git, not --image");
    }
    Ok(Some(match (&args.path, &args.git, &args.commit, &args.image) {
        (Some(p), ..) => {
            if !p.is_dir() {
                bail!("{} is not a directory (PATH is a directory of code to run)", p.display());
            }
            Origin::Dir(p.clone())
        }
        (_, Some(url), Some(commit), _) => Origin::Git { url: url.clone(), commit: commit.clone() },
        (.., Some(image)) => Origin::Image(image.clone()),
        _ => bail!("--git needs --commit SHA"),
    }))
}

fn parse_file_overrides(pairs: &[String]) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((path, file)) = pair.split_once('=').filter(|(p, f)| !p.is_empty() && !f.is_empty()) else {
            bail!("--file-override must look like PATH=FILE, got: {pair}");
        };
        let doc = crate::input::read_object_file(std::path::Path::new(file))?;
        out.insert(path.to_string(), serde_json::Value::Object(doc));
    }
    Ok(out)
}

/// `k=v` pairs; values go as JSON strings and the server casts them to the variable's type.
fn parse_set_vars(pairs: &[String]) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let mut vars = BTreeMap::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                vars.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            _ => bail!("--set-var value must be in the format \"--set-var key1=value1\", instead got: {pair}"),
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_states_the_exit_codes_the_command_uses() {
        for (code, what) in [
            (watch::EXIT_STOPPED, "stopped"),
            (watch::EXIT_PREEMPTED, "preempted"),
            (watch::EXIT_FAILED_BEFORE_START, "failed before its command started"),
            (watch::EXIT_INTERRUPTED, "Ctrl-C"),
        ] {
            let line = EXIT_CODES
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{code} ")))
                .unwrap_or_else(|| panic!("no line for {code}"));
            assert!(line.contains(what), "{code}: {line}");
        }
    }

    #[test]
    fn parses_set_vars() {
        let v = parse_set_vars(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(v["a"], "1");
        assert_eq!(v["b"], "x=y");
        let e = parse_set_vars(&["foo".into()]).unwrap_err().to_string();
        assert!(e.contains("instead got: foo"), "{e}");
        assert!(parse_set_vars(&["=v".into()]).is_err());
    }
}
