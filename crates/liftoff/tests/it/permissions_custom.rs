//! `liftoff permissions --runner kubernetes --custom-resource <group>/<plural>`:
//! the agent's Role gains a rule for a queue's custom resource (a Volcano
//! Job, a PyTorchJob), which no fixed list can know; misuse is refused.

use crate::support;

use serde_json::{Value, json};

#[test]
fn a_custom_resource_gets_its_rule_in_the_role_and_misuse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), "max_jobs: 1\n").unwrap();
    let base = ["permissions", "-c", "c.yaml", "--runner", "kubernetes", "--format", "json"];
    let rules = |extra: &[&str]| -> Vec<Value> {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = support::liftoff(dir.path(), &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kubernetes"][0]["kind"], "Role");
        v["kubernetes"][0]["rules"].as_array().unwrap().clone()
    };
    let plain = rules(&[]);
    let with = rules(&["--custom-resource", "batch.volcano.sh/jobs", "--custom-resource", "kubeflow.org/pytorchjobs"]);
    assert_eq!(with.len(), plain.len() + 2);
    assert_eq!(&with[..plain.len()], &plain[..], "the fixed rules are unchanged");
    let verbs = json!(["create", "delete", "get", "list", "watch"]);
    assert_eq!(with[plain.len()], json!({"apiGroups": ["batch.volcano.sh"], "resources": ["jobs"], "verbs": verbs}));
    assert_eq!(with[plain.len() + 1]["resources"], json!(["pytorchjobs"]));

    for (args, says) in [
        (vec!["permissions", "-c", "c.yaml", "--custom-resource", "x/y"], "needs --runner kubernetes"),
        (base.iter().copied().chain(["--custom-resource", "jobs"]).collect(), "expected <group>/<plural>"),
    ] {
        let out = support::liftoff(dir.path(), &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
}
