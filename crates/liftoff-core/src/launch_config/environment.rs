//! The `environment` block: the cloud whose credentials the agent uses.

use super::keys::{ENVIRONMENT_KEYS, key_named};
use super::reader::{Issues, article, is_null, join, known_entries, mapping, shaped_choice, word};
use super::yaml::Node;
use serde::Serialize;

/// The target cloud, checked. Credentials always come from the cloud's default
/// chain; only what the chain cannot know is configured here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EnvironmentConfig {
    /// No cloud.
    Local,
    /// AWS; `profile` picks a profile of the shared credentials file.
    Aws { region: String, profile: Option<String> },
    /// GCP; both optional, as in the reference's code (the setup document
    /// calls them required, but its environment resolves the region from
    /// gcloud or `GOOGLE_CLOUD_REGION` and the project from the application
    /// default credentials). liftoff-cloud resolves what is left out at run
    /// time; an Artifact Registry URI is checked against what is given.
    Gcp { region: Option<String>, project: Option<String> },
    /// Azure; the region is optional (the reference wrongly required it).
    Azure { region: Option<String> },
}

impl EnvironmentConfig {
    /// `local`, `aws`, `gcp` or `azure`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Aws { .. } => "aws",
            Self::Gcp { .. } => "gcp",
            Self::Azure { .. } => "azure",
        }
    }
}

pub(crate) fn read(is: &mut Issues, path: &str, node: &Node) -> Option<EnvironmentConfig> {
    let entries = mapping(is, path, node)?;
    let ty = match entries.iter().find(|e| e.key == "type" && !is_null(&e.value)) {
        Some(e) => shaped_choice(is, &join(path, "type"), &e.value, key_named(ENVIRONMENT_KEYS, "type")),
        None => {
            is.missing(&join(path, "type"), node, "an environment block needs a type: local, aws, gcp or azure");
            None
        }
    };
    let (mut region, mut project, mut profile) = (None, None, None);
    for (k, e) in known_entries(is, path, entries, ENVIRONMENT_KEYS, ty, false) {
        let p = join(path, k.name);
        let v = &e.value;
        match k.name {
            "type" => {}
            "region" => {
                region =
                    word(is, &p, v).and_then(|s| check_region(&s).map_err(|m| is.error_at(&p, v, m)).ok().map(|()| s))
            }
            "project" => {
                project =
                    word(is, &p, v).and_then(|s| check_project(&s).map_err(|m| is.error_at(&p, v, m)).ok().map(|()| s))
            }
            "profile" => profile = word(is, &p, v),
            other => unreachable!("environment key '{other}' is in the table but not read"),
        }
    }
    let ty = ty?;
    for k in ENVIRONMENT_KEYS.iter().filter(|k| k.required_by.contains(&ty)) {
        if !entries.iter().any(|e| e.key == k.name && !is_null(&e.value)) {
            is.missing(&join(path, k.name), node, format!("{} {ty} environment needs {}", article(ty), k.name));
        }
    }
    Some(match ty {
        "local" => EnvironmentConfig::Local,
        "aws" => EnvironmentConfig::Aws { region: region?, profile },
        "gcp" => EnvironmentConfig::Gcp { region, project },
        _ => EnvironmentConfig::Azure { region },
    })
}

/// Cloud regions: `us-east-1`, `us-central1`, `eastus`.
pub(crate) fn check_region(s: &str) -> Result<(), String> {
    let ok = s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if ok { Ok(()) } else { Err("must be a region name: lower-case letters, digits and '-'".into()) }
}

/// GCP project ids (with the legacy `domain:` prefix allowed).
fn check_project(s: &str) -> Result<(), String> {
    let id = s.rsplit_once(':').map_or(s, |(_, id)| id);
    let ok = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err("must be a gcp project id: 6-30 lower-case letters, digits and '-', starting with a letter".into())
    }
}
