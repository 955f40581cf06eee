//! Where the server's secrets meet [`SecretsKeys`]: a git remote's
//! credential is sealed in its userinfo before the job is stored, and opened
//! only for the agent that claims the run; the server's own secrets are
//! sealed in `server_secrets`. On start, [`sweep`] seals what is still
//! plain (a database from before encryption) and re-wraps what is under an
//! old key, so that afterwards the old key is no longer needed.

use crate::secrets_key::{SecretsKeyError, SecretsKeys, sealed_key_id};
use liftoff_core::JobSource;
use liftoff_store::{Store, StoreError, StoredRemoteAt};

/// The purpose a git credential is sealed for.
const GIT_PURPOSE: &str = "git-remote";
/// A sealed marker: which key the database's secrets are under, so a
/// server without it (or with another) refuses to start rather than fail
/// at the first claim.
const CANARY: &str = "secrets-key-check";

fn secret_purpose(name: &str) -> String {
    format!("server-secret:{name}")
}

/// Why the secrets at rest could not be prepared on start.
#[derive(Debug, thiserror::Error)]
pub enum SecretsAtRestError {
    #[error(transparent)]
    Key(#[from] SecretsKeyError),
    #[error("cannot read or rewrite the stored secrets: {0}")]
    Store(#[from] StoreError),
}

/// The userinfo range of a URL-like remote (`scheme://userinfo@host...`).
fn userinfo(remote: &str) -> Option<std::ops::Range<usize>> {
    let start = remote.find("://")? + 3;
    let rest = &remote[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some(start..start + at)
}

/// The part of the userinfo that is secret: the password if there is one,
/// else an http(s) username (a token given alone), as
/// `liftoff_core::redact_git_credential` hides them.
fn secret_part(remote: &str) -> Option<std::ops::Range<usize>> {
    let info = userinfo(remote)?;
    match remote[info.clone()].find(':') {
        Some(colon) => Some(info.start + colon + 1..info.end),
        None if remote.starts_with("http://") || remote.starts_with("https://") => Some(info),
        None => None,
    }
    .filter(|r| !r.is_empty())
}

/// The remote with its credential sealed (unchanged if it has none or it is sealed).
fn seal_remote(keys: &SecretsKeys, remote: &str) -> String {
    match secret_part(remote) {
        Some(r) if sealed_key_id(&remote[r.clone()]).is_none() => {
            format!(
                "{}{}{}",
                &remote[..r.start],
                keys.seal(GIT_PURPOSE, remote[r.clone()].as_bytes()),
                &remote[r.end..]
            )
        }
        _ => remote.to_string(),
    }
}

/// The remote with its credential opened. `what` names it in errors.
fn open_remote(keys: Option<&SecretsKeys>, what: &str, remote: &str) -> Result<String, SecretsKeyError> {
    let Some(r) = secret_part(remote) else { return Ok(remote.to_string()) };
    let Some(id) = sealed_key_id(&remote[r.clone()]) else { return Ok(remote.to_string()) };
    let Some(keys) = keys else { return Err(SecretsKeyError::NoKey { what: what.to_string(), id: id.to_string() }) };
    let plain = keys.open(what, GIT_PURPOSE, &remote[r.clone()])?;
    Ok(format!("{}{}{}", &remote[..r.start], String::from_utf8_lossy(&plain), &remote[r.end..]))
}

/// A job's source as stored: its git credential sealed when the server has a key.
pub fn seal_source(keys: Option<&SecretsKeys>, mut source: JobSource) -> JobSource {
    if let (Some(keys), JobSource::Git(g)) = (keys, &mut source) {
        g.remote = seal_remote(keys, &g.remote);
    }
    source
}

/// A stored source with its git credential opened, for the agent that claimed the run.
pub fn open_source(
    keys: Option<&SecretsKeys>,
    what: &str,
    mut source: JobSource,
) -> Result<JobSource, SecretsKeyError> {
    if let JobSource::Git(g) = &mut source {
        g.remote = open_remote(keys, what, &g.remote)?;
    }
    Ok(source)
}

/// The server secret `name` (made on first use, shared by every server on the
/// database), stored sealed when the server has a key.
pub async fn server_secret(
    store: &dyn Store,
    keys: Option<&SecretsKeys>,
    name: &str,
) -> Result<String, SecretsAtRestError> {
    let candidate = crate::auth::new_key_secret();
    let stored_candidate = match keys {
        Some(k) => k.seal(&secret_purpose(name), candidate.as_bytes()),
        None => candidate,
    };
    let stored = store.server_secret(name, &stored_candidate).await?;
    let what = format!("server secret '{name}'");
    match (sealed_key_id(&stored), keys) {
        (None, _) => Ok(stored),
        (Some(id), None) => Err(SecretsKeyError::NoKey { what, id: id.to_string() }.into()),
        (Some(_), Some(k)) => Ok(String::from_utf8_lossy(&k.open(&what, &secret_purpose(name), &stored)?).into_owned()),
    }
}

/// What [`sweep`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Plain values sealed.
    pub sealed: usize,
    /// Values under an old key re-wrapped under the current one.
    pub rewrapped: usize,
}

/// On start: without a key, refuses a database whose secrets are sealed;
/// with one, checks it is the database's key (or the database's key is
/// among the old ones), seals plain values and re-wraps values under old
/// keys. Rows changed meanwhile by another server are left to it.
pub async fn sweep(store: &dyn Store, keys: Option<&SecretsKeys>) -> Result<SweepReport, SecretsAtRestError> {
    let secrets = store.server_secrets_all().await?;
    let canary = secrets.iter().find(|(n, _)| n == CANARY).map(|(_, v)| v.clone());
    let Some(keys) = keys else {
        if let Some(id) = canary.as_deref().and_then(sealed_key_id) {
            return Err(
                SecretsKeyError::NoKey { what: "the database's stored secrets".into(), id: id.to_string() }.into()
            );
        }
        return Ok(SweepReport::default());
    };
    if let Some(c) = &canary {
        // the wrong key fails here, before anything is rewritten
        keys.open("the database's stored secrets", &secret_purpose(CANARY), c)?;
    }
    let mut report = SweepReport::default();
    for (name, value) in secrets.iter().filter(|(n, _)| n != CANARY) {
        let what = format!("server secret '{name}'");
        if let Some(new) = reseal(keys, &what, &secret_purpose(name), value)?
            && store.replace_server_secret(name, Some(value), &new).await?
        {
            report.count(value);
        }
    }
    for stored in store.git_remotes_with_userinfo().await? {
        let Some(r) = secret_part(&stored.remote) else { continue };
        let part = &stored.remote[r.clone()];
        if let Some(new_part) = reseal(keys, &describe(&stored.at), GIT_PURPOSE, part)? {
            let new_remote = format!("{}{}{}", &stored.remote[..r.start], new_part, &stored.remote[r.end..]);
            if store.replace_git_remote(&stored, &new_remote).await? {
                report.count(part);
            }
        }
    }
    if report.sealed > 0 {
        // the plain values' old row versions would still hold them
        store.purge_old_row_versions().await?;
    }
    // last: once it names the current key, the old one is no longer needed
    let purpose = secret_purpose(CANARY);
    match &canary {
        None => {
            store.replace_server_secret(CANARY, None, &keys.seal(&purpose, b"liftoff")).await?;
        }
        Some(c) => {
            if let Some(new) = keys.rewrap("the database's stored secrets", &purpose, c)? {
                store.replace_server_secret(CANARY, Some(c), &new).await?;
            }
        }
    }
    Ok(report)
}

/// A plain value sealed, or a sealed one re-wrapped under the current key;
/// `None` when it is under the current key already.
fn reseal(keys: &SecretsKeys, what: &str, purpose: &str, value: &str) -> Result<Option<String>, SecretsKeyError> {
    match sealed_key_id(value) {
        None => Ok(Some(keys.seal(purpose, value.as_bytes()))),
        Some(_) => keys.rewrap(what, purpose, value),
    }
}

impl SweepReport {
    /// Counts `old` (the value as it was) rewritten.
    fn count(&mut self, old: &str) {
        if sealed_key_id(old).is_some() {
            self.rewrapped += 1;
        } else {
            self.sealed += 1;
        }
    }
}

fn describe(at: &StoredRemoteAt) -> String {
    match at {
        StoredRemoteAt::Job { entity, project, name, version } => {
            format!("the git remote of job {entity}/{project}/{name}:v{version}")
        }
        StoredRemoteAt::Item { id } => format!("the git remote of run-queue item {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_part_of_a_remote() {
        let part = |r: &str| secret_part(r).map(|x| r[x].to_string());
        assert_eq!(part("https://user:tok@github.com/a/b.git").as_deref(), Some("tok"));
        assert_eq!(part("https://tok@github.com/a/b.git").as_deref(), Some("tok"));
        assert_eq!(part("ssh://git@github.com/a/b.git"), None, "an ssh user name is no secret");
        assert_eq!(part("ssh://git:pw@host/a").as_deref(), Some("pw"));
        assert_eq!(part("https://github.com/a/b@c"), None, "an '@' in the path is not userinfo");
        assert_eq!(part("https://user:@host/x"), None);
    }
}
