//! Where the cluster is and the connection to it: shared by the
//! `kubernetes` runner and the `kaniko` builder, so both find the same
//! cluster the same way.

use kube::{Client, Config};
use std::path::PathBuf;

/// Where the cluster is.
#[derive(Clone, Debug)]
pub enum ClusterSource {
    /// kube's `Config::infer`: `KUBECONFIG` or `~/.kube/config` (current
    /// context), else the in-cluster service account.
    Infer,
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
}

/// A connected cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The kubeconfig context's namespace, or the pod's, else `default`.
    pub namespace: String,
}

impl ClusterSource {
    /// `LIFTOFF_KUBECONFIG` (a file), else `Infer` when there is a cluster
    /// to infer: a kubeconfig or a pod's environment.
    pub fn detect() -> Option<Self> {
        // an empty variable counts as unset
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(p) = var("LIFTOFF_KUBECONFIG") {
            return Some(Self::Kubeconfig(p.into()));
        }
        let home = var("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
        let found =
            var("KUBECONFIG").is_some() || home.is_some_and(|h| h.exists()) || var("KUBERNETES_SERVICE_HOST").is_some();
        found.then_some(Self::Infer)
    }

    /// Reads the configuration and makes a client (no request yet).
    pub async fn connect(&self) -> Result<Cluster, String> {
        let config = match self {
            Self::Infer => Config::infer().await.map_err(|e| e.to_string()),
            Self::Kubeconfig(p) => {
                let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))
            }
        }?;
        let namespace = config.default_namespace.clone();
        let client = Client::try_from(config).map_err(|e| e.to_string())?;
        Ok(Cluster { client, namespace })
    }
}
