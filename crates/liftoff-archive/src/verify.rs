use crate::tree::{Kind, Tree};
use crate::{ArchiveError, ArchiveLimits};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

/// What a verified archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub entries: u64,
    pub unpacked_bytes: u64,
}

/// Reads the whole archive and refuses it if any entry is unsafe or a limit is passed.
pub fn verify(gz: &[u8], limits: ArchiveLimits) -> Result<ArchiveSummary, ArchiveError> {
    let mut summary = ArchiveSummary { entries: 0, unpacked_bytes: 0 };
    for_each_entry(gz, limits, |_, _, size| {
        summary.entries += 1;
        summary.unpacked_bytes += size;
        Ok(())
    })?;
    Ok(summary)
}

/// The decompressed, bounded stream a [`tar::Archive`] reads from.
pub(crate) type Tarred<'a> = std::io::Take<GzDecoder<&'a [u8]>>;

/// Walks the entries, checking each against the tree the earlier ones built, and at the end
/// every link against the whole tree; `f` gets the entry, its safe relative path and its size.
pub(crate) fn for_each_entry(
    gz: &[u8],
    limits: ArchiveLimits,
    mut f: impl FnMut(&mut tar::Entry<'_, Tarred<'_>>, &Path, u64) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    // Bound the decompressed stream too: header blocks count, and a gzip bomb
    // of padding must not run forever.
    let budget = limits.max_unpacked_bytes + limits.max_entries * 1024 + 1024 * 1024;
    let mut archive = tar::Archive::new(GzDecoder::new(gz).take(budget));
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut tree = Tree::default();
    for entry in archive.entries().map_err(ArchiveError::Malformed)? {
        let mut entry = entry.map_err(ArchiveError::Malformed)?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(ArchiveError::TooLarge { what: "entries", limit: limits.max_entries });
        }
        let path = entry.path().map_err(ArchiveError::Malformed)?.into_owned();
        let shown = path.display().to_string();
        let rel = safe_relative(&path).map_err(|why| ArchiveError::UnsafePath { path: shown.clone(), why })?;
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Link,
            other => {
                return Err(ArchiveError::RefusedEntry {
                    path: shown,
                    why: format!(
                        "entries of type {other:?} are not allowed (only files, directories and inner symlinks)"
                    ),
                });
            }
        };
        let target = match kind {
            Kind::Link => entry.link_name().map_err(ArchiveError::Malformed)?.map(|t| t.into_owned()),
            _ => None,
        };
        if kind == Kind::Link && target.as_ref().is_none_or(|t| t.as_os_str().is_empty()) {
            return Err(ArchiveError::RefusedEntry { path: shown, why: "symlink without a target".into() });
        }
        tree.add(&rel, kind, target.as_deref())
            .map_err(|why| ArchiveError::RefusedEntry { path: shown.clone(), why })?;
        let size = entry.size();
        bytes += size;
        if bytes > limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge { what: "unpacked bytes", limit: limits.max_unpacked_bytes });
        }
        f(&mut entry, &rel, size)?;
    }
    tree.recheck_links().map_err(|(rel, why)| ArchiveError::RefusedEntry { path: rel.display().to_string(), why })
}

/// The path with `.` parts dropped, or why it is unsafe.
pub(crate) fn safe_relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("it is absolute"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("it is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert!(safe_relative(Path::new("a/./b")).is_ok());
        assert_eq!(safe_relative(Path::new("../x")), Err("it contains '..'"));
        assert_eq!(safe_relative(Path::new("/etc/passwd")), Err("it is absolute"));
    }
}
