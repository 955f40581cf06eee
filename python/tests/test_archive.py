"""Packing directories: deterministic bytes, .git dropped, ignore files honoured."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Dict

from liftoff.archive import list_files, pack_dir, sha256_digest


def tree(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_packing_is_deterministic(tmp_path: Path) -> None:
    root = tree(tmp_path / "a", {"main.py": "print(1)\n", "pkg/b.py": "", "pkg/a.py": "x = 1\n"})
    first = pack_dir(root)
    os.utime(root / "main.py", (1, 1))
    (root / "pkg" / "a.py").touch()
    assert pack_dir(root) == first
    # the same tree elsewhere, created in another order, gives the same digest
    other = tree(tmp_path / "b", {"pkg/a.py": "x = 1\n", "pkg/b.py": "", "main.py": "print(1)\n"})
    assert sha256_digest(pack_dir(other)) == sha256_digest(first)
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["main.py", "pkg", "pkg/a.py", "pkg/b.py"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.isdir() else 0o644)


def test_modes_symlinks_and_git(tmp_path: Path) -> None:
    root = tree(tmp_path / "r", {"run.sh": "#!/bin/sh\n", ".git/config": "", "sub/.git": "gitdir: x\n"})
    (root / "run.sh").chmod(0o700)
    (root / "link").symlink_to("run.sh")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(pack_dir(root)))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["link", "run.sh", "sub"]
    assert members["run.sh"].mode == 0o755
    assert members["link"].issym() and members["link"].linkname == "run.sh"


def test_gitignore_is_honoured(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "r",
        {
            ".gitignore": "*.log\n# comment\n/build\ndata/\n!keep.log\ndocs/**/*.tmp\n",
            "a.log": "",
            "keep.log": "",
            "main.py": "",
            "build/x": "",
            "src/build/y": "",  # `/build` is anchored: this one stays
            "data/big.bin": "",
            "src/data": "",  # `data/` is for directories: a file stays
            "docs/a/b/c.tmp": "",
            "docs/a/b/c.md": "",
            "sub/.gitignore": "*.py\n!keep.py\n",
            "sub/drop.py": "",
            "sub/keep.py": "",
            "sub/nested.log": "",
            ".ignore": "secret.txt\n",
            "secret.txt": "",
        },
    )
    assert list_files(root) == [
        ".gitignore",
        ".ignore",
        "docs",
        "docs/a",
        "docs/a/b",
        "docs/a/b/c.md",
        "keep.log",
        "main.py",
        "src",
        "src/build",
        "src/build/y",
        "src/data",
        "sub",
        "sub/.gitignore",
        "sub/keep.py",
    ]
