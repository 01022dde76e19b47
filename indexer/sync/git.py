"""The few git operations Victor needs, through the git command line.

A GitHub token for private repositories travels only in the environment of
the git process (GIT_CONFIG_* variables): never in a command line, never in
.git/config, never in a log line.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from indexer.errors import SourceError

_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
_GITHUB = re.compile(r"github\.com[:/]+([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


@dataclass(frozen=True, slots=True)
class TreeEntry:
    mode: str
    type: str
    sha: str
    size: int
    path: str


def is_url(target: str) -> bool:
    return bool(_URL.match(target))


def has_credentials(url: str) -> bool:
    """A password in the URL, or a user name in an http(s) URL (a token can be either);
    `ssh://git@host/...` names a user, not a secret."""
    parts = urlsplit(url)
    if parts.password is not None:
        return True
    return parts.scheme in ("http", "https") and parts.username is not None


def strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def github_url(url: str) -> str | None:
    """https://github.com/OWNER/REPO for any GitHub clone URL, else None."""
    match = _GITHUB.search(strip_credentials(url))
    return f"https://github.com/{match[1]}/{match[2]}" if match else None


def auth_env(token: str | None, url: str | None = None) -> dict[str, str]:
    """Environment that makes git send the token to GitHub (and nowhere else)."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    if token and url and url.startswith("https://"):
        host = urlsplit(url).netloc.rsplit("@", 1)[-1]  # with its port: git matches it exactly
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.https://{host}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
        }
    return env


def run(
    repo: Path | None,
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 600,
) -> bytes:
    """Run git; a failure becomes a SourceError carrying git's own message."""
    command = ["git"]
    if repo is not None:
        command += ["-C", str(repo)]
    command += list(args)
    try:
        done = subprocess.run(
            command,
            input=input,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **(env or {}), "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise SourceError("git is not installed (needed for git repositories).") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"git {args[0]} took longer than {timeout:g} s.") from None
    if done.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {git_error(done.stderr) or done.returncode}")
    return done.stdout


def git_error(stderr: bytes) -> str:
    """git's own error line: the first `fatal:`/`error:` line, else the last line.

    (After "fatal: ... does not appear to be a git repository", git adds advice whose last
    line, "and the repository exists.", says nothing on its own.)
    """
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else ""


def is_repo_root(path: Path) -> bool:
    """A work tree's top folder or a bare repository (not merely a folder inside one)."""
    if (path / ".git").exists():
        return True
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def resolve_commit(repo: Path, ref: str) -> str:
    try:
        return run(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except SourceError:
        raise SourceError(f"{ref!r} is not a commit, branch or tag in {repo}.") from None


def github_url_of(repo: Path) -> str | None:
    try:
        url = run(repo, "config", "--get", "remote.origin.url").decode().strip()
    except SourceError:
        return None
    return github_url(url)


def ls_tree(repo: Path, commit: str) -> Iterator[TreeEntry]:
    out = run(repo, "ls-tree", "-r", "-l", "-z", "--full-tree", commit)
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, sha, size = meta.decode().split(maxsplit=3)
        yield TreeEntry(
            mode,
            kind,
            sha,
            int(size) if size.strip().isdigit() else 0,
            path.decode("utf-8", "surrogateescape"),
        )


def read_blobs(repo: Path, shas: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """Contents of many blobs with one `git cat-file --batch`."""
    if not shas:
        return
    out = run(repo, "cat-file", "--batch", input=("\n".join(shas) + "\n").encode())
    pos = 0
    for sha in shas:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) < 3 or header[1] == b"missing":
            raise SourceError(f"git object {sha} is missing in {repo}.")
        size = int(header[2])
        yield sha, out[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1


@dataclass(frozen=True, slots=True)
class Change:
    status: str  # A, M, D, T, R (renamed: old_path -> path), C (copied)
    path: str
    old_path: str | None = None


def is_ancestor(repo: Path, ancestor: str, commit: str) -> bool:
    """True when `ancestor` is `commit` or in its history; False too when it is not in repo."""
    try:
        run(repo, "merge-base", "--is-ancestor", ancestor, commit)
    except SourceError:
        return False
    return True


def diff(repo: Path, old: str, new: str) -> list[Change]:
    """Files that differ between two commits, renames detected (`git diff --name-status`)."""
    out = run(repo, "diff", "--name-status", "-z", "-M", "--no-ext-diff", old, new, "--")
    fields = [f.decode("utf-8", "surrogateescape") for f in out.split(b"\0")]
    changes: list[Change] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        if status in "RC":
            changes.append(Change(status, fields[i + 2], fields[i + 1]))
            i += 3
        else:
            changes.append(Change(status, fields[i + 1]))
            i += 2
    return changes


def remote_has_branch(url: str, branch: str, token: str | None = None) -> bool:
    """Ask the remote whether the branch exists (and so that it is reachable at all)."""
    out = run(
        None,
        "ls-remote",
        "--heads",
        url,
        f"refs/heads/{branch}",
        env=auth_env(token, url),
        timeout=60,
    )
    return bool(out.strip())


def clone_is_sound(dest: Path) -> bool:
    """Whether a local clone is a readable repository with every object its refs need.

    Only called after something failed in it: it reads the whole history once."""
    try:
        run(dest, "rev-parse", "--git-dir")
        run(dest, "fsck", "--connectivity-only", "--no-dangling", "--no-progress")
    except SourceError:
        return False
    return True


def discard_clone(dest: Path) -> None:
    """Delete a damaged clone: it is only a cache of the remote, the next fetch clones it."""
    shutil.rmtree(dest, ignore_errors=True)


def clone_or_fetch(url: str, dest: Path, token: str | None = None) -> Path:
    """A bare mirror of the remote's branches and tags in dest, up to date.

    A clone that was deleted is cloned again; so is one that is damaged (garbage in HEAD,
    a truncated pack...): when a fetch fails and the clone fails `git fsck`, the clone is
    the problem, not the remote, so it is discarded and cloned afresh. A fetch that fails
    in a sound clone (remote unreachable, renamed, no access) raises git's own message.
    """
    env = auth_env(token, url)
    if dest.exists() and not (dest / "HEAD").is_file():
        discard_clone(dest)  # a half-deleted or never-finished clone
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        run(None, "clone", "--bare", "--quiet", url, str(dest), env=env)
    fetch = (
        "fetch",
        "--quiet",
        "--prune",
        "--force",
        url,
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
    )
    try:
        run(dest, *fetch, env=env)
    except SourceError:
        if clone_is_sound(dest):
            raise
        discard_clone(dest)
        run(None, "clone", "--bare", "--quiet", url, str(dest), env=env)
        run(dest, *fetch, env=env)
    return dest
