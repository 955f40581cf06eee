//! Image references, one type for the whole workspace (the launch config,
//! the container runner's pulls, registry credentials). Hand-written rather
//! than taken from an OCI crate: the grammar is small, and the messages must
//! say exactly which part is wrong (a tag, a port mistaken for one, an
//! upper-case letter).

use std::fmt;

/// The registry of a reference that names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

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

    /// The registry host (with port) to pull from and to find credentials for.
    pub fn registry(&self) -> &str {
        self.host.as_deref().unwrap_or(DEFAULT_REGISTRY)
    }

    /// `[host/]repository`: what a pull names, without tag or digest.
    pub fn name(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// What a pull asks for: the digest, else the tag, else `latest` (an
    /// empty tag would pull every tag of the repository).
    pub fn tag_or_digest(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
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
pub(crate) fn is_host_like(first: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_get_latest_only_when_untagged() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let pull = |r: &str| {
            let r = ImageRef::parse(r).unwrap();
            (r.registry().to_string(), r.name(), r.tag_or_digest().to_string())
        };
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(pull("busybox"), t("docker.io", "busybox", "latest"));
        assert_eq!(pull("library/busybox:1.36"), t("docker.io", "library/busybox", "1.36"));
        assert_eq!(pull("127.0.0.1:5000/a/b"), t("127.0.0.1:5000", "127.0.0.1:5000/a/b", "latest"));
        assert_eq!(pull("localhost/x:v2"), t("localhost", "localhost/x", "v2"));
        assert_eq!(pull(&format!("r.io/x:t@{digest}")), t("r.io", "r.io/x", &digest), "the digest wins");
        assert_eq!(pull("123.dkr.ecr.us-east-1.amazonaws.com/repo:tag").0, "123.dkr.ecr.us-east-1.amazonaws.com");
    }
}
