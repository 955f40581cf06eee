//! The least-privilege grants a configuration needs (`liftoff permissions`),
//! as the setup document lists them, scoped to the configured repository
//! and build-context store. Pure: no cloud is called.

use liftoff_core::ResourceType;
use liftoff_core::launch_config::{AgentConfig, BuildContextStore, EnvironmentConfig, ImageDestination, RegistryType};
use serde::Serialize;
use serde_json::json;

/// ECR actions on the repository (setup document, "Permissions the agent needs").
pub const ECR_REPOSITORY_ACTIONS: &[&str] = &[
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
/// On `*`: ECR tokens are not per repository.
pub const ECR_AUTH_ACTION: &str = "ecr:GetAuthorizationToken";
/// On the bucket.
pub const S3_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket"];
/// On `bucket/prefix*`: what uploads, reads back and `doctor`'s marker use
/// (the setup document's `s3:*Object`, without the object ACL and tagging actions).
pub const S3_OBJECT_ACTIONS: &[&str] = &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"];
pub const ARTIFACT_REGISTRY_PERMISSIONS: &[&str] = &[
    "artifactregistry.dockerimages.list",
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.list",
    "artifactregistry.repositories.uploadArtifacts",
];
pub const GCS_PERMISSIONS: &[&str] =
    &["storage.buckets.get", "storage.objects.create", "storage.objects.delete", "storage.objects.get"];
/// The `sagemaker` runner, on its training jobs (`sagemaker:AddTags`: a
/// create with tags needs it).
pub const SAGEMAKER_JOB_ACTIONS: &[&str] =
    &["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags"];
/// On `*`: re-adoption finds an agent's jobs by tag, and `Search` takes no resource.
pub const SAGEMAKER_SEARCH_ACTION: &str = "sagemaker:Search";
/// On the training jobs' log group.
pub const SAGEMAKER_LOG_ACTIONS: &[&str] = &["logs:DescribeLogStreams", "logs:GetLogEvents"];
/// On the role the training jobs run as, passed to SageMaker only.
pub const PASS_ROLE_ACTION: &str = "iam:PassRole";
/// The `vertex` runner (`list`: re-adoption finds an agent's jobs by label).
pub const VERTEX_PERMISSIONS: &[&str] = &[
    "aiplatform.customJobs.create",
    "aiplatform.customJobs.get",
    "aiplatform.customJobs.cancel",
    "aiplatform.customJobs.list",
    "logging.logEntries.list",
];
pub const ACR_ROLE: &str = "AcrPush";
pub const BLOB_ROLE: &str = "Storage Blob Data Contributor";
/// The custom role's id in `gcloud iam roles create`.
pub const GCP_ROLE_ID: &str = "liftoffAgent";

/// What a configuration needs, per cloud.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Permissions {
    /// An IAM policy document for the agent's role or user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<PolicyDocument>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpGrants>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub azure: Vec<AzureAssignment>,
    /// With the `kubernetes` runner: the agent service account's Role and
    /// ClusterRole ([`crate::kube_rbac`]), as Kubernetes objects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kubernetes: Vec<serde_json::Value>,
    /// What could not be scoped, and why.
    pub notes: Vec<String>,
}

/// An IAM policy, its fields in the order AWS prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: &'static str,
    pub effect: &'static str,
    pub action: Vec<&'static str>,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<serde_json::Value>,
}

fn allow(sid: &'static str, action: &[&'static str], resource: impl Into<String>) -> Statement {
    Statement { sid, effect: "Allow", action: action.to_vec(), resource: resource.into(), condition: None }
}

/// GCP permission names, the custom role holding them, and where to bind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GcpGrants {
    pub permissions: Vec<String>,
    /// The role definition `gcloud iam roles create --file` takes (also as YAML in the text form).
    pub role: serde_json::Value,
    /// `gcloud` commands that bind the role on the repository and the bucket.
    pub bindings: Vec<String>,
}

/// An Azure role assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureAssignment {
    pub role: String,
    pub scope: String,
}

/// The grants `cfg` needs: its image destination (or `registry` block) and
/// its build-context store.
pub fn permissions(cfg: &AgentConfig) -> Permissions {
    permissions_with_runners(cfg, &[])
}

/// [`permissions`], plus what the cloud runners in `runners` need
/// (`sagemaker` in the aws environment's region, `vertex` in the gcp project).
pub fn permissions_with_runners(cfg: &AgentConfig, runners: &[ResourceType]) -> Permissions {
    let mut p = Permissions::default();
    let env = cfg.environment.as_ref();
    let mut aws_statements = Vec::new();
    let mut gcp_perms: Vec<&str> = Vec::new();
    let mut gcp_bindings = Vec::new();
    let gcp_project = match env {
        Some(EnvironmentConfig::Gcp { project: Some(p), .. }) => Some(p.clone()),
        _ => None,
    };
    let mut gcp_role_project = gcp_project.clone();

    match destination(cfg) {
        Some(ImageDestination::Ecr { account, region, repository }) => {
            let arn = format!(
                "arn:{}:ecr:{region}:{account}:repository/{repository}",
                crate_partition(&region)
            );
            aws_statements.push(allow("LiftoffEcrToken", &[ECR_AUTH_ACTION], "*"));
            aws_statements.push(allow("LiftoffEcrPush", ECR_REPOSITORY_ACTIONS, arn));
        }
        Some(ImageDestination::Gar { region, project, repository, .. }) => {
            gcp_perms.extend(ARTIFACT_REGISTRY_PERMISSIONS);
            gcp_role_project.get_or_insert(project.clone());
            gcp_bindings.push(format!(
                "gcloud artifacts repositories add-iam-policy-binding {repository} --project={project} --location={region} \
                 --member=serviceAccount:<agent-service-account> --role=projects/{project}/roles/{GCP_ROLE_ID}"
            ));
            p.notes.push(format!(
                "artifactregistry.repositories.list is checked on the project or location, not the repository: \
                 bind the role on project {project} too if the agent must list repositories"
            ));
        }
        Some(ImageDestination::Acr { registry, .. }) => p.azure.push(AzureAssignment {
            role: ACR_ROLE.into(),
            scope: format!(
                "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.ContainerRegistry/registries/{registry}"
            ),
        }),
        Some(ImageDestination::Oci { host, .. }) => p
            .notes
            .push(format!("{host} is not a cloud registry: push access there is granted by its own users, not by a cloud role")),
        None => p.notes.push("no image destination: nothing is pushed, so no registry grants".into()),
    }

    match cfg.builder.as_ref().and_then(|b| b.build_context_store.as_ref()) {
        Some(BuildContextStore::S3 { bucket, prefix }) => {
            let part = match env {
                Some(EnvironmentConfig::Aws { region, .. }) => crate_partition(region),
                _ => "aws",
            };
            let prefix = prefix.trim_matches('/');
            let objects = if prefix.is_empty() {
                format!("arn:{part}:s3:::{bucket}/*")
            } else {
                format!("arn:{part}:s3:::{bucket}/{prefix}/*")
            };
            aws_statements.push(allow("LiftoffContextBucket", S3_BUCKET_ACTIONS, format!("arn:{part}:s3:::{bucket}")));
            aws_statements.push(allow("LiftoffContextObjects", S3_OBJECT_ACTIONS, objects));
        }
        Some(BuildContextStore::Gcs { bucket, .. }) => {
            gcp_perms.extend(GCS_PERMISSIONS);
            let project = gcp_role_project.clone().unwrap_or_else(|| "<project-id>".into());
            gcp_bindings.push(format!(
                "gcloud storage buckets add-iam-policy-binding gs://{bucket} \
                 --member=serviceAccount:<agent-service-account> --role=projects/{project}/roles/{GCP_ROLE_ID}"
            ));
        }
        Some(BuildContextStore::AzureBlob { account, container, .. }) => p.azure.push(AzureAssignment {
            role: BLOB_ROLE.into(),
            scope: format!(
                "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/{container}"
            ),
        }),
        None => {}
    }

    if runners.contains(&ResourceType::Kubernetes) {
        p.kubernetes = vec![crate::kube_rbac::agent_role(), crate::kube_rbac::agent_cluster_role()];
    }
    if runners.contains(&ResourceType::Sagemaker) {
        let region = match env {
            Some(EnvironmentConfig::Aws { region, .. }) => region.clone(),
            _ => {
                p.notes.push("the sagemaker runner needs environment.type aws (its region and credentials)".into());
                "<region>".into()
            }
        };
        let part = crate_partition(&region);
        aws_statements.push(allow(
            "LiftoffSageMakerJobs",
            SAGEMAKER_JOB_ACTIONS,
            format!("arn:{part}:sagemaker:{region}:<account-id>:training-job/*"),
        ));
        aws_statements.push(allow("LiftoffSageMakerSearch", &[SAGEMAKER_SEARCH_ACTION], "*"));
        aws_statements.push(allow(
            "LiftoffSageMakerLogs",
            SAGEMAKER_LOG_ACTIONS,
            format!("arn:{part}:logs:{region}:<account-id>:log-group:/aws/sagemaker/TrainingJobs:*"),
        ));
        aws_statements.push(Statement {
            condition: Some(json!({"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})),
            ..allow(
                "LiftoffSageMakerPassRole",
                &[PASS_ROLE_ACTION],
                format!("arn:{part}:iam::<account-id>:role/<RoleArn of the sagemaker queues>"),
            )
        });
    }
    if runners.contains(&ResourceType::Vertex) {
        if !matches!(env, Some(EnvironmentConfig::Gcp { .. })) {
            p.notes.push("the vertex runner needs environment.type gcp (its project, region and credentials)".into());
        }
        gcp_perms.extend(VERTEX_PERMISSIONS);
        let project = gcp_role_project.clone().unwrap_or_else(|| "<project-id>".into());
        gcp_bindings.push(format!(
            "gcloud projects add-iam-policy-binding {project} --member=serviceAccount:<agent-service-account> \
             --role=projects/{project}/roles/{GCP_ROLE_ID}"
        ));
        p.notes.push(
            "a vertex queue whose run.service_account is set also needs iam.serviceAccounts.actAs on that account"
                .into(),
        );
    }

    if let Some(b) = cfg.builder.as_ref().filter(|b| b.builder_type == liftoff_core::launch_config::BuilderType::Kaniko)
    {
        let ns = b.namespace.as_deref().unwrap_or("<the kubeconfig context's namespace>");
        p.notes.push(format!(
            "kaniko: the build pods' identity ({}) needs to read the context objects and push to the destination \
             and its cache repository; in namespace {ns} the agent needs the Role `liftoff permissions --runner kubernetes` \
             prints (jobs, pods, pods/log, secrets, configmaps)",
            match (&b.service_account, &b.secret) {
                (_, Some(s)) => format!("the credentials in Secret {}, key {}", s.name, s.key),
                (Some(sa), None) => format!("service account {sa} through workload identity"),
                (None, None) => "the namespace's default service account through workload identity".to_string(),
            }
        ));
    }

    if !aws_statements.is_empty() {
        p.aws = Some(PolicyDocument { version: "2012-10-17", statement: aws_statements });
    }
    if !gcp_perms.is_empty() {
        let project = gcp_role_project.unwrap_or_else(|| "<project-id>".into());
        p.gcp = Some(GcpGrants {
            permissions: gcp_perms.iter().map(|s| s.to_string()).collect(),
            role: json!({
                "title": "Liftoff agent",
                "description": format!("What a Liftoff agent needs (project {project})"),
                "stage": "GA",
                "includedPermissions": gcp_perms,
            }),
            bindings: gcp_bindings,
        });
    }
    p
}

fn crate_partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `builder.destination`, else the registry block's uri, else the registry
/// block's repository with the environment's region (and placeholders for
/// what only the cloud knows).
fn destination(cfg: &AgentConfig) -> Option<ImageDestination> {
    if let Some(d) = cfg.builder.as_ref().and_then(|b| b.destination.clone()) {
        return Some(d);
    }
    let r = cfg.registry.as_ref()?;
    if let Some(u) = &r.uri {
        return Some(u.clone());
    }
    let repository = r.repository.clone()?;
    match (r.registry_type, cfg.environment.as_ref()) {
        (Some(RegistryType::Ecr), Some(EnvironmentConfig::Aws { region, .. })) => {
            Some(ImageDestination::Ecr { account: "<account-id>".into(), region: region.clone(), repository })
        }
        (Some(RegistryType::Gcr), Some(EnvironmentConfig::Gcp { region, project })) => Some(ImageDestination::Gar {
            region: region.clone().unwrap_or_else(|| "<region>".into()),
            project: project.clone().unwrap_or_else(|| "<project-id>".into()),
            repository,
            image: r.image_name.clone().unwrap_or_default(),
        }),
        _ => None,
    }
}

impl Permissions {
    /// For people: the policy, the role file and the commands, each ready to paste.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        if let Some(policy) = &self.aws {
            s.push_str("AWS: attach this IAM policy to the agent's role or user\n");
            s.push_str("  (aws iam put-role-policy --role-name <role> --policy-name liftoff-agent --policy-document file://policy.json):\n\n");
            s.push_str(&serde_json::to_string_pretty(policy).unwrap_or_default());
            s.push_str("\n\n");
        }
        if let Some(g) = &self.gcp {
            s.push_str("GCP: permissions\n");
            for perm in &g.permissions {
                s.push_str(&format!("  {perm}\n"));
            }
            s.push_str(&format!(
                "\nas a custom role (role.yaml; gcloud iam roles create {GCP_ROLE_ID} --project=<project-id> --file=role.yaml):\n\n"
            ));
            s.push_str(&role_yaml(&g.role));
            s.push_str("\nbound where it is needed:\n");
            for b in &g.bindings {
                s.push_str(&format!("  {b}\n"));
            }
            s.push('\n');
        }
        if !self.azure.is_empty() {
            s.push_str("Azure: role assignments for the agent's identity\n");
            for a in &self.azure {
                s.push_str(&format!("  {} on {}\n", a.role, a.scope));
                s.push_str(&format!(
                    "    az role assignment create --assignee <principal-id> --role \"{}\" --scope {}\n",
                    a.role, a.scope
                ));
            }
            s.push('\n');
        }
        if self.aws.is_none() && self.gcp.is_none() && self.azure.is_empty() {
            s.push_str("No cloud grants are needed by this configuration.\n");
        }
        if !self.kubernetes.is_empty() {
            if !s.ends_with("\n\n") {
                s.push('\n');
            }
            s.push_str("Kubernetes: the agent's service account needs this Role in the namespace its runs go to,\n");
            s.push_str("and this ClusterRole (re-adoption lists its Jobs in every namespace), each bound to it\n");
            s.push_str("(kubectl apply -n <namespace> -f rbac.yaml; then a RoleBinding and a ClusterRoleBinding):\n\n");
            for object in &self.kubernetes {
                s.push_str("---\n");
                s.push_str(&serde_json::to_string_pretty(object).unwrap_or_default());
                s.push('\n');
            }
            s.push('\n');
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

/// The role as YAML; every value is a plain string, quoted as JSON (valid YAML).
fn role_yaml(role: &serde_json::Value) -> String {
    let q = |k: &str| serde_json::to_string(&role[k]).unwrap_or_default();
    let mut s = format!(
        "title: {}\ndescription: {}\nstage: {}\nincludedPermissions:\n",
        q("title"),
        q("description"),
        q("stage")
    );
    for p in role["includedPermissions"].as_array().into_iter().flatten() {
        s.push_str(&format!("- {}\n", p.as_str().unwrap_or_default()));
    }
    s
}
