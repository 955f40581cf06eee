//! Image references and push destinations. Hand-written rather than taken from
//! an OCI crate: the grammar is small, and the messages must say exactly which
//! part is wrong (a tag, a port mistaken for one, an upper-case letter).

use serde::{Serialize, Serializer};
use std::fmt;

/// A parsed image reference: `[host[:port]/]path[:tag][@sha256:<hex>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host with optional port; `None` means Docker Hub.
    pub host: Option<String>,
    /// Slash-separated lower-case path.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference as `docker pull` reads it.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or line breaks".into());
        }
        if s.contains('#') {
            return Err("must not contain '#'".into());
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or("a digest must be sha256:<64 hex digits>")?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err("a digest must be sha256:<64 lower-case hex digits>".into());
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        let mut parts: Vec<&str> = name.split('/').collect();
        let host = if parts.len() > 1 && is_host_like(parts[0]) { Some(parts.remove(0).to_string()) } else { None };
        if let Some(h) = &host {
            check_host(h)?;
        }
        let last = parts.pop().unwrap_or_default();
        let (last, tag) = match last.split_once(':') {
            Some((l, t)) => (l, Some(t.to_string())),
            None => (last, None),
        };
        parts.push(last);
        for p in &parts {
            check_path_component(p)?;
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(format!("tag '{t}' is invalid: use up to 128 letters, digits, '_', '.' or '-'"));
            }
        }
        Ok(Self { host, repository: parts.join("/"), tag, digest })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "{h}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The first path component names a registry host when it has a dot or a port,
/// or is `localhost` (docker's rule).
fn is_host_like(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_host(h: &str) -> Result<(), String> {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !name_ok {
        return Err(format!("registry host '{h}' is invalid"));
    }
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry port '{p}' is invalid"));
    }
    Ok(())
}

/// Checks a repository path (`team/app`) given on its own, without host or tag.
pub(crate) fn check_repository(path: &str) -> Result<(), String> {
    path.split('/').try_for_each(check_path_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_path_component(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("has an empty path component ('//' or a trailing '/')".into());
    }
    if p.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository names are lower-case ('{p}')"));
    }
    let bytes = p.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let sep = |b: u8| matches!(b, b'.' | b'_' | b'-');
    let ok = alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || sep(b))
        && !p.contains("..")
        && !p.contains("___")
        && !p.contains("._")
        && !p.contains("_.")
        && !p.contains(".-")
        && !p.contains("-.")
        && !p.contains("_-")
        && !p.contains("-_");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{p}' is not a valid repository name: use lower-case letters and digits separated by '.', '_', '__' or '-'"
        ))
    }
}

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
