//! `liftoff config`: checks a launch-config.yaml and prints its JSON Schema.
//! A bad file (missing, unreadable, too large, invalid) always exits 1.

use crate::output::{Format, FormatArg};
use anyhow::bail;
use clap::Subcommand;
use liftoff_core::launch_config::{self, AgentConfig, ConfigIssue, MAX_FILE_BYTES};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `liftoff config check FILE` and `liftoff config schema`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Check a launch-config.yaml: every error, with its field, value, line and column.
    Check {
        /// The file to check.
        file: PathBuf,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Print the JSON Schema (draft 2020-12) of launch-config.yaml.
    Schema,
}

/// What `config check --format json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    valid: bool,
    errors: &'a [ConfigIssue],
    warnings: &'a [ConfigIssue],
    config: Option<&'a AgentConfig>,
}

/// Runs a `config` subcommand; an invalid file is an error (exit 1) after its report is printed.
pub fn run(cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Check { file, format } => check(&file, format.format),
        ConfigCmd::Schema => {
            let mut s = serde_json::to_string_pretty(&launch_config::json_schema())?;
            s.push('\n');
            write_stdout(&s)
        }
    }
}

fn check(file: &Path, format: Format) -> anyhow::Result<()> {
    let result = read_bounded(file).and_then(|text| launch_config::check_file_text(&text));
    let (errors, warnings, config) = match &result {
        Ok(r) => (&[][..], &r.warnings[..], Some(&r.config)),
        Err(e) => (&e[..], &[][..], None),
    };
    let out = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&Report { valid: config.is_some(), errors, warnings, config })?;
            s.push('\n');
            s
        }
        Format::Text => {
            let mut s = String::new();
            if let Some(c) = config {
                s.push_str(&format!("ok: {}\n", summary(c)));
            }
            for e in errors {
                s.push_str(&format!("error: {e}\n"));
            }
            for w in warnings {
                s.push_str(&format!("warning: {w}\n"));
            }
            s
        }
    };
    write_stdout(&out)?;
    if !errors.is_empty() {
        let n = errors.len();
        bail!("{} is not a valid launch config ({n} error{})", file.display(), if n == 1 { "" } else { "s" });
    }
    Ok(())
}

/// The file's text, or an issue saying why it cannot be read; never more than
/// [`MAX_FILE_BYTES`] + 1 bytes are read.
pub(crate) fn read_bounded(file: &Path) -> Result<String, Vec<ConfigIssue>> {
    let fail = |m: String| vec![ConfigIssue::new("", None, m)];
    let f = std::fs::File::open(file).map_err(|e| fail(format!("failed to read {}: {e}", file.display())))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("failed to read {}: {e}", file.display())))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "{} is larger than 1 MiB ({MAX_FILE_BYTES} bytes), the most a launch config may be",
            file.display()
        )));
    }
    String::from_utf8(bytes).map_err(|e| fail(format!("{} is not valid utf-8: {e}", file.display())))
}

/// One line: `entity acme, queues a, b; max_jobs 2; builder docker -> <destination>`.
fn summary(c: &AgentConfig) -> String {
    let entity = c.entity.as_deref().map_or("entity from the api key".to_string(), |e| format!("entity {e}"));
    let queues = if c.queues.is_empty() { "no queues".to_string() } else { format!("queues {}", c.queues.join(", ")) };
    let max_jobs = c.max_jobs.map_or("unlimited".to_string(), |n| n.to_string());
    let mut s = format!("{entity}, {queues}; max_jobs {max_jobs}");
    if let Some(b) = &c.builder {
        s.push_str(&format!("; builder {}", b.builder_type.as_str()));
        if let Some(d) = &b.destination {
            s.push_str(&format!(" -> {d}"));
        }
    }
    if let Some(e) = &c.environment {
        s.push_str(&format!("; environment {}", e.type_name()));
    }
    if let Some(r) = c.registry.as_ref().and_then(|r| r.uri.as_ref()) {
        s.push_str(&format!("; registry {r}"));
    }
    s
}

fn write_stdout(s: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(s.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
