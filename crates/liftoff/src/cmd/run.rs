//! `liftoff run`: list, show, follow the logs of, stop and re-prioritise runs
//! (run-queue items).

use crate::connect::Globals;
use crate::output::{self, FormatArg, Table};
use anyhow::Context;
use clap::{Args, Subcommand};
use liftoff_client::{Client, ClientError, RunEvent, RunEvents};
use liftoff_core::api::{ItemView, LogChunk, LogStream};
use liftoff_core::{ItemTransition, Priority, TransitionCause};
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum RunCmd {
    /// List runs, newest first.
    List(ListArgs),
    /// Show one run.
    Show {
        /// Run-queue item id.
        id: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Print a run's output.
    Logs {
        /// Run-queue item id.
        id: String,
        /// Keep printing until the run ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Ask a run to stop.
    Stop {
        /// Run-queue item id.
        id: String,
    },
    /// Change a pending run's priority (refused once an agent claimed it).
    Priority {
        /// Run id or run-queue item id.
        id: String,
        /// critical, high, medium or low.
        priority: Priority,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs of this queue.
    #[arg(short, long, value_name = "QUEUE")]
    queue: Option<String>,
    /// Only runs launched by this key name (or key id, for a key without a name).
    #[arg(long, value_name = "NAME")]
    launched_by: Option<String>,
    /// Most runs to list (1 to 1000, the server's bound).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
    limit: i64,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(globals: &Globals, cmd: RunCmd) -> anyhow::Result<()> {
    let client = globals.client()?;
    match cmd {
        RunCmd::List(a) => {
            let items = client
                .list_items_launched_by(a.queue.as_deref(), a.launched_by.as_deref(), a.limit)
                .await
                .context("failed to list runs")?;
            output::emit(a.format.format, &items, |is| list_table(is))
        }
        RunCmd::Show { id, format } => {
            let item = client.get_item(&id).await.with_context(|| format!("failed to get run '{id}'"))?;
            let history = client
                .item_history(&item.id)
                .await
                .with_context(|| format!("failed to get the history of run '{id}'"))?;
            output::emit(format.format, &item, |i| {
                let mut t = show_table(i);
                history_rows(&mut t, &history);
                t
            })
        }
        RunCmd::Logs { id, follow } => print_logs(&client, &id, follow).await,
        RunCmd::Stop { id } => {
            let item = client.stop_item(&id).await.with_context(|| format!("failed to stop run '{id}'"))?;
            println!("{}", item.state);
            Ok(())
        }
        RunCmd::Priority { id, priority } => {
            let item = client
                .set_priority(&id, priority)
                .await
                .with_context(|| format!("failed to change the priority of run '{id}'"))?;
            println!("{}", item.priority);
            Ok(())
        }
    }
}

/// Prints the run's log chunks (stderr chunks to stderr, the rest to stdout).
/// With `follow`, prints them as the run writes them (from its event
/// stream), until it ends; then, when a person watches (stderr is a
/// terminal), the build's output is a spinner with its latest step instead
/// of a scroll of lines.
pub async fn print_logs(client: &Client, id: &str, follow: bool) -> anyhow::Result<()> {
    let context = || format!("failed to read the logs of run '{id}'");
    let mut build = BuildProgress::new(follow && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if follow {
        let mut live = LiveLog::new(client, id);
        while let Some(chunk) = live.next().await.with_context(context)? {
            write_chunks(&mut build, std::slice::from_ref(&chunk), ALL_BUT_STDERR)?;
        }
        build.finish();
        return Ok(());
    }
    let mut after = 0;
    loop {
        let page = client.read_logs(id, after).await.with_context(context)?;
        write_chunks(&mut build, &page.chunks, ALL_BUT_STDERR)?;
        after = page.next_seq;
        if page.complete || page.chunks.is_empty() {
            build.finish();
            return Ok(());
        }
    }
}

/// What `run logs` prints on stdout: every stream but the job's stderr.
const ALL_BUT_STDERR: &[LogStream] = &[LogStream::Stdout, LogStream::Agent, LogStream::Build];

/// Prints log chunks: those of `to_stdout`'s streams on stdout, the rest on stderr.
pub(crate) fn write_chunks(
    build: &mut BuildProgress,
    chunks: &[LogChunk],
    to_stdout: &[LogStream],
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for chunk in chunks {
        if build.show(chunk.stream, &chunk.data) {
            continue;
        }
        if to_stdout.contains(&chunk.stream) {
            out.write_all(chunk.data.as_bytes())?;
        } else {
            err.write_all(chunk.data.as_bytes())?;
        }
    }
    out.flush()?;
    err.flush()
}

/// A run's log chunks from its start, as they are written, until the run
/// ends: read from the run's event stream (which resumes by itself after a
/// broken connection), skipping its state changes.
pub struct LiveLog {
    events: RunEvents,
}

impl LiveLog {
    pub fn new(client: &Client, id: &str) -> Self {
        Self { events: client.run_events(id, None) }
    }

    /// The next chunk; `None` once the run ended and its whole log was read.
    pub async fn next(&mut self) -> Result<Option<LogChunk>, ClientError> {
        loop {
            match self.events.next().await? {
                Some(RunEvent::Log(chunk)) => return Ok(Some(chunk)),
                Some(RunEvent::Transition(_) | RunEvent::End { .. }) => {}
                None => return Ok(None),
            }
        }
    }
}

/// The state timeline: when, what, and who caused it.
fn history_rows(t: &mut Table, history: &[ItemTransition]) {
    for (n, h) in history.iter().enumerate() {
        let who = match (h.cause, &h.agent_id) {
            (TransitionCause::Agent, Some(agent)) => format!("agent {agent}"),
            (cause, _) => cause.as_str().to_string(),
        };
        let label = if n == 0 { "history:" } else { "" };
        t.row([label.to_string(), format!("{}  {} -> {} ({who})", output::time_ms(h.at_ms), h.event, h.to)]);
    }
}

fn list_table(items: &[ItemView]) -> Table {
    let mut t = Table::with_header(["ITEM", "RUN", "QUEUE", "STATE", "PRIORITY", "ATTEMPTS", "EXIT", "REASON"]);
    for i in items {
        t.row([
            i.id.clone(),
            i.run_id.clone(),
            i.queue.clone(),
            i.state.to_string(),
            i.priority.to_string(),
            i.attempts.to_string(),
            output::opt(i.exit_code),
            i.reason.as_deref().map(|r| output::truncate(r, 40)).unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

fn show_table(i: &ItemView) -> Table {
    let mut t = Table::key_values();
    t.row(["item:", &i.id]).row(["run:", &i.run_id]).row(["queue:", &i.queue]);
    t.row(["state:", i.state.as_str()]).row(["priority:", i.priority.as_str()]);
    t.row(["job:", &i.spec.job]);
    t.row(["launched by:".to_string(), output::opt(i.launched_by.as_deref())]);
    let ep = i.spec.entrypoint.iter().chain(&i.spec.args).map(String::as_str);
    t.row(["command:".to_string(), shlex::try_join(ep).unwrap_or_default()]);
    t.row(["attempts:".to_string(), i.attempts.to_string()]);
    t.row(["agent:".to_string(), output::opt(i.agent_id.as_deref())]);
    t.row(["exit code:".to_string(), output::opt(i.exit_code)]);
    t.row(["reason:".to_string(), output::opt(i.reason.as_deref())]);
    if let Some(stage) = i.stage {
        t.row(["failed at:".to_string(), format!("{stage} (the error log is in `liftoff run logs {}`)", i.run_id)]);
    }
    if i.resumes > 0 {
        t.row(["resumes:".to_string(), format!("{} (preempted and re-queued)", i.resumes)]);
    }
    if let Some(b) = &i.build {
        t.row([
            "image:".to_string(),
            format!("{} ({} by {} in {:.1} s)", b.image, b.how.as_str(), b.builder, b.seconds),
        ]);
    }
    for w in &i.warnings {
        t.row(["warning:".to_string(), format!("[{}] {}", w.stage, w.message)]);
    }
    t.row(["created:".to_string(), output::time_ms(i.created_at_ms)]);
    t.row(["started:".to_string(), output::opt(i.started_at_ms.map(output::time_ms))]);
    t.row(["ended:".to_string(), output::opt(i.ended_at_ms.map(output::time_ms))]);
    t
}

/// The build stage of a followed log, shown as one updating line.
pub(crate) struct BuildProgress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    lines: usize,
}

impl BuildProgress {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { bar: None, enabled, lines: 0 }
    }

    /// Takes a chunk: `true` when it was shown here (a build line on a
    /// terminal). Any other chunk ends the build's display first.
    fn show(&mut self, stream: LogStream, data: &str) -> bool {
        if !self.enabled {
            return false;
        }
        if stream != LogStream::Build {
            self.finish();
            return false;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} building ({elapsed}): {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        for line in data.lines().filter(|l| !l.trim().is_empty()) {
            self.lines += 1;
            bar.set_message(line.trim().to_string());
        }
        true
    }

    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            eprintln!("build: {} lines (the whole build log: `liftoff run logs` without -f)", self.lines);
        }
    }
}
