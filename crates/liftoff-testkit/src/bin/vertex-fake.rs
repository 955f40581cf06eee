//! `vertex-fake`: the Vertex AI CustomJob and Cloud Logging fake as a
//! server (see `liftoff_testkit::fakes::vertex` and the crate's README).

use clap::Parser;
use liftoff_testkit::fakes::vertex::{VertexFake, VertexFakeOptions};
use std::time::Duration;

/// A fake of Vertex AI's CustomJob REST API, Cloud Logging's entries:list and an OAuth token
/// endpoint, for trying Liftoff without GCP.
///
/// Write the printed credentials to a file and point GOOGLE_APPLICATION_CREDENTIALS at it, and
/// point the agent at the fake with LIFTOFF_VERTEX_ENDPOINT=<url> and LIFTOFF_LOGGING_ENDPOINT=<url>.
/// Drive a job with `curl -X POST <url>/_fake/jobs/<id>/state -d '{"state":"JOB_STATE_RUNNING"}'`
/// and write its output with `curl -X POST <url>/_fake/jobs/<id>/logs -d '{"lines":["hello"]}'`.
#[derive(Parser)]
#[command(name = "vertex-fake")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9060")]
    listen: String,
    /// The project the printed credentials name.
    #[arg(long, default_value = "my-project")]
    project: String,
    /// Milliseconds a cancelled job stays JOB_STATE_CANCELLING.
    #[arg(long, default_value_t = 300)]
    cancel_delay_ms: u64,
    /// Run every job by itself: RUNNING at once, a line a second, SUCCEEDED after SECS.
    #[arg(long, value_name = "SECS")]
    auto: Option<u64>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let fake = VertexFake::start(VertexFakeOptions {
        listen: a.listen,
        cancel_delay: Duration::from_millis(a.cancel_delay_ms),
        auto_complete: a.auto.map(Duration::from_secs),
    })
    .await?;
    println!("vertex-fake listening on {}", fake.url);
    println!("credentials (GOOGLE_APPLICATION_CREDENTIALS):\n{}", fake.credentials_json(&a.project));
    tokio::signal::ctrl_c().await
}
