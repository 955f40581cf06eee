use crate::{ArchiveError, ArchiveLimits, verify};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::path::{Path, PathBuf};

/// Packs `dir` into a gzipped tar, honouring `.gitignore` (also outside a git
/// repository) and leaving out `.git`. Entries are sorted and their times and
/// owners zeroed, so the same tree always gives the same bytes and digest.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, ArchiveError> {
    let io = |context: String| move |source| ArchiveError::Io { context, source };
    let meta = std::fs::metadata(dir).map_err(io(format!("failed to read {}", dir.display())))?;
    if !meta.is_dir() {
        return Err(ArchiveError::Io {
            context: format!("{} is not a directory", dir.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .require_git(false)
        .git_global(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| ArchiveError::Io {
            context: format!("failed to walk {}", dir.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path()).to_path_buf();
        if !rel.as_os_str().is_empty() {
            paths.push(rel);
        }
    }
    paths.sort();
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    builder.follow_symlinks(false);
    for rel in &paths {
        let full = dir.join(rel);
        let md = std::fs::symlink_metadata(&full).map_err(io(format!("failed to read {}", full.display())))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let ft = md.file_type();
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, rel, std::io::empty())
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&full).map_err(io(format!("failed to read link {}", full.display())))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, rel, &target)
        } else if ft.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let exec = md.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if exec { 0o755 } else { 0o644 });
            header.set_size(md.len());
            let f = std::fs::File::open(&full).map_err(io(format!("failed to open {}", full.display())))?;
            builder.append_data(&mut header, rel, f)
        } else {
            continue; // sockets, fifos and devices have no place in a code archive
        }
        .map_err(io(format!("failed to add {} to the archive", rel.display())))?;
    }
    let gz = builder.into_inner().and_then(|enc| enc.finish()).map_err(io("failed to finish the archive".into()))?;
    // Refuse here what the server would refuse, with the same message.
    verify(&gz, ArchiveLimits::default())?;
    Ok(gz)
}
