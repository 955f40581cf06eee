//! `kube-fake`: the Kubernetes API server fake as a server (see
//! `liftoff_testkit::fakes::kubernetes` and the crate's README).

use clap::Parser;
use liftoff_testkit::fakes::kubernetes::{KanikoRig, KubeFake, KubeFakeOptions};
use std::path::PathBuf;
use std::time::Duration;

/// A fake of the Kubernetes API server (namespaces, Jobs with a Job controller, Pods and their
/// logs, Secrets, any namespaced custom resource; list, watch, delete with propagation), for
/// trying Liftoff's kubernetes runner and kubectl without a cluster.
///
/// Nothing runs: pods stay Pending until driven, e.g.
/// `curl -X POST <url>/_fake/namespaces/default/pods/<pod>/status -d '{"phase":"Running"}'`
/// (also `{"phase":"Pending","reason":"Unschedulable","message":"..."}`,
/// `{"phase":"Failed","exitCode":3}`, `{"phase":"Failed","disruption":"EvictionByEvictionAPI"}`),
/// and write their output with
/// `curl -X POST <url>/_fake/namespaces/default/pods/<pod>/log -d '{"lines":["hello"]}'`.
/// `POST <url>/_fake/expire` makes every older resourceVersion 410 Gone and ends open watches.
#[derive(Parser)]
#[command(name = "kube-fake")]
struct Args {
    /// Where to write a kubeconfig for the fake (current context set, namespace `default`),
    /// once it answers.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Address to listen on (default: a free loopback port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// More namespaces to create besides `default`.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// A custom resource to serve, as installing its CRD would:
    /// `<group>/<version>/<Kind>/<plural>` (`batch.volcano.sh/v1alpha1/Job/jobs`,
    /// `kubeflow.org/v1/PyTorchJob/pytorchjobs`: these two have controllers). Repeatable.
    #[arg(long = "crd", value_name = "G/V/KIND/PLURAL")]
    crds: Vec<String>,
    /// Run every pod by itself: Running at once, a line, Succeeded after SECS.
    #[arg(long, value_name = "SECS")]
    auto: Option<u64>,
    /// Build kaniko Jobs on this Docker engine (`unix:///...`) and push them
    /// to their `--destination`, the context read from its object store.
    #[arg(long, value_name = "URL")]
    docker_host: Option<String>,
    /// The S3 endpoint (moto) for kaniko contexts of pods without `S3_ENDPOINT`.
    #[arg(long, value_name = "URL", requires = "docker_host")]
    s3_endpoint: Option<String>,
    /// Read Azure Blob kaniko contexts from azurite (127.0.0.1:10000).
    #[arg(long, requires = "docker_host")]
    azurite: bool,
    /// Read gs:// kaniko contexts from this GCS (base URL, e.g. a GCP fake), with a token
    /// from the mounted service-account key's token_uri.
    #[arg(long, value_name = "URL", requires = "docker_host")]
    gcs_endpoint: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let fake = KubeFake::start(KubeFakeOptions {
        listen: a.listen,
        auto_complete: a.auto.map(Duration::from_secs),
        kaniko: a.docker_host.map(|docker_host| KanikoRig {
            docker_host,
            s3_endpoint: a.s3_endpoint,
            azurite: a.azurite,
            gcs_endpoint: a.gcs_endpoint,
            gate: None,
        }),
        ..KubeFakeOptions::default()
    })
    .await?;
    for crd in &a.crds {
        match crd.split('/').collect::<Vec<_>>()[..] {
            [g, v, k, p] if !g.is_empty() && !v.is_empty() && !k.is_empty() && !p.is_empty() => {
                fake.add_crd(g, v, k, p)
            }
            _ => {
                eprintln!("kube-fake: --crd '{crd}': expected <group>/<version>/<Kind>/<plural>");
                std::process::exit(2);
            }
        }
    }
    for ns in &a.namespaces {
        fake.add_namespace(ns);
    }
    std::fs::write(&a.kubeconfig, fake.kubeconfig())?;
    println!("kube-fake listening on {}; kubeconfig written to {}", fake.url, a.kubeconfig.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
