//! The deprecated `registry` block: where images are pushed when
//! `builder.destination` is not set.

use super::image::{ImageDestination, check_repository};
use super::keys::{REGISTRY_KEYS, key_named};
use super::reader::{Issues, article, is_null, join, known_entries, mapping, shaped_choice, word};
use super::yaml::Node;
use serde::Serialize;

/// The registry kinds the reference knows (`gcr` is Google Artifact Registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryType {
    Local,
    Ecr,
    Gcr,
    Acr,
}

/// The `registry` block, checked. `uri` (or its legacy name `url`) and the
/// `repository`/`image-name` pair are alternatives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryConfig {
    /// `None`: not given (a bare `uri` is then pushed to as it is).
    #[serde(rename = "type")]
    pub registry_type: Option<RegistryType>,
    pub uri: Option<ImageDestination>,
    pub repository: Option<String>,
    pub image_name: Option<String>,
}

pub(crate) fn read(is: &mut Issues, path: &str, node: &Node) -> Option<RegistryConfig> {
    let entries = mapping(is, path, node)?;
    let given = |name: &str| entries.iter().find(|e| e.key == name && !is_null(&e.value));
    let ty =
        given("type").and_then(|e| shaped_choice(is, &join(path, "type"), &e.value, key_named(REGISTRY_KEYS, "type")));
    let type_ok = given("type").is_none() || ty.is_some();
    let mut cfg = RegistryConfig {
        registry_type: ty.map(|t| match t {
            "ecr" => RegistryType::Ecr,
            "gcr" => RegistryType::Gcr,
            "acr" => RegistryType::Acr,
            _ => RegistryType::Local,
        }),
        uri: None,
        repository: None,
        image_name: None,
    };
    for (k, e) in known_entries(is, path, entries, REGISTRY_KEYS, ty, false) {
        let p = join(path, k.name);
        let v = &e.value;
        match k.name {
            "type" => {}
            "uri" | "url" => {
                if k.name == "url" && given("uri").is_some() {
                    is.error_at(&p, v, "url is the legacy name of uri: give one of them");
                    continue;
                }
                let Some(s) = word(is, &p, v) else { continue };
                let dest = match ImageDestination::parse(&s) {
                    Ok(d) => d,
                    Err(m) => {
                        is.error_at(&p, v, m);
                        continue;
                    }
                };
                let expected = match cfg.registry_type {
                    Some(RegistryType::Ecr) => Some(("ecr", "<account>.dkr.ecr.<region>.amazonaws.com/<repository>")),
                    Some(RegistryType::Gcr) => Some(("gar", "<region>-docker.pkg.dev/<project>/<repository>/<image>")),
                    Some(RegistryType::Acr) => Some(("acr", "<registry>.azurecr.io/<repository>")),
                    _ => None,
                };
                match expected {
                    Some((kind, form)) if dest.kind() != kind => {
                        let ty = ty.unwrap_or_default();
                        is.error_at(&p, v, format!("{} {ty} registry's uri must look like {form}", article(ty)))
                    }
                    _ => cfg.uri = Some(dest),
                }
            }
            "repository" | "image-name" => {
                if let Some(s) = word(is, &p, v) {
                    match check_repository(&s) {
                        Ok(()) if k.name == "repository" => cfg.repository = Some(s),
                        Ok(()) => cfg.image_name = Some(s),
                        Err(m) => is.error_at(&p, v, m),
                    }
                }
            }
            other => unreachable!("registry key '{other}' is in the table but not read"),
        }
    }
    let has_uri = given("uri").is_some() || given("url").is_some();
    let (has_repo, has_image) = (given("repository").is_some(), given("image-name").is_some());
    match cfg.registry_type {
        Some(RegistryType::Ecr) if has_uri && has_repo => {
            is.error(&join(path, "repository"), None, "give uri or repository, not both")
        }
        Some(RegistryType::Ecr) if !has_uri && !has_repo => {
            is.missing(&join(path, "uri"), node, "an ecr registry needs uri (or repository)")
        }
        Some(RegistryType::Gcr) if has_uri && (has_repo || has_image) => is.error(
            &join(path, if has_repo { "repository" } else { "image-name" }),
            None,
            "give uri, or repository and image-name, not both",
        ),
        Some(RegistryType::Gcr) if !(has_uri || has_repo && has_image) => is.missing(
            &join(path, if has_repo { "image-name" } else { "uri" }),
            node,
            "a gcr registry needs uri, or repository and image-name",
        ),
        Some(RegistryType::Acr) if !has_uri => is.missing(&join(path, "uri"), node, "an acr registry needs uri"),
        // as in the reference, a block without type is not refused: a bare
        // uri is still pushed to, anything else is ignored with a warning
        None if type_ok && has_uri && (has_repo || has_image) => is.warn(
            &join(path, if has_repo { "repository" } else { "image-name" }),
            None,
            "ignored: without a registry type only uri is used (repository and image-name need type: ecr or gcr)",
        ),
        None if type_ok && !has_uri => is.warn(
            path,
            None,
            "ignored: a registry block without type or uri names no registry (images stay in the local engine)",
        ),
        _ => {}
    }
    type_ok.then_some(cfg)
}
