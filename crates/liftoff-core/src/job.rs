//! Jobs: versioned, aliased recipes for a run, with exactly one source.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobSource {
    Git(GitSource),
    Code(CodeSource),
    Image(ImageSource),
}

impl JobSource {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Git(_) => "git",
            Self::Code(_) => "code",
            Self::Image(_) => "image",
        }
    }

    /// The command the job runs by default, if it has one.
    pub fn entrypoint(&self) -> &[String] {
        match self {
            Self::Git(g) => &g.entrypoint,
            Self::Code(c) => &c.entrypoint,
            Self::Image(_) => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    pub remote: String,
    pub commit: String,
    pub entrypoint: Vec<String>,
    /// `sha256:<hex>` of a blob holding a `git diff` applied after checkout
    /// (uncommitted changes captured when the job was created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSource {
    /// `sha256:<64 hex>` of the gzipped tar archive held in the blob store.
    pub digest: String,
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// The source as a user writes it: the three kinds side by side, so that
/// naming two of them is an error we can explain rather than a parse failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,
}

impl JobSourceSpec {
    /// Resolves to exactly one source and checks its fields; the error names the field.
    pub fn resolve(self) -> Result<JobSource, (String, String)> {
        let named: Vec<&str> = [
            self.git.as_ref().map(|_| "git"),
            self.code.as_ref().map(|_| "code"),
            self.image.as_ref().map(|_| "image"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if named.len() != 1 {
            return Err((
                "source".into(),
                format!(
                    "a job needs exactly one source (git, code or image); this one names {}",
                    if named.is_empty() { "none".to_string() } else { named.join(" and ") }
                ),
            ));
        }
        let src = if let Some(g) = self.git {
            if g.remote.trim().is_empty() {
                return Err(("source.git.remote".into(), "git remote must not be empty".into()));
            }
            if !(7..=64).contains(&g.commit.len()) || !g.commit.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err((
                    "source.git.commit".into(),
                    format!("git commit '{}' must be a 7-64 character hex SHA", g.commit),
                ));
            }
            JobSource::Git(g)
        } else if let Some(c) = self.code {
            if !is_sha256_digest(&c.digest) {
                return Err((
                    "source.code.digest".into(),
                    format!("code digest '{}' must look like sha256:<64 lowercase hex>", c.digest),
                ));
            }
            JobSource::Code(c)
        } else if let Some(i) = self.image {
            if i.image.trim().is_empty() || i.image.chars().any(char::is_whitespace) {
                return Err(("source.image.image".into(), format!("image reference '{}' is invalid", i.image)));
            }
            JobSource::Image(i)
        } else {
            unreachable!("exactly one source was checked above")
        };
        if let Some(ep) = match &src {
            JobSource::Git(g) => Some(&g.entrypoint),
            JobSource::Code(c) => Some(&c.entrypoint),
            JobSource::Image(_) => None,
        } && ep.is_empty()
        {
            return Err((format!("source.{}.entrypoint", src.kind()), "an entrypoint is required".into()));
        }
        Ok(src)
    }
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

/// A reference to a job: `[[entity/]project/]name[:alias|:vN]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub entity: Option<String>,
    pub project: Option<String>,
    pub name: String,
    /// `latest` when none is given.
    pub alias: String,
}

impl JobRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (path, alias) = match s.rsplit_once(':') {
            Some((p, a)) => (p, a.to_string()),
            None => (s, "latest".to_string()),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (entity, project, name) = match parts.as_slice() {
            [n] => (None, None, *n),
            [p, n] => (None, Some(p.to_string()), *n),
            [e, p, n] => (Some(e.to_string()), Some(p.to_string()), *n),
            _ => return Err(format!("job reference '{s}' must look like [[entity/]project/]name[:alias]")),
        };
        for part in entity.iter().chain(project.iter()).map(String::as_str).chain([name, alias.as_str()]) {
            crate::queue::validate_name("job reference", part)
                .map_err(|_| format!("job reference '{s}' has an invalid part '{part}'"))?;
        }
        Ok(Self { entity, project, name: name.to_string(), alias })
    }

    /// `Some(n)` when the alias is a version such as `v3`.
    pub fn version(&self) -> Option<i64> {
        self.alias.strip_prefix('v')?.parse().ok()
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.entity {
            write!(f, "{e}/")?;
        }
        if let Some(p) = &self.project {
            write!(f, "{p}/")?;
        }
        write!(f, "{}:{}", self.name, self.alias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_job_refs() {
        let r = JobRef::parse("acme/proj/train:v3").unwrap();
        assert_eq!(r.entity.as_deref(), Some("acme"));
        assert_eq!(r.version(), Some(3));
        let r = JobRef::parse("train").unwrap();
        assert_eq!((r.project, r.alias.as_str()), (None, "latest"));
        assert!(JobRef::parse("a/b/c/d").is_err());
        assert!(JobRef::parse("../x").is_err());
    }

    #[test]
    fn exactly_one_source() {
        let both = JobSourceSpec {
            code: Some(CodeSource {
                digest: format!("sha256:{}", "a".repeat(64)),
                entrypoint: vec!["python".into()],
                build_context: None,
                dockerfile: None,
                base_image: None,
            }),
            image: Some(ImageSource { image: "busybox".into(), args: vec![] }),
            git: None,
        };
        let (field, msg) = both.resolve().unwrap_err();
        assert_eq!(field, "source");
        assert!(msg.contains("code and image"), "{msg}");
        assert!(JobSourceSpec::default().resolve().is_err());
    }

    #[test]
    fn digest_shape() {
        assert!(is_sha256_digest(&format!("sha256:{}", "0f".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0F".repeat(32))));
        assert!(!is_sha256_digest("sha256:abc"));
    }
}
