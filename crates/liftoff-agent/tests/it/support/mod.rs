//! A real server on loopback, a client, and helpers to make jobs, launch
//! them, run agents and read what happened. Shared by the agent's tests.

use liftoff_agent::{AgentOptions, run_agent};
use liftoff_client::Client;
use liftoff_core::ResourceType;
use liftoff_core::api::{CreateJob, CreateQueue, ItemView, LaunchRequest, LogStream};
use liftoff_core::job::{CodeSource, GitSource, ImageSource, JobSourceSpec};
use liftoff_server::{RunningServer, ServerConfig, start};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running agent: its shutdown signal and its task.
pub type Agent = (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>);

/// Shuts `agent` down and checks it ended cleanly.
pub async fn stop_agent(agent: Agent) {
    agent.0.send(()).unwrap();
    agent.1.await.unwrap().unwrap();
}

pub struct Rig {
    pub server: RunningServer,
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub work: std::path::PathBuf,
}

/// A server with one `local-process` queue named `local`.
pub async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().join("server"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.print_admin_key = false;
    cfg.lease_ttl = Duration::from_secs(3);
    let server = start(cfg).await.unwrap();
    let client = Client::new(&server.base_url(), server.admin_key.as_deref().unwrap(), "default").unwrap();
    let work = dir.path().join("work");
    let r = Rig { server, client, dir, work };
    r.queue("local", ResourceType::LocalProcess, serde_json::json!({})).await;
    r
}

impl Rig {
    /// A queue whose config the server refuses at its door (an unsafe or
    /// unknown option), written straight into the store, as an older server
    /// may have left one: the agent checks every spec again.
    pub async fn queue_unchecked(&self, name: &str, resource: ResourceType, config: serde_json::Value) {
        let db = format!("sqlite://{}", self.dir.path().join("server").join("liftoff.db").display());
        let store = liftoff_store::SqlStore::connect(&db, 1).await.unwrap();
        let queue = liftoff_core::Queue {
            entity: "default".into(),
            name: name.into(),
            resource,
            config,
            template_variables: vec![],
            prioritization: false,
            created_at_ms: 1,
        };
        liftoff_store::Store::create_queue(&store, &queue).await.unwrap();
        let refused = self
            .client
            .create_queue(&CreateQueue {
                name: format!("{name}-checked"),
                resource,
                config: queue.config.clone(),
                template_variables: vec![],
                prioritization: false,
            })
            .await;
        assert!(
            matches!(refused, Err(liftoff_client::ClientError::Api { status: 422, .. })),
            "the server refuses this config itself: {refused:?}"
        );
    }

    pub async fn queue(&self, name: &str, resource: ResourceType, config: serde_json::Value) {
        self.client
            .create_queue(&CreateQueue {
                name: name.into(),
                resource,
                config,
                template_variables: vec![],
                prioritization: false,
            })
            .await
            .unwrap();
    }

    /// A code job whose `run.sh` is `script`, run as `sh run.sh`.
    pub async fn job(&self, name: &str, script: &str) {
        self.code_job(name, script, None).await;
    }

    /// A code job, optionally on a base image (for local-container queues).
    pub async fn code_job(&self, name: &str, script: &str, base_image: Option<&str>) {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("run.sh"), script).unwrap();
        let gz = liftoff_archive::pack_dir(src.path()).unwrap();
        let digest = liftoff_archive::sha256_digest(&gz);
        self.client.upload_blob(&digest, gz).await.unwrap();
        let source = JobSourceSpec {
            code: Some(CodeSource {
                digest,
                entrypoint: vec!["sh".into(), "run.sh".into()],
                build_context: None,
                dockerfile: None,
                base_image: base_image.map(str::to_string),
            }),
            ..Default::default()
        };
        self.create_job(name, source).await;
    }

    pub async fn image_job(&self, name: &str, image: &str, args: &[&str]) {
        let source = JobSourceSpec {
            image: Some(ImageSource { image: image.into(), args: args.iter().map(|a| a.to_string()).collect() }),
            ..Default::default()
        };
        self.create_job(name, source).await;
    }

    /// A git job whose remote accepts connections and never answers, so its
    /// fetch hangs until cancelled. Drop (abort) the handle to close the listener.
    pub async fn hanging_git_job(&self, name: &str) -> JoinHandle<()> {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = vec![];
            while let Ok((sock, _)) = silent.accept().await {
                held.push(sock);
            }
        });
        let source = JobSourceSpec {
            git: Some(GitSource {
                remote: format!("https://127.0.0.1:{port}/repo.git"),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                entrypoint: vec!["sh".into(), "run.sh".into()],
                diff_patch: None,
                build_context: None,
                dockerfile: None,
                base_image: None,
            }),
            ..Default::default()
        };
        self.create_job(name, source).await;
        hold
    }

    pub async fn create_job(&self, name: &str, source: JobSourceSpec) {
        let req = CreateJob { project: "default".into(), name: name.into(), source, aliases: vec![], runtime: None };
        self.client.create_job(&req).await.unwrap();
    }

    pub async fn launch(&self, job: &str) -> String {
        self.launch_on("local", job).await
    }

    pub async fn launch_on(&self, queue: &str, job: &str) -> String {
        let req = LaunchRequest { job: job.into(), run_config: serde_json::json!({"lr": 0.5}), ..Default::default() };
        self.client.launch(queue, &req).await.unwrap().item_id
    }

    /// Options for an agent on the `local` queue, with short timers.
    pub fn options(&self, max_jobs: i64, grace: Duration) -> AgentOptions {
        AgentOptions {
            queues: vec!["local".into()],
            max_jobs,
            work_dir: self.work.clone(),
            grace,
            stop_timeout: grace,
            claim_wait: Duration::from_secs(5),
            heartbeat: Duration::from_millis(300),
            hostname: "test".into(),
            lock_dir: self.dir.path().to_path_buf(),
            ..AgentOptions::default()
        }
    }

    pub fn agent(
        &self,
        max_jobs: i64,
        grace: Duration,
    ) -> (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>) {
        self.agent_with(self.options(max_jobs, grace))
    }

    pub fn agent_with(
        &self,
        opts: AgentOptions,
    ) -> (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>) {
        self.agent_as(self.client.clone(), opts)
    }

    /// An agent that reaches the server at `base_url` (a proxy in front of
    /// it), with the admin key.
    pub fn agent_via(
        &self,
        base_url: &str,
        opts: AgentOptions,
    ) -> (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>) {
        let key = self.server.admin_key.as_deref().expect("the rig's server printed its admin key");
        self.agent_as(Client::new(base_url, key, "default").unwrap(), opts)
    }

    fn agent_as(
        &self,
        client: Client,
        opts: AgentOptions,
    ) -> (oneshot::Sender<()>, JoinHandle<Result<(), liftoff_agent::AgentError>>) {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_agent(client, opts, async move {
            let _ = rx.await;
        }));
        (tx, task)
    }

    /// A real agent serving queue `k8s` with key `agent_key`, its runners
    /// the local ones plus the kubernetes runner on the cluster `kubeconfig` names.
    pub fn kube_agent(&self, kubeconfig: &std::path::Path, agent_key: &str) -> Agent {
        use liftoff_run::kubernetes::{ClusterSource, KubernetesRunner};
        let opts = AgentOptions {
            queues: vec!["k8s".into()],
            agent_key: agent_key.into(),
            ..self.options(4, Duration::from_secs(2))
        };
        let mut registry = liftoff_agent::local_runners(&opts, &liftoff_run::SharedEngine::new(None));
        let cluster = ClusterSource::Kubeconfig(kubeconfig.to_path_buf());
        registry.register(std::sync::Arc::new(KubernetesRunner::new(cluster, None)));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(liftoff_agent::run_agent_with(self.client.clone(), opts, registry, async move {
            let _ = rx.await;
        }));
        (tx, task)
    }

    pub async fn wait_for(&self, id: &str, pred: impl Fn(&ItemView) -> bool, within: Duration) -> ItemView {
        let until = Instant::now() + within;
        loop {
            let item = self.client.get_item(id).await.unwrap();
            if pred(&item) {
                return item;
            }
            assert!(Instant::now() < until, "timed out waiting; item is {:?} ({:?})", item.state, item.reason);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn logs(&self, id: &str, stream: LogStream) -> String {
        let mut out = String::new();
        let mut after = 0;
        loop {
            let page = self.client.read_logs(id, after).await.unwrap();
            for c in &page.chunks {
                assert_eq!(c.seq, after, "chunks come back in sequence without gaps");
                after += 1;
                if c.stream == stream {
                    out.push_str(&c.data);
                }
            }
            if page.chunks.is_empty() {
                return out;
            }
        }
    }
}

pub use liftoff_testkit::required_env;
