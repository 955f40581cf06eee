//! The runner seam from the agent's side: a runner registered for a remote
//! resource type is detached, not stopped, when the agent shuts down, and
//! the next agent with the same key re-adopts its work through the same
//! registry. The "remote service" here is a child process this test
//! controls: it ends when the test creates a file.

use crate::support;

use async_trait::async_trait;
use liftoff_agent::{local_runners, run_agent_with};
use liftoff_core::api::LogStream;
use liftoff_core::{ItemState, ResourceType, Stage};
use liftoff_run::{
    Adoptable, AdoptedWork, JobError, JobErrorCode, LogSender, Plan, Prepared, RunRequest, Runner, RunningJob,
    StoredOutput,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::rig;
use tokio::sync::{oneshot, watch};

/// One run on the "service": its claim and its exit code once it ends.
#[derive(Clone)]
struct Work {
    item_id: String,
    fence: i64,
    run_id: String,
    pid: u32,
    exit: watch::Receiver<Option<i32>>,
}

/// Outlives any one agent, as a cluster does.
#[derive(Default)]
struct Service {
    works: Mutex<HashMap<String, Work>>,
}

struct ChildRunner {
    service: Arc<Service>,
    /// Each run ends (exit 0) once this file exists.
    done_flag: PathBuf,
}

struct Claimed {
    item_id: String,
    fence: i64,
    run_id: String,
}

#[async_trait]
impl Runner for ChildRunner {
    fn resource(&self) -> ResourceType {
        ResourceType::Sagemaker
    }
    fn runs_remotely(&self) -> bool {
        true
    }
    fn check(&self, req: &RunRequest<'_>) -> Result<Plan, JobError> {
        let claimed = Claimed { item_id: req.item.id.clone(), fence: req.item.fence, run_id: req.item.run_id.clone() };
        Ok(Plan::new(false, vec![], claimed))
    }
    async fn prepare(
        &self,
        plan: Plan,
        _built: Option<liftoff_run::BuiltImage>,
        _logs: &LogSender,
    ) -> Result<Prepared, JobError> {
        let claimed: Claimed = plan.into_work()?;
        Ok(Prepared::new(vec![], "a child process".into(), claimed))
    }
    async fn start(&self, prepared: Prepared, _logs: &LogSender) -> Result<Box<dyn RunningJob>, JobError> {
        let Claimed { item_id, fence, run_id } = prepared.into_work()?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg("while [ ! -e \"$0\" ]; do sleep 0.05; done")
            .arg(&self.done_flag)
            // a failed test leaves no loop behind
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| JobError::new(Stage::Run, JobErrorCode::Start, e.to_string()))?;
        let pid = child.id().unwrap();
        let (tx, exit) = watch::channel(None);
        // the service, not the agent, waits for its work
        tokio::spawn(async move {
            let status = child.wait().await.unwrap();
            tx.send_replace(Some(status.code().unwrap_or(-1)));
        });
        let work = Work { item_id: item_id.clone(), fence, run_id, pid, exit };
        self.service.works.lock().unwrap().insert(item_id, work.clone());
        Ok(Box::new(Watched { service: self.service.clone(), work }))
    }
    async fn adopt(&self, _agent_key: &str) -> Result<Vec<Adoptable>, JobError> {
        let works = self.service.works.lock().unwrap();
        Ok(works
            .values()
            .map(|w| Adoptable {
                item_id: w.item_id.clone(),
                fence: w.fence,
                run_id: w.run_id.clone(),
                kind: "child",
                id: w.pid.to_string(),
                running: w.exit.borrow().is_none(),
                work: Box::new(Watched { service: self.service.clone(), work: w.clone() }),
            })
            .collect())
    }
}

struct Watched {
    service: Arc<Service>,
    work: Work,
}

#[async_trait]
impl RunningJob for Watched {
    async fn wait(&mut self) -> Result<i32, JobError> {
        let code = self.work.exit.wait_for(Option::is_some).await.map(|c| c.unwrap());
        code.map_err(|e| JobError::new(Stage::Run, JobErrorCode::Wait, e.to_string()))
    }
    async fn stop(&mut self, _grace: Duration) -> Result<i32, JobError> {
        let pid = nix::unistd::Pid::from_raw(self.work.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        self.wait().await
    }
    async fn detach(self: Box<Self>) {}
    async fn cleanup(self: Box<Self>) {
        self.service.works.lock().unwrap().remove(&self.work.item_id);
    }
}

#[async_trait]
impl AdoptedWork for Watched {
    fn resume(self: Box<Self>, _stored: StoredOutput, _logs: LogSender) -> Box<dyn RunningJob> {
        self
    }
    async fn discard(mut self: Box<Self>) {
        let _ = RunningJob::stop(&mut *self, Duration::ZERO).await;
        self.service.works.lock().unwrap().remove(&self.work.item_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_run_is_detached_at_shutdown_and_re_adopted_by_the_next_agent() {
    let r = rig().await;
    // a config the server takes (the child runner reads none of it)
    let config =
        serde_json::json!({"RoleArn": "r", "OutputDataConfig": {}, "ResourceConfig": {}, "StoppingCondition": {}});
    r.queue("remote", ResourceType::Sagemaker, config).await;
    r.image_job("img", "busybox:1", &[]).await;
    let service = Arc::new(Service::default());
    let done_flag = r.dir.path().join("done");
    let opts =
        liftoff_agent::AgentOptions { queues: vec!["remote".into()], ..r.options(1, Duration::from_millis(200)) };
    let agent = |opts: liftoff_agent::AgentOptions| {
        let mut registry = local_runners(&opts, &liftoff_run::SharedEngine::new(opts.docker_host.clone()));
        registry.register(Arc::new(ChildRunner { service: service.clone(), done_flag: done_flag.clone() }));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_agent_with(r.client.clone(), opts, registry, async move {
            let _ = rx.await;
        }));
        (tx, task)
    };

    let (stop, first) = agent(opts.clone());
    let id = r.launch_on("remote", "img").await;
    let running = r.wait_for(&id, |i| i.state == ItemState::Running, Duration::from_secs(20)).await;
    stop.send(()).unwrap();
    first.await.unwrap().unwrap();

    let item = r.client.get_item(&id).await.unwrap();
    assert_eq!((item.state, item.fence), (ItemState::Running, running.fence), "nothing reported, nothing released");
    let work = service.works.lock().unwrap().get(&id).cloned().expect("the run is still on the service");
    assert_eq!(*work.exit.borrow(), None, "the run goes on without its agent");
    assert!(r.logs(&id, LogStream::Agent).await.contains("the run goes on where it runs"));

    let (stop, second) = agent(opts);
    let adopted = "re-adopted this run's child after an agent restart";
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !r.logs(&id, LogStream::Agent).await.contains(adopted) {
        assert!(std::time::Instant::now() < until, "the second agent did not re-adopt the run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*work.exit.borrow(), None, "adopted while it still ran");
    std::fs::write(&done_flag, "").unwrap();
    let ended = r.wait_for(&id, |i| i.state.is_terminal(), Duration::from_secs(20)).await;
    assert_eq!((ended.state, ended.exit_code), (ItemState::Finished, Some(0)), "{:?}", ended.reason);
    assert!(service.works.lock().unwrap().is_empty(), "cleaned up once it ended");
    stop.send(()).unwrap();
    second.await.unwrap().unwrap();
}
