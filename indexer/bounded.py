"""Waiting for work at most so long, and not a moment longer.

The chat adapters (the Pipelines filter, the LiteLLM hook) promise an answer within their
timeout whatever the database does. `asyncio.wait_for` does not keep that promise: after the
timeout it cancels the work and then *waits for the cancellation to finish*, and a query
cancelled on a database connection that hangs (the server accepts bytes and never answers)
takes seconds more to let go of it (measured: 4.01 s for a 2 s timeout). `within` cancels the
work and returns at once; the cancelled work winds down in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def within(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """The coroutine's result, or TimeoutError after `timeout` seconds without waiting longer.

    On timeout the work is cancelled but not waited for. When the caller itself is cancelled,
    the work is cancelled too.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise TimeoutError
    return task.result()


def _forget(task: asyncio.Task) -> None:
    """Collect the outcome of abandoned work (so asyncio does not warn that nobody did)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned work ended with %r", task.exception())
