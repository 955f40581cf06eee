//! `liftoff permissions -c launch-config.yaml`: the least-privilege grants the
//! configuration needs (an IAM policy, a GCP custom role, Azure role
//! assignments), scoped to its repository and build-context store, and with
//! `--runner sagemaker`/`--runner vertex` what those runners call, and with
//! `--runner kubernetes` the agent service account's RBAC Role and ClusterRole.

use crate::cmd::config::read_bounded;
use crate::output::{Format, FormatArg};
use anyhow::bail;
use clap::Args;
use liftoff_core::launch_config;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PermissionsArgs {
    /// The launch-config.yaml to read.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// A runner the agent serves queues of (`kubernetes`: its RBAC Role; `sagemaker`, `vertex`): its grants are added. Repeatable.
    #[arg(long = "runner", value_name = "TYPE")]
    runners: Vec<liftoff_core::ResourceType>,
    #[command(flatten)]
    format: FormatArg,
}

pub fn run(args: PermissionsArgs) -> anyhow::Result<()> {
    let cfg = match read_bounded(&args.config).and_then(|t| launch_config::check_file_text(&t)) {
        Ok(r) => r.config,
        Err(issues) => {
            for i in &issues {
                eprintln!("error: {i}");
            }
            bail!("{} is not a valid launch config ({} error(s))", args.config.display(), issues.len());
        }
    };
    let p = liftoff_cloud::permissions_with_runners(&cfg, &args.runners);
    let out = match args.format.format {
        Format::Json => serde_json::to_string_pretty(&p)? + "\n",
        Format::Text => p.render_text(),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
