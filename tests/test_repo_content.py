"""Hostile repository content: nothing outside the repository is ever read or indexed.

The same traps go through all three ways content comes in: a plain folder (`victor index
FOLDER`), a local git repository (`victor index REPO`, read from git objects) and a push to
"GitHub" synced by the worker (webhook → job → fetch → git objects). Traps: symlinks to
files outside (and to /etc/passwd), symlink loops, dangling links, linked folders, a
submodule, `.git` folders, file names with spaces, unicode, newlines, quotes, leading dashes
and bytes that are not UTF-8, and git trees crafted to hold `..`, `.` and `.git` entries
(`git mktree` writes them; `git update-index` refuses them).

A hard link in a plain folder is indexed: it is a regular file of the folder, the same file
as its other name, and only someone who may write the folder can make one (see
docs/threat-model.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import asyncpg

from indexer import store
from tests.conftest import victor_cli
from tests.support.github import GIT_ENV, Remote, deliver
from tests.support.index_check import assert_index_holds
from tests.support.webhook import SECRET, wait_job

MARKER = "OUTSIDE_THE_REPOSITORY_5e1f"  # in files outside the repository only
CRAFTED = "CRAFTED_TREE_ENTRY_9c2d"  # in blobs reachable only through unsafe tree paths
PASSWD = "root:x:0:0"

# Regular files with awkward names: all indexed.
NAMED = {
    "ok.lua": b"local function ok()\n  return 1\nend\nreturn ok\n",
    "src/name with spaces \xc3\xa9.lua": b"local spaced = 1\n",
    "src/\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80.lua": b"local unicode = 1\n",
    "src/new\nline.lua": b"local newline = 1\n",
    "src/-dash.lua": b"local dash = 1\n",
    "src/--help.lua": b"local help = 1\n",
    "src/quote'\"$(touch pwned).lua": b"local quoted = 1\n",
    "src/back\\slash.lua": b"local backslash = 1\n",
}
LATIN1_NAME = b"src/caf\xe9.lua"  # not UTF-8: skipped with the reason
SYMLINK_REASON = "symlink (never followed)"


def git(repo: Path, *args: str, input_text: str | None = None) -> str:
    """git, with bytes that are not UTF-8 passed through (file names)."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=None if input_text is None else os.fsencode(input_text),
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=True,
    )
    return os.fsdecode(done.stdout).strip()


def text_names(names: dict[str, bytes]) -> dict[str, bytes]:
    """The NAMED table with UTF-8 names decoded (the keys are written as UTF-8 byte escapes)."""
    return {k.encode("latin-1").decode("utf-8"): v for k, v in names.items()}


def write(root: Path, rel: str | bytes, data: bytes) -> None:
    raw = rel if isinstance(rel, bytes) else rel.encode()
    path = Path(os.fsdecode(os.path.join(os.fsencode(root), raw)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def outside(tmp_path: Path) -> Path:
    """Files next to the repository that must never reach the index."""
    folder = tmp_path / "outside"
    (folder / "dir").mkdir(parents=True)
    (folder / "secret.lua").write_text(f"local secret = '{MARKER}'\n")
    (folder / "dir" / "inner.lua").write_text(f"local inner = '{MARKER}'\n")
    return folder


def add_symlinks(root: Path, out: Path) -> dict[str, str]:
    """Symlinks of every kind under root/links; returns path -> expected skip reason."""
    links = root / "links"
    links.mkdir(parents=True, exist_ok=True)
    (links / "passwd.lua").symlink_to("/etc/passwd")
    (links / "secret.lua").symlink_to(os.path.relpath(out / "secret.lua", links))
    (links / "absolute.lua").symlink_to(out / "secret.lua")
    (links / "loop_a.lua").symlink_to("loop_b.lua")
    (links / "loop_b.lua").symlink_to("loop_a.lua")
    (links / "self.lua").symlink_to("self.lua")
    (links / "dangling.lua").symlink_to("nowhere.lua")
    (links / "dir.lua").symlink_to(out / "dir", target_is_directory=True)
    (links / "up").symlink_to("..", target_is_directory=True)  # a loop through the root
    (links / "outside").symlink_to(out / "dir", target_is_directory=True)
    names = ["passwd", "secret", "absolute", "loop_a", "loop_b", "self", "dangling", "dir"]
    return {f"links/{n}.lua": SYMLINK_REASON for n in names}


async def database_text(url: str) -> str:
    """Every text Victor stored, in one string: chunks, files, runs, jobs."""
    conn = await asyncpg.connect(url)
    try:
        parts = await conn.fetch(
            """
            SELECT string_agg(text || signature || doc || symbol || path, '') AS t FROM chunks
            UNION ALL SELECT string_agg(path || coalesce(parse_error, ''), '') FROM files
            UNION ALL SELECT string_agg(coalesce(last_run::text, ''), '') FROM repos
            UNION ALL SELECT string_agg(coalesce(error, '') || coalesce(result::text, ''), '')
                FROM sync_jobs
            """
        )
    finally:
        await conn.close()
    return "".join(r["t"] or "" for r in parts)


async def assert_nothing_from_outside(url: str, ollama) -> None:
    stored = await database_text(url)
    embedded = "".join(ollama.inputs)
    for secret in (MARKER, CRAFTED, PASSWD):
        assert secret not in stored, secret
        assert secret not in embedded, secret


def skipped_reasons(summary: dict) -> dict[str, str]:
    return {path: reason for path, reason in summary["skipped"]}


# --- a plain folder --------------------------------------------------------------------------


async def test_folder_never_reads_outside(cli_env, ollama, tmp_path):
    out = outside(tmp_path)
    root = tmp_path / "repo"
    files = text_names(NAMED)
    for rel, data in files.items():
        write(root, rel, data)
    write(root, LATIN1_NAME, b"local latin1_name = 1\n")
    links = add_symlinks(root, out)
    # .git folders below the top (a vendored clone): never content
    write(root, "vendor/lib/.git/hooks/evil.lua", f"local evil = '{MARKER}'\n".encode())
    write(root, "vendor/lib/.git/config.lua", f"local cfg = '{MARKER}'\n".encode())
    write(root, "vendor/lib/real.lua", b"local vendored = 1\n")
    # a hard link to a file outside: a regular file of this folder, indexed
    (out / "hard.lua").write_bytes(b"local hard_linked = 1\n")
    os.link(out / "hard.lua", root / "hard.lua")

    done = victor_cli("index", str(root), "--name", "folder", "--json", env=cli_env, cwd=tmp_path)
    summary = json.loads(done.stdout)
    reasons = skipped_reasons(summary)
    assert reasons == {**links, "src/caf\ufffd.lua": "file name is not valid UTF-8"}
    expected = {**files, "vendor/lib/real.lua": b"local vendored = 1\n"}
    expected["hard.lua"] = b"local hard_linked = 1\n"
    await assert_index_holds(cli_env["VICTOR_DATABASE_URL"], "folder", expected)
    await assert_nothing_from_outside(cli_env["VICTOR_DATABASE_URL"], ollama)
    assert not (tmp_path / "pwned").exists()


# --- git: a local repository and a push synced by the worker --------------------------------


def crafted_commit(repo: Path, message: str) -> str:
    """A commit on top of HEAD whose root tree also holds `..`, `.` and `.git` entries, each a
    folder with a Lua file (git's porcelain refuses such paths; the object format does not)."""
    blob = git(repo, "hash-object", "-w", "--stdin", input_text=f"local c = '{CRAFTED}'\n")
    inner = git(repo, "mktree", input_text=f"100644 blob {blob}\tx.lua\n")
    head_tree = git(repo, "ls-tree", "-z", "HEAD")
    extra = "".join(f"040000 tree {inner}\t{name}\0" for name in ("..", ".", ".git", ".GIT"))
    root = git(repo, "mktree", "-z", input_text=head_tree + extra)
    commit = git(repo, "commit-tree", root, "-p", "HEAD", "-m", message)
    git(repo, "update-ref", "HEAD", commit)
    return commit


def commit_traps(repo: Path, out: Path, tmp_path: Path) -> dict[str, str]:
    """Commit the named files, symlinks and a submodule; return the expected skip reasons."""
    for rel, data in text_names(NAMED).items():
        write(repo, rel, data)
    write(repo, LATIN1_NAME, b"local latin1_name = 1\n")
    links = add_symlinks(repo, out)
    # a real submodule (its files belong to another repository) and a gitlink named like Lua
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    write(sub, "lib.lua", f"local from_submodule = '{MARKER}'\n".encode())
    git(sub, "add", "-A")
    git(sub, "commit", "-q", "-m", "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/lib")
    git(repo, "add", "-A")
    sub_head = git(sub, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub_head},plugin.lua")
    git(repo, "commit", "-q", "-m", "traps")
    crafted_commit(repo, "crafted tree")
    # untracked content in the work tree is never read either
    write(repo, "untracked.lua", f"local untracked = '{MARKER}'\n".encode())
    return {
        **links,
        "src/caf\ufffd.lua": "file name is not valid UTF-8",
        "plugin.lua": "commit (submodule), not indexed",
        "../x.lua": "unsafe path",
        "./x.lua": "unsafe path",
        ".git/x.lua": "unsafe path (.git)",
        ".GIT/x.lua": "unsafe path (.git)",
    }


GIT_EXPECTED = text_names(NAMED)


async def test_git_repository_never_reads_outside(cli_env, ollama, tmp_path):
    out = outside(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    reasons = commit_traps(repo, out, tmp_path)

    done = victor_cli("index", str(repo), "--name", "gitrepo", "--json", env=cli_env)
    summary = json.loads(done.stdout)
    assert skipped_reasons(summary) == reasons
    await assert_index_holds(cli_env["VICTOR_DATABASE_URL"], "gitrepo", GIT_EXPECTED)
    await assert_nothing_from_outside(cli_env["VICTOR_DATABASE_URL"], ollama)


async def test_pushed_traps_never_reach_the_index(webhook_url, victor, worker, ollama, tmp_path):
    out = outside(tmp_path)
    remote = Remote(tmp_path / "gh")
    remote.commit("initial", {"ok.lua": NAMED["ok.lua"].decode()})
    remote.push()
    reasons = commit_traps(remote.work, out, tmp_path)
    await store.track_repo(victor.pool, "game", remote.url, "main", remote.html_url)

    answer = await deliver(webhook_url, "push", remote.push(), secret=SECRET)
    assert answer.status_code == 202, answer.text
    job = await wait_job(victor.pool, answer.json()["jobs"][0]["id"])
    assert job.state == "done", job.error
    assert {path: reason for path, reason in job.result["index"]["skipped"]} == reasons
    url = victor.settings.database_url.get_secret_value()
    await assert_index_holds(url, "game", GIT_EXPECTED)
    await assert_nothing_from_outside(url, ollama)
    # the worker's clone is bare: contents exist only as git objects, never as files
    clone = victor.settings.clones_dir / "game"
    assert (clone / "HEAD").is_file() and not (clone / "ok.lua").exists()
    assert not list(clone.rglob("*.lua"))


def test_git_refuses_what_the_crafted_trees_hold(tmp_path):
    """Why the crafted trees are built with mktree: git's index will not take these paths."""
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="x\n")
    for path in ("../x.lua", ".git/x.lua", "a/../../x.lua"):
        done = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "update-index",
                "--add",
                "--cacheinfo",
                f"100644,{blob},{path}",
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and "invalid path" in done.stderr.lower(), path
