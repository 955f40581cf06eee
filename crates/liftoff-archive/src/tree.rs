//! The tree an archive builds, as it will be on disk, so that symlinks are
//! judged the way the kernel will follow them rather than lexically: `t ->
//! s/..` with `s -> .` leaves the root although no component of `s/..` climbs
//! out on its own.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Links followed while resolving one path before we give up; Linux's own limit.
const MAX_LINK_HOPS: u32 = 40;
/// Longest link target, in bytes: Linux refuses longer ones (`PATH_MAX` with its NUL).
const MAX_TARGET_LEN: usize = 4095;
/// Work allowed for resolving all the links of one archive (each is resolved twice): one
/// unit per component walked plus the length of the path looked up for it, as hashing that
/// path is what a step costs. Real trees need a few hundred units per link (100 000 such links fit); this bounds what
/// a hostile archive of long, deep or chained targets can make verification cost.
pub(crate) const MAX_RESOLVE_WORK: u64 = 64 << 20;

/// What an archive path will be once unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// A directory entry, or the parent of an entry (unpacking creates it).
    Dir,
    File,
    Link(PathBuf),
}

/// The entries seen so far, with the directories they imply. Paths are relative
/// to the root and already free of `.`, `..` and roots ([`crate::verify`] checks that).
#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: HashMap<PathBuf, Node>,
    /// Every link in archive order, to check all of them again once the tree is complete.
    links: Vec<PathBuf>,
    /// Work done so far by [`Tree::resolve`], bounded by [`MAX_RESOLVE_WORK`].
    work: std::cell::Cell<u64>,
}

/// What an entry is, as far as the tree cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Link,
}

impl Tree {
    /// Adds the entry at `rel`, or says why unpacking it would be unsafe. A link's `target`
    /// must resolve inside the root through the links already in the tree.
    pub(crate) fn add(&mut self, rel: &Path, kind: Kind, target: Option<&Path>) -> Result<(), String> {
        // Unpacking creates missing parents and writes through whatever a parent is on disk:
        // a parent that is a link would put the entry wherever the link points.
        let mut parent = PathBuf::new();
        let parents: Vec<_> = rel.components().collect();
        for c in &parents[..parents.len().saturating_sub(1)] {
            parent.push(c);
            match self.nodes.get(&parent) {
                Some(Node::Dir) => {}
                Some(Node::Link(_)) => {
                    return Err(format!(
                        "its parent '{}' is a symlink, and nothing is written through a symlink",
                        parent.display()
                    ));
                }
                Some(Node::File) => return Err(format!("its parent '{}' is a file", parent.display())),
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir);
                }
            }
        }
        let node = match (kind, target) {
            (Kind::Dir, _) => Node::Dir,
            (Kind::File, _) => Node::File,
            (Kind::Link, Some(t)) if t.as_os_str().len() > MAX_TARGET_LEN => {
                return Err(format!("its symlink target is longer than {MAX_TARGET_LEN} bytes"));
            }
            (Kind::Link, Some(t)) => Node::Link(t.to_path_buf()),
            (Kind::Link, None) => return Err("symlink without a target".into()),
        };
        match (self.nodes.get(rel), &node) {
            (None, _) | (Some(Node::Dir), Node::Dir) | (Some(Node::File), Node::File) => {}
            (Some(Node::Link(_)), _) | (Some(_), Node::Link(_)) => {
                return Err("it appears twice in the archive, once as a symlink".into());
            }
            (Some(_), _) => return Err("it appears twice in the archive, as a file and as a directory".into()),
        }
        self.nodes.insert(rel.to_path_buf(), node.clone());
        if let Node::Link(t) = node {
            self.links.push(rel.to_path_buf());
            self.check_link(rel, &t)?;
        }
        Ok(())
    }

    /// Checks every link again against the complete tree: a link added later can change
    /// where an earlier one leads (`a -> b/..` then `b -> .`). Returns the first link that
    /// now leaves the root, in archive order, with why.
    pub(crate) fn recheck_links(&self) -> Result<(), (PathBuf, String)> {
        for rel in &self.links {
            if let Some(Node::Link(t)) = self.nodes.get(rel) {
                self.check_link(rel, t)
                    .map_err(|why| (rel.clone(), format!("{why} once later entries are in place")))?;
            }
        }
        Ok(())
    }

    fn check_link(&self, rel: &Path, target: &Path) -> Result<(), String> {
        let from = rel.parent().unwrap_or(Path::new(""));
        let mut hops = 0;
        self.resolve(from, target, &mut hops)
            .map(drop)
            .map_err(|why| format!("symlink to '{}' {}", target.display(), why.describe()))
    }

    /// Where `target`, read from the directory `from`, ends up: `..` climbs from where the
    /// links so far have led (as the kernel does), not from the text. A component that is
    /// not in the tree (yet) counts as a directory, the worst case for what follows.
    fn resolve(&self, from: &Path, target: &Path, hops: &mut u32) -> Result<PathBuf, Escape> {
        let mut at = from.to_path_buf();
        // The last link followed, to name it when a `..` after it climbs out.
        let mut via: Option<PathBuf> = None;
        for c in target.components() {
            self.spend(1)?;
            match c {
                Component::Normal(name) => {
                    at.push(name);
                    self.spend(at.as_os_str().len())?;
                    if let Some(Node::Link(next)) = self.nodes.get(&at) {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS {
                            return Err(Escape::TooManyLinks);
                        }
                        let dir = at.parent().unwrap_or(Path::new("")).to_path_buf();
                        let resolved = self.resolve(&dir, next, hops).map_err(|e| e.through(&at))?;
                        via = Some(std::mem::replace(&mut at, resolved));
                    }
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    if !at.pop() {
                        return Err(match via {
                            Some(link) => Escape::Outside.through(&link),
                            None => Escape::Outside,
                        });
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(Escape::Absolute),
            }
        }
        Ok(at)
    }

    fn spend(&self, units: usize) -> Result<(), Escape> {
        self.work.set(self.work.get().saturating_add(units as u64));
        if self.work.get() > MAX_RESOLVE_WORK { Err(Escape::TooCostly) } else { Ok(()) }
    }
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Escape {
    Absolute,
    Outside,
    TooManyLinks,
    /// The archive's links together take more than [`MAX_RESOLVE_WORK`] to resolve.
    TooCostly,
    /// The first link followed on the way to the escape.
    Through(PathBuf, Box<Escape>),
}

impl Escape {
    fn through(self, link: &Path) -> Self {
        match self {
            // Name the innermost link only: the one after which the path left the root.
            Escape::Through(..) | Escape::TooManyLinks | Escape::TooCostly => self,
            other => Escape::Through(link.to_path_buf(), Box::new(other)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Escape::Absolute => "is absolute".into(),
            Escape::Outside => "resolves outside the archive".into(),
            Escape::TooManyLinks => format!("goes through more than {MAX_LINK_HOPS} symlinks (a loop?)"),
            Escape::TooCostly => {
                "cannot be resolved: the archive's symlinks are too costly to resolve (long chains of long targets)"
                    .into()
            }
            Escape::Through(link, why) => format!("{} through the symlink '{}'", why.describe(), link.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Kind, Option<&str>)]) -> Result<Tree, String> {
        let mut t = Tree::default();
        for (rel, kind, target) in entries {
            t.add(Path::new(rel), *kind, target.map(Path::new)).map_err(|why| format!("{rel}: {why}"))?;
        }
        t.recheck_links().map_err(|(rel, why)| format!("{}: {why}", rel.display()))?;
        Ok(t)
    }

    #[test]
    fn links_resolve_through_earlier_links() {
        use Kind::*;
        assert!(tree(&[("a/b", Link, Some("../c")), ("x", Link, Some("a/b"))]).is_ok());
        assert!(
            tree(&[("a/b", Link, Some("../../c"))])
                .unwrap_err()
                .starts_with("a/b: symlink to '../../c' resolves outside")
        );
        let e = tree(&[("s", Link, Some(".")), ("t", Link, Some("s/.."))]).unwrap_err();
        assert_eq!(e, "t: symlink to 's/..' resolves outside the archive through the symlink 's'");
        let e = tree(&[("a", Link, Some("b/..")), ("b", Link, Some("."))]).unwrap_err();
        assert!(
            e.starts_with("a: symlink to 'b/..' resolves outside") && e.ends_with("once later entries are in place"),
            "{e}"
        );
        let e = tree(&[("l", Link, Some("l/x"))]).unwrap_err();
        assert!(e.contains("more than 40 symlinks"), "{e}");
        let e = tree(&[("d", Link, Some("sub")), ("d/x", File, None)]).unwrap_err();
        assert!(e.starts_with("d/x: its parent 'd' is a symlink"), "{e}");
        assert!(tree(&[("f", File, None), ("f", Link, Some("."))]).unwrap_err().contains("twice"));
        assert!(tree(&[("d", Dir, None), ("d/f", File, None), ("d", Dir, None)]).is_ok());
    }
}
