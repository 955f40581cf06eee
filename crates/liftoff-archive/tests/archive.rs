use flate2::Compression;
use flate2::write::GzEncoder;
use liftoff_archive::{ArchiveError, ArchiveLimits, pack_dir, sha256_digest, unpack, verify};
use std::fs;

fn raw_tar(build: impl FnOnce(&mut tar::Builder<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    build(&mut b);
    b.into_inner().unwrap().finish().unwrap()
}

/// Writes a header with a raw name, bypassing the tar crate's own path checks.
fn entry_with_raw_name(b: &mut tar::Builder<GzEncoder<Vec<u8>>>, name: &str, kind: tar::EntryType, link: Option<&str>) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(if link.is_none() && kind == tar::EntryType::Regular { 2 } else { 0 });
    h.set_mode(0o644);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    let data: &[u8] = if h.size().unwrap() == 2 { b"hi" } else { b"" };
    b.append(&h, data).unwrap();
}

#[test]
fn pack_is_deterministic_honours_gitignore_and_skips_git() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("main.py"), "print('hi')\n").unwrap();
    fs::write(d.path().join(".gitignore"), "*.log\nbuild/\n").unwrap();
    fs::write(d.path().join("debug.log"), "noise").unwrap();
    fs::create_dir_all(d.path().join("build")).unwrap();
    fs::write(d.path().join("build/out.bin"), "x").unwrap();
    fs::create_dir_all(d.path().join(".git")).unwrap();
    fs::write(d.path().join(".git/HEAD"), "ref").unwrap();
    fs::create_dir_all(d.path().join("pkg")).unwrap();
    fs::write(d.path().join("pkg/util.py"), "X = 1\n").unwrap();

    let a = pack_dir(d.path()).unwrap();
    let b = pack_dir(d.path()).unwrap();
    assert_eq!(sha256_digest(&a), sha256_digest(&b), "same tree, same digest");

    let out = tempfile::tempdir().unwrap();
    let summary = unpack(&a, out.path(), ArchiveLimits::default()).unwrap();
    assert_eq!(fs::read_to_string(out.path().join("main.py")).unwrap(), "print('hi')\n");
    assert_eq!(fs::read_to_string(out.path().join("pkg/util.py")).unwrap(), "X = 1\n");
    assert!(!out.path().join("debug.log").exists());
    assert!(!out.path().join("build").exists());
    assert!(!out.path().join(".git").exists());
    assert!(out.path().join(".gitignore").exists());
    assert_eq!(summary.entries, 4, "main.py, .gitignore, pkg, pkg/util.py");
}

#[test]
fn refuses_parent_paths_absolute_paths_and_escaping_links_before_writing() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("parent", raw_tar(|b| entry_with_raw_name(b, "../evil.txt", tar::EntryType::Regular, None))),
        ("absolute", raw_tar(|b| entry_with_raw_name(b, "/tmp/evil.txt", tar::EntryType::Regular, None))),
        (
            "symlink",
            raw_tar(|b| {
                entry_with_raw_name(b, "ok.txt", tar::EntryType::Regular, None);
                entry_with_raw_name(b, "link", tar::EntryType::Symlink, Some("../../etc/passwd"));
            }),
        ),
        ("hardlink", raw_tar(|b| entry_with_raw_name(b, "hard", tar::EntryType::Link, Some("/etc/passwd")))),
    ];
    for (name, gz) in cases {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("dest");
        let err = unpack(&gz, &dest, ArchiveLimits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::UnsafePath { .. } | ArchiveError::RefusedEntry { .. }), "{name}: {err}");
        assert!(!dest.exists(), "{name}: something was written");
    }
}

#[test]
fn inner_symlink_is_kept_and_limits_hold() {
    let gz = raw_tar(|b| {
        entry_with_raw_name(b, "a.txt", tar::EntryType::Regular, None);
        entry_with_raw_name(b, "b.txt", tar::EntryType::Symlink, Some("a.txt"));
    });
    let out = tempfile::tempdir().unwrap();
    unpack(&gz, out.path(), ArchiveLimits::default()).unwrap();
    assert_eq!(fs::read_to_string(out.path().join("b.txt")).unwrap(), "hi");

    let small = ArchiveLimits { max_entries: 1, max_unpacked_bytes: 1 << 20 };
    assert!(matches!(verify(&gz, small), Err(ArchiveError::TooLarge { what: "entries", .. })));
    let tiny = ArchiveLimits { max_entries: 10, max_unpacked_bytes: 1 };
    assert!(matches!(verify(&gz, tiny), Err(ArchiveError::TooLarge { what: "unpacked bytes", .. })));
    assert!(matches!(verify(b"not gzip", ArchiveLimits::default()), Err(ArchiveError::Malformed(_))));
}

/// `(name, Some(target))` is a symlink, `(name, None)` a two-byte file.
type Entries<'a> = &'a [(&'a str, Option<&'a str>)];

/// An archive of `entries`: `(name, Some(target))` is a symlink, `(name, None)` a two-byte file.
fn links(entries: Entries<'_>) -> Vec<u8> {
    raw_tar(|b| {
        for (name, target) in entries {
            let kind = if target.is_some() { tar::EntryType::Symlink } else { tar::EntryType::Regular };
            entry_with_raw_name(b, name, kind, *target);
        }
    })
}

#[test]
fn links_are_resolved_against_the_tree_on_disk_not_lexically() {
    // Each of these passes a lexical check entry by entry; on disk, each reaches outside.
    let cases: &[(&str, Entries<'_>, &str)] = &[
        (
            "chain through '.'",
            &[("s", Some(".")), ("t", Some("s/.."))],
            "'t' is refused: symlink to 's/..' resolves outside the archive through the symlink 's'",
        ),
        ("deeper chain", &[("s", Some(".")), ("u", Some("s/s/s/.."))], "'u' is refused"),
        (
            "a -> b/.., b -> ../..",
            &[("a", Some("b/..")), ("b", Some("../.."))],
            "'b' is refused: symlink to '../..' resolves outside",
        ),
        (
            "a -> b/.., then b -> .",
            &[("a", Some("b/..")), ("b", Some("."))],
            "'a' is refused: symlink to 'b/..' resolves outside the archive through the symlink 'b' once later entries are in place",
        ),
        (
            "a link to a link outside",
            &[("d/x", None), ("in", Some("d/up/etc")), ("d/up", Some("../.."))],
            "'d/up' is refused",
        ),
        (
            "a link into a link that climbs",
            &[("d/x", None), ("d/up", Some("..")), ("in", Some("d/up/.."))],
            "'in' is refused: symlink to 'd/up/..' resolves outside the archive through the symlink 'd/up'",
        ),
        (
            "a file under a link",
            &[("sub/keep", None), ("d", Some("sub")), ("d/x", None)],
            "'d/x' is refused: its parent 'd' is a symlink",
        ),
        ("a file under a link to outside", &[("d", Some("..")), ("d/x", None)], "'d' is refused"),
        ("a file replaced by a link", &[("f", None), ("f", Some("."))], "'f' is refused: it appears twice"),
        ("a loop", &[("l", Some("m/x")), ("m", Some("l/y"))], "more than 40 symlinks"),
    ];
    for (name, entries, expected) in cases {
        let gz = links(entries);
        let err = verify(&gz, ArchiveLimits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::RefusedEntry { .. }), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(expected), "{name}: {msg}");
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("dest");
        assert_eq!(unpack(&gz, &dest, ArchiveLimits::default()).unwrap_err().to_string(), msg, "{name}");
        assert!(!dest.exists(), "{name}: something was written");
    }
}

#[test]
fn links_inside_the_tree_still_work() {
    let gz = links(&[
        ("pkg/mod.py", None),
        ("lib", Some("pkg")),
        ("pkg/alias.py", Some("../lib/mod.py")),
        ("here", Some(".")),
        ("again", Some("here/here/pkg/../lib")),
        ("pkg/up", Some("..")),
        ("via", Some("pkg/up/pkg/mod.py")),
    ]);
    let out = tempfile::tempdir().unwrap();
    let summary = unpack(&gz, out.path(), ArchiveLimits::default()).unwrap();
    assert_eq!(summary.entries, 7);
    for path in ["pkg/alias.py", "again/mod.py", "here/lib/mod.py", "via"] {
        assert_eq!(fs::read_to_string(out.path().join(path)).unwrap(), "hi", "{path}");
    }
}

#[test]
fn unpack_needs_an_empty_destination_and_pack_refuses_escaping_links() {
    let gz = links(&[("a.txt", None)]);
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("already"), "x").unwrap();
    let err = unpack(&gz, out.path(), ArchiveLimits::default()).unwrap_err().to_string();
    assert!(err.contains("is not empty"), "{err}");
    assert!(!out.path().join("a.txt").exists());

    // A tree on disk whose links escape only when followed is refused when packed.
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("main.py"), "x").unwrap();
    std::os::unix::fs::symlink(".", d.path().join("s")).unwrap();
    std::os::unix::fs::symlink("s/..", d.path().join("t")).unwrap();
    let err = pack_dir(d.path()).unwrap_err().to_string();
    assert!(err.starts_with("archive entry 't' is refused: symlink to 's/..' resolves outside"), "{err}");
}

#[test]
fn link_resolution_is_bounded() {
    let links = |target: &dyn Fn(usize) -> String| {
        raw_tar(|b| {
            for i in 0..2_000 {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, format!("l{i}"), target(i)).unwrap();
            }
        })
    };
    // Long, deep targets cost their length, not its square.
    let walk = format!("{}{}", "d/".repeat(800), "../".repeat(800));
    let started = std::time::Instant::now();
    assert_eq!(verify(&links(&|_| walk.clone()), ArchiveLimits::default()).unwrap().entries, 2_000);
    eprintln!("2000 deep links verified in {:?}", started.elapsed());

    // Each link through a chain of 35 others, each with a long walk: resolving them all
    // would take billions of steps; the budget refuses the archive instead.
    let chained = links(&|i| if i == 0 { ".".into() } else { format!("l{}/{walk}", (i - 1).min(35)) });
    let started = std::time::Instant::now();
    let err = verify(&chained, ArchiveLimits::default()).unwrap_err().to_string();
    eprintln!("chains refused after {:?}", started.elapsed());
    assert!(err.contains("symlinks are too costly to resolve"), "{err}");

    let long = raw_tar(|b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "l", "a/".repeat(2048)).unwrap();
    });
    let err = verify(&long, ArchiveLimits::default()).unwrap_err().to_string();
    assert_eq!(err, "archive entry 'l' is refused: its symlink target is longer than 4095 bytes");
}
