use crate::verify::for_each_entry;
use crate::{ArchiveError, ArchiveLimits, ArchiveSummary, verify};
use std::path::Path;

/// Verifies the whole archive first, then unpacks it under `dest`, which must be empty or
/// missing: links are judged against the tree the archive builds from an empty root.
/// Nothing is written when the archive is refused.
pub fn unpack(gz: &[u8], dest: &Path, limits: ArchiveLimits) -> Result<ArchiveSummary, ArchiveError> {
    let summary = verify(gz, limits)?;
    let io = |context: String| move |source| ArchiveError::Io { context, source };
    match std::fs::read_dir(dest) {
        Ok(mut listing) => {
            if listing.next().is_some() {
                return Err(ArchiveError::Io {
                    context: format!("refusing to unpack into {}: it is not empty", dest.display()),
                    source: std::io::Error::from(std::io::ErrorKind::DirectoryNotEmpty),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("failed to read {}", dest.display()))(e)),
    }
    std::fs::create_dir_all(dest).map_err(io(format!("failed to create {}", dest.display())))?;
    for_each_entry(gz, limits, |entry, rel, _| {
        if let Some(parent) = dest.join(rel).parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("failed to create {}", parent.display())))?;
        }
        // No parent is a link (the tree check refuses writing through one), so this
        // creates real directories under `dest`; unpack_in re-checks for '..' and
        // refuses to write through symlinks that leave `dest`.
        entry.unpack_in(dest).map_err(io(format!("failed to unpack '{}' into {}", rel.display(), dest.display())))?;
        Ok(())
    })?;
    Ok(summary)
}
