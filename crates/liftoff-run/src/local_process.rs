//! The `local-process` [`Runner`]: the entrypoint as a process group on the
//! agent's host, under the supervisor (see [`crate::process`]).

use crate::process::{self, ProcessSpec, RunAs, RunningProcess};
use crate::runner::{Adoptable, BuiltImage, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob};
use crate::{JobError, JobErrorCode};
use async_trait::async_trait;
use liftoff_core::process_options::{self, ProcessOptions};
use liftoff_core::{JobSource, ResourceType, Stage};
use std::time::Duration;

/// Runs jobs as local processes; holds what every one of them shares.
pub struct LocalProcessRunner {
    /// The supervisor binary (`liftoff-supervisor`, or `liftoff`), run as `BINARY __supervise`.
    pub supervisor: Option<std::path::PathBuf>,
    /// Local processes run as this user instead of the agent's.
    pub run_as: Option<RunAs>,
}

#[async_trait]
impl Runner for LocalProcessRunner {
    fn resource(&self) -> ResourceType {
        ResourceType::LocalProcess
    }

    fn runs_remotely(&self) -> bool {
        false
    }

    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError> {
        let spec = &req.item.spec;
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        if let JobSource::Image(i) = &spec.source {
            problems.push(format!("cannot run image '{}' with the local-process runner", i.image));
        }
        let options = match process_options::parse(&req.resource_args) {
            Ok(o) => o,
            Err(errors) => {
                problems.extend(errors.iter().map(ToString::to_string));
                ProcessOptions::default()
            }
        };
        if !options.ignored.is_empty() {
            warnings.push(format!(
                "the local-process runner takes only \"env\" in resource_args; ignored: {}",
                options.ignored.join(", ")
            ));
        }
        let command: Vec<String> = spec.entrypoint.iter().chain(spec.args.iter()).cloned().collect();
        if command.is_empty() {
            problems.push("the job has no entrypoint to run".to_string());
        }
        if !problems.is_empty() {
            return Err(JobError::new(Stage::Agent, JobErrorCode::Spec, problems.join("; ")));
        }
        // the run's own variables win: a queue cannot change who the run is
        let mut env: std::collections::BTreeMap<String, String> = options.env.into_iter().collect();
        env.extend(req.env.clone());
        let process = ProcessSpec {
            command,
            dir: req.dir.to_path_buf(),
            env,
            supervisor: self.supervisor.clone(),
            run_as: self.run_as.clone(),
        };
        Ok(Plan::new(!matches!(spec.source, JobSource::Image(_)), warnings, process))
    }

    async fn prepare(&self, plan: Plan, _built: Option<BuiltImage>, _logs: &LogSender) -> Result<Prepared, JobError> {
        let process: ProcessSpec = plan.into_work()?;
        let c = &process.command;
        let description = shlex::try_join(c.iter().map(String::as_str)).unwrap_or_else(|_| c.join(" "));
        Ok(Prepared::new(vec![], description, process))
    }

    async fn start(&self, prepared: Prepared, logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError> {
        let process: ProcessSpec = prepared.into_work()?;
        let running = process::spawn(&process, logs.clone())
            .map_err(|e| JobError::from_chain(Stage::Run, JobErrorCode::Start, &e))?;
        Ok(Box::new(ProcessJob(running)))
    }

    /// Nothing: a local process dies with its agent (see ARCHITECTURE.md).
    async fn adopt(&self, _agent_key: &str) -> Result<Vec<Adoptable>, JobError> {
        Ok(Vec::new())
    }
}

struct ProcessJob(RunningProcess);

#[async_trait]
impl RunningJob for ProcessJob {
    async fn wait(&mut self) -> Result<i32, JobError> {
        match self.0.wait().await {
            Ok(status) => Ok(process::exit_code(status)),
            Err(e) => Err(wait_failed(e)),
        }
    }

    async fn stop(&mut self, grace: Duration) -> Result<i32, JobError> {
        self.0
            .stop(grace)
            .await
            .map(process::exit_code)
            .map_err(|e| JobError::new(Stage::Run, JobErrorCode::Stop, format!("failed to stop the run: {e}")))
    }

    /// A local process cannot outlive its agent: letting go of it kills it
    /// (the agent never detaches a local runner's runs).
    async fn detach(self: Box<Self>) {}

    async fn cleanup(self: Box<Self>) {}
}

fn wait_failed(e: std::io::Error) -> JobError {
    JobError::new(Stage::Run, JobErrorCode::Wait, format!("failed to wait for the run: {e}"))
}
