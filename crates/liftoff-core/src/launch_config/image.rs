//! Push destinations, parsed as [`ImageRef`]s and classified by registry.

pub(crate) use crate::image_ref::check_repository;
use crate::image_ref::{ImageRef, is_host_like};
use serde::{Serialize, Serializer};
use std::fmt;

/// Where built images are pushed, classified by host like the reference's
/// `registry_from_uri`: the builder picks its login and checks from the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDestination {
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<repository>`
    Ecr { account: String, region: String, repository: String },
    /// `<region>-docker.pkg.dev/<project>/<repository>/<image>`
    Gar { region: String, project: String, repository: String, image: String },
    /// `<registry>.azurecr.io/<repository>`
    Acr { registry: String, repository: String },
    /// Any other registry (`docker.io` when the reference names no host).
    Oci { host: String, repository: String },
}

impl ImageDestination {
    /// Parses a destination: an image repository without tag or digest, with an
    /// optional `https://` in front.
    pub fn parse(uri: &str) -> Result<Self, String> {
        if uri.starts_with("http://") {
            return Err("registries are reached over https: drop 'http://'".into());
        }
        let s = uri.strip_prefix("https://").unwrap_or(uri);
        let s = s.strip_suffix('/').unwrap_or(s);
        if !s.contains('/') && is_host_like(s.split(':').next().unwrap_or(s)) && !s.contains('@') {
            let (h, rest) = s.split_once(':').unwrap_or((s, ""));
            if rest.is_empty() || rest.bytes().all(|b| b.is_ascii_digit()) || h.contains('.') {
                return Err(format!("names the registry '{s}' but no repository: add '/<repository>'"));
            }
        }
        let r = ImageRef::parse(s)?;
        if let Some(d) = &r.digest {
            return Err(format!("a destination carries no digest: remove '@{d}'"));
        }
        if let Some(t) = &r.tag {
            return Err(format!(
                "a destination carries no tag (the agent tags each image with a hash of its source): remove ':{t}'"
            ));
        }
        let host = r.host.clone().unwrap_or_else(|| "docker.io".to_string());
        let lower = host.to_ascii_lowercase();
        if let Some(name) = lower.strip_suffix(".azurecr.io") {
            return Ok(Self::Acr { registry: name.to_string(), repository: r.repository });
        }
        if let Some(region) = lower.strip_suffix("-docker.pkg.dev") {
            let parts: Vec<&str> = r.repository.splitn(3, '/').collect();
            return match parts.as_slice() {
                [project, repository, image] => Ok(Self::Gar {
                    region: region.to_string(),
                    project: project.to_string(),
                    repository: repository.to_string(),
                    image: image.to_string(),
                }),
                _ => Err("an artifact registry uri needs an image name: <region>-docker.pkg.dev/<project>/<repository>/<image>"
                    .into()),
            };
        }
        let labels: Vec<&str> = lower.split('.').collect();
        if let [account, "dkr", "ecr", region, "amazonaws", "com"] = labels.as_slice() {
            return Ok(Self::Ecr {
                account: account.to_string(),
                region: region.to_string(),
                repository: r.repository,
            });
        }
        // the setup document's own example leaves out `.dkr.`; say so rather than treat it as another registry
        if let [account, "ecr", region, "amazonaws", "com"] = labels.as_slice() {
            return Err(format!(
                "not an ecr host: did you mean '{account}.dkr.ecr.{region}.amazonaws.com/{}'?",
                r.repository
            ));
        }
        Ok(Self::Oci { host, repository: r.repository })
    }

    /// The repository URI without scheme, as `docker push` takes it (plus `:tag`).
    pub fn uri(&self) -> String {
        match self {
            Self::Ecr { account, region, repository } => {
                format!("{account}.dkr.ecr.{region}.amazonaws.com/{repository}")
            }
            Self::Gar { region, project, repository, image } => {
                format!("{region}-docker.pkg.dev/{project}/{repository}/{image}")
            }
            Self::Acr { registry, repository } => format!("{registry}.azurecr.io/{repository}"),
            Self::Oci { host, repository } => format!("{host}/{repository}"),
        }
    }

    /// `ecr`, `gar`, `acr` or `oci`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ecr { .. } => "ecr",
            Self::Gar { .. } => "gar",
            Self::Acr { .. } => "acr",
            Self::Oci { .. } => "oci",
        }
    }
}

impl fmt::Display for ImageDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Serialized as its URI.
impl Serialize for ImageDestination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.uri())
    }
}
