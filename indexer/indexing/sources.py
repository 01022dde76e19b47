"""Where Lua files come from: a plain folder, or a git repository at a commit.

Both give the same view: repo-relative paths with a content id (the git blob
hash, computed the same way for plain files), so unchanged files are known
without parsing and a folder and its git checkout agree.

Safety rules that hold for every source: symlinks are never followed, nothing
outside the repository is read, binary and oversized files are skipped with
a reason.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from indexer.errors import SourceError
from indexer.sync import git


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str  # repo-relative, POSIX separators
    size: int
    blob: str  # git blob sha1 of the content


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


class Source(Protocol):
    description: str  # what to store as repos.source (never with credentials)
    commit: str | None  # the git commit being indexed, None for plain folders
    github_url: str | None

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]: ...

    def read(self, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, bytes]]: ...


def blob_id(data: bytes) -> str:
    """The id git gives this content, so folders and git checkouts agree."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def matches(path: str, include: Sequence[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(path, g) for g in include)


def path_problem(path: str) -> str | None:
    """Why a repository path is never indexed, or None.

    Nothing outside the repository: no absolute path, no `..` (a crafted git tree can hold
    one), nor `.`, empty or `.git` components, which no checkout has. And a name PostgreSQL
    can store: a file name that is not UTF-8 comes back from the OS and git as lone
    surrogates, which no text column or JSON value accepts.
    """
    parts = path.split("/")
    if not path or "\0" in path or any(part in ("", ".", "..") for part in parts):
        return "unsafe path"
    if any(part.lower() == ".git" for part in parts):
        return "unsafe path (.git)"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    return None


def display_path(path: str) -> str:
    """The path as text that can be stored and shown (undecodable bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_lua(data: bytes) -> str:
    """Lua source as text: UTF-8 (BOM dropped), else Latin-1; line ends normalised.

    Lua itself is byte-oriented, so a Latin-1 file is valid Lua and is kept.
    CRLF and lone CR become LF; the number of lines does not change.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def binary_reason(data: bytes) -> str | None:
    # Anywhere in the file, not only near the start as git looks: PostgreSQL text cannot
    # hold a NUL, and one such file would fail the whole run.
    if b"\0" in data:
        return "binary file (NUL bytes)"
    return None


class FolderSource:
    """A plain directory tree. Symlinks (files or folders) are skipped, never followed."""

    def __init__(self, root: Path, include: Sequence[str], max_bytes: int):
        self.root = root.resolve()
        if not self.root.is_dir():
            raise SourceError(f"{root} is not a folder.")
        self.include = include
        self.max_bytes = max_bytes
        self.description = str(self.root)
        self.commit = None
        self.github_url = None
        self._content: dict[str, bytes] = {}

    def _walk(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        stack = [("", self.root)]
        while stack:
            prefix, folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append((rel + "/", Path(entry.path)))
                else:
                    yield rel, entry

    def _read(self, rel: str) -> bytes:
        """Read without following a symlink, even one swapped in after the scan."""
        fd = os.open(self.root / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(self.max_bytes + 1)
        finally:
            os.close(fd)

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]:
        files: list[SourceFile] = []
        skipped: list[Skipped] = []
        for rel, entry in self._walk():
            if not matches(rel, self.include):
                continue
            if problem := path_problem(rel):
                skipped.append(Skipped(display_path(rel), problem))
                continue
            if entry.is_symlink():
                skipped.append(Skipped(rel, "symlink (never followed)"))
                continue
            if not entry.is_file(follow_symlinks=False):
                skipped.append(Skipped(rel, "not a regular file"))
                continue
            try:
                data = self._read(rel)
            except OSError as exc:
                skipped.append(Skipped(rel, f"unreadable: {exc.strerror or exc}"))
                continue
            reason = _skip_reason(data, self.max_bytes)
            if reason:
                skipped.append(Skipped(rel, reason))
                continue
            self._content[rel] = data
            files.append(SourceFile(rel, len(data), blob_id(data)))
        return files, skipped

    def read(self, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, bytes]]:
        for f in files:
            yield f, self._content.pop(f.path)


def _skip_reason(data: bytes, max_bytes: int) -> str | None:
    if len(data) > max_bytes:
        return f"larger than {max_bytes} bytes (VICTOR_MAX_FILE_BYTES)"
    return binary_reason(data)


class GitSource:
    """What git tracks at one commit (so .gitignore holds), read from git objects."""

    def __init__(
        self,
        repo_dir: Path,
        ref: str | None,
        include: Sequence[str],
        max_bytes: int,
        *,
        description: str | None = None,
        github_url: str | None = None,
    ):
        self.repo_dir = repo_dir
        self.include = include
        self.max_bytes = max_bytes
        self.commit = git.resolve_commit(repo_dir, ref or "HEAD")
        self.description = description or str(repo_dir)
        self.github_url = github_url if github_url is not None else git.github_url_of(repo_dir)

    def scan(self) -> tuple[list[SourceFile], list[Skipped]]:
        files: list[SourceFile] = []
        skipped: list[Skipped] = []
        for entry in git.ls_tree(self.repo_dir, self.commit):
            if not matches(entry.path, self.include):
                continue
            if problem := path_problem(entry.path):
                skipped.append(Skipped(display_path(entry.path), problem))
            elif entry.mode == "120000":
                skipped.append(Skipped(entry.path, "symlink (never followed)"))
            elif entry.type != "blob":
                skipped.append(Skipped(entry.path, f"{entry.type} (submodule), not indexed"))
            elif entry.size > self.max_bytes:
                skipped.append(
                    Skipped(
                        entry.path, f"larger than {self.max_bytes} bytes (VICTOR_MAX_FILE_BYTES)"
                    )
                )
            else:
                files.append(SourceFile(entry.path, entry.size, entry.sha))
        return files, skipped

    def read(self, files: Sequence[SourceFile]) -> Iterator[tuple[SourceFile, bytes]]:
        by_blob: dict[str, list[SourceFile]] = {}
        for f in files:
            by_blob.setdefault(f.blob, []).append(f)
        for blob, data in git.read_blobs(self.repo_dir, list(by_blob)):
            for f in by_blob[blob]:
                yield f, data


def open_source(
    target: str,
    *,
    ref: str | None,
    include: Sequence[str],
    max_bytes: int,
    clones_dir: Path,
    name: str,
    token: str | None = None,
) -> Source:
    """A folder path, a git work tree or bare repo, or a git URL (cloned under clones_dir;
    `token` is sent to an https remote through git's environment)."""
    if git.is_url(target):
        if git.has_credentials(target):
            # git would keep them in the clone's config and show them in its command line
            raise SourceError(
                "The URL carries credentials. Give it without them and put a GitHub token in "
                "VICTOR_GITHUB_TOKEN (it is never written to disk)."
            )
        repo_dir = git.clone_or_fetch(target, clones_dir / name, token)
        return GitSource(
            repo_dir,
            ref,
            include,
            max_bytes,
            description=git.strip_credentials(target),
            github_url=git.github_url(target),
        )
    path = Path(target).expanduser()
    if not path.exists():
        raise SourceError(f"{target} does not exist. Give a folder, a git repository or a git URL.")
    if git.is_repo_root(path):
        return GitSource(path.resolve(), ref, include, max_bytes)
    if ref:
        raise SourceError(f"--ref needs a git repository, and {target} is a plain folder.")
    return FolderSource(path, include, max_bytes)
