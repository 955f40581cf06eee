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
    /// With `--runner kubernetes`: a custom resource a queue's runs (or
    /// additional services) are, as `<group>/<plural>` (`batch.volcano.sh/jobs`,
    /// `kubeflow.org/pytorchjobs`): the Role gains a rule for it. Repeatable.
    #[arg(long = "custom-resource", value_name = "GROUP/PLURAL")]
    custom_resources: Vec<String>,
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
    let mut p = liftoff_cloud::permissions_with_runners(&cfg, &args.runners);
    if !args.custom_resources.is_empty() {
        if !args.runners.contains(&liftoff_core::ResourceType::Kubernetes) {
            bail!("--custom-resource needs --runner kubernetes");
        }
        for r in &args.custom_resources {
            let Some((group, plural)) = r.split_once('/').filter(|(g, p)| !g.is_empty() && !p.is_empty()) else {
                bail!("--custom-resource '{r}': expected <group>/<plural>, as batch.volcano.sh/jobs");
            };
            if let Some(rules) = p.kubernetes.first_mut().and_then(|role| role["rules"].as_array_mut()) {
                rules.push(liftoff_cloud::kube_rbac::custom_resource_rule(group, plural));
            }
        }
    }
    let out = match args.format.format {
        Format::Json => serde_json::to_string_pretty(&p)? + "\n",
        Format::Text => p.render_text(),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
