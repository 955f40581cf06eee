//! The `builder` block: how images are built and where they go.

use super::image::ImageDestination;
use super::keys::{BASE_IMAGE_KEYS, BUILDER_KEYS, key_named};
use super::reader::{Issues, flag, is_null, join, known_entries, mapping, shaped_choice, shaped_integer, word};
use super::store::BuildContextStore;
use super::yaml::{Entry, Node};
use crate::image_ref::ImageRef;
use serde::Serialize;

/// The reference's name prefix for kaniko build Jobs, kept so existing clusters' RBAC and dashboards still match.
pub const DEFAULT_BUILD_JOB_NAME: &str = "wandb-launch-container-build";
/// The kaniko executor: osscontainertools' fork (upstream Kaniko was archived
/// in June 2025; this fork is maintained, fixes cache bugs and publishes
/// images), v1.28.2 pinned by its index digest (see docs/kubernetes.md).
pub const DEFAULT_KANIKO_IMAGE: &str =
    "ghcr.io/osscontainertools/kaniko:v1.28.2@sha256:4ea0e7301e3f6806de15150e4982c73018351e28c1dca6947bd3b4afb5ae3c60";
/// `build-deadline`'s default: the reference's `activeDeadlineSeconds`.
pub const DEFAULT_BUILD_DEADLINE_SECS: u32 = 1800;
/// `build-job-name`'s longest: the Job is `<prefix>-<content tag>`, the
/// longest tag (`lf-deps-<24 hex>`) is 32 characters, and a Job name
/// (which its pods carry as the `job-name` label) at most 63.
pub const MAX_BUILD_JOB_NAME: usize = 30;

/// Which builder turns git and code jobs into images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderType {
    /// The local Docker engine.
    Docker,
    /// A kaniko Kubernetes Job (agent inside a cluster).
    Kaniko,
    /// No builds: prebuilt images only.
    Noop,
}

impl BuilderType {
    /// The name used in the file: `docker`, `kaniko` or `noop`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Kaniko => "kaniko",
            Self::Noop => "noop",
        }
    }
}

/// The platform images are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Platform {
    #[serde(rename = "linux/amd64")]
    LinuxAmd64,
    #[serde(rename = "linux/arm64")]
    LinuxArm64,
}

/// The Kubernetes secret holding cloud credentials for kaniko (both parts or neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KanikoSecret {
    /// `secret-name`: the secret.
    pub name: String,
    /// `secret-key`: the credentials file inside it.
    pub key: String,
}

/// The `builder` block, checked, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuilderConfig {
    #[serde(rename = "type")]
    pub builder_type: BuilderType,
    pub destination: Option<ImageDestination>,
    pub platform: Option<Platform>,
    pub build_context_store: Option<BuildContextStore>,
    pub build_job_name: String,
    pub secret: Option<KanikoSecret>,
    pub kaniko_image: String,
    /// Base Job manifest (a JSON object).
    pub kaniko_config: Option<serde_json::Value>,
    /// `namespace`: where build Jobs go (`None`: the cluster connection's namespace).
    pub namespace: Option<String>,
    /// `service-account`: the build pods' (`None`: the namespace's `default`).
    pub service_account: Option<String>,
    /// `build-deadline`, seconds.
    pub build_deadline: u32,
    /// `cache`: kaniko's layer cache in the registry.
    pub cache: bool,
    /// `cache-repo` (`None`: `<destination>/cache`).
    pub cache_repo: Option<String>,
    /// `accelerator.base_image` (or the legacy `cuda.base_image`).
    pub accelerator_base_image: Option<String>,
}

pub(crate) fn read(is: &mut Issues, path: &str, node: &Node) -> Option<BuilderConfig> {
    let entries = mapping(is, path, node)?;
    let type_key = key_named(BUILDER_KEYS, "type");
    let ty = match entries.iter().find(|e| e.key == "type" && !is_null(&e.value)) {
        Some(e) => shaped_choice(is, &join(path, "type"), &e.value, type_key),
        None => {
            is.missing(&join(path, "type"), node, "a builder block needs a type: docker, kaniko or noop");
            None
        }
    };
    let builder_type = match ty {
        Some("docker") => Some(BuilderType::Docker),
        Some("kaniko") => Some(BuilderType::Kaniko),
        Some("noop") => Some(BuilderType::Noop),
        _ => None,
    };
    let mut cfg = BuilderConfig {
        builder_type: builder_type.unwrap_or(BuilderType::Noop),
        destination: None,
        platform: None,
        build_context_store: None,
        build_job_name: DEFAULT_BUILD_JOB_NAME.to_string(),
        secret: None,
        kaniko_image: DEFAULT_KANIKO_IMAGE.to_string(),
        kaniko_config: None,
        namespace: None,
        service_account: None,
        build_deadline: DEFAULT_BUILD_DEADLINE_SECS,
        cache: true,
        cache_repo: None,
        accelerator_base_image: None,
    };
    let (mut secret_name, mut secret_key) = (None, None);
    for (k, e) in known_entries(is, path, entries, BUILDER_KEYS, ty, true) {
        let p = join(path, k.name);
        let v = &e.value;
        match k.name {
            "type" => {}
            "destination" => {
                cfg.destination =
                    word(is, &p, v).and_then(|s| ImageDestination::parse(&s).map_err(|m| is.error_at(&p, v, m)).ok());
            }
            "platform" => {
                cfg.platform = shaped_choice(is, &p, v, k)
                    .map(|s| if s == "linux/arm64" { Platform::LinuxArm64 } else { Platform::LinuxAmd64 });
            }
            "build-context-store" => {
                cfg.build_context_store =
                    word(is, &p, v).and_then(|s| BuildContextStore::parse(&s).map_err(|m| is.error_at(&p, v, m)).ok());
            }
            "build-job-name" => {
                if let Some(s) = word(is, &p, v) {
                    match check_k8s_label(&s).and_then(|()| check_job_prefix(&s)) {
                        Ok(()) => cfg.build_job_name = s,
                        Err(m) => is.error_at(&p, v, m),
                    }
                }
            }
            "secret-name" => {
                secret_name = word(is, &p, v)
                    .and_then(|s| check_k8s_subdomain(&s).map_err(|m| is.error_at(&p, v, m)).ok().map(|()| s));
            }
            "secret-key" => {
                secret_key = word(is, &p, v)
                    .and_then(|s| check_secret_key(&s).map_err(|m| is.error_at(&p, v, m)).ok().map(|()| s));
            }
            "namespace" => {
                cfg.namespace = word(is, &p, v)
                    .and_then(|s| check_k8s_label(&s).map_err(|m| is.error_at(&p, v, m)).ok().map(|()| s));
            }
            "service-account" => {
                cfg.service_account = word(is, &p, v)
                    .and_then(|s| check_k8s_subdomain(&s).map_err(|m| is.error_at(&p, v, m)).ok().map(|()| s));
            }
            "build-deadline" => {
                if let Some(n) = shaped_integer(is, &p, v, k) {
                    cfg.build_deadline = u32::try_from(n).unwrap_or(DEFAULT_BUILD_DEADLINE_SECS);
                }
            }
            "cache" => {
                if let Some(b) = flag(is, &p, v) {
                    cfg.cache = b;
                }
            }
            "cache-repo" => {
                cfg.cache_repo = word(is, &p, v).and_then(|s| match ImageRef::parse(&s) {
                    Ok(r) if r.tag.is_none() && r.digest.is_none() => Some(s),
                    Ok(_) => {
                        is.error_at(&p, v, "a repository without a tag or digest (kaniko adds its own tags)");
                        None
                    }
                    Err(m) => {
                        is.error_at(&p, v, m);
                        None
                    }
                });
            }
            "kaniko-image" => {
                if let Some(s) = word(is, &p, v) {
                    match ImageRef::parse(&s) {
                        Ok(_) => cfg.kaniko_image = s,
                        Err(m) => is.error_at(&p, v, m),
                    }
                }
            }
            "kaniko-config" => match &v.value {
                // the build pod's safety is Liftoff's: the runner's checks apply
                super::yaml::Value::Map(_) => match crate::kube_args::check(&v.to_json(), false) {
                    Ok(()) => cfg.kaniko_config = Some(v.to_json()),
                    Err(problems) => is.error_at(&p, v, problems.join("; ")),
                },
                _ => is.error_at(&p, v, "expected a mapping (a Kubernetes Job manifest)"),
            },
            "accelerator" | "cuda" => {
                let image = read_base_image(is, &p, v);
                if k.name == "cuda" && entries.iter().any(|e: &Entry| e.key == "accelerator" && !is_null(&e.value)) {
                    is.error_at(&p, v, "cuda is the legacy name of accelerator: give one of them");
                    continue;
                }
                if image.is_some() {
                    cfg.accelerator_base_image = image;
                }
            }
            other => unreachable!("builder key '{other}' is in the table but not read"),
        }
    }
    let present = |name: &str| entries.iter().any(|e| e.key == name && !is_null(&e.value));
    match (present("secret-name"), present("secret-key")) {
        (true, false) => {
            is.missing(&join(path, "secret-key"), node, "secret-name and secret-key go together: add secret-key")
        }
        (false, true) => {
            is.missing(&join(path, "secret-name"), node, "secret-name and secret-key go together: add secret-name")
        }
        _ => {}
    }
    if let (Some(name), Some(key)) = (secret_name, secret_key) {
        cfg.secret = Some(KanikoSecret { name, key });
    }
    // kaniko's keys on another builder were checked and warned about; they are not kept
    if builder_type != Some(BuilderType::Kaniko) {
        cfg.build_context_store = None;
        cfg.build_job_name = DEFAULT_BUILD_JOB_NAME.to_string();
        cfg.secret = None;
        cfg.kaniko_image = DEFAULT_KANIKO_IMAGE.to_string();
        cfg.kaniko_config = None;
        cfg.namespace = None;
        cfg.service_account = None;
        cfg.build_deadline = DEFAULT_BUILD_DEADLINE_SECS;
        cfg.cache = true;
        cfg.cache_repo = None;
    }
    if builder_type == Some(BuilderType::Kaniko) && !present("build-context-store") {
        is.missing(
            &join(path, "build-context-store"),
            node,
            "the kaniko builder needs build-context-store, the bucket its build contexts are uploaded to",
        );
    }
    builder_type.map(|_| cfg)
}

fn read_base_image(is: &mut Issues, path: &str, node: &Node) -> Option<String> {
    let entries = mapping(is, path, node)?;
    let mut image = None;
    for (k, e) in known_entries(is, path, entries, BASE_IMAGE_KEYS, None, false) {
        let p = join(path, k.name);
        if let Some(s) = word(is, &p, &e.value) {
            match ImageRef::parse(&s) {
                Ok(_) => image = Some(s),
                Err(m) => is.error_at(&p, &e.value, m),
            }
        }
    }
    if !entries.iter().any(|e| e.key == "base_image" && !is_null(&e.value)) {
        is.missing(&join(path, "base_image"), node, "needs base_image");
    }
    image
}

/// A DNS-1123 label: what Kubernetes accepts as a Job name.
fn check_k8s_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if s.len() <= 63 && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || c == b'-') {
        Ok(())
    } else {
        Err("must be a kubernetes name: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// A build Job's name prefix: short enough for `<prefix>-<content tag>`.
fn check_job_prefix(s: &str) -> Result<(), String> {
    if s.len() <= MAX_BUILD_JOB_NAME {
        Ok(())
    } else {
        Err(format!(
            "at most {MAX_BUILD_JOB_NAME} characters (this is {}): build Jobs are named <build-job-name>-<content tag>, and a Job name at most 63",
            s.len()
        ))
    }
}

/// A DNS-1123 subdomain: what Kubernetes accepts as a Secret name.
fn check_k8s_subdomain(s: &str) -> Result<(), String> {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && b.iter().all(|&c| alnum(c) || c == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err("must be a kubernetes secret name: lower-case letters, digits, '-' and '.', at most 253".into())
    }
}

/// A key within a Kubernetes Secret.
fn check_secret_key(s: &str) -> Result<(), String> {
    if s.len() <= 253 && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
        Ok(())
    } else {
        Err("must be a kubernetes secret key: letters, digits, '-', '_' and '.'".into())
    }
}
