"""Durable sync jobs in PostgreSQL. All SQL of the job queue lives here.

A push queues a job; a worker claims it with `FOR UPDATE SKIP LOCKED` and holds a lease
it renews while it works. Rules that make this safe:

- At most one pending job per repository (a unique partial index): a push for a
  repository that already has one updates that job, the newest `after` wins.
- A repository with a running job is not claimed again until that job ends or its
  lease expires (its worker died); the worker that takes it over counts an attempt.
- Every write of a running job is fenced by (worker, attempts): a worker that lost its
  job to another cannot finish or fail it.
- A failure returns the job to pending after a backoff, until max_attempts.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import asyncpg

from indexer.errors import NotFound

CHANNEL = "victor_jobs"  # NOTIFY channel: wakes idle workers as soon as a job is queued
MAX_BACKOFF = 900.0  # seconds


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    repo_id: int
    repo: str
    state: str
    reason: str
    after_sha: str | None
    pushes: int
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_until: datetime | None
    worker: str | None
    error: str | None
    result: dict | None
    superseded_by: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def to_json(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data


_SELECT = "SELECT j.*, r.name AS repo FROM sync_jobs j JOIN repos r ON r.id = j.repo_id"


def _job(row: asyncpg.Record) -> Job:
    data = dict(row)
    if isinstance(data["result"], str):
        data["result"] = json.loads(data["result"])
    return Job(**{name: data[name] for name in Job.__dataclass_fields__})


def worker_id() -> str:
    """host:pid:random — tells which process holds a job, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff(attempts: int, first: float) -> float:
    """Seconds to wait before the next attempt: first, 2*first, 4*first... capped."""
    return min(first * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


# --- queueing -------------------------------------------------------------------------------


async def _enqueue(
    conn: asyncpg.Connection, repo_id: int, reason: str, after: str | None, max_attempts: int
) -> int:
    job_id = await conn.fetchval(
        """
        INSERT INTO sync_jobs (repo_id, reason, after_sha, max_attempts) VALUES ($1, $2, $3, $4)
        ON CONFLICT (repo_id) WHERE state = 'pending' DO UPDATE
            SET after_sha = COALESCE(EXCLUDED.after_sha, sync_jobs.after_sha),
                pushes = sync_jobs.pushes + 1, updated_at = now()
        RETURNING id
        """,
        repo_id,
        reason,
        after,
        max_attempts,
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(job_id))
    return job_id


async def enqueue(
    pool: asyncpg.Pool, repo_id: int, *, reason: str, after: str | None = None, max_attempts: int
) -> int:
    """Queue a sync of one repository (or join its pending one). Returns the job id."""
    async with pool.acquire() as conn, conn.transaction():
        return await _enqueue(conn, repo_id, reason, after, max_attempts)


async def enqueue_delivery(
    pool: asyncpg.Pool,
    delivery: str | None,
    repo_ids: Sequence[int],
    *,
    after: str,
    max_attempts: int,
) -> tuple[list[int], bool]:
    """Queue the syncs a push delivery asks for, once per X-GitHub-Delivery.

    Returns (job ids, duplicate). A redelivery (same id) queues nothing and gets the
    jobs of the first delivery back; two copies arriving at once are serialised by the
    primary key.
    """
    async with pool.acquire() as conn, conn.transaction():
        if delivery is not None:
            inserted = await conn.fetchval(
                "INSERT INTO webhook_deliveries (delivery, job_ids) VALUES ($1, '{}') "
                "ON CONFLICT (delivery) DO NOTHING RETURNING true",
                delivery,
            )
            if not inserted:
                ids = await conn.fetchval(
                    "SELECT job_ids FROM webhook_deliveries WHERE delivery = $1", delivery
                )
                return list(ids), True
        ids = [await _enqueue(conn, r, "push", after, max_attempts) for r in repo_ids]
        if delivery is not None:
            await conn.execute(
                "UPDATE webhook_deliveries SET job_ids = $2 WHERE delivery = $1", delivery, ids
            )
        return ids, False


# --- working --------------------------------------------------------------------------------


async def claim(pool: asyncpg.Pool, worker: str, lease: float) -> Job | None:
    """Take the next job that is due, or one whose worker died (lease expired)."""
    await _give_up_on_lost(pool)
    row = await pool.fetchrow(
        """
        WITH next AS (
            SELECT j.id FROM sync_jobs j
            WHERE ((j.state = 'pending' AND j.run_after <= now())
                   OR (j.state = 'running' AND j.lease_until < now()))
              AND NOT EXISTS (
                  SELECT 1 FROM sync_jobs o
                  WHERE o.repo_id = j.repo_id AND o.id <> j.id
                    AND o.state = 'running' AND o.lease_until >= now())
            ORDER BY j.run_after, j.id
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE sync_jobs j SET
            error = CASE WHEN j.state = 'running'
                THEN format('attempt %s: the worker %s stopped renewing its lease '
                            '(killed or crashed?); taken over', j.attempts, j.worker)
                ELSE j.error END,
            state = 'running', attempts = j.attempts + 1, worker = $1,
            lease_until = now() + make_interval(secs => $2),
            started_at = now(), updated_at = now()
        FROM next WHERE j.id = next.id
        RETURNING j.id
        """,
        worker,
        lease,
    )
    return await get(pool, row["id"]) if row else None


async def _give_up_on_lost(pool: asyncpg.Pool) -> None:
    """A job whose worker died on every attempt fails instead of killing workers forever."""
    await pool.execute(
        """
        UPDATE sync_jobs SET state = 'failed', lease_until = NULL, finished_at = now(),
            updated_at = now(),
            error = format('gave up after %s attempts: the worker running it stopped each time '
                           '(killed, out of memory?). See the worker log, then run '
                           '`victor sync NAME` by hand.', attempts)
        WHERE state = 'running' AND lease_until < now() AND attempts >= max_attempts
        """
    )


_MINE = "id = $1 AND worker = $2 AND attempts = $3 AND state = 'running'"


async def heartbeat(pool: asyncpg.Pool, job: Job, lease: float) -> bool:
    """Renew the lease. False when the job is no longer this worker's."""
    done = await pool.fetchval(
        f"UPDATE sync_jobs SET lease_until = now() + make_interval(secs => $4), "
        f"updated_at = now() WHERE {_MINE} RETURNING true",
        job.id,
        job.worker,
        job.attempts,
        lease,
    )
    return bool(done)


async def finish(pool: asyncpg.Pool, job: Job, result: dict) -> bool:
    done = await pool.fetchval(
        f"UPDATE sync_jobs SET state = 'done', result = $4::jsonb, lease_until = NULL, "
        f"finished_at = now(), updated_at = now() WHERE {_MINE} RETURNING true",
        job.id,
        job.worker,
        job.attempts,
        json.dumps(result),
    )
    return bool(done)


async def fail(pool: asyncpg.Pool, job: Job, error: str, retry_delay: float) -> str | None:
    """Record a failure: pending again after a backoff, or failed for good. Returns the state."""
    state = "pending" if job.attempts < job.max_attempts else "failed"
    return await _set_back(
        pool,
        job,
        state,
        error=error,
        attempts=job.attempts,
        delay=backoff(job.attempts, retry_delay),
    )


async def release(pool: asyncpg.Pool, job: Job) -> str | None:
    """Give an unfinished job back (worker shutting down); the attempt does not count."""
    return await _set_back(pool, job, "pending", error=job.error, attempts=job.attempts - 1)


async def _set_back(
    pool: asyncpg.Pool,
    job: Job,
    state: str,
    *,
    error: str | None,
    attempts: int,
    delay: float = 0.0,
) -> str | None:
    """Move a running job to pending or failed. A newer pending job of the same repository
    already covers its work (it syncs the same branch head): then it is superseded."""
    args = (job.id, job.worker, job.attempts, state, error, attempts, delay)
    sql = f"""
        UPDATE sync_jobs SET state = $4, error = $5, attempts = $6, lease_until = NULL,
            worker = CASE WHEN $4 = 'pending' THEN NULL ELSE worker END,
            run_after = now() + make_interval(secs => $7), updated_at = now(),
            finished_at = CASE WHEN $4 = 'failed' THEN now() END
        WHERE {_MINE} RETURNING state
    """
    try:
        return await pool.fetchval(sql, *args)
    except asyncpg.UniqueViolationError:
        return await _supersede(pool, job, error)


async def _supersede(pool: asyncpg.Pool, job: Job, error: str | None) -> str | None:
    return await pool.fetchval(
        f"""
        UPDATE sync_jobs SET state = 'superseded', error = $4, lease_until = NULL,
            finished_at = now(), updated_at = now(),
            superseded_by = (SELECT id FROM sync_jobs
                             WHERE repo_id = $5 AND state = 'pending')
        WHERE {_MINE} RETURNING state
        """,
        job.id,
        job.worker,
        job.attempts,
        error,
        job.repo_id,
    )


# --- reading --------------------------------------------------------------------------------


async def get(db: asyncpg.Pool | asyncpg.Connection, job_id: int) -> Job:
    row = await db.fetchrow(f"{_SELECT} WHERE j.id = $1", job_id)
    if row is None:
        raise NotFound(f"No job {job_id}.")
    return _job(row)


async def get_many(db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[int]) -> list[Job]:
    """These jobs, in the order of `ids` (a job deleted with its repository is left out)."""
    rows = await db.fetch(f"{_SELECT} WHERE j.id = ANY($1::bigint[])", list(ids))
    found = {row["id"]: _job(row) for row in rows}
    return [found[i] for i in ids if i in found]


def describe(job: Job) -> str:
    """What became of a job, in words: for the answer to a redelivered push."""
    when = (job.finished_at or job.updated_at).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    if job.state == "done":
        commit = (job.result or {}).get("commit") or ""
        return f"job {job.id} ({job.repo}) done at {when}" + (
            f", index at {commit[:12]}" if commit else ""
        )
    if job.state == "failed":
        return f"job {job.id} ({job.repo}) failed at {when}: {job.error}"
    if job.state == "superseded":
        return f"job {job.id} ({job.repo}) superseded by job {job.superseded_by} at {when}"
    if job.state == "running":
        return f"job {job.id} ({job.repo}) running since {job.started_at or job.updated_at}"
    return f"job {job.id} ({job.repo}) pending (attempt {job.attempts + 1} of {job.max_attempts})"


async def recent(db: asyncpg.Pool | asyncpg.Connection, limit: int = 50) -> list[Job]:
    rows = await db.fetch(f"{_SELECT} ORDER BY j.id DESC LIMIT $1", limit)
    return [_job(r) for r in rows]


async def open_jobs(db: asyncpg.Pool | asyncpg.Connection) -> int:
    """Pending and running jobs (0 when the queue is idle)."""
    return await db.fetchval("SELECT count(*) FROM sync_jobs WHERE state IN ('pending', 'running')")
