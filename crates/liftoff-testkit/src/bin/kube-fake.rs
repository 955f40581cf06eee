//! `kube-fake`: the Kubernetes API server fake as a server (see
//! `liftoff_testkit::fakes::kubernetes` and the crate's README).

use clap::Parser;
use liftoff_testkit::fakes::kubernetes::{INSTANCE_LABEL, KanikoRig, KubeFake, KubeFakeOptions, PodDriver};
use std::path::PathBuf;
use std::time::Duration;

/// A fake of the Kubernetes API server (namespaces, Jobs with a Job controller, Pods and their
/// logs, Secrets, any namespaced custom resource; list, watch, delete with propagation), for
/// trying Liftoff's kubernetes runner and kubectl without a cluster.
///
/// Pods run as containers on the Docker engine at `--docker-host` (default: `DOCKER_HOST`), with
/// no network: their states, exit codes and logs are real. Faults:
/// `curl -X POST <url>/_fake/node -d '{"unschedulable":true}'` cordons the node (new pods stay
/// Pending, Unschedulable; `false` schedules them);
/// `curl -X POST <url>/_fake/namespaces/default/pods/<pod>/status -d '{"phase":"Failed","disruption":"EvictionByEvictionAPI"}'`
/// evicts a pod (its containers are killed); an image that does not exist gives ErrImagePull, then
/// ImagePullBackOff.
///
/// With `--manual` nothing runs: pods stay Pending until driven through the same status endpoint
/// (`{"phase":"Running"}`, `{"phase":"Pending","reason":"Unschedulable","message":"..."}`,
/// `{"phase":"Failed","exitCode":3}`), and their output is written with
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
    /// Run no containers: pods are driven by hand (`/_fake/...`).
    #[arg(long)]
    manual: bool,
    /// With --manual, complete every pod by itself: Running at once, a line, Succeeded after SECS.
    #[arg(long, value_name = "SECS", requires = "manual")]
    auto: Option<u64>,
    /// The Docker engine (`unix:///...`) pods run on, and kaniko Jobs are built on and pushed
    /// from to their `--destination` (the context read from its object store).
    #[arg(long, value_name = "URL", env = "DOCKER_HOST")]
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
async fn main() -> std::process::ExitCode {
    match serve(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-fake: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(a: Args) -> std::io::Result<()> {
    let pods = match (&a.docker_host, a.manual) {
        (_, true) => PodDriver::Manual,
        (Some(h), false) => PodDriver::Docker { docker_host: h.clone() },
        (None, false) => {
            return Err(std::io::Error::other(
                "no Docker engine to run pods on: give --docker-host unix:///path/to/docker.sock, set \
                 DOCKER_HOST, or run with --manual",
            ));
        }
    };
    let fake = KubeFake::start(KubeFakeOptions {
        listen: a.listen,
        pods,
        auto_complete: a.auto.map(Duration::from_secs),
        kaniko: a.docker_host.clone().map(|docker_host| KanikoRig {
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
    let pods = match fake.instance() {
        Some(id) => {
            format!("pods run on {} (containers labelled {INSTANCE_LABEL}={id})", a.docker_host.unwrap_or_default())
        }
        None => "pods are driven by hand".to_string(),
    };
    println!("kube-fake listening on {}; kubeconfig written to {}; {pods}", fake.url, a.kubeconfig.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
