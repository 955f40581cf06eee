//! `liftoff launch`: puts a job on a queue and prints the run-queue item id.

use crate::connect::Globals;
use anyhow::{Context, bail};
use clap::Args;
use liftoff_core::Priority;
use liftoff_core::api::{LaunchRequest, empty_object};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Queue to put the run on.
    #[arg(short, long, value_name = "QUEUE")]
    queue: String,
    /// Job to run: `[[entity/]project/]name[:alias]`.
    #[arg(short, long, value_name = "JOB")]
    job: String,
    /// Command overriding the job's entrypoint, e.g. "python train.py".
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
}

pub async fn run(globals: &Globals, args: LaunchArgs) -> anyhow::Result<()> {
    let template_variables = parse_set_vars(&args.set_vars)?;
    let entrypoint = args.entrypoint.as_deref().map(super::job::split_entrypoint).transpose()?;
    let run_config = match &args.config {
        Some(path) => serde_json::Value::Object(crate::input::read_object_file(path)?),
        None => empty_object(),
    };
    let req = LaunchRequest {
        job: args.job,
        entrypoint,
        args: args.args,
        run_config,
        template_variables,
        priority: args.priority,
        run_id: args.run_id,
        file_overrides: parse_file_overrides(&args.file_overrides)?,
    };
    let client = globals.client()?;
    let resp = client
        .launch(&args.queue, &req)
        .await
        .with_context(|| format!("failed to launch '{}' on queue '{}'", req.job, args.queue))?;
    println!("{}", resp.item_id);
    eprintln!("run id: {}", resp.run_id);
    Ok(())
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
    fn parses_set_vars() {
        let v = parse_set_vars(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(v["a"], "1");
        assert_eq!(v["b"], "x=y");
        let e = parse_set_vars(&["foo".into()]).unwrap_err().to_string();
        assert!(e.contains("instead got: foo"), "{e}");
        assert!(parse_set_vars(&["=v".into()]).is_err());
    }
}
