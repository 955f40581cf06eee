//! Setup the server's tests share: a job and an agent made through the real
//! client.

use liftoff_client::Client;
use liftoff_core::api::{CreateJob, JobView, RegisterAgent};
use liftoff_core::job::{ImageSource, JobSourceSpec};

/// Job `name`: the prebuilt image `busybox:1`, no arguments.
pub async fn image_job(c: &Client, name: &str) -> JobView {
    c.create_job(&CreateJob {
        project: "default".into(),
        name: name.into(),
        source: JobSourceSpec {
            image: Some(ImageSource { image: "busybox:1".into(), args: vec![] }),
            ..Default::default()
        },
        aliases: vec![],
        runtime: None,
    })
    .await
    .unwrap()
}

/// Registers an agent on `queues` with no job limit; returns its id.
pub async fn agent(c: &Client, queues: &[&str]) -> String {
    let req = RegisterAgent {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        hostname: "t".into(),
        max_jobs: -1,
        version: "t".into(),
    };
    c.register_agent(&req).await.unwrap().id
}
