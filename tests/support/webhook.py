"""Running the webhook app for real on 127.0.0.1, and checking what the worker left behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import httpx
from werkzeug.serving import make_server

from indexer.config import Settings
from indexer.indexing.sources import matches
from indexer.sync import jobs
from tests.support.github import run_git
from webhook.app import create_app

SECRET = "It's a Secret to Everybody"
ROOT = Path(__file__).resolve().parents[2]


def start_gunicorn(
    env: dict[str, str], port: int, log_path: Path, *options: str, timeout: float = 60
) -> subprocess.Popen:
    """The webhook app under gunicorn as deployed, answering /healthz on 127.0.0.1:port.

    Its output goes to `log_path`, not a pipe: an unread pipe fills and blocks gunicorn. It
    runs in a session of its own, so a test can kill it with its workers (os.killpg).
    """
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *options),
                "webhook.app:create_app()",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log_path.read_text(errors="replace")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.2)


class WebhookServer:
    """The Flask app behind werkzeug's threaded server, in a thread of this process."""

    def __init__(self, settings: Settings):
        self.app = create_app(settings)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> WebhookServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.extensions["victor"].database.close()


async def wait_idle(pool: asyncpg.Pool, timeout: float = 60) -> list[jobs.Job]:
    """Wait until no job is pending or running; return all jobs, oldest first."""
    deadline = time.monotonic() + timeout
    while await jobs.open_jobs(pool):
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still open after {timeout} s: {await jobs.recent(pool)}")
        await asyncio.sleep(0.05)
    return list(reversed(await jobs.recent(pool, 1000)))


async def wait_job(pool: asyncpg.Pool, job_id: int, timeout: float = 60) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while (job := await jobs.get(pool, job_id)).state in ("pending", "running"):
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job.state} after {timeout} s: {job}")
        await asyncio.sleep(0.05)
    return job


def lua_tree(bare: Path, commit: str) -> dict[str, str]:
    """path -> blob id of every Lua file git has at `commit`."""
    out = run_git(bare, "ls-tree", "-r", "--full-tree", commit)
    tree = {}
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob" and mode != "120000" and matches(path, ("*.lua",)):
            tree[path] = sha
    return tree


async def assert_index_is(pool: asyncpg.Pool, name: str, bare: Path, commit: str) -> None:
    """The index of `name` is exactly the Lua files at `commit`, each with its chunks."""
    repo = await pool.fetchrow("SELECT id, commit_sha FROM repos WHERE name = $1", name)
    assert repo["commit_sha"] == commit
    rows = await pool.fetch("SELECT path, content_hash FROM files WHERE repo_id = $1", repo["id"])
    assert {r["path"]: r["content_hash"] for r in rows} == lua_tree(bare, commit)
    orphans = await pool.fetchval(
        "SELECT count(*) FROM files f WHERE f.repo_id = $1 AND NOT EXISTS "
        "(SELECT 1 FROM chunks c WHERE c.repo_id = f.repo_id AND c.path = f.path)",
        repo["id"],
    )
    assert orphans == 0
