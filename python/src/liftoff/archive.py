"""Code archives: a directory packed as a deterministic gzipped tar, the way
``liftoff job create code DIR`` packs one (``crates/liftoff-archive/src/pack.rs``).

What is the same as the CLI:

* entries sorted by path (component by component), directories included;
* every entry with mtime 0, uid/gid 0 and no owner names; files mode 0644,
  or 0755 when any execute bit is set; directories 0755; symlinks 0777,
  stored as links (never followed); sockets, FIFOs and devices left out;
* every ``.git`` (directory or file) left out;
* ``.gitignore`` files honoured in the directory and every subdirectory (a
  deeper file's rules win over a shallower one's), also outside a git
  repository, together with ``.ignore`` files and ``.git/info/exclude``.

What differs:

* the bytes, hence the digest: the CLI writes with Rust's ``tar`` and
  ``flate2`` crates, this module with :mod:`tarfile` (GNU format) and
  :mod:`gzip` (level 6, mtime 0). Each is deterministic on its own, but a
  directory packed by both gives two digests (and two uploads);
* ``.gitignore`` matching is a reasonable subset of git's, implemented with
  :func:`fnmatch.translate`-style patterns: ``#`` comments, ``!`` negation,
  a trailing ``/`` for directories only, a leading or inner ``/`` anchoring
  the pattern to its file's directory, ``*``, ``?``, ``[...]`` and ``**``.
  Not supported: escaped trailing spaces (``\\ ``), ``.gitignore`` files of
  the directories *above* the packed one (the CLI's walker reads those), and
  the user's global excludes file (the CLI ignores that too). As in git, a
  file inside an ignored directory cannot be re-included by ``!``.

Example::

    from liftoff.archive import pack_dir, sha256_digest

    data = pack_dir("examples/hello")
    print(sha256_digest(data), len(data))
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from typing import List, Pattern, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Files whose patterns say what to leave out (as the CLI's walker reads them).
IGNORE_FILES = (".gitignore", ".ignore")


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``, the form blob digests take.

    Example: ``sha256_digest(b"") == "sha256:e3b0c442..."``.
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class _Rule:
    regex: Pattern[str]
    negated: bool
    dir_only: bool
    anchored: bool


def _glob_to_regex(glob: str) -> str:
    """A gitignore glob as a regular expression over ``/``-separated paths."""
    out: List[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                before_ok = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2 : i + 3]
                if before_ok and after == "/":
                    out.append("(?:.*/)?")  # `**/`: zero or more directories
                    i += 3
                    continue
                if before_ok and after == "":
                    out.append(".*")  # trailing `/**`: everything inside
                    i += 2
                    continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_ignore(text: str) -> List[_Rule]:
    """The rules of one ignore file's text, in order."""
    rules: List[_Rule] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        elif line.startswith("\\"):
            line = line[1:]  # `\#` and `\!` start a literal pattern
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        regex = re.compile(r"\A" + _glob_to_regex(line) + r"\Z", re.DOTALL)
        rules.append(_Rule(regex, negated, dir_only, anchored))
    return rules


def _read_rules(directory: str) -> List[_Rule]:
    rules: List[_Rule] = []
    for name in IGNORE_FILES:
        try:
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                rules.extend(parse_ignore(f.read()))
        except OSError:
            pass
    return rules


def _ignored(levels: List[Tuple[str, List[_Rule]]], rel: str, is_dir: bool) -> bool:
    """Whether ``rel`` (relative to the packed root) is ignored by the rules
    of its ancestors' ignore files; the deepest file with a matching rule
    decides, and within a file the last matching rule."""
    for base, rules in reversed(levels):
        sub = rel[len(base) + 1 :] if base else rel
        name = sub.rsplit("/", 1)[-1]
        for rule in reversed(rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(sub if rule.anchored else name):
                return not rule.negated
    return False


def list_files(root: PathLike) -> List[str]:
    """The ``/``-separated relative paths :func:`pack_dir` puts in the
    archive, sorted (directories included, ignored paths and ``.git`` left out).

    Example: ``list_files("examples/hello") == ["main.py", "requirements.txt"]``.
    """
    top = os.fspath(root)
    if not os.path.isdir(top):
        raise NotADirectoryError(f"{top} is not a directory")
    found: List[str] = []
    base_rules = _read_rules(top)
    exclude = os.path.join(top, ".git", "info", "exclude")
    if os.path.isfile(exclude):
        with open(exclude, encoding="utf-8", errors="replace") as f:
            base_rules = parse_ignore(f.read()) + base_rules

    def walk(rel_dir: str, levels: List[Tuple[str, List[_Rule]]]) -> None:
        full_dir = os.path.join(top, rel_dir) if rel_dir else top
        with os.scandir(full_dir) as entries:
            listing = sorted(entries, key=lambda e: e.name)
        for entry in listing:
            if entry.name == ".git":
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if _ignored(levels, rel, is_dir):
                continue
            found.append(rel)
            if is_dir:
                rules = _read_rules(entry.path)
                walk(rel, levels + [(rel, rules)] if rules else levels)

    walk("", [("", base_rules)])
    found.sort(key=lambda p: p.split("/"))
    return found


def pack_dir(root: PathLike, *, compresslevel: int = 6) -> bytes:
    """``root`` as a deterministic gzipped tar: the same tree always gives
    the same bytes (see the module's docstring for what is left out).

    Example::

        data = pack_dir("examples/hello")
        assert pack_dir("examples/hello") == data
    """
    top = os.fspath(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel in list_files(top):
            full = os.path.join(top, *rel.split("/"))
            st = os.lstat(full)
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.mode = 0o777
                info.linkname = os.readlink(full)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.type = tarfile.REGTYPE
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(full, "rb") as f:
                    data = f.read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            # sockets, FIFOs and devices have no place in a code archive
    return gzip.compress(buf.getvalue(), compresslevel=compresslevel, mtime=0)


def digest_dir(root: PathLike) -> Tuple[bytes, str]:
    """``(pack_dir(root), its sha256 digest)``.

    Example: ``data, digest = digest_dir("examples/hello")``.
    """
    data = pack_dir(root)
    return data, sha256_digest(data)
