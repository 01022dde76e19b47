"""Advisory locks (one index run, one fetch + sync per repository, across processes) and the
transaction helper that works on a pool or a connection."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, suppress

import asyncpg

_REPO_LOCK_SPACE = 7_401_002  # advisory lock (space, repo_id): one index run per repo
_SYNC_LOCK_SPACE = 7_401_003  # advisory lock (space, repo_id): one fetch + sync per repo
_SUMMARY_LOCK = 7_401_004  # pg_try_advisory_lock(key): one `victor summarize` run at a time
_GRAPHS_LOCK = 7_401_005  # pg_try_advisory_lock(key): one builder of the repositories' graphs
_POLL = 0.05  # seconds between two tries for a lock another session holds, doubling up to
_POLL_MAX = 0.5


async def _wait_for_lock(conn: asyncpg.Connection, *key: int) -> None:
    """Take the session advisory lock `key`, waiting for its holder by trying again and again
    rather than in one `pg_advisory_lock` statement. A statement waiting for a lock keeps its
    snapshot, and CREATE INDEX CONCURRENTLY (a repository's graph, `store.repo_graphs`) waits
    for every older snapshot to end: when the lock's holder waits for that build, neither
    ever goes on (PostgreSQL sees the cycle, and fails one of them, only when the build runs on
    the session holding the lock)."""
    # Two spelled-out statements, not one built from the key's length: SQL is never built
    # from values (tests/test_sql_safety.py).
    lock = (
        "SELECT pg_try_advisory_lock($1, $2)"
        if len(key) == 2
        else "SELECT pg_try_advisory_lock($1)"
    )
    delay = _POLL
    while not await conn.fetchval(lock, *key):
        await asyncio.sleep(delay)
        delay = min(2 * delay, _POLL_MAX)


@asynccontextmanager
async def _session_lock(pool: asyncpg.Pool, space: int, key: int):
    """Hold a session advisory lock on a connection of the pool for the block.

    The lock belongs to the connection: if the connection breaks (the database stopped), the
    lock is already gone, and failing to unlock must not hide the error that ended the work.
    """
    async with pool.acquire() as conn:
        await _wait_for_lock(conn, space, key)
        try:
            yield
        finally:
            with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", space, key)


def repo_lock(pool: asyncpg.Pool, repo_id: int):
    """Hold a session advisory lock so two runs never index the same repo at once."""
    return _session_lock(pool, _REPO_LOCK_SPACE, repo_id)


def sync_lock(pool: asyncpg.Pool, repo_id: int):
    """One fetch + sync per repository at a time (workers, `victor sync`), across processes.

    A session lock: it is released when its connection closes, so a killed worker never
    leaves it behind.
    """
    return _session_lock(pool, _SYNC_LOCK_SPACE, repo_id)


@asynccontextmanager
async def _try_lock(conn: asyncpg.Connection, key: int):
    """Yields whether this connection got the session advisory lock `key`; released when the
    block ends or the connection closes."""
    held = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
    try:
        yield held
    finally:
        if held:
            with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", key)


@asynccontextmanager
async def summary_lock(pool: asyncpg.Pool):
    """Yields whether this process holds the one summary run's lock (two runs would pay twice
    for the same summaries)."""
    async with pool.acquire() as conn, _try_lock(conn, _SUMMARY_LOCK) as held:
        yield held


def graphs_lock(conn: asyncpg.Connection):
    """Yields whether `conn` holds the lock of the repositories' own graphs: a graph being
    built is INVALID until its build ends, and another process must not take it for an
    interrupted build (store.repo_graphs.reconcile, which works on that connection alone)."""
    return _try_lock(conn, _GRAPHS_LOCK)


@asynccontextmanager
async def graphs_lock_waiting(conn: asyncpg.Connection):
    """Hold the graphs' lock on `conn` for the block, waiting for a builder to finish first
    (store.repo_graphs.remove)."""
    await _wait_for_lock(conn, _GRAPHS_LOCK)
    try:
        yield
    finally:
        with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.execute("SELECT pg_advisory_unlock($1)", _GRAPHS_LOCK)


@asynccontextmanager
async def transaction(db: asyncpg.Pool | asyncpg.Connection):
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
