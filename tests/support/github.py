"""GitHub, played by a bare repository in a temporary folder, and its webhook deliveries.

`Remote` is the "GitHub" side (a bare repository, cloned through a file:// URL) with a
working clone that commits and pushes. `push_payload` builds the push event GitHub
would send for what was just pushed (the fields of its WebhookPush schema), and
`deliver` POSTs it with GitHub's headers, signed the way GitHub signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote_plus

import httpx

ZERO = "0" * 40
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Octo Cat",
    "GIT_AUTHOR_EMAIL": "octocat@example.com",
    "GIT_COMMITTER_NAME": "Octo Cat",
    "GIT_COMMITTER_EMAIL": "octocat@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run_git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


class Remote:
    def __init__(self, root: Path, full_name: str = "acme/game"):
        self.full_name = full_name
        self.html_url = f"https://github.com/{full_name}"
        self.bare = root / "github" / (full_name.split("/")[1] + ".git")
        self.work = root / "work"
        self.bare.mkdir(parents=True)
        run_git(self.bare, "init", "--quiet", "--bare", "-b", "main")
        run_git(root, "clone", "--quiet", str(self.bare), str(self.work))
        run_git(self.work, "checkout", "--quiet", "-b", "main")
        self.url = self.bare.as_uri()

    def write(self, files: dict[str, str | None]) -> None:
        """Write files into the working clone; None deletes."""
        for rel, text in files.items():
            path = self.work / rel
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def commit(self, message: str, files: dict[str, str | None] | None = None) -> str:
        self.write(files or {})
        run_git(self.work, "add", "-A")
        run_git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        return run_git(self.work, "rev-parse", "HEAD")

    def checkout(self, branch: str, *, new: bool = False) -> None:
        run_git(self.work, "checkout", "--quiet", *(["-b"] if new else []), branch)

    def head(self, branch: str = "main") -> str:
        """What GitHub has on the branch (ZERO when it does not exist)."""
        try:
            return run_git(self.bare, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        except AssertionError:
            return ZERO

    def push(self, branch: str = "main", *, force: bool = False) -> dict:
        """Push the working branch; return the push event GitHub sends for it."""
        before = self.head(branch)
        run_git(self.work, "push", "--quiet", *(["--force"] if force else []), "origin", branch)
        return self.push_payload(f"refs/heads/{branch}", before, self.head(branch), forced=force)

    def delete_branch(self, branch: str) -> dict:
        before = self.head(branch)
        run_git(self.work, "push", "--quiet", "origin", f":refs/heads/{branch}")
        return self.push_payload(f"refs/heads/{branch}", before, ZERO)

    def repository(self) -> dict:
        owner, name = self.full_name.split("/")
        return {
            "id": 123456789,
            "node_id": "R_kgDOHxyz",
            "name": name,
            "full_name": self.full_name,
            "private": True,
            "owner": {"name": owner, "login": owner, "id": 4242, "type": "Organization"},
            "html_url": self.html_url,
            "description": None,
            "fork": False,
            "url": f"https://api.github.com/repos/{self.full_name}",
            "git_url": f"git://github.com/{self.full_name}.git",
            "ssh_url": f"git@github.com:{self.full_name}.git",
            "clone_url": f"{self.html_url}.git",
            "default_branch": "main",
            "master_branch": "main",
            "pushed_at": int(time.time()),
        }

    def push_payload(self, ref: str, before: str, after: str, *, forced: bool = False) -> dict:
        commits = self._commits(before, after)
        return {
            "ref": ref,
            "before": before,
            "after": after,
            "repository": self.repository(),
            "pusher": {"name": "octocat", "email": "octocat@example.com"},
            "sender": {"login": "octocat", "id": 583231, "type": "User"},
            "created": before == ZERO,
            "deleted": after == ZERO,
            "forced": forced,
            "base_ref": None,
            "compare": f"{self.html_url}/compare/{before[:12]}...{after[:12]}",
            "commits": commits,
            "head_commit": commits[-1] if commits else None,
        }

    def _commits(self, before: str, after: str) -> list[dict]:
        if after == ZERO:
            return []
        exclude = [] if before == ZERO else ["--not", before]
        ids = run_git(self.bare, "rev-list", "--reverse", after, *exclude).split()
        return [self._commit(sha) for sha in ids]

    def _commit(self, sha: str) -> dict:
        message, stamp = run_git(self.bare, "show", "-s", "--format=%s%x00%cI", sha).split("\0")
        changed = run_git(
            self.bare, "diff-tree", "--root", "--no-commit-id", "-r", "--name-status", sha
        ).splitlines()
        files: dict[str, list[str]] = {"A": [], "D": [], "M": []}
        for line in changed:
            status, path = line.split("\t", 1)
            files.get(status[0], files["M"]).append(path)
        person = {"name": "Octo Cat", "email": "octocat@example.com", "username": "octocat"}
        return {
            "id": sha,
            "tree_id": run_git(self.bare, "rev-parse", f"{sha}^{{tree}}"),
            "distinct": True,
            "message": message,
            "timestamp": stamp,
            "url": f"{self.html_url}/commit/{sha}",
            "author": person,
            "committer": person,
            "added": files["A"],
            "removed": files["D"],
            "modified": files["M"],
        }


def ping_payload(remote: Remote) -> dict:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 987654,
        "hook": {"type": "Repository", "id": 987654, "events": ["push"], "active": True},
        "repository": remote.repository(),
        "sender": {"login": "octocat", "id": 583231, "type": "User"},
    }


def sign(secret: str, body: bytes) -> dict[str, str]:
    key = secret.encode()
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def encode(payload: dict, content_type: str = "application/json") -> bytes:
    """The body as GitHub sends it: compact JSON, or a form with the JSON in `payload`."""
    text = json.dumps(payload, separators=(",", ":"))
    if content_type == "application/x-www-form-urlencoded":
        return ("payload=" + quote_plus(text)).encode()
    return text.encode()


def headers(
    event: str,
    body: bytes,
    *,
    secret: str | None,
    delivery: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    found = {
        "User-Agent": "GitHub-Hookshot/7f3c1a2",
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "987654",
        "X-GitHub-Hook-Installation-Target-ID": "123456789",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
    }
    if secret is not None:
        found |= sign(secret, body)
    return found


async def deliver(
    base_url: str,
    event: str,
    payload: dict,
    *,
    secret: str | None,
    delivery: str | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    """POST a delivery to the webhook exactly as GitHub would."""
    body = encode(payload, content_type)
    sent = headers(event, body, secret=secret, delivery=delivery, content_type=content_type)
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{base_url}/webhook/github", content=body, headers=sent)
