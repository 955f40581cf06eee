//! `sagemaker-fake`: the SageMaker training-job API fake as a server (see
//! `liftoff_testkit::fakes::sagemaker` and the crate's README).

use clap::Parser;
use liftoff_testkit::fakes::sagemaker::{SageMakerFake, SageMakerFakeOptions};
use std::time::Duration;

/// A fake of SageMaker's training-job API (JSON 1.1, SigV4-checked) for trying Liftoff without AWS.
///
/// Point the agent at it with AWS_ENDPOINT_URL_SAGEMAKER=<url>, and at a CloudWatch Logs
/// (the moto server) with AWS_ENDPOINT_URL_CLOUDWATCH_LOGS. Drive a job with
/// `curl -X POST <url>/_fake/jobs/<name>/state -d '{"status":"Completed"}'` and write its
/// output with `curl -X POST <url>/_fake/jobs/<name>/logs -d '{"lines":["hello"]}'`;
/// `GET <url>/_fake/jobs` lists the jobs and the calls received.
#[derive(Parser)]
#[command(name = "sagemaker-fake")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9050")]
    listen: String,
    /// The access key id requests must be signed with.
    #[arg(long, default_value = "testing")]
    access_key: String,
    /// The secret key requests must be signed with.
    #[arg(long, default_value = "testing")]
    secret_key: String,
    /// The region requests must be scoped to.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The CloudWatch Logs endpoint (e.g. moto) job output is written to.
    #[arg(long, value_name = "URL")]
    logs_endpoint: Option<String>,
    /// Milliseconds a stopped job stays Stopping.
    #[arg(long, default_value_t = 300)]
    stop_delay_ms: u64,
    /// Run every job by itself: Training at once, a line a second, Completed after SECS.
    #[arg(long, value_name = "SECS")]
    auto: Option<u64>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let fake = SageMakerFake::start(SageMakerFakeOptions {
        access_key: a.access_key,
        secret_key: a.secret_key,
        region: a.region,
        logs_endpoint: a.logs_endpoint,
        stop_delay: Duration::from_millis(a.stop_delay_ms),
        auto_complete: a.auto.map(Duration::from_secs),
        listen: a.listen,
    })
    .await?;
    println!("sagemaker-fake listening on {}", fake.url);
    tokio::signal::ctrl_c().await
}
