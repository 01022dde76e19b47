"""The job queue's rules, against a real PostgreSQL: coalescing, claims, leases, retries."""

from __future__ import annotations

import asyncio

import pytest

from indexer import store
from indexer.sync import jobs

SHA = [f"{n:040x}" for n in range(1, 10)]


@pytest.fixture
async def repos(victor):
    a = await store.track_repo(victor.pool, "a", "file:///a.git", "main", "https://github.com/o/a")
    b = await store.track_repo(victor.pool, "b", "file:///b.git", "main", "https://github.com/o/b")
    return a, b


async def push(pool, repo, after, delivery=None):
    ids, duplicate = await jobs.enqueue_delivery(
        pool, delivery, [repo.id], after=after, max_attempts=3
    )
    return ids[0], duplicate


async def test_pending_pushes_coalesce_newest_after_wins(victor, repos):
    a, b = repos
    pool = victor.pool
    first, _ = await push(pool, a, SHA[0])
    assert (await push(pool, a, SHA[1]))[0] == first
    assert (await push(pool, a, SHA[2]))[0] == first
    other, _ = await push(pool, b, SHA[3])
    assert other != first
    job = await jobs.get(pool, first)
    assert (job.state, job.after_sha, job.pushes) == ("pending", SHA[2], 3)

    claimed = await jobs.claim(pool, "w1", 30)
    assert claimed.id == first
    # a push while the job runs queues a new one: the running sync may have fetched too early
    later, _ = await push(pool, a, SHA[4])
    assert later not in (first, other)


async def test_same_delivery_twice_is_one_job(victor, repos):
    a, _ = repos
    first = await push(victor.pool, a, SHA[0], delivery="guid-1")
    again = await push(victor.pool, a, SHA[0], delivery="guid-1")
    assert first == (first[0], False) and again == (first[0], True)
    assert (await jobs.get(victor.pool, first[0])).pushes == 1


async def test_concurrent_duplicate_deliveries_make_one_job(victor, repos):
    a, _ = repos
    results = await asyncio.gather(*(push(victor.pool, a, SHA[0], "guid-x") for _ in range(8)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(dup for _, dup in results) == [False] + [True] * 7
    assert await victor.pool.fetchval("SELECT count(*) FROM sync_jobs") == 1


async def test_one_running_job_per_repository(victor, repos):
    a, b = repos
    pool = victor.pool
    await push(pool, a, SHA[0])
    await push(pool, b, SHA[1])
    claims = await asyncio.gather(*(jobs.claim(pool, f"w{n}", 30) for n in range(4)))
    taken = [c for c in claims if c is not None]
    assert sorted(c.repo for c in taken) == ["a", "b"]  # SKIP LOCKED: each job once
    await push(pool, a, SHA[2])  # pending behind the running one
    assert await jobs.claim(pool, "w9", 30) is None
    assert await jobs.finish(pool, next(c for c in taken if c.repo == "a"), {})
    assert (await jobs.claim(pool, "w9", 30)).after_sha == SHA[2]


async def test_expired_lease_is_taken_over_and_the_old_worker_is_fenced_off(victor, repos):
    a, _ = repos
    pool = victor.pool
    job_id, _ = await push(pool, a, SHA[0])
    lost = await jobs.claim(pool, "dead-worker", 0.2)
    assert await jobs.claim(pool, "w2", 30) is None  # lease still valid
    await asyncio.sleep(0.3)
    taken = await jobs.claim(pool, "w2", 30)
    assert (taken.id, taken.attempts, taken.worker) == (job_id, 2, "w2")
    assert "dead-worker stopped renewing its lease" in taken.error
    # the first worker comes back: it may no longer touch the job
    assert not await jobs.heartbeat(pool, lost, 30)
    assert not await jobs.finish(pool, lost, {"from": "dead"})
    assert await jobs.fail(pool, lost, "late", 0) is None
    assert await jobs.finish(pool, taken, {"from": "w2"})
    done = await jobs.get(pool, job_id)
    assert (done.state, done.result) == ("done", {"from": "w2"})


async def test_a_job_that_keeps_killing_workers_fails(victor, repos):
    a, _ = repos
    pool = victor.pool
    job_id, _ = await push(pool, a, SHA[0])  # max_attempts = 3
    for _ in range(3):
        assert await jobs.claim(pool, "doomed", 0.05) is not None
        await asyncio.sleep(0.1)
    assert await jobs.claim(pool, "w", 30) is None
    job = await jobs.get(pool, job_id)
    assert job.state == "failed" and "gave up after 3 attempts" in job.error


async def test_failures_retry_with_backoff_then_fail(victor, repos):
    a, _ = repos
    pool = victor.pool
    job_id, _ = await push(pool, a, SHA[0])
    job = await jobs.claim(pool, "w", 30)
    assert await jobs.fail(pool, job, "Ollama is down", retry_delay=0.3) == "pending"
    assert await jobs.claim(pool, "w", 30) is None  # backing off
    await asyncio.sleep(0.35)
    job = await jobs.claim(pool, "w", 30)
    assert job.attempts == 2 and job.error == "Ollama is down"
    assert await jobs.fail(pool, job, "still down", retry_delay=0.01) == "pending"
    await asyncio.sleep(0.05)  # second backoff: 2 * 0.01 s
    job = await jobs.claim(pool, "w", 30)
    assert await jobs.fail(pool, job, "down for good", retry_delay=0.01) == "failed"
    final = await jobs.get(pool, job_id)
    assert (final.state, final.attempts, final.error) == ("failed", 3, "down for good")
    assert final.finished_at is not None
    assert jobs.backoff(1, 10) == 10 and jobs.backoff(3, 10) == 40 and jobs.backoff(20, 10) == 900


async def test_released_job_keeps_its_attempts_or_yields_to_a_newer_one(victor, repos):
    a, _ = repos
    pool = victor.pool
    job_id, _ = await push(pool, a, SHA[0])
    job = await jobs.claim(pool, "w", 30)
    assert await jobs.release(pool, job) == "pending"
    again = await jobs.claim(pool, "w", 30)
    assert (again.id, again.attempts) == (job_id, 1)  # the released attempt did not count

    newer, _ = await push(pool, a, SHA[1])
    assert await jobs.release(pool, again) == "superseded"
    old = await jobs.get(pool, job_id)
    assert (old.state, old.superseded_by) == ("superseded", newer)
