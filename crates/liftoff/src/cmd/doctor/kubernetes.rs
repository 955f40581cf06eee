//! The cluster checks of `liftoff doctor`: the cluster answers, the
//! namespace exists, the agent's identity may make every call the runner
//! and the kaniko builder make there (asked of the API server with
//! `SelfSubjectAccessReview`, rule by rule of `liftoff permissions`), and
//! kaniko's credentials Secret holds its key.

use super::{Check, fail, pass};
use liftoff_cloud::kube_rbac::{CLUSTER_RULES, NAMESPACED_RULES, RbacRule};
use liftoff_core::launch_config::AgentConfig;
use liftoff_run::kubernetes::access::{self, Access};
use liftoff_run::kubernetes::{Cluster, ClusterSource};

const RBAC_FIX: &str = "bind the Role and ClusterRole that `liftoff permissions --runner kubernetes` prints \
                        (deploy/base/agent-rbac.yaml holds them) to the agent's service account";

/// The cluster the agent would use, or the failed check (`what` says why one is needed).
async fn cluster(name: &'static str, what: &str) -> Result<Cluster, Check> {
    let Some(source) = ClusterSource::detect() else {
        return Err(fail(
            name,
            format!("{what}, and no cluster was found"),
            "set LIFTOFF_KUBECONFIG or KUBECONFIG, or run the agent in a pod with a service account",
        ));
    };
    source.connect().await.map_err(|e| fail(name, e, "check the kubeconfig (or the pod's service account)"))
}

/// Each verb on each resource of `rules`, in `namespace` (`None`: cluster-wide).
fn calls(rules: &[RbacRule], namespace: Option<&str>) -> Vec<Access> {
    let mut out = Vec::new();
    for r in rules {
        for resource in r.resources {
            for verb in r.verbs {
                out.push(Access {
                    group: r.api_group.into(),
                    resource: resource.to_string(),
                    verb: verb.to_string(),
                    namespace: namespace.map(str::to_string),
                });
            }
        }
    }
    out
}

/// What the namespace and the identity's rights say, or the failed check.
/// `cluster_wide`: the cluster-wide calls (re-adoption) are asked too.
async fn access_in(name: &'static str, cluster: &Cluster, ns: &str, cluster_wide: bool) -> Result<String, Check> {
    match access::namespace_exists(&cluster.client, ns).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(fail(
                name,
                format!("namespace {ns} does not exist"),
                format!("create it (`kubectl create namespace {ns}`) or name another"),
            ));
        }
        Err(e) => return Err(fail(name, e, RBAC_FIX)),
    }
    let mut wanted = calls(NAMESPACED_RULES, Some(ns));
    if cluster_wide {
        wanted.extend(calls(CLUSTER_RULES, None));
    }
    let denied = access::denied(&cluster.client, &wanted).await.map_err(|e| fail(name, e, RBAC_FIX))?;
    if denied.is_empty() {
        return Ok(format!("namespace {ns} exists; the agent may make all {} calls it needs", wanted.len()));
    }
    let (here, everywhere): (Vec<&Access>, Vec<&Access>) = denied.iter().partition(|a| a.namespace.is_some());
    let list = |v: &[&Access]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let mut detail = format!("{} of the {} calls the agent makes are denied", denied.len(), wanted.len());
    if !here.is_empty() {
        detail.push_str(&format!("; in namespace {ns}: {}", list(&here)));
    }
    if !everywhere.is_empty() {
        detail.push_str(&format!("; cluster-wide (finding its Jobs after a restart): {}", list(&everywhere)));
    }
    Err(fail(name, detail, RBAC_FIX))
}

/// The `kubernetes` runner: its namespace (`namespace`, else the
/// connection's) and the rights its runs need.
pub(super) async fn check_runner(namespace: Option<&str>) -> Check {
    const NAME: &str = "kubernetes";
    let cluster = match cluster(NAME, "the kubernetes runner runs Jobs in a cluster").await {
        Ok(c) => c,
        Err(check) => return check,
    };
    let ns = namespace.unwrap_or(&cluster.namespace);
    match access_in(NAME, &cluster, ns, true).await {
        Ok(detail) => pass(NAME, detail),
        Err(check) => check,
    }
}

/// kaniko's cluster: the build namespace, the rights a build needs there,
/// and the Secret its pods read credentials from (`secret-name`/`secret-key`).
pub(super) async fn check_kaniko(cfg: &AgentConfig) -> Check {
    const NAME: &str = "builder";
    let b = cfg.builder.as_ref();
    let cluster = match cluster(NAME, "kaniko builds in Kubernetes").await {
        Ok(c) => c,
        Err(check) => return check,
    };
    let ns = b.and_then(|b| b.namespace.as_deref()).unwrap_or(&cluster.namespace).to_string();
    let mut detail = match access_in(NAME, &cluster, &ns, false).await {
        Ok(d) => d,
        Err(check) => return check,
    };
    if let Some(secret) = b.and_then(|b| b.secret.as_ref()) {
        match access::secret_keys(&cluster.client, &ns, &secret.name).await {
            Ok(Some(keys)) if keys.contains(&secret.key) => {
                detail.push_str(&format!("; Secret {} holds {}", secret.name, secret.key));
            }
            Ok(Some(keys)) => {
                return fail(
                    NAME,
                    format!(
                        "Secret {} in namespace {ns} has no key {} (it has: {})",
                        secret.name,
                        secret.key,
                        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
                    ),
                    "set builder.secret-key to the key that holds the credentials file, or add it to the Secret",
                );
            }
            Ok(None) => {
                return fail(
                    NAME,
                    format!("builder.secret-name: there is no Secret {} in namespace {ns}", secret.name),
                    format!(
                        "create it: kubectl create secret generic {} -n {ns} --from-file={}=<credentials file>",
                        secret.name, secret.key
                    ),
                );
            }
            Err(e) => return fail(NAME, e, RBAC_FIX),
        }
    }
    pass(NAME, format!("{detail}; kaniko image {}", b.map_or("", |b| b.kaniko_image.as_str())))
}
