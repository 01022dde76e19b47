"""The core's async database code, called from Flask's synchronous request threads.

Each process gets one event loop in a daemon thread and one small asyncpg pool on it,
created on first use, so a request costs a hop to that thread, not a new loop and a new
connection. Created lazily and per process id: gunicorn forks its workers after loading
the app, and a loop or pool must never cross a fork.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from indexer import store
from indexer.config import Settings
from indexer.errors import DatabaseUnavailable

T = TypeVar("T")


class Database:
    def __init__(self, settings: Settings, *, timeout: float = 8.0, pool_size: int = 4):
        self.settings = settings
        self.timeout = timeout  # GitHub gives up after 10 s
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: asyncpg.Pool | None = None
        self._pool_lock: asyncio.Lock | None = None

    def run(self, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Run `work(pool)` on the database thread and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(self._call(work), self._started())
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DatabaseUnavailable(
                f"PostgreSQL did not answer within {self.timeout:g} s."
            ) from None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._pool = None
                self._pool_lock = None
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="victor-db", daemon=True
                )
                self._thread.start()
                self._pid = os.getpid()
            return self._loop

    async def _call(self, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        if self._pool is None:
            self._pool_lock = self._pool_lock or asyncio.Lock()
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await store.create_pool(
                        self.settings, min_size=1, max_size=self.pool_size, timeout=5.0
                    )
        return await work(self._pool)

    def close(self) -> None:
        """Close the pool and stop the thread (tests; a gunicorn worker just exits)."""
        with self._lock:
            loop, thread, pool = self._loop, self._thread, self._pool
            self._loop = self._thread = self._pool = None
            self._pid = None
        if loop is None or thread is None:
            return
        if pool is not None:
            asyncio.run_coroutine_threadsafe(pool.close(), loop).result(self.timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout)
        loop.close()
