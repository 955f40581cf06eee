//! The kaniko build Job and its docker-config Secret (no I/O): executor
//! arguments, cache settings, credential wiring (reference §4.3), the
//! deadline, the service account, labels, the security context kaniko allows.

use liftoff_core::launch_config::{BuildContextStore, KanikoSecret};
use liftoff_run::container::{IDENTITY_TOKEN_USER, RegistryAuth};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The executor container's name (the reference's).
pub const CONTAINER: &str = "wandb-container-build";
/// Where kaniko reads `config.json` (registry logins).
pub const DOCKER_CONFIG_DIR: &str = "/kaniko/.docker";
/// Labels on the Job, its pod and its Secret.
pub const BUILD_LABEL: &str = "liftoff.dev/build";
/// The reference's secret holding an Azure storage account key (key `password`).
pub const AZURE_STORAGE_SECRET: &str = "azure-storage-access-key";

/// Everything the Job is made from.
pub struct KanikoJob<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub executor_image: &'a str,
    /// `s3://…`, `gs://…` or `https://<account>.blob.core.windows.net/…`.
    pub context_uri: &'a str,
    pub store: &'a BuildContextStore,
    pub dockerfile: &'a str,
    /// `repo:tag`.
    pub destination: &'a str,
    /// `None`: no layer cache.
    pub cache_repo: Option<&'a str>,
    pub build_args: &'a BTreeMap<String, String>,
    pub platform: Option<&'a str>,
    pub deadline_secs: u32,
    pub service_account: Option<&'a str>,
    /// `secret-name`/`secret-key`: cloud credentials on clusters without workload identity.
    pub secret: Option<&'a KanikoSecret>,
    /// The Secret holding `config.json`, if the push has a login.
    pub docker_secret: Option<&'a str>,
    /// `AWS_REGION` (an S3 store or an ECR destination).
    pub aws_region: Option<&'a str>,
    /// A non-AWS S3 endpoint (MinIO, moto): kaniko's `S3_ENDPOINT`.
    pub s3_endpoint: Option<&'a str>,
    /// Registries reached over plain http (loopback): `--insecure-registry`.
    pub insecure_registries: &'a [String],
    /// The destination is ACR or the store Azure: the pod may use workload identity.
    pub azure: bool,
    /// The destination is ECR / Artifact Registry (where the secret goes).
    pub ecr: bool,
    pub gar: bool,
    pub labels: &'a BTreeMap<String, String>,
}

/// The executor's arguments, in the reference's order, then Liftoff's.
pub fn executor_args(j: &KanikoJob<'_>) -> Vec<String> {
    let mut args = vec![
        format!("--context={}", j.context_uri),
        format!("--dockerfile={}", j.dockerfile),
        format!("--destination={}", j.destination),
    ];
    match j.cache_repo {
        Some(repo) => {
            args.push("--cache=true".into());
            args.push(format!("--cache-repo={repo}"));
        }
        None => args.push("--cache=false".into()),
    }
    args.push("--snapshot-mode=redo".into());
    args.push("--compressed-caching=false".into());
    // the digest pushed, in the log, for the agent to compare
    args.push("--digest-file=/dev/termination-log".into());
    for (k, v) in j.build_args {
        args.push(format!("--build-arg={k}={v}"));
    }
    if let Some(p) = j.platform {
        args.push(format!("--custom-platform={p}"));
    }
    for r in j.insecure_registries {
        args.push(format!("--insecure-registry={r}"));
    }
    args
}

/// The build Job.
pub fn job(j: &KanikoJob<'_>) -> Value {
    let mut env: Vec<Value> = Vec::new();
    let mut mounts: Vec<Value> = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    if let Some(r) = j.aws_region {
        env.push(json!({"name": "AWS_REGION", "value": r}));
    }
    if let Some(e) = j.s3_endpoint {
        env.push(json!({"name": "S3_ENDPOINT", "value": e}));
        env.push(json!({"name": "S3_FORCE_PATH_STYLE", "value": "true"}));
    }
    if let Some(s) = j.docker_secret {
        volumes.push(json!({"name": "docker-config", "secret": {"secretName": s,
            "items": [{"key": "config.json", "path": "config.json"}]}}));
        mounts.push(json!({"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": true}));
    }
    let s3 = matches!(j.store, BuildContextStore::S3 { .. });
    let gcs = matches!(j.store, BuildContextStore::Gcs { .. });
    let azure_store = matches!(j.store, BuildContextStore::AzureBlob { .. });
    if let Some(secret) = j.secret {
        if s3 || j.ecr {
            volumes.push(json!({"name": "aws-credentials", "secret": {"secretName": secret.name,
                "items": [{"key": secret.key, "path": "credentials"}]}}));
            mounts.push(json!({"name": "aws-credentials", "mountPath": "/root/.aws", "readOnly": true}));
        }
        if gcs || j.gar {
            volumes.push(json!({"name": "gcp-credentials", "secret": {"secretName": secret.name,
                "items": [{"key": secret.key, "path": "config.json"}]}}));
            mounts.push(json!({"name": "gcp-credentials", "mountPath": "/kaniko/.config/gcloud", "readOnly": true}));
            env.push(json!({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/kaniko/.config/gcloud/config.json"}));
        }
    }
    if azure_store {
        // kaniko reads Azure Blob contexts with the account's shared key only
        let (name, key) = match j.secret {
            Some(s) => (s.name.as_str(), s.key.as_str()),
            None => (AZURE_STORAGE_SECRET, "password"),
        };
        env.push(json!({"name": "AZURE_STORAGE_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}));
    }
    let mut pod_labels = j.labels.clone();
    if j.azure {
        pod_labels.insert("azure.workload.identity/use".into(), "true".into());
    }
    // kaniko unpacks the base image over its own root and needs root in its
    // container: no runAsNonRoot and no capability drop, but no privilege
    // escalation and the runtime's seccomp profile
    let security = json!({"allowPrivilegeEscalation": false, "seccompProfile": {"type": "RuntimeDefault"}});
    let mut container = json!({
        "name": CONTAINER,
        "image": j.executor_image,
        "args": executor_args(j),
        "securityContext": security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if !mounts.is_empty() {
        container["volumeMounts"] = Value::Array(mounts);
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "containers": [container],
        // the build needs no API access: the pod gets no token
        "automountServiceAccountToken": false,
    });
    if !volumes.is_empty() {
        pod["volumes"] = Value::Array(volumes);
    }
    if let Some(sa) = j.service_account {
        pod["serviceAccountName"] = json!(sa);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": j.name, "namespace": j.namespace, "labels": j.labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": j.deadline_secs,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    })
}

/// Arguments a base manifest may not replace: what makes the build this build.
const FIXED_ARGS: &[&str] = &["--context", "--dockerfile", "--destination", "--digest-file"];

/// [`job`] over `kaniko-config`, the reference's base Job manifest: what
/// Liftoff sets wins (names, labels added, the container's image, the
/// deadline), objects merge, the base's `env`, `volumeMounts` and `volumes`
/// come first, its container's `--flag=value` arguments replace Liftoff's
/// of the same name or are appended (those naming the build, `--context`,
/// `--destination`, `--dockerfile`, `--digest-file`, are refused). A base
/// with more than one container is refused. Errors name the key.
pub fn job_over(base: Option<&Value>, j: &KanikoJob<'_>) -> Result<Value, String> {
    let ours = job(j);
    let Some(base) = base else { return Ok(ours) };
    let containers = &base["spec"]["template"]["spec"]["containers"];
    let base_container = match containers.as_array().map(Vec::as_slice) {
        None | Some([]) => Value::Null,
        Some([c]) => c.clone(),
        Some(_) => {
            return Err("builder.kaniko-config.spec.template.spec.containers: a build Job has one container".into());
        }
    };
    let mut user_args = Vec::new();
    for a in base_container["args"].as_array().into_iter().flatten() {
        let a = a.as_str().ok_or("builder.kaniko-config: container args must be strings")?;
        let flag = a.split('=').next().unwrap_or_default();
        if FIXED_ARGS.contains(&flag) {
            return Err(format!("builder.kaniko-config: the argument {flag} is Liftoff's (it names this build)"));
        }
        user_args.push(a.to_string());
    }
    let mut merged = base.clone();
    if let Some(spec) = merged["spec"]["template"]["spec"].as_object_mut() {
        spec.remove("containers");
    }
    merge(&mut merged, &ours);
    let mut container = base_container;
    if let Some(c) = container.as_object_mut() {
        c.remove("args");
    }
    merge(&mut container, &ours["spec"]["template"]["spec"]["containers"][0]);
    let mut args: Vec<String> = ours["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    for a in user_args {
        let flag = a.split('=').next().unwrap_or_default().to_string();
        match args.iter_mut().find(|x| x.split('=').next() == Some(flag.as_str())) {
            Some(x) => *x = a,
            None => args.push(a),
        }
    }
    container["args"] = json!(args);
    merged["spec"]["template"]["spec"]["containers"] = json!([container]);
    Ok(merged)
}

/// `over` merged into `into`: objects key by key, arrays of `env`,
/// `volumeMounts` and `volumes` appended, anything else replaced.
fn merge(into: &mut Value, over: &Value) {
    match (into, over) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(Value::Array(mine)) if matches!(k.as_str(), "env" | "volumeMounts" | "volumes") => {
                        if let Value::Array(theirs) = v {
                            mine.extend(theirs.iter().cloned());
                        }
                    }
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, over) => *into = over.clone(),
    }
}

/// `config.json` for kaniko with `auth`'s login (an identity token as such).
pub fn docker_config(auth: &RegistryAuth) -> String {
    use base64::Engine;
    let entry = if auth.username == IDENTITY_TOKEN_USER {
        json!({"identitytoken": auth.password})
    } else {
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({"auth": b64.encode(format!("{}:{}", auth.username, auth.password))})
    };
    json!({"auths": {auth.serveraddress.clone(): entry}}).to_string()
}

/// The Secret holding `config.json`.
pub fn docker_secret(name: &str, namespace: &str, labels: &BTreeMap<String, String>, config: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "stringData": {"config.json": config}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base<'a>(store: &'a BuildContextStore, labels: &'a BTreeMap<String, String>) -> KanikoJob<'a> {
        KanikoJob {
            name: "wandb-launch-container-build-lf-0123",
            namespace: "builds",
            executor_image: "ghcr.io/osscontainertools/kaniko:v1",
            context_uri: "s3://b/ctx/lf-0123.tgz",
            store,
            dockerfile: "Dockerfile.wandb",
            destination: "reg.io/team/app:lf-0123",
            cache_repo: Some("reg.io/team/app/cache"),
            build_args: &EMPTY,
            platform: None,
            deadline_secs: 1800,
            service_account: Some("builder"),
            secret: None,
            docker_secret: Some("wandb-launch-container-build-lf-0123-docker"),
            aws_region: Some("us-east-1"),
            s3_endpoint: None,
            insecure_registries: &[],
            azure: false,
            ecr: false,
            gar: false,
            labels,
        }
    }
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();

    #[test]
    fn the_job_has_the_reference_arguments_deadline_account_and_credentials() {
        let store = BuildContextStore::S3 { bucket: "b".into(), prefix: "ctx".into() };
        let labels = BTreeMap::from([(BUILD_LABEL.to_string(), "lf-0123".to_string())]);
        let secret = KanikoSecret { name: "aws-creds".into(), key: "credentials".into() };
        let mut j = base(&store, &labels);
        j.secret = Some(&secret);
        let v = job(&j);
        let spec = &v["spec"];
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["activeDeadlineSeconds"], 1800);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "builder");
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let c = &pod["containers"][0];
        assert_eq!(c["name"], CONTAINER);
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(
            &args[..7],
            [
                "--context=s3://b/ctx/lf-0123.tgz",
                "--dockerfile=Dockerfile.wandb",
                "--destination=reg.io/team/app:lf-0123",
                "--cache=true",
                "--cache-repo=reg.io/team/app/cache",
                "--snapshot-mode=redo",
                "--compressed-caching=false",
            ]
        );
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["mountPath"] == DOCKER_CONFIG_DIR && m["readOnly"] == true));
        assert!(mounts.iter().any(|m| m["mountPath"] == "/root/.aws" && m["readOnly"] == true));
        let vols = pod["volumes"].as_array().unwrap();
        let aws = vols.iter().find(|v| v["name"] == "aws-credentials").unwrap();
        assert_eq!(aws["secret"]["secretName"], "aws-creds");
        assert_eq!(aws["secret"]["items"][0], json!({"key": "credentials", "path": "credentials"}));
        assert_eq!(c["env"][0], json!({"name": "AWS_REGION", "value": "us-east-1"}));
        assert_eq!(v["metadata"]["labels"][BUILD_LABEL], "lf-0123");
        // the Job parses as one
        let _: k8s_openapi::api::batch::v1::Job = serde_json::from_value(v).unwrap();
    }

    #[test]
    fn gcs_and_azure_stores_get_their_credentials_and_no_cache_is_said() {
        let labels = BTreeMap::new();
        let gcs = BuildContextStore::Gcs { bucket: "b".into(), prefix: String::new() };
        let secret = KanikoSecret { name: "gcp-sa".into(), key: "key.json".into() };
        let mut j = base(&gcs, &labels);
        j.secret = Some(&secret);
        j.cache_repo = None;
        j.aws_region = None;
        let v = job(&j);
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert!(c["args"].as_array().unwrap().contains(&json!("--cache=false")));
        assert!(c["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/kaniko/.config/gcloud"));
        assert_eq!(c["env"][0]["name"], "GOOGLE_APPLICATION_CREDENTIALS");

        let azure =
            BuildContextStore::AzureBlob { account: "acct".into(), container: "ctx".into(), prefix: String::new() };
        let mut j = base(&azure, &labels);
        j.aws_region = None;
        j.azure = true;
        let v = job(&j);
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["env"][0],
            json!({"name": "AZURE_STORAGE_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": AZURE_STORAGE_SECRET, "key": "password"}}})
        );
        assert_eq!(v["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"], "true");
    }

    #[test]
    fn a_base_manifest_is_kept_under_what_liftoff_sets() {
        let store = BuildContextStore::S3 { bucket: "b".into(), prefix: "ctx".into() };
        let labels = BTreeMap::from([(BUILD_LABEL.to_string(), "lf-0123".to_string())]);
        let j = base(&store, &labels);
        let base_job = json!({
            "metadata": {"name": "ignored", "labels": {"team": "ml"}},
            "spec": {"activeDeadlineSeconds": 5, "template": {"spec": {
                "nodeSelector": {"pool": "builds"},
                "tolerations": [{"key": "builds", "operator": "Exists"}],
                "containers": [{"resources": {"limits": {"memory": "8Gi"}}, "args": ["--snapshot-mode=time", "--verbosity=debug"],
                    "env": [{"name": "HTTP_PROXY", "value": "http://proxy:3128"}]}]}}}
        });
        let v = job_over(Some(&base_job), &j).unwrap();
        assert_eq!(v["metadata"]["name"], j.name);
        assert_eq!(v["metadata"]["labels"]["team"], "ml");
        assert_eq!(v["metadata"]["labels"][BUILD_LABEL], "lf-0123");
        assert_eq!(v["spec"]["activeDeadlineSeconds"], 1800);
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["pool"], "builds");
        assert_eq!(pod["tolerations"][0]["key"], "builds");
        let c = &pod["containers"][0];
        assert_eq!(c["image"], j.executor_image);
        assert_eq!(c["resources"]["limits"]["memory"], "8Gi");
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.contains(&"--snapshot-mode=time") && !args.contains(&"--snapshot-mode=redo"), "{args:?}");
        assert_eq!(args.last(), Some(&"--verbosity=debug"));
        let env: Vec<&str> = c["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(env, ["HTTP_PROXY", "AWS_REGION"]);
        let _: k8s_openapi::api::batch::v1::Job = serde_json::from_value(v).unwrap();

        let bad = json!({"spec": {"template": {"spec": {"containers": [{"args": ["--destination=evil.io/x:1"]}]}}}});
        assert!(job_over(Some(&bad), &j).unwrap_err().contains("--destination is Liftoff's"));
        let two = json!({"spec": {"template": {"spec": {"containers": [{}, {}]}}}});
        assert!(job_over(Some(&two), &j).unwrap_err().contains("one container"));
    }

    #[test]
    fn docker_config_carries_the_login_or_the_identity_token() {
        let basic = RegistryAuth { username: "u".into(), password: "p".into(), serveraddress: "reg.io".into() };
        let v: Value = serde_json::from_str(&docker_config(&basic)).unwrap();
        assert_eq!(v["auths"]["reg.io"]["auth"], "dTpw");
        let token = RegistryAuth {
            username: IDENTITY_TOKEN_USER.into(),
            password: "tok".into(),
            serveraddress: "r.azurecr.io".into(),
        };
        let v: Value = serde_json::from_str(&docker_config(&token)).unwrap();
        assert_eq!(v["auths"]["r.azurecr.io"]["identitytoken"], "tok");
    }
}
