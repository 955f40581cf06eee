//! The Kubernetes RBAC the agent's service account needs for the
//! `kubernetes` runner: exactly the calls `liftoff_run::kubernetes` makes,
//! in one list that `liftoff permissions --runner kubernetes` prints and
//! `deploy/base/agent-rbac.yaml` holds (a test checks the two agree).
//!
//! The runner reads no Events, so none are granted. A queue whose runs are
//! a custom resource (Volcano's Job, a PyTorchJob...) needs a rule for its
//! group and plural, which no static list can know:
//! `liftoff permissions --runner kubernetes --custom-resource <group>/<plural>`
//! adds it ([`custom_resource_rule`]). Additional services of kinds other
//! than Deployment and Service need their own rule the same way.

use serde_json::{Value, json};

/// The names of the objects, as the deploy manifests use them.
pub const ROLE_NAME: &str = "liftoff-agent";
/// The cluster-wide part: re-adoption lists Jobs in every namespace.
pub const CLUSTER_ROLE_NAME: &str = "liftoff-agent-adopt";

/// One RBAC rule: API group, resources, verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RbacRule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// In the namespace the runs go to: a run's Job (created, watched, deleted
/// on stop or lost lease), its pods (watched for pending reasons, deleted
/// with a grace period on stop; a Pod given as an additional service is
/// read for its readiness), their logs, and the Secret holding a run's key
/// and registry login (created before the Job, deleted after it).
pub const NAMESPACED_RULES: &[RbacRule] = &[
    RbacRule { api_group: "batch", resources: &["jobs"], verbs: &["create", "delete", "get", "list", "watch"] },
    RbacRule { api_group: "", resources: &["pods"], verbs: &["delete", "get", "list", "watch"] },
    RbacRule { api_group: "", resources: &["pods/log"], verbs: &["get"] },
    RbacRule { api_group: "", resources: &["secrets"], verbs: &["create", "delete", "list"] },
    // a custom run's marker ConfigMap (created, deleted with the run); the
    // kaniko builder: a build Job left by an earlier try is looked up (jobs
    // get, above) and the ConfigMaps of a build are removed with it
    RbacRule { api_group: "", resources: &["configmaps"], verbs: &["create", "delete", "list"] },
    // `additional_services`: made before the run, read until ready (a
    // Service through its Endpoints), deleted with the run
    RbacRule { api_group: "apps", resources: &["deployments"], verbs: &["create", "delete", "get"] },
    RbacRule { api_group: "", resources: &["services"], verbs: &["create", "delete"] },
    RbacRule { api_group: "", resources: &["endpoints"], verbs: &["get"] },
];

/// Cluster-wide: after a restart the agent finds its Jobs, and its custom
/// runs' marker ConfigMaps (not Secrets: listing those would read every
/// credential in the cluster), in any namespace.
pub const CLUSTER_RULES: &[RbacRule] = &[
    RbacRule { api_group: "batch", resources: &["jobs"], verbs: &["list"] },
    RbacRule { api_group: "", resources: &["configmaps"], verbs: &["list"] },
];

/// The verbs on a queue's custom resource: created, watched, read again
/// after a restart, deleted on stop or at the end.
pub const CUSTOM_RESOURCE_VERBS: &[&str] = &["create", "delete", "get", "list", "watch"];

/// The Role's rule for a queue's custom resource (`batch.volcano.sh`, `jobs`).
pub fn custom_resource_rule(group: &str, plural: &str) -> Value {
    json!({"apiGroups": [group], "resources": [plural], "verbs": CUSTOM_RESOURCE_VERBS})
}

fn rules_json(rules: &[RbacRule]) -> Value {
    rules.iter().map(|r| json!({"apiGroups": [r.api_group], "resources": r.resources, "verbs": r.verbs})).collect()
}

/// The Role (no namespace: `kubectl apply -n` or kustomize gives it one).
pub fn agent_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": ROLE_NAME},
        "rules": rules_json(NAMESPACED_RULES),
    })
}

/// The ClusterRole of re-adoption.
pub fn agent_cluster_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE_NAME},
        "rules": rules_json(CLUSTER_RULES),
    })
}
