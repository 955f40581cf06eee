//! Code archives (gzipped tar) for code jobs: deterministic packing of a
//! directory, bounded verification of untrusted bytes, and safe unpacking.
//!
//! Written over the `tar` crate rather than using its `unpack` alone because
//! we must refuse a whole archive *before* anything is written, with a
//! message naming the entry, and bound sizes and entry counts.

mod limits;
mod pack;
mod tree;
mod unpack;
mod verify;

pub use limits::ArchiveLimits;
pub use pack::pack_dir;
pub use unpack::unpack;
pub use verify::{ArchiveSummary, verify};

use sha2::{Digest, Sha256};

/// Everything that can be wrong with an archive or its handling.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry's path is absolute, climbs out with `..`, or is empty.
    #[error("archive entry '{path}' is unsafe: {why}")]
    UnsafePath { path: String, why: &'static str },
    /// A link whose target would leave the archive, a hard link, or a device.
    #[error("archive entry '{path}' is refused: {why}")]
    RefusedEntry { path: String, why: String },
    /// Too many entries or too many bytes once unpacked.
    #[error("archive exceeds the limit of {limit} {what}")]
    TooLarge { what: &'static str, limit: u64 },
    /// Not a gzipped tar at all, or truncated.
    #[error("archive is not a readable gzipped tar: {0}")]
    Malformed(#[source] std::io::Error),
    /// Reading the source directory or writing the destination failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
