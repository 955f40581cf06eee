//! The seam between the agent and the places runs execute: a [`Runner`] per
//! resource type checks a job, prepares it, starts it and, after an agent
//! restart, finds the work it left behind; a [`RunningJob`] is watched,
//! stopped, detached or cleaned up. The agent only ever talks to these
//! traits, through [`crate::RunnerRegistry`].

use crate::{JobError, JobErrorCode, LogLine};
use async_trait::async_trait;
use liftoff_core::api::{ItemView, LogStream};
use liftoff_core::{ResourceType, Stage};
use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where a run's log lines go.
pub type LogSender = mpsc::Sender<LogLine>;

/// What a runner is told about a claimed run, once the agent has applied
/// what every runner shares (macros, the run's variables, secure mode's
/// entrypoint lock).
pub struct RunRequest<'a> {
    pub item: &'a ItemView,
    /// The run's own directory on the agent's host (its code, when fetched).
    pub dir: &'a Path,
    /// The run's variables (`LIFTOFF_*`).
    pub env: BTreeMap<String, String>,
    /// The queue's `resource_args` with macros expanded.
    pub resource_args: serde_json::Value,
    /// The image to run: an image job's, or a code or git job's base image.
    pub image: Option<String>,
    /// The agent builds this run's image after fetching its code, and hands
    /// it to [`Runner::prepare`]: `image` is `None` until then.
    pub will_build: bool,
    /// The agent refuses launches that override the entrypoint or command.
    pub secure_mode: bool,
    /// The server as the agent reaches it.
    pub base_url: &'a str,
    /// Stable per agent installation: marks work a restarted agent adopts.
    pub agent_key: &'a str,
    /// This agent process.
    pub agent_id: &'a str,
}

/// A checked job, ready to prepare. `work` is the runner's own plan, given
/// back to the same runner's [`Runner::prepare`].
pub struct Plan {
    /// The job's code must be fetched into the run directory first.
    pub needs_source: bool,
    /// Worth telling the user, not worth failing for.
    pub warnings: Vec<String>,
    work: Box<dyn Any + Send>,
}

impl Plan {
    pub fn new(needs_source: bool, warnings: Vec<String>, work: impl Any + Send) -> Self {
        Self { needs_source, warnings, work: Box::new(work) }
    }

    /// The runner's plan back; a plan made by another runner is a bug.
    pub fn into_work<T: Any>(self) -> Result<T, JobError> {
        downcast(self.work)
    }
}

/// The image the agent built for a run (see [`RunRequest::will_build`]).
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The reference to run: `repo:tag@sha256:...`, or `repo:tag` in the local engine.
    pub image: String,
    /// The command to run in it (the build context may have rewritten the job's).
    pub entrypoint: Vec<String>,
    /// The registry's credentials, for a runner that must pull it.
    pub auth: Option<crate::container::RegistryAuth>,
}

/// A plan whose slow parts (pulling an image) are done.
pub struct Prepared {
    pub warnings: Vec<String>,
    /// What is about to start, for the run's log.
    pub description: String,
    work: Box<dyn Any + Send>,
}

impl Prepared {
    pub fn new(warnings: Vec<String>, description: String, work: impl Any + Send) -> Self {
        Self { warnings, description, work: Box::new(work) }
    }

    pub fn into_work<T: Any>(self) -> Result<T, JobError> {
        downcast(self.work)
    }
}

fn downcast<T: Any>(work: Box<dyn Any + Send>) -> Result<T, JobError> {
    work.downcast::<T>().map(|w| *w).map_err(|_| {
        JobError::new(Stage::Agent, JobErrorCode::Internal, "a plan was handed to a runner that did not make it")
    })
}

/// One kind of resource a run can execute on. Registered once per agent.
#[async_trait]
pub trait Runner: Send + Sync {
    /// The resource type this runner serves.
    fn resource(&self) -> ResourceType;

    /// Whether the run lives outside the agent's host (a cluster, a cloud
    /// service): on agent shutdown such runs are detached and re-adopted by
    /// the next agent, where local ones are stopped.
    fn runs_remotely(&self) -> bool;

    /// Whether runs need an image (so code and git jobs are built when the
    /// agent has a builder); `local-process` runs code as it is.
    fn runs_images(&self) -> bool {
        false
    }

    /// Checks the job against this runner's rules (`resource_args`, image)
    /// without I/O; every problem is reported at once as one
    /// [`JobErrorCode::Spec`] error.
    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError>;

    /// The slow part before the start: pulling an image, uploading code.
    /// `built` is the image the agent built, when the plan was made with
    /// [`RunRequest::will_build`].
    async fn prepare(&self, plan: Plan, built: Option<BuiltImage>, logs: &LogSender) -> Result<Prepared, JobError>;

    /// Starts the run; its output goes to `logs`.
    async fn start(&self, prepared: Prepared, logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError>;

    /// The work an agent with `agent_key` left running or unreported (it
    /// was killed or detached it). The caller holds that key's lock, so no
    /// live agent owns any of it.
    async fn adopt(&self, agent_key: &str) -> Result<Vec<Adoptable>, JobError>;
}

/// A started run.
#[async_trait]
pub trait RunningJob: Send {
    /// The exit code once the run ends, after all its output was read.
    async fn wait(&mut self) -> Result<i32, JobError>;

    /// SIGTERM (or the resource's equivalent), then a kill after `grace`;
    /// the exit code.
    async fn stop(&mut self, grace: Duration) -> Result<i32, JobError>;

    /// Warnings about the run while it goes on (a pod that cannot be
    /// scheduled, an image that cannot be pulled), each to be recorded on
    /// the item; taken once.
    fn warnings(&mut self) -> Option<mpsc::Receiver<String>> {
        None
    }

    /// Lets go of the run without stopping it or releasing anything, so
    /// that [`Runner::adopt`] finds it again.
    async fn detach(self: Box<Self>);

    /// Removes what the run left once it has ended (a container).
    async fn cleanup(self: Box<Self>);
}

/// Work found by [`Runner::adopt`], labelled with the claim it ran under.
pub struct Adoptable {
    pub item_id: String,
    pub fence: i64,
    pub run_id: String,
    /// What it is, for messages: `container`.
    pub kind: &'static str,
    /// Which one, for messages: a short container id.
    pub id: String,
    /// Still running; otherwise it ended while no agent watched.
    pub running: bool,
    pub work: Box<dyn AdoptedWork>,
}

impl Adoptable {
    /// `container 0123456789ab`.
    pub fn what(&self) -> String {
        format!("{} {}", self.kind, self.id)
    }
}

/// Found work, before the agent knows whether its lease is still its own.
#[async_trait]
pub trait AdoptedWork: Send {
    /// Watches it again. Its output is read from the start and `stored`
    /// (what the server holds already) skipped.
    fn resume(self: Box<Self>, stored: StoredOutput, logs: LogSender) -> Box<dyn RunningJob>;

    /// Whether its output lines carry their source (`[<pod>/<container>] `,
    /// several of them writing at once): then the agent counts what the
    /// server holds per source ([`StoredOutput::stdout_by_source`]).
    fn output_by_source(&self) -> bool {
        false
    }

    /// Its lease is gone (another claim owns the run now): stop and remove it.
    async fn discard(self: Box<Self>);
}

/// How many bytes of a run's stdout and stderr the server holds already.
/// Reading a run's output again from its start gives the same bytes in the
/// same order, so skipping that many per stream continues the log exactly
/// where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredOutput {
    pub stdout: u64,
    pub stderr: u64,
    /// For output whose lines carry their source (`[<pod>/<container>] `):
    /// the stdout bytes the server holds per source, prefix included. The
    /// sources' lines, read again from each one's start, interleave in
    /// another order than before, so only a count per source is exact.
    pub stdout_by_source: BTreeMap<String, u64>,
}

/// The source prefix a line starts with, `[<pod>/<container>] ` (names as
/// Kubernetes allows them), if any.
pub fn source_prefix(line: &str) -> Option<&str> {
    let end = line.find("] ")?;
    let inner = line.strip_prefix('[')?.get(..end - 1)?;
    let (pod, container) = inner.split_once('/')?;
    let name = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    (name(pod) && name(container)).then(|| &line[..end + 2])
}

/// Counts stored stdout per source prefix, fed the stored text in pieces
/// (a line may straddle two).
#[derive(Debug, Default)]
pub struct SourceCounter {
    partial: String,
    pub counts: BTreeMap<String, u64>,
}

impl SourceCounter {
    pub fn push(&mut self, text: &str) {
        self.partial.push_str(text);
        let mut rest = std::mem::take(&mut self.partial);
        while let Some(i) = rest.find('\n') {
            let line: String = rest.drain(..=i).collect();
            self.count(&line);
        }
        self.partial = rest;
    }

    /// The counts, the last line counted even without its newline.
    pub fn finish(mut self) -> BTreeMap<String, u64> {
        let last = std::mem::take(&mut self.partial);
        self.count(&last);
        self.counts
    }

    fn count(&mut self, line: &str) {
        if let Some(p) = source_prefix(line) {
            *self.counts.entry(p.to_string()).or_default() += line.len() as u64;
        }
    }
}

impl StoredOutput {
    /// [`Self::pass`] for a line of `source` (its prefix, `""` for none):
    /// skipped by that source's count when counts per source are known.
    pub fn pass_from(&mut self, stream: LogStream, source: &str, line: String) -> Option<String> {
        if stream != LogStream::Stdout || source.is_empty() || self.stdout_by_source.is_empty() {
            return self.pass(stream, line);
        }
        let left = self.stdout_by_source.entry(source.to_string()).or_default();
        skip(left, line)
    }

    /// `line` less whatever of it is already stored; `None` if all of it is.
    pub fn pass(&mut self, stream: LogStream, line: String) -> Option<String> {
        let left = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
            LogStream::Agent | LogStream::Build => return Some(line),
        };
        skip(left, line)
    }
}

/// `line` less the `left` bytes of it already stored, counting them down.
fn skip(left: &mut u64, line: String) -> Option<String> {
    if *left == 0 {
        return Some(line);
    }
    if line.len() as u64 <= *left {
        *left -= line.len() as u64;
        return None;
    }
    let mut cut = *left as usize;
    // stored counts end between characters; stay on one if they do not
    while !line.is_char_boundary(cut) {
        cut += 1;
    }
    *left = 0;
    Some(line[cut..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_output_of_several_sources_is_skipped_per_source() {
        let mut counter = SourceCounter::default();
        // as the server holds it: the sources interleaved, a line cut across two chunks
        counter.push("[p-0/ps] one\n[p-1/wor");
        counter.push("ker] uno\n[INFO] not a source\n[p-0/ps] two\n");
        let counts = counter.finish();
        assert_eq!(counts.get("[p-0/ps] "), Some(&26));
        assert_eq!(counts.get("[p-1/worker] "), Some(&17));
        assert_eq!(counts.len(), 2, "{counts:?}");
        let mut stored = StoredOutput { stdout: 43, stdout_by_source: counts, ..StoredOutput::default() };
        // read again, the other source first: each is skipped by its own count
        let mut pass = |src: &str, line: &str| stored.pass_from(LogStream::Stdout, src, format!("{src}{line}"));
        assert_eq!(pass("[p-1/worker] ", "uno\n"), None);
        assert_eq!(pass("[p-1/worker] ", "dos\n").as_deref(), Some("[p-1/worker] dos\n"));
        assert_eq!(pass("[p-0/ps] ", "one\n"), None);
        assert_eq!(pass("[p-0/ps] ", "two\n"), None);
        assert_eq!(pass("[p-0/ps] ", "three\n").as_deref(), Some("[p-0/ps] three\n"));
        assert_eq!(pass("[p-2/ps] ", "new\n").as_deref(), Some("[p-2/ps] new\n"), "a source with nothing stored");
        assert_eq!(source_prefix("[a/b]x"), None);
        assert_eq!(source_prefix("[A/b] x"), None);
        assert_eq!(source_prefix("[a.b-1/c-2] x"), Some("[a.b-1/c-2] "));
    }

    #[test]
    fn stored_output_is_skipped_per_stream_and_exactly() {
        let mut stored = StoredOutput { stdout: 8, stderr: 2, ..StoredOutput::default() };
        let mut pass = |stream, line: &str| stored.pass(stream, line.to_string());
        assert_eq!(pass(LogStream::Stdout, "one\n"), None);
        assert_eq!(pass(LogStream::Agent, "agent\n").as_deref(), Some("agent\n"), "not the run's output");
        assert_eq!(pass(LogStream::Stderr, "é\n").as_deref(), Some("\n"), "two of é's bytes were stored");
        assert_eq!(pass(LogStream::Stdout, "two\n"), None);
        assert_eq!(pass(LogStream::Stdout, "three\n").as_deref(), Some("three\n"));
        assert_eq!(pass(LogStream::Stderr, "x\n").as_deref(), Some("x\n"));
        let mut split = StoredOutput { stdout: 3, ..StoredOutput::default() };
        assert_eq!(split.pass(LogStream::Stdout, "abcdef".into()).as_deref(), Some("def"), "a line stored in part");
        let mut mid = StoredOutput { stdout: 1, ..StoredOutput::default() };
        assert_eq!(mid.pass(LogStream::Stdout, "éa".into()).as_deref(), Some("a"), "never cut inside a character");
    }

    #[test]
    fn a_plan_goes_back_only_to_the_runner_that_made_it() {
        let plan = Plan::new(false, vec![], 7u32);
        assert_eq!(plan.into_work::<u32>(), Ok(7));
        let e = Plan::new(false, vec![], 7u32).into_work::<String>().unwrap_err();
        assert_eq!((e.stage, e.code), (Stage::Agent, JobErrorCode::Internal));
    }
}
