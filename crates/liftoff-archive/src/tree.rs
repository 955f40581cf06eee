//! The tree an archive builds, as it will be on disk, so that symlinks are
//! judged the way the kernel will follow them rather than lexically: `t ->
//! s/..` with `s -> .` leaves the root although no component of `s/..` climbs
//! out on its own.
//!
//! A trie of names, so that a step of a walk looks up one name under a node instead of
//! hashing the whole path so far: verifying stays linear in the archive's size however
//! deep its paths are.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

/// Links followed while resolving one path before we give up; Linux's own limit.
const MAX_LINK_HOPS: u32 = 40;
/// Longest link target, in bytes: Linux refuses longer ones (`PATH_MAX` with its NUL).
const MAX_TARGET_LEN: usize = 4095;
/// Work allowed for resolving all the links of one archive (each is resolved twice): one
/// unit per component walked plus the length of the name looked up. Real links need a few
/// dozen units each; this bounds what a hostile archive of chains of long targets (each
/// link walking up to 40 others) can make verification cost.
pub(crate) const MAX_RESOLVE_WORK: u64 = 32 << 20;

/// The root's index in [`Tree::nodes`].
const ROOT: u32 = 0;

/// What an archive path will be once unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// A directory entry, or the parent of an entry (unpacking creates it).
    Dir,
    File,
    Link(PathBuf),
}

#[derive(Debug)]
struct Entry {
    node: Node,
    parent: u32,
    name: OsString,
    children: HashMap<OsString, u32>,
}

/// The entries seen so far, with the directories they imply. Paths are relative
/// to the root and already free of `.`, `..` and roots ([`crate::verify`] checks that).
#[derive(Debug)]
pub(crate) struct Tree {
    /// Indexed by node id; [`ROOT`] first.
    nodes: Vec<Entry>,
    /// Every link in archive order, to check all of them again once the tree is complete.
    links: Vec<(u32, PathBuf)>,
    /// Work done so far by [`Tree::resolve`], bounded by [`MAX_RESOLVE_WORK`].
    work: std::cell::Cell<u64>,
}

impl Default for Tree {
    fn default() -> Self {
        let root = Entry { node: Node::Dir, parent: ROOT, name: OsString::new(), children: HashMap::new() };
        Self { nodes: vec![root], links: Vec::new(), work: std::cell::Cell::new(0) }
    }
}

/// Where a walk is: at a node of the tree, or `depth` components below one, in directories
/// no entry names (yet): they count as directories, the worst case for what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Node(u32),
    Beyond(u32, u32),
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
        let node = match (kind, target) {
            (Kind::Dir, _) => Node::Dir,
            (Kind::File, _) => Node::File,
            (Kind::Link, Some(t)) if t.as_os_str().len() > MAX_TARGET_LEN => {
                return Err(format!("its symlink target is longer than {MAX_TARGET_LEN} bytes"));
            }
            (Kind::Link, Some(t)) => Node::Link(t.to_path_buf()),
            (Kind::Link, None) => return Err("symlink without a target".into()),
        };
        let names: Vec<&OsStr> = rel.iter().collect();
        let Some((last, parents)) = names.split_last() else { return Err("it is empty".into()) };
        // Unpacking creates missing parents and writes through whatever a parent is on disk:
        // a parent that is a link would put the entry wherever the link points.
        let mut dir = ROOT;
        for name in parents {
            dir = match self.child(dir, name) {
                Some(c) => match self.nodes[c as usize].node {
                    Node::Dir => c,
                    Node::Link(_) => {
                        return Err(format!(
                            "its parent '{}' is a symlink, and nothing is written through a symlink",
                            self.path_of(c).display()
                        ));
                    }
                    Node::File => return Err(format!("its parent '{}' is a file", self.path_of(c).display())),
                },
                None => self.insert(dir, name, Node::Dir),
            };
        }
        let id = match self.child(dir, last) {
            None => self.insert(dir, last, node.clone()),
            Some(c) => match (&self.nodes[c as usize].node, &node) {
                (Node::Dir, Node::Dir) | (Node::File, Node::File) => c,
                (Node::Link(_), _) | (_, Node::Link(_)) => {
                    return Err("it appears twice in the archive, once as a symlink".into());
                }
                _ => return Err("it appears twice in the archive, as a file and as a directory".into()),
            },
        };
        if let Node::Link(t) = node {
            self.links.push((id, rel.to_path_buf()));
            self.check_link(id, &t)?;
        }
        Ok(())
    }

    /// Checks every link again against the complete tree: a link added later can change
    /// where an earlier one leads (`a -> b/..` then `b -> .`). Returns the first link that
    /// now leaves the root, in archive order, with why.
    pub(crate) fn recheck_links(&self) -> Result<(), (PathBuf, String)> {
        for (id, rel) in &self.links {
            if let Node::Link(t) = &self.nodes[*id as usize].node {
                self.check_link(*id, t)
                    .map_err(|why| (rel.clone(), format!("{why} once later entries are in place")))?;
            }
        }
        Ok(())
    }

    fn child(&self, dir: u32, name: &OsStr) -> Option<u32> {
        self.nodes[dir as usize].children.get(name).copied()
    }

    fn insert(&mut self, dir: u32, name: &OsStr, node: Node) -> u32 {
        let id = u32::try_from(self.nodes.len()).expect("entries are bounded far below u32::MAX");
        self.nodes.push(Entry { node, parent: dir, name: name.to_os_string(), children: HashMap::new() });
        self.nodes[dir as usize].children.insert(name.to_os_string(), id);
        id
    }

    /// The path of node `id` from the root, for messages.
    fn path_of(&self, mut id: u32) -> PathBuf {
        let mut names = Vec::new();
        while id != ROOT {
            names.push(&self.nodes[id as usize].name);
            id = self.nodes[id as usize].parent;
        }
        names.iter().rev().collect()
    }

    fn check_link(&self, id: u32, target: &Path) -> Result<(), String> {
        let mut hops = 0;
        self.resolve(At::Node(self.nodes[id as usize].parent), target, &mut hops)
            .map(drop)
            .map_err(|why| format!("symlink to '{}' {}", target.display(), why.describe()))
    }

    /// Where `target`, read from `from`, ends up: `..` climbs from where the links so far
    /// have led (as the kernel does), not from the text.
    fn resolve(&self, from: At, target: &Path, hops: &mut u32) -> Result<At, Escape> {
        let mut at = from;
        // The last link followed, to name it when a `..` after it climbs out.
        let mut via: Option<u32> = None;
        for c in target.components() {
            self.spend(1)?;
            at = match (c, at) {
                (Component::Normal(_), At::Beyond(base, depth)) => At::Beyond(base, depth + 1),
                (Component::Normal(name), At::Node(dir)) => {
                    self.spend(name.len())?;
                    match self.child(dir, name) {
                        None => At::Beyond(dir, 1),
                        Some(c) => match &self.nodes[c as usize].node {
                            Node::Link(next) => {
                                *hops += 1;
                                if *hops > MAX_LINK_HOPS {
                                    return Err(Escape::TooManyLinks);
                                }
                                via = Some(c);
                                self.resolve(At::Node(dir), next, hops).map_err(|e| e.through(&self.path_of(c)))?
                            }
                            _ => At::Node(c),
                        },
                    }
                }
                (Component::CurDir, at) => at,
                (Component::ParentDir, At::Beyond(base, 1)) => At::Node(base),
                (Component::ParentDir, At::Beyond(base, depth)) => At::Beyond(base, depth - 1),
                (Component::ParentDir, At::Node(ROOT)) => {
                    return Err(match via {
                        Some(link) => Escape::Outside.through(&self.path_of(link)),
                        None => Escape::Outside,
                    });
                }
                (Component::ParentDir, At::Node(dir)) => At::Node(self.nodes[dir as usize].parent),
                (Component::RootDir | Component::Prefix(_), _) => return Err(Escape::Absolute),
            };
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
    /// The link after which the path left the root.
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
