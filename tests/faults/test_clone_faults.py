"""Disk and clone problems under the webhook worker: the clone folder deleted, a corrupted
clone, a fetch that fails.

The clone is only a cache of the remote: deleted or damaged, the worker clones again (in the
same attempt when the fetch shows the damage, at the retry when reading old objects does).
A remote that cannot be fetched fails the job with git's own message in the job row, retried
with backoff until the remote is back. Each time the index ends at the branch head, equal to
a clean sync.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from indexer import store
from indexer.sync import jobs
from indexer.sync.repo_sync import clone_dir
from tests.faults.compare import assert_same, snapshot
from tests.faults.test_database_restart import penlight_files
from tests.faults.test_worker_faults import clean_sync
from tests.support.github import deliver
from tests.support.webhook import SECRET, assert_index_is, wait_job

pytestmark = pytest.mark.hardening


async def push(webhook_url, remote, message: str, files: dict[str, str]) -> int:
    remote.commit(message, files)
    answer = await deliver(webhook_url, "push", remote.push(), secret=SECRET)
    assert answer.status_code == 202, answer.text
    return answer.json()["jobs"][0]["id"]


def truncate_packs(clone) -> int:
    packs = list((clone / "objects" / "pack").glob("*.pack"))
    for pack in packs:
        data = pack.read_bytes()
        pack.chmod(0o644)
        pack.write_bytes(data[: len(data) // 2])
    return len(packs)


def garbage_in_head(clone) -> int:
    (clone / "HEAD").write_bytes(b"\x00\x13garbage\xff\n")
    return 1


def garbage_objects(clone) -> int:
    """Every loose object and pack replaced by random-looking bytes of the same size."""
    damaged = 0
    for path in (clone / "objects").rglob("*"):
        if path.is_file() and path.parent.name != "info":
            path.chmod(0o644)
            path.write_bytes(bytes((i * 37 + 11) % 256 for i in range(path.stat().st_size)))
            damaged += 1
    return damaged


def delete_clone(clone) -> int:
    shutil.rmtree(clone)
    return 1


DAMAGE = {
    "clone folder deleted": delete_clone,
    "garbage in the clone's HEAD": garbage_in_head,
    "garbage in the clone's objects": garbage_objects,
    "truncated packfile in the clone": truncate_packs,
}


async def test_deleted_or_corrupted_clone_is_cloned_again(
    webhook_url, victor, worker, remote, hook_settings, pg_admin_url, tmp_path, corpora, figures
):
    files = list(penlight_files(corpora, 8).items())
    remote.commit("penlight", dict(files[:4]))
    await store.track_repo(victor.pool, "game", remote.url, "main", remote.html_url)
    job = await wait_job(victor.pool, await push(webhook_url, remote, "start", {}), timeout=120)
    assert job.state == "done", job
    clone = clone_dir(hook_settings, "game")
    assert (clone / "HEAD").is_file()
    for i, (fault, damage) in enumerate(DAMAGE.items()):
        assert damage(clone) >= 1, fault
        rel, text = files[4 + i]
        started = time.monotonic()
        job_id = await push(webhook_url, remote, fault, {rel: text})
        job = await wait_job(victor.pool, job_id, timeout=120)
        took = time.monotonic() - started
        assert job.state == "done", (fault, job)
        await assert_index_is(victor.pool, "game", remote.bare, remote.head())
        assert (clone / "HEAD").is_file()
        how = (
            "cloned again within the attempt"
            if job.attempts == 1
            else f"attempt 1 failed ({job.error}); the retry cloned again"
        )
        figures(f"{fault} between pushes (worker)", 1, how, took)
    clean_url = await clean_sync(hook_settings, pg_admin_url, remote, "game", tmp_path)
    url = hook_settings.database_url.get_secret_value()
    assert_same(await snapshot(url, "game"), await snapshot(clean_url, "game"), file_commits=False)


async def test_failing_fetch_is_retried_with_backoff_and_recorded_then_succeeds(
    webhook_url, victor, worker, remote, hook_settings, figures
):
    remote.commit("start", {"src/a.lua": "local function a() return 1 end\n"})
    await store.track_repo(victor.pool, "game", remote.url, "main", remote.html_url)
    job = await wait_job(victor.pool, await push(webhook_url, remote, "first", {}), timeout=60)
    assert job.state == "done", job

    remote.commit("second", {"src/b.lua": "local function b() return 2 end\n"})
    payload = remote.push()
    moved = remote.bare.with_name("moved.git")
    remote.bare.rename(moved)  # GitHub unreachable / the repository renamed
    try:
        answer = await deliver(webhook_url, "push", payload, secret=SECRET)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["jobs"][0]["id"]
        deadline = time.monotonic() + 30
        while (job := await jobs.get(victor.pool, job_id)).attempts < 2 or job.error is None:
            assert job.state in ("pending", "running"), job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)
        failures = job.attempts
    finally:
        moved.rename(remote.bare)
    back = time.monotonic()
    assert job.error.startswith("git fetch failed: fatal:"), job.error
    assert "\n" not in job.error and remote.bare.name in job.error, job.error
    job = await wait_job(victor.pool, job_id, timeout=60)
    recovered = time.monotonic() - back
    assert job.state == "done" and job.attempts > failures - 1, job
    assert job.result["commit"] == remote.head()
    await assert_index_is(victor.pool, "game", remote.bare, remote.head())
    delays = [jobs.backoff(n, hook_settings.job_retry_delay) for n in (1, 2)]
    figures(
        "a fetch that fails (remote folder renamed away, then back)",
        failures,
        f"job retried with backoff ({delays[0]:g} s, {delays[1]:g} s, ...), its row said "
        f"`{job.error[:70]}...` while failing; done once the remote was back",
        recovered,
    )
