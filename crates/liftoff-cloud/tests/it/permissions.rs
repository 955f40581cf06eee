//! `permissions` against the setup document's lists
//! (../shared/reference/seed/README.md, "Permissions the agent needs"),
//! copied here as the expected values.

use liftoff_cloud::permissions;
use liftoff_core::launch_config::{AgentConfig, check_file_text};
use serde_json::Value;

const SEED_ECR_REPOSITORY: &[&str] = &[
    "ecr:CreateRepository",
    "ecr:UploadLayerPart",
    "ecr:PutImage",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchDeleteImage",
];
const SEED_ECR_ANY: &[&str] = &["ecr:GetAuthorizationToken"];
const SEED_S3_BUCKET: &[&str] = &["s3:ListBucket"];
/// `s3:*Object` on `bucket/*`.
const SEED_S3_OBJECT_PATTERN: &str = "s3:*Object";
const SEED_GAR: &[&str] = &[
    "artifactregistry.dockerimages.list",
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.list",
    "artifactregistry.repositories.uploadArtifacts",
];
const SEED_GCS: &[&str] =
    &["storage.buckets.get", "storage.objects.create", "storage.objects.delete", "storage.objects.get"];
const SEED_ACR_ROLE: &str = "AcrPush";
const SEED_BLOB_ROLE: &str = "Storage Blob Data Contributor";

fn cfg(yaml: &str) -> AgentConfig {
    match check_file_text(yaml) {
        Ok(r) => r.config,
        Err(e) => panic!("{e:?}"),
    }
}

fn actions(statement: &Value) -> Vec<String> {
    statement["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn aws_policy_is_the_seeds_scoped_to_the_repository_and_bucket() {
    let p = permissions(&cfg("environment: {type: aws, region: eu-west-1}\n\
         builder:\n  type: kaniko\n  destination: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/trainer\n  build-context-store: s3://my-bucket/build-contexts/\n"));
    let policy = serde_json::to_value(p.aws.expect("an aws policy")).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    let by_resource =
        |r: &str| statements.iter().find(|s| s["Resource"] == r).unwrap_or_else(|| panic!("{r}: {policy:#}"));

    let mut ecr = actions(by_resource("arn:aws:ecr:eu-west-1:123456789012:repository/team/trainer"));
    ecr.sort();
    assert_eq!(ecr, sorted(SEED_ECR_REPOSITORY));
    assert_eq!(actions(by_resource("*")), sorted(SEED_ECR_ANY));
    assert_eq!(actions(by_resource("arn:aws:s3:::my-bucket")), sorted(SEED_S3_BUCKET));
    let objects = actions(by_resource("arn:aws:s3:::my-bucket/build-contexts/*"));
    assert!(!objects.is_empty());
    // every object action is one the seed's `s3:*Object` grants, and no more
    let (head, tail) = SEED_S3_OBJECT_PATTERN.split_once('*').unwrap();
    assert!(objects.iter().all(|a| a.starts_with(head) && a.ends_with(tail)), "{objects:?}");
    assert!(objects.contains(&"s3:PutObject".to_string()) && objects.contains(&"s3:GetObject".to_string()));
    assert_eq!(statements.len(), 4, "{policy:#}");
    assert!(p.gcp.is_none() && p.azure.is_empty());

    let text = liftoff_cloud::Permissions::render_text(&permissions(&cfg(
        "environment: {type: aws, region: eu-west-1}\nbuilder: {type: docker, destination: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/r}\n",
    )));
    assert!(text.starts_with("AWS: attach this IAM policy"), "{text}");
    let json_part = &text[text.find('{').unwrap()..text.rfind('}').unwrap() + 1];
    let v: Value = serde_json::from_str(json_part).expect("the text form's policy is valid JSON");
    assert_eq!(v["Statement"].as_array().unwrap().len(), 2);
}

#[test]
fn kaniko_notes_the_build_pods_identity_and_the_cluster_grants() {
    let p = permissions(&cfg("queues: [q]\nenvironment: {type: aws, region: eu-west-1}\n\
         builder:\n  type: kaniko\n  destination: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/trainer\n  build-context-store: s3://my-bucket/ctx\n  namespace: builds\n  secret-name: aws-creds\n  secret-key: credentials\n"));
    let note = p.notes.iter().find(|n| n.starts_with("kaniko:")).expect("a kaniko note");
    assert!(note.contains("Secret aws-creds, key credentials") && note.contains("in namespace builds"), "{note}");
    assert!(
        note.contains("the Role `liftoff permissions --runner kubernetes`") && note.contains("configmaps"),
        "{note}"
    );
}

#[test]
fn gcp_permissions_and_role_are_the_seeds() {
    let p = permissions(&cfg("environment: {type: gcp, region: us-central1, project: my-project}\n\
         builder:\n  type: kaniko\n  destination: us-central1-docker.pkg.dev/my-project/my-repo/my-image\n  build-context-store: gs://my-bucket/ctx\n"));
    let g = p.gcp.expect("gcp grants");
    let mut expected: Vec<&str> = SEED_GAR.iter().chain(SEED_GCS).copied().collect();
    expected.sort();
    let mut got = g.permissions.clone();
    got.sort();
    assert_eq!(got, expected.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let role_perms: Vec<&str> =
        g.role["includedPermissions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(role_perms.len(), expected.len());
    assert_eq!(g.role["stage"], "GA");
    assert!(g.bindings.iter().any(|b| b.contains("repositories add-iam-policy-binding my-repo")
        && b.contains("--location=us-central1")
        && b.contains("projects/my-project/roles/liftoffAgent")));
    assert!(g.bindings.iter().any(|b| b.contains("buckets add-iam-policy-binding gs://my-bucket")));

    let text = p_text(
        "environment: {type: gcp, project: my-project}\nbuilder: {type: docker, destination: us-central1-docker.pkg.dev/my-project/r/i}\n",
    );
    assert!(text.contains("includedPermissions:\n- artifactregistry.dockerimages.list\n"), "{text}");
    assert!(text.contains("stage: \"GA\""), "{text}");
}

#[test]
fn azure_roles_are_the_seeds_on_the_registry_and_container() {
    let p = permissions(&cfg("environment: {type: azure}\n\
         builder:\n  type: kaniko\n  destination: myregistry.azurecr.io/trainer\n  build-context-store: https://myaccount.blob.core.windows.net/contexts/x\n"));
    assert_eq!(p.azure.len(), 2);
    assert_eq!(p.azure[0].role, SEED_ACR_ROLE);
    assert!(
        p.azure[0].scope.ends_with("/providers/Microsoft.ContainerRegistry/registries/myregistry"),
        "{:?}",
        p.azure[0]
    );
    assert_eq!(p.azure[1].role, SEED_BLOB_ROLE);
    assert!(
        p.azure[1].scope.ends_with("/storageAccounts/myaccount/blobServices/default/containers/contexts"),
        "{:?}",
        p.azure[1]
    );
    assert!(p.aws.is_none() && p.gcp.is_none());
}

#[test]
fn ecr_by_repository_name_and_no_cloud_at_all() {
    let p =
        permissions(&cfg("environment: {type: aws, region: us-east-2}\nregistry: {type: ecr, repository: trainer}\n"));
    let policy = serde_json::to_value(p.aws.unwrap()).unwrap();
    assert!(
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Resource"] == "arn:aws:ecr:us-east-2:<account-id>:repository/trainer")
    );
    let local = permissions(&cfg("builder: {type: docker}\n"));
    assert!(local.aws.is_none() && local.gcp.is_none() && local.azure.is_empty());
    assert!(local.render_text().contains("No cloud grants are needed"));
}

fn p_text(yaml: &str) -> String {
    permissions(&cfg(yaml)).render_text()
}

/// `--runner kubernetes`: the Role the runner's calls need and the
/// ClusterRole of re-adoption, nothing for a config without it.
#[test]
fn kubernetes_runner_adds_the_role_and_the_adoption_cluster_role() {
    use liftoff_core::ResourceType;
    let c = cfg("builder:\n  type: noop\n");
    assert!(liftoff_cloud::permissions_with_runners(&c, &[]).kubernetes.is_empty());
    let p = liftoff_cloud::permissions_with_runners(&c, &[ResourceType::Kubernetes]);
    let [role, cluster] = p.kubernetes.as_slice() else { panic!("two objects: {:?}", p.kubernetes) };
    assert_eq!((role["kind"].as_str(), role["metadata"]["name"].as_str()), (Some("Role"), Some("liftoff-agent")));
    let rules: Vec<(String, String, Vec<String>)> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["apiGroups"][0].as_str().unwrap().to_string(),
                r["resources"][0].as_str().unwrap().to_string(),
                r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        vec![
            ("batch".into(), "jobs".into(), s(&["create", "delete", "get", "list", "watch"])),
            ("".into(), "pods".into(), s(&["delete", "get", "list", "watch"])),
            ("".into(), "pods/log".into(), s(&["get"])),
            ("".into(), "secrets".into(), s(&["create", "delete", "list"])),
            // kaniko's and custom runs' marker ConfigMaps
            ("".into(), "configmaps".into(), s(&["create", "delete", "list"])),
            // additional services: made, waited for, deleted with the run
            ("apps".into(), "deployments".into(), s(&["create", "delete", "get"])),
            ("".into(), "services".into(), s(&["create", "delete"])),
            ("".into(), "endpoints".into(), s(&["get"])),
        ]
    );
    assert_eq!(cluster["kind"], "ClusterRole");
    assert_eq!(
        cluster["rules"],
        serde_json::json!([
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]},
        ])
    );
    let text = p.render_text();
    assert!(
        text.contains("Kubernetes:") && text.contains("\"kind\": \"Role\"") && text.contains("liftoff-agent-adopt"),
        "{text}"
    );
}
