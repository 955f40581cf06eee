//! `liftoff queue`: create, list and show queues.

use crate::connect::Globals;
use crate::output::{self, FormatArg, Table};
use anyhow::Context;
use clap::{Args, Subcommand};
use liftoff_core::api::{CreateQueue, empty_object};
use liftoff_core::{Queue, ResourceType, TemplateVariable};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Create a queue.
    Create(CreateArgs),
    /// List the entity's queues.
    List(FormatArg),
    /// Show one queue.
    Show {
        name: String,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// Where the queue's items run: local-process, local-container, kubernetes, sagemaker or vertex.
    #[arg(long, value_name = "TYPE")]
    resource: ResourceType,
    /// JSON or YAML file: a resource-config object, or {"config": ..., "template_variables": ...}
    /// (a list of variables, or the reference's {name: {schema: {type, minimum, maximum, enum, default}}}).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Claim items by priority instead of first-in first-out.
    #[arg(long)]
    priority: bool,
}

pub async fn run(globals: &Globals, cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::Create(args) => create(globals, args).await,
        QueueCmd::List(f) => {
            let queues = globals.client()?.list_queues().await.context("failed to list queues")?;
            output::emit(f.format, &queues, |qs| list_table(qs))
        }
        QueueCmd::Show { name, format } => {
            let queue =
                globals.client()?.get_queue(&name).await.with_context(|| format!("failed to get queue '{name}'"))?;
            output::emit(format.format, &queue, show_table)
        }
    }
}

async fn create(globals: &Globals, args: CreateArgs) -> anyhow::Result<()> {
    let (config, template_variables) = match &args.config {
        Some(path) => read_queue_config(path)?,
        None => (empty_object(), Vec::new()),
    };
    let req = CreateQueue {
        name: args.name,
        resource: args.resource,
        config,
        template_variables,
        prioritization: args.priority,
    };
    let queue =
        globals.client()?.create_queue(&req).await.with_context(|| format!("failed to create queue '{}'", req.name))?;
    println!("created queue {}/{} ({})", queue.entity, queue.name, queue.resource);
    Ok(())
}

/// The file is the wrapper when all its top-level keys are `config` or
/// `template_variables`; otherwise the whole object is the config.
fn read_queue_config(path: &Path) -> anyhow::Result<(serde_json::Value, Vec<TemplateVariable>)> {
    let mut map = crate::input::read_object_file(path)?;
    let is_wrapper = !map.is_empty() && map.keys().all(|k| k == "config" || k == "template_variables");
    if !is_wrapper {
        return Ok((serde_json::Value::Object(map), Vec::new()));
    }
    let config = map.remove("config").unwrap_or_else(empty_object);
    if !config.is_object() {
        anyhow::bail!("{}: 'config' must be an object", path.display());
    }
    let vars = match map.remove("template_variables") {
        // ours (a list) or the reference's shape (an object of {name: {schema: ...}})
        Some(v) => liftoff_core::queue::template_variables(v)
            .with_context(|| format!("{}: invalid 'template_variables'", path.display()))?,
        None => Vec::new(),
    };
    Ok((config, vars))
}

fn list_table(queues: &[Queue]) -> Table {
    let mut t = Table::with_header(["NAME", "RESOURCE", "PRIORITIZATION", "VARIABLES", "CREATED"]);
    for q in queues {
        let vars: Vec<&str> = q.template_variables.iter().map(|v| v.name.as_str()).collect();
        t.row([
            q.name.clone(),
            q.resource.to_string(),
            if q.prioritization { "on" } else { "off" }.to_string(),
            if vars.is_empty() { "-".to_string() } else { vars.join(",") },
            output::time_ms(q.created_at_ms),
        ]);
    }
    t
}

fn show_table(q: &Queue) -> Table {
    let mut t = Table::key_values();
    t.row(["entity:", &q.entity]).row(["name:", &q.name]).row(["resource:", q.resource.as_str()]);
    t.row(["prioritization:", if q.prioritization { "on" } else { "off" }]);
    t.row(["created:".to_string(), output::time_ms(q.created_at_ms)]);
    t.row(["config:".to_string(), serde_json::to_string(&q.config).unwrap_or_default()]);
    for v in &q.template_variables {
        t.row(["variable:".to_string(), serde_json::to_string(v).unwrap_or_default()]);
    }
    t
}
