//! Where the kaniko builder uploads build contexts.

use serde::{Serialize, Serializer};
use std::fmt;

/// A bucket or blob container URI for build contexts, with an optional prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildContextStore {
    /// `s3://<bucket>[/<prefix>]`
    S3 { bucket: String, prefix: String },
    /// `gs://<bucket>[/<prefix>]`
    Gcs { bucket: String, prefix: String },
    /// `https://<account>.blob.core.windows.net/<container>[/<prefix>]`
    AzureBlob { account: String, container: String, prefix: String },
}

impl BuildContextStore {
    /// Parses the three forms the reference accepts; anything else (`s3a://`, another host) is refused.
    pub fn parse(uri: &str) -> Result<Self, String> {
        const FORMS: &str =
            "must be s3://<bucket>/..., gs://<bucket>/... or https://<account>.blob.core.windows.net/<container>/...";
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = split_bucket(rest);
            check_bucket(bucket)?;
            return Ok(Self::S3 { bucket: bucket.into(), prefix: prefix.into() });
        }
        if let Some(rest) = uri.strip_prefix("gs://") {
            let (bucket, prefix) = split_bucket(rest);
            check_bucket(bucket)?;
            return Ok(Self::Gcs { bucket: bucket.into(), prefix: prefix.into() });
        }
        if let Some(rest) = uri.strip_prefix("https://") {
            let (host, path) = split_bucket(rest);
            let Some(account) = host.strip_suffix(".blob.core.windows.net") else {
                return Err(FORMS.into());
            };
            if account.len() < 3
                || account.len() > 24
                || !account.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(format!(
                    "azure storage account '{account}' is invalid: 3-24 lower-case letters and digits"
                ));
            }
            let (container, prefix) = split_bucket(path);
            let ok = (3..=63).contains(&container.len())
                && !container.starts_with('-')
                && !container.ends_with('-')
                && !container.contains("--")
                && container.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(format!(
                    "azure container '{container}' is invalid: 3-63 lower-case letters, digits and single dashes"
                ));
            }
            return Ok(Self::AzureBlob { account: account.into(), container: container.into(), prefix: prefix.into() });
        }
        Err(FORMS.into())
    }

    /// The environment type whose credentials reach this store.
    pub fn environment_type(&self) -> &'static str {
        match self {
            Self::S3 { .. } => "aws",
            Self::Gcs { .. } => "gcp",
            Self::AzureBlob { .. } => "azure",
        }
    }
}

fn split_bucket(rest: &str) -> (&str, &str) {
    rest.split_once('/').unwrap_or((rest, ""))
}

/// S3 and GCS bucket names: 3-63 (GCS: up to 222 with dots) lower-case letters,
/// digits, dots, dashes (and for GCS underscores), starting and ending with a letter or digit.
fn check_bucket(b: &str) -> Result<(), String> {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (3..=222).contains(&b.len())
        && alnum(b.as_bytes()[0])
        && alnum(b.as_bytes()[b.len() - 1])
        && b.bytes().all(|c| alnum(c) || matches!(c, b'.' | b'-' | b'_'));
    if ok { Ok(()) } else { Err(format!("bucket name '{b}' is invalid")) }
}

impl fmt::Display for BuildContextStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, base: String, prefix: &str| {
            if prefix.is_empty() { f.write_str(&base) } else { write!(f, "{base}/{prefix}") }
        };
        match self {
            Self::S3 { bucket, prefix } => with(f, format!("s3://{bucket}"), prefix),
            Self::Gcs { bucket, prefix } => with(f, format!("gs://{bucket}"), prefix),
            Self::AzureBlob { account, container, prefix } => {
                with(f, format!("https://{account}.blob.core.windows.net/{container}"), prefix)
            }
        }
    }
}

/// Serialized as its URI.
impl Serialize for BuildContextStore {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
