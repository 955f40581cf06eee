use crate::verify::for_each_entry;
use crate::{ArchiveError, ArchiveLimits, ArchiveSummary, verify};
use std::path::Path;

/// Verifies the whole archive first, then unpacks it under `dest`.
/// Nothing is written when the archive is refused.
pub fn unpack(gz: &[u8], dest: &Path, limits: ArchiveLimits) -> Result<ArchiveSummary, ArchiveError> {
    let summary = verify(gz, limits)?;
    let io = |context: String| move |source| ArchiveError::Io { context, source };
    std::fs::create_dir_all(dest).map_err(io(format!("failed to create {}", dest.display())))?;
    for_each_entry(gz, limits, |entry, rel, _| {
        if let Some(parent) = dest.join(rel).parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("failed to create {}", parent.display())))?;
        }
        // unpack_in re-checks for '..' and refuses to write through symlinks
        // that leave `dest`.
        entry.unpack_in(dest).map_err(io(format!("failed to unpack '{}' into {}", rel.display(), dest.display())))?;
        Ok(())
    })?;
    Ok(summary)
}
