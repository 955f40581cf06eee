//! [`WatchedJob`]: one Job followed to its end by the runner's monitor,
//! its pods' lines sent to a chosen log stream. The `kaniko` builder uses
//! it for its build Jobs (the `build` stream); runs use the monitor directly.

use super::monitor::{self, End, LogSink};
use crate::runner::{LogSender, StoredOutput};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use liftoff_core::api::LogStream;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A Job being watched; the watch ends when this is dropped.
pub struct WatchedJob {
    end: watch::Receiver<Option<End>>,
    warnings: Option<mpsc::Receiver<String>>,
    task: JoinHandle<()>,
}

impl WatchedJob {
    /// Watches Job `namespace/name`, its pods' lines to `logs` as `stream`.
    pub fn start(client: &Client, namespace: &str, name: &str, stream: LogStream, logs: LogSender) -> Self {
        let (tx, end) = watch::channel(None);
        let (wtx, warnings) = mpsc::channel(16);
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let sink = LogSink { logs, stored: Arc::new(Mutex::new(StoredOutput::default())), stream };
        let task =
            tokio::spawn(monitor::monitor(jobs, pods, name.to_string(), format!("job-name={name}"), sink, wtx, tx));
        Self { end, warnings: Some(warnings), task }
    }

    /// A pending pod's reasons (unschedulable, image pull), each time they
    /// change; `None` after the first call.
    pub fn take_warnings(&mut self) -> Option<mpsc::Receiver<String>> {
        self.warnings.take()
    }

    /// How the Job ended, once its pods' logs are read (`None`: the watch died).
    pub async fn ended(&mut self) -> Option<End> {
        self.end.wait_for(Option::is_some).await.ok().and_then(|s| s.clone())
    }
}

impl Drop for WatchedJob {
    fn drop(&mut self) {
        self.task.abort();
    }
}
