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

    /// The source as users may see it: a git remote's credential replaced by `***`.
    /// Only agents, through their claims, get the stored remote.
    pub fn without_credentials(mut self) -> Self {
        if let Self::Git(g) = &mut self {
            g.remote = redact_git_credential(&g.remote);
        }
        self
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

// By hand: utoipa's schema of an internally tagged enum refers to each
// variant's own schema, whose `additionalProperties: false` (the variants
// refuse unknown fields) then refuses the `type` tag itself.
impl utoipa::PartialSchema for JobSource {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
        let tagged = |tag: &str, variant: RefOr<Schema>| {
            let RefOr::T(Schema::Object(mut object)) = variant else {
                unreachable!("a derived struct schema is an inline object")
            };
            object
                .properties
                .insert("type".into(), ObjectBuilder::new().schema_type(Type::String).enum_values(Some([tag])).into());
            object.required.push("type".into());
            Schema::Object(object)
        };
        OneOfBuilder::new()
            .item(tagged("git", <GitSource as utoipa::PartialSchema>::schema()))
            .item(tagged("code", <CodeSource as utoipa::PartialSchema>::schema()))
            .item(tagged("image", <ImageSource as utoipa::PartialSchema>::schema()))
            .description(Some("What a job runs: one of three kinds, told apart by `type`."))
            .into()
    }
}

impl utoipa::ToSchema for JobSource {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <GitSource as utoipa::ToSchema>::schemas(schemas);
        <CodeSource as utoipa::ToSchema>::schemas(schemas);
        <ImageSource as utoipa::ToSchema>::schemas(schemas);
    }
}

/// `remote` may carry a credential (`https://user:token@host/...`): it is stored so that
/// agents can fetch, but `Debug` and every view shown to users redact it (see
/// [`JobSource::without_credentials`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("remote", &redact_git_credential(&self.remote))
            .field("commit", &self.commit)
            .field("entrypoint", &self.entrypoint)
            .field("diff_patch", &self.diff_patch)
            .field("build_context", &self.build_context)
            .field("dockerfile", &self.dockerfile)
            .field("base_image", &self.base_image)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeSource {
    /// `sha256:<64 hex>` of the gzipped tar archive held in the blob store.
    #[schema(schema_with = crate::rules::digest_schema)]
    pub digest: String,
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// The source as a user writes it: the three kinds side by side, so that
/// naming two of them is an error we can explain rather than a parse failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
            // http:// passes here: only the agent knows whether it may use it, and it checks again.
            if let Err(why) = classify_git_remote(&g.remote) {
                return Err((
                    "source.git.remote".into(),
                    format!(
                        "git remote '{}' must be https://, http://, ssh:// or user@host:path ({why})",
                        redact_git_remote(&g.remote)
                    ),
                ));
            }
            if let Err(why) = check_git_rev(&g.commit) {
                return Err((
                    "source.git.commit".into(),
                    format!(
                        "git commit '{}' must be a hex SHA or a branch or tag name ({why})",
                        shown(&g.commit, MAX_SHOWN)
                    ),
                ));
            }
            if let Some(digest) = &g.diff_patch
                && !is_sha256_digest(digest)
            {
                return Err((
                    "source.git.diff_patch".into(),
                    format!(
                        "diff.patch digest '{}' must look like sha256:<64 lowercase hex>",
                        shown(digest, MAX_SHOWN)
                    ),
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

/// Longest git remote accepted, in bytes.
pub const MAX_GIT_REMOTE_LEN: usize = 4096;
/// Longest branch or tag name accepted as `source.git.commit`, in bytes.
pub const MAX_GIT_REV_LEN: usize = 255;
/// Longest input echoed back in an error message, in characters.
const MAX_SHOWN: usize = 200;

/// The form of a git remote, judged from its text alone (no I/O, no git).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitRemoteKind {
    /// `https://host/path`.
    Https,
    /// `http://host/path`: unencrypted, so agents fetch it only when their config allows it.
    Http,
    /// `ssh://[user@]host[:port]/path`.
    Ssh,
    /// `user@host:path`, git's scp-like form of ssh.
    ScpLike,
}

/// Why a git remote is refused; reads well inside parentheses after the remote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitRemoteRefusal {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_GIT_REMOTE_LEN} bytes")]
    TooLong,
    /// git would read it as an option.
    #[error("it starts with '-'")]
    LeadingDash,
    #[error("it contains whitespace or control characters")]
    WhitespaceOrControl,
    /// `<transport>::<address>` runs `git-remote-<transport>`, e.g. `ext::` runs a shell command.
    #[error("it names the remote helper '{0}::'")]
    RemoteHelper(String),
    #[error("file:// reads the agent's own disk")]
    File,
    #[error("git:// is neither authenticated nor encrypted")]
    GitProtocol,
    #[error("the scheme '{0}://' is not supported")]
    Scheme(String),
    #[error("it has no host")]
    NoHost,
    #[error("it is not a valid URL: {0}")]
    InvalidUrl(String),
    /// ssh would read such a user or host as an option.
    #[error("its user, host or path starts with '-'")]
    DashInAuthority,
    #[error("scp-like remotes need a user and a path: user@host:path")]
    IncompleteScpLike,
    /// git reads anything that is not a URL or `host:path` as a path on the agent's disk.
    #[error("it is a local path")]
    LocalPath,
}

/// Classifies a git remote without running git: `https://`, `http://`, `ssh://` and
/// `user@host:path` pass; options, remote helpers (`ext::`, `fd::`, ...), `file://`,
/// `git://` and local paths are refused. Callers decide whether [`GitRemoteKind::Http`] is allowed.
pub fn classify_git_remote(remote: &str) -> Result<GitRemoteKind, GitRemoteRefusal> {
    use GitRemoteRefusal as R;
    if remote.is_empty() {
        return Err(R::Empty);
    }
    if remote.len() > MAX_GIT_REMOTE_LEN {
        return Err(R::TooLong);
    }
    if remote.trim_start().starts_with('-') {
        return Err(R::LeadingDash);
    }
    if remote.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(R::WhitespaceOrControl);
    }
    // git's transport.c: URL-scheme characters followed by "::" select `git-remote-<scheme>`.
    let scheme_len = remote
        .char_indices()
        .take_while(|&(i, c)| c.is_ascii_alphabetic() || (i > 0 && (c.is_ascii_digit() || "+-.".contains(c))))
        .count();
    if scheme_len > 0 && remote[scheme_len..].starts_with("::") {
        return Err(R::RemoteHelper(remote[..scheme_len].to_string()));
    }
    if let Some((scheme, rest)) = remote.split_once("://")
        && scheme.len() == scheme_len
    {
        let kind = match scheme {
            "https" => GitRemoteKind::Https,
            "http" => GitRemoteKind::Http,
            "ssh" => GitRemoteKind::Ssh,
            "file" => return Err(R::File),
            "git" => return Err(R::GitProtocol),
            other => return Err(R::Scheme(other.to_string())),
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (user, host),
            None => ("", authority),
        };
        if host.is_empty() || host.starts_with(':') {
            return Err(R::NoHost);
        }
        if host.starts_with('-') || user.starts_with('-') {
            return Err(R::DashInAuthority);
        }
        // The agent splits credentials off with the `url` crate: it must read the remote too.
        let url = url::Url::parse(remote).map_err(|e| R::InvalidUrl(e.to_string()))?;
        // A credential reaches git through its credential protocol, one `key=value` a line.
        let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        if [url.username(), url.password().unwrap_or_default()].iter().any(|s| decoded(s).chars().any(char::is_control))
        {
            return Err(R::WhitespaceOrControl);
        }
        return Ok(kind);
    }
    let drive = remote.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && remote[1..].starts_with(':');
    if remote.starts_with(['/', '.', '~', '\\']) || drive || remote.contains("://") {
        return Err(R::LocalPath);
    }
    // git reads a colon before any slash as ssh's `[user@]host:path`; we also require the user.
    match remote.split_once(':') {
        Some((prefix, path)) if !prefix.contains('/') => {
            let Some((user, host)) = prefix.split_once('@') else {
                return Err(R::IncompleteScpLike);
            };
            if user.is_empty() || host.is_empty() || host.contains('@') || path.is_empty() || path.starts_with(':') {
                return Err(R::IncompleteScpLike);
            }
            if user.starts_with('-') || host.starts_with('-') || path.starts_with('-') {
                return Err(R::DashInAuthority);
            }
            Ok(GitRemoteKind::ScpLike)
        }
        _ => Err(R::LocalPath),
    }
}

/// The credential an `http(s)://user:password@host/...` remote carries, apart from the URL.
/// The password is never shown: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct GitCredential {
    /// `scheme://host[:port]` the credential is for (git's `credential.<url>` key).
    pub origin: String,
    /// Percent-decoded, as git would send it.
    pub username: String,
    /// Percent-decoded; empty when the remote names only a user (often a token).
    pub password: String,
}

impl fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCredential")
            .field("origin", &self.origin)
            .field("username", &"***")
            .field("password", &"***")
            .finish()
    }
}

/// A remote split into what git may be told (argv, `.git/config`) and the credential it
/// must get some other way. For `http(s)://` the whole user part is the credential (a lone
/// user name is often a token); for `ssh://` the user stays and a password, which ssh
/// cannot use, is dropped. Other remotes are returned as they are.
pub fn split_git_credential(remote: &str) -> (String, Option<GitCredential>) {
    let Ok(mut url) = url::Url::parse(remote) else { return (remote.to_string(), None) };
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    match url.scheme() {
        "http" | "https" if !url.username().is_empty() || url.password().is_some() => {
            let credential = GitCredential {
                origin: url.origin().ascii_serialization(),
                username: decode(url.username()),
                password: decode(url.password().unwrap_or_default()),
            };
            // Both only fail for URLs that cannot have a user, which one with a user is not.
            let _ = url.set_password(None);
            let _ = url.set_username("");
            (url.into(), Some(credential))
        }
        "ssh" if url.password().is_some() => {
            let _ = url.set_password(None);
            (url.into(), None)
        }
        _ => (remote.to_string(), None),
    }
}

/// The remote as it may appear in messages and logs: a password replaced by `***` (and for
/// `http(s)://` a lone user name too, as it is often a token), control characters
/// escaped, and cut to a readable length.
pub fn redact_git_remote(remote: &str) -> String {
    shown(&redact_git_credential(remote), MAX_SHOWN)
}

/// The remote with its password (and an `http(s)://` lone user name) replaced by `***`,
/// otherwise unchanged: what API views and the CLI show.
pub fn redact_git_credential(remote: &str) -> String {
    let Ok(mut url) = url::Url::parse(remote) else {
        // Not a URL to the `url` crate: still hide anything between `:` and `@` after `://`.
        return match lexical_password_range(remote) {
            Some(r) => format!("{}***{}", &remote[..r.start], &remote[r.end..]),
            None => remote.to_string(),
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    } else if !url.username().is_empty() && matches!(url.scheme(), "http" | "https") {
        let _ = url.set_username("***");
    } else {
        return remote.to_string();
    }
    url.into()
}

fn lexical_password_range(remote: &str) -> Option<std::ops::Range<usize>> {
    let start = remote.find("://")? + 3;
    let rest = &remote[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some(start + colon + 1..start + at).filter(|r| !r.is_empty())
}

/// Checks `source.git.commit`: a hex SHA, or a branch or tag name that `git check-ref-format`
/// accepts and that git cannot read as an option or as revision syntax (`~`, `^`, `:`, `@{`, ...).
pub fn check_git_rev(rev: &str) -> Result<(), &'static str> {
    if rev.is_empty() {
        return Err("it is empty");
    }
    if rev.len() > MAX_GIT_REV_LEN {
        return Err("it is longer than 255 bytes");
    }
    if rev.starts_with('-') {
        return Err("it starts with '-'");
    }
    if rev.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    if rev.contains(['~', '^', ':', '?', '*', '[', '\\']) {
        return Err("it contains one of ~ ^ : ? * [ \\");
    }
    if rev.contains("..") {
        return Err("it contains '..'");
    }
    if rev.contains("@{") || rev == "@" {
        return Err("it contains '@{' or is '@'");
    }
    if rev.split('/').any(|part| part.is_empty() || part.starts_with('.') || part.ends_with(".lock"))
        || rev.ends_with('.')
    {
        return Err("a '/'-separated part is empty, starts with '.' or ends with '.lock', or it ends with '.'");
    }
    Ok(())
}

/// `s` with control characters escaped, cut to `max` characters.
fn shown(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

    fn git_spec(remote: &str, commit: &str) -> JobSourceSpec {
        JobSourceSpec {
            git: Some(GitSource {
                remote: remote.into(),
                commit: commit.into(),
                entrypoint: vec!["python".into(), "train.py".into()],
                diff_patch: None,
                build_context: None,
                dockerfile: None,
                base_image: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn git_remote_forms() {
        use GitRemoteKind::*;
        for (remote, kind) in [
            ("https://github.com/acme/repo.git", Https),
            ("https://user:token@example.com:8443/a/b", Https),
            ("http://127.0.0.1:9418/repo.git", Http),
            ("ssh://git@example.com:2222/acme/repo.git", Ssh),
            ("ssh://[::1]/repo", Ssh),
            ("git@github.com:acme/repo.git", ScpLike),
            ("deploy@10.0.0.1:/srv/git/repo", ScpLike),
        ] {
            assert_eq!(classify_git_remote(remote), Ok(kind), "{remote}");
        }
        use GitRemoteRefusal as R;
        for (remote, why) in [
            ("", R::Empty),
            ("-uhttps://x", R::LeadingDash),
            (" \t--upload-pack=touch /tmp/x", R::LeadingDash),
            ("--upload-pack=x", R::LeadingDash),
            ("https://example.com/a b", R::WhitespaceOrControl),
            ("https://example.com/a\nb", R::WhitespaceOrControl),
            ("https://example.com/a\u{7f}", R::WhitespaceOrControl),
            ("https://a:b%0Ahost=evil@example.com/a", R::WhitespaceOrControl),
            ("https://host:99999/a", R::InvalidUrl("invalid port number".into())),
            ("ext::sh -c touch% /tmp/pwned", R::WhitespaceOrControl),
            ("ext::sh", R::RemoteHelper("ext".into())),
            ("EXT::sh", R::RemoteHelper("EXT".into())),
            ("fd::3", R::RemoteHelper("fd".into())),
            ("https::example.com/x", R::RemoteHelper("https".into())),
            ("file:///etc/passwd", R::File),
            ("git://example.com/repo", R::GitProtocol),
            ("HTTPS://example.com/repo", R::Scheme("HTTPS".into())),
            ("ftp://example.com/repo", R::Scheme("ftp".into())),
            ("https:///path", R::NoHost),
            ("ssh://-oProxyCommand=x/repo", R::DashInAuthority),
            ("ssh://-oProxyCommand=x@host/repo", R::DashInAuthority),
            ("git@-oProxyCommand=x:repo", R::DashInAuthority),
            ("git@host:-x", R::DashInAuthority),
            ("github.com:acme/repo", R::IncompleteScpLike),
            ("git@host:", R::IncompleteScpLike),
            ("git@host::repo", R::IncompleteScpLike),
            ("@host:repo", R::IncompleteScpLike),
            ("/srv/git/repo.git", R::LocalPath),
            ("./repo", R::LocalPath),
            ("../repo", R::LocalPath),
            ("repo", R::LocalPath),
            ("~/repo", R::LocalPath),
            ("C:\\repo", R::LocalPath),
            ("C:/repo", R::LocalPath),
            ("dir/x:y", R::LocalPath),
            ("a@b://c", R::LocalPath),
        ] {
            assert_eq!(classify_git_remote(remote), Err(why), "{remote:?}");
        }
        assert_eq!(classify_git_remote(&format!("https://h/{}", "a".repeat(5000))), Err(R::TooLong));
    }

    #[test]
    fn git_remote_passwords_are_redacted() {
        assert_eq!(redact_git_remote("https://alice:s3cret@host/a.git"), "https://alice:***@host/a.git");
        assert_eq!(redact_git_remote("ssh://a:b:c@host/x"), "ssh://a:***@host/x");
        assert_eq!(redact_git_remote("https://token@host/a@b"), "https://***@host/a@b", "a lone user may be a token");
        assert_eq!(redact_git_remote("ssh://git@host/a"), "ssh://git@host/a", "an ssh user is not a secret");
        assert_eq!(redact_git_remote("https://host/a:b@c"), "https://host/a:b@c");
        assert_eq!(redact_git_remote("https://a:b@c@host/"), "https://a:***@host/");
        assert_eq!(redact_git_remote("weird://a:b@c d"), "weird://a:***@c d", "unparsable: lexically");
        assert_eq!(redact_git_remote("ext::x\ny"), "ext::x\\ny");
        assert!(redact_git_remote(&"x".repeat(500)).ends_with('…'));
        let src = JobSource::Git(GitSource {
            remote: "https://alice:s3cret@host/a.git".into(),
            commit: "main".into(),
            entrypoint: vec!["x".into()],
            diff_patch: None,
            build_context: None,
            dockerfile: None,
            base_image: None,
        });
        assert!(!format!("{src:?}").contains("s3cret") && format!("{src:?}").contains("alice:***@host"));
        let JobSource::Git(g) = src.without_credentials() else { unreachable!() };
        assert_eq!(g.remote, "https://alice:***@host/a.git");
    }

    #[test]
    fn git_credentials_are_split_off() {
        let (url, cred) = split_git_credential("https://alice:s%40cret%3A@Example.com:8443/a.git");
        assert_eq!(url, "https://example.com:8443/a.git");
        let cred = cred.unwrap();
        assert_eq!(
            (cred.origin.as_str(), cred.username.as_str(), cred.password.as_str()),
            ("https://example.com:8443", "alice", "s@cret:")
        );
        assert!(!format!("{cred:?}").contains("cret"));
        let (url, cred) = split_git_credential("https://ghp_token@github.com/a/b.git");
        assert_eq!((url.as_str(), cred.unwrap().username.as_str()), ("https://github.com/a/b.git", "ghp_token"));
        assert_eq!(split_git_credential("ssh://git:pw@host/x"), ("ssh://git@host/x".to_string(), None));
        for plain in ["https://github.com/a/b.git", "git@github.com:a/b.git", "ssh://git@host:2222/x"] {
            assert_eq!(split_git_credential(plain), (plain.to_string(), None));
        }
    }

    #[test]
    fn git_revs() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for ok in [sha, "abc1234", "main", "feature/x-1", "v1.2.3", "release/2024.01", "@x", &"a".repeat(255)] {
            assert_eq!(check_git_rev(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=x",
            "a b",
            "a\tb",
            "a..b",
            "HEAD~1",
            "HEAD^",
            ":/msg",
            "main@{upstream}",
            "@",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a/",
            "/a",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "x.lock/y",
            "a.",
            &"a".repeat(256),
        ] {
            assert!(check_git_rev(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn git_sources_are_checked_at_creation() {
        assert!(git_spec("https://example.com/a.git", "main").resolve().is_ok());
        assert!(git_spec("http://127.0.0.1:8080/a.git", "0123abc").resolve().is_ok(), "the agent decides about http");
        let (field, msg) = git_spec("ext::sh -c id", "main").resolve().unwrap_err();
        assert_eq!(field, "source.git.remote");
        assert!(msg.contains("'ext::sh -c id'") && msg.contains("whitespace"), "{msg}");
        let (field, msg) = git_spec("file://alice:pw@host/x", "main").resolve().unwrap_err();
        assert_eq!(field, "source.git.remote");
        assert!(msg.contains("file://alice:***@host/x") && !msg.contains("pw@"), "{msg}");
        let (field, msg) = git_spec("https://example.com/a.git", "--output=/etc/x").resolve().unwrap_err();
        assert_eq!(field, "source.git.commit");
        assert!(msg.contains("'--output=/etc/x'") && msg.contains("starts with '-'"), "{msg}");
        assert_eq!(git_spec("https://example.com/a.git", "main~1").resolve().unwrap_err().0, "source.git.commit");
        let mut spec = git_spec("https://example.com/a.git", "main");
        spec.git.as_mut().unwrap().diff_patch = Some("sha256:abc".into());
        assert_eq!(spec.clone().resolve().unwrap_err().0, "source.git.diff_patch");
        spec.git.as_mut().unwrap().diff_patch = Some(format!("sha256:{}", "ab".repeat(32)));
        assert!(spec.resolve().is_ok());
    }
}
