//! A generated build split in two (`append.rs` puts them together): the
//! context of the dependency image (its Dockerfile and only the files that
//! Dockerfile copies: the requirements and `wheels/`), and the code as one
//! layer, exactly what the full Dockerfile's last `COPY` would add.

use super::{BuildContext, CODE_DIR, ContextError, Entry, EntryKind, GENERATED_DOCKERFILE, write_entries};
use crate::dockerfile::{RUN_HOME, RUN_HOME_MODE, RUN_UID};
use std::io::Write;

/// The largest code tree appended as a layer; a larger one is built by the
/// builder (a layer is held in memory while it is pushed, and a tree that
/// large is data, which `.dockerignore` should leave out).
pub const MAX_APPENDED_BYTES: u64 = 256 << 20;

// the layer restates the home directory as a directory entry, which is
// written 0755: the mode the generated Dockerfile gives it
const _: () = assert!(RUN_HOME_MODE == 0o755);

impl BuildContext {
    /// The context of the dependency image, for a generated Dockerfile whose
    /// code can be appended as a layer; `Err` says why it cannot (a
    /// Dockerfile of the job's own, a whiteout name, a tree too large).
    pub fn dependency_context(&self) -> Result<BuildContext, String> {
        let Some(dockerfile) = &self.dependencies_dockerfile else {
            return Err("the job has a Dockerfile of its own".into());
        };
        if self.total_bytes > MAX_APPENDED_BYTES {
            return Err(format!(
                "its code is {} MiB, more than the {} MiB appended as a layer",
                self.total_bytes >> 20,
                MAX_APPENDED_BYTES >> 20
            ));
        }
        // a layer's `.wh.` names delete files below it: such a file cannot be a layer's content
        if let Some(e) = self.code_entries().find(|e| e.path.rsplit('/').next().is_some_and(|n| n.starts_with(".wh.")))
        {
            return Err(format!("'{}' has a name that layers reserve for deletions (.wh.)", e.path));
        }
        // what the dependency Dockerfile copies: `COPY src/<name> ...`
        let copied: Vec<String> = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix("COPY "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|from| from.starts_with(&format!("{CODE_DIR}/")))
            .map(|from| from.trim_end_matches('/').to_string())
            .collect();
        let keep = |e: &Entry| {
            e.path == CODE_DIR
                || copied
                    .iter()
                    .any(|c| e.path == *c || e.path.strip_prefix(c.as_str()).is_some_and(|r| r.starts_with('/')))
        };
        let mut entries: Vec<Entry> = self.entries.iter().filter(|e| keep(e)).cloned().collect();
        entries.push(Entry {
            path: GENERATED_DOCKERFILE.to_string(),
            kind: EntryKind::Memory(dockerfile.clone().into_bytes()),
        });
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let total_bytes = entries.iter().map(Entry::size).sum();
        Ok(BuildContext {
            entries,
            dockerfile_path: GENERATED_DOCKERFILE.to_string(),
            dockerfile_text: dockerfile.clone(),
            entrypoint: self.entrypoint.clone(),
            warnings: Vec::new(),
            total_bytes,
            dependencies_dockerfile: None,
        })
    }

    /// The entries under `src/` (without `src` itself): the code.
    fn code_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.path.starts_with(&format!("{CODE_DIR}/")))
    }

    /// The code as the layer the generated Dockerfile's `COPY
    /// --chown=1000:0 src/ /home/liftoff` makes: an uncompressed tar of
    /// `home/`, `home/liftoff/` (uid 1000, gid 0, its explicit mode) and
    /// every file under `src/` moved there, owned by 1000:0, modes as the
    /// context gives them, times 0, in the context's order. Returns the
    /// bytes written.
    pub fn write_code_layer<W: Write>(&self, w: W) -> Result<u64, ContextError> {
        let home = RUN_HOME.trim_start_matches('/');
        let parent = home.rsplit_once('/').map(|(p, _)| p).unwrap_or("home");
        let dirs = [
            (Entry { path: parent.to_string(), kind: EntryKind::Dir }, 0, 0),
            (Entry { path: home.to_string(), kind: EntryKind::Dir }, u64::from(RUN_UID), 0),
        ];
        let (uid, gid) = (u64::from(RUN_UID), 0);
        let code = self.code_entries().map(move |e| {
            let rest = &e.path[CODE_DIR.len() + 1..];
            (e, format!("{home}/{rest}"), uid, gid)
        });
        write_entries(w, dirs.iter().map(|(e, u, g)| (e, e.path.clone(), *u, *g)).chain(code))
    }
}
