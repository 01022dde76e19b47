"""`victor worker`: runs the sync jobs the webhook queues, until it is told to stop.

An idle worker sleeps on a PostgreSQL notification (LISTEN), so a push is picked up at
once; it also polls, which covers retries coming due and a lost notification. While a
job runs, a heartbeat renews its lease: if the process dies, the lease runs out and
another worker (or this one, restarted) takes the job over. On stop (SIGTERM) the
current job gets `worker_grace` seconds to finish, then it is cancelled and handed
back; the index stays consistent either way, because indexing commits file by file
and records the commit only at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from indexer import store
from indexer.errors import DatabaseUnavailable, VictorError
from indexer.service import Victor
from indexer.sync import jobs
from indexer.sync.jobs import Job
from indexer.sync.repo_sync import SyncReport

log = logging.getLogger(__name__)

# The database went away or dropped a connection: wait and try again, never crash.
# (A connection killed in the middle of a query can surface as InternalClientError.)
DB_ERRORS = (
    DatabaseUnavailable,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


class Worker:
    def __init__(self, victor: Victor, *, drain: bool = False):
        self.victor = victor
        self.settings = victor.settings
        self.pool = victor.pool
        self.drain = drain  # exit when the queue is empty instead of waiting
        self.id = jobs.worker_id()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.jobs_run = 0
        self._listener: asyncpg.Connection | None = None
        self._listener_lost = False

    def stop(self) -> None:
        """Ask the worker to stop (signal handler): no new job; the current one may finish."""
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        await self._warm_up()
        try:
            while not self.stopping.is_set():
                self.wake.clear()
                try:
                    await self._listen()
                    job = await jobs.claim(self.pool, self.id, self.settings.job_lease)
                    if job is not None:
                        await self.run_job(job)
                        continue
                except DB_ERRORS as exc:
                    log.warning("database error (%s); trying again", exc)
                if self.drain:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.worker_poll)
        finally:
            await self._unlisten()

    async def _warm_up(self) -> None:
        """Load the embedding model now rather than in the first push's job."""
        try:
            await self.victor.embedder.dimensions()
        except VictorError as exc:
            log.warning("the embedder is not ready (%s); jobs will retry until it is", exc)

    async def _listen(self) -> None:
        """LISTEN for new jobs on a connection of our own; again if the database dropped it."""
        if self._listener is not None and not self._listener_lost:
            return
        await self._unlisten()
        conn = await self.pool.acquire()
        self._listener, self._listener_lost = conn, False
        conn.add_termination_listener(self._lost)
        await conn.add_listener(jobs.CHANNEL, self._notified)

    def _lost(self, *args: object) -> None:
        self._listener_lost = True
        self.wake.set()

    async def _unlisten(self) -> None:
        """Give the connection back, dead or alive: pool.close() waits for every one."""
        conn, self._listener = self._listener, None
        if conn is None:
            return
        if not self._listener_lost:
            with contextlib.suppress(*DB_ERRORS):
                await conn.remove_listener(jobs.CHANNEL, self._notified)
        with contextlib.suppress(*DB_ERRORS):
            await self.pool.release(conn)

    def _notified(self, *args: object) -> None:
        self.wake.set()

    async def run_job(self, job: Job) -> None:
        log.info(
            "job %d: syncing %s (attempt %d of %d)",
            job.id,
            job.repo,
            job.attempts,
            job.max_attempts,
        )
        task = asyncio.create_task(
            self.victor.sync(job.repo, after=job.after_sha), name=f"sync-{job.id}"
        )
        beat = asyncio.create_task(self._heartbeat(job), name=f"heartbeat-{job.id}")
        try:
            finished = await self._wait(task)
        finally:
            beat.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        self.jobs_run += 1
        if not finished or task.cancelled():
            state = await jobs.release(self.pool, job)
            log.warning("job %d: stopped before the end, handed back (%s)", job.id, state)
        elif task.exception() is not None:
            await self._failed(job, task.exception())
        else:
            await self._done(job, task.result())

    async def _wait(self, task: asyncio.Task) -> bool:
        """Wait for the sync; once stopping, for at most worker_grace more seconds."""
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not task.done():
            await asyncio.wait({task}, timeout=self.settings.worker_grace)
        return task.done()

    async def _heartbeat(self, job: Job) -> None:
        every = self.settings.job_lease / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await jobs.heartbeat(self.pool, job, self.settings.job_lease):
                    log.warning("job %d: another worker took it over", job.id)
                    return
            except DB_ERRORS as exc:
                log.warning("job %d: cannot renew the lease (%s)", job.id, exc)

    async def _done(self, job: Job, report: SyncReport) -> None:
        mine = await jobs.finish(self.pool, job, report.summary())
        index = report.index
        log.info(
            "job %d: %s at %s (%s, %s): %d files written, %d deleted, %d chunks embedded%s",
            job.id,
            job.repo,
            report.commit[:12],
            report.mode,
            report.why,
            index["files_new"] + index["files_changed"],
            index["files_deleted"],
            index["chunks_embedded"],
            "" if mine else " — but another worker had taken the job over",
        )

    async def _failed(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, VictorError):
            message = str(exc)
            log.warning("job %d: %s", job.id, message)
        elif isinstance(exc, store.CONNECTION_LOST):
            message = store.lost(exc)
            log.warning("job %d: %s", job.id, message)
        else:
            message = f"unexpected {exc.__class__.__name__}: {exc} (see the worker log)"
            log.error("job %d failed", job.id, exc_info=exc)
        message = self._redact(message)
        state = await jobs.fail(self.pool, job, message, self.settings.job_retry_delay)
        if state == "pending":
            delay = jobs.backoff(job.attempts, self.settings.job_retry_delay)
            log.warning("job %d: will try again in %.0f s", job.id, delay)
        else:
            log.error("job %d: %s", job.id, state or "taken over by another worker")

    def _redact(self, message: str) -> str:
        """Errors go into the jobs table and its HTTP view: never with a secret in them."""
        for secret in (self.settings.github_token, self.settings.webhook_secret):
            if secret is not None and secret.get_secret_value():
                message = message.replace(secret.get_secret_value(), "***")
        return message
